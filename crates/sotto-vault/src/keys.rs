//! Key hierarchy: root secret → credential keys (KEK + X25519 wrapping key) → wrapped
//! copies of the per-epoch account keys. Byte layouts and labels: `docs/vault.md` §2–§3.

use core::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::codec::{Reader, check_id, labelled, put_id};
use crate::crypto::{NONCE_LEN, TAG_LEN, aead_open, aead_seal, hkdf32, x25519};
use crate::error::{Result, VaultError};

/// The input given to the WebAuthn PRF extension (`prf.eval.first`) is
/// `SHA-256(PRF_SALT_LABEL)`, see [`prf_salt`]. Fixed forever for format version 1: a
/// different salt gives a different root secret and so a different KEK.
pub const PRF_SALT_LABEL: &[u8] = b"sotto-vault-prf-salt-v1";

/// HKDF salt for root secret → credential keys.
pub const LABEL_ROOT_SALT: &[u8] = b"sotto-vault/v1/root";
/// HKDF info label for the key-encryption key.
pub const LABEL_KEK: &[u8] = b"sotto-vault/v1/kek";
/// HKDF info label for the credential's X25519 wrapping secret.
pub const LABEL_CREDENTIAL_X25519: &[u8] = b"sotto-vault/v1/credential-x25519";
/// Associated-data label of wrapped-key records.
pub const LABEL_WRAPPED_KEY_AD: &[u8] = b"sotto-vault/v1/wrapped-key-ad";
/// HKDF info label for the key of a record sealed to an X25519 public key.
pub const LABEL_SEAL_KEY: &[u8] = b"sotto-vault/v1/seal-key";

/// Magic of a wrapped-key record.
pub const WRAPPED_KEY_MAGIC: &[u8; 4] = b"SVWK";
/// Wrapped-key record format version.
pub const WRAPPED_KEY_FORMAT: u8 = 1;
const WRAPPED_CT_LEN: usize = 32 + TAG_LEN;

/// `SHA-256("sotto-vault-prf-salt-v1")`: the PRF input a browser passes to
/// `navigator.credentials.get({ extensions: { prf: { eval: { first } } } })`. (The browser
/// then hashes it again with the `"WebAuthn PRF"` context before it reaches the
/// authenticator's hmac-secret; the 32-byte PRF result is the root secret.)
pub fn prf_salt() -> [u8; 32] {
    Sha256::digest(PRF_SALT_LABEL).into()
}

/// A credential's 32-byte root secret: a passkey's PRF output on [`prf_salt`], or a
/// command-line device secret (32 random bytes kept in the device's local state).
pub struct RootSecret(Zeroizing<[u8; 32]>);

impl RootSecret {
    /// Wraps 32 secret bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        RootSecret(Zeroizing::new(bytes))
    }

    /// A passkey's root secret: the 32-byte WebAuthn PRF result
    /// (`clientExtensionResults.prf.results.first`) of an assertion whose
    /// `extensions.prf.eval.first` was [`prf_salt`]. Same as [`from_bytes`](Self::from_bytes);
    /// named so that callers say where the bytes come from. The PRF result never leaves the
    /// client (the store refuses a WebAuthn response that carries it).
    pub fn from_prf_output(prf_first: [u8; 32]) -> Self {
        Self::from_bytes(prf_first)
    }

    /// From a slice that must be exactly 32 bytes (a PRF result).
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        let a: [u8; 32] = bytes
            .try_into()
            .map_err(|_| VaultError::Malformed("root secret must be 32 bytes"))?;
        Ok(Self::from_bytes(a))
    }
}

impl fmt::Debug for RootSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RootSecret(<redacted>)")
    }
}

/// One epoch's account key: 32 random bytes that item keys are derived from. Epochs start
/// at 1 and grow by one at every rotation.
#[derive(Clone)]
pub struct AccountKey {
    epoch: u32,
    key: Zeroizing<[u8; 32]>,
}

impl AccountKey {
    /// An account key for `epoch` (1..=u32::MAX-1) from 32 caller-supplied random bytes.
    pub fn new(epoch: u32, key: [u8; 32]) -> Result<Self> {
        if epoch == 0 || epoch == u32::MAX {
            return Err(VaultError::InvalidEpoch(epoch));
        }
        Ok(AccountKey {
            epoch,
            key: Zeroizing::new(key),
        })
    }

    /// The key epoch.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.key
    }

    /// Constant-time equality of epoch and key.
    pub(crate) fn same_as(&self, other: &AccountKey) -> bool {
        self.epoch == other.epoch && bool::from(self.key.ct_eq(other.key.as_ref()))
    }
}

impl fmt::Debug for AccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountKey")
            .field("epoch", &self.epoch)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// What the store may know about a credential and what another device needs to wrap an
/// account key for it: ids and the X25519 wrapping public key. Other devices must take it
/// from an authenticated source (the pairing transcript, or the encrypted device directory
/// item), never from the store in the clear.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialPublic {
    /// Account id.
    #[serde(with = "crate::model::hex_bytes")]
    pub account_id: Vec<u8>,
    /// Credential id (a device id, or a hash of the WebAuthn credential id).
    #[serde(with = "crate::model::hex_bytes")]
    pub credential_id: Vec<u8>,
    /// X25519 public key of the credential's wrapping key.
    #[serde(with = "crate::model::hex_array")]
    pub wrap_public: [u8; 32],
}

/// Keys one credential derives from its root secret for one account: the symmetric
/// key-encryption key (wraps account keys for itself) and an X25519 key pair (other
/// devices seal account keys to its public half during rotation and pairing).
pub struct CredentialKeys {
    account_id: Vec<u8>,
    credential_id: Vec<u8>,
    kek: Zeroizing<[u8; 32]>,
    wrap_secret: x25519_dalek::StaticSecret,
    wrap_public: [u8; 32],
}

impl fmt::Debug for CredentialKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialKeys")
            .field("account_id", &hex::encode(&self.account_id))
            .field("credential_id", &hex::encode(&self.credential_id))
            .field("wrap_public", &hex::encode(self.wrap_public))
            .field("kek", &"<redacted>")
            .finish()
    }
}

fn credential_info(label: &[u8], account_id: &[u8], credential_id: &[u8]) -> Vec<u8> {
    let mut info = labelled(label);
    put_id(&mut info, account_id);
    put_id(&mut info, credential_id);
    info
}

impl CredentialKeys {
    /// Derives a credential's keys for an account:
    /// `KEK = HKDF-SHA256(salt = "sotto-vault/v1/root", ikm = root, info = "sotto-vault/v1/kek" || 0x00 || id(account) || id(credential))`,
    /// and the X25519 secret likewise with `"sotto-vault/v1/credential-x25519"`.
    pub fn derive(root: &RootSecret, account_id: &[u8], credential_id: &[u8]) -> Result<Self> {
        check_id(account_id, "account id")?;
        check_id(credential_id, "credential id")?;
        let kek = hkdf32(
            LABEL_ROOT_SALT,
            root.0.as_ref(),
            &credential_info(LABEL_KEK, account_id, credential_id),
        );
        let x = hkdf32(
            LABEL_ROOT_SALT,
            root.0.as_ref(),
            &credential_info(LABEL_CREDENTIAL_X25519, account_id, credential_id),
        );
        let wrap_secret = x25519_dalek::StaticSecret::from(*x);
        let wrap_public = x25519_dalek::PublicKey::from(&wrap_secret).to_bytes();
        Ok(CredentialKeys {
            account_id: account_id.to_vec(),
            credential_id: credential_id.to_vec(),
            kek,
            wrap_secret,
            wrap_public,
        })
    }

    /// The account id these keys were derived for.
    pub fn account_id(&self) -> &[u8] {
        &self.account_id
    }

    /// The credential id these keys were derived for.
    pub fn credential_id(&self) -> &[u8] {
        &self.credential_id
    }

    /// The public half: what other devices wrap to.
    pub fn public(&self) -> CredentialPublic {
        CredentialPublic {
            account_id: self.account_id.clone(),
            credential_id: self.credential_id.clone(),
            wrap_public: self.wrap_public,
        }
    }

    pub(crate) fn wrap_secret(&self) -> &x25519_dalek::StaticSecret {
        &self.wrap_secret
    }

    /// Wraps an account key under this credential's KEK (record algorithm 1), with a
    /// 24-byte random nonce from the caller.
    pub fn wrap(&self, key: &AccountKey, nonce: [u8; NONCE_LEN]) -> Vec<u8> {
        let mut rec = record_header(
            WrapAlg::Kek,
            key.epoch,
            &self.account_id,
            &self.credential_id,
            None,
        );
        let aad = record_aad(&rec);
        rec.extend_from_slice(&nonce);
        rec.extend_from_slice(&aead_seal(&self.kek, &nonce, &aad, key.bytes()));
        rec
    }

    /// Unwraps a record (algorithm 1 or 2) addressed to this credential. The record's
    /// account, credential and (if given) epoch must be the expected ones, and it must
    /// authenticate under associated data rebuilt from the *expected* values.
    pub fn unwrap(&self, record: &[u8], expected_epoch: Option<u32>) -> Result<AccountKey> {
        let r = parse_record(record)?;
        if r.info.account_id != self.account_id {
            return Err(VaultError::WrappedKeyWrongAccount);
        }
        if r.info.credential_id != self.credential_id {
            return Err(VaultError::WrappedKeyWrongCredential);
        }
        if let Some(expected) = expected_epoch
            && expected != r.info.epoch
        {
            return Err(VaultError::WrappedKeyWrongEpoch {
                expected,
                found: r.info.epoch,
            });
        }
        let header = record_header(
            r.info.alg,
            r.info.epoch,
            &self.account_id,
            &self.credential_id,
            r.ephemeral.as_ref(),
        );
        let aad = record_aad(&header);
        let key = match (r.info.alg, r.ephemeral) {
            (WrapAlg::Kek, _) => Zeroizing::new(*self.kek),
            (WrapAlg::Sealed, Some(eph)) => {
                let dh = x25519(&self.wrap_secret, &eph)?;
                seal_key(&dh, &eph, &self.wrap_public)
            }
            (WrapAlg::Sealed, None) => unreachable!("parse_record reads the ephemeral key"),
        };
        let pt = aead_open(&key, &r.nonce, &aad, r.ciphertext)
            .ok_or(VaultError::WrappedKeyAuthFailed)?;
        let bytes: [u8; 32] = pt
            .as_slice()
            .try_into()
            .map_err(|_| VaultError::WrappedKeyAuthFailed)?;
        AccountKey::new(r.info.epoch, bytes)
    }
}

/// Seals an account key to another credential's X25519 wrapping public key (record
/// algorithm 2): ephemeral-static X25519, HKDF-SHA256, XChaCha20-Poly1305. Used when
/// rotating (the rotating device cannot derive other credentials' KEKs). `ephemeral` and
/// `nonce` are fresh random bytes from the caller. The recipient must come from an
/// authenticated source (see [`CredentialPublic`]).
pub fn seal_account_key(
    recipient: &CredentialPublic,
    key: &AccountKey,
    ephemeral: [u8; 32],
    nonce: [u8; NONCE_LEN],
) -> Result<Vec<u8>> {
    check_id(&recipient.account_id, "account id")?;
    check_id(&recipient.credential_id, "credential id")?;
    let eph_secret = x25519_dalek::StaticSecret::from(ephemeral);
    let eph_public = x25519_dalek::PublicKey::from(&eph_secret).to_bytes();
    let dh = x25519(&eph_secret, &recipient.wrap_public)?;
    let k = seal_key(&dh, &eph_public, &recipient.wrap_public);
    let mut rec = record_header(
        WrapAlg::Sealed,
        key.epoch,
        &recipient.account_id,
        &recipient.credential_id,
        Some(&eph_public),
    );
    let aad = record_aad(&rec);
    rec.extend_from_slice(&nonce);
    rec.extend_from_slice(&aead_seal(&k, &nonce, &aad, key.bytes()));
    Ok(rec)
}

/// `HKDF-SHA256(salt = eph_pub || recipient_pub, ikm = X25519 result, info = "sotto-vault/v1/seal-key" || 0x00)`.
fn seal_key(dh: &[u8; 32], eph_public: &[u8; 32], recipient: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(eph_public);
    salt[32..].copy_from_slice(recipient);
    hkdf32(&salt, dh, &labelled(LABEL_SEAL_KEY))
}

/// How a wrapped-key record protects the account key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WrapAlg {
    /// 1: XChaCha20-Poly1305 under the credential's own KEK.
    Kek,
    /// 2: sealed to the credential's X25519 wrapping public key by another device.
    Sealed,
}

impl WrapAlg {
    fn byte(self) -> u8 {
        match self {
            WrapAlg::Kek => 1,
            WrapAlg::Sealed => 2,
        }
    }
}

/// The clear header of a wrapped-key record, **unauthenticated** until
/// [`CredentialKeys::unwrap`] succeeds: use it only to route records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedKeyInfo {
    /// Wrapping algorithm.
    pub alg: WrapAlg,
    /// Account-key epoch.
    pub epoch: u32,
    /// Account id.
    pub account_id: Vec<u8>,
    /// Credential id.
    pub credential_id: Vec<u8>,
}

/// Parses a wrapped-key record's header (no authentication).
pub fn parse_wrapped_key(record: &[u8]) -> Result<WrappedKeyInfo> {
    Ok(parse_record(record)?.info)
}

struct ParsedRecord<'a> {
    info: WrappedKeyInfo,
    ephemeral: Option<[u8; 32]>,
    nonce: [u8; NONCE_LEN],
    ciphertext: &'a [u8],
}

fn parse_record(record: &[u8]) -> Result<ParsedRecord<'_>> {
    let mut r = Reader::new(record, "wrapped key");
    if r.take(4)? != WRAPPED_KEY_MAGIC {
        return Err(VaultError::Malformed("not a wrapped-key record"));
    }
    let format = r.u8()?;
    if format != WRAPPED_KEY_FORMAT {
        return Err(VaultError::UnsupportedFormat(format));
    }
    let alg = match r.u8()? {
        1 => WrapAlg::Kek,
        2 => WrapAlg::Sealed,
        _ => return Err(VaultError::Malformed("unknown wrap algorithm")),
    };
    let epoch = r.u32()?;
    if epoch == 0 || epoch == u32::MAX {
        return Err(VaultError::InvalidEpoch(epoch));
    }
    let account_id = r.id()?.to_vec();
    let credential_id = r.id()?.to_vec();
    let ephemeral = match alg {
        WrapAlg::Kek => None,
        WrapAlg::Sealed => Some(r.array::<32>()?),
    };
    let nonce = r.array::<NONCE_LEN>()?;
    let ciphertext = r.take(WRAPPED_CT_LEN)?;
    r.finish()?;
    Ok(ParsedRecord {
        info: WrappedKeyInfo {
            alg,
            epoch,
            account_id,
            credential_id,
        },
        ephemeral,
        nonce,
        ciphertext,
    })
}

/// `"SVWK" || 0x01 || alg || u32 epoch || id(account) || id(credential) [|| eph_pub]`.
fn record_header(
    alg: WrapAlg,
    epoch: u32,
    account_id: &[u8],
    credential_id: &[u8],
    ephemeral: Option<&[u8; 32]>,
) -> Vec<u8> {
    let mut h = Vec::with_capacity(4 + 2 + 4 + 4 + account_id.len() + credential_id.len() + 32);
    h.extend_from_slice(WRAPPED_KEY_MAGIC);
    h.push(WRAPPED_KEY_FORMAT);
    h.push(alg.byte());
    h.extend_from_slice(&epoch.to_be_bytes());
    put_id(&mut h, account_id);
    put_id(&mut h, credential_id);
    if let Some(e) = ephemeral {
        h.extend_from_slice(e);
    }
    h
}

fn record_aad(header: &[u8]) -> Vec<u8> {
    let mut aad = labelled(LABEL_WRAPPED_KEY_AD);
    aad.extend_from_slice(header);
    aad
}
