//! The compact binary layout of sealed cookie payloads: 2-byte big-endian lengths and counts,
//! UTF-8 text, and a reader that checks every length against what is left.

use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("a payload of format version {0}")]
    Version(u8),
    #[error("the payload ends early")]
    Truncated,
    #[error("the payload has bytes after its end")]
    TrailingBytes,
    #[error("the payload has a text field that is not UTF-8")]
    NotUtf8,
    #[error("the payload has an unknown group form {0}")]
    GroupTag(u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("a field holds more than 65535 bytes or items")]
pub struct TooLong;

/// Appends a 2-byte length.
pub(crate) fn put_len(out: &mut Vec<u8>, n: usize) -> Result<(), TooLong> {
    out.extend_from_slice(&u16::try_from(n).map_err(|_| TooLong)?.to_be_bytes());
    Ok(())
}

pub(crate) fn put_text(out: &mut Vec<u8>, text: &str) -> Result<(), TooLong> {
    put_len(out, text.len())?;
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

pub(crate) fn put_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(&n.to_be_bytes());
}

/// Reads the layout front to back, every length checked against what is left.
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        self.take(N)?.try_into().map_err(|_| DecodeError::Truncated)
    }

    pub(crate) fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn len(&mut self) -> Result<usize, DecodeError> {
        let b = self.take(2)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        let mut b = [0; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(b))
    }

    /// A text field, borrowed.
    pub(crate) fn str(&mut self) -> Result<&'a str, DecodeError> {
        let n = self.len()?;
        std::str::from_utf8(self.take(n)?).map_err(|_| DecodeError::NotUtf8)
    }

    pub(crate) fn text(&mut self) -> Result<String, DecodeError> {
        self.str().map(str::to_owned)
    }

    /// The payload's first byte, its format version, must be `version`.
    pub(crate) fn version(&mut self, version: u8) -> Result<(), DecodeError> {
        match self.byte()? {
            v if v == version => Ok(()),
            other => Err(DecodeError::Version(other)),
        }
    }

    /// Nothing may follow the payload's last field.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes)
        }
    }
}
