//! Framing: every message is a 4-byte big-endian length and that many bytes.
//!
//! The length is checked before anything is buffered: a negative length or one
//! above the configured maximum (`jute.maxbuffer`, 0xfffff by default) is an
//! error and the connection is closed. A fresh connection may instead start with
//! a four-letter word, recognised (like ZooKeeper) only when its first 4 bytes
//! spell a known command.

use bytes::{Buf, Bytes, BytesMut};

/// ZooKeeper's default `jute.maxbuffer`: the largest frame payload accepted.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 0xfffff;

/// The four-letter words ZooKeeper knows (`FourLetterCommands`).
pub const FOUR_LETTER_WORDS: [&str; 18] = [
    "conf", "cons", "crst", "dirs", "dump", "envi", "gtmk", "ruok", "stmk", "srst", "srvr", "stat",
    "wchc", "wchp", "wchs", "mntr", "isro", "hash",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame length {len} outside 0..={max}")]
    BadLength { len: i64, max: usize },
}

/// The payload length announced at the front of `buf`, checked against
/// `max_frame_bytes`; `None` until its 4 bytes are there.
pub fn frame_len(buf: &[u8], max_frame_bytes: usize) -> Result<Option<usize>, FrameError> {
    let Some(prefix) = buf.get(..4) else {
        return Ok(None);
    };
    let len = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    if len < 0 || len as usize > max_frame_bytes {
        return Err(FrameError::BadLength {
            len: len.into(),
            max: max_frame_bytes,
        });
    }
    Ok(Some(len as usize))
}

/// Splits one complete frame payload off the front of `buf`, if a whole one
/// is there; otherwise reserves room for the rest of it (callers that must
/// not trust a length before its bytes arrive check [`frame_len`] first).
pub fn split_frame(
    buf: &mut BytesMut,
    max_frame_bytes: usize,
) -> Result<Option<Bytes>, FrameError> {
    let Some(len) = frame_len(buf, max_frame_bytes)? else {
        return Ok(None);
    };
    if buf.len() < 4 + len {
        // Reserve once for the rest of the frame rather than growing piecemeal.
        buf.reserve(4 + len - buf.len());
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(len).freeze()))
}

/// The four-letter word spelled by the first 4 bytes of a connection, if any.
pub fn four_letter_word(first: &[u8]) -> Option<&'static str> {
    let word = first.get(..4)?;
    FOUR_LETTER_WORDS
        .iter()
        .copied()
        .find(|w| w.as_bytes() == word)
}

/// Writes the final length of a frame whose 4-byte prefix starts at `start`.
pub(crate) fn patch_length(out: &mut BytesMut, start: usize) {
    let len = crate::codec::len_i32(out.len() - start - 4);
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Prefixes an already-encoded payload with its length.
pub fn frame(payload: &[u8], out: &mut BytesMut) {
    out.extend_from_slice(&crate::codec::len_i32(payload.len()).to_be_bytes());
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_length_prefix_is_refused_before_buffering() {
        let mut buf = BytesMut::from(&[0x00, 0x10, 0x00, 0x00][..]);
        assert!(split_frame(&mut buf, DEFAULT_MAX_FRAME_BYTES).is_err());
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
        assert!(split_frame(&mut buf, DEFAULT_MAX_FRAME_BYTES).is_err());
    }

    #[test]
    fn frames_split_only_when_complete() {
        let mut buf = BytesMut::from(&[0, 0, 0, 3, 1, 2][..]);
        assert_eq!(split_frame(&mut buf, 10).unwrap(), None);
        buf.extend_from_slice(&[3, 0, 0]);
        assert_eq!(
            split_frame(&mut buf, 10).unwrap(),
            Some(Bytes::from_static(&[1, 2, 3]))
        );
        assert_eq!(&buf[..], &[0, 0]);
    }

    #[test]
    fn four_letter_words_are_recognised_only_when_known() {
        assert_eq!(four_letter_word(b"ruok"), Some("ruok"));
        assert_eq!(four_letter_word(b"mntrxyz"), Some("mntr"));
        assert_eq!(four_letter_word(b"nope"), None);
        assert_eq!(four_letter_word(&[0, 0, 0, 45]), None);
    }
}
