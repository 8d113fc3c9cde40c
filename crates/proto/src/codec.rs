//! Jute primitives: the byte-level encoding every ZooKeeper record is built from.
//!
//! Jute is big-endian: `int` is 4 bytes, `long` 8, `boolean` 1, and `buffer`,
//! `ustring` and `vector` are an `int` length (or count) followed by the items,
//! where -1 means null. Decoding never trusts a length: a length larger than the
//! bytes that remain is an error before anything is allocated, so a hostile
//! peer cannot make us reserve memory it did not send.

use bytes::{BufMut, Bytes, BytesMut};

/// Why a record could not be decoded. Every variant means "this frame is
/// malformed": the server answers by closing that one connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record truncated: needed {needed} more bytes, {remaining} left")]
    Truncated { needed: usize, remaining: usize },
    #[error("negative length {0} for a non-nullable field")]
    BadLength(i32),
    #[error("vector of {count} items cannot fit in {remaining} bytes")]
    VectorTooLong { count: i32, remaining: usize },
    #[error("{0} trailing bytes after the record")]
    TrailingBytes(usize),
    #[error("invalid value {value} for {field}")]
    InvalidValue { field: &'static str, value: i64 },
}

/// A cursor over one frame's payload. Slicing a `buffer` out of it is zero-copy.
#[derive(Debug, Clone)]
pub struct Reader {
    buf: Bytes,
    pos: usize,
}

impl Reader {
    pub fn new(buf: Bytes) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Fails unless the whole payload has been consumed.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }

    fn take(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::Truncated {
                needed: n,
                remaining: self.remaining(),
            });
        }
        let out = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(out)
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let slice = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&slice);
        Ok(out)
    }

    pub fn read_i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.take_array()?))
    }

    pub fn read_i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.take_array()?))
    }

    /// Jute writes booleans as one byte; like Java's `readBool`, any non-zero byte is true.
    pub fn read_bool(&mut self) -> Result<bool, DecodeError> {
        Ok(self.take_array::<1>()?[0] != 0)
    }

    /// A nullable `buffer`: `None` for length -1.
    pub fn read_buffer_opt(&mut self) -> Result<Option<Bytes>, DecodeError> {
        let len = self.read_i32()?;
        if len < 0 {
            // Java's readBuffer treats every negative length as null.
            return Ok(None);
        }
        self.take(len as usize).map(Some)
    }

    /// A `buffer` where null reads as empty (for fields where null has no
    /// meaning of its own, e.g. passwords and auth data).
    pub fn read_buffer(&mut self) -> Result<Bytes, DecodeError> {
        Ok(self.read_buffer_opt()?.unwrap_or_default())
    }

    /// A nullable `ustring`. Invalid UTF-8 is replaced, as Java's decoder does.
    pub fn read_ustring_opt(&mut self) -> Result<Option<String>, DecodeError> {
        let len = self.read_i32()?;
        if len == -1 {
            return Ok(None);
        }
        if len < 0 {
            return Err(DecodeError::BadLength(len));
        }
        let raw = self.take(len as usize)?;
        Ok(Some(match String::from_utf8(raw.to_vec()) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }))
    }

    /// A `ustring` where null reads as empty.
    pub fn read_ustring(&mut self) -> Result<String, DecodeError> {
        Ok(self.read_ustring_opt()?.unwrap_or_default())
    }

    /// A vector count, checked against the bytes left (each item takes at least
    /// `min_item_size` bytes). `None` for a null vector.
    pub fn read_count(&mut self, min_item_size: usize) -> Result<Option<usize>, DecodeError> {
        let count = self.read_i32()?;
        if count == -1 {
            return Ok(None);
        }
        if count < 0 {
            return Err(DecodeError::BadLength(count));
        }
        let fits = (count as usize)
            .checked_mul(min_item_size.max(1))
            .is_some_and(|need| need <= self.remaining());
        if !fits {
            return Err(DecodeError::VectorTooLong {
                count,
                remaining: self.remaining(),
            });
        }
        Ok(Some(count as usize))
    }

    /// The next `n` bytes, unparsed.
    pub fn read_bytes(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        self.take(n)
    }

    /// The rest of the payload, unparsed.
    pub fn read_rest(&mut self) -> Bytes {
        let rest = self.buf.slice(self.pos..);
        self.pos = self.buf.len();
        rest
    }
}

/// Appending jute primitives to an output buffer.
pub trait JuteWrite {
    fn put_jute_i32(&mut self, v: i32);
    fn put_jute_i64(&mut self, v: i64);
    fn put_jute_bool(&mut self, v: bool);
    fn put_jute_buffer(&mut self, v: &[u8]);
    fn put_jute_null(&mut self);
    fn put_jute_str(&mut self, v: &str);
}

impl JuteWrite for BytesMut {
    fn put_jute_i32(&mut self, v: i32) {
        self.put_i32(v);
    }
    fn put_jute_i64(&mut self, v: i64) {
        self.put_i64(v);
    }
    fn put_jute_bool(&mut self, v: bool) {
        self.put_u8(u8::from(v));
    }
    fn put_jute_buffer(&mut self, v: &[u8]) {
        self.put_i32(len_i32(v.len()));
        self.put_slice(v);
    }
    fn put_jute_null(&mut self) {
        self.put_i32(-1);
    }
    fn put_jute_str(&mut self, v: &str) {
        self.put_jute_buffer(v.as_bytes());
    }
}

/// Lengths on the wire are `int`s; every buffer we build is bounded far below
/// 2 GiB by the frame limit, so a larger one is a broken invariant.
pub(crate) fn len_i32(len: usize) -> i32 {
    i32::try_from(len).expect("jute lengths fit in an i32 (frames are bounded)")
}

/// A value with a jute encoding.
pub trait Encode {
    fn encode(&self, out: &mut BytesMut);

    /// Appends the record as a whole frame: 4-byte length, then the record.
    fn encode_framed(&self, out: &mut BytesMut) {
        let start = out.len();
        out.put_jute_i32(0);
        self.encode(out);
        crate::frame::patch_length(out, start);
    }

    /// The encoded bytes, for tests and one-off records.
    fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(&mut out);
        out.freeze()
    }
}

/// A value that can be read back from its jute encoding.
pub trait Decode: Sized {
    fn decode(r: &mut Reader) -> Result<Self, DecodeError>;

    /// Decodes a whole payload, refusing trailing bytes.
    fn from_bytes(bytes: Bytes) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let v = Self::decode(&mut r)?;
        r.finish()?;
        Ok(v)
    }
}

impl Encode for i32 {
    fn encode(&self, out: &mut BytesMut) {
        out.put_jute_i32(*self);
    }
}
impl Decode for i32 {
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        r.read_i32()
    }
}
impl Encode for i64 {
    fn encode(&self, out: &mut BytesMut) {
        out.put_jute_i64(*self);
    }
}
impl Decode for i64 {
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        r.read_i64()
    }
}
impl Encode for bool {
    fn encode(&self, out: &mut BytesMut) {
        out.put_jute_bool(*self);
    }
}
impl Decode for bool {
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        r.read_bool()
    }
}
impl Encode for String {
    fn encode(&self, out: &mut BytesMut) {
        out.put_jute_str(self);
    }
}
impl Decode for String {
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        r.read_ustring()
    }
}
impl Encode for Option<String> {
    fn encode(&self, out: &mut BytesMut) {
        match self {
            Some(s) => out.put_jute_str(s),
            None => out.put_jute_null(),
        }
    }
}
impl Decode for Option<String> {
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        r.read_ustring_opt()
    }
}
impl Encode for Bytes {
    fn encode(&self, out: &mut BytesMut) {
        out.put_jute_buffer(self);
    }
}
impl Decode for Bytes {
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        r.read_buffer()
    }
}
impl Encode for Option<Bytes> {
    fn encode(&self, out: &mut BytesMut) {
        match self {
            Some(b) => out.put_jute_buffer(b),
            None => out.put_jute_null(),
        }
    }
}
impl Decode for Option<Bytes> {
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        r.read_buffer_opt()
    }
}

/// The smallest encoding of one item, used to bound vector counts.
pub trait MinSize {
    const MIN_SIZE: usize;
}
impl MinSize for String {
    const MIN_SIZE: usize = 4;
}
impl MinSize for i64 {
    const MIN_SIZE: usize = 8;
}

impl<T: Encode> Encode for Vec<T> {
    fn encode(&self, out: &mut BytesMut) {
        out.put_jute_i32(len_i32(self.len()));
        for item in self {
            item.encode(out);
        }
    }
}
/// A null vector decodes as empty: no record we read gives null a meaning of its own.
impl<T: Decode + MinSize> Decode for Vec<T> {
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let count = r.read_count(T::MIN_SIZE)?.unwrap_or(0);
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            out.push(T::decode(r)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_vector_count_is_rejected_before_allocating() {
        let mut out = BytesMut::new();
        out.put_jute_i32(i32::MAX);
        let err = Vec::<String>::from_bytes(out.freeze()).unwrap_err();
        assert!(matches!(err, DecodeError::VectorTooLong { .. }));
    }

    #[test]
    fn null_buffer_and_string_are_distinguished_from_empty() {
        let mut out = BytesMut::new();
        out.put_jute_null();
        out.put_jute_buffer(b"");
        let mut r = Reader::new(out.freeze());
        assert_eq!(r.read_buffer_opt().unwrap(), None);
        assert_eq!(r.read_ustring_opt().unwrap(), Some(String::new()));
        r.finish().unwrap();
    }

    #[test]
    fn truncated_long_is_an_error() {
        let err = i64::from_bytes(Bytes::from_static(&[0, 0, 0])).unwrap_err();
        assert_eq!(
            err,
            DecodeError::Truncated {
                needed: 8,
                remaining: 3
            }
        );
    }
}
