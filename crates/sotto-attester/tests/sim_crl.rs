//! AMD CRLs under the simulated root: every rejection of `sotto_attest::amd::check_crl` in
//! full verification, with CRLs signed by the simulated ARK's key (or deliberately by
//! others). Real AMD CRLs are tested against the built-in ARKs in
//! crates/sotto-attest/tests/amd_crl.rs.

#[path = "support/amd_crl.rs"]
mod amd_crl;

use std::sync::OnceLock;

use der::{Decode, Encode};
use rsa::RsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use sha2::Sha384;
use sotto_attest::{
    AttestError, EvidenceBundle, Extra, Policy, SimulationPin, TrustRoots, Verified, tags, verify,
};
use sotto_attester::{Attester, SimulatedTee};
use x509_cert::Certificate;

use amd_crl::{ext, sign, sign_pss, tbs};

const MEASUREMENT: [u8; 48] = [0x4D; 48];
const RD: [u8; 64] = [0x42; 64];
const DAY: u64 = 86_400;

struct Fixture {
    a: SimulatedTee,
    a_ark_key: RsaPrivateKey,
    a_ask_key: RsaPrivateKey,
    b: SimulatedTee,
    b_ark_key: RsaPrivateKey,
    /// A time at which every certificate of both chains is valid.
    now: u64,
}

fn key(dir: &std::path::Path, file: &str) -> RsaPrivateKey {
    RsaPrivateKey::from_pkcs8_der(&std::fs::read(dir.join(file)).unwrap()).unwrap()
}

/// Two simulated chains, generated once per test binary, with their CA keys (read from the
/// state directory, as only a test may).
fn fx() -> &'static Fixture {
    static FX: OnceLock<Fixture> = OnceLock::new();
    FX.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let (da, db) = (dir.path().join("a"), dir.path().join("b"));
        let a = SimulatedTee::load_or_create_with_key_bits(&da, MEASUREMENT, 2048).unwrap();
        let b = SimulatedTee::load_or_create_with_key_bits(&db, MEASUREMENT, 2048).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        Fixture {
            a_ark_key: key(&da, "ark.key.der"),
            a_ask_key: key(&da, "ask.key.der"),
            b_ark_key: key(&db, "ark.key.der"),
            a,
            b,
            now,
        }
    })
}

fn cert(der: &[u8]) -> Certificate {
    Certificate::from_der(der).unwrap()
}

fn ark_name(sim: &SimulatedTee) -> x509_cert::name::Name {
    cert(sim.ark_der()).tbs_certificate.subject
}

fn ask_serial(sim: &SimulatedTee) -> Vec<u8> {
    cert(sim.ask_der())
        .tbs_certificate
        .serial_number
        .as_bytes()
        .to_vec()
}

fn policy(sim: &SimulatedTee) -> Policy {
    Policy::new(
        TrustRoots {
            simulation: Some(SimulationPin {
                ark_fingerprint: sim.root_fingerprint(),
            }),
        },
        RD,
    )
}

/// Evidence from `a` carrying `crl`, verified as a client receives it.
fn check_with(crl: Option<Vec<u8>>, policy: &Policy, now: u64) -> Result<Verified, AttestError> {
    let mut b = fx().a.evidence(&RD).unwrap();
    b.extras.extend(crl.map(|value| Extra {
        tag: tags::AMD_CRL,
        value,
    }));
    verify(&EvidenceBundle::decode(&b.encode()).unwrap(), policy, now)
}

fn check(crl: Vec<u8>) -> Result<Verified, AttestError> {
    check_with(Some(crl), &policy(&fx().a), fx().now)
}

fn code(r: Result<Verified, AttestError>) -> &'static str {
    match r {
        Ok(_) => "OK",
        Err(e) => e.code(),
    }
}

/// A current CRL by a's ARK revoking `serials`.
fn a_crl(serials: &[&[u8]]) -> Vec<u8> {
    let f = fx();
    sign_pss(
        &f.a_ark_key,
        tbs(&ark_name(&f.a), f.now - DAY, f.now + 30 * DAY, serials),
    )
}

#[test]
fn current_crl_not_listing_the_ask_is_accepted_and_reported() {
    let v = check(a_crl(&[&[0x01], &[0x7F, 0x22]])).unwrap();
    let c = v.amd_crl.as_ref().expect("CRL reported");
    assert_eq!(c.issuer, "SEV-Sotto-Simulated-ARK");
    assert_eq!(c.intermediate, "SEV-Sotto-Simulated-ASK");
    assert_eq!((c.number, c.revoked_count), (Some(7), 2));
    let step = v.steps.iter().find(|s| s.name == "crl").unwrap();
    assert!(step.result.contains("not revoked"), "{}", step.result);
    // An empty CRL (no revokedCertificates at all) too.
    assert_eq!(code(check(a_crl(&[]))), "OK");
}

#[test]
fn crl_revoking_the_ask_is_crl_revoked() {
    let serial = ask_serial(&fx().a);
    let err = check(a_crl(&[&[0x01], &serial])).unwrap_err();
    assert_eq!(err.code(), "CRL_REVOKED", "{err}");
    assert!(err.to_string().contains("SEV-Sotto-Simulated-ASK"), "{err}");
    // Not waived by any policy knob an auditor has.
    let mut lax = Policy::unbound(policy(&fx().a).roots);
    lax.allow_debug = true;
    lax.allow_migration_agent = true;
    assert_eq!(
        code(check_with(Some(a_crl(&[&serial])), &lax, fx().now)),
        "CRL_REVOKED"
    );
}

#[test]
fn crl_signed_by_another_key_is_rejected() {
    let f = fx();
    let name = ark_name(&f.a);
    let window = (f.now - DAY, f.now + 30 * DAY);
    // The ARK's name, the ASK's key; and another root's key. Whether the forgery would
    // revoke or clear the ASK, it is rejected.
    let serial = ask_serial(&f.a);
    for signer in [&f.a_ask_key, &f.b_ark_key] {
        for serials in [&[][..], &[serial.as_slice()][..]] {
            let crl = sign_pss(signer, tbs(&name, window.0, window.1, serials));
            let err = check(crl).unwrap_err();
            assert_eq!(err.code(), "COLLATERAL_SIGNATURE_INVALID", "{err}");
        }
    }
    // The right key, the wrong algorithm: PKCS#1 v1.5 instead of RSASSA-PSS.
    let crl = sign(
        &rsa::pkcs1v15::SigningKey::<Sha384>::new(f.a_ark_key.clone()),
        tbs(&name, window.0, window.1, &[]),
    );
    let err = check(crl).unwrap_err();
    assert_eq!(err.code(), "COLLATERAL_SIGNATURE_INVALID", "{err}");
    assert!(err.to_string().contains("not RSASSA-PSS"), "{err}");
    // Inner and outer algorithm identifiers must agree.
    let good = a_crl(&[]);
    let mut crl = x509_cert::crl::CertificateList::from_der(&good).unwrap();
    crl.signature_algorithm.oid = der::asn1::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
    crl.signature_algorithm.parameters = None;
    assert_eq!(
        code(check(crl.to_der().unwrap())),
        "COLLATERAL_SIGNATURE_INVALID"
    );
}

#[test]
fn crl_of_another_simulated_root_is_rejected() {
    // Every simulated ARK has the same name, so b's CRL names a's ARK as its issuer: only
    // the signature tells them apart. (A CRL naming another ARK, e.g. another processor
    // generation's, is COLLATERAL_MISMATCH: tested with AMD's real CRLs in sotto-attest.)
    let f = fx();
    assert_eq!(ark_name(&f.a), ark_name(&f.b));
    let crl = sign_pss(
        &f.b_ark_key,
        tbs(&ark_name(&f.b), f.now - DAY, f.now + 30 * DAY, &[]),
    );
    let err = check(crl.clone()).unwrap_err();
    assert_eq!(err.code(), "COLLATERAL_SIGNATURE_INVALID", "{err}");
    // It is b's genuine CRL: b's evidence accepts it.
    let mut b = f.b.evidence(&RD).unwrap();
    b.extras.push(Extra {
        tag: tags::AMD_CRL,
        value: crl,
    });
    assert_eq!(code(verify(&b, &policy(&f.b), f.now)), "OK");
}

#[test]
fn stale_or_future_crl_is_collateral_expired() {
    let f = fx();
    let name = ark_name(&f.a);
    let crl = |from: u64, until: u64| sign_pss(&f.a_ark_key, tbs(&name, from, until, &[]));
    let p = policy(&f.a);
    // nextUpdate in the past, thisUpdate in the future.
    for (from, until) in [
        (f.now - 60 * DAY, f.now - DAY),
        (f.now + DAY, f.now + 60 * DAY),
    ] {
        let err = check_with(Some(crl(from, until)), &p, f.now).unwrap_err();
        assert_eq!(err.code(), "COLLATERAL_EXPIRED", "{from}..{until}: {err}");
    }
    // Boundaries: valid from thisUpdate, stale at nextUpdate.
    let c = crl(f.now - DAY, f.now + DAY);
    assert_eq!(code(check_with(Some(c.clone()), &p, f.now - DAY)), "OK");
    assert_eq!(code(check_with(Some(c.clone()), &p, f.now + DAY - 1)), "OK");
    assert_eq!(
        code(check_with(Some(c), &p, f.now + DAY)),
        "COLLATERAL_EXPIRED"
    );
}

#[test]
fn required_crl_missing_is_crl_missing() {
    let mut p = policy(&fx().a);
    assert_eq!(code(check_with(None, &p, fx().now)), "OK");
    p.require_amd_crl = true;
    assert_eq!(code(check_with(None, &p, fx().now)), "CRL_MISSING");
    assert_eq!(code(check_with(Some(a_crl(&[])), &p, fx().now)), "OK");
    // Another tag is not a CRL.
    let mut b = fx().a.evidence(&RD).unwrap();
    b.extras.push(Extra {
        tag: tags::RELEASE_MANIFEST,
        value: a_crl(&[]),
    });
    assert_eq!(code(verify(&b, &p, fx().now)), "CRL_MISSING");
}

#[test]
fn crl_extensions_that_change_its_meaning_are_refused() {
    let f = fx();
    let name = ark_name(&f.a);
    let base = || tbs(&name, f.now - DAY, f.now + 30 * DAY, &[&[0x01]]);
    let empty_seq = [0x30, 0x00];
    // A delta CRL, a scoped CRL (issuing distribution point), an indirect entry
    // (certificate issuer): all critical, none understood by the verifier.
    let mut delta = base();
    delta.crl_extensions.as_mut().unwrap().push(ext(
        amd_crl::OID_DELTA_CRL_INDICATOR,
        true,
        &5u8.to_der().unwrap(),
    ));
    let mut scoped = base();
    scoped.crl_extensions.as_mut().unwrap().push(ext(
        amd_crl::OID_ISSUING_DISTRIBUTION_POINT,
        true,
        &empty_seq,
    ));
    let mut indirect = base();
    indirect.revoked_certificates.as_mut().unwrap()[0].crl_entry_extensions =
        Some(vec![ext(amd_crl::OID_CERTIFICATE_ISSUER, true, &empty_seq)]);
    for t in [delta, scoped, indirect] {
        let err = check(sign_pss(&f.a_ark_key, t)).unwrap_err();
        assert_eq!(err.code(), "MALFORMED_EVIDENCE", "{err}");
        assert!(err.to_string().contains("critical"), "{err}");
    }
    // A non-critical unknown extension is fine.
    let mut extra = base();
    extra.crl_extensions.as_mut().unwrap().push(ext(
        der::asn1::ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.99"),
        false,
        &empty_seq,
    ));
    assert_eq!(code(check(sign_pss(&f.a_ark_key, extra))), "OK");
}

#[test]
fn malformed_crls_are_malformed_evidence() {
    let f = fx();
    let name = ark_name(&f.a);
    let mut no_next = tbs(&name, f.now - DAY, f.now + 30 * DAY, &[]);
    no_next.next_update = None;
    let mut v1 = tbs(&name, f.now - DAY, f.now + 30 * DAY, &[]);
    v1.version = x509_cert::Version::V1;
    let mut bad_number = tbs(&name, f.now - DAY, f.now + 30 * DAY, &[]);
    bad_number.crl_extensions = Some(vec![ext(amd_crl::OID_CRL_NUMBER, false, &[0x04, 0x00])]);
    for t in [no_next, v1, bad_number] {
        let err = check(sign_pss(&f.a_ark_key, t)).unwrap_err();
        assert_eq!(err.code(), "MALFORMED_EVIDENCE", "{err}");
    }
    let good = a_crl(&[]);
    for crl in [
        Vec::new(),
        good[..good.len() / 2].to_vec(),
        [good.as_slice(), &[0]].concat(),
    ] {
        assert_eq!(code(check(crl)), "MALFORMED_EVIDENCE");
    }
    let mut two = f.a.evidence(&RD).unwrap();
    for _ in 0..2 {
        two.extras.push(Extra {
            tag: tags::AMD_CRL,
            value: good.clone(),
        });
    }
    assert_eq!(
        code(verify(&two, &policy(&f.a), f.now)),
        "MALFORMED_EVIDENCE"
    );
}
