//! The crate's single error type.

use alloc::string::String;

/// Everything that can go wrong in the transparency log: parsing, proofs, signatures,
/// witness policy and (with `std`) the on-disk store.
///
/// Every variant has a stable machine-readable [`LogError::code`]; messages name what was
/// checked and what was found, never secret material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// A signed note does not follow c2sp.org/signed-note (encoding, separator, signature
    /// line syntax, key name).
    #[error("malformed signed note: {0}")]
    MalformedNote(&'static str),
    /// A signed note exceeds a parsing limit (total size, line length, signature count).
    #[error("signed note exceeds a limit: {0}")]
    NoteLimitExceeded(&'static str),
    /// A note signature from a known key failed to verify. The whole note is rejected, as
    /// c2sp.org/signed-note recommends.
    #[error("invalid note signature by known key {name}+{id:08x}")]
    NoteSignatureInvalid {
        /// Key name on the signature line.
        name: String,
        /// Key ID on the signature line.
        id: u32,
    },
    /// No signature on the note is from a known key.
    #[error("note has no signature from a known key")]
    NoteUnverified,
    /// A verifier key (`name+id+base64`) or private key string is malformed.
    #[error("malformed key: {0}")]
    MalformedKey(&'static str),
    /// A key names a signature type this implementation does not support.
    #[error("unsupported key type 0x{0:02x}")]
    UnsupportedKeyType(u8),
    /// A key string's ID is not the one computed from its name, type and public key.
    #[error("key ID does not match the key")]
    KeyIdMismatch,
    /// A key name is empty or contains a space or `+`.
    #[error("invalid key name")]
    InvalidKeyName,
    /// Two different keys with the same name and key ID were configured.
    #[error("ambiguous key {name}+{id:08x}: two keys share name and ID")]
    AmbiguousKey {
        /// Key name.
        name: String,
        /// Key ID.
        id: u32,
    },
    /// A checkpoint body does not follow c2sp.org/tlog-checkpoint.
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(&'static str),
    /// A log signature on the checkpoint failed to verify.
    #[error("checkpoint signature by the log key is invalid")]
    CheckpointSignatureInvalid,
    /// The checkpoint carries no signature from the log key.
    #[error("checkpoint is not signed by the log key")]
    CheckpointSignatureMissing,
    /// The checkpoint's origin line is not the expected one.
    #[error("checkpoint origin {got:?} is not the expected {expected:?}")]
    OriginMismatch {
        /// Origin expected by the verifier.
        expected: String,
        /// Origin found in the checkpoint.
        got: String,
    },
    /// A witness was asked about a log it is not configured for.
    #[error("unknown log origin {0:?}")]
    UnknownOrigin(String),
    /// A cosignature is not a well-formed c2sp.org/tlog-cosignature v1 signature.
    #[error("malformed cosignature: {0}")]
    MalformedCosignature(&'static str),
    /// A cosignature from a known witness key failed to verify.
    #[error("invalid cosignature by witness {name}+{id:08x}")]
    CosignatureInvalid {
        /// Witness key name.
        name: String,
        /// Witness key ID.
        id: u32,
    },
    /// Fewer trusted witnesses cosigned the checkpoint than the policy requires.
    #[error("checkpoint cosigned by {have} trusted witnesses, policy requires {need}")]
    NotEnoughWitnesses {
        /// Distinct trusted witnesses with a valid, acceptable cosignature.
        have: usize,
        /// Required by the policy.
        need: usize,
    },
    /// A witness policy is unusable (e.g. quorum larger than the number of witnesses).
    #[error("invalid policy: {0}")]
    InvalidPolicy(&'static str),
    /// An inclusion proof does not prove the leaf under the root.
    #[error("inclusion proof invalid: {0}")]
    InclusionProofInvalid(&'static str),
    /// A consistency proof does not prove that the old tree is a prefix of the new one.
    #[error("consistency proof invalid: {0}")]
    ConsistencyProofInvalid(&'static str),
    /// A leaf index is not below the tree size.
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange {
        /// Requested index.
        index: u64,
        /// Tree size.
        size: u64,
    },
    /// A tree size is invalid for the request (old larger than new, beyond the log's size).
    #[error("invalid tree size: {0}")]
    InvalidTreeSize(&'static str),
    /// Two checkpoints of the same size have different roots: the log presented a split
    /// view.
    #[error("fork detected: two different roots for tree size {size}")]
    ForkDetected {
        /// The tree size both checkpoints claim.
        size: u64,
    },
    /// A checkpoint is smaller than the one already cosigned or seen.
    #[error("checkpoint rollback: size {checkpoint_size} is below the known size {known_size}")]
    CheckpointRollback {
        /// Size already known (witness state or client's stored checkpoint).
        known_size: u64,
        /// Size of the presented checkpoint.
        checkpoint_size: u64,
        /// `old` size of the witness request, if any (selects the HTTP status).
        old_size: Option<u64>,
    },
    /// A witness request's `old` size is not the size the witness last cosigned.
    #[error("old size {old_size} does not match the witness's size {witness_size}")]
    OldSizeMismatch {
        /// Size in the request.
        old_size: u64,
        /// Size of the witness's latest cosigned checkpoint.
        witness_size: u64,
    },
    /// A witness `add-checkpoint` request body is malformed.
    #[error("malformed witness request: {0}")]
    MalformedWitnessRequest(&'static str),
    /// A tile path does not follow c2sp.org/tlog-tiles.
    #[error("malformed tile path: {0}")]
    MalformedTilePath(&'static str),
    /// A tile's bytes do not match its coordinates (length not a multiple of 32, wrong
    /// width, width out of range).
    #[error("malformed tile: {0}")]
    MalformedTile(&'static str),
    /// An entry bundle is malformed (truncated length prefix or entry, wrong entry count,
    /// trailing bytes).
    #[error("malformed entry bundle: {0}")]
    MalformedEntryBundle(&'static str),
    /// A tile needed for the computation is not available.
    #[error("tile not available: {0}")]
    TileMissing(String),
    /// An entry is longer than an entry bundle can carry (65535 bytes).
    #[error("entry of {0} bytes exceeds the 65535-byte limit of entry bundles")]
    EntryTooLarge(usize),
    /// Appending would overflow the tree size.
    #[error("log is full")]
    LogFull,
    /// A filesystem operation of the store failed.
    #[error("store I/O failed: {op} {path}: {message}")]
    StoreIo {
        /// What was being done.
        op: &'static str,
        /// Path involved.
        path: String,
        /// OS error text.
        message: String,
    },
    /// The store's files are inconsistent with its signed checkpoint (tampering, truncation,
    /// a foreign directory); the store refuses to use them.
    #[error("store is corrupt: {0}")]
    StoreCorrupt(String),
}

impl LogError {
    /// Stable machine-readable code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            LogError::MalformedNote(_) => "MALFORMED_NOTE",
            LogError::NoteLimitExceeded(_) => "NOTE_LIMIT_EXCEEDED",
            LogError::NoteSignatureInvalid { .. } => "NOTE_SIGNATURE_INVALID",
            LogError::NoteUnverified => "NOTE_UNVERIFIED",
            LogError::MalformedKey(_) => "MALFORMED_KEY",
            LogError::UnsupportedKeyType(_) => "UNSUPPORTED_KEY_TYPE",
            LogError::KeyIdMismatch => "KEY_ID_MISMATCH",
            LogError::InvalidKeyName => "INVALID_KEY_NAME",
            LogError::AmbiguousKey { .. } => "AMBIGUOUS_KEY",
            LogError::MalformedCheckpoint(_) => "MALFORMED_CHECKPOINT",
            LogError::CheckpointSignatureInvalid => "CHECKPOINT_SIGNATURE_INVALID",
            LogError::CheckpointSignatureMissing => "CHECKPOINT_SIGNATURE_MISSING",
            LogError::OriginMismatch { .. } => "ORIGIN_MISMATCH",
            LogError::UnknownOrigin(_) => "UNKNOWN_ORIGIN",
            LogError::MalformedCosignature(_) => "MALFORMED_COSIGNATURE",
            LogError::CosignatureInvalid { .. } => "COSIGNATURE_INVALID",
            LogError::NotEnoughWitnesses { .. } => "NOT_ENOUGH_WITNESSES",
            LogError::InvalidPolicy(_) => "INVALID_POLICY",
            LogError::InclusionProofInvalid(_) => "INCLUSION_PROOF_INVALID",
            LogError::ConsistencyProofInvalid(_) => "CONSISTENCY_PROOF_INVALID",
            LogError::IndexOutOfRange { .. } => "INDEX_OUT_OF_RANGE",
            LogError::InvalidTreeSize(_) => "INVALID_TREE_SIZE",
            LogError::ForkDetected { .. } => "FORK_DETECTED",
            LogError::CheckpointRollback { .. } => "CHECKPOINT_ROLLBACK",
            LogError::OldSizeMismatch { .. } => "OLD_SIZE_MISMATCH",
            LogError::MalformedWitnessRequest(_) => "MALFORMED_WITNESS_REQUEST",
            LogError::MalformedTilePath(_) => "MALFORMED_TILE_PATH",
            LogError::MalformedTile(_) => "MALFORMED_TILE",
            LogError::MalformedEntryBundle(_) => "MALFORMED_ENTRY_BUNDLE",
            LogError::TileMissing(_) => "TILE_MISSING",
            LogError::EntryTooLarge(_) => "ENTRY_TOO_LARGE",
            LogError::LogFull => "LOG_FULL",
            LogError::StoreIo { .. } => "STORE_IO",
            LogError::StoreCorrupt(_) => "STORE_CORRUPT",
        }
    }

    /// The HTTP status a c2sp.org/tlog-witness `add-checkpoint` endpoint answers with for
    /// this error (404 unknown origin, 403 no valid log signature, 400 bad request,
    /// 409 conflict, 422 bad consistency proof; 500 for anything else).
    ///
    /// For 409 the response body must be the witness's size in decimal and a newline
    /// (`text/x.tlog.size`): [`LogError::witness_conflict_size`].
    pub fn witness_http_status(&self) -> u16 {
        match self {
            LogError::UnknownOrigin(_) => 404,
            LogError::CheckpointSignatureInvalid
            | LogError::CheckpointSignatureMissing
            | LogError::NoteSignatureInvalid { .. }
            | LogError::NoteUnverified => 403,
            LogError::MalformedNote(_)
            | LogError::NoteLimitExceeded(_)
            | LogError::MalformedCheckpoint(_)
            | LogError::MalformedWitnessRequest(_)
            | LogError::InvalidTreeSize(_) => 400,
            LogError::CheckpointRollback {
                checkpoint_size,
                old_size: Some(old),
                ..
            } if old > checkpoint_size => 400,
            LogError::CheckpointRollback { .. }
            | LogError::OldSizeMismatch { .. }
            | LogError::ForkDetected { .. } => 409,
            LogError::ConsistencyProofInvalid(_) => 422,
            _ => 500,
        }
    }

    /// For errors answered with 409 Conflict by a witness, the witness's current size.
    pub fn witness_conflict_size(&self) -> Option<u64> {
        match self {
            LogError::OldSizeMismatch { witness_size, .. } => Some(*witness_size),
            LogError::CheckpointRollback { known_size, .. } => Some(*known_size),
            LogError::ForkDetected { size } => Some(*size),
            _ => None,
        }
    }
}
