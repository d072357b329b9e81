//! A bounds-checked cursor over a message.

use crate::Error;

/// A cursor over `message[position..end]` that never reads past `end`.
///
/// It keeps the whole message so names found inside a sub-range can still
/// follow compression pointers to earlier bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reader<'a> {
    message: &'a [u8],
    position: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    #[cfg(test)]
    pub(crate) fn new(message: &'a [u8]) -> Self {
        Self { message, position: 0, end: message.len() }
    }

    pub(crate) fn at(message: &'a [u8], position: usize) -> Self {
        Self { message, position, end: message.len() }
    }

    pub(crate) fn message(&self) -> &'a [u8] {
        self.message
    }

    pub(crate) fn position(&self) -> usize {
        self.position
    }

    pub(crate) fn remaining(&self) -> usize {
        self.end.saturating_sub(self.position)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// A reader limited to the next `len` bytes; this reader skips past them.
    pub(crate) fn sub(&mut self, len: usize) -> Result<Self, Error> {
        self.need(len)?;
        let sub = Self { message: self.message, position: self.position, end: self.position + len };
        self.position += len;
        Ok(sub)
    }

    fn need(&self, len: usize) -> Result<(), Error> {
        let remaining = self.remaining();
        if remaining < len {
            return Err(Error::UnexpectedEnd { offset: self.position, needed: len - remaining });
        }
        Ok(())
    }

    pub(crate) fn bytes(&mut self, len: usize) -> Result<&'a [u8], Error> {
        self.need(len)?;
        let bytes = self
            .message
            .get(self.position..self.position + len)
            .ok_or(Error::UnexpectedEnd { offset: self.position, needed: len })?;
        self.position += len;
        Ok(bytes)
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let bytes = self.message.get(self.position..self.end).unwrap_or(&[]);
        self.position = self.end;
        bytes
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let bytes = self.bytes(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Error> {
        Ok(u8::from_be_bytes(self.array()?))
    }

    pub(crate) fn u16(&mut self) -> Result<u16, Error> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Error> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// A `<character-string>`: a length octet and that many bytes.
    pub(crate) fn character_string(&mut self) -> Result<&'a [u8], Error> {
        let len = self.u8()?;
        self.bytes(usize::from(len))
    }

    /// Skip to `position` (only forwards, and only within bounds).
    pub(crate) fn seek(&mut self, position: usize) {
        if position >= self.position && position <= self.end {
            self.position = position;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_reader_is_bounded_and_advances_the_parent() {
        let data = [1, 2, 3, 4, 5];
        let mut reader = Reader::new(&data);
        assert_eq!(reader.u8(), Ok(1));
        let mut sub = reader.sub(2).expect("two bytes");
        assert_eq!(sub.u16(), Ok(0x0203));
        assert_eq!(sub.u8(), Err(Error::UnexpectedEnd { offset: 3, needed: 1 }));
        assert_eq!(reader.position(), 3);
        assert_eq!(reader.u32(), Err(Error::UnexpectedEnd { offset: 3, needed: 2 }));
        assert!(reader.sub(3).is_err());
    }
}
