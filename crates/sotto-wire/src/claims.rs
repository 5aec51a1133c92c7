//! What the enclave claims about itself, bound into REPORT_DATA by [`crate::report_data`].
//!
//! Encoding (all lengths single bytes, strings UTF-8):
//! `u8 version (=1) || u8 len || model_id || [32] weights_sha256 || [32] tokenizer_sha256 ||
//! u8 len || backend || u8 len || enclave_version`. A digest of all zeros means "not known to
//! the enclave" (e.g. an upstream server whose weights the enclave did not load itself).

use crate::error::WireError;

/// The enclave's self-description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// Model id served (as in `/v1/models`).
    pub model_id: String,
    /// SHA-256 of the weights file the enclave loaded and hashed at start.
    pub weights_sha256: [u8; 32],
    /// SHA-256 of the tokenizer file.
    pub tokenizer_sha256: [u8; 32],
    /// Inference backend: `builtin` or `upstream`.
    pub backend: String,
    /// Enclave software version.
    pub enclave_version: String,
}

const VERSION: u8 = 1;

impl Claims {
    /// Canonical encoding.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let mut out = vec![VERSION];
        put_str(&mut out, &self.model_id)?;
        out.extend_from_slice(&self.weights_sha256);
        out.extend_from_slice(&self.tokenizer_sha256);
        put_str(&mut out, &self.backend)?;
        put_str(&mut out, &self.enclave_version)?;
        Ok(out)
    }

    /// Strict decoding (no trailing bytes).
    pub fn decode(b: &[u8]) -> Result<Self, WireError> {
        let mut r = b;
        let v = take(&mut r, 1)?[0];
        if v != VERSION {
            return Err(WireError::UnsupportedVersion(v));
        }
        let model_id = take_str(&mut r)?;
        let weights_sha256 = take(&mut r, 32)?.try_into().map_err(|_| bad())?;
        let tokenizer_sha256 = take(&mut r, 32)?.try_into().map_err(|_| bad())?;
        let backend = take_str(&mut r)?;
        let enclave_version = take_str(&mut r)?;
        if !r.is_empty() {
            return Err(bad());
        }
        Ok(Claims {
            model_id,
            weights_sha256,
            tokenizer_sha256,
            backend,
            enclave_version,
        })
    }
}

fn bad() -> WireError {
    WireError::MalformedHello("malformed claims")
}

fn put_str(out: &mut Vec<u8>, s: &str) -> Result<(), WireError> {
    let len = u8::try_from(s.len())
        .map_err(|_| WireError::InvalidOperation("claim string longer than 255 bytes"))?;
    out.push(len);
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn take<'a>(r: &mut &'a [u8], n: usize) -> Result<&'a [u8], WireError> {
    if r.len() < n {
        return Err(bad());
    }
    let (a, b) = r.split_at(n);
    *r = b;
    Ok(a)
}

fn take_str(r: &mut &[u8]) -> Result<String, WireError> {
    let n = take(r, 1)?[0] as usize;
    String::from_utf8(take(r, n)?.to_vec()).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_strictness() {
        let c = Claims {
            model_id: "stories260K".into(),
            weights_sha256: [1; 32],
            tokenizer_sha256: [2; 32],
            backend: "builtin".into(),
            enclave_version: "0.1.0".into(),
        };
        let b = c.encode().unwrap();
        assert_eq!(Claims::decode(&b).unwrap(), c);
        let mut t = b.clone();
        t.push(0);
        assert!(Claims::decode(&t).is_err());
        for n in 0..b.len() {
            assert!(Claims::decode(&b[..n]).is_err());
        }
        let mut v = b;
        v[0] = 2;
        assert_eq!(Claims::decode(&v), Err(WireError::UnsupportedVersion(2)));
    }
}
