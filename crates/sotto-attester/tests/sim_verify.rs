//! End-to-end: evidence from the simulated TEE through the bundle encoding into the
//! verifier, and every rejection the verifier must make.

use std::sync::OnceLock;

use der::Decode;
use sotto_attest::{
    AttestError, EvidenceBundle, Platform, Policy, SimulationPin, TrustRoots, Verified, snp, verify,
};
use sotto_attester::{Attester, SimulatedTee};

const MEASUREMENT: [u8; 48] = [0x4D; 48];
const RD: [u8; 64] = [0x42; 64];

struct Fixture {
    a: SimulatedTee,
    b: SimulatedTee,
    /// A time at which every certificate of both chains is valid.
    now: u64,
}

/// Two independent simulated chains, generated once per test binary. Everything is held
/// in memory, so the temporary directories are removed right away.
fn fx() -> &'static Fixture {
    static FX: OnceLock<Fixture> = OnceLock::new();
    FX.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let a =
            SimulatedTee::load_or_create_with_key_bits(&dir.path().join("a"), MEASUREMENT, 2048)
                .unwrap();
        // A different RSA size: the verifier must not assume one.
        let b =
            SimulatedTee::load_or_create_with_key_bits(&dir.path().join("b"), MEASUREMENT, 3072)
                .unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        Fixture { a, b, now }
    })
}

fn policy_for(sim: &SimulatedTee) -> Policy {
    Policy::new(
        TrustRoots {
            simulation: Some(SimulationPin {
                ark_fingerprint: sim.root_fingerprint(),
            }),
        },
        RD,
    )
}

/// Evidence as a client receives it: encoded, sent, decoded.
fn received(b: &EvidenceBundle) -> EvidenceBundle {
    EvidenceBundle::decode(&b.encode()).unwrap()
}

fn check(bundle: &EvidenceBundle, policy: &Policy, now: u64) -> Result<Verified, AttestError> {
    verify(&received(bundle), policy, now)
}

fn code(r: Result<Verified, AttestError>) -> &'static str {
    r.expect_err("verification must fail").code()
}

fn validity(der: &[u8]) -> (u64, u64) {
    let c = x509_cert::Certificate::from_der(der).unwrap();
    let v = c.tbs_certificate.validity;
    (
        v.not_before.to_unix_duration().as_secs(),
        v.not_after.to_unix_duration().as_secs(),
    )
}

#[test]
fn valid_bundle_verifies() {
    let f = fx();
    let bundle = f.a.evidence(&RD).unwrap();
    assert_eq!(f.a.platform(), Platform::SimulatedSnp);
    let mut policy = policy_for(&f.a);
    policy.expected_measurement = Some(MEASUREMENT);
    let v = check(&bundle, &policy, f.now).unwrap();
    assert!(v.is_simulated);
    assert_eq!(v.platform, Platform::SimulatedSnp);
    assert_eq!(v.ark_fingerprint, f.a.root_fingerprint());
    assert_eq!(v.measurement, MEASUREMENT);
    assert_eq!(v.report_data, RD);
    assert_eq!(v.chip_id, f.a.chip_id());
    assert_eq!(v.report_version, 3);
    assert_eq!(v.guest_policy & snp::POLICY_DEBUG, 0);
    let names: Vec<_> = v.steps.iter().map(|s| s.name).collect();
    for n in [
        "platform",
        "root",
        "cert_chain",
        "cert_validity",
        "report_signature",
        "chip_id",
        "tcb",
        "guest_policy",
        "report_data",
        "measurement",
    ] {
        assert!(names.contains(&n), "missing step {n}: {names:?}");
    }
}

#[test]
fn second_chain_with_other_key_size_verifies_against_its_own_pin() {
    let f = fx();
    let bundle = f.b.evidence(&RD).unwrap();
    check(&bundle, &policy_for(&f.b), f.now).unwrap();
    // ...but not against A's pin.
    assert_eq!(
        code(check(&bundle, &policy_for(&f.a), f.now)),
        "ROOT_NOT_TRUSTED"
    );
}

#[test]
fn report_has_expected_shape() {
    let f = fx();
    let bundle = f.a.evidence(&RD).unwrap();
    let r = snp::parse(&bundle.report).unwrap();
    assert_eq!(r.version, 3);
    assert_eq!(r.policy, snp::POLICY_SMT | snp::POLICY_RESERVED_1);
    assert!(!r.debug_allowed());
    assert_eq!(r.chip_id, f.a.chip_id());
    assert_eq!(r.cpuid(), Some((0x19, 0x11, 0x01)));
    let ext = sotto_attest::amd::VcekExtensions::from_der(f.a.vcek_der()).unwrap();
    assert_eq!(ext.hw_id.as_deref(), Some(&r.chip_id[..]));
    let tcb = r.reported_tcb.decode(r.generation()).unwrap();
    assert_eq!(ext.bootloader, Some(tcb.bootloader));
    assert_eq!(ext.snp, Some(tcb.snp));
    assert_eq!(ext.microcode, Some(tcb.microcode));
    // The ARK is really self-signed with the documented CN.
    let ark = x509_cert::Certificate::from_der(f.a.ark_der()).unwrap();
    assert!(
        ark.tbs_certificate
            .subject
            .to_string()
            .contains("CN=SEV-Sotto-Simulated-ARK")
    );
    assert_eq!(ark.tbs_certificate.subject, ark.tbs_certificate.issuer);
}

#[test]
fn flipped_bit_in_signed_region_is_rejected() {
    let f = fx();
    let good = f.a.evidence(&RD).unwrap();
    for offset in [0x00, 0x08, 0x50, 0x90, 0x180, 0x1A0, snp::SIGNED_LEN - 1] {
        let mut bad = good.clone();
        bad.report[offset] ^= 0x01;
        let r = check(&bad, &policy_for(&f.a), f.now);
        // Flipping the version byte can make it unparseable instead.
        let c = code(r);
        assert!(
            c == "REPORT_SIGNATURE_INVALID" || (offset == 0 && c == "UNSUPPORTED_VERSION"),
            "offset {offset:#x}: {c}"
        );
    }
}

#[test]
fn flipped_signature_bit_is_rejected() {
    let f = fx();
    let good = f.a.evidence(&RD).unwrap();
    for offset in [0x2A0, 0x2A0 + 47, 0x2E8, 0x2E8 + 20, 0x2A0 + 50] {
        let mut bad = good.clone();
        bad.report[offset] ^= 0x80;
        assert_eq!(
            code(check(&bad, &policy_for(&f.a), f.now)),
            "REPORT_SIGNATURE_INVALID",
            "offset {offset:#x}"
        );
    }
}

#[test]
fn report_data_for_another_key_is_rejected() {
    let f = fx();
    let bundle = f.a.evidence(&[0x43; 64]).unwrap();
    assert_eq!(
        code(check(&bundle, &policy_for(&f.a), f.now)),
        "REPORT_DATA_MISMATCH"
    );
}

#[test]
fn simulation_without_opt_in_is_rejected() {
    let f = fx();
    let bundle = f.a.evidence(&RD).unwrap();
    let policy = Policy::new(TrustRoots::default(), RD);
    assert_eq!(
        code(check(&bundle, &policy, f.now)),
        "SIMULATION_NOT_ALLOWED"
    );
}

#[test]
fn wrong_pin_or_missing_root_is_rejected() {
    let f = fx();
    let bundle = f.a.evidence(&RD).unwrap();
    let mut policy = policy_for(&f.a);
    policy.roots.simulation = Some(SimulationPin {
        ark_fingerprint: [0; 32],
    });
    assert_eq!(code(check(&bundle, &policy, f.now)), "ROOT_NOT_TRUSTED");
    let mut no_ark = bundle.clone();
    no_ark.ark = None;
    assert_eq!(
        code(check(&no_ark, &policy_for(&f.a), f.now)),
        "ROOT_NOT_TRUSTED"
    );
    // B's ARK presented while A is pinned.
    let mut other_root = bundle.clone();
    other_root.ark = Some(f.b.ark_der().to_vec());
    assert_eq!(
        code(check(&other_root, &policy_for(&f.a), f.now)),
        "ROOT_NOT_TRUSTED"
    );
}

#[test]
fn foreign_vcek_or_ask_breaks_the_chain() {
    let f = fx();
    // B's report and VCEK with A's ASK and ARK.
    let mut bundle = f.b.evidence(&RD).unwrap();
    bundle.ask = Some(f.a.ask_der().to_vec());
    bundle.ark = Some(f.a.ark_der().to_vec());
    assert_eq!(
        code(check(&bundle, &policy_for(&f.a), f.now)),
        "CERT_CHAIN_INVALID"
    );
    // A's report with B's VCEK swapped in.
    let mut bundle = f.a.evidence(&RD).unwrap();
    bundle.vcek = f.b.vcek_der().to_vec();
    assert_eq!(
        code(check(&bundle, &policy_for(&f.a), f.now)),
        "CERT_CHAIN_INVALID"
    );
    // B's ASK between A's ARK and A's VCEK.
    let mut bundle = f.a.evidence(&RD).unwrap();
    bundle.ask = Some(f.b.ask_der().to_vec());
    assert_eq!(
        code(check(&bundle, &policy_for(&f.a), f.now)),
        "CERT_CHAIN_INVALID"
    );
    // Missing ASK.
    let mut bundle = f.a.evidence(&RD).unwrap();
    bundle.ask = None;
    assert_eq!(
        code(check(&bundle, &policy_for(&f.a), f.now)),
        "CERT_CHAIN_INVALID"
    );
    // VCEK and ASK exchanged.
    let mut bundle = f.a.evidence(&RD).unwrap();
    bundle.vcek = f.a.ask_der().to_vec();
    bundle.ask = Some(f.a.vcek_der().to_vec());
    assert_eq!(
        code(check(&bundle, &policy_for(&f.a), f.now)),
        "CERT_CHAIN_INVALID"
    );
}

#[test]
fn certificate_validity_is_enforced() {
    let f = fx();
    let bundle = f.a.evidence(&RD).unwrap();
    let policy = policy_for(&f.a);
    let (vcek_nb, vcek_na) = validity(f.a.vcek_der());
    let (ark_nb, ark_na) = validity(f.a.ark_der());
    assert!(vcek_na - vcek_nb >= 7 * 365 * 86400);
    assert!(ark_na - ark_nb >= 25 * 365 * 86400);
    // Boundaries are inclusive.
    check(&bundle, &policy, vcek_nb).unwrap();
    check(&bundle, &policy, vcek_na).unwrap();
    let err = check(&bundle, &policy, vcek_na + 1).unwrap_err();
    assert_eq!(err.code(), "CERT_EXPIRED");
    assert!(
        matches!(err, AttestError::CertExpired { cert: "VCEK", .. }),
        "{err}"
    );
    let err = check(&bundle, &policy, vcek_nb - 1).unwrap_err();
    assert_eq!(err.code(), "CERT_EXPIRED");
    assert_eq!(code(check(&bundle, &policy, 0)), "CERT_EXPIRED");
    assert_eq!(code(check(&bundle, &policy, ark_na + 1)), "CERT_EXPIRED");
}

#[test]
fn debug_and_migration_agent_policies_are_rejected() {
    let f = fx();
    let mut r = f.a.report_template(&RD);
    r.policy |= snp::POLICY_DEBUG;
    f.a.sign_report(&mut r);
    let err = check(&f.a.bundle(&r), &policy_for(&f.a), f.now).unwrap_err();
    assert_eq!(err.code(), "DEBUG_ENABLED");

    let mut r = f.a.report_template(&RD);
    r.policy |= snp::POLICY_MIGRATE_MA;
    f.a.sign_report(&mut r);
    assert_eq!(
        code(check(&f.a.bundle(&r), &policy_for(&f.a), f.now)),
        "MIGRATION_AGENT_ENABLED"
    );
    // Allowed only by an explicit policy switch (which does not also allow debugging).
    let mut p = policy_for(&f.a);
    p.allow_migration_agent = true;
    let v = check(&f.a.bundle(&r), &p, f.now).unwrap();
    assert_ne!(v.guest_policy & snp::POLICY_MIGRATE_MA, 0);
    let mut r = f.a.report_template(&RD);
    r.policy |= snp::POLICY_MIGRATE_MA | snp::POLICY_DEBUG;
    f.a.sign_report(&mut r);
    assert_eq!(code(check(&f.a.bundle(&r), &p, f.now)), "DEBUG_ENABLED");

    // Control: re-signing an unmodified template verifies, so the helper is sound.
    let mut r = f.a.report_template(&RD);
    f.a.sign_report(&mut r);
    check(&f.a.bundle(&r), &policy_for(&f.a), f.now).unwrap();
}

#[test]
fn chip_id_and_tcb_must_match_the_vcek() {
    let f = fx();
    let mut r = f.a.report_template(&RD);
    r.chip_id[0] ^= 1;
    f.a.sign_report(&mut r);
    assert_eq!(
        code(check(&f.a.bundle(&r), &policy_for(&f.a), f.now)),
        "VCEK_HWID_MISMATCH"
    );

    let mut r = f.a.report_template(&RD);
    r.reported_tcb.raw += 1; // boot loader SVN
    f.a.sign_report(&mut r);
    assert_eq!(
        code(check(&f.a.bundle(&r), &policy_for(&f.a), f.now)),
        "VCEK_TCB_MISMATCH"
    );
}

#[test]
fn unsupported_signing_key_and_algorithm() {
    let f = fx();
    // SIGNING_KEY 7 (no key) and reserved values.
    for field in [2u32, 7] {
        let mut r = f.a.report_template(&RD);
        r.author_key_flags = field << 2;
        f.a.sign_report(&mut r);
        assert_eq!(
            code(check(&f.a.bundle(&r), &policy_for(&f.a), f.now)),
            "UNSUPPORTED_SIGNING_KEY",
            "SIGNING_KEY {field}"
        );
    }
    // A report claiming a VLEK but chaining through an ASK (not an ASVK).
    let mut r = f.a.report_template(&RD);
    r.author_key_flags = 1 << 2; // VLEK
    f.a.sign_report(&mut r);
    assert_eq!(
        code(check(&f.a.bundle(&r), &policy_for(&f.a), f.now)),
        "CERT_CHAIN_INVALID"
    );
    let mut r = f.a.report_template(&RD);
    r.signature_algo = 2;
    f.a.sign_report(&mut r);
    assert_eq!(
        code(check(&f.a.bundle(&r), &policy_for(&f.a), f.now)),
        "UNSUPPORTED_SIGNATURE_ALGORITHM"
    );
}

#[test]
fn measurement_pin_mismatch_is_rejected() {
    let f = fx();
    let bundle = f.a.evidence(&RD).unwrap();
    let mut policy = policy_for(&f.a);
    policy.expected_measurement = Some([0x4E; 48]);
    assert_eq!(code(check(&bundle, &policy, f.now)), "MEASUREMENT_MISMATCH");
}

#[test]
fn truncated_evidence_is_malformed() {
    let f = fx();
    let bundle = f.a.evidence(&RD).unwrap();
    let enc = bundle.encode();
    for len in [0, 5, 100, enc.len() / 2, enc.len() - 1] {
        let err = EvidenceBundle::decode(&enc[..len]).unwrap_err();
        assert_eq!(err.code(), "MALFORMED_EVIDENCE", "len {len}");
    }
    // A well-formed bundle whose report is cut short.
    let mut short = bundle.clone();
    short.report.truncate(snp::SIGNED_LEN);
    assert_eq!(
        code(check(&short, &policy_for(&f.a), f.now)),
        "MALFORMED_EVIDENCE"
    );
    // Garbage certificates.
    let mut garbage = bundle.clone();
    garbage.vcek = vec![0x30, 0x03, 0x01, 0x01, 0xFF];
    assert_eq!(
        code(check(&garbage, &policy_for(&f.a), f.now)),
        "MALFORMED_EVIDENCE"
    );
}

#[test]
fn simulated_evidence_relabelled_as_hardware_or_tdx_is_rejected() {
    let f = fx();
    let mut bundle = f.a.evidence(&RD).unwrap();
    bundle.platform = Platform::SevSnp;
    // The sim VCEK does not chain to AMD's built-in roots; the bundle's sim ARK is ignored.
    assert_eq!(
        code(check(&bundle, &policy_for(&f.a), f.now)),
        "CERT_CHAIN_INVALID"
    );
    // Relabelled as TDX: the TDX verifier does not take an SNP report for a quote.
    bundle.platform = Platform::Tdx;
    assert_eq!(
        code(check(&bundle, &policy_for(&f.a), f.now)),
        "MALFORMED_EVIDENCE"
    );
}

/// A cached chain skips only the chain signatures: validity, the report signature and the
/// bindings are still checked on every call, and a different chain is not confused with it.
#[test]
fn chain_cache_skips_only_chain_signatures() {
    use sotto_attest::{ChainCache, verify_cached};
    let f = fx();
    let mut cache = ChainCache::default();
    let bundle = received(&f.a.evidence(&RD).unwrap());
    verify_cached(&bundle, &policy_for(&f.a), f.now, &mut cache).unwrap();
    assert_eq!(cache.len(), 1);
    verify_cached(&bundle, &policy_for(&f.a), f.now, &mut cache).unwrap();
    assert_eq!(cache.len(), 1, "same chain: served from the cache");

    let mut tampered = bundle.clone();
    tampered.report[0x50] ^= 1;
    let r = verify_cached(&tampered, &policy_for(&f.a), f.now, &mut cache);
    assert_eq!(code(r), "REPORT_SIGNATURE_INVALID");

    let (_, not_after) = validity(&bundle.vcek);
    let r = verify_cached(&bundle, &policy_for(&f.a), not_after + 1, &mut cache);
    assert_eq!(code(r), "CERT_EXPIRED");

    let r = verify_cached(
        &bundle,
        &Policy::new(policy_for(&f.a).roots, [0; 64]),
        f.now,
        &mut cache,
    );
    assert_eq!(code(r), "REPORT_DATA_MISMATCH");

    // A VCEK from another chain under A's ARK/ASK is not in the cache and fails.
    let mut foreign = bundle.clone();
    foreign.vcek = f.b.vcek_der().to_vec();
    let r = verify_cached(&foreign, &policy_for(&f.a), f.now, &mut cache);
    assert_eq!(code(r), "CERT_CHAIN_INVALID");
    assert_eq!(cache.len(), 1, "failed chains are never cached");
}
