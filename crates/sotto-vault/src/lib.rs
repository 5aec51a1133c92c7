//! Sans-I/O client-side vault for Sotto's encrypted history.
//!
//! The store (the operator) sees only opaque ids, version numbers, padded sizes and
//! ciphertext, and is treated as an adversary that reads every byte and may replay,
//! reorder, truncate, drop or swap anything. This crate holds all client-side cryptography
//! and performs no I/O: every random byte and every timestamp is passed in by the caller,
//! so it compiles for `wasm32-unknown-unknown` and its outputs are reproducible (test
//! vectors in `docs/vault.md`).
//!
//! - [`keys`]: root secret (passkey PRF output on [`prf_salt`], or a device secret) →
//!   [`CredentialKeys`] (KEK + X25519 wrapping key) → wrapped copies of each epoch's
//!   [`AccountKey`], one per credential.
//! - [`Vault`]: the account's key ring; seals and opens padded item blobs whose
//!   associated data binds account, item id, kind, version, epoch and the deleted flag;
//!   rotation after a device is removed.
//! - [`SeenVersions`]: rollback, equivocation and withholding detection.
//! - [`pairing`]: adding a device with an 8-digit code (SPAKE2 + X25519 + transcript).
//! - [`model`], [`merge`], [`order`]: the data inside blobs, three-way merges of concurrent
//!   edits, fractional-index order keys.
//!
//! Errors: one enum, [`VaultError`], with stable [`code`](VaultError::code)s.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod codec;
mod crypto;
mod error;
pub mod item;
pub mod keys;
pub mod merge;
pub mod model;
pub mod order;
pub mod pairing;
mod seen;

pub use error::{Result, VaultError};
pub use item::{ItemHeader, ItemKind, OpenedItem, Rotation, Vault, parse_item_header};
pub use keys::{
    AccountKey, CredentialKeys, CredentialPublic, RootSecret, WrapAlg, WrappedKeyInfo,
    parse_wrapped_key, prf_salt, seal_account_key,
};
pub use merge::{merge_conversation, merge_folder};
pub use model::{
    Conversation, CredentialKind, DeviceDirectory, DeviceEntry, Folder, Message, Payload, Role,
    Settings,
};
pub use order::key_between;
pub use pairing::{ApproveRandomness, Paired, PairingCode, PendingApproval, Requester, approve};
pub use seen::{Freshness, SeenVersions, SyncFinding};

/// Longest account, credential or item id, in bytes (ids are length-prefixed with a `u16`).
pub const MAX_ID_LEN: usize = 1024;
/// XChaCha20-Poly1305 nonce length: every seal takes this many fresh random bytes.
pub const NONCE_LEN: usize = 24;
