//! AMD's certificate revocation lists for SEV-SNP.
//!
//! AMD's Key Distribution Service publishes one CRL per processor generation and key type
//! (`https://kdsintf.amd.com/vcek/v1/{Milan,Genoa,Turin}/crl`, and `/vlek/v1/…/crl` for
//! VLEK chains). It is issued and signed by the generation's ARK (RSASSA-PSS/SHA-384) and
//! lists the ASK or ASVK certificates the ARK revoked. VCEKs and VLEKs are issued by the
//! ASK/ASVK, not by the ARK, so this CRL cannot speak about them (AMD revokes a chip by not
//! issuing VCEKs for it, and old TCBs by the minimum-TCB policy).

use der::asn1::ObjectIdentifier;
use der::{Decode, Encode};
use x509_cert::Certificate;
use x509_cert::crl::CertificateList;

use crate::AttestError;

const OID_CRL_NUMBER: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.20");

/// What a verified AMD CRL says ([`check_crl`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlVerified {
    /// Common name of the issuing ARK (e.g. `ARK-Milan`).
    pub issuer: String,
    /// The CRL number extension, when present and at most 64 bits.
    pub number: Option<u64>,
    /// thisUpdate (unix seconds).
    pub this_update: u64,
    /// nextUpdate (unix seconds): the CRL is stale from then on.
    pub next_update: u64,
    /// How many certificates the CRL revokes (none of them the checked intermediate).
    pub revoked_count: usize,
    /// Common name of the intermediate found not revoked (`SEV-Milan`, `SEV-VLEK-Genoa`, …).
    pub intermediate: String,
}

/// The DER of a CRL given as DER or as PEM (`-----BEGIN X509 CRL-----`, as
/// `openssl crl` writes; text around the block is ignored). Only the first PEM block is
/// used. The CRL must parse (`MALFORMED_EVIDENCE` otherwise); nothing is verified.
pub fn crl_der_from_der_or_pem(bytes: &[u8]) -> Result<Vec<u8>, AttestError> {
    const BEGIN: &[u8] = b"-----BEGIN X509 CRL-----";
    const END: &str = "-----END X509 CRL-----";
    // PEM only if it says so: DER bytes may contain any byte values.
    let der = match bytes.windows(BEGIN.len()).position(|w| w == BEGIN) {
        Some(start) => {
            let text = core::str::from_utf8(&bytes[start..])
                .map_err(|_| AttestError::malformed("AMD CRL: PEM block is not text"))?;
            let end = text
                .find(END)
                .ok_or_else(|| AttestError::malformed("AMD CRL: PEM block has no END line"))?
                + END.len();
            let (label, der) = der::pem::decode_vec(&text.as_bytes()[..end])
                .map_err(|e| AttestError::malformed(format!("AMD CRL: bad PEM: {e}")))?;
            if label != "X509 CRL" {
                return Err(AttestError::malformed(format!(
                    "AMD CRL: PEM label {label:?}, expected \"X509 CRL\""
                )));
            }
            der
        }
        None => bytes.to_vec(),
    };
    parse(&der)?;
    Ok(der)
}

fn parse(der: &[u8]) -> Result<CertificateList, AttestError> {
    CertificateList::from_der(der)
        .map_err(|e| AttestError::malformed(format!("AMD CRL does not parse: {e}")))
}

/// Check AMD's CRL against the chain that verified: `ark` is the trusted root (AMD's
/// built-in ARK, or the pinned simulated ARK) and `intermediate` the ASK or ASVK below it.
///
/// In order:
/// 1. the CRL parses as a version 2 X.509 CRL (`MALFORMED_EVIDENCE`);
/// 2. its issuer is the ARK's subject (`COLLATERAL_MISMATCH`: e.g. another generation's
///    CRL);
/// 3. its signature is RSASSA-PSS/SHA-384 (salt 48, MGF1-SHA-384) by the ARK's key, with
///    the same algorithm inside and outside the signed part
///    (`COLLATERAL_SIGNATURE_INVALID`);
/// 4. no CRL or entry extension is critical (`MALFORMED_EVIDENCE`): a critical extension
///    (issuing distribution point, delta CRL indicator, certificate issuer) would change the
///    CRL's scope, and an extension this code does not understand must not be ignored
///    (RFC 5280, 5.2);
/// 5. `thisUpdate <= now < nextUpdate`; a CRL without nextUpdate is malformed
///    (`COLLATERAL_EXPIRED`, `MALFORMED_EVIDENCE`);
/// 6. `intermediate`'s serial number is not listed (`CRL_REVOKED`).
///
/// The caller has verified ARK → intermediate (so the intermediate's issuer is the ARK).
pub fn check_crl(
    crl_der: &[u8],
    ark: &Certificate,
    intermediate: &Certificate,
    now: u64,
) -> Result<CrlVerified, AttestError> {
    let ark_cn = super::subject_cn(ark).unwrap_or_default();
    let crl = parse(crl_der)?;
    let tbs = &crl.tbs_cert_list;
    if tbs.version != x509_cert::Version::V2 {
        return Err(AttestError::malformed(format!(
            "AMD CRL version {:?}, expected v2",
            tbs.version
        )));
    }

    // Before any RSA work: a CRL of another ARK is the wrong collateral, not a forgery.
    if tbs.issuer != ark.tbs_certificate.subject {
        return Err(AttestError::CollateralMismatch(format!(
            "AMD CRL is issued by {}, not by the ARK of this chain ({ark_cn})",
            tbs.issuer
        )));
    }

    let sig_fail = |why: String| {
        AttestError::CollateralSignatureInvalid(format!("AMD CRL of {ark_cn}: {why}"))
    };
    if crl.signature_algorithm != tbs.signature {
        return Err(sig_fail(
            "outer and inner signature algorithms differ".into(),
        ));
    }
    super::check_pss_sha384_params(&crl.signature_algorithm).map_err(sig_fail)?;
    let signed = tbs
        .to_der()
        .map_err(|e| AttestError::malformed(format!("AMD CRL: re-encoding TBS: {e}")))?;
    super::verify_pss_sha384(ark, &signed, &crl.signature).map_err(sig_fail)?;

    // Only signed content from here on.
    let mut number = None;
    for ext in tbs.crl_extensions.iter().flatten() {
        if ext.critical {
            return Err(AttestError::malformed(format!(
                "AMD CRL has a critical extension {} this verifier does not support",
                ext.extn_id
            )));
        }
        if ext.extn_id == OID_CRL_NUMBER {
            let n = der::asn1::UintRef::from_der(ext.extn_value.as_bytes())
                .map_err(|e| AttestError::malformed(format!("AMD CRL number: {e}")))?;
            let bytes = n.as_bytes();
            number = (bytes.len() <= 8)
                .then(|| bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)));
        }
    }
    let revoked = tbs.revoked_certificates.as_deref().unwrap_or_default();
    for entry in revoked {
        if let Some(ext) = entry
            .crl_entry_extensions
            .iter()
            .flatten()
            .find(|e| e.critical)
        {
            return Err(AttestError::malformed(format!(
                "AMD CRL entry has a critical extension {} this verifier does not support",
                ext.extn_id
            )));
        }
    }

    let this_update = tbs.this_update.to_unix_duration().as_secs();
    let next_update = tbs
        .next_update
        .ok_or_else(|| AttestError::malformed("AMD CRL has no nextUpdate"))?
        .to_unix_duration()
        .as_secs();
    if now < this_update || now >= next_update {
        return Err(AttestError::CollateralExpired {
            what: format!(
                "AMD CRL of {ark_cn} (thisUpdate {this_update}, nextUpdate {next_update})"
            ),
            now,
        });
    }

    let intermediate_cn = super::subject_cn(intermediate).unwrap_or_default();
    let serial = &intermediate.tbs_certificate.serial_number;
    if let Some(entry) = revoked.iter().find(|e| e.serial_number == *serial) {
        return Err(AttestError::CrlRevoked(format!(
            "AMD CRL of {ark_cn} revokes {intermediate_cn} (serial {}) since {} (unix seconds)",
            hex::encode(serial.as_bytes()),
            entry.revocation_date.to_unix_duration().as_secs()
        )));
    }

    Ok(CrlVerified {
        issuer: ark_cn,
        number,
        this_update,
        next_update,
        revoked_count: revoked.len(),
        intermediate: intermediate_cn,
    })
}
