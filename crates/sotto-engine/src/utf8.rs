//! Incremental UTF-8 decoding of the byte stream produced by token pieces.

/// Buffers incomplete UTF-8 sequences across tokens (byte-fallback tokens split multi-byte
/// characters) and replaces invalid bytes with U+FFFD so callers always get valid `&str`.
#[derive(Default)]
pub(crate) struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// Appends `bytes`, writing every complete character to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut String) {
        self.pending.extend_from_slice(bytes);
        let mut start = 0;
        while start < self.pending.len() {
            match std::str::from_utf8(&self.pending[start..]) {
                Ok(s) => {
                    out.push_str(s);
                    start = self.pending.len();
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // The prefix up to `valid_up_to` is valid UTF-8 by definition.
                    if let Ok(s) = std::str::from_utf8(&self.pending[start..start + valid]) {
                        out.push_str(s);
                    }
                    start += valid;
                    match e.error_len() {
                        // Incomplete sequence at the end: wait for more bytes.
                        None => break,
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            start += n;
                        }
                    }
                }
            }
        }
        self.pending.drain(..start);
    }

    /// Flushes a trailing incomplete sequence as U+FFFD.
    pub fn finish(&mut self, out: &mut String) {
        if !self.pending.is_empty() {
            self.pending.clear();
            out.push(char::REPLACEMENT_CHARACTER);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_invalid_bytes() {
        let mut s = Utf8Stream::default();
        let mut out = String::new();
        s.push(&[0xE2, 0x82], &mut out);
        assert_eq!(out, "");
        s.push(&[0xAC, b'a'], &mut out);
        assert_eq!(out, "€a");
        out.clear();
        s.push(&[0xFF, b'b', 0xC3], &mut out);
        assert_eq!(out, "\u{FFFD}b");
        out.clear();
        s.finish(&mut out);
        assert_eq!(out, "\u{FFFD}");
    }
}
