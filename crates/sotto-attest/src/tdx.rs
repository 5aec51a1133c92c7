//! Intel TDX: DCAP quotes (versions 4 and 5), parsed here and verified offline.
//!
//! A TDX bundle ([`Platform::Tdx`]) carries the raw quote as `report`, an empty `vcek`, no
//! ASK/ARK, and exactly one extra with tag [`tags::TDX_COLLATERAL`] holding Intel's
//! collateral as JSON in the layout of `dcap-qvl`'s `QuoteCollateralV3` (PCK CRL and its
//! issuer chain, root CA CRL, TCB info and QE identity with their signatures and issuer
//! chains).
//!
//! # What is checked, in order
//!
//! 1. **Quote structure** ([`parse_quote`]): header, TD report body (TDX 1.0 or 1.5) and the
//!    signature data are parsed strictly (`MALFORMED_EVIDENCE`; `UNSUPPORTED_VERSION` for a
//!    quote version other than 4/5 or an unsupported body type;
//!    `UNSUPPORTED_SIGNATURE_ALGORITHM` for an attestation key other than ECDSA P-256).
//!    Only zero padding may follow the quote.
//! 2. **Collateral freshness** at `now`: TCB info and QE identity between `issueDate` and
//!    `nextUpdate`, both CRLs between `thisUpdate` and `nextUpdate` (`COLLATERAL_EXPIRED`).
//!    This runs before any signature is checked, so stale-and-forged collateral is reported
//!    as expired; either way it is rejected.
//! 3. **Cryptography**, by `dcap-qvl` with the built-in [`INTEL_SGX_ROOT_CA`] as the only
//!    trust anchor: the root CA CRL is signed by the root; the PCK chain in the quote, the
//!    TCB-info and QE-identity signing chains chain to the root, are valid at `now`
//!    (`COLLATERAL_EXPIRED`) and not revoked by the CRLs (`CRL_REVOKED`; a CRL not signed
//!    by the certificate's issuer is `COLLATERAL_SIGNATURE_INVALID`, a certificate that no
//!    CRL covers `COLLATERAL_MISMATCH`: unknown revocation status is never accepted); the
//!    TCB info and QE identity signatures (`COLLATERAL_SIGNATURE_INVALID`); the QE report
//!    signature by the PCK key, the QE report binding the attestation key, and the quote
//!    signature by the attestation key (`REPORT_SIGNATURE_INVALID`); the QE report against
//!    the QE identity (`QE_IDENTITY_MISMATCH`); the platform and TDX module TCB against the
//!    TCB info (`COLLATERAL_MISMATCH`); a `Revoked` TCB is always rejected
//!    (`TCB_STATUS_NOT_ALLOWED`). `dcap-qvl` also rejects debug and other unsafe TD
//!    attributes, after the signatures. Tests can anchor this step in a test root instead
//!    (feature `test-pki`, module `test_pki`; absent from normal builds).
//! 4. The body `dcap-qvl` verified must equal the one parsed in step 1 (defence against a
//!    parser differential).
//! 5. **TCB status** is in [`TdxPolicy::allowed_tcb_statuses`] (only `UpToDate` by default;
//!    `TCB_STATUS_NOT_ALLOWED`).
//! 6. **TD attributes** ([`check_td_attributes`]): DEBUG (and the profiling TUD bits) off
//!    unless [`Policy::allow_debug`] (`DEBUG_ENABLED`); no reserved bits, not migratable,
//!    no service-TD binding, SEPT_VE_DISABLE set (`TD_ATTRIBUTES_NOT_ALLOWED`).
//! 7. **Bindings and pins** ([`check_report`]): REPORTDATA equals
//!    [`Policy::expected_report_data`] when set (`REPORT_DATA_MISMATCH`); MRTD equals
//!    [`Policy::expected_measurement`] and [`TdxPolicy::expected_mrtd`] when set
//!    (`MEASUREMENT_MISMATCH`); RTMR0–3 (`RTMR_MISMATCH`) and MRCONFIGID
//!    (`MRCONFIGID_MISMATCH`) equal their pins when set.
//!
//! Steps 6 and 7 look only at signed bytes, and only after the signatures verified: a
//! modified quote fails at its signature first. [`check_td_attributes`] and [`check_report`]
//! are public so that the policy can be checked (and tested) on a parsed body directly.
//!
//! # Measurement
//!
//! For TDX the launch measurement is MRTD: [`Policy::expected_measurement`] pins MRTD (as it
//! pins MEASUREMENT for SEV-SNP), so a client that pins "the measurement" works on both
//! platforms. [`TdxPolicy::expected_mrtd`] is a TDX-only pin of the same value; when both are
//! set, both must match. [`Verified::measurement`] is MRTD.

use core::fmt;

use der::Decode;

use crate::{AttestError, EvidenceBundle, Platform, Policy, Step, Verified, fingerprint, tags};

/// Intel SGX Root CA (`CN=Intel SGX Root CA`), DER: the only trust anchor for TDX quotes and
/// their collateral. SHA-256 [`INTEL_SGX_ROOT_CA_SHA256`].
pub const INTEL_SGX_ROOT_CA: &[u8] = include_bytes!("roots/intel-sgx-root-ca.der");
/// SHA-256 of [`INTEL_SGX_ROOT_CA`] (hex).
pub const INTEL_SGX_ROOT_CA_SHA256: &str =
    "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3";

/// TEE type of a TDX quote.
pub const TEE_TYPE_TDX: u32 = 0x81;
/// Attestation key type ECDSA-256 with P-256, the only one defined for DCAP quotes.
pub const ATTESTATION_KEY_ECDSA_P256: u16 = 2;
/// QE vendor ID of Intel's quoting enclave.
pub const INTEL_QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07,
];
/// Quote header length.
pub const HEADER_LEN: usize = 48;
/// TD report body of TDX 1.0 (quote v4, or v5 body type 2).
pub const TD_REPORT10_LEN: usize = 584;
/// TD report body of TDX 1.5 (quote v5 body type 3).
pub const TD_REPORT15_LEN: usize = 648;
/// v5 body type: TDX 1.0 TD report.
pub const BODY_TD_REPORT10: u16 = 2;
/// v5 body type: TDX 1.5 TD report.
pub const BODY_TD_REPORT15: u16 = 3;

const QE_REPORT_LEN: usize = 384;
const CERT_DATA_PCK_CHAIN: u16 = 5;
const CERT_DATA_QE_REPORT: u16 = 6;

/// Bits of TD_ATTRIBUTES (Intel TDX Module ABI specification, table "TD attributes").
pub mod td_attributes {
    /// TUD.DEBUG: the host VMM can read and write the TD's state and private memory.
    pub const DEBUG: u64 = 1 << 0;
    /// TUD bits 4–6 (performance profiling): like DEBUG, they make the TD untrusted.
    pub const PROFILING: u64 = 0x70;
    /// SEC.SERVTD_EXT: the TD report covers bound service TDs.
    pub const SERVTD_EXT: u64 = 1 << 17;
    /// SEC.SEPT_VE_DISABLE: EPT violations on pending pages are not converted to #VE.
    pub const SEPT_VE_DISABLE: u64 = 1 << 28;
    /// SEC.MIGRATABLE: the TD can be migrated by a migration TD.
    pub const MIGRATABLE: u64 = 1 << 29;
    /// Bits that must be zero (TDX 1.5 ABI): 1–3, 7–15, 23–26, 32–61.
    pub const RESERVED: u64 = 0x3FFF_FFFF_0780_FF8E;
}

/// Intel's TCB status for a platform, after combining platform, QE and TDX module levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcbStatus {
    /// Fully patched.
    UpToDate,
    /// Patched, but software mitigations are needed for some advisories.
    SWHardeningNeeded,
    /// Patched, but the platform configuration needs changes.
    ConfigurationNeeded,
    /// Both of the above.
    ConfigurationAndSWHardeningNeeded,
    /// Not patched for known advisories.
    OutOfDate,
    /// Out of date and needs configuration changes.
    OutOfDateConfigurationNeeded,
    /// TDX 1.5: launched on an out-of-date TCB, current TCB is fine; relaunch the TD.
    TDRelaunchAdvised,
    /// [`TDRelaunchAdvised`](Self::TDRelaunchAdvised), and configuration is needed.
    TDRelaunchAdvisedConfigurationNeeded,
    /// The platform's keys are compromised. Never accepted, whatever the policy says.
    Revoked,
}

impl TcbStatus {
    /// Every status.
    pub const ALL: [TcbStatus; 9] = [
        TcbStatus::UpToDate,
        TcbStatus::SWHardeningNeeded,
        TcbStatus::ConfigurationNeeded,
        TcbStatus::ConfigurationAndSWHardeningNeeded,
        TcbStatus::OutOfDate,
        TcbStatus::OutOfDateConfigurationNeeded,
        TcbStatus::TDRelaunchAdvised,
        TcbStatus::TDRelaunchAdvisedConfigurationNeeded,
        TcbStatus::Revoked,
    ];

    /// Intel's name for the status (as in TCB info JSON).
    pub fn name(self) -> &'static str {
        match self {
            TcbStatus::UpToDate => "UpToDate",
            TcbStatus::SWHardeningNeeded => "SWHardeningNeeded",
            TcbStatus::ConfigurationNeeded => "ConfigurationNeeded",
            TcbStatus::ConfigurationAndSWHardeningNeeded => "ConfigurationAndSWHardeningNeeded",
            TcbStatus::OutOfDate => "OutOfDate",
            TcbStatus::OutOfDateConfigurationNeeded => "OutOfDateConfigurationNeeded",
            TcbStatus::TDRelaunchAdvised => "TDRelaunchAdvised",
            TcbStatus::TDRelaunchAdvisedConfigurationNeeded => {
                "TDRelaunchAdvisedConfigurationNeeded"
            }
            TcbStatus::Revoked => "Revoked",
        }
    }

    /// The status with Intel's name `name`, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    fn from_dcap(status: dcap_qvl::TcbStatus) -> Self {
        use dcap_qvl::TcbStatus as D;
        match status {
            D::UpToDate => TcbStatus::UpToDate,
            D::SWHardeningNeeded => TcbStatus::SWHardeningNeeded,
            D::ConfigurationNeeded => TcbStatus::ConfigurationNeeded,
            D::ConfigurationAndSWHardeningNeeded => TcbStatus::ConfigurationAndSWHardeningNeeded,
            D::OutOfDate => TcbStatus::OutOfDate,
            D::OutOfDateConfigurationNeeded => TcbStatus::OutOfDateConfigurationNeeded,
            D::TDRelaunchAdvised => TcbStatus::TDRelaunchAdvised,
            D::TDRelaunchAdvisedConfigurationNeeded => {
                TcbStatus::TDRelaunchAdvisedConfigurationNeeded
            }
            D::Revoked => TcbStatus::Revoked,
        }
    }
}

impl fmt::Display for TcbStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a client requires of TDX evidence beyond the platform-neutral [`Policy`] fields
/// (`expected_report_data` → REPORTDATA, `expected_measurement` → MRTD, `allow_debug` →
/// the DEBUG and profiling TD attributes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdxPolicy {
    /// TCB statuses accepted. Default: only [`TcbStatus::UpToDate`]. `Revoked` is rejected
    /// even if listed.
    pub allowed_tcb_statuses: Vec<TcbStatus>,
    /// If set, MRTD must equal this (in addition to [`Policy::expected_measurement`]).
    pub expected_mrtd: Option<[u8; 48]>,
    /// If set, RTMR0..RTMR3 must equal these.
    pub expected_rtmrs: [Option<[u8; 48]>; 4],
    /// If set, MRCONFIGID must equal this.
    pub expected_mrconfigid: Option<[u8; 48]>,
}

impl Default for TdxPolicy {
    fn default() -> Self {
        TdxPolicy {
            allowed_tcb_statuses: vec![TcbStatus::UpToDate],
            expected_mrtd: None,
            expected_rtmrs: [None; 4],
            expected_mrconfigid: None,
        }
    }
}

/// The TD report body of a quote (TDX 1.0 fields; the two TDX 1.5 fields when present).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdReport {
    /// TEE_TCB_SVN: TDX module and SEAM loader SVNs at TD launch.
    pub tee_tcb_svn: [u8; 16],
    /// MRSEAM: measurement of the TDX module.
    pub mr_seam: [u8; 48],
    /// MRSIGNERSEAM (zero for Intel's module).
    pub mr_signer_seam: [u8; 48],
    /// SEAMATTRIBUTES.
    pub seam_attributes: u64,
    /// TDATTRIBUTES (see [`td_attributes`]).
    pub td_attributes: u64,
    /// XFAM.
    pub xfam: u64,
    /// MRTD: measurement of the initial TD contents (the launch measurement).
    pub mr_td: [u8; 48],
    /// MRCONFIGID: software-defined configuration ID.
    pub mr_config_id: [u8; 48],
    /// MROWNER.
    pub mr_owner: [u8; 48],
    /// MROWNERCONFIG.
    pub mr_owner_config: [u8; 48],
    /// RTMR0..RTMR3: run-time extendable measurements.
    pub rtmrs: [[u8; 48]; 4],
    /// REPORTDATA: 64 bytes chosen by the TD (Sotto binds its handshake key here).
    pub report_data: [u8; 64],
    /// TDX 1.5: TEE_TCB_SVN2, the current TCB after a TD-preserving update.
    pub tee_tcb_svn2: Option<[u8; 16]>,
    /// TDX 1.5: MRSERVICETD, hash of bound service TDs.
    pub mr_service_td: Option<[u8; 48]>,
}

impl TdReport {
    /// Whether the TD runs in debug mode (TUD.DEBUG).
    pub fn debug(&self) -> bool {
        self.td_attributes & td_attributes::DEBUG != 0
    }

    fn parse(b: &[u8]) -> Self {
        // Callers pass exactly TD_REPORT10_LEN or TD_REPORT15_LEN bytes.
        let arr = |off: usize| -> [u8; 48] {
            let mut a = [0u8; 48];
            a.copy_from_slice(&b[off..off + 48]);
            a
        };
        let u64_at = |off: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[off..off + 8]);
            u64::from_le_bytes(a)
        };
        let mut tee_tcb_svn = [0u8; 16];
        tee_tcb_svn.copy_from_slice(&b[0..16]);
        let mut report_data = [0u8; 64];
        report_data.copy_from_slice(&b[520..584]);
        let (tee_tcb_svn2, mr_service_td) = if b.len() >= TD_REPORT15_LEN {
            let mut svn2 = [0u8; 16];
            svn2.copy_from_slice(&b[584..600]);
            (Some(svn2), Some(arr(600)))
        } else {
            (None, None)
        };
        TdReport {
            tee_tcb_svn,
            mr_seam: arr(16),
            mr_signer_seam: arr(64),
            seam_attributes: u64_at(112),
            td_attributes: u64_at(120),
            xfam: u64_at(128),
            mr_td: arr(136),
            mr_config_id: arr(184),
            mr_owner: arr(232),
            mr_owner_config: arr(280),
            rtmrs: [arr(328), arr(376), arr(424), arr(472)],
            report_data,
            tee_tcb_svn2,
            mr_service_td,
        }
    }
}

/// A parsed TDX DCAP quote (version 4 or 5, ECDSA P-256 attestation key, QE report
/// certification data with an embedded PCK certificate chain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    /// Quote version: 4 or 5.
    pub version: u16,
    /// Attestation key type (always [`ATTESTATION_KEY_ECDSA_P256`]).
    pub attestation_key_type: u16,
    /// TEE type (always [`TEE_TYPE_TDX`]).
    pub tee_type: u32,
    /// QE vendor ID (always [`INTEL_QE_VENDOR_ID`]).
    pub qe_vendor_id: [u8; 16],
    /// Body type: [`BODY_TD_REPORT10`] (every v4 quote) or [`BODY_TD_REPORT15`].
    pub body_type: u16,
    /// The TD report.
    pub report: TdReport,
    /// Length of the signed prefix (header and body).
    pub signed_len: usize,
    /// ECDSA P-256 signature (r‖s) over the signed prefix by the attestation key.
    pub signature: [u8; 64],
    /// Attestation public key (x‖y).
    pub attestation_key: [u8; 64],
    /// The quoting enclave's SGX report (384 bytes).
    pub qe_report: Vec<u8>,
    /// ECDSA P-256 signature of the QE report by the PCK key.
    pub qe_report_signature: [u8; 64],
    /// QE authentication data (hashed with the attestation key into the QE report).
    pub qe_auth_data: Vec<u8>,
    /// PEM PCK certificate chain (leaf, platform/processor CA, root).
    pub pck_cert_chain: Vec<u8>,
}

struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8], AttestError> {
        if self.buf.len() < n {
            return Err(AttestError::malformed(format!(
                "{} truncated in {field} (need {n} bytes, {} left)",
                self.what,
                self.buf.len()
            )));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn u16(&mut self, field: &str) -> Result<u16, AttestError> {
        let b = self.take(2, field)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, field: &str) -> Result<u32, AttestError> {
        let b = self.take(4, field)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N], AttestError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, field)?);
        Ok(a)
    }
    fn field_u32(&mut self, field: &str) -> Result<&'a [u8], AttestError> {
        let len = self.u32(field)? as usize;
        self.take(len, field)
    }
    fn finish(&self) -> Result<(), AttestError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(AttestError::malformed(format!(
                "{} has {} unexpected trailing bytes",
                self.what,
                self.buf.len()
            )))
        }
    }
}

/// Parse a TDX DCAP quote strictly. Trailing bytes after the quote are accepted only if
/// they are all zero (quote buffers are commonly zero-padded).
///
/// Errors: `UNSUPPORTED_VERSION` (quote version other than 4/5, v5 body type other than
/// TDX 1.0/1.5), `UNSUPPORTED_SIGNATURE_ALGORITHM` (attestation key type other than ECDSA
/// P-256), otherwise `MALFORMED_EVIDENCE`.
pub fn parse_quote(bytes: &[u8]) -> Result<Quote, AttestError> {
    let mut r = Reader {
        buf: bytes,
        what: "TDX quote",
    };
    let version = r.u16("header")?;
    if version != 4 && version != 5 {
        return Err(AttestError::UnsupportedVersion {
            what: "TDX quote",
            version: version.into(),
        });
    }
    let attestation_key_type = r.u16("header")?;
    let tee_type = r.u32("header")?;
    if tee_type != TEE_TYPE_TDX {
        return Err(AttestError::malformed(format!(
            "not a TDX quote (TEE type {tee_type:#x})"
        )));
    }
    if attestation_key_type != ATTESTATION_KEY_ECDSA_P256 {
        return Err(AttestError::UnsupportedSignatureAlgorithm(
            attestation_key_type.into(),
        ));
    }
    r.take(4, "header")?; // QE SVN, PCE SVN (reserved for TDX)
    let qe_vendor_id: [u8; 16] = r.array("header")?;
    if qe_vendor_id != INTEL_QE_VENDOR_ID {
        return Err(AttestError::malformed(format!(
            "unknown QE vendor ID {}",
            hex::encode(qe_vendor_id)
        )));
    }
    r.take(20, "header")?; // user data
    let (body_type, body_len) = if version == 4 {
        (BODY_TD_REPORT10, TD_REPORT10_LEN)
    } else {
        let body_type = r.u16("body descriptor")?;
        let size = r.u32("body descriptor")? as usize;
        let expected = match body_type {
            BODY_TD_REPORT10 => TD_REPORT10_LEN,
            BODY_TD_REPORT15 => TD_REPORT15_LEN,
            1 => {
                return Err(AttestError::malformed(
                    "v5 quote carries an SGX enclave body",
                ));
            }
            other => {
                return Err(AttestError::UnsupportedVersion {
                    what: "TDX quote body type",
                    version: other.into(),
                });
            }
        };
        if size != expected {
            return Err(AttestError::malformed(format!(
                "TDX quote body type {body_type} declares {size} bytes, expected {expected}"
            )));
        }
        (body_type, expected)
    };
    let report = TdReport::parse(r.take(body_len, "TD report body")?);
    let signed_len = bytes.len() - r.buf.len();

    // Signature data (quote v4 layout; v5 uses the same).
    let sig_data = r.field_u32("signature data")?;
    if r.buf.iter().any(|&b| b != 0) {
        return Err(AttestError::malformed(
            "non-zero bytes after the TDX quote's signature data",
        ));
    }
    let mut s = Reader {
        buf: sig_data,
        what: "TDX quote signature data",
    };
    let signature: [u8; 64] = s.array("quote signature")?;
    let attestation_key: [u8; 64] = s.array("attestation key")?;
    let cert_type = s.u16("certification data type")?;
    if cert_type != CERT_DATA_QE_REPORT {
        return Err(AttestError::malformed(format!(
            "TDX quote certification data type {cert_type}, expected {CERT_DATA_QE_REPORT} (QE report)"
        )));
    }
    let cert_data = s.field_u32("certification data")?;
    s.finish()?;

    let mut q = Reader {
        buf: cert_data,
        what: "TDX QE report certification data",
    };
    let qe_report = q.take(QE_REPORT_LEN, "QE report")?.to_vec();
    let qe_report_signature: [u8; 64] = q.array("QE report signature")?;
    let auth_len = usize::from(q.u16("QE authentication data")?);
    let qe_auth_data = q.take(auth_len, "QE authentication data")?.to_vec();
    let inner_type = q.u16("PCK certification data type")?;
    if inner_type != CERT_DATA_PCK_CHAIN {
        return Err(AttestError::malformed(format!(
            "TDX quote PCK certification data type {inner_type}, expected {CERT_DATA_PCK_CHAIN} (embedded PCK chain)"
        )));
    }
    let pck_cert_chain = q.field_u32("PCK certificate chain")?.to_vec();
    q.finish()?;

    Ok(Quote {
        version,
        attestation_key_type,
        tee_type,
        qe_vendor_id,
        body_type,
        report,
        signed_len,
        signature,
        attestation_key,
        qe_report,
        qe_report_signature,
        qe_auth_data,
        pck_cert_chain,
    })
}

/// Check TD_ATTRIBUTES: DEBUG and profiling bits only if `allow_debug`
/// ([`Policy::allow_debug`]; else `DEBUG_ENABLED`); no reserved bits, not MIGRATABLE, no
/// SERVTD_EXT or bound service TD, SEPT_VE_DISABLE set (`TD_ATTRIBUTES_NOT_ALLOWED`).
///
/// In [`verify`](crate::verify) this runs only after every signature verified.
pub fn check_td_attributes(report: &TdReport, allow_debug: bool) -> Result<(), AttestError> {
    use td_attributes::*;
    let a = report.td_attributes;
    let not_allowed = |reason: &str| AttestError::TdAttributesNotAllowed {
        reason: reason.into(),
        attributes: a,
    };
    if a & (DEBUG | PROFILING) != 0 && !allow_debug {
        return Err(AttestError::TdDebugEnabled(a));
    }
    if a & RESERVED != 0 {
        return Err(not_allowed("reserved bits are set"));
    }
    if a & MIGRATABLE != 0 {
        return Err(not_allowed("the TD is migratable"));
    }
    if a & SERVTD_EXT != 0 || report.mr_service_td.is_some_and(|m| m != [0u8; 48]) {
        return Err(not_allowed("the TD is bound to a service TD"));
    }
    if a & SEPT_VE_DISABLE == 0 {
        return Err(not_allowed("SEPT_VE_DISABLE is clear"));
    }
    Ok(())
}

/// Check a TD report against the policy: [`check_td_attributes`], then REPORTDATA, MRTD
/// (against both [`Policy::expected_measurement`] and [`TdxPolicy::expected_mrtd`]),
/// RTMR0–3 and MRCONFIGID. Returns the steps that passed.
///
/// In [`verify`](crate::verify) this runs only after every signature verified.
pub fn check_report(report: &TdReport, policy: &Policy) -> Result<Vec<Step>, AttestError> {
    let tdx = &policy.tdx;
    let mut steps = Vec::new();
    let mut step = |name: &'static str, result: String| steps.push(Step { name, result });

    check_td_attributes(report, policy.allow_debug)?;
    step(
        "td_attributes",
        format!(
            "TD_ATTRIBUTES {:#018x}: {}, not migratable, SEPT_VE_DISABLE set",
            report.td_attributes,
            if report.td_attributes & (td_attributes::DEBUG | td_attributes::PROFILING) != 0 {
                "DEBUG ON (explicitly allowed by policy)"
            } else {
                "debug off"
            }
        ),
    );

    match &policy.expected_report_data {
        Some(expected) if *expected != report.report_data => {
            return Err(AttestError::ReportDataMismatch {
                got: hex::encode(report.report_data),
            });
        }
        Some(_) => step("report_data", "REPORTDATA equals the expected value".into()),
        None => step(
            "report_data",
            format!(
                "REPORTDATA {} (NOT pinned: offline audit policy)",
                hex::encode(report.report_data)
            ),
        ),
    }

    let mut pinned = false;
    for expected in [&policy.expected_measurement, &tdx.expected_mrtd]
        .into_iter()
        .flatten()
    {
        if *expected != report.mr_td {
            return Err(AttestError::MeasurementMismatch {
                expected: hex::encode(expected),
                got: hex::encode(report.mr_td),
            });
        }
        pinned = true;
    }
    step(
        "measurement",
        if pinned {
            format!("MRTD {} equals the pin", hex::encode(report.mr_td))
        } else {
            format!(
                "MRTD {} (not pinned by this policy)",
                hex::encode(report.mr_td)
            )
        },
    );

    for (index, (expected, got)) in tdx.expected_rtmrs.iter().zip(&report.rtmrs).enumerate() {
        if let Some(expected) = expected {
            if expected != got {
                return Err(AttestError::RtmrMismatch {
                    index: index as u8,
                    expected: hex::encode(expected),
                    got: hex::encode(got),
                });
            }
            step(
                "rtmr",
                format!("RTMR{index} {} equals the pin", hex::encode(got)),
            );
        }
    }

    if let Some(expected) = &tdx.expected_mrconfigid {
        if *expected != report.mr_config_id {
            return Err(AttestError::MrConfigIdMismatch {
                expected: hex::encode(expected),
                got: hex::encode(report.mr_config_id),
            });
        }
        step(
            "mrconfigid",
            format!("MRCONFIGID {} equals the pin", hex::encode(expected)),
        );
    }
    Ok(steps)
}

/// TDX-specific results of a successful verification ([`Verified::tdx`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdxVerified {
    /// Quote version (4 or 5).
    pub quote_version: u16,
    /// Body type ([`BODY_TD_REPORT10`] or [`BODY_TD_REPORT15`]).
    pub body_type: u16,
    /// The TD report (MRTD, RTMRs, MRCONFIGID, TD attributes, ...).
    pub report: TdReport,
    /// TCB status (allowed by the policy).
    pub tcb_status: TcbStatus,
    /// Intel security advisories that apply at this TCB level.
    pub advisory_ids: Vec<String>,
    /// FMSPC of the platform, from the PCK certificate.
    pub fmspc: [u8; 6],
    /// Earliest expiry (unix seconds) of any collateral item or certificate used: the
    /// verdict can be reused until then.
    pub collateral_expires: u64,
}

/// Verify a TDX bundle (see the [module documentation](self)).
pub(crate) fn verify_bundle(
    bundle: &EvidenceBundle,
    policy: &Policy,
    now_unix: u64,
) -> Result<Verified, AttestError> {
    if !bundle.vcek.is_empty() || bundle.ask.is_some() || bundle.ark.is_some() {
        return Err(AttestError::malformed(
            "TDX evidence carries its certificates in the quote: vcek must be empty, no ASK/ARK",
        ));
    }
    let mut collateral = bundle
        .extras
        .iter()
        .filter(|e| e.tag == tags::TDX_COLLATERAL);
    let first = collateral.next().ok_or_else(|| {
        AttestError::malformed("TDX evidence has no collateral item (tag 0x0001)")
    })?;
    if collateral.next().is_some() {
        return Err(AttestError::malformed(
            "TDX evidence has more than one collateral item",
        ));
    }
    verify_quote(&bundle.report, &first.value, policy, now_unix)
}

/// Verify a raw TDX quote with its collateral (JSON, `QuoteCollateralV3` layout) against
/// `policy` at `now_unix`. [`crate::verify`] calls this for [`Platform::Tdx`] bundles.
///
/// In the returned [`Verified`], `measurement` is MRTD, `report_version` the quote version,
/// `ark_fingerprint` the SHA-256 of [`INTEL_SGX_ROOT_CA`], the SEV-SNP-only fields are zero,
/// and [`Verified::tdx`] holds the TDX details.
pub fn verify_quote(
    quote: &[u8],
    collateral_json: &[u8],
    policy: &Policy,
    now_unix: u64,
) -> Result<Verified, AttestError> {
    verify_quote_anchored(quote, collateral_json, policy, now_unix, INTEL_SGX_ROOT_CA)
}

/// Test-only TDX verification against a test PKI (cargo feature `test-pki`).
///
/// Revocation cannot be tested with Intel's real chain: a revoked PCK certificate needs
/// CRLs signed by Intel. With this feature, tests can re-root real quotes and collateral in
/// a test CA, sign their own CRLs, and run the *same* verifier as [`verify_quote`] against
/// that root.
///
/// The feature exists only for this crate's own tests (it is enabled by a self
/// dev-dependency, which Cargo applies only when those tests are built). Without it, no
/// function can reach the verifier with a root other than [`INTEL_SGX_ROOT_CA`]: the root
/// is not a field of [`Policy`] or [`crate::TrustRoots`], so configuration, a caller bug
/// or an attacker-influenced input cannot swap it in a production build.
#[cfg(feature = "test-pki")]
pub mod test_pki {
    use crate::{AttestError, Policy, Verified};

    /// [`verify_quote`](super::verify_quote) with `test_root_der` (a self-signed P-256 CA
    /// certificate, DER) as the only trust anchor instead of the Intel SGX Root CA. The
    /// result's `ark_fingerprint` is the test root's, and its `root` step says TEST ROOT.
    pub fn verify_quote(
        quote: &[u8],
        collateral_json: &[u8],
        policy: &Policy,
        now_unix: u64,
        test_root_der: &[u8],
    ) -> Result<Verified, AttestError> {
        super::verify_quote_anchored(quote, collateral_json, policy, now_unix, test_root_der)
    }
}

/// [`verify_quote`] with `root_der` as the trust anchor. Private: production code passes
/// only [`INTEL_SGX_ROOT_CA`]; [`test_pki`] (feature `test-pki`) passes a test root.
fn verify_quote_anchored(
    quote: &[u8],
    collateral_json: &[u8],
    policy: &Policy,
    now_unix: u64,
    root_der: &[u8],
) -> Result<Verified, AttestError> {
    let mut steps = Vec::new();
    let mut step = |name: &'static str, result: String| steps.push(Step { name, result });
    step("platform", "Intel TDX".into());

    // 1. Structure.
    let parsed = parse_quote(quote)?;
    step(
        "report_format",
        format!(
            "TDX quote version {} ({})",
            parsed.version,
            if parsed.body_type == BODY_TD_REPORT15 {
                "TDX 1.5 body"
            } else {
                "TDX 1.0 body"
            }
        ),
    );

    // 2. Collateral freshness.
    let collateral: dcap_qvl::QuoteCollateralV3 = serde_json::from_slice(collateral_json)
        .map_err(|e| AttestError::malformed(format!("TDX collateral is not valid JSON: {e}")))?;
    if collateral.pck_certificate_chain.is_some() {
        // dcap-qvl would prefer it over the quote's chain; keep one source of truth.
        return Err(AttestError::malformed(
            "TDX collateral must not carry a PCK certificate chain (it is in the quote)",
        ));
    }
    check_collateral_times(&collateral, now_unix)?;
    step(
        "collateral_validity",
        format!("TCB info, QE identity, root CA CRL and PCK CRL valid at {now_unix}"),
    );

    // 3. Cryptography (dcap-qvl), Intel's root only (outside tests).
    let claims =
        dcap_qvl::verify::QuoteVerifier::<dcap_qvl::configs::RustCryptoConfig>::new_with_config(
            root_der.to_vec(),
        )
        .allow_debug(policy.allow_debug)
        .verify_with_policy(
            quote,
            collateral,
            now_unix,
            &dcap_qvl::QuotePolicy::claims_only(now_unix),
        )
        .map_err(|e| {
            let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            classify_dcap_error(&chain, now_unix, &parsed.report, &policy.tdx)
        })?;
    step(
        "root",
        if root_der == INTEL_SGX_ROOT_CA {
            format!("built-in Intel SGX Root CA SHA-256 {INTEL_SGX_ROOT_CA_SHA256}")
        } else {
            format!(
                "TEST ROOT SHA-256 {} (cargo feature test-pki), NOT Intel's",
                hex::encode(fingerprint(root_der))
            )
        },
    );
    step(
        "cert_chain",
        "PCK, TCB signing and QE identity signing certificates chain to the root (ECDSA P-256), valid and not revoked by the root CA and PCK CRLs".into(),
    );
    step(
        "collateral_signature",
        "TCB info and QE identity signed by Intel's TCB signing key".into(),
    );
    step(
        "qe_report",
        "QE report signed by the PCK key, matches Intel's QE identity, binds the attestation key"
            .into(),
    );
    step(
        "report_signature",
        "quote ECDSA P-256 SHA-256 signature by the attestation key valid".into(),
    );

    // 4. dcap-qvl verified the same body we parsed.
    if !same_body(&parsed.report, &claims.report) {
        return Err(AttestError::TdxVerificationFailed(
            "the verified TD report differs from the parsed one".into(),
        ));
    }

    // 5. TCB status allow-list.
    let tcb_status = TcbStatus::from_dcap(claims.tcb.status);
    if tcb_status == TcbStatus::Revoked || !policy.tdx.allowed_tcb_statuses.contains(&tcb_status) {
        return Err(tcb_not_allowed(tcb_status.name(), &policy.tdx));
    }
    step(
        "tcb",
        if claims.tcb.advisory_ids.is_empty() {
            format!("TCB status {tcb_status} (allowed)")
        } else {
            format!(
                "TCB status {tcb_status} (allowed), advisories {}",
                claims.tcb.advisory_ids.join(", ")
            )
        },
    );

    // 6 + 7. Attributes, binding, pins.
    steps.extend(check_report(&parsed.report, policy)?);

    let report = parsed.report;
    Ok(Verified {
        platform: Platform::Tdx,
        is_simulated: false,
        ark_fingerprint: fingerprint(root_der),
        report_version: parsed.version.into(),
        measurement: report.mr_td,
        report_data: report.report_data,
        // SEV-SNP-only fields: neutral values (see `tdx`).
        host_data: [0; 32],
        chip_id: [0; 64],
        reported_tcb: Default::default(),
        tcb: Default::default(),
        tcb_current: Default::default(),
        tcb_committed: Default::default(),
        tcb_launch: Default::default(),
        guest_policy: 0,
        generation: crate::snp::Generation::Unknown,
        signing_key: crate::snp::SigningKey::Vcek,
        cpuid: None,
        vmpl: 0,
        guest_svn: 0,
        id_key_digest: [0; 48],
        author_key_digest: [0; 48],
        platform_info: 0,
        steps,
        amd_crl: None,
        tdx: Some(TdxVerified {
            quote_version: parsed.version,
            body_type: parsed.body_type,
            report,
            tcb_status,
            advisory_ids: claims.tcb.advisory_ids,
            fmspc: claims.platform.pck.fmspc,
            collateral_expires: claims.earliest_expiration_date,
        }),
    })
}

fn tcb_not_allowed(status: &str, policy: &TdxPolicy) -> AttestError {
    AttestError::TcbStatusNotAllowed {
        status: status.into(),
        allowed: policy
            .allowed_tcb_statuses
            .iter()
            .filter(|s| **s != TcbStatus::Revoked)
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn same_body(ours: &TdReport, theirs: &dcap_qvl::quote::Report) -> bool {
    let Some(td) = theirs.as_td10() else {
        return false;
    };
    let base_equal = td.tee_tcb_svn == ours.tee_tcb_svn
        && td.mr_seam == ours.mr_seam
        && td.mr_signer_seam == ours.mr_signer_seam
        && u64::from_le_bytes(td.seam_attributes) == ours.seam_attributes
        && u64::from_le_bytes(td.td_attributes) == ours.td_attributes
        && u64::from_le_bytes(td.xfam) == ours.xfam
        && td.mr_td == ours.mr_td
        && td.mr_config_id == ours.mr_config_id
        && td.mr_owner == ours.mr_owner
        && td.mr_owner_config == ours.mr_owner_config
        && [td.rt_mr0, td.rt_mr1, td.rt_mr2, td.rt_mr3] == ours.rtmrs
        && td.report_data == ours.report_data;
    let v15 = theirs.as_td15();
    base_equal
        && v15.map(|r| r.tee_tcb_svn2) == ours.tee_tcb_svn2
        && v15.map(|r| r.mr_service_td) == ours.mr_service_td
}

/// Check the validity windows of the dated collateral items at `now`.
fn check_collateral_times(
    collateral: &dcap_qvl::QuoteCollateralV3,
    now: u64,
) -> Result<(), AttestError> {
    let window = |what: &str, from: u64, until: u64| {
        if now < from || now > until {
            Err(AttestError::CollateralExpired {
                what: format!("{what} (valid from {from} to {until})"),
                now,
            })
        } else {
            Ok(())
        }
    };
    let date = |what: &str, s: &str| {
        parse_rfc3339_utc(s)
            .ok_or_else(|| AttestError::malformed(format!("TDX collateral {what} date {s:?}")))
    };

    let tcb_info: dcap_qvl::TcbInfo = serde_json::from_str(&collateral.tcb_info)
        .map_err(|e| AttestError::malformed(format!("TDX TCB info: {e}")))?;
    window(
        "TCB info",
        date("TCB info issueDate", &tcb_info.issue_date)?,
        date("TCB info nextUpdate", &tcb_info.next_update)?,
    )?;
    let qe: dcap_qvl::QeIdentity = serde_json::from_str(&collateral.qe_identity)
        .map_err(|e| AttestError::malformed(format!("TDX QE identity: {e}")))?;
    window(
        "QE identity",
        date("QE identity issueDate", &qe.issue_date)?,
        date("QE identity nextUpdate", &qe.next_update)?,
    )?;
    for (what, der) in [
        ("root CA CRL", &collateral.root_ca_crl),
        ("PCK CRL", &collateral.pck_crl),
    ] {
        let crl = x509_cert::crl::CertificateList::from_der(der)
            .map_err(|e| AttestError::malformed(format!("TDX {what}: {e}")))?;
        let tbs = &crl.tbs_cert_list;
        let next = tbs
            .next_update
            .ok_or_else(|| AttestError::malformed(format!("TDX {what} has no nextUpdate")))?;
        window(
            what,
            tbs.this_update.to_unix_duration().as_secs(),
            next.to_unix_duration().as_secs(),
        )?;
    }
    Ok(())
}

/// Parse `YYYY-MM-DDTHH:MM:SS[.fraction]Z` (the form Intel's collateral uses) to unix
/// seconds.
fn parse_rfc3339_utc(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let num = |range: core::ops::Range<usize>| -> Option<u64> {
        let part = b.get(range)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(part.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' || *b.last()? != b'Z' {
        return None;
    }
    let frac = &b[19..b.len() - 1];
    if !frac.is_empty()
        && (frac[0] != b'.' || frac.len() < 2 || !frac[1..].iter().all(u8::is_ascii_digit))
    {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1970..=9999).contains(&year)
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    // Days from civil (Howard Hinnant), for year >= 1970.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Map a `dcap-qvl` error (its message chain, outermost first) to a stable error.
///
/// `dcap-qvl` reports errors as `anyhow` messages (webpki errors as their `Debug` names), so
/// this matches on message text; the dependency is pinned to an exact version and every
/// mapping is covered by tests. Anything unrecognised is `TDX_VERIFICATION_FAILED`.
fn classify_dcap_error(
    chain: &[String],
    now: u64,
    report: &TdReport,
    policy: &TdxPolicy,
) -> AttestError {
    let full = chain.join(": ");
    let has = |p: &str| chain.iter().any(|m| m.contains(p));
    let starts = |p: &str| chain.iter().any(|m| m.starts_with(p));
    let any_has = |ps: &[&str]| ps.iter().any(|p| has(p));
    let any_starts = |ps: &[&str]| ps.iter().any(|p| starts(p));

    if starts("CertRevoked") {
        AttestError::CrlRevoked(full)
    } else if starts("UnknownRevocationStatus") {
        // No CRL in the collateral is issued by the certificate's issuer (e.g. the PCK CRL
        // of another CA): revocation unknown, which is never accepted.
        AttestError::CollateralMismatch(format!(
            "no CRL in the collateral covers a certificate of the chain: {full}"
        ))
    } else if any_starts(&["CertExpired", "CertNotValidYet", "CrlExpired"])
        || any_has(&[
            "TCBInfo expired",
            "QE Identity expired",
            "issue date is in the future",
        ])
    {
        AttestError::CollateralExpired { what: full, now }
    } else if any_has(&[
        "Signature is invalid for tcb_info",
        "Signature is invalid for qe_identity",
    ]) || any_starts(&[
        "InvalidCrlSignatureForPublicKey",
        "UnsupportedCrlSignatureAlgorithm",
        "IssuerNotCrlSigner",
    ]) {
        AttestError::CollateralSignatureInvalid(full)
    } else if any_has(&[
        "Signature is invalid for qe_report",
        "ISV enclave report signature is invalid",
        "QE report hash mismatch",
        "Invalid QE auth data length",
    ]) {
        AttestError::ReportSignatureInvalid
    } else if has("TCB status is invalid: Revoked") {
        tcb_not_allowed("Revoked", policy)
    } else if any_has(&[
        "QE MRSIGNER",
        "QE ISVPRODID",
        "QE MISCSELECT",
        "QE ATTRIBUTES",
        "QE ISVSVN",
        "QE report validation failed",
        "TCB levels found in QE Identity",
        "Unsupported QE Identity",
    ]) {
        AttestError::QeIdentityMismatch(full)
    } else if any_has(&["Debug mode is enabled", "TD profiling is enabled"]) {
        AttestError::TdDebugEnabled(report.td_attributes)
    } else if any_has(&[
        "TD migration is enabled",
        "SEPT_VE_DISABLE",
        "Reserved bits in TD attributes",
        "SERVTD_EXT",
        "Invalid MR service TD",
    ]) {
        AttestError::TdAttributesNotAllowed {
            reason: full,
            attributes: report.td_attributes,
        }
    } else if any_has(&[
        "Fmspc mismatch",
        "TCB info in the collateral",
        "No matching TCB level",
        "TDX module",
        "component count mismatch",
        "TDX TCB",
        "Unrecognized TCB status",
    ]) {
        AttestError::CollateralMismatch(full)
    } else if any_has(&[
        "Failed to verify certificate chain",
        "Certificate chain is too short",
        "must be issued directly by the root CA",
        "Too many intermediate certificates",
        "Failed to load root ca",
        "Intel extension",
        "Failed to parse PCK certificate",
        "leaf certificate",
    ]) {
        AttestError::CertChainInvalid(full)
    } else if any_has(&["Unsupported DCAP quote version", "must have version"]) {
        AttestError::UnsupportedVersion {
            what: "TDX quote",
            version: 0,
        }
    } else if any_has(&[
        "Failed to decode",
        "Failed to parse",
        "Failed to extract",
        "No certificates found",
        "Unknown QE vendor",
        "Unsupported TEE type",
        "Unsupported DCAP",
    ]) {
        AttestError::MalformedEvidence(full)
    } else {
        AttestError::TdxVerificationFailed(full)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(chain: &[&str]) -> &'static str {
        let chain: Vec<String> = chain.iter().map(|s| s.to_string()).collect();
        let report = TdReport::parse(&[0u8; TD_REPORT10_LEN]);
        classify_dcap_error(&chain, 0, &report, &TdxPolicy::default()).code()
    }

    #[test]
    fn classifies_dcap_errors() {
        let cases: &[(&[&str], &str)] = &[
            (
                &["Failed to verify certificate chain", "CertRevoked"],
                "CRL_REVOKED",
            ),
            (&["CertRevoked"], "CRL_REVOKED"),
            (
                &[
                    "Failed to verify certificate chain",
                    "UnknownRevocationStatus",
                ],
                "COLLATERAL_MISMATCH",
            ),
            (
                &[
                    "Failed to verify certificate chain",
                    "CertExpired { time: UnixTime(1), not_after: UnixTime(0) }",
                ],
                "COLLATERAL_EXPIRED",
            ),
            (
                &["Failed to verify certificate chain", "CrlExpired { .. }"],
                "COLLATERAL_EXPIRED",
            ),
            (&["TCBInfo expired"], "COLLATERAL_EXPIRED"),
            (
                &["QE Identity issue date is in the future"],
                "COLLATERAL_EXPIRED",
            ),
            (
                &["Signature is invalid for tcb_info in quote_collateral"],
                "COLLATERAL_SIGNATURE_INVALID",
            ),
            (
                &[
                    "Failed to parse root CA CRL",
                    "InvalidCrlSignatureForPublicKey",
                ],
                "COLLATERAL_SIGNATURE_INVALID",
            ),
            (
                &["Signature is invalid for qe_report in quote"],
                "REPORT_SIGNATURE_INVALID",
            ),
            (
                &["ISV enclave report signature is invalid"],
                "REPORT_SIGNATURE_INVALID",
            ),
            (&["QE report hash mismatch"], "REPORT_SIGNATURE_INVALID"),
            (
                &["TCB status is invalid: Revoked"],
                "TCB_STATUS_NOT_ALLOWED",
            ),
            (
                &["QE report validation failed", "Debug mode is enabled"],
                "QE_IDENTITY_MISMATCH",
            ),
            (
                &["QE MRSIGNER mismatch: expected A, got B"],
                "QE_IDENTITY_MISMATCH",
            ),
            (&["Debug mode is enabled"], "DEBUG_ENABLED"),
            (&["TD migration is enabled"], "TD_ATTRIBUTES_NOT_ALLOWED"),
            (&["Fmspc mismatch"], "COLLATERAL_MISMATCH"),
            (
                &["TDX module identity check", "TDX module MRSIGNER mismatch"],
                "COLLATERAL_MISMATCH",
            ),
            (
                &["Failed to verify certificate chain", "UnknownIssuer"],
                "CERT_CHAIN_INVALID",
            ),
            (
                &["Failed to verify certificate chain", "BadSignature"],
                "CERT_CHAIN_INVALID",
            ),
            (
                &["Failed to decode quote", "Not enough data"],
                "MALFORMED_EVIDENCE",
            ),
            (&["something new"], "TDX_VERIFICATION_FAILED"),
        ];
        for (chain, expected) in cases {
            assert_eq!(code(chain), *expected, "{chain:?}");
        }
    }

    #[test]
    fn reserved_mask_matches_the_abi() {
        let ones = |lo: u32, hi: u32| (lo..=hi).fold(0u64, |m, b| m | 1 << b);
        assert_eq!(
            td_attributes::RESERVED,
            ones(1, 3) | ones(7, 15) | ones(23, 26) | ones(32, 61)
        );
    }

    #[test]
    fn parses_intel_dates() {
        assert_eq!(parse_rfc3339_utc("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_utc("2025-07-19T10:16:03Z"),
            Some(1_752_920_163)
        );
        assert_eq!(
            parse_rfc3339_utc("2024-02-29T23:59:59.5Z"),
            Some(1_709_251_199)
        );
        for bad in [
            "",
            "2025-07-19",
            "2025-07-19T10:16:03",
            "2025-07-19T10:16:03+01:00",
            "2025-13-19T10:16:03Z",
            "2025-07-19T10:16:03.Z",
            "1969-12-31T23:59:59Z",
            "2025-07-19T1a:16:03Z",
        ] {
            assert_eq!(parse_rfc3339_utc(bad), None, "{bad}");
        }
    }
}
