//! The crate's single error type.

use crate::Platform;

/// Every reason evidence can be rejected.
///
/// Each variant has a stable, machine-readable [`code`](AttestError::code) (SCREAMING_SNAKE)
/// for clients and logs, and a human-readable message through `Display`. Messages never
/// contain key material; they may contain public values (measurements, fingerprints).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttestError {
    /// The evidence (bundle, report or certificate) is not well formed.
    #[error("malformed evidence: {0}")]
    MalformedEvidence(String),
    /// A structure carries a version this verifier does not understand.
    #[error("unsupported {what} version {version}")]
    UnsupportedVersion {
        /// Which structure ("evidence bundle", "SNP report").
        what: &'static str,
        /// The version found.
        version: u32,
    },
    /// The platform is known but this verifier cannot (yet) verify its evidence.
    #[error("platform {0:?} is not supported by this verifier yet")]
    PlatformNotSupported(Platform),
    /// The report is signed with an algorithm other than ECDSA P-384 with SHA-384.
    #[error("unsupported report signature algorithm {0}")]
    UnsupportedSignatureAlgorithm(u32),
    /// The report is signed by a key other than the VCEK (VLEK, or none).
    #[error("report signing key {0} is not supported (only VCEK, 0)")]
    UnsupportedSigningKey(u32),
    /// The report's ECDSA signature does not verify with the VCEK public key.
    #[error("report signature is invalid")]
    ReportSignatureInvalid,
    /// A certificate in the ARK → ASK → VCEK chain is not correctly signed or shaped.
    #[error("certificate chain invalid: {0}")]
    CertChainInvalid(String),
    /// A certificate is not valid at the verification time (expired or not yet valid).
    #[error(
        "{cert} certificate is not valid at {now} (valid from {not_before} to {not_after}, unix seconds)"
    )]
    CertExpired {
        /// Which certificate ("ARK", "ASK", "VCEK").
        cert: &'static str,
        /// Verification time.
        now: u64,
        /// Certificate NotBefore.
        not_before: u64,
        /// Certificate NotAfter.
        not_after: u64,
    },
    /// The root certificate is not one this client trusts.
    #[error("root certificate (SHA-256 {fingerprint}) is not trusted")]
    RootNotTrusted {
        /// Hex SHA-256 fingerprint of the presented root (or "absent").
        fingerprint: String,
    },
    /// The evidence comes from the simulated TEE and the caller did not opt in.
    #[error("evidence is from a SIMULATED TEE and simulation was not allowed")]
    SimulationNotAllowed,
    /// The VCEK's TCB extensions disagree with the report's REPORTED_TCB.
    #[error("VCEK TCB ({vcek}) does not match the report's reported TCB ({report})")]
    TcbMismatch {
        /// TCB from the certificate extensions.
        vcek: String,
        /// TCB from the report.
        report: String,
    },
    /// The VCEK's hwID extension does not match the report's CHIP_ID.
    #[error("VCEK hardware ID does not match the report's CHIP_ID")]
    ChipIdMismatch,
    /// The guest policy allows debugging (bit 19): the host could read guest memory.
    #[error("guest policy allows debugging (policy {0:#x})")]
    DebugEnabled(u64),
    /// The guest policy allows a migration agent (bit 18).
    #[error("guest policy allows a migration agent (policy {0:#x})")]
    MigrationAgentEnabled(u64),
    /// REPORT_DATA does not equal what the client expected (wrong key or nonce).
    #[error("REPORT_DATA does not match the expected value (got {got})")]
    ReportDataMismatch {
        /// Hex of the REPORT_DATA found.
        got: String,
    },
    /// The launch measurement does not equal the pinned one.
    #[error("measurement {got} does not match the expected {expected}")]
    MeasurementMismatch {
        /// Hex of the expected measurement.
        expected: String,
        /// Hex of the measurement found.
        got: String,
    },
}

impl AttestError {
    /// A stable machine-readable code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            AttestError::MalformedEvidence(_) => "MALFORMED_EVIDENCE",
            AttestError::UnsupportedVersion { .. } => "UNSUPPORTED_VERSION",
            AttestError::PlatformNotSupported(_) => "PLATFORM_NOT_SUPPORTED",
            AttestError::UnsupportedSignatureAlgorithm(_) => "UNSUPPORTED_SIGNATURE_ALGORITHM",
            AttestError::UnsupportedSigningKey(_) => "UNSUPPORTED_SIGNING_KEY",
            AttestError::ReportSignatureInvalid => "REPORT_SIGNATURE_INVALID",
            AttestError::CertChainInvalid(_) => "CERT_CHAIN_INVALID",
            AttestError::CertExpired { .. } => "CERT_EXPIRED",
            AttestError::RootNotTrusted { .. } => "ROOT_NOT_TRUSTED",
            AttestError::SimulationNotAllowed => "SIMULATION_NOT_ALLOWED",
            AttestError::TcbMismatch { .. } => "TCB_MISMATCH",
            AttestError::ChipIdMismatch => "CHIP_ID_MISMATCH",
            AttestError::DebugEnabled(_) => "DEBUG_ENABLED",
            AttestError::MigrationAgentEnabled(_) => "MIGRATION_AGENT_ENABLED",
            AttestError::ReportDataMismatch { .. } => "REPORT_DATA_MISMATCH",
            AttestError::MeasurementMismatch { .. } => "MEASUREMENT_MISMATCH",
        }
    }

    pub(crate) fn malformed(msg: impl Into<String>) -> Self {
        AttestError::MalformedEvidence(msg.into())
    }

    pub(crate) fn chain(msg: impl Into<String>) -> Self {
        AttestError::CertChainInvalid(msg.into())
    }
}
