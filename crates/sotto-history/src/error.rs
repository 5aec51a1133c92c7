//! Errors with stable codes. Messages never contain plaintext (titles, messages, folder
//! names), keys or tokens: only codes, ids, versions and the store's own error codes.

use sotto_vault::{SyncFinding, VaultError};

/// Result alias.
pub type Result<T> = std::result::Result<T, HistoryError>;

/// Every failure of the history client.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// Local state directory could not be read or written.
    #[error("IO: {0}")]
    Io(String),
    /// No account in the state directory.
    #[error("NO_ACCOUNT: no history account in this state directory (run `sotto account create`)")]
    NoAccount,
    /// An account already exists in the state directory.
    #[error("ACCOUNT_EXISTS: this state directory already holds a history account")]
    AccountExists,
    /// The local state is corrupt or of an unknown format.
    #[error("STATE_INVALID: {0}")]
    StateInvalid(&'static str),
    /// The store could not be reached.
    #[error("STORE_UNREACHABLE: {0}")]
    Unreachable(String),
    /// The store refused a request with an error of its own.
    #[error("STORE_ERROR: HTTP {status} {code}")]
    Store {
        /// HTTP status.
        status: u16,
        /// The store's error code (`docs/store.md`).
        code: String,
    },
    /// The store answered something that does not follow the protocol.
    #[error("STORE_PROTOCOL: {0}")]
    Protocol(&'static str),
    /// The vault refused a blob, a wrapped key or local state (rollback, swap, truncation…).
    #[error("{code}: {err}", code = .0.code(), err = .0)]
    Vault(#[from] VaultError),
    /// The store's listing contradicts what this client accepted before.
    #[error("{code}: the store's listing contradicts this device's history ({n} finding(s))", code = sync_code(.0), n = .0.len())]
    Sync(Vec<SyncFinding>),
    /// The store holds no wrapped account key for this device (removed, or withheld).
    #[error("WRAPPED_KEY_MISSING: the store holds no account key for this device")]
    WrappedKeyMissing,
    /// No such conversation, folder or device.
    #[error("NOT_FOUND: no {0} with that id")]
    NotFound(&'static str),
    /// The item was deleted.
    #[error("ITEM_DELETED: that item was deleted")]
    Deleted,
    /// A write kept conflicting with other devices.
    #[error("CONFLICT_RETRIES_EXHAUSTED: the item kept changing on the store")]
    ConflictRetriesExhausted,
    /// The existing device refused the pairing (its confirmation check failed, or it
    /// rejected the request).
    #[error("PAIRING_REJECTED: the existing device did not approve this device")]
    PairingRejected,
    /// The other device did not answer in time.
    #[error("PAIRING_TIMEOUT: the other device did not answer in time")]
    PairingTimeout,
    /// The store key in a pairing slot is not the one the request commits to (the store
    /// substituted it); nothing was sent.
    #[error("PAIRING_KEY_MISMATCH: the pairing slot's key does not match its request")]
    PairingKeyMismatch,
    /// A bad argument (id, name, position).
    #[error("INVALID_ARGUMENT: {0}")]
    InvalidArgument(&'static str),
}

fn sync_code(f: &[SyncFinding]) -> &'static str {
    f.first().map(|f| f.code()).unwrap_or("SYNC")
}

impl HistoryError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            HistoryError::Io(_) => "IO",
            HistoryError::NoAccount => "NO_ACCOUNT",
            HistoryError::AccountExists => "ACCOUNT_EXISTS",
            HistoryError::StateInvalid(_) => "STATE_INVALID",
            HistoryError::Unreachable(_) => "STORE_UNREACHABLE",
            HistoryError::Store { .. } => "STORE_ERROR",
            HistoryError::Protocol(_) => "STORE_PROTOCOL",
            HistoryError::Vault(v) => v.code(),
            HistoryError::Sync(f) => sync_code(f),
            HistoryError::WrappedKeyMissing => "WRAPPED_KEY_MISSING",
            HistoryError::NotFound(_) => "NOT_FOUND",
            HistoryError::Deleted => "ITEM_DELETED",
            HistoryError::ConflictRetriesExhausted => "CONFLICT_RETRIES_EXHAUSTED",
            HistoryError::InvalidArgument(_) => "INVALID_ARGUMENT",
            HistoryError::PairingRejected => "PAIRING_REJECTED",
            HistoryError::PairingTimeout => "PAIRING_TIMEOUT",
            HistoryError::PairingKeyMismatch => "PAIRING_KEY_MISMATCH",
        }
    }

    /// The store's error code, for [`HistoryError::Store`].
    pub fn store_code(&self) -> Option<&str> {
        match self {
            HistoryError::Store { code, .. } => Some(code),
            _ => None,
        }
    }
}

impl From<std::io::Error> for HistoryError {
    fn from(e: std::io::Error) -> Self {
        HistoryError::Io(e.kind().to_string())
    }
}

impl From<reqwest::Error> for HistoryError {
    fn from(e: reqwest::Error) -> Self {
        // Without the URL: it carries only ids, but keep messages short and uniform.
        HistoryError::Unreachable(e.without_url().to_string())
    }
}
