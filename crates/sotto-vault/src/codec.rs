//! Byte-level helpers shared by the binary formats: a bounds-checked reader and the
//! length-prefixed id encoding (`u16` big-endian length, then the bytes).

use crate::MAX_ID_LEN;
use crate::error::{Result, VaultError};

/// Checks an id (account, credential or item): 1..=[`MAX_ID_LEN`] bytes.
pub(crate) fn check_id(id: &[u8], what: &'static str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(VaultError::InvalidId(what));
    }
    Ok(())
}

/// Appends `u16be(len) || id`. Callers have checked the id with [`check_id`].
pub(crate) fn put_id(out: &mut Vec<u8>, id: &[u8]) {
    debug_assert!(id.len() <= MAX_ID_LEN);
    out.extend_from_slice(&(id.len() as u16).to_be_bytes());
    out.extend_from_slice(id);
}

/// `label || 0x00`: the prefix of every derivation `info` and associated-data string.
pub(crate) fn labelled(label: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(label.len() + 1);
    v.extend_from_slice(label);
    v.push(0);
    v
}

/// A bounds-checked cursor; every read past the end is [`VaultError::Truncated`].
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, pos: 0, what }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(VaultError::Truncated(self.what))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub(crate) fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// A length-prefixed id; empty or over-long ids are malformed.
    pub(crate) fn id(&mut self) -> Result<&'a [u8]> {
        let n = self.u16()? as usize;
        if n == 0 || n > MAX_ID_LEN {
            return Err(VaultError::Malformed("id length out of range"));
        }
        self.take(n)
    }

    /// Everything left.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }

    /// Fails if bytes remain.
    pub(crate) fn finish(&self) -> Result<()> {
        if self.pos != self.buf.len() {
            return Err(VaultError::Malformed("trailing bytes"));
        }
        Ok(())
    }
}
