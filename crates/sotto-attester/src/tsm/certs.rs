//! The operator's SNP certificate cache file (`--snp-certs`).

use std::path::{Path, PathBuf};

use der::Encode;
use x509_cert::Certificate;
use x509_cert::der::asn1::{PrintableStringRef, Utf8StringRef};

use super::SnpCerts;
use crate::AttesterError;

/// Where SNP certificates come from when the host's certificate table (`auxblob`) lacks
/// them.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum CertSource {
    /// A PEM file holding any of VCEK (or VLEK), ASK (or ASVK) and ARK, in any order. Each
    /// is identified by its subject CN: `SEV-VCEK`, `SEV-VLEK`, `ARK-*` (ARK), other
    /// `SEV-*` (`SEV-Milan`, `SEV-Genoa`, `SEV-Turin`, ...: ASK). Read once, when set.
    File(PathBuf),
    /// Certificates already in memory (DER).
    Certs(SnpCerts),
}

impl CertSource {
    pub(crate) fn load(self) -> Result<SnpCerts, AttesterError> {
        match self {
            CertSource::File(path) => {
                let pem = std::fs::read(&path).map_err(|e| invalid(&path, e.to_string()))?;
                certs_from_pem(&pem).map_err(|reason| invalid(&path, reason))
            }
            CertSource::Certs(c) => Ok(c),
        }
    }
}

fn invalid(path: &Path, reason: String) -> AttesterError {
    AttesterError::SnpCertsInvalid {
        path: path.display().to_string(),
        reason,
    }
}

fn common_name(cert: &Certificate) -> Option<String> {
    const CN: der::oid::ObjectIdentifier = der::oid::ObjectIdentifier::new_unwrap("2.5.4.3");
    for rdn in cert.tbs_certificate.subject.0.iter() {
        for atv in rdn.0.iter() {
            if atv.oid != CN {
                continue;
            }
            if let Ok(s) = atv.value.decode_as::<Utf8StringRef<'_>>() {
                return Some(s.as_str().to_string());
            }
            if let Ok(s) = atv.value.decode_as::<PrintableStringRef<'_>>() {
                return Some(s.as_str().to_string());
            }
        }
    }
    None
}

/// Sort the certificates of a PEM file into VCEK/VLEK/ASK/ARK by subject CN.
pub(crate) fn certs_from_pem(pem: &[u8]) -> Result<SnpCerts, String> {
    let chain = pem_blocks(pem)?;
    if chain.is_empty() {
        return Err("no certificates in the file (not PEM?)".into());
    }
    let mut certs = SnpCerts::default();
    for cert in chain {
        let cn = common_name(&cert).ok_or("a certificate has no subject CN")?;
        let (slot, what) = match cn.as_str() {
            "SEV-VCEK" => (&mut certs.vcek, "VCEK"),
            "SEV-VLEK" => (&mut certs.vlek, "VLEK"),
            c if c.starts_with("ARK-") => (&mut certs.ark, "ARK"),
            c if c.starts_with("SEV-") => (&mut certs.ask, "ASK"),
            other => return Err(format!("unrecognised certificate subject CN={other:?}")),
        };
        if slot.is_some() {
            return Err(format!("more than one {what} certificate"));
        }
        *slot = Some(cert.to_der().map_err(|e| e.to_string())?);
    }
    Ok(certs)
}

/// The DER certificates in a file's bytes: one DER certificate, or the `CERTIFICATE`
/// blocks of PEM text (one shared loader for the enclave's cache file and the auditor's
/// tool). Each certificate is parsed, so garbage is an error here, not later.
pub fn load_certificates(bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    // PEM only if it says so: DER bytes may well contain '-' characters.
    let is_pem = bytes
        .windows(27)
        .any(|w| w == b"-----BEGIN CERTIFICATE-----");
    let certs = if is_pem {
        pem_blocks(bytes)?
    } else {
        vec![
            <Certificate as der::Decode>::from_der(bytes)
                .map_err(|e| format!("not a DER certificate: {e}"))?,
        ]
    };
    if certs.is_empty() {
        return Err("no certificate found".into());
    }
    certs
        .iter()
        .map(|c| c.to_der().map_err(|e| format!("re-encoding failed: {e}")))
        .collect()
}

/// The `CERTIFICATE` blocks of a PEM file (text around them, as `openssl x509 -text`
/// writes, is ignored). Not `Certificate::load_pem_chain`: x509-cert 0.2 panics on some
/// non-PEM input.
fn pem_blocks(pem: &[u8]) -> Result<Vec<Certificate>, String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let text = std::str::from_utf8(pem).map_err(|_| "not PEM: the file is not text")?;
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let block = &rest[start..];
        let end = block
            .find(END)
            .ok_or_else(|| format!("certificate {} has no END line", out.len() + 1))?
            + END.len();
        let cert = <Certificate as der::DecodePem>::from_pem(&block[..end])
            .map_err(|e| format!("certificate {} does not parse: {e}", out.len() + 1))?;
        out.push(cert);
        rest = &block[end..];
    }
    Ok(out)
}

#[cfg(test)]
mod load_tests {
    use super::load_certificates;

    fn shared(p: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/../../../shared/attestation/snp/{p}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn der_and_pem_load_and_garbage_is_refused() {
        let der = shared("genoa-msft.vcek.der");
        assert_eq!(load_certificates(&der).unwrap(), vec![der.clone()]);
        let pem = shared("genoa.ask_ark.pem");
        assert_eq!(load_certificates(&pem).unwrap().len(), 2, "ASK then ARK");
        // Dashes alone do not make a file PEM; such garbage is judged as DER and refused.
        assert!(
            load_certificates(b"----- not a certificate -----")
                .unwrap_err()
                .contains("DER")
        );
        assert!(load_certificates(b"").is_err());
        let mut truncated = der.clone();
        truncated.truncate(der.len() / 2);
        assert!(load_certificates(&truncated).is_err());
        assert!(
            load_certificates(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                .is_err()
        );
    }
}
