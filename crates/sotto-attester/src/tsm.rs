//! Linux configfs-tsm (`Documentation/ABI/testing/configfs-tsm`) report backend.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use rsa::rand_core::{OsRng, RngCore};
use sotto_attest::snp;
use sotto_attest::{EvidenceBundle, Extra, Platform, tags};

use crate::{Attester, AttesterError};

mod certs;
mod collateral;
pub(crate) mod fs;
mod pccs_http;

pub use certs::{CertSource, load_certificates};
use collateral::{Clock, Provider};
pub use collateral::{CollateralSource, INTEL_PCS_URL, RefreshPolicy};
use fs::{StdFs, TsmFs};

/// GUIDs of the SNP certificate table (RFC 4122 byte order, as the kernel passes them).
pub mod guids {
    /// VCEK: 63da758d-e664-4564-adc5-f4b93be8accd.
    pub const VCEK: [u8; 16] = [
        0x63, 0xda, 0x75, 0x8d, 0xe6, 0x64, 0x45, 0x64, 0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac,
        0xcd,
    ];
    /// ASK: 4ab7b379-bbac-4fe4-a02f-05aef327c782.
    pub const ASK: [u8; 16] = [
        0x4a, 0xb7, 0xb3, 0x79, 0xbb, 0xac, 0x4f, 0xe4, 0xa0, 0x2f, 0x05, 0xae, 0xf3, 0x27, 0xc7,
        0x82,
    ];
    /// ARK: c0b406a4-a803-4952-9743-3fb6014cd0ae.
    pub const ARK: [u8; 16] = [
        0xc0, 0xb4, 0x06, 0xa4, 0xa8, 0x03, 0x49, 0x52, 0x97, 0x43, 0x3f, 0xb6, 0x01, 0x4c, 0xd0,
        0xae,
    ];
    /// VLEK: a8074bc2-a25a-483e-aae6-39c045a0b8a1.
    pub const VLEK: [u8; 16] = [
        0xa8, 0x07, 0x4b, 0xc2, 0xa2, 0x5a, 0x48, 0x3e, 0xaa, 0xe6, 0x39, 0xc0, 0x45, 0xa0, 0xb8,
        0xa1,
    ];
}

const ENTRY_LEN: usize = 24;
const MAX_ENTRIES: usize = 64;
const MAX_ATTEMPTS: u32 = 3;

/// One entry of the SNP certificate table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertTableEntry {
    /// The entry's GUID (RFC 4122 byte order).
    pub guid: [u8; 16],
    /// The certificate bytes the entry points at.
    pub data: Vec<u8>,
}

/// Parse an SNP certificate table (the configfs-tsm `auxblob` of `sev_guest`).
///
/// Layout: a sequence of 24-byte entries `{ guid: [u8; 16], offset: u32 LE, length: u32 LE }`
/// terminated by an all-zero entry; `offset` is from the start of the table. Rejects a
/// missing terminator, entries pointing outside the blob, empty or duplicate entries and
/// more than 64 entries.
pub fn parse_cert_table(aux: &[u8]) -> Result<Vec<CertTableEntry>, AttesterError> {
    let bad = |m: String| AttesterError::CertTableMalformed(m);
    let mut out: Vec<CertTableEntry> = Vec::new();
    for i in 0..=MAX_ENTRIES {
        let start = i * ENTRY_LEN;
        let raw = aux
            .get(start..start + ENTRY_LEN)
            .ok_or_else(|| bad(format!("table truncated at entry {i} (no terminator)")))?;
        if raw.iter().all(|&b| b == 0) {
            return Ok(out);
        }
        if i == MAX_ENTRIES {
            break;
        }
        let mut guid = [0u8; 16];
        guid.copy_from_slice(&raw[..16]);
        let offset = u32::from_le_bytes([raw[16], raw[17], raw[18], raw[19]]) as usize;
        let length = u32::from_le_bytes([raw[20], raw[21], raw[22], raw[23]]) as usize;
        if length == 0 {
            return Err(bad(format!("entry {i} is empty")));
        }
        let data = offset
            .checked_add(length)
            .and_then(|end| aux.get(offset..end))
            .ok_or_else(|| {
                bad(format!(
                    "entry {i} ({offset}+{length}) outside the {}-byte table",
                    aux.len()
                ))
            })?;
        if out.iter().any(|e| e.guid == guid) {
            return Err(bad(format!("duplicate GUID in entry {i}")));
        }
        out.push(CertTableEntry {
            guid,
            data: data.to_vec(),
        });
    }
    Err(bad(format!("more than {MAX_ENTRIES} entries")))
}

/// The AMD certificates found in a certificate table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnpCerts {
    /// VCEK certificate (DER).
    pub vcek: Option<Vec<u8>>,
    /// VLEK certificate (DER).
    pub vlek: Option<Vec<u8>>,
    /// ASK certificate (DER).
    pub ask: Option<Vec<u8>>,
    /// ARK certificate (DER).
    pub ark: Option<Vec<u8>>,
}

impl SnpCerts {
    /// Pick the AMD certificates out of a certificate table; unknown GUIDs are ignored.
    pub fn from_cert_table(aux: &[u8]) -> Result<Self, AttesterError> {
        let mut certs = SnpCerts::default();
        for e in parse_cert_table(aux)? {
            let slot = match e.guid {
                guids::VCEK => &mut certs.vcek,
                guids::VLEK => &mut certs.vlek,
                guids::ASK => &mut certs.ask,
                guids::ARK => &mut certs.ark,
                _ => continue,
            };
            *slot = Some(e.data);
        }
        Ok(certs)
    }
}

/// The raw result of one configfs-tsm report request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsmReport {
    /// The provider (`sev_guest`, `tdx_guest`, ...).
    pub provider: String,
    /// The report or quote.
    pub outblob: Vec<u8>,
    /// Auxiliary data (SNP certificate table), empty if none.
    pub auxblob: Vec<u8>,
    /// The entry's generation when read.
    pub generation: u64,
}

impl TsmReport {
    /// Turn the raw result into an evidence bundle, with only what the entry provided (no
    /// certificate cache, no TDX collateral: see [`ConfigFsTsm::bundle`]).
    ///
    /// `sev_guest`: the outblob must be a 1184-byte report; the VCEK (or VLEK) is required
    /// from the certificate table, ASK and ARK are included when present. `tdx_guest`: the
    /// quote is carried as is (its certificates are inside it).
    pub fn into_bundle(self) -> Result<EvidenceBundle, AttesterError> {
        match self.provider.as_str() {
            "sev_guest" => {
                snp::parse(&self.outblob)
                    .map_err(|e| AttesterError::InvalidReport(e.to_string()))?;
                if self.auxblob.is_empty() {
                    return Err(AttesterError::CertMissing("VCEK/VLEK"));
                }
                let certs = SnpCerts::from_cert_table(&self.auxblob)?;
                let vcek = certs
                    .vcek
                    .or(certs.vlek)
                    .ok_or(AttesterError::CertMissing("VCEK/VLEK"))?;
                Ok(EvidenceBundle {
                    platform: Platform::SevSnp,
                    report: self.outblob,
                    vcek,
                    ask: certs.ask,
                    ark: certs.ark,
                    extras: Vec::new(),
                })
            }
            "tdx_guest" => {
                if self.outblob.is_empty() {
                    return Err(AttesterError::InvalidReport("empty TDX quote".into()));
                }
                Ok(EvidenceBundle {
                    platform: Platform::Tdx,
                    report: self.outblob,
                    vcek: Vec::new(),
                    ask: None,
                    ark: None,
                    extras: Vec::new(),
                })
            }
            other => Err(AttesterError::UnknownProvider(other.to_string())),
        }
    }
}

/// Evidence from real hardware via Linux configfs-tsm.
///
/// Each request creates a fresh entry directory under the root, writes REPORT_DATA to
/// `inblob` (and `privlevel` if configured), checks `generation` equals the number of
/// writes it made, reads `outblob`, `provider` and `auxblob`, re-reads `generation` to
/// detect a concurrent writer (retrying up to three times), and removes the entry.
///
/// SEV-SNP certificates come from the host's certificate table (`auxblob`); certificates
/// it lacks are taken from an operator-provided cache ([`with_snp_certs`](Self::with_snp_certs)).
/// TDX bundles carry Intel collateral from a file or a PCCS
/// ([`with_tdx_collateral`](Self::with_tdx_collateral)); without one a TDX quote is an error
/// (`TDX_COLLATERAL_MISSING`), since clients cannot verify it.
pub struct ConfigFsTsm {
    root: PathBuf,
    privlevel: Option<u8>,
    last_platform: AtomicU8,
    counter: AtomicU64,
    fs: Arc<dyn TsmFs>,
    snp_certs: Option<SnpCerts>,
    /// AMD's CRL (DER) shipped in SNP bundles, if the operator supplied one.
    snp_crl: Option<Vec<u8>>,
    collateral: Option<Provider>,
    refresh: RefreshPolicy,
    clock: Clock,
    /// Root CA CRL location when the PCCS has none (Intel's; tests point it elsewhere).
    root_crl_url: String,
}

impl std::fmt::Debug for ConfigFsTsm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigFsTsm")
            .field("root", &self.root)
            .field("privlevel", &self.privlevel)
            .field("snp_certs", &self.snp_certs.is_some())
            .field("snp_crl", &self.snp_crl.is_some())
            .field("collateral", &self.collateral)
            .field("refresh", &self.refresh)
            .finish_non_exhaustive()
    }
}

/// Removes the entry directory however the request ends.
struct EntryGuard<'a>(&'a dyn TsmFs, PathBuf);

impl Drop for EntryGuard<'_> {
    fn drop(&mut self) {
        // configfs removes the attribute files with the directory.
        let _ = self.0.remove_dir(&self.1);
    }
}

fn read_generation(fs: &dyn TsmFs, entry: &Path) -> Result<u64, AttesterError> {
    let path = entry.join("generation");
    let bytes = fs
        .read(&path)
        .map_err(|e| AttesterError::io(format!("reading {}", path.display()), e))?;
    let s = String::from_utf8_lossy(&bytes);
    s.trim()
        .parse()
        .map_err(|_| AttesterError::TsmUnavailable(format!("bad generation {:?}", s.trim())))
}

/// Run one request in an existing entry directory (what the kernel created on mkdir).
pub(crate) fn request_in_entry(
    fs: &dyn TsmFs,
    entry: &Path,
    report_data: &[u8; 64],
    privlevel: Option<u8>,
) -> Result<TsmReport, AttesterError> {
    let write = |name: &str, bytes: &[u8]| {
        let path = entry.join(name);
        fs.write(&path, bytes)
            .map_err(|e| AttesterError::io(format!("writing {}", path.display()), e))
    };
    let mut writes = 0u64;
    if let Some(level) = privlevel {
        write("privlevel", format!("{level}\n").as_bytes())?;
        writes += 1;
    }
    write("inblob", report_data)?;
    writes += 1;

    let before = read_generation(fs, entry)?;
    if before != writes {
        return Err(AttesterError::TsmRace {
            expected: writes,
            found: before,
        });
    }
    let outblob_path = entry.join("outblob");
    let outblob = fs
        .read(&outblob_path)
        .map_err(|e| AttesterError::io(format!("reading {}", outblob_path.display()), e))?;
    if outblob.is_empty() {
        return Err(AttesterError::InvalidReport("empty outblob".into()));
    }
    let provider_path = entry.join("provider");
    let provider = fs
        .read(&provider_path)
        .map_err(|e| AttesterError::io(format!("reading {}", provider_path.display()), e))?;
    let provider = String::from_utf8_lossy(&provider).trim().to_string();
    let auxblob_path = entry.join("auxblob");
    let auxblob = match fs.read(&auxblob_path) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(AttesterError::io(
                format!("reading {}", auxblob_path.display()),
                e,
            ));
        }
    };
    let after = read_generation(fs, entry)?;
    if after != before {
        return Err(AttesterError::TsmRace {
            expected: before,
            found: after,
        });
    }
    Ok(TsmReport {
        provider,
        outblob,
        auxblob,
        generation: after,
    })
}

impl ConfigFsTsm {
    /// The kernel's default report root.
    pub const DEFAULT_ROOT: &'static str = "/sys/kernel/config/tsm/report";

    /// A backend using report entries under `root` (normally [`Self::DEFAULT_ROOT`]).
    /// Does no I/O.
    pub fn new(root: PathBuf) -> Self {
        ConfigFsTsm {
            root,
            privlevel: None,
            last_platform: AtomicU8::new(Platform::SevSnp as u8),
            counter: AtomicU64::new(0),
            fs: Arc::new(StdFs),
            snp_certs: None,
            snp_crl: None,
            collateral: None,
            refresh: RefreshPolicy::default(),
            clock: collateral::system_clock(),
            root_crl_url: collateral::INTEL_ROOT_CA_CRL_URL.to_string(),
        }
    }

    /// Use another filesystem implementation (tests: a fake kernel). Not a stable API.
    #[doc(hidden)]
    pub fn with_fs(mut self, fs: Arc<dyn TsmFs>) -> Self {
        self.fs = fs;
        self
    }

    #[cfg(test)]
    pub(crate) fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    #[cfg(test)]
    pub(crate) fn with_root_crl_url(mut self, url: &str) -> Self {
        self.root_crl_url = url.to_string();
        self
    }

    /// SEV-SNP certificates to use when the host's certificate table lacks them: each of
    /// VCEK/VLEK, ASK and ARK comes from the `auxblob` when present there, else from
    /// `source`. A file is read and checked now (`SNP_CERTS_INVALID`).
    pub fn with_snp_certs(mut self, source: CertSource) -> Result<Self, AttesterError> {
        self.snp_certs = Some(source.load()?);
        Ok(self)
    }

    /// Ship AMD's CRL for this processor generation (from the KDS, e.g.
    /// `https://kdsintf.amd.com/vcek/v1/Genoa/crl`; DER or PEM) in SNP bundles (extra tag
    /// [`tags::AMD_CRL`]), so clients that require one (`--require-crl`) can check that
    /// AMD has not revoked the ASK/ASVK. Read and checked to be a CRL now
    /// (`SNP_CRL_INVALID`); its signature and dates are the client's to verify.
    pub fn with_snp_crl(mut self, path: &std::path::Path) -> Result<Self, AttesterError> {
        let invalid = |reason: String| AttesterError::SnpCrlInvalid {
            path: path.display().to_string(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| invalid(e.to_string()))?;
        let der = sotto_attest::amd::crl_der_from_der_or_pem(&bytes)
            .map_err(|e| invalid(e.to_string()))?;
        self.snp_crl = Some(der);
        Ok(self)
    }

    /// How TDX collateral is refreshed; call before
    /// [`with_tdx_collateral`](Self::with_tdx_collateral).
    pub fn with_refresh_policy(mut self, policy: RefreshPolicy) -> Self {
        self.refresh = policy;
        self
    }

    /// Ship Intel TDX collateral from `source` in TDX bundles (extra tag
    /// [`tags::TDX_COLLATERAL`]).
    ///
    /// - [`CollateralSource::File`] is read and validated now (`IO_ERROR`,
    ///   `TDX_COLLATERAL_INVALID`), re-read when the file changes or its earliest
    ///   `nextUpdate` is within [`RefreshPolicy::margin`]. A collateral whose FMSPC differs
    ///   from the quote's is refused (`TDX_COLLATERAL_MISMATCH`).
    /// - [`CollateralSource::Pccs`] / [`CollateralSource::PccsWithCa`]: an `http://` or
    ///   `https://` base URL (`PCCS_URL_UNSUPPORTED` otherwise); the extra CA file, for
    ///   https only, is read now (`PCCS_CA_INVALID`). The scheme and trust anchors are
    ///   logged. A background thread fetches the collateral for the quote's FMSPC on the
    ///   first TDX request (call [`prepare`](Self::prepare) at start) and refreshes it
    ///   [`RefreshPolicy::margin`] before it expires. Fetch failures: `PCCS_UNREACHABLE`,
    ///   `PCCS_TLS_ERROR` (the server's certificate was not accepted; the message says
    ///   why), `PCCS_ERROR`, `TDX_COLLATERAL_INVALID`; once collateral is held, a failed
    ///   refresh keeps serving it (retried every [`RefreshPolicy::retry`]).
    pub fn with_tdx_collateral(mut self, source: CollateralSource) -> Result<Self, AttesterError> {
        self.collateral = Some(Provider::start(
            source,
            self.refresh,
            self.clock.clone(),
            &self.root_crl_url,
        )?);
        Ok(self)
    }

    /// Produce one piece of evidence (zero REPORT_DATA) to check the whole path at start:
    /// configfs-tsm works, certificates are present, TDX collateral is available (with a
    /// PCCS, this is the initial fetch). Returns the platform.
    pub fn prepare(&self) -> Result<Platform, AttesterError> {
        Ok(self.evidence(&[0; 64])?.platform)
    }

    /// Turn a raw report into a bundle with this backend's certificate cache and collateral.
    pub fn bundle(&self, report: TsmReport) -> Result<EvidenceBundle, AttesterError> {
        match report.provider.as_str() {
            "sev_guest" => {
                snp::parse(&report.outblob)
                    .map_err(|e| AttesterError::InvalidReport(e.to_string()))?;
                let aux = if report.auxblob.is_empty() {
                    SnpCerts::default()
                } else {
                    SnpCerts::from_cert_table(&report.auxblob)?
                };
                let cache = self.snp_certs.clone().unwrap_or_default();
                // The endorsement key: the host's VCEK/VLEK wins; the cache fills in.
                let vcek = aux
                    .vcek
                    .or(aux.vlek)
                    .or(cache.vcek)
                    .or(cache.vlek)
                    .ok_or(AttesterError::CertMissing("VCEK/VLEK"))?;
                let extras = match &self.snp_crl {
                    Some(crl) => vec![Extra {
                        tag: tags::AMD_CRL,
                        value: crl.clone(),
                    }],
                    None => Vec::new(),
                };
                Ok(EvidenceBundle {
                    platform: Platform::SevSnp,
                    report: report.outblob,
                    vcek,
                    ask: aux.ask.or(cache.ask),
                    ark: aux.ark.or(cache.ark),
                    extras,
                })
            }
            "tdx_guest" => {
                let provider = self
                    .collateral
                    .as_ref()
                    .ok_or(AttesterError::CollateralMissing)?;
                if report.outblob.is_empty() {
                    return Err(AttesterError::InvalidReport("empty TDX quote".into()));
                }
                let collateral = provider.get(&report.outblob)?;
                let mut bundle = report.into_bundle()?;
                bundle.extras.push(Extra {
                    tag: tags::TDX_COLLATERAL,
                    value: collateral.json.clone(),
                });
                Ok(bundle)
            }
            _ => report.into_bundle(),
        }
    }

    #[cfg(test)]
    pub(crate) fn collateral_loads(&self) -> u64 {
        self.collateral.as_ref().map_or(0, Provider::loads)
    }

    /// Request reports at this privilege level (SNP VMPL, 0..=3) by writing `privlevel`.
    pub fn with_privlevel(mut self, level: u8) -> Self {
        self.privlevel = Some(level);
        self
    }

    /// Request a raw report binding `report_data`.
    pub fn request(&self, report_data: &[u8; 64]) -> Result<TsmReport, AttesterError> {
        let mut last_err = None;
        for _ in 0..MAX_ATTEMPTS {
            let mut rnd = [0u8; 8];
            OsRng.fill_bytes(&mut rnd);
            let name = format!(
                "sotto-{}-{}-{}",
                std::process::id(),
                self.counter.fetch_add(1, Ordering::Relaxed),
                hex::encode(rnd)
            );
            let entry = self.root.join(name);
            match self.fs.create_dir(&entry) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(AttesterError::TsmUnavailable(format!(
                        "cannot create an entry under {}: {e}",
                        self.root.display()
                    )));
                }
            }
            let _guard = EntryGuard(&*self.fs, entry.clone());
            match request_in_entry(&*self.fs, &entry, report_data, self.privlevel) {
                Err(e @ AttesterError::TsmRace { .. }) => last_err = Some(e),
                other => return other,
            }
        }
        Err(last_err.unwrap_or_else(|| {
            AttesterError::TsmUnavailable("could not create a fresh report entry".into())
        }))
    }
}

impl Default for ConfigFsTsm {
    fn default() -> Self {
        Self::new(PathBuf::from(Self::DEFAULT_ROOT))
    }
}

impl Attester for ConfigFsTsm {
    /// The platform of the last successful request (SEV-SNP before the first one).
    fn platform(&self) -> Platform {
        Platform::from_u8(self.last_platform.load(Ordering::Relaxed)).unwrap_or(Platform::SevSnp)
    }

    fn evidence(&self, report_data: &[u8; 64]) -> Result<EvidenceBundle, AttesterError> {
        let bundle = self.bundle(self.request(report_data)?)?;
        self.last_platform
            .store(bundle.platform as u8, Ordering::Relaxed);
        Ok(bundle)
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod fake_tests;
