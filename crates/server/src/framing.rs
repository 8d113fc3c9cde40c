//! Frames off a client connection: a four-letter word or a ConnectRequest
//! first, then length-prefixed requests.
//!
//! Like mini-redis's `Connection::read_frame`: a cheap check (is a whole
//! frame here?) before the frame is taken; a length over the limit is an
//! error before anything is buffered, and the buffer grows only as bytes
//! arrive, at most `READ_CHUNK_BYTES_MAX` ahead of them, so a length prefix
//! costs nothing until its bytes are sent. A connection waits for its socket
//! to be readable before it takes a buffer, and gives the buffer back once
//! empty, so an idle connection holds none. EOF between frames ends the
//! connection cleanly; EOF mid-frame is an error.
//!
//! Each frame is copied out of the buffer into its own allocation: a
//! request's data lives on in the log cache and the tree, and a slice of the
//! shared buffer would keep the whole buffer (and every frame read with it)
//! alive as long as any one of them.

use bytes::{Buf, Bytes, BytesMut};
use roost_proto::frame::{four_letter_word, frame_len, FrameError};
use tokio::net::tcp::OwnedReadHalf;

/// Room taken for a read when nothing in particular is expected: a burst of
/// pipelined small requests.
const READ_CHUNK_BYTES: usize = 4 << 10;
/// The most room reserved ahead of the bytes of a frame being received.
const READ_CHUNK_BYTES_MAX: usize = 256 << 10;

/// What a connection starts with.
pub(crate) enum First {
    FourLetterWord(&'static str),
    /// The payload of the first frame (a ConnectRequest).
    Frame(Bytes),
}

/// Why reading failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    #[error("connection closed in the middle of a frame")]
    Truncated,
}

/// The reading half of a client connection and its buffer.
pub(crate) struct FrameReader {
    rd: OwnedReadHalf,
    buf: BytesMut,
    frame_bytes_max: usize,
}

impl FrameReader {
    pub(crate) fn new(rd: OwnedReadHalf, frame_bytes_max: usize) -> Self {
        FrameReader {
            rd,
            buf: BytesMut::new(),
            frame_bytes_max,
        }
    }

    /// Reads a four-letter word or the first frame, of at most `bytes_max`.
    pub(crate) async fn first(&mut self, bytes_max: usize) -> Result<First, ReadError> {
        loop {
            if let Some(word) = four_letter_word(&self.buf) {
                return Ok(First::FourLetterWord(word));
            }
            if self.buf.len() >= 4 {
                if let Some(frame) = self.take_frame(bytes_max)? {
                    return Ok(First::Frame(frame));
                }
            }
            if self.fill_up_to(bytes_max).await? == 0 {
                return Err(ReadError::Truncated);
            }
        }
    }

    /// Reads more bytes from the client; 0 when it closed the connection
    /// between frames. Cancel-safe.
    pub(crate) async fn fill(&mut self) -> Result<usize, ReadError> {
        let n = self.fill_up_to(self.frame_bytes_max).await?;
        if n == 0 && !self.buf.is_empty() {
            return Err(ReadError::Truncated);
        }
        Ok(n)
    }

    /// The next whole request frame already received, if any.
    pub(crate) fn next_frame(&mut self) -> Result<Option<Bytes>, ReadError> {
        self.take_frame(self.frame_bytes_max)
    }

    fn take_frame(&mut self, bytes_max: usize) -> Result<Option<Bytes>, ReadError> {
        match frame_len(&self.buf, bytes_max)? {
            Some(len) if self.buf.len() >= 4 + len => {
                let frame = Bytes::copy_from_slice(&self.buf[4..4 + len]);
                self.buf.advance(4 + len);
                if self.buf.is_empty() {
                    self.buf = BytesMut::new();
                }
                Ok(Some(frame))
            }
            _ => Ok(None),
        }
    }

    async fn fill_up_to(&mut self, bytes_max: usize) -> Result<usize, ReadError> {
        let missing = match frame_len(&self.buf, bytes_max)? {
            Some(len) => (4 + len).saturating_sub(self.buf.len()),
            None => READ_CHUNK_BYTES,
        };
        loop {
            self.rd.readable().await?;
            self.buf
                .reserve(missing.clamp(READ_CHUNK_BYTES, READ_CHUNK_BYTES_MAX));
            match self.rd.try_read_buf(&mut self.buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}
