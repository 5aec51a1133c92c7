//! Parsing and signature checks against real SEV-SNP reports (shared test data, used in
//! place; see /work/shared/attestation/README.md).

use sotto_attest::amd::{self, VcekExtensions};
use sotto_attest::snp::{self, Generation};

const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/attestation/snp"
);

const STEMS: [&str; 4] = [
    "milan-virtee",
    "milan-gosevguest",
    "genoa-trustee",
    "genoa-msft",
];

fn read(name: &str) -> Vec<u8> {
    let path = format!("{DIR}/{name}");
    std::fs::read(&path).unwrap_or_else(|e| panic!("test data {path}: {e}"))
}

fn report(stem: &str) -> Vec<u8> {
    read(&format!("{stem}.report.bin"))
}

fn vcek(stem: &str) -> Vec<u8> {
    read(&format!("{stem}.vcek.der"))
}

#[test]
fn parses_versions_and_round_trips() {
    let expected_versions = [2, 2, 3, 3];
    for (stem, version) in STEMS.iter().zip(expected_versions) {
        let raw = report(stem);
        let r = snp::parse(&raw).unwrap_or_else(|e| panic!("{stem}: {e}"));
        assert_eq!(r.version, version, "{stem}");
        assert_eq!(r.signature_algo, 1, "{stem}");
        assert_eq!(r.to_bytes(), raw, "{stem}: round trip");
    }
}

#[test]
fn field_values() {
    let gosev = snp::parse(&report("milan-gosevguest")).unwrap();
    assert_eq!(&gosev.report_data[..5], &[1, 2, 3, 4, 5]);
    assert!(gosev.report_data[5..].iter().all(|&b| b == 0));
    assert_eq!(gosev.policy, 0xb0000);
    assert!(gosev.debug_allowed());
    assert_eq!(gosev.cpuid(), None);
    assert_eq!(gosev.generation(), Generation::Unknown);

    let virtee = snp::parse(&report("milan-virtee")).unwrap();
    assert!(!virtee.debug_allowed());

    let msft = snp::parse(&report("genoa-msft")).unwrap();
    assert_eq!(msft.report_data, [0u8; 64]);
    assert_eq!(msft.cpuid(), Some((0x19, 0x11, 0x01)));
    assert_eq!(msft.generation(), Generation::Genoa);
    assert!(!msft.debug_allowed());
    // REPORTED_TCB bytes 0a 00 00 00 00 00 17 54 at 0x180.
    let tcb = msft.reported_tcb.decode(Generation::Genoa).unwrap();
    assert_eq!(
        (tcb.bootloader, tcb.tee, tcb.snp, tcb.microcode),
        (0x0a, 0, 0x17, 0x54)
    );

    let trustee = snp::parse(&report("genoa-trustee")).unwrap();
    assert_eq!(trustee.cpuid(), Some((0x19, 0xa0, 0x02)));
    assert_eq!(trustee.generation(), Generation::Genoa);
    assert_eq!(trustee.signing_key(), 0);
    assert_ne!(trustee.chip_id, [0u8; 64]);
}

#[test]
fn version_handling() {
    let mut raw = report("genoa-msft");
    for (v, ok) in [
        (0u32, false),
        (1, false),
        (2, true),
        (3, true),
        (4, true),
        (5, true),
        (6, false),
        (0xFFFF_FFFF, false),
    ] {
        raw[..4].copy_from_slice(&v.to_le_bytes());
        match snp::parse(&raw) {
            Ok(r) => {
                assert!(ok, "version {v} accepted");
                assert_eq!(r.version, v);
                assert_eq!(r.to_bytes(), raw);
            }
            Err(e) => {
                assert!(!ok, "version {v} rejected: {e}");
                assert_eq!(e.code(), "UNSUPPORTED_VERSION");
            }
        }
    }
}

#[test]
fn wrong_length_is_malformed() {
    let raw = report("genoa-msft");
    for len in [0, 1, snp::SIGNED_LEN, snp::REPORT_LEN - 1] {
        assert_eq!(
            snp::parse(&raw[..len]).unwrap_err().code(),
            "MALFORMED_EVIDENCE"
        );
    }
    let mut long = raw.clone();
    long.push(0);
    assert_eq!(snp::parse(&long).unwrap_err().code(), "MALFORMED_EVIDENCE");
}

#[test]
fn real_signatures_verify_with_their_vcek() {
    for stem in STEMS {
        amd::verify_report_signature(&report(stem), &vcek(stem))
            .unwrap_or_else(|e| panic!("{stem}: {e}"));
    }
}

#[test]
fn real_signature_rejects_flips_and_foreign_vcek() {
    let raw = report("genoa-msft");
    let key = vcek("genoa-msft");
    for offset in [0x50, 0x90, 0x1A0, snp::SIGNED_LEN - 1, 0x2A0, 0x2E8 + 47] {
        let mut bad = raw.clone();
        bad[offset] ^= 0x01;
        let err = amd::verify_report_signature(&bad, &key).unwrap_err();
        assert_eq!(err.code(), "REPORT_SIGNATURE_INVALID", "offset {offset:#x}");
    }
    // Non-zero padding in the 72-byte signature component.
    let mut bad = raw.clone();
    bad[0x2A0 + 60] = 1;
    assert_eq!(
        amd::verify_report_signature(&bad, &key).unwrap_err().code(),
        "REPORT_SIGNATURE_INVALID"
    );
    // Another generation's VCEK.
    let err = amd::verify_report_signature(&raw, &vcek("milan-virtee")).unwrap_err();
    assert_eq!(err.code(), "REPORT_SIGNATURE_INVALID");
}

#[test]
fn real_vcek_extensions_match_reports() {
    for stem in STEMS {
        let cert = {
            use der::Decode;
            x509_cert::Certificate::from_der(&vcek(stem)).unwrap()
        };
        let r = snp::parse(&report(stem)).unwrap();
        let ext = VcekExtensions::from_cert(&cert).unwrap();
        assert!(
            ext.bootloader.is_some() && ext.microcode.is_some(),
            "{stem}"
        );
        amd::check_vcek_binding(&cert, &r).unwrap_or_else(|e| panic!("{stem}: {e}"));
    }
    // A VCEK for another chip.
    let cert = {
        use der::Decode;
        x509_cert::Certificate::from_der(&vcek("genoa-trustee")).unwrap()
    };
    let r = snp::parse(&report("genoa-msft")).unwrap();
    let err = amd::check_vcek_binding(&cert, &r).unwrap_err();
    assert_eq!(err.code(), "VCEK_HWID_MISMATCH");
    // Same chip, different reported TCB.
    let cert = {
        use der::Decode;
        x509_cert::Certificate::from_der(&vcek("genoa-msft")).unwrap()
    };
    let mut r = snp::parse(&report("genoa-msft")).unwrap();
    r.reported_tcb.raw ^= 1 << 56; // microcode SVN
    assert_eq!(
        amd::check_vcek_binding(&cert, &r).unwrap_err().code(),
        "VCEK_TCB_MISMATCH"
    );
}

#[test]
fn real_genoa_chain_verifies() {
    let pem = read("genoa.ask_ark.pem");
    let certs = x509_cert::Certificate::load_pem_chain(&pem).unwrap();
    assert_eq!(certs.len(), 2);
    use der::Encode;
    let ask = certs[0].to_der().unwrap();
    let ark = certs[1].to_der().unwrap();
    for stem in ["genoa-msft", "genoa-trustee"] {
        amd::verify_chain(&ark, &ask, &vcek(stem)).unwrap_or_else(|e| panic!("{stem}: {e}"));
    }
    // A Milan VCEK does not chain to the Genoa ASK.
    let err = amd::verify_chain(&ark, &ask, &vcek("milan-virtee")).unwrap_err();
    assert_eq!(err.code(), "CERT_CHAIN_INVALID");
    // ASK and ARK swapped.
    let err = amd::verify_chain(&ask, &ark, &vcek("genoa-msft")).unwrap_err();
    assert_eq!(err.code(), "CERT_CHAIN_INVALID");
}

// ---- Full verification of real hardware evidence against the built-in AMD roots ----

use sotto_attest::{EvidenceBundle, Platform, Policy, TrustRoots, fingerprint, verify};

/// 2026-03-01T12:00Z: every sample VCEK is valid.
const NOW: u64 = 1_772_366_400;

fn hw_bundle(report_stem: &str, vcek_stem: &str) -> EvidenceBundle {
    EvidenceBundle {
        platform: Platform::SevSnp,
        report: report(report_stem),
        vcek: vcek(vcek_stem),
        ask: None,
        ark: None,
        extras: vec![],
    }
}

fn policy_for(stem: &str) -> Policy {
    let r = snp::parse(&report(stem)).unwrap();
    Policy::new(TrustRoots::default(), r.report_data)
}

#[test]
fn builtin_root_fingerprints() {
    assert_eq!(
        hex::encode(fingerprint(amd::roots::MILAN_ARK)),
        amd::roots::MILAN_ARK_SHA256
    );
    assert_eq!(
        hex::encode(fingerprint(amd::roots::GENOA_ARK)),
        amd::roots::GENOA_ARK_SHA256
    );
}

#[test]
fn real_reports_get_the_documented_verdicts() {
    for (stem, ark) in [
        ("milan-virtee", amd::roots::MILAN_ARK),
        ("genoa-trustee", amd::roots::GENOA_ARK),
        ("genoa-msft", amd::roots::GENOA_ARK),
    ] {
        let v = verify(&hw_bundle(stem, stem), &policy_for(stem), NOW)
            .unwrap_or_else(|e| panic!("{stem}: {} {e}", e.code()));
        assert!(!v.is_simulated, "{stem}");
        assert_eq!(v.platform, Platform::SevSnp);
        assert_eq!(v.ark_fingerprint, fingerprint(ark), "{stem}");
    }
    let err = verify(
        &hw_bundle("milan-gosevguest", "milan-gosevguest"),
        &policy_for("milan-gosevguest"),
        NOW,
    )
    .unwrap_err();
    assert_eq!(err.code(), "DEBUG_ENABLED");
}

#[test]
fn real_report_negative_cases() {
    let policy = policy_for("genoa-msft");
    // Another generation's VCEK.
    let err = verify(&hw_bundle("genoa-msft", "milan-virtee"), &policy, NOW).unwrap_err();
    assert_eq!(err.code(), "CERT_CHAIN_INVALID");
    // Same generation, another chip's VCEK.
    let err = verify(&hw_bundle("genoa-msft", "genoa-trustee"), &policy, NOW).unwrap_err();
    assert_eq!(err.code(), "REPORT_SIGNATURE_INVALID");
    // Flipped bit in the signed region.
    let mut b = hw_bundle("genoa-msft", "genoa-msft");
    b.report[0x91] ^= 4;
    assert_eq!(
        verify(&b, &policy, NOW).unwrap_err().code(),
        "REPORT_SIGNATURE_INVALID"
    );
    // After the VCEK's NotAfter (2033-02-05).
    let err = verify(
        &hw_bundle("genoa-msft", "genoa-msft"),
        &policy,
        2_000_000_000,
    )
    .unwrap_err();
    assert_eq!(err.code(), "CERT_EXPIRED");
    // Wrong expected REPORT_DATA.
    let mut p = policy.clone();
    p.expected_report_data = Some([1; 64]);
    let err = verify(&hw_bundle("genoa-msft", "genoa-msft"), &p, NOW).unwrap_err();
    assert_eq!(err.code(), "REPORT_DATA_MISMATCH");
    // Wrong measurement pin.
    let mut p = policy.clone();
    p.expected_measurement = Some([0; 48]);
    let err = verify(&hw_bundle("genoa-msft", "genoa-msft"), &p, NOW).unwrap_err();
    assert_eq!(err.code(), "MEASUREMENT_MISMATCH");
    // A hardware bundle's own ASK/ARK are ignored: carrying garbage changes nothing.
    let mut b = hw_bundle("genoa-msft", "genoa-msft");
    b.ask = Some(vec![1, 2, 3]);
    b.ark = Some(vec![4, 5, 6]);
    verify(&b, &policy, NOW).unwrap();
    // An SNP report relabelled as TDX goes to the TDX verifier, for which it is not a quote.
    let mut b = hw_bundle("genoa-msft", "genoa-msft");
    b.platform = Platform::Tdx;
    assert_eq!(
        verify(&b, &policy, NOW).unwrap_err().code(),
        "MALFORMED_EVIDENCE"
    );
}

mod mutations {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any single-bit flip in the signed region, the signature (including its padding)
        /// or anywhere in the VCEK certificate makes real evidence fail, without panicking.
        #[test]
        fn any_bit_flip_in_real_evidence_is_rejected(
            in_report in any::<bool>(),
            pos in any::<usize>(),
            bit in 0u8..8,
        ) {
            let policy = policy_for("genoa-msft");
            let mut b = hw_bundle("genoa-msft", "genoa-msft");
            if in_report {
                // 0x000..0x330: signed region plus r and s; 0x330.. is unsigned reserved space.
                b.report[pos % 0x330] ^= 1 << bit;
            } else {
                let len = b.vcek.len();
                b.vcek[pos % len] ^= 1 << bit;
            }
            prop_assert!(verify(&b, &policy, NOW).is_err());
        }

        #[test]
        fn verify_never_panics_on_garbage(
            report in proptest::collection::vec(any::<u8>(), snp::REPORT_LEN..=snp::REPORT_LEN),
            vcek_der in proptest::collection::vec(any::<u8>(), 0..64),
            version in 2u32..=5,
        ) {
            let mut report = report;
            report[..4].copy_from_slice(&version.to_le_bytes());
            let b = EvidenceBundle { platform: Platform::SevSnp, report, vcek: vcek_der, ask: None, ark: None, extras: vec![] };
            prop_assert!(verify(&b, &Policy::new(TrustRoots::default(), [0; 64]), NOW).is_err());
            // With the real VCEK the random report cannot carry a valid signature either.
            let b = EvidenceBundle { vcek: vcek("genoa-msft"), ..b };
            prop_assert!(verify(&b, &Policy::new(TrustRoots::default(), [0; 64]), NOW).is_err());
        }
    }
}
