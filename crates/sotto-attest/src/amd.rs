//! AMD certificate conventions: the VCEK's TCB extensions, the RSA-PSS/SHA-384 and
//! P-384 checks of the ARK → ASK → VCEK chain, and AMD's CRLs ([`check_crl`]).

use der::asn1::{ObjectIdentifier, OctetString};
use der::{Decode, Encode};
use rsa::pkcs1::{DecodeRsaPublicKey, RsaPssParams, TrailerField};
use sha2::Sha384;
use signature::Verifier;
use x509_cert::Certificate;

use crate::AttestError;
use crate::snp::{self, Generation, Report, TcbParts};

mod crl;
pub use crl::{CrlVerified, check_crl, crl_der_from_der_or_pem};

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
/// OID of the VLEK extension holding the cloud provider's ID (IA5String; VLEK only).
pub const OID_CSP_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.5");

const OID_RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const OID_RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_MGF1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.8");
const OID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

/// AMD's public root (ARK) and intermediate (ASK) certificates, DER, as published by AMD's
/// Key Distribution Service (`https://kdsintf.amd.com/vcek/v1/{Milan,Genoa,Turin}/cert_chain`).
///
/// Origin: the `sev` crate 8.0.0 (Apache-2.0, github.com/virtee/sev),
/// `src/certs/snp/builtin/{milan,genoa,turin}/{ark,ask}.pem`, converted from PEM to DER
/// unchanged (`openssl x509 -outform DER`). They are AMD's public certificates, not code.
///
/// AMD's ASVKs (the intermediates that issue VLEKs) are not built in: a VLEK bundle carries
/// its ASVK, which is accepted only if it verifies under the built-in ARK.
pub mod roots {
    /// Milan ARK (`CN=ARK-Milan`), SHA-256 `69d063b4…0bcd`.
    pub const MILAN_ARK: &[u8] = include_bytes!("roots/milan-ark.der");
    /// Milan ASK (`CN=SEV-Milan`).
    pub const MILAN_ASK: &[u8] = include_bytes!("roots/milan-ask.der");
    /// Genoa ARK (`CN=ARK-Genoa`), SHA-256 `4c6598d1…b2f1`.
    pub const GENOA_ARK: &[u8] = include_bytes!("roots/genoa-ark.der");
    /// Genoa ASK (`CN=SEV-Genoa`).
    pub const GENOA_ASK: &[u8] = include_bytes!("roots/genoa-ask.der");
    /// Turin ARK (`CN=ARK-Turin`), SHA-256 `1f084161…3f6a`.
    pub const TURIN_ARK: &[u8] = include_bytes!("roots/turin-ark.der");
    /// Turin ASK (`CN=SEV-Turin`).
    pub const TURIN_ASK: &[u8] = include_bytes!("roots/turin-ask.der");
    /// SHA-256 of [`MILAN_ARK`].
    pub const MILAN_ARK_SHA256: &str =
        "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd";
    /// SHA-256 of [`GENOA_ARK`].
    pub const GENOA_ARK_SHA256: &str =
        "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1";
    /// SHA-256 of [`TURIN_ARK`].
    pub const TURIN_ARK_SHA256: &str =
        "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a";
}

/// One generation's built-in AMD root (ARK) and VCEK intermediate (ASK).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuiltinRoot {
    /// The processor generation these certificates are for.
    pub generation: Generation,
    /// DER of the ARK.
    pub ark: &'static [u8],
    /// DER of the ASK.
    pub ask: &'static [u8],
}

const BUILTIN_MILAN: BuiltinRoot = BuiltinRoot {
    generation: Generation::Milan,
    ark: roots::MILAN_ARK,
    ask: roots::MILAN_ASK,
};
const BUILTIN_GENOA: BuiltinRoot = BuiltinRoot {
    generation: Generation::Genoa,
    ark: roots::GENOA_ARK,
    ask: roots::GENOA_ASK,
};
const BUILTIN_TURIN: BuiltinRoot = BuiltinRoot {
    generation: Generation::Turin,
    ark: roots::TURIN_ARK,
    ask: roots::TURIN_ASK,
};

/// The built-in roots that may have issued the signing key of a report from `generation`:
/// exactly that generation's when the report's CPUID names one; all of them (Milan, Genoa,
/// Turin) when it does not (version 2 reports carry no CPUID), in which case the root that
/// verifies determines the generation and with it the TCB byte layout.
pub fn builtin_roots(generation: Generation) -> &'static [BuiltinRoot] {
    match generation {
        Generation::Milan => &[BUILTIN_MILAN],
        Generation::Genoa => &[BUILTIN_GENOA],
        Generation::Turin => &[BUILTIN_TURIN],
        Generation::Unknown => &[BUILTIN_MILAN, BUILTIN_GENOA, BUILTIN_TURIN],
    }
}

/// The built-in (ARK, ASK) pairs that may have issued a VCEK for a processor generation
/// (see [`builtin_roots`]).
pub fn builtin_chains(generation: Generation) -> Vec<(&'static [u8], &'static [u8])> {
    builtin_roots(generation)
        .iter()
        .map(|r| (r.ark, r.ask))
        .collect()
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
    /// Hardware ID (64 bytes on Milan/Genoa, 8 on Turin). VCEK only: VLEKs have none.
    pub hw_id: Option<Vec<u8>>,
    /// Product name (e.g. "Genoa", "Milan-B0"), informational.
    pub product_name: Option<String>,
    /// Cloud service provider ID (VLEK only), informational.
    pub csp_id: Option<String>,
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
                OID_PRODUCT_NAME => out.product_name = Some(lenient_string(v.as_bytes())),
                OID_CSP_ID => out.csp_id = Some(lenient_string(v.as_bytes())),
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

/// An informational string extension: a DER IA5String/UTF8String, or else the raw bytes
/// (lossy UTF-8). Never an error: these values are displayed, not trusted.
fn lenient_string(raw: &[u8]) -> String {
    if let Ok(s) = der::asn1::Ia5StringRef::from_der(raw) {
        return s.as_str().to_owned();
    }
    if let Ok(s) = der::asn1::Utf8StringRef::from_der(raw) {
        return s.as_str().to_owned();
    }
    if let Ok(s) = der::asn1::PrintableStringRef::from_der(raw) {
        return s.as_str().to_owned();
    }
    String::from_utf8_lossy(raw).into_owned()
}

/// The subject common name of a certificate (first CN attribute), if any.
pub(crate) fn subject_cn(cert: &Certificate) -> Option<String> {
    const OID_CN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
    cert.tbs_certificate
        .subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .find(|atv| atv.oid == OID_CN)
        .map(|atv| lenient_string(&atv.value.to_der().unwrap_or_default()))
}

/// Check that an intermediate certificate has the role the report's signing key needs:
/// AMD names the ASVK (which issues VLEKs) `SEV-VLEK-<product>` and the ASK (which issues
/// VCEKs) `SEV-<product>`. A VLEK-signed report must chain through a certificate whose
/// CN contains "VLEK", a VCEK-signed one through one whose CN does not
/// (`CERT_CHAIN_INVALID`).
pub fn check_intermediate_role(
    intermediate: &Certificate,
    key: snp::SigningKey,
) -> Result<(), AttestError> {
    let cn = subject_cn(intermediate).unwrap_or_default();
    let is_asvk = cn.contains("VLEK");
    match (key, is_asvk) {
        (snp::SigningKey::Vcek, false) | (snp::SigningKey::Vlek, true) => Ok(()),
        (snp::SigningKey::Vcek, true) => Err(AttestError::chain(format!(
            "report is signed by a VCEK but its intermediate (CN={cn}) is a VLEK signing key (ASVK)"
        ))),
        (snp::SigningKey::Vlek, false) => Err(AttestError::chain(format!(
            "report is signed by a VLEK but its intermediate (CN={cn}) is not an ASVK"
        ))),
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
    let tbs = subject
        .tbs_certificate
        .to_der()
        .map_err(|e| fail(format!("re-encoding TBS: {e}")))?;
    verify_pss_sha384(issuer, &tbs, &subject.signature).map_err(fail)
}

/// Verify an RSASSA-PSS/SHA-384 (salt 48) signature by `issuer`'s key over `signed` (the
/// DER of a certificate's or CRL's TBS part). The caller has checked the algorithm
/// parameters ([`check_pss_sha384_params`]).
fn verify_pss_sha384(
    issuer: &Certificate,
    signed: &[u8],
    signature: &der::asn1::BitString,
) -> Result<(), String> {
    let key = rsa_public_key(issuer)?;
    let sig_bytes = signature
        .as_bytes()
        .ok_or("signature bit string has unused bits")?;
    let sig = rsa::pss::Signature::try_from(sig_bytes)
        .map_err(|_| "signature does not decode".to_string())?;
    rsa::pss::VerifyingKey::<Sha384>::new_with_salt_len(key, 48)
        .verify(signed, &sig)
        .map_err(|_| "signature does not verify".to_string())
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

/// Parse an ARK and an intermediate (ASK or ASVK) and check ARK (self-signed) →
/// intermediate signatures and names (`CERT_CHAIN_INVALID`). Does not check validity.
pub fn verify_ca_pair(
    ark_der: &[u8],
    intermediate_der: &[u8],
) -> Result<[Certificate; 2], AttestError> {
    let ark = parse_cert(ark_der, "ARK")?;
    let ask = parse_cert(intermediate_der, "ASK")?;
    verify_signed_by_rsa_pss(&ark, &ark, "ARK (self-signed)")?;
    verify_signed_by_rsa_pss(&ask, &ark, "intermediate signed by ARK")?;
    Ok([ark, ask])
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
    // Names first: rules out another generation's root (tried for version 2 reports)
    // without any RSA work.
    if vcek.tbs_certificate.issuer != ask.tbs_certificate.subject
        || ask.tbs_certificate.issuer != ark.tbs_certificate.subject
    {
        return Err(AttestError::chain(
            "issuer names do not chain (ARK → ASK/ASVK → VCEK/VLEK)",
        ));
    }
    verify_signed_by_rsa_pss(&ark, &ark, "ARK (self-signed)")?;
    verify_signed_by_rsa_pss(&ask, &ark, "ASK/ASVK signed by ARK")?;
    verify_signed_by_rsa_pss(&vcek, &ask, "VCEK/VLEK signed by ASK/ASVK")?;
    Ok([ark, ask, vcek])
}

/// Verify a raw report's ECDSA P-384/SHA-384 signature over bytes 0x000..0x2A0 with the
/// VCEK (or VLEK) certificate's key. Also requires `signature_algo` = 1 and SIGNING_KEY =
/// VCEK (0) or VLEK (1) (`UNSUPPORTED_SIGNING_KEY` otherwise).
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
    if report.signing_key_kind().is_none() {
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

/// The generation whose TCB byte layout applies when the report does not name one:
/// version 2 reports (no CPUID) come from Milan/Genoa firmware, which share a layout.
fn layout_generation(report: &Report) -> Generation {
    match report.generation() {
        Generation::Unknown => Generation::Genoa,
        g => g,
    }
}

/// Check that a VCEK was issued for the report's chip and TCB, decoding the TCB for the
/// generation named by the report's CPUID (Milan/Genoa layout for version 2 reports).
/// See [`check_key_binding`].
pub fn check_vcek_binding(vcek: &Certificate, report: &Report) -> Result<TcbParts, AttestError> {
    check_key_binding(
        vcek,
        report,
        layout_generation(report),
        snp::SigningKey::Vcek,
    )
}

/// Check that the signing key certificate was issued for this report:
///
/// - VCEK: its hwID equals CHIP_ID (`VCEK_HWID_MISMATCH`; on Turin the hwID may be the
///   first 8 bytes of CHIP_ID, which is how AMD's KDS identifies Turin chips).
/// - VLEK: AMD's VLEK certificates carry no hwID (one VLEK serves a cloud provider's
///   fleet), so no chip binding is possible or checked; a VLEK that does carry a hwID must
///   match CHIP_ID like a VCEK's.
/// - Both: the bl/tee/snp/ucode SVN extensions (and fmc on Turin) equal REPORTED_TCB
///   decoded with `generation`'s byte layout (`VCEK_TCB_MISMATCH`; missing extensions are
///   `CERT_CHAIN_INVALID`).
///
/// Returns the decoded REPORTED_TCB. `generation` must be known (the generation of the
/// root the chain verified under, or the report's CPUID); `Unknown` is `VCEK_TCB_MISMATCH`.
pub fn check_key_binding(
    cert: &Certificate,
    report: &Report,
    generation: Generation,
    key: snp::SigningKey,
) -> Result<TcbParts, AttestError> {
    let ext = VcekExtensions::from_cert(cert)?;
    match (key, ext.hw_id.as_deref()) {
        (snp::SigningKey::Vcek, None) => {
            return Err(AttestError::chain("VCEK has no hwID extension"));
        }
        (snp::SigningKey::Vlek, None) => {}
        (_, Some(hw_id)) => {
            let full = hw_id == report.chip_id.as_slice();
            let turin_short = generation == Generation::Turin
                && hw_id.len() == 8
                && hw_id == report.chip_id.get(..8).unwrap_or_default();
            if !(full || turin_short) {
                return Err(AttestError::VcekHwidMismatch);
            }
        }
    }
    let reported =
        report
            .reported_tcb
            .decode(generation)
            .ok_or_else(|| AttestError::VcekTcbMismatch {
                key: key.name(),
                cert: "?".into(),
                report: format!("unknown processor generation (CPUID {:?})", report.cpuid()),
            })?;
    let (Some(bootloader), Some(tee), Some(snp), Some(microcode)) =
        (ext.bootloader, ext.tee, ext.snp, ext.microcode)
    else {
        return Err(AttestError::chain(format!(
            "{} lacks a TCB extension",
            key.name()
        )));
    };
    if generation.has_fmc() && ext.fmc.is_none() {
        return Err(AttestError::chain(format!(
            "{generation} {} lacks the fmcSPL extension",
            key.name()
        )));
    }
    let from_cert = TcbParts {
        fmc: if generation.has_fmc() { ext.fmc } else { None },
        bootloader,
        tee,
        snp,
        microcode,
    };
    if from_cert != reported {
        return Err(AttestError::VcekTcbMismatch {
            key: key.name(),
            cert: from_cert.to_string(),
            report: reported.to_string(),
        });
    }
    Ok(reported)
}
