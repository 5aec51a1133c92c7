//! # sotto-log
//!
//! The transparency log for Sotto release manifests, following the C2SP specifications:
//!
//! - [`hash`]: RFC 6962 Merkle tree hashing (SHA-256).
//! - [`proof`]: inclusion and consistency proofs: generation from any [`HashReader`]
//!   (RFC 6962 section 2.1) and verification (RFC 9162 sections 2.1.3.2 and 2.1.4.2).
//! - [`note`]: c2sp.org/signed-note: notes, Ed25519 keys in the vkey format, verification
//!   against a set of known keys.
//! - [`checkpoint`]: c2sp.org/tlog-checkpoint bodies.
//! - [`cosignature`]: c2sp.org/tlog-cosignature (Ed25519, v1) and the client policy "signed
//!   by the log and cosigned by at least N trusted witnesses".
//! - [`tiles`]: c2sp.org/tlog-tiles paths, tiles and entry bundles; proofs computed from
//!   fetched tiles.
//! - [`witness`]: the witness state machine (c2sp.org/tlog-witness `add-checkpoint`).
//! - [`audit`](mod@audit): the monitor: recompute the tree from the published files, report
//!   discrepancies as typed findings.
//! - [`store`] (feature `std`, on by default): a durable on-disk log laid out as tiles.
//!
//! Everything but [`store`] is sans-I/O: no filesystem, network or clock (time is a
//! parameter), no randomness (keys come from caller-supplied seeds). Without the `std`
//! feature the crate is `no_std` + `alloc` and builds for `wasm32-unknown-unknown`.
//!
//! Errors are one enum, [`LogError`], with stable codes ([`LogError::code`]).
//!
//! ```
//! use sotto_log::{
//!     Checkpoint, CheckpointPolicy, Cosigner, Ed25519Signer, MemoryTree, inclusion_proof,
//!     leaf_hash, verify_inclusion,
//! };
//!
//! // The log and a witness (seeds come from the caller's RNG or key store).
//! let log = Ed25519Signer::from_seed("example.com/log", &[1; 32])?;
//! let witness = Cosigner::from_seed("witness.example", &[2; 32])?;
//! let mut tree = MemoryTree::new();
//! for manifest in [&b"manifest 0"[..], b"manifest 1"] {
//!     tree.push(leaf_hash(manifest));
//! }
//! let checkpoint = Checkpoint::new("example.com/log", tree.size(), tree.root())?;
//! let mut note = checkpoint.sign(&log)?;
//! note.add_signature(witness.cosign(&checkpoint, 1_700_000_000)?);
//!
//! // A client: checkpoint signed by the log and one trusted witness, then inclusion.
//! let policy = CheckpointPolicy::new("example.com/log", log.verifier_key())?
//!     .with_witnesses(vec![witness.verifier_key()], 1)?;
//! let verified = policy.verify(&note.to_bytes(), 1_700_000_000)?;
//! let (size, root) = (verified.checkpoint.size(), *verified.checkpoint.root());
//! let proof = inclusion_proof(&tree, 1, size)?;
//! verify_inclusion(&leaf_hash(b"manifest 1"), 1, size, &proof, &root)?;
//! # Ok::<(), sotto_log::LogError>(())
//! ```
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod audit;
mod b64;
pub mod checkpoint;
pub mod cosignature;
mod error;
pub mod hash;
pub mod note;
pub mod proof;
#[cfg(feature = "std")]
pub mod store;
pub mod tiles;
pub mod witness;

pub use audit::{AuditReport, Finding, TileFetcher, audit};
pub use checkpoint::{Checkpoint, open_checkpoint};
pub use cosignature::{CheckpointPolicy, Cosigner, VerifiedCheckpoint, WitnessCosignature};
pub use error::LogError;
pub use hash::{Hash, empty_root, leaf_hash, node_hash};
pub use note::{Ed25519Signer, KeySet, KeyType, Note, NoteLimits, NoteSignature, VerifierKey};
pub use proof::{
    HashReader, MemoryTree, NodeId, consistency_proof, inclusion_proof, verify_consistency,
    verify_inclusion,
};
#[cfg(feature = "std")]
pub use store::{DirFetcher, Log};
pub use tiles::{Tile, TileBuilder, TileKind, TileSet};
pub use witness::{AddCheckpointRequest, PendingCosignature, TreeHead, Witness};
