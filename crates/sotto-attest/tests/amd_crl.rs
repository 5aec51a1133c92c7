//! AMD's CRLs for SEV-SNP, with real data: AMD's Milan and Genoa CRLs (tests/data/amd,
//! see the README there) verified under the built-in ARKs, together with the real evidence
//! in ../shared/attestation/snp. Rejections that need a CRL signed by a key we hold
//! (revoking the ASK, another key, expiry) are tested under the simulated root in
//! crates/sotto-attester/tests/sim_crl.rs.

use der::Decode;
use sotto_attest::amd::{self, roots};
use sotto_attest::snp;
use sotto_attest::{
    AttestError, EvidenceBundle, Extra, Platform, Policy, TrustRoots, Verified, tags, verify,
};
use x509_cert::Certificate;

const SNP_DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/attestation/snp"
);
const MILAN_CRL: &[u8] = include_bytes!("data/amd/milan-vcek.crl");
const GENOA_CRL: &[u8] = include_bytes!("data/amd/genoa-vcek.crl");

/// 2026-03-01T12:00Z: inside the Milan CRL's window (2025-05-06 .. 2026-05-12).
const MILAN_NOW: u64 = 1_772_366_400;
/// 2025-08-01T12:00Z: inside the Genoa CRL's window (2024-10-23 .. 2025-11-03) and after
/// genoa-trustee's VCEK was issued (2025-05-27).
const GENOA_NOW: u64 = 1_754_049_600;
const MILAN_THIS_UPDATE: u64 = 1_746_535_146;
const MILAN_NEXT_UPDATE: u64 = 1_778_544_000;

fn read(name: &str) -> Vec<u8> {
    let path = format!("{SNP_DIR}/{name}");
    std::fs::read(&path).unwrap_or_else(|e| panic!("test data {path}: {e}"))
}

fn bundle(stem: &str, crls: &[&[u8]]) -> EvidenceBundle {
    EvidenceBundle {
        platform: Platform::SevSnp,
        report: read(&format!("{stem}.report.bin")),
        vcek: read(&format!("{stem}.vcek.der")),
        ask: None,
        ark: None,
        extras: crls
            .iter()
            .map(|c| Extra {
                tag: tags::AMD_CRL,
                value: c.to_vec(),
            })
            .collect(),
    }
}

fn policy(stem: &str) -> Policy {
    let report = snp::parse(&read(&format!("{stem}.report.bin"))).unwrap();
    Policy::new(TrustRoots::default(), report.report_data)
}

/// Verify through the wire encoding, as a client receives it.
fn check(b: &EvidenceBundle, p: &Policy, now: u64) -> Result<Verified, AttestError> {
    verify(&EvidenceBundle::decode(&b.encode()).unwrap(), p, now)
}

fn code(r: Result<Verified, AttestError>) -> &'static str {
    match r {
        Ok(_) => "OK",
        Err(e) => e.code(),
    }
}

fn crl_step(v: &Verified) -> &str {
    &v.steps
        .iter()
        .find(|s| s.name == "crl")
        .expect("crl step")
        .result
}

fn cert(der: &[u8]) -> Certificate {
    Certificate::from_der(der).unwrap()
}

#[test]
fn real_milan_crl_verifies_under_the_builtin_ark() {
    let v = check(
        &bundle("milan-virtee", &[MILAN_CRL]),
        &policy("milan-virtee"),
        MILAN_NOW,
    )
    .unwrap_or_else(|e| panic!("{}: {e}", e.code()));
    let c = v.amd_crl.as_ref().expect("CRL reported");
    assert_eq!(c.issuer, "ARK-Milan");
    assert_eq!(c.intermediate, "SEV-Milan");
    assert_eq!(c.number, Some(6));
    assert_eq!(
        (c.this_update, c.next_update),
        (MILAN_THIS_UPDATE, MILAN_NEXT_UPDATE)
    );
    assert_eq!(c.revoked_count, 0);
    let step = crl_step(&v);
    assert!(
        step.contains("ARK-Milan") && step.contains("SEV-Milan not revoked"),
        "{step}"
    );
    // The CRL is checked right after the chain, before the report signature.
    let names: Vec<_> = v.steps.iter().map(|s| s.name).collect();
    let at = |n: &str| names.iter().position(|x| *x == n).unwrap();
    assert_eq!(at("crl"), at("cert_validity") + 1, "{names:?}");
}

#[test]
fn real_genoa_crl_lists_an_old_ask_but_not_the_builtin_one() {
    let v = check(
        &bundle("genoa-trustee", &[GENOA_CRL]),
        &policy("genoa-trustee"),
        GENOA_NOW,
    )
    .unwrap_or_else(|e| panic!("{}: {e}", e.code()));
    let c = v.amd_crl.as_ref().unwrap();
    assert_eq!((c.issuer.as_str(), c.number), ("ARK-Genoa", Some(4)));
    assert_eq!(c.revoked_count, 1);
    assert_eq!(
        cert(roots::GENOA_ASK)
            .tbs_certificate
            .serial_number
            .as_bytes(),
        [0x02, 0x00, 0x02]
    );

    // The Genoa ASK with AMD's revoked serial 02 00 01: the real CRL revokes it. (The
    // certificate's own signature is no longer valid; check_crl's caller has verified the
    // chain, check_crl compares serials.)
    let ark = cert(roots::GENOA_ARK);
    let mut old_ask = cert(roots::GENOA_ASK);
    old_ask.tbs_certificate.serial_number =
        x509_cert::serial_number::SerialNumber::new(&[0x02, 0x00, 0x01]).unwrap();
    let err = amd::check_crl(GENOA_CRL, &ark, &old_ask, GENOA_NOW).unwrap_err();
    assert_eq!(err.code(), "CRL_REVOKED", "{err}");
    assert!(err.to_string().contains("020001"), "{err}");
    let ok = amd::check_crl(GENOA_CRL, &ark, &cert(roots::GENOA_ASK), GENOA_NOW).unwrap();
    assert_eq!(ok.intermediate, "SEV-Genoa");
}

#[test]
fn crl_of_another_generation_is_a_mismatch() {
    let r = check(
        &bundle("genoa-trustee", &[MILAN_CRL]),
        &policy("genoa-trustee"),
        MILAN_NOW,
    );
    let err = r.unwrap_err();
    assert_eq!(err.code(), "COLLATERAL_MISMATCH", "{err}");
    assert!(err.to_string().contains("ARK-Milan"), "{err}");
    let r = check(
        &bundle("milan-virtee", &[GENOA_CRL]),
        &policy("milan-virtee"),
        GENOA_NOW,
    );
    assert_eq!(code(r), "COLLATERAL_MISMATCH");
}

#[test]
fn real_crl_outside_its_window_is_collateral_expired() {
    let b = bundle("milan-virtee", &[MILAN_CRL]);
    let p = policy("milan-virtee");
    // Bounds: thisUpdate is inclusive, nextUpdate exclusive.
    assert_eq!(code(check(&b, &p, MILAN_THIS_UPDATE)), "OK");
    assert_eq!(code(check(&b, &p, MILAN_NEXT_UPDATE - 1)), "OK");
    for now in [
        MILAN_THIS_UPDATE - 1,
        1_735_689_600, // 2025-01-01
        MILAN_NEXT_UPDATE,
        1_780_272_000, // 2026-06-01
    ] {
        let err = check(&b, &p, now).unwrap_err();
        assert_eq!(err.code(), "COLLATERAL_EXPIRED", "at {now}: {err}");
        assert!(err.to_string().contains("AMD CRL"), "{err}");
    }
}

#[test]
fn tampered_real_crl_fails_its_signature() {
    let b = |crl: Vec<u8>| bundle("milan-virtee", &[&crl]);
    let p = policy("milan-virtee");
    // The CRL number (signed) from 6 to 7.
    let mut crl = MILAN_CRL.to_vec();
    let number = [0x06, 0x03, 0x55, 0x1d, 0x14, 0x04, 0x03, 0x02, 0x01, 0x06];
    let at = crl.windows(number.len()).position(|w| w == number).unwrap();
    crl[at + number.len() - 1] = 0x07;
    let err = check(&b(crl), &p, MILAN_NOW).unwrap_err();
    assert_eq!(err.code(), "COLLATERAL_SIGNATURE_INVALID", "{err}");
    // A flipped bit in the signature (the last byte of the file).
    let mut crl = MILAN_CRL.to_vec();
    let last = crl.len() - 1;
    crl[last] ^= 0x01;
    assert_eq!(
        code(check(&b(crl), &p, MILAN_NOW)),
        "COLLATERAL_SIGNATURE_INVALID"
    );
    // The nextUpdate year (signed) moved by a decade: still the signature.
    let mut crl = MILAN_CRL.to_vec();
    let next = b"260512000000Z";
    let at = crl.windows(next.len()).position(|w| w == next).unwrap();
    crl[at + 1] = b'9'; // 2036
    assert_eq!(
        code(check(&b(crl), &p, MILAN_NOW)),
        "COLLATERAL_SIGNATURE_INVALID"
    );
}

#[test]
fn malformed_crls_are_malformed_evidence() {
    let p = policy("milan-virtee");
    let mut trailing = MILAN_CRL.to_vec();
    trailing.push(0);
    let cases: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"not a CRL".to_vec(),
        MILAN_CRL[..MILAN_CRL.len() - 1].to_vec(),
        trailing,
        roots::MILAN_ARK.to_vec(), // a certificate, not a CRL
    ];
    for crl in cases {
        let r = check(&bundle("milan-virtee", &[&crl]), &p, MILAN_NOW);
        assert_eq!(code(r), "MALFORMED_EVIDENCE", "{} bytes", crl.len());
    }
    // Two CRLs: even two copies of the genuine one.
    let r = check(
        &bundle("milan-virtee", &[MILAN_CRL, MILAN_CRL]),
        &p,
        MILAN_NOW,
    );
    assert_eq!(code(r), "MALFORMED_EVIDENCE");
}

#[test]
fn without_a_crl_the_step_says_not_checked_and_policy_can_require_one() {
    let p = policy("milan-virtee");
    let v = check(&bundle("milan-virtee", &[]), &p, MILAN_NOW).unwrap();
    assert!(v.amd_crl.is_none());
    assert!(crl_step(&v).starts_with("NOT checked"), "{}", crl_step(&v));

    let mut strict = p.clone();
    strict.require_amd_crl = true;
    let err = check(&bundle("milan-virtee", &[]), &strict, MILAN_NOW).unwrap_err();
    assert_eq!(err.code(), "CRL_MISSING");
    assert_eq!(err, AttestError::CrlMissing);
    assert_eq!(
        code(check(
            &bundle("milan-virtee", &[MILAN_CRL]),
            &strict,
            MILAN_NOW
        )),
        "OK"
    );
    // The default policy does not require one (the kernel's auxblob carries none).
    assert!(!Policy::unbound(TrustRoots::default()).require_amd_crl);
}

#[test]
fn crl_is_checked_before_policy_decisions() {
    // milan-gosevguest allows debugging (a policy rejection); a CRL of the wrong
    // generation is reported first, because the CRL belongs to the chain checks.
    let r = check(
        &bundle("milan-gosevguest", &[GENOA_CRL]),
        &policy("milan-gosevguest"),
        GENOA_NOW,
    );
    assert_eq!(code(r), "COLLATERAL_MISMATCH");
}

#[test]
fn crl_files_load_as_der_or_pem() {
    assert_eq!(amd::crl_der_from_der_or_pem(MILAN_CRL).unwrap(), MILAN_CRL);
    let pem = der::pem::encode_string("X509 CRL", der::pem::LineEnding::LF, MILAN_CRL).unwrap();
    let text = format!("issuer: ARK-Milan\n{pem}trailing text\n");
    assert_eq!(
        amd::crl_der_from_der_or_pem(text.as_bytes()).unwrap(),
        MILAN_CRL
    );
    let cert_pem =
        der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, roots::MILAN_ARK).unwrap();
    let wrong_label = cert_pem.replace("CERTIFICATE", "X509 CRL");
    for bad in [
        cert_pem.as_bytes(),
        wrong_label.as_bytes(),
        b"-----BEGIN X509 CRL-----\nAAAA\n".as_slice(),
        b"garbage".as_slice(),
        roots::MILAN_ARK,
    ] {
        let err = amd::crl_der_from_der_or_pem(bad).unwrap_err();
        assert_eq!(err.code(), "MALFORMED_EVIDENCE", "{err}");
    }
}

#[test]
fn every_single_byte_change_of_a_real_crl_is_rejected() {
    // Every byte of a CRL is signed or structural: any change is rejected with one of the
    // CRL codes, never accepted and never a panic.
    let ark = cert(roots::MILAN_ARK);
    let ask = cert(roots::MILAN_ASK);
    for i in 0..MILAN_CRL.len() {
        let mut crl = MILAN_CRL.to_vec();
        crl[i] ^= 0x5A;
        match amd::check_crl(&crl, &ark, &ask, MILAN_NOW) {
            Ok(_) => panic!("byte {i} changed and the CRL still verified"),
            Err(e) => assert!(
                [
                    "MALFORMED_EVIDENCE",
                    "COLLATERAL_SIGNATURE_INVALID",
                    "COLLATERAL_MISMATCH",
                    "COLLATERAL_EXPIRED",
                ]
                .contains(&e.code()),
                "byte {i}: {e}"
            ),
        }
    }
}
