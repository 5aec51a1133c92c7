//! VLEK-signed SEV-SNP evidence under the simulated root. There is no real VLEK evidence
//! in the shared test data, so this builds AMD's VLEK shape with the simulated ARK key:
//! ARK → ASVK (`CN=SEV-VLEK-…`, RSASSA-PSS) → VLEK (P-384, TCB and CSP_ID extensions, no
//! hwID), and a report with SIGNING_KEY = 1 and a zero CHIP_ID, signed by the VLEK.

#[path = "support/amd_crl.rs"]
mod amd_crl;

use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

use der::asn1::{GeneralizedTime, Ia5String, ObjectIdentifier, OctetString};
use der::{Decode, Encode};
use p384::ecdsa::signature::Signer;
use rsa::RsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::rand_core::OsRng;
use sha2::Sha384;
use sotto_attest::amd;
use sotto_attest::snp::{self, Report, SigningKey};
use sotto_attest::{
    AttestError, EvidenceBundle, Platform, Policy, SimulationPin, TrustRoots, Verified, verify,
};
use sotto_attester::SimulatedTee;
use spki::{EncodePublicKey, SubjectPublicKeyInfoOwned};
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::ext::{AsExtension, Extension};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};

const MEASUREMENT: [u8; 48] = [0x4D; 48];
const RD: [u8; 64] = [0x42; 64];
const SUFFIX: &str = "OU=Engineering,O=Sotto Simulated TEE (NOT AMD),C=US";
const YEAR: u64 = 365 * 86400;

/// An extension with an arbitrary OID and DER content.
struct RawExt(ObjectIdentifier, Vec<u8>);
impl der::oid::AssociatedOid for RawExt {
    const OID: ObjectIdentifier = amd::OID_BL_SPL; // unused: to_extension uses self.0
}
impl Encode for RawExt {
    fn encoded_len(&self) -> der::Result<der::Length> {
        der::Length::try_from(self.1.len())
    }
    fn encode(&self, w: &mut impl der::Writer) -> der::Result<()> {
        w.write(&self.1)
    }
}
impl AsExtension for RawExt {
    fn critical(&self, _: &Name, _: &[Extension]) -> bool {
        false
    }
    fn to_extension(&self, _: &Name, _: &[Extension]) -> der::Result<Extension> {
        Ok(Extension {
            extn_id: self.0,
            critical: false,
            extn_value: OctetString::new(self.1.clone())?,
        })
    }
}

fn name(cn: &str) -> Name {
    Name::from_str(&format!("CN={cn},{SUFFIX}")).unwrap()
}

fn validity(from: u64, years: u64) -> Validity {
    let t = |s: u64| {
        Time::GeneralTime(GeneralizedTime::from_unix_duration(Duration::from_secs(s)).unwrap())
    };
    Validity {
        not_before: t(from),
        not_after: t(from + years * YEAR),
    }
}

struct Vlek {
    sim: SimulatedTee,
    now: u64,
    /// The sim ARK's key (signs the AMD-style CRL that revokes the ASVK).
    ark_key: RsaPrivateKey,
    /// The sim ASK's key, re-certified as the ASVK (AMD uses separate keys; the verifier
    /// cannot tell and does not care).
    asvk_key: RsaPrivateKey,
    asvk_der: Vec<u8>,
    vlek_key: p384::ecdsa::SigningKey,
    vlek_der: Vec<u8>,
}

fn tcb_parts(sim: &SimulatedTee) -> snp::TcbParts {
    let r = sim.report_template(&RD);
    r.reported_tcb.decode(r.generation()).unwrap()
}

/// A leaf P-384 certificate issued by `issuer` (name) with `issuer_key`.
fn leaf(
    issuer: Name,
    issuer_key: &RsaPrivateKey,
    subject: &str,
    key: &p384::ecdsa::SigningKey,
    tcb: snp::TcbParts,
    hw_id: Option<[u8; 64]>,
    start: u64,
) -> Vec<u8> {
    let signer = rsa::pss::SigningKey::<Sha384>::new(issuer_key.clone());
    let spki = SubjectPublicKeyInfoOwned::from_der(
        key.verifying_key().to_public_key_der().unwrap().as_bytes(),
    )
    .unwrap();
    let mut b = CertificateBuilder::new(
        Profile::Leaf {
            issuer,
            enable_key_agreement: false,
            enable_key_encipherment: false,
        },
        SerialNumber::new(&[0x11, 0x22]).unwrap(),
        validity(start, 7),
        name(subject),
        spki,
        &signer,
    )
    .unwrap();
    for (oid, v) in [
        (amd::OID_BL_SPL, tcb.bootloader),
        (amd::OID_TEE_SPL, tcb.tee),
        (amd::OID_SNP_SPL, tcb.snp),
        (amd::OID_UCODE_SPL, tcb.microcode),
    ] {
        b.add_extension(&RawExt(oid, v.to_der().unwrap())).unwrap();
    }
    let csp = Ia5String::new("sotto-test-csp").unwrap().to_der().unwrap();
    b.add_extension(&RawExt(amd::OID_CSP_ID, csp)).unwrap();
    if let Some(id) = hw_id {
        b.add_extension(&RawExt(amd::OID_HW_ID, id.to_vec()))
            .unwrap();
    }
    b.build_with_rng::<rsa::pss::Signature>(&mut OsRng)
        .unwrap()
        .to_der()
        .unwrap()
}

fn fx() -> &'static Vlek {
    static FX: OnceLock<Vlek> = OnceLock::new();
    FX.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let sim =
            SimulatedTee::load_or_create_with_key_bits(dir.path(), MEASUREMENT, 2048).unwrap();
        let ark_key =
            RsaPrivateKey::from_pkcs8_der(&std::fs::read(dir.path().join("ark.key.der")).unwrap())
                .unwrap();
        let asvk_key =
            RsaPrivateKey::from_pkcs8_der(&std::fs::read(dir.path().join("ask.key.der")).unwrap())
                .unwrap();
        let ark = x509_cert::Certificate::from_der(sim.ark_der()).unwrap();
        let start = ark
            .tbs_certificate
            .validity
            .not_before
            .to_unix_duration()
            .as_secs();
        let ark_signer = rsa::pss::SigningKey::<Sha384>::new(ark_key.clone());
        let asvk_der = CertificateBuilder::new(
            Profile::SubCA {
                issuer: ark.tbs_certificate.subject.clone(),
                path_len_constraint: Some(0),
            },
            SerialNumber::new(&[0x33]).unwrap(),
            validity(start, 25),
            name("SEV-VLEK-Sotto-Simulated"),
            SubjectPublicKeyInfoOwned::from_key(asvk_key.to_public_key()).unwrap(),
            &ark_signer,
        )
        .unwrap()
        .build_with_rng::<rsa::pss::Signature>(&mut OsRng)
        .unwrap()
        .to_der()
        .unwrap();
        let vlek_key = p384::ecdsa::SigningKey::random(&mut OsRng);
        let vlek_der = leaf(
            name("SEV-VLEK-Sotto-Simulated"),
            &asvk_key,
            "SEV-VLEK",
            &vlek_key,
            tcb_parts(&sim),
            None,
            start,
        );
        let now = start + 86400 * 2;
        Vlek {
            sim,
            now,
            ark_key,
            asvk_key,
            asvk_der,
            vlek_key,
            vlek_der,
        }
    })
}

fn policy(f: &Vlek) -> Policy {
    Policy::new(
        TrustRoots {
            simulation: Some(SimulationPin {
                ark_fingerprint: f.sim.root_fingerprint(),
            }),
        },
        RD,
    )
}

/// A VLEK-style report: SIGNING_KEY = `signing_key`, CHIP_ID zero, signed with `key`.
fn report(f: &Vlek, signing_key: u32, key: &p384::ecdsa::SigningKey) -> Report {
    let mut r = f.sim.report_template(&RD);
    r.author_key_flags = signing_key << 2;
    r.chip_id = [0; 64];
    let sig: p384::ecdsa::Signature = key.sign(&r.signed_bytes());
    let mut rs = [0u8; 96];
    rs.copy_from_slice(&sig.to_bytes());
    r.signature = snp::Signature::from_p384_be(&rs);
    r
}

fn bundle(f: &Vlek, r: &Report, leaf: &[u8], intermediate: &[u8]) -> EvidenceBundle {
    EvidenceBundle {
        platform: Platform::SimulatedSnp,
        report: r.to_bytes(),
        vcek: leaf.to_vec(),
        ask: Some(intermediate.to_vec()),
        ark: Some(f.sim.ark_der().to_vec()),
        extras: vec![],
    }
}

fn check(b: &EvidenceBundle, p: &Policy, now: u64) -> Result<Verified, AttestError> {
    verify(&EvidenceBundle::decode(&b.encode()).unwrap(), p, now)
}

fn code(r: Result<Verified, AttestError>) -> &'static str {
    r.expect_err("verification must fail").code()
}

#[test]
fn vlek_signed_report_verifies_without_chip_binding() {
    let f = fx();
    let ext = amd::VcekExtensions::from_der(&f.vlek_der).unwrap();
    assert_eq!(ext.hw_id, None);
    assert_eq!(ext.csp_id.as_deref(), Some("sotto-test-csp"));
    let r = report(f, 1, &f.vlek_key);
    let v = check(&bundle(f, &r, &f.vlek_der, &f.asvk_der), &policy(f), f.now).unwrap();
    assert_eq!(v.signing_key, SigningKey::Vlek);
    assert_eq!(v.chip_id, [0; 64]);
    let chip = v.steps.iter().find(|s| s.name == "chip_id").unwrap();
    assert!(chip.result.contains("VLEK"), "{}", chip.result);
    let chain = v.steps.iter().find(|s| s.name == "cert_chain").unwrap();
    assert!(chain.result.contains("ASVK"), "{}", chain.result);
}

#[test]
fn vlek_tcb_must_match_the_report() {
    let f = fx();
    let mut tcb = tcb_parts(&f.sim);
    tcb.snp += 1;
    let start = f.now - 86400 * 2;
    let vlek = leaf(
        name("SEV-VLEK-Sotto-Simulated"),
        &f.asvk_key,
        "SEV-VLEK",
        &f.vlek_key,
        tcb,
        None,
        start,
    );
    let r = report(f, 1, &f.vlek_key);
    let err = check(&bundle(f, &r, &vlek, &f.asvk_der), &policy(f), f.now).unwrap_err();
    assert_eq!(err.code(), "VCEK_TCB_MISMATCH");
    assert!(
        matches!(err, AttestError::VcekTcbMismatch { key: "VLEK", .. }),
        "{err}"
    );
    // Below a minimum TCB like a VCEK-signed report.
    let mut p = policy(f);
    let mut min = tcb_parts(&f.sim);
    min.microcode += 1;
    p.min_tcb = Some(min);
    let r = report(f, 1, &f.vlek_key);
    assert_eq!(
        code(check(&bundle(f, &r, &f.vlek_der, &f.asvk_der), &p, f.now)),
        "TCB_BELOW_MINIMUM"
    );
}

#[test]
fn vlek_chain_roles_are_enforced() {
    let f = fx();
    let start = f.now - 86400 * 2;
    let r = report(f, 1, &f.vlek_key);
    // The VLEK with the VCEK intermediate (ASK) in place of its ASVK: names do not chain.
    assert_eq!(
        code(check(
            &bundle(f, &r, &f.vlek_der, f.sim.ask_der()),
            &policy(f),
            f.now
        )),
        "CERT_CHAIN_INVALID"
    );
    // A "VLEK" issued by the ASK: the chain verifies but the ASK is not an ASVK.
    let ask_name = x509_cert::Certificate::from_der(f.sim.ask_der())
        .unwrap()
        .tbs_certificate
        .subject;
    let by_ask = leaf(
        ask_name,
        &f.asvk_key, // the sim ASK's key
        "SEV-VLEK",
        &f.vlek_key,
        tcb_parts(&f.sim),
        None,
        start,
    );
    let err = check(&bundle(f, &r, &by_ask, f.sim.ask_der()), &policy(f), f.now).unwrap_err();
    assert_eq!(err.code(), "CERT_CHAIN_INVALID");
    assert!(err.to_string().contains("not an ASVK"), "{err}");
    // A report that says VCEK but chains through the ASVK.
    let r0 = report(f, 0, &f.vlek_key);
    let err = check(&bundle(f, &r0, &f.vlek_der, &f.asvk_der), &policy(f), f.now).unwrap_err();
    assert_eq!(err.code(), "CERT_CHAIN_INVALID");
    // Missing ASVK.
    let mut b = bundle(f, &r, &f.vlek_der, &f.asvk_der);
    b.ask = None;
    assert_eq!(code(check(&b, &policy(f), f.now)), "CERT_CHAIN_INVALID");
    // An ASVK signed by another root (self-signed with the ARK's name).
    let fake = CertificateBuilder::new(
        Profile::SubCA {
            issuer: x509_cert::Certificate::from_der(f.sim.ark_der())
                .unwrap()
                .tbs_certificate
                .subject,
            path_len_constraint: Some(0),
        },
        SerialNumber::new(&[0x44]).unwrap(),
        validity(start, 25),
        name("SEV-VLEK-Sotto-Simulated"),
        SubjectPublicKeyInfoOwned::from_key(f.asvk_key.to_public_key()).unwrap(),
        &rsa::pss::SigningKey::<Sha384>::new(f.asvk_key.clone()),
    )
    .unwrap()
    .build_with_rng::<rsa::pss::Signature>(&mut OsRng)
    .unwrap()
    .to_der()
    .unwrap();
    assert_eq!(
        code(check(&bundle(f, &r, &f.vlek_der, &fake), &policy(f), f.now)),
        "CERT_CHAIN_INVALID"
    );
}

#[test]
fn vlek_signature_and_validity() {
    let f = fx();
    let mut r = report(f, 1, &f.vlek_key);
    r.measurement[0] ^= 1;
    assert_eq!(
        code(check(
            &bundle(f, &r, &f.vlek_der, &f.asvk_der),
            &policy(f),
            f.now
        )),
        "REPORT_SIGNATURE_INVALID"
    );
    let r = report(f, 1, &f.vlek_key);
    let cert = x509_cert::Certificate::from_der(&f.vlek_der).unwrap();
    let not_after = cert
        .tbs_certificate
        .validity
        .not_after
        .to_unix_duration()
        .as_secs();
    let err = check(
        &bundle(f, &r, &f.vlek_der, &f.asvk_der),
        &policy(f),
        not_after + 1,
    )
    .unwrap_err();
    assert!(
        matches!(err, AttestError::CertExpired { cert: "VLEK", .. }),
        "{err}"
    );
}

#[test]
fn asvk_revoked_by_the_ark_crl_is_crl_revoked() {
    // AMD's VLEK CRL (KDS /vlek/v1/{product}/crl) is issued by the ARK and lists revoked
    // ASVKs, as the VCEK CRL lists ASKs.
    let f = fx();
    let ark = x509_cert::Certificate::from_der(f.sim.ark_der()).unwrap();
    let asvk = x509_cert::Certificate::from_der(&f.asvk_der).unwrap();
    let crl = |serials: &[&[u8]]| {
        amd_crl::sign_pss(
            &f.ark_key,
            amd_crl::tbs(
                &ark.tbs_certificate.subject,
                f.now - 86400,
                f.now + 86400,
                serials,
            ),
        )
    };
    let r = report(f, 1, &f.vlek_key);
    let with = |crl: Vec<u8>| {
        let mut b = bundle(f, &r, &f.vlek_der, &f.asvk_der);
        b.extras.push(sotto_attest::Extra {
            tag: sotto_attest::tags::AMD_CRL,
            value: crl,
        });
        b
    };
    let v = check(&with(crl(&[&[0x01]])), &policy(f), f.now).unwrap();
    assert_eq!(
        v.amd_crl.as_ref().map(|c| c.intermediate.as_str()),
        Some("SEV-VLEK-Sotto-Simulated")
    );
    let serial = asvk.tbs_certificate.serial_number.as_bytes().to_vec();
    let err = check(&with(crl(&[&serial])), &policy(f), f.now).unwrap_err();
    assert_eq!(err.code(), "CRL_REVOKED", "{err}");
    assert!(
        err.to_string().contains("SEV-VLEK-Sotto-Simulated"),
        "{err}"
    );
}
