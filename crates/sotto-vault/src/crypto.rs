//! Thin wrappers over the RustCrypto primitives (no primitive is implemented here):
//! XChaCha20-Poly1305 (`chacha20poly1305`), HKDF-SHA256 (`hkdf`), X25519 (`x25519-dalek`).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

/// Poly1305 tag length.
pub(crate) const TAG_LEN: usize = 16;
/// XChaCha20 nonce length.
pub(crate) const NONCE_LEN: usize = 24;

/// XChaCha20-Poly1305 encryption.
pub(crate) fn aead_seal(
    key: &[u8; 32],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    msg: &[u8],
) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new(key.into());
    cipher
        .encrypt(XNonce::from_slice(nonce), Payload { msg, aad })
        // Only fails for messages beyond the cipher's 256 GiB limit; callers bound sizes.
        .expect("XChaCha20-Poly1305 encryption of a bounded message")
}

/// XChaCha20-Poly1305 decryption; `None` if the tag does not verify.
pub(crate) fn aead_open(
    key: &[u8; 32],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    ct: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    let cipher = XChaCha20Poly1305::new(key.into());
    cipher
        .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
        .ok()
        .map(Zeroizing::new)
}

/// HKDF-SHA256 extract(salt, ikm) then expand(info) to 32 bytes.
pub(crate) fn hkdf32(salt: &[u8], ikm: &[u8], info: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand(info, out.as_mut())
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    out
}

/// X25519 with a check that the result is contributory (the peer key is not of low order).
pub(crate) fn x25519(
    secret: &x25519_dalek::StaticSecret,
    peer: &[u8; 32],
) -> crate::Result<Zeroizing<[u8; 32]>> {
    let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(*peer));
    if !shared.was_contributory() {
        return Err(crate::VaultError::WeakPublicKey);
    }
    Ok(Zeroizing::new(shared.to_bytes()))
}
