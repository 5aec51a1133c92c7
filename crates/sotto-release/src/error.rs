//! The crate's single error type.

/// Why a manifest or a release was refused.
///
/// [`code`](ReleaseError::code) is stable and machine-readable; `Display` is for people.
/// Messages carry only public data (digests, key names, line numbers).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReleaseError {
    /// The manifest text is not a canonical manifest (line 0: the document as a whole).
    #[error("malformed release manifest (line {line}): {why}")]
    MalformedManifest {
        /// 1-based line number, 0 for the whole document.
        line: usize,
        /// What is wrong.
        why: String,
    },
    /// A manifest value is out of range (refused before it can be encoded or signed).
    #[error("invalid release manifest: {0}")]
    Invalid(String),
    /// The release proof carried in the evidence bundle is not well formed.
    #[error("malformed release proof: {0}")]
    MalformedProof(String),
    /// The manifest is not signed by any trusted release key.
    #[error("release manifest is not signed by a trusted release key ({0})")]
    SignatureInvalid(String),
    /// The checkpoint failed the log policy (log signature, origin, witness quorum); the
    /// code is the log's (e.g. `CHECKPOINT_SIGNATURE_INVALID`, `NOT_ENOUGH_WITNESSES`).
    #[error("log checkpoint rejected: {0}")]
    Checkpoint(sotto_log::LogError),
    /// The inclusion proof does not place the manifest in the tree of the checkpoint.
    #[error("release is not in the transparency log: {0}")]
    NotInLog(String),
    /// The log showed this client two views that cannot both be true (a split view).
    #[error("transparency log fork detected: {0}")]
    LogFork(String),
    /// A consistency proof or log data needed to compare checkpoints was invalid.
    #[error("log consistency check failed: {0}")]
    ConsistencyInvalid(String),
    /// The client's stored view of the log is unreadable or of another log (local
    /// corruption or tampering); it is never silently replaced.
    #[error("stored log view unusable: {0}")]
    ViewCorrupt(String),
    /// The enclave sent no release proof but the client requires one.
    #[error("the enclave presented no release manifest, and one is required")]
    ReleaseMissing,
    /// The attested measurement is not one the release lists.
    #[error("attested measurement {measurement} is not a measurement of release {version}")]
    MeasurementMismatch {
        /// Hex of the attested measurement (public).
        measurement: String,
        /// Release version.
        version: String,
    },
    /// The enclave's claimed model is not the release's model.
    #[error("enclave serves a model other than the release's ({0})")]
    ModelMismatch(String),
}

impl ReleaseError {
    pub(crate) fn malformed(line: usize, why: &str) -> Self {
        ReleaseError::MalformedManifest {
            line,
            why: why.into(),
        }
    }

    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ReleaseError::MalformedManifest { .. } => "MANIFEST_MALFORMED",
            ReleaseError::Invalid(_) => "MANIFEST_INVALID",
            ReleaseError::MalformedProof(_) => "RELEASE_PROOF_MALFORMED",
            ReleaseError::SignatureInvalid(_) => "RELEASE_SIGNATURE_INVALID",
            ReleaseError::Checkpoint(e) => e.code(),
            ReleaseError::NotInLog(_) => "RELEASE_NOT_IN_LOG",
            ReleaseError::LogFork(_) => "LOG_FORK",
            ReleaseError::ConsistencyInvalid(_) => "LOG_CONSISTENCY_INVALID",
            ReleaseError::ViewCorrupt(_) => "LOG_VIEW_CORRUPT",
            ReleaseError::ReleaseMissing => "RELEASE_MISSING",
            ReleaseError::MeasurementMismatch { .. } => "RELEASE_MEASUREMENT_MISMATCH",
            ReleaseError::ModelMismatch(_) => "RELEASE_MODEL_MISMATCH",
        }
    }
}
