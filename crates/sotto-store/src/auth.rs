//! Device-key challenge–response authentication and bearer tokens.
//!
//! A device asks for a challenge (32 random bytes, single use, short expiry), signs
//! [`auth_message`] with its Ed25519 key, and trades the signature for a bearer token: 32
//! random bytes, base64url without padding. The store keeps only SHA-256 of the token.

use base64ct::{Base64UrlUnpadded, Encoding};
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::{AccountId, CredentialId, StoreError};

/// Domain-separation label that starts every signed auth message.
pub const AUTH_LABEL: &[u8] = b"sotto-store-auth-v1";

/// The bytes a device signs to answer a challenge:
/// `"sotto-store-auth-v1" ‖ account (16 bytes) ‖ credential (16 bytes) ‖ challenge (32 bytes)`.
/// Every part has a fixed length, so the encoding is unambiguous.
pub fn auth_message(
    account: &AccountId,
    credential: &CredentialId,
    challenge: &[u8; 32],
) -> Vec<u8> {
    let mut m = Vec::with_capacity(AUTH_LABEL.len() + 64);
    m.extend_from_slice(AUTH_LABEL);
    m.extend_from_slice(&account.0);
    m.extend_from_slice(&credential.0);
    m.extend_from_slice(challenge);
    m
}

/// Parses a device public key: 32 bytes, a valid Ed25519 point, not of small order.
pub fn device_key(public_key: &[u8]) -> Result<VerifyingKey, StoreError> {
    let bytes: [u8; 32] = public_key
        .try_into()
        .map_err(|_| StoreError::InvalidPublicKey)?;
    let key = VerifyingKey::from_bytes(&bytes).map_err(|_| StoreError::InvalidPublicKey)?;
    if key.is_weak() {
        return Err(StoreError::InvalidPublicKey);
    }
    Ok(key)
}

/// Verifies a device's answer to a challenge (strict verification: no malleable or
/// small-order signatures).
pub fn verify_device_signature(
    public_key: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), StoreError> {
    let key = device_key(public_key)?;
    let sig: [u8; 64] = signature.try_into().map_err(|_| StoreError::BadSignature)?;
    key.verify_strict(message, &Signature::from_bytes(&sig))
        .map_err(|_| StoreError::BadSignature)
}

/// Fills `buf` from the operating system's random number generator.
pub(crate) fn fill_random(buf: &mut [u8]) -> Result<(), StoreError> {
    getrandom::fill(buf).map_err(|e| StoreError::storage(format_args!("getrandom: {e}")))
}

/// A fresh challenge.
pub(crate) fn new_challenge() -> Result<[u8; 32], StoreError> {
    let mut c = [0u8; 32];
    fill_random(&mut c)?;
    Ok(c)
}

/// A fresh bearer token and the hash the store keeps.
pub(crate) fn new_token() -> Result<(String, [u8; 32]), StoreError> {
    let mut raw = [0u8; 32];
    fill_random(&mut raw)?;
    let token = Base64UrlUnpadded::encode_string(&raw);
    let hash = token_hash(&token).ok_or(StoreError::InvalidToken)?;
    Ok((token, hash))
}

/// SHA-256 of a well-formed bearer token's 32 bytes; `None` when the token is malformed.
pub(crate) fn token_hash(token: &str) -> Option<[u8; 32]> {
    let mut raw = [0u8; 32];
    let decoded = Base64UrlUnpadded::decode(token, &mut raw).ok()?;
    if decoded.len() != 32 {
        return None;
    }
    let mut h = Sha256::new();
    h.update(b"sotto-store-token-v1");
    h.update(raw);
    Some(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_layout() {
        let m = auth_message(&AccountId([1; 16]), &CredentialId([2; 16]), &[3; 32]);
        assert_eq!(m.len(), AUTH_LABEL.len() + 64);
        assert!(m.starts_with(b"sotto-store-auth-v1"));
        assert_eq!(&m[19..35], &[1; 16]);
        assert_eq!(&m[35..51], &[2; 16]);
        assert_eq!(&m[51..], &[3; 32]);
    }

    #[test]
    fn tokens() {
        let (t, h) = new_token().unwrap();
        assert_eq!(t.len(), 43);
        assert_eq!(token_hash(&t), Some(h));
        assert_eq!(token_hash("short"), None);
        assert_eq!(token_hash(&format!("{t}A")), None);
        let (t2, _) = new_token().unwrap();
        assert_ne!(t, t2);
    }

    #[test]
    fn weak_and_invalid_keys() {
        assert!(matches!(
            device_key(&[0u8; 31]),
            Err(StoreError::InvalidPublicKey)
        ));
        // The identity point is of small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(matches!(
            device_key(&identity),
            Err(StoreError::InvalidPublicKey)
        ));
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        assert!(device_key(key.verifying_key().as_bytes()).is_ok());
    }
}
