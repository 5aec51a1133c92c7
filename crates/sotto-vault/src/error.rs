//! The crate's single error type.

/// Every way the vault refuses something. Each variant has a stable machine-readable
/// [`code`](VaultError::code). Messages never contain plaintext, keys or pairing codes; they
/// carry only numbers (versions, epochs, kinds) and fixed descriptions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// An account, credential or item id is empty or longer than [`crate::MAX_ID_LEN`].
    #[error("invalid id: {0}")]
    InvalidId(&'static str),
    /// Input ended before a complete structure was read.
    #[error("truncated input: {0}")]
    Truncated(&'static str),
    /// Structurally invalid input (wrong magic, trailing bytes, bad lengths, bad flags).
    #[error("malformed input: {0}")]
    Malformed(&'static str),
    /// A format version this implementation does not know.
    #[error("unsupported format version {0}")]
    UnsupportedFormat(u8),
    /// An item blob's length is not `header + padding bucket + tag`: truncated or extended.
    #[error("blob length {0} is not a valid padded size")]
    BadLength(usize),
    /// An item kind byte this implementation does not know.
    #[error("unknown item kind {0}")]
    UnknownItemKind(u8),
    /// The item body is larger than [`crate::item::MAX_BODY_LEN`].
    #[error("item body too large ({0} bytes)")]
    ItemTooLarge(usize),
    /// Item version 0 is reserved ("no item yet") and never sealed or accepted.
    #[error("item version 0 is reserved")]
    ReservedVersion,
    /// The item blob does not authenticate for this account, item id, kind, version,
    /// epoch and deleted flag (moved, swapped, bit-flipped or forged).
    #[error("item authentication failed")]
    ItemAuthFailed,
    /// The blob's (authenticated) kind is not the kind the caller expected at this id.
    #[error("item kind mismatch: expected {expected}, found {found}")]
    ItemKindMismatch {
        /// Expected kind byte.
        expected: u8,
        /// Kind byte in the blob.
        found: u8,
    },
    /// The blob's version is not the version the store claimed for it.
    #[error("item version mismatch: store claimed {claimed}, blob says {found}")]
    ItemVersionMismatch {
        /// Version the store listed.
        claimed: u64,
        /// Version in the blob.
        found: u64,
    },
    /// The blob names an account-key epoch this client does not hold (fetch and unwrap the
    /// credential's wrapped key for that epoch first).
    #[error("unknown key epoch {0}")]
    UnknownEpoch(u32),
    /// The decrypted padding or length prefix is inconsistent.
    #[error("invalid padding")]
    PaddingInvalid,
    /// The decrypted body is not a valid payload for its kind.
    #[error("invalid payload: {0}")]
    PayloadInvalid(&'static str),
    /// The store served an older version than one already accepted for this item.
    #[error("rollback detected: version {offered} is older than accepted version {seen}")]
    RollbackDetected {
        /// Highest version previously accepted.
        seen: u64,
        /// Version offered now.
        offered: u64,
    },
    /// The store served two different blobs for the same item version.
    #[error("equivocation: two different blobs for version {version}")]
    Equivocation {
        /// The version with two different blobs.
        version: u64,
    },
    /// A newer item version is encrypted under an older key epoch than a version already
    /// accepted (an attempt to reintroduce a retired key).
    #[error("epoch regression: version under epoch {offered} after epoch {seen}")]
    EpochRegression {
        /// Epoch of the accepted version.
        seen: u32,
        /// Epoch of the offered version.
        offered: u32,
    },
    /// A wrapped-key record is for another account.
    #[error("wrapped key is for another account")]
    WrappedKeyWrongAccount,
    /// A wrapped-key record is for another credential.
    #[error("wrapped key is for another credential")]
    WrappedKeyWrongCredential,
    /// A wrapped-key record is for another epoch than requested.
    #[error("wrapped key is for epoch {found}, expected {expected}")]
    WrappedKeyWrongEpoch {
        /// Requested epoch.
        expected: u32,
        /// Epoch in the record.
        found: u32,
    },
    /// A wrapped-key record does not authenticate under this credential's key.
    #[error("wrapped key authentication failed")]
    WrappedKeyAuthFailed,
    /// Two different keys were offered for the same epoch.
    #[error("conflicting account keys for epoch {0}")]
    EpochKeyConflict(u32),
    /// Key epoch 0 is reserved, and epochs are bounded.
    #[error("invalid key epoch {0}")]
    InvalidEpoch(u32),
    /// An X25519 public key of low order (the Diffie-Hellman result would be all zeros).
    #[error("weak X25519 public key")]
    WeakPublicKey,
    /// A pairing code that is not exactly [`crate::pairing::CODE_DIGITS`] decimal digits.
    #[error("pairing code must be 8 decimal digits")]
    PairingCodeInvalid,
    /// The pairing response does not authenticate: wrong code, a substituted device key, or
    /// a forged response. The session is over; start again with a fresh code.
    #[error("pairing authentication failed")]
    PairingAuthFailed,
    /// The new device's confirmation does not verify: it did not know the code or does not
    /// hold the key it announced. Do not add it.
    #[error("pairing confirmation failed")]
    PairingConfirmFailed,
    /// An order key that is not a valid fractional index.
    #[error("invalid order key")]
    OrderKeyInvalid,
    /// `key_between(a, b)` with `a >= b`.
    #[error("order keys out of order")]
    OrderKeysOutOfOrder,
    /// The order key space is exhausted at this end (never happens in practice).
    #[error("order key space exhausted")]
    OrderKeyExhausted,
    /// Persisted client state (seen versions) could not be decoded.
    #[error("invalid client state: {0}")]
    StateInvalid(&'static str),
}

impl VaultError {
    /// Stable machine-readable code (SCREAMING_SNAKE_CASE), for logs, UIs and tests.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidId(_) => "INVALID_ID",
            Self::Truncated(_) => "TRUNCATED",
            Self::Malformed(_) => "MALFORMED",
            Self::UnsupportedFormat(_) => "UNSUPPORTED_FORMAT",
            Self::BadLength(_) => "BAD_LENGTH",
            Self::UnknownItemKind(_) => "UNKNOWN_ITEM_KIND",
            Self::ItemTooLarge(_) => "ITEM_TOO_LARGE",
            Self::ReservedVersion => "RESERVED_VERSION",
            Self::ItemAuthFailed => "ITEM_AUTH_FAILED",
            Self::ItemKindMismatch { .. } => "ITEM_KIND_MISMATCH",
            Self::ItemVersionMismatch { .. } => "ITEM_VERSION_MISMATCH",
            Self::UnknownEpoch(_) => "UNKNOWN_EPOCH",
            Self::PaddingInvalid => "PADDING_INVALID",
            Self::PayloadInvalid(_) => "PAYLOAD_INVALID",
            Self::RollbackDetected { .. } => "ROLLBACK_DETECTED",
            Self::Equivocation { .. } => "EQUIVOCATION",
            Self::EpochRegression { .. } => "EPOCH_REGRESSION",
            Self::WrappedKeyWrongAccount => "WRAPPED_KEY_WRONG_ACCOUNT",
            Self::WrappedKeyWrongCredential => "WRAPPED_KEY_WRONG_CREDENTIAL",
            Self::WrappedKeyWrongEpoch { .. } => "WRAPPED_KEY_WRONG_EPOCH",
            Self::WrappedKeyAuthFailed => "WRAPPED_KEY_AUTH_FAILED",
            Self::EpochKeyConflict(_) => "EPOCH_KEY_CONFLICT",
            Self::InvalidEpoch(_) => "INVALID_EPOCH",
            Self::WeakPublicKey => "WEAK_PUBLIC_KEY",
            Self::PairingCodeInvalid => "PAIRING_CODE_INVALID",
            Self::PairingAuthFailed => "PAIRING_AUTH_FAILED",
            Self::PairingConfirmFailed => "PAIRING_CONFIRM_FAILED",
            Self::OrderKeyInvalid => "ORDER_KEY_INVALID",
            Self::OrderKeysOutOfOrder => "ORDER_KEYS_OUT_OF_ORDER",
            Self::OrderKeyExhausted => "ORDER_KEY_EXHAUSTED",
            Self::StateInvalid(_) => "STATE_INVALID",
        }
    }
}

/// Result alias for the crate.
pub type Result<T, E = VaultError> = core::result::Result<T, E>;
