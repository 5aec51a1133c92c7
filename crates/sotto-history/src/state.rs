//! The device's local state: a directory holding the root secret (mode 0600), the account
//! and credential ids and the store URL, and the vault's `SeenVersions`.
//!
//! Files (all written atomically: temporary file, fsync, rename; mode 0600):
//! - `root-secret`: the 32-byte device root secret, raw.
//! - `device.json`: `{"format":1,"store_url","account_id","credential_id","device_name"}`.
//! - `seen.json`: `SeenVersions::encode` (rewritten after every accepted item).

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use ed25519_dalek::SigningKey;
use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use sotto_vault::RootSecret;
use zeroize::Zeroizing;

use crate::error::{HistoryError, Result};

/// HKDF-SHA256 salt of the store-authentication key.
pub const STORE_AUTH_SALT: &[u8] = b"sotto-history/v1/device";
/// HKDF-SHA256 info of the store-authentication key (followed by one `0x00`).
pub const STORE_AUTH_INFO: &[u8] = b"sotto-history/v1/store-ed25519";

pub(crate) const ROOT_FILE: &str = "root-secret";
pub(crate) const DEVICE_FILE: &str = "device.json";
pub(crate) const SEEN_FILE: &str = "seen.json";

/// `device.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeviceState {
    /// Format, 1.
    pub format: u32,
    /// Store base URL (`http://host:port`).
    pub store_url: String,
    /// Store account id (32 lowercase hex digits).
    pub account_id: String,
    /// This device's store credential id (32 lowercase hex digits).
    pub credential_id: String,
    /// The name given to this device.
    pub device_name: String,
}

/// The Ed25519 key this device authenticates to the store with:
/// `seed = HKDF-SHA256(salt = "sotto-history/v1/device", ikm = root secret,
/// info = "sotto-history/v1/store-ed25519" || 0x00)`. It is independent of the vault's
/// keys (different salt), so the store's knowledge of the public key says nothing about them.
pub fn store_signing_key(root: &[u8; 32]) -> SigningKey {
    let hk = Hkdf::<Sha256>::new(Some(STORE_AUTH_SALT), root);
    let mut info = STORE_AUTH_INFO.to_vec();
    info.push(0);
    let mut seed = Zeroizing::new([0u8; 32]);
    hk.expand(&info, seed.as_mut())
        .expect("32 bytes is a valid HKDF length");
    SigningKey::from_bytes(&seed)
}

pub(crate) fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("OS randomness");
    b
}

pub(crate) fn fill_random(buf: &mut [u8]) {
    getrandom::fill(buf).expect("OS randomness");
}

/// Writes a file atomically with mode 0600, durably (fsync before the rename).
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    write_private_file(path, bytes, true)
}

/// Writes a file atomically with mode 0600; `durable` fsyncs it before the rename. Only the
/// blob cache skips the fsync: it is checked against `seen.json` on every use and rebuilt
/// when it lags behind, so losing it in a crash costs a complete listing, nothing more.
pub(crate) fn write_private_file(path: &Path, bytes: &[u8], durable: bool) -> Result<()> {
    let dir = path
        .parent()
        .ok_or(HistoryError::StateInvalid("bad path"))?;
    std::fs::create_dir_all(dir)?;
    let tmp: PathBuf = path.with_extension("tmp");
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        if durable {
            f.sync_all()?;
        }
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}

pub(crate) fn exists(dir: &Path) -> bool {
    dir.join(DEVICE_FILE).exists()
}

pub(crate) fn load(dir: &Path) -> Result<(DeviceState, [u8; 32])> {
    let dev = match std::fs::read(dir.join(DEVICE_FILE)) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(HistoryError::NoAccount),
        Err(e) => return Err(e.into()),
    };
    let state: DeviceState = serde_json::from_slice(&dev)
        .map_err(|_| HistoryError::StateInvalid("device.json is not valid"))?;
    if state.format != 1 {
        return Err(HistoryError::StateInvalid("unknown device.json format"));
    }
    let root = Zeroizing::new(std::fs::read(dir.join(ROOT_FILE))?);
    let root: [u8; 32] = root
        .as_slice()
        .try_into()
        .map_err(|_| HistoryError::StateInvalid("root-secret is not 32 bytes"))?;
    Ok((state, root))
}

pub(crate) fn root_secret(root: &[u8; 32]) -> RootSecret {
    RootSecret::from_bytes(*root)
}
