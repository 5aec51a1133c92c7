//! Intel TDX revocation, tested for real: a real quote and its real collateral re-rooted in
//! a test PKI, so that this test can sign the CRLs that revoke its certificates.
//!
//! Intel's CRLs are signed by Intel, so with Intel's chain a revoked PCK certificate cannot
//! be produced. Here (cargo feature `test-pki`, enabled only for this crate's tests) the
//! same verifier runs against a test root instead:
//!
//! - test root CA → test PCK platform CA → test PCK certificate carrying the real PCK
//!   certificate's Intel SGX extension (same FMSPC, CPUSVN, PCESVN, so the real TCB info
//!   still matches), and test root CA → test TCB signing certificate;
//! - the real v4 quote with its PCK chain (certification data type 5) replaced and its QE
//!   report re-signed by the test PCK key. The QE report binds the attestation key, which is
//!   kept, so the quote's own signature by the attestation key stays valid;
//! - the real TCB info and QE identity JSON, unchanged, re-signed by the test TCB signing
//!   key; a root CA CRL and a PCK CRL signed by the test CAs.
//!
//! Every key is derived from a fixed label, so the whole PKI is deterministic.

use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

use der::asn1::{BitString, ObjectIdentifier, OctetString, UtcTime};
use der::{Decode, DecodePem, Encode, EncodePem};
use p256::ecdsa::{DerSignature, SigningKey};
use sha2::{Digest, Sha256};
use signature::Signer;
use sotto_attest::tdx::{self, TcbStatus};
use sotto_attest::{
    AttestError, EvidenceBundle, Extra, Platform, Policy, TrustRoots, Verified, fingerprint, tags,
    verify,
};
use spki::{DynSignatureAlgorithmIdentifier, EncodePublicKey, SubjectPublicKeyInfoOwned};
use x509_cert::Certificate;
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::crl::{CertificateList, RevokedCert, TbsCertList};
use x509_cert::ext::pkix::{AuthorityKeyIdentifier, SubjectKeyIdentifier};
use x509_cert::ext::{AsExtension, Extension};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};

const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/attestation/tdx"
);
/// README: verify v4-dcapqvl at 2025-07-01T12:00Z (its TCB info and QE identity are valid
/// from 2025-06-19 to 2025-07-19).
const NOW: u64 = 1_751_371_200;
const DAY: u64 = 86_400;
/// The test CRLs' window: 2025-06-15 to 2025-08-15.
const CRL_FROM: u64 = NOW - 16 * DAY;
const CRL_UNTIL: u64 = NOW + 45 * DAY;

/// Intel's SGX extension of PCK certificates (FMSPC, TCB, PCE ID, ...).
const OID_SGX_EXTENSION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1");
const OID_CRL_NUMBER: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.20");
const OID_AKI: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.35");
const OID_SKI: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.14");

const SERIAL_ROOT: &[u8] = &[0x01];
const SERIAL_PLATFORM_CA: &[u8] = &[0x0A, 0x11];
const SERIAL_PCK: &[u8] = &[0x0B, 0x22];
const SERIAL_TCB_SIGNING: &[u8] = &[0x0C, 0x33];

fn read(name: &str) -> Vec<u8> {
    let path = format!("{DIR}/{name}");
    std::fs::read(&path).unwrap_or_else(|e| panic!("test data {path}: {e}"))
}

/// A deterministic P-256 key for `label`.
fn key(label: &str) -> SigningKey {
    SigningKey::from_slice(&Sha256::digest(label.as_bytes())).unwrap()
}

fn name(cn: &str) -> Name {
    Name::from_str(&format!("CN={cn},O=Sotto tests (NOT Intel),C=US")).unwrap()
}

fn utc(secs: u64) -> Time {
    Time::UtcTime(UtcTime::from_unix_duration(Duration::from_secs(secs)).unwrap())
}

/// An extension with a given OID and raw value, copied from another certificate.
struct RawExt(ObjectIdentifier, Vec<u8>);
impl der::oid::AssociatedOid for RawExt {
    const OID: ObjectIdentifier = OID_SGX_EXTENSION; // unused: to_extension uses self.0
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

fn spki_of(k: &SigningKey) -> SubjectPublicKeyInfoOwned {
    SubjectPublicKeyInfoOwned::from_der(k.verifying_key().to_public_key_der().unwrap().as_bytes())
        .unwrap()
}

fn issue(
    profile: Profile,
    serial: &[u8],
    subject: Name,
    subject_key: &SigningKey,
    issuer_key: &SigningKey,
    extra: Option<RawExt>,
) -> Certificate {
    let validity = Validity {
        not_before: utc(NOW - 365 * DAY),
        not_after: utc(NOW + 5 * 365 * DAY),
    };
    let mut b = CertificateBuilder::new(
        profile,
        SerialNumber::new(serial).unwrap(),
        validity,
        subject,
        spki_of(subject_key),
        issuer_key,
    )
    .unwrap();
    if let Some(ext) = extra {
        b.add_extension(&ext).unwrap();
    }
    b.build::<DerSignature>().unwrap()
}

fn pem(certs: &[&Certificate]) -> String {
    certs
        .iter()
        .map(|c| c.to_pem(der::pem::LineEnding::LF).unwrap())
        .collect()
}

fn subject_key_id(cert: &Certificate) -> OctetString {
    let ext = cert
        .tbs_certificate
        .extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id == OID_SKI)
        .expect("CA certificate has a subject key identifier");
    SubjectKeyIdentifier::from_der(ext.extn_value.as_bytes())
        .unwrap()
        .0
}

/// A v2 CRL issued by `issuer` (its name and key identifier), signed by `signer`, valid
/// `this_update..next_update`, revoking `serials`, with the CRL number and authority key
/// identifier extensions Intel's CRLs carry (webpki requires the extensions).
fn crl(
    issuer: &Certificate,
    signer: &SigningKey,
    this_update: u64,
    next_update: u64,
    serials: &[&[u8]],
) -> Vec<u8> {
    let alg = signer.signature_algorithm_identifier().unwrap();
    let aki = AuthorityKeyIdentifier {
        key_identifier: Some(subject_key_id(issuer)),
        authority_cert_issuer: None,
        authority_cert_serial_number: None,
    };
    let revoked: Vec<RevokedCert> = serials
        .iter()
        .map(|s| RevokedCert {
            serial_number: SerialNumber::new(s).unwrap(),
            revocation_date: utc(this_update),
            crl_entry_extensions: None,
        })
        .collect();
    let tbs = TbsCertList {
        version: x509_cert::Version::V2,
        signature: alg.clone(),
        issuer: issuer.tbs_certificate.subject.clone(),
        this_update: utc(this_update),
        next_update: Some(utc(next_update)),
        revoked_certificates: (!revoked.is_empty()).then_some(revoked),
        crl_extensions: Some(vec![
            Extension {
                extn_id: OID_CRL_NUMBER,
                critical: false,
                extn_value: OctetString::new(1u8.to_der().unwrap()).unwrap(),
            },
            Extension {
                extn_id: OID_AKI,
                critical: false,
                extn_value: OctetString::new(aki.to_der().unwrap()).unwrap(),
            },
        ]),
    };
    let sig: DerSignature = signer.sign(&tbs.to_der().unwrap());
    CertificateList {
        tbs_cert_list: tbs,
        signature_algorithm: alg,
        signature: BitString::from_bytes(sig.as_bytes()).unwrap(),
    }
    .to_der()
    .unwrap()
}

/// ECDSA P-256/SHA-256 signature as raw `r ‖ s` (the quote's and collateral's format).
fn raw_sig(k: &SigningKey, msg: &[u8]) -> Vec<u8> {
    let sig: p256::ecdsa::Signature = k.sign(msg);
    sig.to_bytes().to_vec()
}

/// The real v4 quote with its signed prefix (header, TD report) and signature data
/// unchanged except for the PCK certificate chain (`chain`, PEM, leaf first) and the QE
/// report signature; every length field is recomputed.
fn quote_with(chain: &[&Certificate], qe_report_signature: &[u8]) -> Vec<u8> {
    let real_quote = read("v4-dcapqvl.quote.bin");
    let parsed = tdx::parse_quote(&real_quote).unwrap();
    let mut pem_chain = pem(chain).into_bytes();
    pem_chain.push(0); // Intel's quoting enclave NUL-terminates the PEM chain too.
    let mut cert_data = parsed.qe_report.clone();
    cert_data.extend(qe_report_signature);
    cert_data.extend((parsed.qe_auth_data.len() as u16).to_le_bytes());
    cert_data.extend(&parsed.qe_auth_data);
    cert_data.extend(5u16.to_le_bytes()); // certification data type 5: PCK chain
    cert_data.extend((pem_chain.len() as u32).to_le_bytes());
    cert_data.extend(&pem_chain);
    let mut sig_data = parsed.signature.to_vec();
    sig_data.extend(parsed.attestation_key);
    sig_data.extend(6u16.to_le_bytes()); // certification data type 6: QE report
    sig_data.extend((cert_data.len() as u32).to_le_bytes());
    sig_data.extend(&cert_data);
    let mut quote = real_quote[..parsed.signed_len].to_vec();
    quote.extend((sig_data.len() as u32).to_le_bytes());
    quote.extend(&sig_data);
    quote
}

struct Pki {
    root_key: SigningKey,
    platform_key: SigningKey,
    pck_key: SigningKey,
    tcb_key: SigningKey,
    root: Certificate,
    platform_ca: Certificate,
    pck: Certificate,
    tcb_signing: Certificate,
    root_der: Vec<u8>,
    /// The real v4 quote, re-rooted (see the module documentation).
    quote: Vec<u8>,
    /// The real v4 collateral as `dcap-qvl`'s structure (edited per test).
    real_collateral: dcap_qvl::QuoteCollateralV3,
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let real_quote = read("v4-dcapqvl.quote.bin");
        let parsed = tdx::parse_quote(&real_quote).unwrap();

        // The real PCK certificate's Intel SGX extension, byte for byte.
        let real_chain = std::str::from_utf8(&parsed.pck_cert_chain)
            .unwrap()
            .trim_end_matches('\0');
        let end = real_chain.find("-----END CERTIFICATE-----").unwrap() + 25;
        let real_pck = Certificate::from_pem(&real_chain[..end]).unwrap();
        let sgx_ext = real_pck
            .tbs_certificate
            .extensions
            .iter()
            .flatten()
            .find(|e| e.extn_id == OID_SGX_EXTENSION)
            .expect("real PCK certificate has the SGX extension")
            .extn_value
            .as_bytes()
            .to_vec();

        let root_key = key("sotto test SGX root CA");
        let platform_key = key("sotto test SGX PCK platform CA");
        let pck_key = key("sotto test SGX PCK certificate");
        let tcb_key = key("sotto test SGX TCB signing");
        let root_name = name("Sotto TEST SGX Root CA");
        let platform_name = name("Sotto TEST SGX PCK Platform CA");
        let root = issue(
            Profile::Root,
            SERIAL_ROOT,
            root_name.clone(),
            &root_key,
            &root_key,
            None,
        );
        let platform_ca = issue(
            Profile::SubCA {
                issuer: root_name.clone(),
                path_len_constraint: Some(0),
            },
            SERIAL_PLATFORM_CA,
            platform_name.clone(),
            &platform_key,
            &root_key,
            None,
        );
        let pck = issue(
            Profile::Leaf {
                issuer: platform_name,
                enable_key_agreement: false,
                enable_key_encipherment: false,
            },
            SERIAL_PCK,
            name("Sotto TEST SGX PCK Certificate"),
            &pck_key,
            &platform_key,
            Some(RawExt(OID_SGX_EXTENSION, sgx_ext)),
        );
        let tcb_signing = issue(
            Profile::Leaf {
                issuer: root_name,
                enable_key_agreement: false,
                enable_key_encipherment: false,
            },
            SERIAL_TCB_SIGNING,
            name("Sotto TEST SGX TCB Signing"),
            &tcb_key,
            &root_key,
            None,
        );

        let quote = quote_with(
            &[&pck, &platform_ca, &root],
            &raw_sig(&pck_key, &parsed.qe_report),
        );

        let real_collateral = serde_json::from_slice(&read("v4-dcapqvl.collateral.json")).unwrap();
        let root_der = root.to_der().unwrap();
        Pki {
            root_key,
            platform_key,
            pck_key,
            tcb_key,
            root,
            platform_ca,
            pck,
            tcb_signing,
            root_der,
            quote,
            real_collateral,
        }
    })
}

/// The collateral under the test PKI; `edit` changes it before it is encoded.
fn collateral_with(edit: impl FnOnce(&Pki, &mut dcap_qvl::QuoteCollateralV3)) -> Vec<u8> {
    let p = pki();
    let mut c = p.real_collateral.clone();
    let signing_chain = pem(&[&p.tcb_signing, &p.root]);
    c.tcb_info_issuer_chain = signing_chain.clone();
    c.qe_identity_issuer_chain = signing_chain;
    c.pck_crl_issuer_chain = pem(&[&p.platform_ca, &p.root]);
    c.tcb_info_signature = raw_sig(&p.tcb_key, c.tcb_info.as_bytes());
    c.qe_identity_signature = raw_sig(&p.tcb_key, c.qe_identity.as_bytes());
    c.root_ca_crl = crl(&p.root, &p.root_key, CRL_FROM, CRL_UNTIL, &[]);
    c.pck_crl = crl(&p.platform_ca, &p.platform_key, CRL_FROM, CRL_UNTIL, &[]);
    edit(p, &mut c);
    serde_json::to_vec(&c).unwrap()
}

fn collateral() -> Vec<u8> {
    collateral_with(|_, _| {})
}

fn policy() -> Policy {
    let parsed = tdx::parse_quote(&pki().quote).unwrap();
    Policy::new(TrustRoots::default(), parsed.report.report_data)
}

/// Verify against the test root (feature `test-pki`).
fn verify_test_root(quote: &[u8], collateral: &[u8]) -> Result<Verified, AttestError> {
    tdx::test_pki::verify_quote(quote, collateral, &policy(), NOW, &pki().root_der)
}

fn code(r: Result<Verified, AttestError>) -> &'static str {
    match r {
        Ok(_) => "OK",
        Err(e) => e.code(),
    }
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

// ---- The test PKI is right ----

#[test]
fn rerooted_quote_is_accepted_against_the_test_root() {
    let p = pki();
    let v =
        verify_test_root(&p.quote, &collateral()).unwrap_or_else(|e| panic!("{}: {e}", e.code()));
    let t = v.tdx.as_ref().unwrap();
    assert_eq!(t.tcb_status, TcbStatus::UpToDate);
    assert_eq!(
        hex::encode(t.fmspc),
        "b0c06f000000",
        "the copied SGX extension"
    );
    assert!(hex::encode(v.measurement).starts_with("91eb2b44d141d4ec"));
    assert_eq!(v.ark_fingerprint, fingerprint(&p.root_der));
    let root = v.steps.iter().find(|s| s.name == "root").unwrap();
    assert!(root.result.contains("TEST ROOT"), "{}", root.result);
    // The quote body and attestation key are the real ones.
    let real = tdx::parse_quote(&read("v4-dcapqvl.quote.bin")).unwrap();
    let ours = tdx::parse_quote(&p.quote).unwrap();
    assert_eq!(ours.report, real.report);
    assert_eq!(ours.attestation_key, real.attestation_key);
    assert_eq!(ours.qe_report, real.qe_report);
    assert_ne!(ours.pck_cert_chain, real.pck_cert_chain);
}

#[test]
fn rerooted_quote_is_rejected_against_the_builtin_intel_root() {
    let p = pki();
    // Everything under the test PKI: the root CA CRL, the first thing checked against the
    // trust anchor, is not signed by Intel.
    let all_test = verify(&bundle(p.quote.clone(), collateral()), &policy(), NOW);
    assert_eq!(code(all_test), "COLLATERAL_SIGNATURE_INVALID");
    // Genuine Intel collateral, test PCK chain: the chain does not end in Intel's root.
    let real_collateral = read("v4-dcapqvl.collateral.json");
    let r = verify(&bundle(p.quote.clone(), real_collateral), &policy(), NOW);
    let err = r.expect_err("a PCK chain under another root must be rejected");
    assert_eq!(err.code(), "CERT_CHAIN_INVALID", "{err}");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
}

#[test]
fn qe_report_must_be_signed_by_the_pck_key() {
    let p = pki();
    let real = tdx::parse_quote(&read("v4-dcapqvl.quote.bin")).unwrap();
    let chain = [&p.pck, &p.platform_ca, &p.root];
    // The test chain with Intel's original QE report signature.
    let q = quote_with(&chain, &real.qe_report_signature);
    assert_eq!(
        code(verify_test_root(&q, &collateral())),
        "REPORT_SIGNATURE_INVALID"
    );
    // A QE report signed by another key than the PCK certificate's.
    let q = quote_with(&chain, &raw_sig(&key("another key"), &real.qe_report));
    assert_eq!(
        code(verify_test_root(&q, &collateral())),
        "REPORT_SIGNATURE_INVALID"
    );
    // A valid PCK certificate (same CA, same SGX extension) for another key: the QE
    // report, signed by the real test PCK key, does not verify under it.
    let impostor = issue(
        Profile::Leaf {
            issuer: p.platform_ca.tbs_certificate.subject.clone(),
            enable_key_agreement: false,
            enable_key_encipherment: false,
        },
        &[0x0B, 0x23],
        p.pck.tbs_certificate.subject.clone(),
        &key("impostor PCK key"),
        &p.platform_key,
        p.pck
            .tbs_certificate
            .extensions
            .iter()
            .flatten()
            .find(|e| e.extn_id == OID_SGX_EXTENSION)
            .map(|e| RawExt(e.extn_id, e.extn_value.as_bytes().to_vec())),
    );
    let q = quote_with(
        &[&impostor, &p.platform_ca, &p.root],
        &raw_sig(&p.pck_key, &real.qe_report),
    );
    assert_eq!(
        code(verify_test_root(&q, &collateral())),
        "REPORT_SIGNATURE_INVALID"
    );
}

#[test]
fn tcb_info_and_qe_identity_must_be_signed_by_the_tcb_signing_key() {
    let wrong = key("not the TCB signing key");
    let c = collateral_with(|_, c| c.tcb_info_signature = raw_sig(&wrong, c.tcb_info.as_bytes()));
    assert_eq!(
        code(verify_test_root(&pki().quote, &c)),
        "COLLATERAL_SIGNATURE_INVALID"
    );
    let c = collateral_with(|_, c| {
        c.qe_identity_signature = raw_sig(&wrong, c.qe_identity.as_bytes());
    });
    assert_eq!(
        code(verify_test_root(&pki().quote, &c)),
        "COLLATERAL_SIGNATURE_INVALID"
    );
}

// ---- Revocation ----

#[test]
fn pck_crl_listing_the_pck_certificate_is_crl_revoked() {
    let c = collateral_with(|p, c| {
        c.pck_crl = crl(
            &p.platform_ca,
            &p.platform_key,
            CRL_FROM,
            CRL_UNTIL,
            &[&[0x77], SERIAL_PCK, &[0x01, 0x02, 0x03]],
        );
    });
    let err = verify_test_root(&pki().quote, &c).unwrap_err();
    assert_eq!(err.code(), "CRL_REVOKED", "{err}");
    assert!(err.to_string().contains("CertRevoked"), "{err}");
}

#[test]
fn root_ca_crl_listing_the_platform_ca_is_crl_revoked() {
    let c = collateral_with(|p, c| {
        c.root_ca_crl = crl(
            &p.root,
            &p.root_key,
            CRL_FROM,
            CRL_UNTIL,
            &[SERIAL_PLATFORM_CA],
        );
    });
    let err = verify_test_root(&pki().quote, &c).unwrap_err();
    assert_eq!(err.code(), "CRL_REVOKED", "{err}");
}

#[test]
fn root_ca_crl_listing_the_tcb_signing_certificate_is_crl_revoked() {
    let c = collateral_with(|p, c| {
        c.root_ca_crl = crl(
            &p.root,
            &p.root_key,
            CRL_FROM,
            CRL_UNTIL,
            &[SERIAL_TCB_SIGNING],
        );
    });
    assert_eq!(code(verify_test_root(&pki().quote, &c)), "CRL_REVOKED");
}

#[test]
fn root_ca_crl_listing_the_root_itself_is_crl_revoked() {
    let c = collateral_with(|p, c| {
        c.root_ca_crl = crl(&p.root, &p.root_key, CRL_FROM, CRL_UNTIL, &[SERIAL_ROOT]);
    });
    assert_eq!(code(verify_test_root(&pki().quote, &c)), "CRL_REVOKED");
}

#[test]
fn serials_of_other_certificates_do_not_revoke() {
    // The PCK leaf's serial in the *root* CRL and the platform CA's in the *PCK* CRL: each
    // CRL speaks only for certificates its issuer issued.
    let c = collateral_with(|p, c| {
        c.root_ca_crl = crl(&p.root, &p.root_key, CRL_FROM, CRL_UNTIL, &[SERIAL_PCK]);
        c.pck_crl = crl(
            &p.platform_ca,
            &p.platform_key,
            CRL_FROM,
            CRL_UNTIL,
            &[SERIAL_PLATFORM_CA, SERIAL_TCB_SIGNING],
        );
    });
    assert_eq!(code(verify_test_root(&pki().quote, &c)), "OK");
}

#[test]
fn crl_signed_by_the_wrong_key_is_rejected() {
    let wrong = key("not a CA key");
    // Root CA CRL: verified against the trust anchor before anything else.
    let c = collateral_with(|p, c| {
        c.root_ca_crl = crl(&p.root, &wrong, CRL_FROM, CRL_UNTIL, &[]);
    });
    let err = verify_test_root(&pki().quote, &c).unwrap_err();
    assert_eq!(err.code(), "COLLATERAL_SIGNATURE_INVALID", "{err}");
    // PCK CRL: verified with the platform CA's key while the PCK chain is checked. A forged
    // PCK CRL that hides a revocation is as bad as one that adds one: both are rejected.
    for serials in [&[][..], &[SERIAL_PCK][..]] {
        let c = collateral_with(|p, c| {
            c.pck_crl = crl(&p.platform_ca, &wrong, CRL_FROM, CRL_UNTIL, serials);
        });
        let err = verify_test_root(&pki().quote, &c).unwrap_err();
        assert_eq!(err.code(), "COLLATERAL_SIGNATURE_INVALID", "{err}");
    }
}

#[test]
fn crl_of_another_issuer_covers_nothing() {
    // A correctly signed root CA CRL given as the PCK CRL: no CRL speaks for the PCK
    // certificate, and an unknown revocation status is not accepted.
    let c = collateral_with(|p, c| {
        c.pck_crl = crl(&p.root, &p.root_key, CRL_FROM, CRL_UNTIL, &[]);
    });
    let err = verify_test_root(&pki().quote, &c).unwrap_err();
    assert_eq!(err.code(), "COLLATERAL_MISMATCH", "{err}");
}

#[test]
fn expired_or_future_crls_are_collateral_expired() {
    let windows = [
        (CRL_FROM - 60 * DAY, NOW - DAY), // nextUpdate before now
        (NOW + DAY, CRL_UNTIL),           // thisUpdate after now
    ];
    for (from, until) in windows {
        let c = collateral_with(|p, c| {
            c.pck_crl = crl(&p.platform_ca, &p.platform_key, from, until, &[]);
        });
        let err = verify_test_root(&pki().quote, &c).unwrap_err();
        assert_eq!(
            err.code(),
            "COLLATERAL_EXPIRED",
            "PCK CRL {from}..{until}: {err}"
        );
        assert!(err.to_string().contains("PCK CRL"), "{err}");
        let c = collateral_with(|p, c| {
            c.root_ca_crl = crl(&p.root, &p.root_key, from, until, &[]);
        });
        let err = verify_test_root(&pki().quote, &c).unwrap_err();
        assert_eq!(
            err.code(),
            "COLLATERAL_EXPIRED",
            "root CA CRL {from}..{until}: {err}"
        );
        assert!(err.to_string().contains("root CA CRL"), "{err}");
    }
}

#[test]
fn revocation_is_checked_before_any_policy_decision() {
    // A revoked PCK fails even under the most permissive policy an auditor can set.
    let c = collateral_with(|p, c| {
        c.pck_crl = crl(
            &p.platform_ca,
            &p.platform_key,
            CRL_FROM,
            CRL_UNTIL,
            &[SERIAL_PCK],
        );
    });
    let mut lax = Policy::unbound(TrustRoots::default());
    lax.allow_debug = true;
    lax.tdx.allowed_tcb_statuses = TcbStatus::ALL.to_vec();
    let r = tdx::test_pki::verify_quote(&pki().quote, &c, &lax, NOW, &pki().root_der);
    assert_eq!(code(r), "CRL_REVOKED");
}
