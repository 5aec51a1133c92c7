//! The device's local cache of accepted item blobs (still encrypted) and its sync cursor, so
//! a sync fetches only what changed since the last one.
//!
//! Layout under `DIR/cache/`: `items/{item id}` = `u64 BE version || blob` for the newest
//! accepted version of each item, and `cursor` = the store's sequence number the cache is
//! complete up to (ASCII decimal). The blobs are the store's ciphertext: nothing here is
//! plaintext, and every cached blob is opened and checked again on use.
//!
//! The cache is an optimisation only. It is written after `seen.json` (the security state),
//! so after a crash it may lag behind; the client detects that (an item this device accepted
//! whose cached copy is missing or at another version) and falls back to a complete listing.

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::state::{write_private, write_private_file};

pub(crate) struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub(crate) fn new(state_dir: &Path) -> Self {
        Cache {
            dir: state_dir.join("cache"),
        }
    }

    fn item_path(&self, id: &str) -> PathBuf {
        // Item ids are validated ([A-Za-z0-9_-], at most 128 bytes) before they get here.
        self.dir.join("items").join(id)
    }

    /// The cursor, if the cache is usable; `None` when absent or unreadable.
    pub(crate) fn cursor(&self) -> Option<u64> {
        let text = std::fs::read_to_string(self.dir.join("cursor")).ok()?;
        text.trim().parse().ok()
    }

    /// Records that the cache holds every change up to `seq`.
    pub(crate) fn set_cursor(&self, seq: u64) -> Result<()> {
        write_private(&self.dir.join("cursor"), format!("{seq}\n").as_bytes())
    }

    /// Stores the newest accepted blob of an item.
    pub(crate) fn put(&self, id: &str, version: u64, blob: &[u8]) -> Result<()> {
        let mut bytes = Vec::with_capacity(8 + blob.len());
        bytes.extend_from_slice(&version.to_be_bytes());
        bytes.extend_from_slice(blob);
        write_private_file(&self.item_path(id), &bytes, false)
    }

    /// The cached `(version, blob)` of an item; `None` when absent or unreadable.
    pub(crate) fn get(&self, id: &str) -> Option<(u64, Vec<u8>)> {
        let bytes = std::fs::read(self.item_path(id)).ok()?;
        let (v, blob) = bytes.split_first_chunk::<8>()?;
        Some((u64::from_be_bytes(*v), blob.to_vec()))
    }

    /// Removes an item's cached blob (a missing one is fine).
    pub(crate) fn remove(&self, id: &str) -> Result<()> {
        match std::fs::remove_file(self.item_path(id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Drops the whole cache (before a complete listing rebuilds it).
    pub(crate) fn clear(&self) -> Result<()> {
        match std::fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}
