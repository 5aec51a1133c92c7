//! Test helper (included with `#[path]` by the tests that need it): AMD-style CRLs for the
//! simulated root, built field by field so that tests can get every part wrong.

// Each test binary uses a different subset.
#![allow(dead_code)]

use std::time::Duration;

use der::Encode;
use der::asn1::{ObjectIdentifier, OctetString, UtcTime};
use rsa::RsaPrivateKey;
use rsa::rand_core::OsRng;
use sha2::Sha384;
use signature::RandomizedSigner;
use spki::{AlgorithmIdentifierOwned, DynSignatureAlgorithmIdentifier, SignatureBitStringEncoding};
use x509_cert::crl::{CertificateList, RevokedCert, TbsCertList};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::Time;

pub const OID_CRL_NUMBER: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.20");
pub const OID_ISSUING_DISTRIBUTION_POINT: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("2.5.29.28");
pub const OID_DELTA_CRL_INDICATOR: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.27");
pub const OID_CERTIFICATE_ISSUER: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.29");

pub fn time(secs: u64) -> Time {
    Time::UtcTime(UtcTime::from_unix_duration(Duration::from_secs(secs)).unwrap())
}

pub fn ext(oid: ObjectIdentifier, critical: bool, value_der: &[u8]) -> Extension {
    Extension {
        extn_id: oid,
        critical,
        extn_value: OctetString::new(value_der.to_vec()).unwrap(),
    }
}

/// The unsigned part of a v2 CRL like AMD's: `issuer`, `this_update..next_update`, the
/// given serials revoked, a CRL number. `signature` is filled in by [`sign`].
pub fn tbs(issuer: &Name, this_update: u64, next_update: u64, serials: &[&[u8]]) -> TbsCertList {
    let revoked: Vec<RevokedCert> = serials
        .iter()
        .map(|s| RevokedCert {
            serial_number: SerialNumber::new(s).unwrap(),
            revocation_date: time(this_update),
            crl_entry_extensions: None,
        })
        .collect();
    TbsCertList {
        version: x509_cert::Version::V2,
        // Placeholder (RSASSA-PSS without parameters); `sign` sets the signer's.
        signature: AlgorithmIdentifierOwned {
            oid: ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10"),
            parameters: None,
        },
        issuer: issuer.clone(),
        this_update: time(this_update),
        next_update: Some(time(next_update)),
        revoked_certificates: (!revoked.is_empty()).then_some(revoked),
        crl_extensions: Some(vec![ext(OID_CRL_NUMBER, false, &7u8.to_der().unwrap())]),
    }
}

/// Sign `tbs` with `signer` (its algorithm identifier goes inside and outside the signed
/// part) and encode the CRL.
pub fn sign<S, Sig>(signer: &S, mut tbs: TbsCertList) -> Vec<u8>
where
    S: RandomizedSigner<Sig> + DynSignatureAlgorithmIdentifier,
    Sig: SignatureBitStringEncoding,
{
    let alg = signer.signature_algorithm_identifier().unwrap();
    tbs.signature = alg.clone();
    let sig = signer.sign_with_rng(&mut OsRng, &tbs.to_der().unwrap());
    CertificateList {
        tbs_cert_list: tbs,
        signature_algorithm: alg,
        signature: sig.to_bitstring().unwrap(),
    }
    .to_der()
    .unwrap()
}

/// Sign as AMD does: RSASSA-PSS with SHA-384, MGF1-SHA-384, salt 48.
pub fn sign_pss(key: &RsaPrivateKey, tbs: TbsCertList) -> Vec<u8> {
    sign(&rsa::pss::SigningKey::<Sha384>::new(key.clone()), tbs)
}
