//! The verifier: policy in, verdict out. No I/O; the caller passes the time.

use crate::amd;
use crate::snp;
use crate::{AttestError, EvidenceBundle, Platform, fingerprint};

/// The caller's explicit opt-in to evidence from a *simulated* TEE, pinned to one
/// simulated root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulationPin {
    /// SHA-256 of the simulated ARK certificate's DER (see [`fingerprint`]).
    pub ark_fingerprint: [u8; 32],
}

/// The roots this client trusts.
///
/// AMD's Milan and Genoa roots are built in ([`crate::amd::roots`]) and always trusted for
/// `SevSnp` evidence. The default trusts no simulated root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustRoots {
    /// `Some` only if the user explicitly allowed the simulated TEE.
    pub simulation: Option<SimulationPin>,
}

/// What the client requires of the evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Trusted roots.
    pub roots: TrustRoots,
    /// REPORT_DATA the enclave must have bound (digest of its handshake key and nonce).
    pub expected_report_data: [u8; 64],
    /// If set, the launch measurement must equal this.
    pub expected_measurement: Option<[u8; 48]>,
}

impl Policy {
    /// A policy with the given roots and expected REPORT_DATA, no measurement pin.
    pub fn new(roots: TrustRoots, expected_report_data: [u8; 64]) -> Self {
        Policy {
            roots,
            expected_report_data,
            expected_measurement: None,
        }
    }
}

/// One verification step that passed, for display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Short stable name of the check (e.g. `report_signature`).
    pub name: &'static str,
    /// Human-readable outcome.
    pub result: String,
}

/// The result of successful verification: what was checked and the attested values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Platform of the evidence.
    pub platform: Platform,
    /// True if the evidence came from the simulated TEE (show a loud warning).
    pub is_simulated: bool,
    /// SHA-256 of the root (ARK) certificate the chain ended in.
    pub ark_fingerprint: [u8; 32],
    /// SNP report version.
    pub report_version: u32,
    /// Launch measurement.
    pub measurement: [u8; 48],
    /// REPORT_DATA (equal to the policy's expected value).
    pub report_data: [u8; 64],
    /// HOST_DATA.
    pub host_data: [u8; 32],
    /// CHIP_ID.
    pub chip_id: [u8; 64],
    /// REPORTED_TCB, raw.
    pub reported_tcb: snp::TcbVersion,
    /// REPORTED_TCB decoded for the processor generation (equal to the VCEK's extensions).
    pub tcb: snp::TcbParts,
    /// Guest policy.
    pub guest_policy: u64,
    /// The checks performed, in order, all passed.
    pub steps: Vec<Step>,
}

/// Verify `bundle` against `policy` at time `now_unix` (seconds since the Unix epoch).
///
/// For SEV-SNP-format evidence this checks, in order: the platform is allowed (simulation
/// only with a [`SimulationPin`]; TDX is `PLATFORM_NOT_SUPPORTED`); the report parses; the
/// ARK is the pinned simulated root (simulation) or AMD's built-in Milan/Genoa ARK and ASK
/// are used (hardware; certificates other than the VCEK in the bundle are ignored); ARK
/// (self-signed) → ASK → VCEK are signed with RSASSA-PSS/SHA-384; all three certificates are
/// valid at `now_unix`; the report's ECDSA P-384/SHA-384 signature verifies with the VCEK
/// key; the VCEK's hwID and TCB extensions match the report's CHIP_ID and REPORTED_TCB; the
/// guest policy disallows debugging and migration agents; REPORT_DATA equals the expected
/// value; the measurement equals the pinned one, if any.
pub fn verify(
    bundle: &EvidenceBundle,
    policy: &Policy,
    now_unix: u64,
) -> Result<Verified, AttestError> {
    verify_cached(bundle, policy, now_unix, &mut ChainCache::default())
}

/// Remembers certificate chains (exact DER bytes of ARK, ASK and VCEK) whose signatures
/// verified, so that later handshakes with the same chip skip the three RSA verifications.
/// Everything else — validity at `now`, the report signature, bindings and policy — is
/// still checked every time. Bounded: the oldest entry is evicted first.
#[derive(Debug, Default)]
pub struct ChainCache {
    entries: Vec<([u8; 32], [x509_cert::Certificate; 3])>,
}

impl ChainCache {
    /// Most chains remembered.
    pub const CAPACITY: usize = 16;

    fn key(ark: &[u8], ask: &[u8], vcek: &[u8]) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for part in [ark, ask, vcek] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        h.finalize().into()
    }

    fn verify_chain(
        &mut self,
        ark: &[u8],
        ask: &[u8],
        vcek: &[u8],
    ) -> Result<[x509_cert::Certificate; 3], AttestError> {
        let key = Self::key(ark, ask, vcek);
        if let Some((_, chain)) = self.entries.iter().find(|(k, _)| *k == key) {
            return Ok(chain.clone());
        }
        let chain = amd::verify_chain(ark, ask, vcek)?;
        if self.entries.len() >= Self::CAPACITY {
            self.entries.remove(0);
        }
        self.entries.push((key, chain.clone()));
        Ok(chain)
    }

    /// Number of chains remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no chain is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// [`verify`] with a [`ChainCache`] that persists across calls.
pub fn verify_cached(
    bundle: &EvidenceBundle,
    policy: &Policy,
    now_unix: u64,
    cache: &mut ChainCache,
) -> Result<Verified, AttestError> {
    let mut steps = Vec::new();
    let mut step = |name: &'static str, result: String| steps.push(Step { name, result });

    // 1. Platform and root selection.
    let sim_pin = match bundle.platform {
        Platform::SimulatedSnp => Some(
            policy
                .roots
                .simulation
                .as_ref()
                .ok_or(AttestError::SimulationNotAllowed)?,
        ),
        Platform::SevSnp => None,
        other => return Err(AttestError::PlatformNotSupported(other)),
    };
    step(
        "platform",
        if sim_pin.is_some() {
            "SIMULATED SEV-SNP (explicitly allowed; NOT real hardware)".into()
        } else {
            "AMD SEV-SNP".into()
        },
    );

    // 2. Report structure.
    let report = snp::parse(&bundle.report)?;
    step(
        "report_format",
        format!("SNP report version {}", report.version),
    );

    // 3 + 4. Root and certificate chain.
    let (ark_fingerprint, [ark, ask, vcek]) = match sim_pin {
        Some(pin) => {
            let ark_der = bundle
                .ark
                .as_deref()
                .ok_or_else(|| AttestError::RootNotTrusted {
                    fingerprint: "absent".into(),
                })?;
            let ark_fingerprint = fingerprint(ark_der);
            if ark_fingerprint != pin.ark_fingerprint {
                return Err(AttestError::RootNotTrusted {
                    fingerprint: hex::encode(ark_fingerprint),
                });
            }
            step(
                "root",
                format!(
                    "simulated ARK SHA-256 {} matches the pin",
                    hex::encode(ark_fingerprint)
                ),
            );
            let ask_der = bundle
                .ask
                .as_deref()
                .ok_or_else(|| AttestError::chain("ASK certificate missing"))?;
            (
                ark_fingerprint,
                cache.verify_chain(ark_der, ask_der, &bundle.vcek)?,
            )
        }
        None => {
            // Real hardware: only AMD's built-in ARK/ASK count; any in the bundle are ignored.
            let candidates = amd::builtin_chains(report.generation());
            let mut result = Err(AttestError::PlatformNotSupported(Platform::SevSnp));
            for (ark_der, ask_der) in candidates {
                result = cache
                    .verify_chain(ark_der, ask_der, &bundle.vcek)
                    .map(|chain| (fingerprint(ark_der), chain));
                if result.is_ok() {
                    break;
                }
            }
            let (fp, chain) = result?;
            step(
                "root",
                format!("built-in AMD ARK SHA-256 {}", hex::encode(fp)),
            );
            (fp, chain)
        }
    };
    step(
        "cert_chain",
        "ARK → ASK → VCEK signatures (RSASSA-PSS SHA-384) valid".into(),
    );

    // 5. Validity at `now`.
    amd::check_validity(&ark, "ARK", now_unix)?;
    amd::check_validity(&ask, "ASK", now_unix)?;
    amd::check_validity(&vcek, "VCEK", now_unix)?;
    step(
        "cert_validity",
        format!("ARK, ASK and VCEK valid at {now_unix}"),
    );

    // 6. Report signature.
    amd::verify_report_signature_with(&bundle.report, &report, &vcek)?;
    step(
        "report_signature",
        "ECDSA P-384 SHA-384 signature by the VCEK valid".into(),
    );

    // 7. The VCEK was issued for this chip and this TCB.
    let reported = amd::check_vcek_binding(&vcek, &report)?;
    step("chip_id", "VCEK hwID equals the report's CHIP_ID".into());
    step("tcb", format!("VCEK TCB equals REPORTED_TCB ({reported})"));

    // 8. Guest policy.
    if report.debug_allowed() {
        return Err(AttestError::DebugEnabled(report.policy));
    }
    if report.migration_agent_allowed() {
        return Err(AttestError::MigrationAgentEnabled(report.policy));
    }
    step(
        "guest_policy",
        format!(
            "debug and migration agent disallowed (policy {:#x})",
            report.policy
        ),
    );

    // 9. Binding.
    if report.report_data != policy.expected_report_data {
        return Err(AttestError::ReportDataMismatch {
            got: hex::encode(report.report_data),
        });
    }
    step(
        "report_data",
        "REPORT_DATA equals the expected value".into(),
    );

    // 10. Measurement.
    match &policy.expected_measurement {
        Some(expected) if *expected != report.measurement => {
            return Err(AttestError::MeasurementMismatch {
                expected: hex::encode(expected),
                got: hex::encode(report.measurement),
            });
        }
        Some(_) => step(
            "measurement",
            format!(
                "measurement {} equals the pin",
                hex::encode(report.measurement)
            ),
        ),
        None => step(
            "measurement",
            format!(
                "measurement {} (not pinned by this policy)",
                hex::encode(report.measurement)
            ),
        ),
    }

    Ok(Verified {
        platform: bundle.platform,
        is_simulated: sim_pin.is_some(),
        ark_fingerprint,
        report_version: report.version,
        measurement: report.measurement,
        report_data: report.report_data,
        host_data: report.host_data,
        chip_id: report.chip_id,
        reported_tcb: report.reported_tcb,
        tcb: reported,
        guest_policy: report.policy,
        steps,
    })
}
