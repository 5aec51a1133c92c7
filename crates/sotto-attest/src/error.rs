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
    /// The report's SIGNING_KEY is neither the VCEK (0) nor the VLEK (1) (7 = no key).
    #[error("report signing key {0} is not supported (only VCEK 0 and VLEK 1)")]
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
    /// The signing key certificate's TCB extensions (VCEK or VLEK) disagree with the
    /// report's REPORTED_TCB: the key was not issued for the TCB the report claims.
    #[error("{key} certificate TCB ({cert}) does not match the report's REPORTED_TCB ({report})")]
    VcekTcbMismatch {
        /// "VCEK" or "VLEK".
        key: &'static str,
        /// TCB from the certificate extensions.
        cert: String,
        /// TCB from the report.
        report: String,
    },
    /// The VCEK's hwID extension does not match the report's CHIP_ID: the VCEK belongs to
    /// another chip (or the report masks its chip ID).
    #[error("VCEK hardware ID does not match the report's CHIP_ID")]
    VcekHwidMismatch,
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
    /// A component of the report's REPORTED_TCB is below the policy's minimum.
    #[error("{tcb} {component} SVN {got} is below the required minimum {min}")]
    TcbBelowMinimum {
        /// Which TCB value was compared ("REPORTED_TCB").
        tcb: &'static str,
        /// The component: "fmc", "bl", "tee", "snp" or "ucode".
        component: &'static str,
        /// SVN found.
        got: u8,
        /// SVN required.
        min: u8,
    },
    /// HOST_DATA does not equal the pinned value.
    #[error("HOST_DATA {got} does not match the expected {expected}")]
    HostDataMismatch {
        /// Hex of the expected HOST_DATA.
        expected: String,
        /// Hex of the HOST_DATA found.
        got: String,
    },
    /// ID_KEY_DIGEST (SHA-384 of the key that signed the launch ID block) is not the pinned one.
    #[error("ID key digest {got} does not match the expected {expected}")]
    IdKeyDigestMismatch {
        /// Hex of the expected digest.
        expected: String,
        /// Hex of the digest found.
        got: String,
    },
    /// AUTHOR_KEY_DIGEST (SHA-384 of the key that certified the ID key) is not the pinned one.
    #[error("author key digest {got} does not match the expected {expected}")]
    AuthorKeyDigestMismatch {
        /// Hex of the expected digest.
        expected: String,
        /// Hex of the digest found.
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
    /// Collateral is not valid at the verification time: Intel TDX collateral (TCB info, QE
    /// identity, a CRL) or a certificate of the PCK or collateral chains, or AMD's CRL
    /// (SEV-SNP; outside thisUpdate..nextUpdate).
    #[error("attestation collateral is not valid at {now} (unix seconds): {what}")]
    CollateralExpired {
        /// Which item, with its validity window when known.
        what: String,
        /// Verification time.
        now: u64,
    },
    /// The signature on collateral does not verify: TDX TCB info, QE identity or an Intel
    /// CRL, or (SEV-SNP) AMD's CRL, which must be signed by the ARK with RSASSA-PSS/SHA-384.
    #[error("signature on attestation collateral is invalid: {0}")]
    CollateralSignatureInvalid(String),
    /// The collateral does not cover this platform: TDX (FMSPC, TEE type, no matching TCB
    /// level or TDX module identity, no CRL issued for a certificate of the chain) or
    /// SEV-SNP (an AMD CRL issued by another ARK, e.g. another processor generation's).
    #[error("attestation collateral does not match the evidence: {0}")]
    CollateralMismatch(String),
    /// TDX: the quoting enclave's report does not match Intel's QE identity.
    #[error("quoting enclave does not match Intel's QE identity: {0}")]
    QeIdentityMismatch(String),
    /// TDX: the platform's TCB status is not in the policy's allow-list (`Revoked` never is).
    #[error("TCB status {status} is not allowed by policy (allowed: {allowed})")]
    TcbStatusNotAllowed {
        /// Intel's name of the status found.
        status: String,
        /// The allowed statuses, comma-separated.
        allowed: String,
    },
    /// A certificate in the chain is revoked: by Intel's root CA or PCK CRL (TDX), or by
    /// AMD's CRL (SEV-SNP: the ASK or ASVK).
    #[error("certificate revoked: {0}")]
    CrlRevoked(String),
    /// SEV-SNP: the policy requires AMD's CRL ([`Policy::require_amd_crl`]) and the evidence
    /// carries none.
    ///
    /// [`Policy::require_amd_crl`]: crate::Policy::require_amd_crl
    #[error("the policy requires an AMD CRL and the evidence carries none")]
    CrlMissing,
    /// TDX: TD_ATTRIBUTES has DEBUG (or profiling) set: the host can read the TD's memory.
    #[error("TD attributes enable debugging (TD_ATTRIBUTES {0:#018x})")]
    TdDebugEnabled(u64),
    /// TDX: TD_ATTRIBUTES has another unsafe setting (migratable, service TD, reserved
    /// bits, SEPT_VE_DISABLE clear).
    #[error("TD attributes not allowed: {reason} (TD_ATTRIBUTES {attributes:#018x})")]
    TdAttributesNotAllowed {
        /// What is wrong.
        reason: String,
        /// The TD_ATTRIBUTES value.
        attributes: u64,
    },
    /// TDX: an RTMR does not equal the pinned value.
    #[error("RTMR{index} {got} does not match the expected {expected}")]
    RtmrMismatch {
        /// RTMR index, 0 to 3.
        index: u8,
        /// Hex of the expected value.
        expected: String,
        /// Hex of the value found.
        got: String,
    },
    /// TDX: MRCONFIGID does not equal the pinned value.
    #[error("MRCONFIGID {got} does not match the expected {expected}")]
    MrConfigIdMismatch {
        /// Hex of the expected value.
        expected: String,
        /// Hex of the value found.
        got: String,
    },
    /// TDX: quote verification failed for a reason with no more specific code.
    #[error("Intel TDX quote verification failed: {0}")]
    TdxVerificationFailed(String),
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
            AttestError::VcekTcbMismatch { .. } => "VCEK_TCB_MISMATCH",
            AttestError::VcekHwidMismatch => "VCEK_HWID_MISMATCH",
            AttestError::DebugEnabled(_) => "DEBUG_ENABLED",
            AttestError::MigrationAgentEnabled(_) => "MIGRATION_AGENT_ENABLED",
            AttestError::ReportDataMismatch { .. } => "REPORT_DATA_MISMATCH",
            AttestError::TcbBelowMinimum { .. } => "TCB_BELOW_MINIMUM",
            AttestError::HostDataMismatch { .. } => "HOST_DATA_MISMATCH",
            AttestError::IdKeyDigestMismatch { .. } => "ID_KEY_DIGEST_MISMATCH",
            AttestError::AuthorKeyDigestMismatch { .. } => "AUTHOR_KEY_DIGEST_MISMATCH",
            AttestError::MeasurementMismatch { .. } => "MEASUREMENT_MISMATCH",
            AttestError::CollateralExpired { .. } => "COLLATERAL_EXPIRED",
            AttestError::CollateralSignatureInvalid(_) => "COLLATERAL_SIGNATURE_INVALID",
            AttestError::CollateralMismatch(_) => "COLLATERAL_MISMATCH",
            AttestError::QeIdentityMismatch(_) => "QE_IDENTITY_MISMATCH",
            AttestError::TcbStatusNotAllowed { .. } => "TCB_STATUS_NOT_ALLOWED",
            AttestError::CrlRevoked(_) => "CRL_REVOKED",
            AttestError::CrlMissing => "CRL_MISSING",
            AttestError::TdDebugEnabled(_) => "DEBUG_ENABLED",
            AttestError::TdAttributesNotAllowed { .. } => "TD_ATTRIBUTES_NOT_ALLOWED",
            AttestError::RtmrMismatch { .. } => "RTMR_MISMATCH",
            AttestError::MrConfigIdMismatch { .. } => "MRCONFIGID_MISMATCH",
            AttestError::TdxVerificationFailed(_) => "TDX_VERIFICATION_FAILED",
        }
    }

    pub(crate) fn malformed(msg: impl Into<String>) -> Self {
        AttestError::MalformedEvidence(msg.into())
    }

    pub(crate) fn chain(msg: impl Into<String>) -> Self {
        AttestError::CertChainInvalid(msg.into())
    }
}
