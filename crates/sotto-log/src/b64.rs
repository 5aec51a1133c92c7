//! Standard padded base64 (RFC 4648 section 4), strict: only the canonical encoding of a
//! byte string is accepted (padding present, unused trailing bits zero), so every value has
//! exactly one textual form.

use alloc::string::String;
use alloc::vec::Vec;

use base64ct::{Base64, Encoding};

pub(crate) fn encode(bytes: &[u8]) -> String {
    Base64::encode_string(bytes)
}

pub(crate) fn decode(s: &str) -> Option<Vec<u8>> {
    let v = Base64::decode_vec(s).ok()?;
    // Reject non-canonical encodings (non-zero unused bits) by re-encoding.
    if Base64::encode_string(&v) != s {
        return None;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    #[test]
    fn strict() {
        assert_eq!(super::decode("AA==").as_deref(), Some(&[0u8][..]));
        assert_eq!(super::decode("AB=="), None); // non-zero unused bits
        assert_eq!(super::decode("AA"), None); // missing padding
        assert_eq!(super::decode("A A="), None);
        assert_eq!(super::decode("").as_deref(), Some(&[][..]));
    }
}
