//! Full verification of the real SEV-SNP evidence in the shared test data (read in place,
//! see /work/shared/attestation/README.md): the README's verdict for every file, and each
//! SNP rejection code triggered from real evidence (codes that need a correctly signed
//! but different report — migration agent, full-verify TCB/hwID mismatches, VLEK — are
//! covered with re-signed simulated reports in sotto-attester's tests).

use der::{Decode, Encode};
use sotto_attest::amd::{self, roots};
use sotto_attest::snp::{self, Generation, SigningKey, TcbParts, TcbVersion};
use sotto_attest::{
    AttestError, ChainCache, EvidenceBundle, Platform, Policy, TrustRoots, Verified, fingerprint,
    verify, verify_cached,
};
use x509_cert::Certificate;

const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/attestation/snp"
);

/// 2026-03-01T12:00Z: every sample VCEK (and every built-in root) is valid.
const NOW: u64 = 1_772_366_400;

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

fn bundle(report_stem: &str, vcek_stem: &str) -> EvidenceBundle {
    EvidenceBundle {
        platform: Platform::SevSnp,
        report: report(report_stem),
        vcek: vcek(vcek_stem),
        ask: None,
        ark: None,
        extras: vec![],
    }
}

fn parsed(stem: &str) -> snp::Report {
    snp::parse(&report(stem)).unwrap()
}

/// The default policy a client would use: REPORT_DATA pinned, nothing else.
fn policy(stem: &str) -> Policy {
    Policy::new(TrustRoots::default(), parsed(stem).report_data)
}

/// Verify through the wire encoding, as a client receives it.
fn check(b: &EvidenceBundle, p: &Policy, now: u64) -> Result<Verified, AttestError> {
    verify(&EvidenceBundle::decode(&b.encode()).unwrap(), p, now)
}

fn code(r: Result<Verified, AttestError>) -> &'static str {
    r.expect_err("verification must fail").code()
}

fn validity(der: &[u8]) -> (u64, u64) {
    let c = Certificate::from_der(der).unwrap();
    let v = c.tbs_certificate.validity;
    (
        v.not_before.to_unix_duration().as_secs(),
        v.not_after.to_unix_duration().as_secs(),
    )
}

// ---- The README's verdicts ----

#[test]
fn every_snp_file_gets_the_readme_verdict() {
    // (stem, generation, version, verdict: None = accept, Some(code) = reject)
    let table: [(&str, Generation, u32, Option<&str>); 4] = [
        ("milan-virtee", Generation::Milan, 2, None),
        (
            "milan-gosevguest",
            Generation::Milan,
            2,
            Some("DEBUG_ENABLED"),
        ),
        ("genoa-trustee", Generation::Genoa, 3, None),
        ("genoa-msft", Generation::Genoa, 3, None),
    ];
    // Every file in the directory is in the table (nothing silently skipped).
    let mut stems: Vec<String> = std::fs::read_dir(DIR)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".report.bin").map(str::to_owned)
        })
        .collect();
    stems.sort();
    let mut listed: Vec<&str> = table.iter().map(|t| t.0).collect();
    listed.sort();
    assert_eq!(stems, listed);

    for (stem, generation, version, verdict) in table {
        let r = check(&bundle(stem, stem), &policy(stem), NOW);
        match verdict {
            None => {
                let v = r.unwrap_or_else(|e| panic!("{stem}: {} {e}", e.code()));
                assert_eq!(v.generation, generation, "{stem}");
                assert_eq!(v.report_version, version, "{stem}");
                assert_eq!(v.signing_key, SigningKey::Vcek, "{stem}");
                assert!(!v.is_simulated);
                let ark = match generation {
                    Generation::Milan => roots::MILAN_ARK,
                    _ => roots::GENOA_ARK,
                };
                assert_eq!(v.ark_fingerprint, fingerprint(ark), "{stem}");
            }
            Some(expected) => {
                let err = r.expect_err(stem);
                assert_eq!(err.code(), expected, "{stem}: {err}");
            }
        }
    }
}

#[test]
fn verified_exposes_decoded_fields() {
    let v = check(
        &bundle("genoa-msft", "genoa-msft"),
        &policy("genoa-msft"),
        NOW,
    )
    .unwrap();
    let r = parsed("genoa-msft");
    assert_eq!(v.generation, Generation::Genoa);
    assert_eq!(v.cpuid, Some((0x19, 0x11, 0x01)));
    assert_eq!(v.report_data, [0u8; 64]);
    assert_eq!(v.measurement, r.measurement);
    assert_eq!(hex::encode(&v.host_data[..8]), "4f4448c67f3c8dfc");
    assert_eq!(hex::encode(&v.id_key_digest[..8]), "0ad79ceb0b648b0e");
    assert_eq!(v.author_key_digest, [0u8; 48]);
    assert_eq!(v.chip_id, r.chip_id);
    assert_eq!(v.vmpl, 0);
    assert_eq!(v.guest_policy, 0x3001f);
    let tcb = TcbParts {
        fmc: None,
        bootloader: 0x0a,
        tee: 0,
        snp: 0x17,
        microcode: 0x54,
    };
    assert_eq!(v.tcb, tcb);
    assert_eq!(v.tcb_current, tcb);
    assert_eq!(v.tcb_committed, tcb);
    assert_eq!(v.tcb_launch, tcb);

    // A version 2 report's generation (and TCB layout) comes from the root that verified.
    let v = check(
        &bundle("milan-virtee", "milan-virtee"),
        &policy("milan-virtee"),
        NOW,
    )
    .unwrap();
    assert_eq!(v.generation, Generation::Milan);
    assert_eq!(v.cpuid, None);
    assert_eq!(
        (v.tcb.bootloader, v.tcb.tee, v.tcb.snp, v.tcb.microcode),
        (3, 0, 8, 0x73)
    );
    let names: Vec<_> = v.steps.iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        [
            "platform",
            "report_format",
            "root",
            "cert_chain",
            "cert_validity",
            "crl",
            "report_signature",
            "chip_id",
            "tcb",
            "guest_policy",
            "report_data",
            "measurement"
        ]
    );
}

#[test]
fn unbound_policy_and_allow_debug() {
    // Offline audit: no REPORT_DATA pin.
    for stem in ["milan-virtee", "genoa-trustee", "genoa-msft"] {
        check(
            &bundle(stem, stem),
            &Policy::unbound(TrustRoots::default()),
            NOW,
        )
        .unwrap_or_else(|e| panic!("{stem}: {e}"));
    }
    // The real debug-on report is accepted only when the policy allows debugging.
    let mut p = policy("milan-gosevguest");
    let err = check(&bundle("milan-gosevguest", "milan-gosevguest"), &p, NOW).unwrap_err();
    assert!(matches!(err, AttestError::DebugEnabled(0xb0000)), "{err}");
    assert!(err.to_string().contains("debugging"));
    p.allow_debug = true;
    let v = check(&bundle("milan-gosevguest", "milan-gosevguest"), &p, NOW).unwrap();
    assert_eq!(v.guest_policy & snp::POLICY_DEBUG, snp::POLICY_DEBUG);
    let step = v.steps.iter().find(|s| s.name == "guest_policy").unwrap();
    assert!(step.result.contains("debug ALLOWED"), "{}", step.result);
    // allow_migration_agent does not allow debugging.
    let mut p = policy("milan-gosevguest");
    p.allow_migration_agent = true;
    assert_eq!(
        code(check(
            &bundle("milan-gosevguest", "milan-gosevguest"),
            &p,
            NOW
        )),
        "DEBUG_ENABLED"
    );
}

// ---- REPORT_SIGNATURE_INVALID ----

#[test]
fn flipped_bits_in_signed_region_and_signature() {
    let mut cache = ChainCache::default();
    for stem in ["milan-virtee", "genoa-msft"] {
        let p = policy(stem);
        let good = bundle(stem, stem);
        // Field starts and ends across the signed region, then r and s.
        let offsets = [
            0x04,
            0x08,
            0x10,
            0x20,
            0x30,
            0x38,
            0x40,
            0x50,
            0x8F,
            0x90,
            0xC0,
            0xE0,
            0x110,
            0x140,
            0x160,
            0x180,
            0x187,
            0x1A0,
            0x1DF,
            0x1E0,
            0x1E8,
            0x1F0,
            0x1F8,
            0x200,
            0x208,
            0x29F,
            0x2A0,
            0x2A0 + 24,
            0x2A0 + 47,
            0x2E8,
            0x2E8 + 30,
            0x2E8 + 47,
        ];
        for offset in offsets {
            for bit in [0u8, 7] {
                let mut b = good.clone();
                b.report[offset] ^= 1 << bit;
                let err = verify_cached(&b, &p, NOW, &mut cache).unwrap_err();
                assert!(
                    matches!(err, AttestError::ReportSignatureInvalid),
                    "{stem} offset {offset:#x} bit {bit}: {} {err}",
                    err.code()
                );
            }
        }
        // Every byte of the signed region and signature, one bit each: always rejected,
        // and with a code that names a real problem (a flip in the version, the signature
        // algorithm or SIGNING_KEY is caught before the signature).
        for offset in (0..0x330).step_by(5) {
            let mut b = good.clone();
            b.report[offset] ^= 0x04;
            let c = verify_cached(&b, &p, NOW, &mut cache)
                .expect_err("flipped evidence accepted")
                .code();
            let field_specific = match offset {
                0x00..=0x03 => c == "UNSUPPORTED_VERSION",
                0x34..=0x37 => c == "UNSUPPORTED_SIGNATURE_ALGORITHM",
                0x48 => c == "CERT_CHAIN_INVALID", // SIGNING_KEY 0 -> 1 (VLEK, no ASVK)
                _ => false,
            };
            assert!(
                c == "REPORT_SIGNATURE_INVALID" || field_specific,
                "{stem} offset {offset:#x}: {c}"
            );
        }
    }
    // The cache holds the real chains only.
    assert!(cache.len() <= 2, "{}", cache.len());
}

#[test]
fn another_chips_vcek_of_the_same_generation_fails_the_signature() {
    let err = check(
        &bundle("genoa-msft", "genoa-trustee"),
        &policy("genoa-msft"),
        NOW,
    );
    assert_eq!(code(err), "REPORT_SIGNATURE_INVALID");
    // A version 2 Milan report tries every built-in root: the Genoa VCEK chains (to the
    // Genoa ARK) but did not sign it.
    let err = check(
        &bundle("milan-virtee", "genoa-msft"),
        &policy("milan-virtee"),
        NOW,
    );
    assert_eq!(code(err), "REPORT_SIGNATURE_INVALID");
}

// ---- CERT_CHAIN_INVALID ----

#[test]
fn wrong_generation_vcek_breaks_the_chain() {
    let err = check(
        &bundle("genoa-msft", "milan-virtee"),
        &policy("genoa-msft"),
        NOW,
    )
    .unwrap_err();
    assert_eq!(err.code(), "CERT_CHAIN_INVALID");
    assert!(err.to_string().contains("Genoa"), "{err}");
    let err = check(
        &bundle("genoa-trustee", "milan-gosevguest"),
        &policy("genoa-trustee"),
        NOW,
    );
    assert_eq!(code(err), "CERT_CHAIN_INVALID");
}

#[test]
fn bundle_supplied_ask_counts_only_if_it_chains_to_the_builtin_ark() {
    let pem = read("genoa.ask_ark.pem");
    let certs = Certificate::load_pem_chain(&pem).unwrap();
    let genoa_ask = certs[0].to_der().unwrap();
    // The published Genoa ASK (AMD's, as built in) is accepted.
    let mut b = bundle("genoa-msft", "genoa-msft");
    b.ask = Some(genoa_ask.clone());
    check(&b, &policy("genoa-msft"), NOW).unwrap();
    amd::verify_ca_pair(roots::GENOA_ARK, &genoa_ask).unwrap();
    // A Milan ASK does not chain to the Genoa ARK: it cannot rescue a Milan VCEK for a
    // Genoa report.
    let mut b = bundle("genoa-msft", "milan-virtee");
    b.ask = Some(roots::MILAN_ASK.to_vec());
    assert_eq!(
        code(check(&b, &policy("genoa-msft"), NOW)),
        "CERT_CHAIN_INVALID"
    );
    assert_eq!(
        amd::verify_ca_pair(roots::GENOA_ARK, roots::MILAN_ASK)
            .unwrap_err()
            .code(),
        "CERT_CHAIN_INVALID"
    );
    // Garbage in the bundle's ASK/ARK is ignored when the built-in ASK verifies.
    let mut b = bundle("genoa-msft", "genoa-msft");
    b.ask = Some(vec![0x30, 0x00]);
    b.ark = Some(roots::MILAN_ARK.to_vec());
    check(&b, &policy("genoa-msft"), NOW).unwrap();
}

#[test]
fn vlek_signed_report_needs_an_asvk_under_the_builtin_ark() {
    // SIGNING_KEY = VLEK on a real report (the signature no longer matters: the chain is
    // checked first). Without an ASVK in the bundle there is no chain.
    let mut b = bundle("genoa-msft", "genoa-msft");
    b.report[0x48] |= 1 << 2;
    assert_eq!(
        snp::parse(&b.report).unwrap().signing_key_kind(),
        Some(SigningKey::Vlek)
    );
    let err = check(&b, &policy("genoa-msft"), NOW).unwrap_err();
    assert_eq!(err.code(), "CERT_CHAIN_INVALID");
    assert!(err.to_string().contains("ASVK"), "{err}");
    // The ASK is not an ASVK: a VCEK chain does not endorse a VLEK-signed report.
    b.ask = Some(roots::GENOA_ASK.to_vec());
    let err = check(&b, &policy("genoa-msft"), NOW).unwrap_err();
    assert_eq!(err.code(), "CERT_CHAIN_INVALID");
    assert!(err.to_string().contains("not an ASVK"), "{err}");
    // SIGNING_KEY 7 ("none") is not supported.
    let mut b = bundle("genoa-msft", "genoa-msft");
    b.report[0x48] |= 7 << 2;
    assert_eq!(
        code(check(&b, &policy("genoa-msft"), NOW)),
        "UNSUPPORTED_SIGNING_KEY"
    );
}

// ---- CERT_EXPIRED ----

#[test]
fn verification_time_outside_certificate_validity() {
    for stem in ["milan-virtee", "genoa-trustee", "genoa-msft"] {
        let b = bundle(stem, stem);
        let p = policy(stem);
        let (not_before, not_after) = validity(&b.vcek);
        // Inclusive bounds.
        check(&b, &p, not_after).unwrap_or_else(|e| panic!("{stem}: {e}"));
        check(&b, &p, not_before).unwrap_or_else(|e| panic!("{stem}: {e}"));
        let err = check(&b, &p, not_after + 1).unwrap_err();
        assert!(
            matches!(err, AttestError::CertExpired { cert: "VCEK", .. }),
            "{stem}: {err}"
        );
        assert_eq!(err.code(), "CERT_EXPIRED");
        let err = check(&b, &p, not_before - 1).unwrap_err();
        assert_eq!(err.code(), "CERT_EXPIRED", "{stem}");
    }
    // After the Milan ARK's NotAfter (2045-10-22) the root itself has expired.
    let err = check(
        &bundle("milan-virtee", "milan-virtee"),
        &policy("milan-virtee"),
        2_400_000_000,
    )
    .unwrap_err();
    assert!(
        matches!(err, AttestError::CertExpired { cert: "ARK", .. }),
        "{err}"
    );
}

// ---- VCEK_TCB_MISMATCH and VCEK_HWID_MISMATCH (the binding check on real certificates) ----

fn cert(stem: &str) -> Certificate {
    Certificate::from_der(&vcek(stem)).unwrap()
}

#[test]
fn real_vcek_tcb_extensions_bind_every_component() {
    for stem in ["milan-virtee", "genoa-msft"] {
        let c = cert(stem);
        let good = parsed(stem);
        let generation = if stem.starts_with("milan") {
            Generation::Milan
        } else {
            Generation::Genoa
        };
        amd::check_key_binding(&c, &good, generation, SigningKey::Vcek).unwrap();
        // Byte positions of bl, tee, snp and ucode in the Milan/Genoa layout.
        for (component, byte) in [("bl", 0), ("tee", 1), ("snp", 6), ("ucode", 7)] {
            let mut r = good.clone();
            let mut raw = r.reported_tcb.raw.to_le_bytes();
            raw[byte] = raw[byte].wrapping_add(1);
            r.reported_tcb = TcbVersion {
                raw: u64::from_le_bytes(raw),
            };
            let err = amd::check_key_binding(&c, &r, generation, SigningKey::Vcek).unwrap_err();
            assert_eq!(err.code(), "VCEK_TCB_MISMATCH", "{stem} {component}");
            assert!(matches!(
                err,
                AttestError::VcekTcbMismatch { key: "VCEK", .. }
            ));
        }
        // Decoded with Turin's layout the same bytes disagree (and a Genoa VCEK has no fmcSPL).
        let err =
            amd::check_key_binding(&c, &good, Generation::Turin, SigningKey::Vcek).unwrap_err();
        assert!(
            matches!(err.code(), "VCEK_TCB_MISMATCH" | "CERT_CHAIN_INVALID"),
            "{err}"
        );
    }
}

#[test]
fn real_vcek_hwid_binds_the_chip() {
    let c = cert("genoa-msft");
    // Another chip's report.
    let err = amd::check_vcek_binding(&c, &parsed("genoa-trustee")).unwrap_err();
    assert_eq!(err.code(), "VCEK_HWID_MISMATCH");
    // A masked (zero) CHIP_ID cannot be bound to a VCEK.
    let mut r = parsed("genoa-msft");
    r.chip_id = [0; 64];
    assert_eq!(
        amd::check_vcek_binding(&c, &r).unwrap_err().code(),
        "VCEK_HWID_MISMATCH"
    );
    // One flipped CHIP_ID bit anywhere.
    for i in [0, 31, 63] {
        let mut r = parsed("genoa-msft");
        r.chip_id[i] ^= 0x10;
        assert_eq!(
            amd::check_vcek_binding(&c, &r).unwrap_err().code(),
            "VCEK_HWID_MISMATCH"
        );
    }
    // Treated as a VLEK (no chip binding), a certificate that does carry a hwID must still
    // match; the TCB is checked either way.
    let mut r = parsed("genoa-msft");
    amd::check_key_binding(&c, &r, Generation::Genoa, SigningKey::Vlek).unwrap();
    r.chip_id[0] ^= 1;
    assert_eq!(
        amd::check_key_binding(&c, &r, Generation::Genoa, SigningKey::Vlek)
            .unwrap_err()
            .code(),
        "VCEK_HWID_MISMATCH"
    );
}

// ---- TCB_BELOW_MINIMUM ----

#[test]
fn minimum_tcb_per_component() {
    for stem in ["milan-virtee", "genoa-trustee", "genoa-msft"] {
        let v = check(&bundle(stem, stem), &policy(stem), NOW).unwrap();
        let reported = v.tcb;
        // Exactly the reported TCB is enough; an FMC minimum is ignored without an FMC.
        let mut p = policy(stem);
        p.min_tcb = Some(TcbParts {
            fmc: Some(200),
            ..reported
        });
        let v = check(&bundle(stem, stem), &p, NOW).unwrap();
        assert!(v.steps.iter().any(|s| s.name == "min_tcb"), "{stem}");
        for component in ["bl", "tee", "snp", "ucode"] {
            let mut min = reported;
            match component {
                "bl" => min.bootloader += 1,
                "tee" => min.tee += 1,
                "snp" => min.snp += 1,
                _ => min.microcode += 1,
            }
            let mut p = policy(stem);
            p.min_tcb = Some(min);
            let err = check(&bundle(stem, stem), &p, NOW).unwrap_err();
            assert_eq!(err.code(), "TCB_BELOW_MINIMUM", "{stem} {component}");
            match err {
                AttestError::TcbBelowMinimum {
                    tcb: "REPORTED_TCB",
                    component: c,
                    got,
                    min,
                } => {
                    assert_eq!(c, component);
                    assert_eq!(got + 1, min);
                }
                other => panic!("{other}"),
            }
        }
    }
}

#[test]
fn tcb_minimum_comparison_includes_fmc_on_turin() {
    let reported = TcbParts {
        fmc: Some(3),
        bootloader: 4,
        tee: 5,
        snp: 6,
        microcode: 7,
    };
    assert_eq!(reported.first_below(&reported), None);
    assert_eq!(
        reported.first_below(&TcbParts {
            fmc: Some(4),
            ..reported
        }),
        Some(("fmc", 3, 4))
    );
    assert_eq!(
        reported.first_below(&TcbParts {
            fmc: None,
            microcode: 8,
            ..reported
        }),
        Some(("ucode", 7, 8))
    );
    // Higher components elsewhere do not compensate.
    assert_eq!(
        reported.first_below(&TcbParts {
            fmc: Some(0),
            bootloader: 0,
            tee: 6,
            snp: 0,
            microcode: 0
        }),
        Some(("tee", 5, 6))
    );
}

// ---- Pins: MEASUREMENT, REPORT_DATA, HOST_DATA, ID key, author key ----

#[test]
fn pins_accept_the_real_values_and_reject_others() {
    let stem = "genoa-msft";
    let r = parsed(stem);
    let b = bundle(stem, stem);
    let mut all = policy(stem);
    all.expected_measurement = Some(r.measurement);
    all.expected_host_data = Some(r.host_data);
    all.expected_id_key_digest = Some(r.id_key_digest);
    all.expected_author_key_digest = Some(r.author_key_digest);
    let v = check(&b, &all, NOW).unwrap();
    for n in [
        "measurement",
        "host_data",
        "id_key_digest",
        "author_key_digest",
    ] {
        assert!(v.steps.iter().any(|s| s.name == n), "{n}");
    }

    let mut p = all.clone();
    p.expected_measurement.as_mut().unwrap()[47] ^= 1;
    assert_eq!(code(check(&b, &p, NOW)), "MEASUREMENT_MISMATCH");

    let mut p = all.clone();
    p.expected_report_data = Some([0xFF; 64]);
    let err = check(&b, &p, NOW).unwrap_err();
    assert_eq!(err.code(), "REPORT_DATA_MISMATCH");
    // milan-gosevguest's REPORT_DATA is 01..05 then zeros.
    let mut p = Policy::new(TrustRoots::default(), [0; 64]);
    p.allow_debug = true;
    assert_eq!(
        code(check(
            &bundle("milan-gosevguest", "milan-gosevguest"),
            &p,
            NOW
        )),
        "REPORT_DATA_MISMATCH"
    );

    let mut p = all.clone();
    p.expected_host_data.as_mut().unwrap()[0] ^= 1;
    let err = check(&b, &p, NOW).unwrap_err();
    assert_eq!(err.code(), "HOST_DATA_MISMATCH");
    assert!(err.to_string().contains("4f4448c67f3c8dfc"), "{err}");

    let mut p = all.clone();
    p.expected_id_key_digest = Some([0; 48]);
    assert_eq!(code(check(&b, &p, NOW)), "ID_KEY_DIGEST_MISMATCH");

    // The report has no author key (zero digest): any non-zero pin fails.
    let mut p = all.clone();
    p.expected_author_key_digest = Some([0xAB; 48]);
    assert_eq!(code(check(&b, &p, NOW)), "AUTHOR_KEY_DIGEST_MISMATCH");
}

// ---- UNSUPPORTED_VERSION and MALFORMED_EVIDENCE ----

#[test]
fn report_versions() {
    let p = policy("genoa-msft");
    for (v, expected) in [
        (0u32, "UNSUPPORTED_VERSION"),
        (1, "UNSUPPORTED_VERSION"),
        (6, "UNSUPPORTED_VERSION"),
        (0x8000_0003, "UNSUPPORTED_VERSION"),
        // 4 and 5 parse and reach the signature check (the version is signed).
        (4, "REPORT_SIGNATURE_INVALID"),
        (5, "REPORT_SIGNATURE_INVALID"),
    ] {
        let mut b = bundle("genoa-msft", "genoa-msft");
        b.report[..4].copy_from_slice(&v.to_le_bytes());
        assert_eq!(code(check(&b, &p, NOW)), expected, "version {v}");
    }
    // An evidence bundle of an unknown format version.
    let mut enc = bundle("genoa-msft", "genoa-msft").encode();
    enc[4] = 9;
    assert_eq!(
        EvidenceBundle::decode(&enc).unwrap_err().code(),
        "UNSUPPORTED_VERSION"
    );
}

#[test]
fn truncated_files_are_malformed() {
    let p = policy("genoa-msft");
    let good = bundle("genoa-msft", "genoa-msft");
    for len in [0, 4, 0x2A0, snp::REPORT_LEN - 1] {
        let mut b = good.clone();
        b.report.truncate(len);
        assert_eq!(
            code(check(&b, &p, NOW)),
            "MALFORMED_EVIDENCE",
            "report {len}"
        );
    }
    let vlen = good.vcek.len();
    for len in [0, 1, 100, vlen / 2, vlen - 1] {
        let mut b = good.clone();
        b.vcek.truncate(len);
        assert_eq!(code(check(&b, &p, NOW)), "MALFORMED_EVIDENCE", "vcek {len}");
    }
    let enc = good.encode();
    for len in [0, 3, 10, enc.len() / 2, enc.len() - 1] {
        assert_eq!(
            EvidenceBundle::decode(&enc[..len]).unwrap_err().code(),
            "MALFORMED_EVIDENCE",
            "bundle {len}"
        );
    }
}

// ---- Turin ----

#[test]
fn turin_tcb_layout_round_trips() {
    let parts = TcbParts {
        fmc: Some(0x11),
        bootloader: 0x22,
        tee: 0x33,
        snp: 0x44,
        microcode: 0x55,
    };
    let v = TcbVersion::encode(&parts, Generation::Turin).unwrap();
    assert_eq!(
        v.raw.to_le_bytes(),
        [0x11, 0x22, 0x33, 0x44, 0, 0, 0, 0x55],
        "Turin: fmc, bl, tee, snp, reserved x3, ucode"
    );
    assert_eq!(v.decode(Generation::Turin), Some(parts));
    // The same parts in the Milan/Genoa layout: no FMC, snp in byte 6.
    let g = TcbVersion::encode(&parts, Generation::Genoa).unwrap();
    assert_eq!(g.raw.to_le_bytes(), [0x22, 0x33, 0, 0, 0, 0, 0x44, 0x55]);
    assert_eq!(
        g.decode(Generation::Genoa),
        Some(TcbParts { fmc: None, ..parts })
    );
    // Reading Turin bytes with the Genoa layout gives different SVNs: the layout must
    // come from the generation, not the report version.
    assert_ne!(v.decode(Generation::Genoa).unwrap().bootloader, 0x22);
    // Every byte value round-trips.
    for b in 0..=255u8 {
        let p = TcbParts {
            fmc: Some(b),
            bootloader: b.wrapping_add(1),
            tee: b.wrapping_add(2),
            snp: b.wrapping_add(3),
            microcode: b.wrapping_add(4),
        };
        let raw = TcbVersion::encode(&p, Generation::Turin).unwrap();
        assert_eq!(raw.decode(Generation::Turin), Some(p));
    }
    assert_eq!(v.decode(Generation::Unknown), None);
}

#[test]
fn turin_cpuid_and_builtin_roots() {
    assert_eq!(Generation::from_cpuid(0x1A, 0x02), Generation::Turin);
    assert_eq!(Generation::from_cpuid(0x1A, 0x11), Generation::Turin);
    assert_eq!(Generation::from_cpuid(0x1A, 0x50), Generation::Unknown); // Venice
    assert_eq!(Generation::from_cpuid(0x19, 0xA0), Generation::Genoa); // Siena
    assert_eq!(Generation::from_cpuid(0x19, 0x01), Generation::Milan);

    assert_eq!(
        hex::encode(fingerprint(roots::TURIN_ARK)),
        roots::TURIN_ARK_SHA256
    );
    for (ark, ask, cn) in [
        (roots::MILAN_ARK, roots::MILAN_ASK, "Milan"),
        (roots::GENOA_ARK, roots::GENOA_ASK, "Genoa"),
        (roots::TURIN_ARK, roots::TURIN_ASK, "Turin"),
    ] {
        let [ark_c, ask_c] = amd::verify_ca_pair(ark, ask).unwrap_or_else(|e| panic!("{cn}: {e}"));
        assert!(
            ark_c
                .tbs_certificate
                .subject
                .to_string()
                .contains(&format!("CN=ARK-{cn}"))
        );
        assert!(
            ask_c
                .tbs_certificate
                .subject
                .to_string()
                .contains(&format!("CN=SEV-{cn}"))
        );
        amd::check_validity(&ark_c, "ARK", NOW).unwrap();
        amd::check_validity(&ask_c, "ASK", NOW).unwrap();
    }
    // Roots of different generations do not cross-sign.
    assert!(amd::verify_ca_pair(roots::TURIN_ARK, roots::GENOA_ASK).is_err());
    let turin = amd::builtin_roots(Generation::Turin);
    assert_eq!(turin.len(), 1);
    assert_eq!(turin[0].ark, roots::TURIN_ARK);
    assert_eq!(amd::builtin_roots(Generation::Unknown).len(), 3);
}

#[test]
fn turin_report_selects_the_turin_roots() {
    // genoa-msft relabelled as a Turin report (version 5, CPUID family 0x1A model 0x02):
    // the verifier picks the Turin ARK/ASK, which did not issue the Genoa VCEK.
    for version in [3u32, 5] {
        let mut b = bundle("genoa-msft", "genoa-msft");
        b.report[..4].copy_from_slice(&version.to_le_bytes());
        b.report[0x188] = 0x1A;
        b.report[0x189] = 0x02;
        let r = snp::parse(&b.report).unwrap();
        assert_eq!(r.generation(), Generation::Turin);
        let err = check(&b, &policy("genoa-msft"), NOW).unwrap_err();
        assert_eq!(err.code(), "CERT_CHAIN_INVALID", "v{version}: {err}");
        assert!(err.to_string().contains("Turin"), "{err}");
        assert!(!err.to_string().contains("Genoa ARK"), "{err}");
    }
    // An unknown family 0x1A model (Venice) tries every built-in root; the Genoa root
    // verifies the chain and the (now modified) report's signature fails.
    let mut b = bundle("genoa-msft", "genoa-msft");
    b.report[0x188] = 0x1A;
    b.report[0x189] = 0x50;
    assert_eq!(
        code(check(&b, &policy("genoa-msft"), NOW)),
        "REPORT_SIGNATURE_INVALID"
    );
}

/// Every SNP code the issue lists has a message and is produced by some test above (or
/// in sotto-attester's simulated tests for MIGRATION_AGENT_ENABLED).
#[test]
fn codes_are_stable_and_have_messages() {
    let all = [
        (
            AttestError::ReportSignatureInvalid,
            "REPORT_SIGNATURE_INVALID",
        ),
        (
            AttestError::CertChainInvalid("x".into()),
            "CERT_CHAIN_INVALID",
        ),
        (
            AttestError::CertExpired {
                cert: "VCEK",
                now: 1,
                not_before: 2,
                not_after: 3,
            },
            "CERT_EXPIRED",
        ),
        (
            AttestError::VcekTcbMismatch {
                key: "VCEK",
                cert: "a".into(),
                report: "b".into(),
            },
            "VCEK_TCB_MISMATCH",
        ),
        (AttestError::VcekHwidMismatch, "VCEK_HWID_MISMATCH"),
        (
            AttestError::TcbBelowMinimum {
                tcb: "REPORTED_TCB",
                component: "snp",
                got: 1,
                min: 2,
            },
            "TCB_BELOW_MINIMUM",
        ),
        (AttestError::DebugEnabled(0), "DEBUG_ENABLED"),
        (
            AttestError::MigrationAgentEnabled(0),
            "MIGRATION_AGENT_ENABLED",
        ),
        (
            AttestError::MeasurementMismatch {
                expected: "a".into(),
                got: "b".into(),
            },
            "MEASUREMENT_MISMATCH",
        ),
        (
            AttestError::ReportDataMismatch { got: "b".into() },
            "REPORT_DATA_MISMATCH",
        ),
        (
            AttestError::HostDataMismatch {
                expected: "a".into(),
                got: "b".into(),
            },
            "HOST_DATA_MISMATCH",
        ),
        (
            AttestError::IdKeyDigestMismatch {
                expected: "a".into(),
                got: "b".into(),
            },
            "ID_KEY_DIGEST_MISMATCH",
        ),
        (
            AttestError::AuthorKeyDigestMismatch {
                expected: "a".into(),
                got: "b".into(),
            },
            "AUTHOR_KEY_DIGEST_MISMATCH",
        ),
        (
            AttestError::UnsupportedVersion {
                what: "SNP report",
                version: 9,
            },
            "UNSUPPORTED_VERSION",
        ),
        (
            AttestError::MalformedEvidence("x".into()),
            "MALFORMED_EVIDENCE",
        ),
    ];
    for (err, code) in all {
        assert_eq!(err.code(), code);
        assert!(err.to_string().len() > 10, "{code}: {err}");
    }
}
