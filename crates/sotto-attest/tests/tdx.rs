//! Intel TDX quote verification against real quotes and collateral (shared test data, used
//! in place; see /work/shared/attestation/README.md, "Intel TDX").

use proptest::prelude::*;
use serde_json::Value;
use sotto_attest::tdx::{self, TcbStatus, td_attributes};
use sotto_attest::{EvidenceBundle, Extra, Platform, Policy, TrustRoots, Verified, tags, verify};

const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/attestation/tdx"
);

/// README: verify v4-dcapqvl at 2025-07-01T12:00Z, v5-gotdxguest at 2026-03-01T12:00Z.
const V4_NOW: u64 = 1_751_371_200;
const V5_NOW: u64 = 1_772_366_400;
/// 2026-01-01T00:00Z: after the v4 collateral's nextUpdate (2025-07-19).
const V4_EXPIRED_NOW: u64 = 1_767_225_600;

struct Sample {
    stem: &'static str,
    now: u64,
    version: u16,
    body_type: u16,
    mrtd_prefix: &'static str,
    report_data_prefix: &'static str,
    fmspc: &'static str,
}

const V4: Sample = Sample {
    stem: "v4-dcapqvl",
    now: V4_NOW,
    version: 4,
    body_type: tdx::BODY_TD_REPORT10,
    mrtd_prefix: "91eb2b44d141d4ec",
    report_data_prefix: "9a9d48e7f6799642",
    fmspc: "b0c06f000000",
};

const V5: Sample = Sample {
    stem: "v5-gotdxguest",
    now: V5_NOW,
    version: 5,
    body_type: tdx::BODY_TD_REPORT15,
    mrtd_prefix: "7348651a34b2d2d3",
    report_data_prefix: "945eaacf5abc1f71",
    fmspc: "90c06f000000",
};

fn read(name: &str) -> Vec<u8> {
    let path = format!("{DIR}/{name}");
    std::fs::read(&path).unwrap_or_else(|e| panic!("test data {path}: {e}"))
}

fn quote(s: &Sample) -> Vec<u8> {
    read(&format!("{}.quote.bin", s.stem))
}

fn collateral(s: &Sample) -> Vec<u8> {
    read(&format!("{}.collateral.json", s.stem))
}

fn bundle(quote: Vec<u8>, collateral: Vec<u8>) -> EvidenceBundle {
    EvidenceBundle {
        platform: Platform::Tdx,
        report: quote,
        vcek: Vec::new(),
        ask: None,
        ark: None,
        extras: vec![Extra {
            tag: tags::TDX_COLLATERAL,
            value: collateral,
        }],
    }
}

/// The handshake policy: default TDX requirements, REPORTDATA pinned to the quote's.
fn policy_for(quote: &[u8]) -> Policy {
    let parsed = tdx::parse_quote(quote).expect("parse");
    Policy::new(TrustRoots::default(), parsed.report.report_data)
}

fn verify_sample(
    s: &Sample,
    policy: &Policy,
    now: u64,
) -> Result<Verified, sotto_attest::AttestError> {
    verify(&bundle(quote(s), collateral(s)), policy, now)
}

fn code(r: Result<Verified, sotto_attest::AttestError>) -> &'static str {
    match r {
        Ok(_) => "OK",
        Err(e) => e.code(),
    }
}

/// Collateral JSON with one string field changed by `f`.
fn edit_collateral(s: &Sample, field: &str, f: impl FnOnce(&mut String)) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&collateral(s)).unwrap();
    let Value::String(text) = &mut v[field] else {
        panic!("collateral field {field} is not a string");
    };
    f(text);
    serde_json::to_vec(&v).unwrap()
}

fn flip_hex_digit(text: &mut String, index: usize) {
    let mut bytes = text.clone().into_bytes();
    bytes[index] = if bytes[index] == b'0' { b'1' } else { b'0' };
    *text = String::from_utf8(bytes).unwrap();
}

#[test]
fn both_quotes_verify_up_to_date() {
    for s in [&V4, &V5] {
        let q = quote(s);
        let v =
            verify_sample(s, &policy_for(&q), s.now).unwrap_or_else(|e| panic!("{}: {e}", s.stem));
        assert_eq!(v.platform, Platform::Tdx);
        assert!(!v.is_simulated);
        assert_eq!(
            hex::encode(v.ark_fingerprint),
            tdx::INTEL_SGX_ROOT_CA_SHA256
        );
        assert_eq!(v.report_version, u32::from(s.version));
        assert!(
            hex::encode(v.measurement).starts_with(s.mrtd_prefix),
            "{}",
            s.stem
        );
        assert!(
            hex::encode(v.report_data).starts_with(s.report_data_prefix),
            "{}",
            s.stem
        );
        let t = v.tdx.as_ref().expect("TDX details");
        assert_eq!(t.tcb_status, TcbStatus::UpToDate, "{}", s.stem);
        assert_eq!(t.quote_version, s.version);
        assert_eq!(t.body_type, s.body_type);
        assert_eq!(hex::encode(t.fmspc), s.fmspc);
        assert_eq!(t.report.mr_td, v.measurement);
        assert!(!t.report.debug());
        assert!(t.collateral_expires >= s.now);
        let names: Vec<_> = v.steps.iter().map(|s| s.name).collect();
        for name in [
            "platform",
            "report_format",
            "collateral_validity",
            "root",
            "cert_chain",
            "collateral_signature",
            "qe_report",
            "report_signature",
            "tcb",
            "td_attributes",
            "report_data",
            "measurement",
        ] {
            assert!(names.contains(&name), "{}: step {name} missing", s.stem);
        }
    }
}

#[test]
fn parsed_fields_match_readme_offsets() {
    for s in [&V4, &V5] {
        let q = quote(s);
        let p = tdx::parse_quote(&q).unwrap();
        let (mrtd, rd) = if s.version == 4 {
            (184, 568)
        } else {
            (190, 574)
        };
        assert_eq!(p.report.mr_td[..], q[mrtd..mrtd + 48]);
        assert_eq!(p.report.report_data[..], q[rd..rd + 64]);
        assert_eq!(p.version, s.version);
        assert_eq!(p.body_type, s.body_type);
        assert_eq!(p.report.tee_tcb_svn2.is_some(), s.version == 5);
        assert_eq!(p.signed_len, if s.version == 4 { 632 } else { 702 });
        assert!(p.pck_cert_chain.starts_with(b"-----BEGIN CERTIFICATE-----"));
        assert_eq!(p.qe_report.len(), 384);
        assert_eq!(
            p.report.td_attributes,
            td_attributes::SEPT_VE_DISABLE,
            "{}",
            s.stem
        );
    }
}

#[test]
fn flipped_report_data_bit_fails_signature() {
    for s in [&V4, &V5] {
        let mut q = quote(s);
        let rd = if s.version == 4 { 568 } else { 574 };
        q[rd] ^= 0x01;
        // Pin the modified value so that only the signature can object.
        let r = verify(&bundle(q.clone(), collateral(s)), &policy_for(&q), s.now);
        assert_eq!(code(r), "REPORT_SIGNATURE_INVALID", "{}", s.stem);
    }
}

#[test]
fn flipped_bits_elsewhere_are_rejected() {
    let s = &V5;
    let q = quote(s);
    let policy = policy_for(&q);
    // MRTD, an RTMR, the quote signature, the attestation key, the QE report, its signature.
    for offset in [
        190,
        54 + 328 + 5,
        702 + 4 + 10,
        702 + 4 + 64 + 3,
        702 + 4 + 134 + 100,
        702 + 4 + 134 + 384 + 7,
    ] {
        let mut m = q.clone();
        m[offset] ^= 0x80;
        let c = code(verify(&bundle(m, collateral(s)), &policy, s.now));
        assert_ne!(c, "OK", "offset {offset}");
        assert!(
            [
                "REPORT_SIGNATURE_INVALID",
                "QE_IDENTITY_MISMATCH",
                "CERT_CHAIN_INVALID"
            ]
            .contains(&c),
            "offset {offset}: {c}"
        );
    }
}

#[test]
fn v4_collateral_expired_in_2026() {
    let s = &V4;
    let q = quote(s);
    let err = verify_sample(s, &policy_for(&q), V4_EXPIRED_NOW).unwrap_err();
    assert_eq!(err.code(), "COLLATERAL_EXPIRED", "{err}");
    assert!(err.to_string().contains("TCB info"), "{err}");
    // And before the collateral was issued.
    let err = verify_sample(s, &policy_for(&q), 1_700_000_000).unwrap_err();
    assert_eq!(err.code(), "COLLATERAL_EXPIRED", "{err}");
}

#[test]
fn tcb_status_allow_list() {
    for s in [&V4, &V5] {
        let q = quote(s);
        let mut policy = policy_for(&q);
        policy.tdx.allowed_tcb_statuses = vec![TcbStatus::SWHardeningNeeded, TcbStatus::OutOfDate];
        let err = verify_sample(s, &policy, s.now).unwrap_err();
        assert_eq!(err.code(), "TCB_STATUS_NOT_ALLOWED", "{}: {err}", s.stem);
        assert!(err.to_string().contains("UpToDate"), "{err}");

        policy.tdx.allowed_tcb_statuses = Vec::new();
        assert_eq!(
            code(verify_sample(s, &policy, s.now)),
            "TCB_STATUS_NOT_ALLOWED"
        );

        policy.tdx.allowed_tcb_statuses = vec![TcbStatus::UpToDate, TcbStatus::SWHardeningNeeded];
        assert_eq!(code(verify_sample(s, &policy, s.now)), "OK");
    }
    assert_eq!(
        TcbStatus::from_name("SWHardeningNeeded"),
        Some(TcbStatus::SWHardeningNeeded)
    );
    assert_eq!(TcbStatus::from_name("Bogus"), None);
    for st in TcbStatus::ALL {
        assert_eq!(TcbStatus::from_name(st.name()), Some(st));
    }
}

/// A modified quote fails at its signature before any attribute check (verification order:
/// signatures, TCB status, attributes, bindings), so the attribute policy is tested on a
/// parsed body directly.
#[test]
fn debug_attribute() {
    for s in [&V4, &V5] {
        let q = quote(s);
        let parsed = tdx::parse_quote(&q).unwrap();
        tdx::check_td_attributes(&parsed.report, false).unwrap();

        let mut debug = parsed.report.clone();
        debug.td_attributes |= td_attributes::DEBUG;
        assert!(debug.debug());
        let err = tdx::check_td_attributes(&debug, false).unwrap_err();
        assert_eq!(err.code(), "DEBUG_ENABLED");
        assert!(err.to_string().contains("0x0000000010000001"), "{err}");
        tdx::check_td_attributes(&debug, true).unwrap();

        // Through the policy-level check, too.
        let mut policy = Policy::new(TrustRoots::default(), parsed.report.report_data);
        assert_eq!(
            tdx::check_report(&debug, &policy).unwrap_err().code(),
            "DEBUG_ENABLED"
        );
        policy.allow_debug = true;
        let steps = tdx::check_report(&debug, &policy).unwrap();
        assert!(steps[0].result.contains("DEBUG ON"));

        // Profiling bits count as debug.
        let mut profiling = parsed.report.clone();
        profiling.td_attributes |= 0x10;
        assert_eq!(
            tdx::check_td_attributes(&profiling, false)
                .unwrap_err()
                .code(),
            "DEBUG_ENABLED"
        );

        // In a real quote, setting the bit breaks the signature first.
        let mut m = q.clone();
        let attrs = if s.version == 4 { 48 + 120 } else { 54 + 120 };
        m[attrs] |= 0x01;
        assert_eq!(tdx::parse_quote(&m).unwrap().report.td_attributes & 1, 1);
        let r = verify(&bundle(m, collateral(s)), &policy_for(&q), s.now);
        assert_eq!(code(r), "REPORT_SIGNATURE_INVALID", "{}", s.stem);
    }
}

#[test]
fn other_td_attributes() {
    let parsed = tdx::parse_quote(&quote(&V5)).unwrap();
    let with = |f: &dyn Fn(u64) -> u64| {
        let mut r = parsed.report.clone();
        r.td_attributes = f(r.td_attributes);
        tdx::check_td_attributes(&r, true).map_err(|e| e.code())
    };
    assert_eq!(
        with(&|a| a | td_attributes::MIGRATABLE),
        Err("TD_ATTRIBUTES_NOT_ALLOWED")
    );
    assert_eq!(with(&|a| a | 1 << 40), Err("TD_ATTRIBUTES_NOT_ALLOWED"));
    assert_eq!(
        with(&|a| a | td_attributes::SERVTD_EXT),
        Err("TD_ATTRIBUTES_NOT_ALLOWED")
    );
    assert_eq!(
        with(&|a| a & !td_attributes::SEPT_VE_DISABLE),
        Err("TD_ATTRIBUTES_NOT_ALLOWED")
    );
    // Defined, harmless bits (PKS, PERFMON) pass.
    assert_eq!(with(&|a| a | 1 << 30 | 1 << 63), Ok(()));

    let mut r = parsed.report.clone();
    r.mr_service_td = Some([1; 48]);
    assert_eq!(
        tdx::check_td_attributes(&r, false).unwrap_err().code(),
        "TD_ATTRIBUTES_NOT_ALLOWED"
    );
}

#[test]
fn tampered_collateral_signatures() {
    for s in [&V4, &V5] {
        let q = quote(s);
        let policy = policy_for(&q);
        let run = |c: Vec<u8>| code(verify(&bundle(q.clone(), c), &policy, s.now));

        let c = edit_collateral(s, "tcb_info_signature", |t| flip_hex_digit(t, 10));
        assert_eq!(
            run(c),
            "COLLATERAL_SIGNATURE_INVALID",
            "{}: tcb_info_signature",
            s.stem
        );

        let c = edit_collateral(s, "qe_identity_signature", |t| flip_hex_digit(t, 70));
        assert_eq!(
            run(c),
            "COLLATERAL_SIGNATURE_INVALID",
            "{}: qe_identity_signature",
            s.stem
        );

        // Signed content changed: the TCB evaluation data number.
        let c = edit_collateral(s, "tcb_info", |t| {
            *t = t.replacen(
                "\"tcbEvaluationDataNumber\":",
                "\"tcbEvaluationDataNumber\":1",
                1,
            )
        });
        assert_eq!(
            run(c),
            "COLLATERAL_SIGNATURE_INVALID",
            "{}: tcb_info body",
            s.stem
        );

        // A byte of the root CA CRL's signature (its last bytes).
        let c = edit_collateral(s, "root_ca_crl", |t| {
            let i = t.len() - 6;
            flip_hex_digit(t, i)
        });
        assert_eq!(
            run(c),
            "COLLATERAL_SIGNATURE_INVALID",
            "{}: root_ca_crl",
            s.stem
        );

        // A byte of the PCK CRL's signature.
        let c = edit_collateral(s, "pck_crl", |t| {
            let i = t.len() - 6;
            flip_hex_digit(t, i)
        });
        let c = run(c);
        assert!(
            ["COLLATERAL_SIGNATURE_INVALID", "CERT_CHAIN_INVALID"].contains(&c),
            "{}: pck_crl: {c}",
            s.stem
        );
    }
}

#[test]
fn collateral_for_another_platform() {
    // v4's quote with v5's (valid, Intel-signed) collateral: a different FMSPC.
    let q = quote(&V4);
    let r = verify(&bundle(q.clone(), collateral(&V5)), &policy_for(&q), V5_NOW);
    // The v4 PCK chain is still valid in 2026; the TCB info is for another FMSPC.
    assert_eq!(code(r), "COLLATERAL_MISMATCH");
}

#[test]
fn crl_revocation_is_mapped() {
    // Intel's CRLs are signed by Intel, so a CRL revoking the sample PCK certificate cannot
    // be constructed under Intel's root; tests/tdx_revocation.rs re-roots this quote in a
    // test PKI (feature `test-pki`) and revokes its certificates for real. Here: swapping
    // the two real CRLs (each then fails the issuer/signature check) is rejected.
    let s = &V4;
    let q = quote(s);
    let mut v: Value = serde_json::from_slice(&collateral(s)).unwrap();
    let root = v["root_ca_crl"].clone();
    v["root_ca_crl"] = v["pck_crl"].clone();
    v["pck_crl"] = root;
    let r = verify(
        &bundle(q.clone(), serde_json::to_vec(&v).unwrap()),
        &policy_for(&q),
        s.now,
    );
    assert_ne!(code(r), "OK");
}

#[test]
fn pins() {
    for s in [&V4, &V5] {
        let q = quote(s);
        let parsed = tdx::parse_quote(&q).unwrap();
        let r = &parsed.report;
        let base = policy_for(&q);
        let run = |p: &Policy| code(verify_sample(s, p, s.now));

        // All pins right: accepted, with a step per pin.
        let mut all = base.clone();
        all.expected_measurement = Some(r.mr_td);
        all.tdx.expected_mrtd = Some(r.mr_td);
        all.tdx.expected_rtmrs = r.rtmrs.map(Some);
        all.tdx.expected_mrconfigid = Some(r.mr_config_id);
        let v = verify_sample(s, &all, s.now).unwrap();
        assert_eq!(v.steps.iter().filter(|s| s.name == "rtmr").count(), 4);
        assert!(v.steps.iter().any(|s| s.name == "mrconfigid"));
        assert!(
            v.steps
                .iter()
                .any(|s| s.name == "measurement" && s.result.contains("equals the pin"))
        );

        let mut wrong = r.mr_td;
        wrong[47] ^= 1;

        let mut p = base.clone();
        p.expected_measurement = Some(wrong);
        assert_eq!(run(&p), "MEASUREMENT_MISMATCH");

        let mut p = base.clone();
        p.tdx.expected_mrtd = Some(wrong);
        assert_eq!(run(&p), "MEASUREMENT_MISMATCH");

        for i in 0..4 {
            let mut p = all.clone();
            let mut bad = r.rtmrs[i];
            bad[0] ^= 0xff;
            p.tdx.expected_rtmrs[i] = Some(bad);
            let err = verify_sample(s, &p, s.now).unwrap_err();
            assert_eq!(err.code(), "RTMR_MISMATCH");
            assert!(err.to_string().starts_with(&format!("RTMR{i} ")), "{err}");
        }

        let mut p = base.clone();
        p.tdx.expected_mrconfigid = Some([0xaa; 48]);
        assert_eq!(run(&p), "MRCONFIGID_MISMATCH");

        let mut p = base.clone();
        let mut rd = r.report_data;
        rd[63] ^= 1;
        p.expected_report_data = Some(rd);
        assert_eq!(run(&p), "REPORT_DATA_MISMATCH");

        // Offline audit: no REPORTDATA pin.
        let p = Policy::unbound(TrustRoots::default());
        assert_eq!(run(&p), "OK");
    }
}

#[test]
fn malformed_quotes() {
    let q = quote(&V5);
    let c = collateral(&V5);
    let policy = policy_for(&q);
    for len in [
        0, 1, 47, 48, 53, 54, 100, 701, 702, 705, 706, 800, 1000, 4000, 5005,
    ] {
        let err = tdx::parse_quote(&q[..len]).unwrap_err();
        assert_eq!(err.code(), "MALFORMED_EVIDENCE", "parse {len}: {err}");
        let r = verify(&bundle(q[..len].to_vec(), c.clone()), &policy, V5_NOW);
        assert_eq!(code(r), "MALFORMED_EVIDENCE", "verify {len}");
    }
    let q4 = quote(&V4);
    for len in [631, 632, 636, 4935] {
        assert_eq!(
            tdx::parse_quote(&q4[..len]).unwrap_err().code(),
            "MALFORMED_EVIDENCE",
            "v4 {len}"
        );
    }
    // v4 is zero-padded to 5006 bytes; exact length and more zeros are fine too.
    tdx::parse_quote(&q4[..4936]).unwrap();
    let mut padded = q4.clone();
    padded.extend_from_slice(&[0; 10]);
    tdx::parse_quote(&padded).unwrap();
    // Non-zero trailing bytes are not.
    let mut trailing = q4.clone();
    *trailing.last_mut().unwrap() = 1;
    assert_eq!(
        tdx::parse_quote(&trailing).unwrap_err().code(),
        "MALFORMED_EVIDENCE"
    );

    let patched = |offset: usize, bytes: &[u8]| {
        let mut m = q.clone();
        m[offset..offset + bytes.len()].copy_from_slice(bytes);
        tdx::parse_quote(&m).map(|_| ()).map_err(|e| e.code())
    };
    assert_eq!(patched(0, &[3, 0]), Err("UNSUPPORTED_VERSION"));
    assert_eq!(patched(0, &[6, 0]), Err("UNSUPPORTED_VERSION"));
    assert_eq!(patched(2, &[3, 0]), Err("UNSUPPORTED_SIGNATURE_ALGORITHM"));
    assert_eq!(patched(4, &[0, 0, 0, 0]), Err("MALFORMED_EVIDENCE")); // SGX TEE type
    assert_eq!(patched(12, &[0]), Err("MALFORMED_EVIDENCE")); // QE vendor
    assert_eq!(patched(48, &[4, 0]), Err("UNSUPPORTED_VERSION")); // TDX 1.5ex body
    assert_eq!(patched(48, &[2, 0]), Err("MALFORMED_EVIDENCE")); // size 648 for a 1.0 body
    assert_eq!(patched(48, &[1, 0]), Err("MALFORMED_EVIDENCE")); // SGX body
    assert_eq!(patched(702, &[0xff, 0xff, 0, 0]), Err("MALFORMED_EVIDENCE")); // sig len
    assert_eq!(patched(706 + 128, &[5, 0]), Err("MALFORMED_EVIDENCE")); // cert type
}

#[test]
fn bundle_shape() {
    let s = &V4;
    let q = quote(s);
    let policy = policy_for(&q);

    // Through the wire encoding.
    let b = bundle(q.clone(), collateral(s));
    let decoded = EvidenceBundle::decode(&b.encode()).unwrap();
    assert_eq!(decoded, b);
    verify(&decoded, &policy, s.now).unwrap();

    // Unknown extras are ignored.
    let mut b2 = b.clone();
    b2.extras.insert(
        0,
        Extra {
            tag: 0x7777,
            value: vec![1, 2, 3],
        },
    );
    verify(&b2, &policy, s.now).unwrap();

    let mut none = b.clone();
    none.extras.clear();
    assert_eq!(code(verify(&none, &policy, s.now)), "MALFORMED_EVIDENCE");

    let mut two = b.clone();
    two.extras.push(two.extras[0].clone());
    assert_eq!(code(verify(&two, &policy, s.now)), "MALFORMED_EVIDENCE");

    let mut vcek = b.clone();
    vcek.vcek = vec![0x30];
    assert_eq!(code(verify(&vcek, &policy, s.now)), "MALFORMED_EVIDENCE");

    let mut ark = b.clone();
    ark.ark = Some(tdx::INTEL_SGX_ROOT_CA.to_vec());
    assert_eq!(code(verify(&ark, &policy, s.now)), "MALFORMED_EVIDENCE");

    for bad in [&b"not json"[..], b"{}", b"[]", b""] {
        let r = verify(&bundle(q.clone(), bad.to_vec()), &policy, s.now);
        assert_eq!(
            code(r),
            "MALFORMED_EVIDENCE",
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    let c = edit_collateral(s, "tcb_info", |t| *t = "{".into());
    assert_eq!(
        code(verify(&bundle(q.clone(), c), &policy, s.now)),
        "MALFORMED_EVIDENCE"
    );
    let c = edit_collateral(s, "pck_crl", |t| *t = "00".into());
    assert_eq!(
        code(verify(&bundle(q.clone(), c), &policy, s.now)),
        "MALFORMED_EVIDENCE"
    );

    // The PCK chain must come from the quote, not the collateral.
    let mut v: Value = serde_json::from_slice(&collateral(s)).unwrap();
    let chain = String::from_utf8(tdx::parse_quote(&q).unwrap().pck_cert_chain).unwrap();
    v["pck_certificate_chain"] = Value::String(chain.trim_end_matches('\0').to_string());
    let c = serde_json::to_vec(&v).unwrap();
    assert_eq!(
        code(verify(&bundle(q.clone(), c), &policy, s.now)),
        "MALFORMED_EVIDENCE"
    );

    // A TDX quote labelled as SEV-SNP is not an SNP report.
    let mut snp = b.clone();
    snp.platform = Platform::SevSnp;
    assert_eq!(code(verify(&snp, &policy, s.now)), "MALFORMED_EVIDENCE");
}

/// Time per full verification (quote parse, collateral parse, ~10 ECDSA P-256
/// verifications, policy). Run with
/// `cargo test -p sotto-attest --release --test tdx -- --ignored --nocapture timing`.
#[test]
#[ignore]
fn timing() {
    for s in [&V4, &V5] {
        let q = quote(s);
        let b = bundle(q.clone(), collateral(s));
        let policy = policy_for(&q);
        verify(&b, &policy, s.now).unwrap();
        let n = 50;
        let start = std::time::Instant::now();
        for _ in 0..n {
            verify(&b, &policy, s.now).unwrap();
        }
        let per = start.elapsed() / n;
        println!("{}: {per:?} per verification", s.stem);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..6000)) {
        let _ = tdx::parse_quote(&bytes);
    }

    #[test]
    fn verify_never_panics_on_arbitrary_quotes(bytes in proptest::collection::vec(any::<u8>(), 0..6000)) {
        let b = bundle(bytes, collateral(&V4));
        prop_assert!(verify(&b, &Policy::unbound(TrustRoots::default()), V4_NOW).is_err());
    }

    #[test]
    fn verify_never_panics_on_mutated_quotes(
        edits in proptest::collection::vec((0usize..5006, any::<u8>()), 1..8),
        cut in 0usize..5007,
    ) {
        let mut q = quote(&V5);
        for (i, b) in edits {
            q[i] = b;
        }
        q.truncate(cut);
        let _ = tdx::parse_quote(&q);
        let _ = verify(&bundle(q, collateral(&V5)), &Policy::unbound(TrustRoots::default()), V5_NOW);
    }

    #[test]
    fn verify_never_panics_on_arbitrary_collateral(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let b = bundle(quote(&V4), bytes);
        prop_assert!(verify(&b, &Policy::unbound(TrustRoots::default()), V4_NOW).is_err());
    }

    #[test]
    fn verify_never_panics_on_mutated_collateral(
        edits in proptest::collection::vec((0usize..16072, any::<u8>()), 1..4),
    ) {
        let mut c = collateral(&V4);
        for (i, b) in edits {
            c[i] = b;
        }
        let _ = verify(&bundle(quote(&V4), c), &Policy::unbound(TrustRoots::default()), V4_NOW);
    }
}
