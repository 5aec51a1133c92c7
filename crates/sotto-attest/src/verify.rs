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
    /// `None` only for offline audits of evidence whose binding is checked elsewhere: a
    /// handshake must always set it ([`Policy::new`] does).
    pub expected_report_data: Option<[u8; 64]>,
    /// If set, the launch measurement must equal this (`MEASUREMENT_MISMATCH`).
    pub expected_measurement: Option<[u8; 48]>,
    /// If set, HOST_DATA must equal this (`HOST_DATA_MISMATCH`).
    pub expected_host_data: Option<[u8; 32]>,
    /// If set, ID_KEY_DIGEST must equal this (`ID_KEY_DIGEST_MISMATCH`).
    pub expected_id_key_digest: Option<[u8; 48]>,
    /// If set, AUTHOR_KEY_DIGEST must equal this (`AUTHOR_KEY_DIGEST_MISMATCH`).
    pub expected_author_key_digest: Option<[u8; 48]>,
    /// If set, every component of REPORTED_TCB must be at least this
    /// (`TCB_BELOW_MINIMUM`). REPORTED_TCB is the TCB the VCEK/VLEK certificate certifies
    /// and the signature proves (firmware can only derive the VCEK of a TCB it is at or
    /// above). `fmc` is compared only on generations that have an FMC (Turin and newer).
    /// CURRENT_TCB, COMMITTED_TCB and LAUNCH_TCB are reported in [`Verified`] but not
    /// compared.
    pub min_tcb: Option<snp::TcbParts>,
    /// Accept a guest policy that allows debugging (default false: `DEBUG_ENABLED`).
    /// A debuggable guest's memory can be read by the host: never for production.
    pub allow_debug: bool,
    /// Accept a guest policy that allows a migration agent (default false:
    /// `MIGRATION_AGENT_ENABLED`).
    pub allow_migration_agent: bool,
    /// SEV-SNP: reject evidence that carries no AMD CRL (extra [`crate::tags::AMD_CRL`])
    /// with `CRL_MISSING`. Default false: the kernel's auxblob carries no CRL, and an
    /// enclave ships one only if its operator supplies it. A CRL that *is* present is
    /// always checked ([`crate::amd::check_crl`]), whatever this says.
    pub require_amd_crl: bool,
    /// Intel TDX requirements (TCB status allow-list, RTMR/MRCONFIGID pins). For TDX,
    /// `expected_report_data` pins REPORTDATA, `expected_measurement` pins MRTD and
    /// `allow_debug` allows the DEBUG TD attribute. See [`crate::tdx`].
    pub tdx: crate::tdx::TdxPolicy,
}

impl Policy {
    /// A policy with the given roots and expected REPORT_DATA; no other pins, no minimum
    /// TCB, debug and migration agent rejected.
    pub fn new(roots: TrustRoots, expected_report_data: [u8; 64]) -> Self {
        Policy {
            expected_report_data: Some(expected_report_data),
            ..Policy::unbound(roots)
        }
    }

    /// A policy for offline audits: like [`new`](Self::new) but with no REPORT_DATA pin.
    /// Not for handshakes: without a REPORT_DATA pin, replayed evidence is accepted.
    pub fn unbound(roots: TrustRoots) -> Self {
        Policy {
            roots,
            expected_report_data: None,
            expected_measurement: None,
            expected_host_data: None,
            expected_id_key_digest: None,
            expected_author_key_digest: None,
            min_tcb: None,
            allow_debug: false,
            allow_migration_agent: false,
            require_amd_crl: false,
            tdx: crate::tdx::TdxPolicy::default(),
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
    /// REPORT_DATA (equal to the policy's expected value, when it sets one).
    pub report_data: [u8; 64],
    /// HOST_DATA.
    pub host_data: [u8; 32],
    /// CHIP_ID.
    pub chip_id: [u8; 64],
    /// REPORTED_TCB, raw.
    pub reported_tcb: snp::TcbVersion,
    /// REPORTED_TCB decoded for the processor generation (equal to the VCEK's extensions).
    pub tcb: snp::TcbParts,
    /// CURRENT_TCB decoded for the processor generation (reported, not checked).
    pub tcb_current: snp::TcbParts,
    /// COMMITTED_TCB decoded for the processor generation (reported, not checked).
    pub tcb_committed: snp::TcbParts,
    /// LAUNCH_TCB decoded for the processor generation (reported, not checked).
    pub tcb_launch: snp::TcbParts,
    /// Guest policy.
    pub guest_policy: u64,
    /// Processor generation whose TCB byte layout decoded the TCB values: the generation of
    /// the built-in AMD root the chain verified under (hardware), or the report's CPUID
    /// (simulation; Milan/Genoa layout for version 2).
    pub generation: snp::Generation,
    /// Key that signed the report (from SIGNING_KEY): VCEK, or VLEK (no chip binding).
    pub signing_key: snp::SigningKey,
    /// CPUID family, model and stepping (version 3+ reports).
    pub cpuid: Option<(u8, u8, u8)>,
    /// VMPL the report was requested from.
    pub vmpl: u32,
    /// Guest SVN.
    pub guest_svn: u32,
    /// ID_KEY_DIGEST (SHA-384 of the ID key; zero without an ID block).
    pub id_key_digest: [u8; 48],
    /// AUTHOR_KEY_DIGEST (SHA-384 of the author key; zero unless AUTHOR_KEY_EN).
    pub author_key_digest: [u8; 48],
    /// PLATFORM_INFO flags (SMT enabled, TSME enabled, ...).
    pub platform_info: u64,
    /// The checks performed, in order, all passed.
    pub steps: Vec<Step>,
    /// SEV-SNP: the AMD CRL that was checked, if the evidence carried one (the `crl` step
    /// says so either way).
    pub amd_crl: Option<amd::CrlVerified>,
    /// Intel TDX details; `Some` exactly for TDX evidence. For TDX, `measurement` is MRTD,
    /// `report_version` the quote version, `ark_fingerprint` the Intel SGX Root CA's, and
    /// the SEV-SNP-only fields are zero/neutral.
    pub tdx: Option<crate::tdx::TdxVerified>,
}

/// Verify `bundle` against `policy` at time `now_unix` (seconds since the Unix epoch).
///
/// For SEV-SNP-format evidence this checks, in order: the platform is allowed (simulation
/// only with a [`SimulationPin`]; TDX evidence is verified by [`crate::tdx`] instead, whose
/// module documentation lists its checks); the report parses
/// (versions 2–5) and its SIGNING_KEY is the VCEK or the VLEK; the root is the pinned
/// simulated ARK (simulation) or AMD's built-in ARK for the report's generation (hardware:
/// Milan, Genoa or Turin from the CPUID, all three for version 2 reports; the bundle's ARK
/// is ignored); the intermediate is AMD's built-in ASK for a VCEK, or the bundle's `ask`
/// only if it verifies under that built-in ARK (the only way for a VLEK, whose ASVK is not
/// built in); ARK (self-signed) → intermediate → VCEK/VLEK are signed with
/// RSASSA-PSS/SHA-384 and the intermediate's role matches the key (ASK for VCEK, ASVK for
/// VLEK); all three certificates are valid at `now_unix`; AMD's CRL, if the bundle carries
/// one (required only with [`Policy::require_amd_crl`]), is signed by the ARK, current, and
/// does not revoke the intermediate ([`amd::check_crl`]); the report's ECDSA
/// P-384/SHA-384 signature over bytes 0x000..0x2A0 verifies with the leaf key; a VCEK's
/// hwID equals CHIP_ID (a VLEK has none); the leaf's TCB extensions equal REPORTED_TCB
/// decoded with the generation's byte layout; the guest policy disallows debugging and
/// migration agents (unless the policy allows them); REPORTED_TCB meets the minimum TCB;
/// REPORT_DATA, measurement, HOST_DATA, ID key digest and author key digest equal their
/// pins, where set.
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
        Platform::Tdx => return crate::tdx::verify_bundle(bundle, policy, now_unix),
    };
    step(
        "platform",
        if sim_pin.is_some() {
            "SIMULATED SEV-SNP (explicitly allowed; NOT real hardware)".into()
        } else {
            "AMD SEV-SNP".into()
        },
    );

    // 2. Report structure and signing key.
    let report = snp::parse(&bundle.report)?;
    let key = report
        .signing_key_kind()
        .ok_or(AttestError::UnsupportedSigningKey(report.signing_key()))?;
    step(
        "report_format",
        format!("SNP report version {}, signed by the {key}", report.version),
    );

    // 3 + 4. Root and certificate chain.
    let (ark_fingerprint, generation, [ark, ask, vcek]) = match sim_pin {
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
            let ask_der = bundle.ask.as_deref().ok_or_else(|| {
                AttestError::chain(format!("{} certificate missing", key.issuer_name()))
            })?;
            let chain = cache.verify_chain(ark_der, ask_der, &bundle.vcek)?;
            amd::check_intermediate_role(&chain[1], key)?;
            // The simulated platform's generation is whatever its CPUID says; version 2
            // reports use the Milan/Genoa layout.
            let generation = match report.generation() {
                snp::Generation::Unknown => snp::Generation::Genoa,
                g => g,
            };
            (ark_fingerprint, generation, chain)
        }
        None => {
            // Real hardware: only AMD's built-in ARKs are roots; the bundle's ARK is ignored.
            let (root, chain) = builtin_chain(bundle, &report, key, cache)?;
            let fp = fingerprint(root.ark);
            step(
                "root",
                format!(
                    "built-in AMD {} ARK SHA-256 {}",
                    root.generation,
                    hex::encode(fp)
                ),
            );
            (fp, root.generation, chain)
        }
    };
    step(
        "cert_chain",
        format!(
            "ARK → {} → {key} signatures (RSASSA-PSS SHA-384) valid",
            key.issuer_name()
        ),
    );

    // 5. Validity at `now`.
    amd::check_validity(&ark, "ARK", now_unix)?;
    amd::check_validity(&ask, key.issuer_name(), now_unix)?;
    amd::check_validity(&vcek, key.name(), now_unix)?;
    step(
        "cert_validity",
        format!("ARK, {} and {key} valid at {now_unix}", key.issuer_name()),
    );

    // 6. AMD's CRL: the intermediate is not revoked by the (trusted) ARK.
    let amd_crl = match single_amd_crl(bundle)? {
        Some(crl) => {
            let c = amd::check_crl(crl, &ark, &ask, now_unix)?;
            step(
                "crl",
                format!(
                    "AMD CRL{} signed by {} (RSASSA-PSS SHA-384), current (thisUpdate {}, nextUpdate {}), {} entries, {} not revoked",
                    c.number.map(|n| format!(" #{n}")).unwrap_or_default(),
                    c.issuer,
                    c.this_update,
                    c.next_update,
                    c.revoked_count,
                    c.intermediate
                ),
            );
            Some(c)
        }
        None if policy.require_amd_crl => return Err(AttestError::CrlMissing),
        None => {
            step(
                "crl",
                format!(
                    "NOT checked: the evidence carries no AMD CRL (not required by this policy), so a revoked {} would go unnoticed",
                    key.issuer_name()
                ),
            );
            None
        }
    };

    // 7. Report signature.
    amd::verify_report_signature_with(&bundle.report, &report, &vcek)?;
    step(
        "report_signature",
        format!("ECDSA P-384 SHA-384 signature by the {key} valid"),
    );

    // 8. The key was issued for this chip (VCEK) and this TCB.
    let reported = amd::check_key_binding(&vcek, &report, generation, key)?;
    step(
        "chip_id",
        match key {
            snp::SigningKey::Vcek => "VCEK hwID equals the report's CHIP_ID".into(),
            snp::SigningKey::Vlek => {
                "not bound: a VLEK is not chip-specific (its certificate has no hwID)".into()
            }
        },
    );
    step(
        "tcb",
        format!("{key} TCB equals REPORTED_TCB ({reported}, {generation} layout)"),
    );

    // 9. Guest policy.
    if report.debug_allowed() && !policy.allow_debug {
        return Err(AttestError::DebugEnabled(report.policy));
    }
    if report.migration_agent_allowed() && !policy.allow_migration_agent {
        return Err(AttestError::MigrationAgentEnabled(report.policy));
    }
    let allowed = |on: bool| if on { "ALLOWED by policy" } else { "off" };
    step(
        "guest_policy",
        format!(
            "debug {}, migration agent {} (policy {:#x})",
            allowed(report.debug_allowed()),
            allowed(report.migration_agent_allowed()),
            report.policy
        ),
    );

    // 10. Minimum TCB.
    if let Some(min) = &policy.min_tcb {
        if let Some((component, got, min_svn)) = reported.first_below(min) {
            return Err(AttestError::TcbBelowMinimum {
                tcb: "REPORTED_TCB",
                component,
                got,
                min: min_svn,
            });
        }
        step(
            "min_tcb",
            format!("REPORTED_TCB ({reported}) ≥ minimum ({min})"),
        );
    }

    // 11. Binding.
    match &policy.expected_report_data {
        Some(expected) if *expected != report.report_data => {
            return Err(AttestError::ReportDataMismatch {
                got: hex::encode(report.report_data),
            });
        }
        Some(_) => step(
            "report_data",
            "REPORT_DATA equals the expected value".into(),
        ),
        None => step(
            "report_data",
            "REPORT_DATA not pinned by this policy (offline audit)".into(),
        ),
    }

    // 12. Measurement.
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

    // 13. Other pins.
    if let Some(expected) = &policy.expected_host_data {
        if *expected != report.host_data {
            return Err(AttestError::HostDataMismatch {
                expected: hex::encode(expected),
                got: hex::encode(report.host_data),
            });
        }
        step("host_data", "HOST_DATA equals the pin".into());
    }
    if let Some(expected) = &policy.expected_id_key_digest {
        if *expected != report.id_key_digest {
            return Err(AttestError::IdKeyDigestMismatch {
                expected: hex::encode(expected),
                got: hex::encode(report.id_key_digest),
            });
        }
        step("id_key_digest", "ID key digest equals the pin".into());
    }
    if let Some(expected) = &policy.expected_author_key_digest {
        if *expected != report.author_key_digest {
            return Err(AttestError::AuthorKeyDigestMismatch {
                expected: hex::encode(expected),
                got: hex::encode(report.author_key_digest),
            });
        }
        step(
            "author_key_digest",
            "author key digest equals the pin".into(),
        );
    }

    // Decodable: `generation` is never Unknown here; the fallback only satisfies the type.
    let decode = |t: snp::TcbVersion| t.decode(generation).unwrap_or_default();
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
        tcb_current: decode(report.current_tcb),
        tcb_committed: decode(report.committed_tcb),
        tcb_launch: decode(report.launch_tcb),
        guest_policy: report.policy,
        generation,
        signing_key: key,
        cpuid: report.cpuid(),
        vmpl: report.vmpl,
        guest_svn: report.guest_svn,
        id_key_digest: report.id_key_digest,
        author_key_digest: report.author_key_digest,
        platform_info: report.platform_info,
        steps,
        amd_crl,
        tdx: None,
    })
}

/// The bundle's AMD CRL, if any; more than one is `MALFORMED_EVIDENCE` (one ARK, one CRL:
/// a second one could only be an attempt to confuse).
fn single_amd_crl(bundle: &EvidenceBundle) -> Result<Option<&[u8]>, AttestError> {
    let mut crls = bundle
        .extras
        .iter()
        .filter(|e| e.tag == crate::tags::AMD_CRL);
    let first = crls.next();
    if crls.next().is_some() {
        return Err(AttestError::malformed(
            "SEV-SNP evidence carries more than one AMD CRL",
        ));
    }
    Ok(first.map(|e| e.value.as_slice()))
}

/// Find the built-in AMD chain for a hardware report: for each candidate generation's ARK
/// (one, from the CPUID; all for version 2), try the built-in ASK (VCEK only) and then the
/// bundle's `ask` (an ASK, or for a VLEK its ASVK), which therefore counts only if it
/// verifies under a built-in ARK. The first chain that verifies and whose intermediate has
/// the right role for `key` wins; its root's generation decides the TCB layout.
fn builtin_chain(
    bundle: &EvidenceBundle,
    report: &snp::Report,
    key: snp::SigningKey,
    cache: &mut ChainCache,
) -> Result<(amd::BuiltinRoot, [x509_cert::Certificate; 3]), AttestError> {
    let candidates = amd::builtin_roots(report.generation());
    let bundle_ask = bundle.ask.as_deref();
    let mut first_err = None;
    for root in candidates {
        let builtin = match key {
            snp::SigningKey::Vcek => Some(root.ask),
            snp::SigningKey::Vlek => None,
        };
        let supplied = bundle_ask.filter(|a| Some(*a) != builtin);
        for intermediate in [builtin, supplied].into_iter().flatten() {
            let attempt = cache
                .verify_chain(root.ark, intermediate, &bundle.vcek)
                .and_then(|chain| amd::check_intermediate_role(&chain[1], key).map(|()| chain));
            match attempt {
                Ok(chain) => return Ok((*root, chain)),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
    }
    let names: Vec<&str> = candidates.iter().map(|r| r.generation.name()).collect();
    let roots = names.join("/");
    Err(match first_err {
        None => AttestError::chain(format!(
            "the report is signed by a VLEK but the bundle carries no ASVK (its `ask` field); \
             AMD's ASVKs are not built in ({roots} ARK)"
        )),
        Some(AttestError::CertChainInvalid(why)) => AttestError::chain(format!(
            "{key} does not chain to the built-in AMD {roots} ARK: {why}"
        )),
        Some(other) => other,
    })
}
