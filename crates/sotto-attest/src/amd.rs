//! AMD certificate conventions: the VCEK's TCB extensions and the RSA-PSS/SHA-384 and
//! P-384 checks of the ARK → ASK → VCEK chain.

use der::asn1::{ObjectIdentifier, OctetString};
use der::{Decode, Encode};
use rsa::pkcs1::{DecodeRsaPublicKey, RsaPssParams, TrailerField};
use sha2::Sha384;
use signature::Verifier;
use x509_cert::Certificate;

use crate::AttestError;
use crate::snp::{self, Generation, Report, TcbParts};

/// OID of the VCEK extension holding the boot loader SVN (INTEGER).
pub const OID_BL_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.1");
/// OID of the VCEK extension holding the PSP OS (TEE) SVN (INTEGER).
pub const OID_TEE_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.2");
/// OID of the VCEK extension holding the SNP firmware SVN (INTEGER).
pub const OID_SNP_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.3");
/// OID of the VCEK extension holding the microcode SVN (INTEGER).
pub const OID_UCODE_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.8");
/// OID of the VCEK extension holding the FMC SVN (INTEGER, Turin and newer).
pub const OID_FMC_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.9");
/// OID of the VCEK extension holding the chip's hardware ID (= report CHIP_ID).
pub const OID_HW_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.4");
/// OID of the VCEK extension holding the product name (IA5String, e.g. "Genoa").
pub const OID_PRODUCT_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.2");

const OID_RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const OID_RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_MGF1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.8");
const OID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

/// AMD's public root (ARK) and intermediate (ASK) certificates, DER, as published by AMD's
/// Key Distribution Service (copied from the `sev` crate's built-in certificates).
pub mod roots {
    /// Milan ARK (`CN=ARK-Milan`), SHA-256 `69d063b4…0bcd`.
    pub const MILAN_ARK: &[u8] = include_bytes!("roots/milan-ark.der");
    /// Milan ASK (`CN=SEV-Milan`).
    pub const MILAN_ASK: &[u8] = include_bytes!("roots/milan-ask.der");
    /// Genoa ARK (`CN=ARK-Genoa`), SHA-256 `4c6598d1…b2f1`.
    pub const GENOA_ARK: &[u8] = include_bytes!("roots/genoa-ark.der");
    /// Genoa ASK (`CN=SEV-Genoa`).
    pub const GENOA_ASK: &[u8] = include_bytes!("roots/genoa-ask.der");
    /// SHA-256 of [`MILAN_ARK`].
    pub const MILAN_ARK_SHA256: &str =
        "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd";
    /// SHA-256 of [`GENOA_ARK`].
    pub const GENOA_ARK_SHA256: &str =
        "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1";
}

/// The built-in (ARK, ASK) pairs that may have issued a VCEK for a processor generation.
/// Version 2 reports carry no CPUID, so both Milan and Genoa are candidates; Turin is not
/// built in yet.
pub fn builtin_chains(generation: Generation) -> &'static [(&'static [u8], &'static [u8])] {
    const MILAN: (&[u8], &[u8]) = (roots::MILAN_ARK, roots::MILAN_ASK);
    const GENOA: (&[u8], &[u8]) = (roots::GENOA_ARK, roots::GENOA_ASK);
    match generation {
        Generation::Milan => &[MILAN],
        Generation::Genoa => &[GENOA],
        Generation::Unknown => &[MILAN, GENOA],
        Generation::Turin => &[],
    }
}

/// The TCB-related extensions of a VCEK certificate.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VcekExtensions {
    /// Boot loader SVN.
    pub bootloader: Option<u8>,
    /// PSP OS (TEE) SVN.
    pub tee: Option<u8>,
    /// SNP firmware SVN.
    pub snp: Option<u8>,
    /// Microcode SVN.
    pub microcode: Option<u8>,
    /// FMC SVN (Turin and newer).
    pub fmc: Option<u8>,
    /// Hardware ID (64 bytes on Milan/Genoa, 8 on Turin).
    pub hw_id: Option<Vec<u8>>,
}

impl VcekExtensions {
    /// Extract the extensions from a parsed certificate. Unknown extensions are ignored;
    /// a known one whose value does not decode is `MALFORMED_EVIDENCE`.
    pub fn from_cert(cert: &Certificate) -> Result<Self, AttestError> {
        let mut out = VcekExtensions::default();
        let Some(exts) = &cert.tbs_certificate.extensions else {
            return Ok(out);
        };
        let int = |v: &OctetString| {
            u8::from_der(v.as_bytes())
                .map_err(|_| AttestError::malformed("VCEK TCB extension is not a small INTEGER"))
        };
        for ext in exts {
            let v = &ext.extn_value;
            match ext.extn_id {
                OID_BL_SPL => out.bootloader = Some(int(v)?),
                OID_TEE_SPL => out.tee = Some(int(v)?),
                OID_SNP_SPL => out.snp = Some(int(v)?),
                OID_UCODE_SPL => out.microcode = Some(int(v)?),
                OID_FMC_SPL => out.fmc = Some(int(v)?),
                OID_HW_ID => {
                    // AMD stores the raw bytes; accept a DER OCTET STRING wrapper as well.
                    let raw = v.as_bytes();
                    let id = if raw.len() == 64 || raw.len() == 8 {
                        raw.to_vec()
                    } else {
                        OctetString::from_der(raw)
                            .map_err(|_| AttestError::malformed("VCEK hwID extension"))?
                            .as_bytes()
                            .to_vec()
                    };
                    out.hw_id = Some(id);
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// Parse a DER certificate and extract its extensions.
    pub fn from_der(der: &[u8]) -> Result<Self, AttestError> {
        Self::from_cert(&parse_cert(der, "VCEK")?)
    }
}

/// Parse a DER certificate (`MALFORMED_EVIDENCE` on failure).
pub(crate) fn parse_cert(der: &[u8], which: &str) -> Result<Certificate, AttestError> {
    Certificate::from_der(der)
        .map_err(|e| AttestError::malformed(format!("{which} certificate does not parse: {e}")))
}

/// NotBefore/NotAfter as unix seconds.
pub(crate) fn validity_unix(cert: &Certificate) -> (u64, u64) {
    let v = &cert.tbs_certificate.validity;
    (
        v.not_before.to_unix_duration().as_secs(),
        v.not_after.to_unix_duration().as_secs(),
    )
}

/// Check `now` (unix seconds) is within the certificate's validity period (inclusive).
pub fn check_validity(
    cert: &Certificate,
    which: &'static str,
    now: u64,
) -> Result<(), AttestError> {
    let (not_before, not_after) = validity_unix(cert);
    if now < not_before || now > not_after {
        return Err(AttestError::CertExpired {
            cert: which,
            now,
            not_before,
            not_after,
        });
    }
    Ok(())
}

fn check_pss_sha384_params(alg: &spki::AlgorithmIdentifierOwned) -> Result<(), String> {
    if alg.oid != OID_RSASSA_PSS {
        return Err(format!("signature algorithm {} is not RSASSA-PSS", alg.oid));
    }
    let params = alg
        .parameters
        .as_ref()
        .ok_or("RSASSA-PSS without parameters")?;
    let der = params.to_der().map_err(|e| e.to_string())?;
    let p = RsaPssParams::from_der(&der).map_err(|e| format!("RSASSA-PSS parameters: {e}"))?;
    let mgf_hash = p.mask_gen.parameters.as_ref().map(|h| h.oid);
    if p.hash.oid != OID_SHA384
        || p.mask_gen.oid != OID_MGF1
        || mgf_hash != Some(OID_SHA384)
        || p.salt_len != 48
        || p.trailer_field != TrailerField::BC
    {
        return Err("RSASSA-PSS parameters are not SHA-384/MGF1-SHA-384/salt 48".into());
    }
    Ok(())
}

fn rsa_public_key(cert: &Certificate) -> Result<rsa::RsaPublicKey, String> {
    let spki = &cert.tbs_certificate.subject_public_key_info;
    if spki.algorithm.oid != OID_RSA_ENCRYPTION && spki.algorithm.oid != OID_RSASSA_PSS {
        return Err(format!(
            "issuer key algorithm {} is not RSA",
            spki.algorithm.oid
        ));
    }
    let raw = spki
        .subject_public_key
        .as_bytes()
        .ok_or("issuer key bit string has unused bits")?;
    let key = rsa::RsaPublicKey::from_pkcs1_der(raw).map_err(|e| format!("issuer RSA key: {e}"))?;
    if rsa::traits::PublicKeyParts::size(&key) < 256 {
        return Err("issuer RSA key shorter than 2048 bits".into());
    }
    Ok(key)
}

/// Verify that `subject` is signed by `issuer` with RSASSA-PSS/SHA-384 (salt 48) and that
/// the names chain. Errors are `CERT_CHAIN_INVALID`.
pub(crate) fn verify_signed_by_rsa_pss(
    subject: &Certificate,
    issuer: &Certificate,
    what: &str,
) -> Result<(), AttestError> {
    let fail = |why: String| AttestError::chain(format!("{what}: {why}"));
    if subject.signature_algorithm != subject.tbs_certificate.signature {
        return Err(fail("outer and inner signature algorithms differ".into()));
    }
    check_pss_sha384_params(&subject.signature_algorithm).map_err(fail)?;
    if subject.tbs_certificate.issuer != issuer.tbs_certificate.subject {
        return Err(fail(
            "issuer name does not match the issuing certificate".into(),
        ));
    }
    let key = rsa_public_key(issuer).map_err(fail)?;
    let tbs = subject
        .tbs_certificate
        .to_der()
        .map_err(|e| fail(format!("re-encoding TBS: {e}")))?;
    let sig_bytes = subject
        .signature
        .as_bytes()
        .ok_or_else(|| fail("signature bit string has unused bits".into()))?;
    let sig = rsa::pss::Signature::try_from(sig_bytes)
        .map_err(|_| fail("signature does not decode".into()))?;
    rsa::pss::VerifyingKey::<Sha384>::new_with_salt_len(key, 48)
        .verify(&tbs, &sig)
        .map_err(|_| fail("signature does not verify".into()))
}

/// The certificate's P-384 ECDSA public key (`CERT_CHAIN_INVALID` if it is anything else).
pub(crate) fn p384_key(cert: &Certificate) -> Result<p384::ecdsa::VerifyingKey, AttestError> {
    let spki = &cert.tbs_certificate.subject_public_key_info;
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
    if spki.algorithm.oid != OID_EC_PUBLIC_KEY || curve != Some(OID_SECP384R1) {
        return Err(AttestError::chain("VCEK key is not an EC P-384 key"));
    }
    let raw = spki
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| AttestError::chain("VCEK key bit string has unused bits"))?;
    p384::ecdsa::VerifyingKey::from_sec1_bytes(raw)
        .map_err(|_| AttestError::chain("VCEK key is not a valid P-384 point"))
}

/// Parse ARK, ASK and VCEK and check ARK (self-signed) → ASK → VCEK signatures
/// (RSASSA-PSS/SHA-384, salt 48, any RSA size from 2048 to 4096 bits) and issuer names.
/// Does not check validity dates or whether the ARK is trusted.
pub fn verify_chain(
    ark_der: &[u8],
    ask_der: &[u8],
    vcek_der: &[u8],
) -> Result<[Certificate; 3], AttestError> {
    let ark = parse_cert(ark_der, "ARK")?;
    let ask = parse_cert(ask_der, "ASK")?;
    let vcek = parse_cert(vcek_der, "VCEK")?;
    verify_signed_by_rsa_pss(&ark, &ark, "ARK (self-signed)")?;
    verify_signed_by_rsa_pss(&ask, &ark, "ASK signed by ARK")?;
    verify_signed_by_rsa_pss(&vcek, &ask, "VCEK signed by ASK")?;
    Ok([ark, ask, vcek])
}

/// Verify a raw report's ECDSA P-384/SHA-384 signature over bytes 0x000..0x2A0 with the
/// VCEK certificate's key. Also requires `signature_algo` = 1 and SIGNING_KEY = VCEK.
pub fn verify_report_signature(report: &[u8], vcek_der: &[u8]) -> Result<(), AttestError> {
    let parsed = snp::parse(report)?;
    let vcek = parse_cert(vcek_der, "VCEK")?;
    verify_report_signature_with(report, &parsed, &vcek)
}

pub(crate) fn verify_report_signature_with(
    raw: &[u8],
    report: &Report,
    vcek: &Certificate,
) -> Result<(), AttestError> {
    use p384::ecdsa::signature::Verifier as _;
    if report.signature_algo != snp::SIG_ALGO_ECDSA_P384_SHA384 {
        return Err(AttestError::UnsupportedSignatureAlgorithm(
            report.signature_algo,
        ));
    }
    if report.signing_key() != 0 {
        return Err(AttestError::UnsupportedSigningKey(report.signing_key()));
    }
    let key = p384_key(vcek)?;
    let rs = report
        .signature
        .to_p384_be()
        .ok_or(AttestError::ReportSignatureInvalid)?;
    let sig =
        p384::ecdsa::Signature::from_slice(&rs).map_err(|_| AttestError::ReportSignatureInvalid)?;
    let signed = raw
        .get(..snp::SIGNED_LEN)
        .ok_or_else(|| AttestError::malformed("report shorter than its signed region"))?;
    key.verify(signed, &sig)
        .map_err(|_| AttestError::ReportSignatureInvalid)
}

/// Check that the VCEK was issued for the report's chip and TCB: its hwID equals CHIP_ID
/// (`CHIP_ID_MISMATCH`) and its bl/tee/snp/ucode (and fmc on Turin) SVNs equal the
/// REPORTED_TCB decoded for the processor generation (`TCB_MISMATCH`). Returns the TCB.
pub fn check_vcek_binding(vcek: &Certificate, report: &Report) -> Result<TcbParts, AttestError> {
    let ext = VcekExtensions::from_cert(vcek)?;
    let hw_id = ext
        .hw_id
        .as_deref()
        .ok_or_else(|| AttestError::chain("VCEK has no hwID extension"))?;
    let generation = match report.generation() {
        // Version 2 reports carry no CPUID; they come from Milan/Genoa firmware, whose TCB
        // layout is shared.
        Generation::Unknown if report.version == 2 => Generation::Genoa,
        g => g,
    };
    // Turin hwIDs are 8 bytes: the first 8 bytes of CHIP_ID.
    let expected_id = match generation {
        Generation::Turin => report.chip_id.get(..8).unwrap_or_default(),
        _ => report.chip_id.as_slice(),
    };
    if hw_id != expected_id {
        return Err(AttestError::ChipIdMismatch);
    }
    let reported =
        report
            .reported_tcb
            .decode(generation)
            .ok_or_else(|| AttestError::TcbMismatch {
                vcek: "?".into(),
                report: format!("unknown processor generation (CPUID {:?})", report.cpuid()),
            })?;
    let (Some(bootloader), Some(tee), Some(snp), Some(microcode)) =
        (ext.bootloader, ext.tee, ext.snp, ext.microcode)
    else {
        return Err(AttestError::chain("VCEK lacks a TCB extension"));
    };
    if generation == Generation::Turin && ext.fmc.is_none() {
        return Err(AttestError::chain("Turin VCEK lacks the fmcSPL extension"));
    }
    let from_cert = TcbParts {
        fmc: if generation == Generation::Turin {
            ext.fmc
        } else {
            None
        },
        bootloader,
        tee,
        snp,
        microcode,
    };
    if from_cert != reported {
        return Err(AttestError::TcbMismatch {
            vcek: from_cert.to_string(),
            report: reported.to_string(),
        });
    }
    Ok(reported)
}
