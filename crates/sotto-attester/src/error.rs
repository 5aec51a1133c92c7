use std::path::PathBuf;

/// Every way producing evidence can fail. Each variant has a stable
/// [`code`](AttesterError::code); messages never contain key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttesterError {
    /// A filesystem operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done (includes the path).
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The simulated TEE's state directory holds some but not all of its files.
    #[error(
        "simulated TEE state in {} is incomplete; remove the directory to create a new simulated root",
        .0.display()
    )]
    SimStateIncomplete(PathBuf),
    /// The simulated TEE's persisted keys or certificates are unreadable or inconsistent.
    #[error("simulated TEE state is invalid: {0}")]
    SimStateInvalid(String),
    /// Key generation or signing failed.
    #[error("cryptographic operation failed: {0}")]
    Crypto(String),
    /// Building a certificate failed.
    #[error("building certificate failed: {0}")]
    CertBuild(String),
    /// The configfs-tsm interface is not available (no TEE, or configfs not mounted).
    #[error("configfs-tsm not available: {0}")]
    TsmUnavailable(String),
    /// Another writer changed the report entry while we used it (`generation` changed).
    #[error(
        "configfs-tsm entry was modified concurrently (generation {expected} expected, {found} found)"
    )]
    TsmRace {
        /// The generation this request expected.
        expected: u64,
        /// The generation found.
        found: u64,
    },
    /// The kernel reported a provider this crate does not know.
    #[error("unknown configfs-tsm provider {0:?}")]
    UnknownProvider(String),
    /// The report (outblob) is empty or has the wrong size.
    #[error("invalid report from the TEE: {0}")]
    InvalidReport(String),
    /// The SNP certificate table (auxblob) is malformed.
    #[error("malformed SNP certificate table: {0}")]
    CertTableMalformed(String),
    /// A certificate needed for the bundle is absent from the certificate table.
    #[error("{0} certificate not provided by the host")]
    CertMissing(&'static str),
    /// The operator's AMD CRL file is unreadable or not a CRL.
    #[error("AMD CRL file {path}: {reason}")]
    SnpCrlInvalid {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The operator's SNP certificate cache file is unreadable or not what it should be.
    #[error("SNP certificate file {path}: {reason}")]
    SnpCertsInvalid {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// TDX collateral (file or PCCS response) is malformed.
    #[error("invalid TDX collateral: {0}")]
    CollateralInvalid(String),
    /// The TDX collateral is for another platform (its FMSPC differs from the quote's).
    #[error("TDX collateral does not match the quote: {0}")]
    CollateralMismatch(String),
    /// A TDX quote was produced but no collateral source is configured.
    #[error("no TDX collateral configured (use a collateral file or a PCCS URL)")]
    CollateralMissing,
    /// The PCCS URL is not usable: not `http://` or `https://` followed by a host (no user
    /// info, query or fragment).
    #[error(
        "unsupported PCCS URL {0:?}: give http://HOST[:PORT][/PATH] or https://HOST[:PORT][/PATH]"
    )]
    PccsUrlUnsupported(String),
    /// The operator's extra CA file for an `https://` PCCS is unreadable, holds no PEM
    /// certificate, or holds one that does not parse; or it was given for an `http://` URL.
    #[error("PCCS CA file {path}: {reason}")]
    PccsCaInvalid {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The PCCS could not be reached (name resolution, connection refused, timeout, ...).
    #[error("PCCS unreachable: {0}")]
    PccsUnreachable(String),
    /// The TCP connection to an `https://` PCCS was made but the TLS handshake failed: the
    /// server's certificate does not chain to a trust anchor, is not valid for the host
    /// name, has expired, or the peer does not speak TLS. The message names the problem.
    #[error("PCCS TLS error: {0}")]
    PccsTls(String),
    /// The PCCS answered, but not with usable collateral (HTTP error, missing header, ...).
    #[error("PCCS error: {0}")]
    PccsError(String),
}

impl AttesterError {
    /// A stable machine-readable code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            AttesterError::Io { .. } => "IO_ERROR",
            AttesterError::SimStateIncomplete(_) => "SIM_STATE_INCOMPLETE",
            AttesterError::SimStateInvalid(_) => "SIM_STATE_INVALID",
            AttesterError::Crypto(_) => "CRYPTO_FAILED",
            AttesterError::CertBuild(_) => "CERT_BUILD_FAILED",
            AttesterError::TsmUnavailable(_) => "TSM_UNAVAILABLE",
            AttesterError::TsmRace { .. } => "TSM_GENERATION_RACE",
            AttesterError::UnknownProvider(_) => "TSM_UNKNOWN_PROVIDER",
            AttesterError::InvalidReport(_) => "INVALID_REPORT",
            AttesterError::CertTableMalformed(_) => "CERT_TABLE_MALFORMED",
            AttesterError::CertMissing(_) => "CERT_MISSING",
            AttesterError::SnpCertsInvalid { .. } => "SNP_CERTS_INVALID",
            AttesterError::SnpCrlInvalid { .. } => "SNP_CRL_INVALID",
            AttesterError::CollateralInvalid(_) => "TDX_COLLATERAL_INVALID",
            AttesterError::CollateralMismatch(_) => "TDX_COLLATERAL_MISMATCH",
            AttesterError::CollateralMissing => "TDX_COLLATERAL_MISSING",
            AttesterError::PccsUrlUnsupported(_) => "PCCS_URL_UNSUPPORTED",
            AttesterError::PccsCaInvalid { .. } => "PCCS_CA_INVALID",
            AttesterError::PccsUnreachable(_) => "PCCS_UNREACHABLE",
            AttesterError::PccsTls(_) => "PCCS_TLS_ERROR",
            AttesterError::PccsError(_) => "PCCS_ERROR",
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        AttesterError::Io {
            context: context.into(),
            source,
        }
    }
}
