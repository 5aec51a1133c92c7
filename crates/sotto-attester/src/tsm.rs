//! Linux configfs-tsm (`Documentation/ABI/testing/configfs-tsm`) report backend.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use rsa::rand_core::{OsRng, RngCore};
use sotto_attest::snp;
use sotto_attest::{EvidenceBundle, Platform};

use crate::{Attester, AttesterError};

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
    /// Turn the raw result into an evidence bundle.
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
#[derive(Debug)]
pub struct ConfigFsTsm {
    root: PathBuf,
    privlevel: Option<u8>,
    last_platform: AtomicU8,
    counter: AtomicU64,
}

/// Removes the entry directory however the request ends.
struct EntryGuard(PathBuf);

impl Drop for EntryGuard {
    fn drop(&mut self) {
        // configfs removes the attribute files with the directory.
        let _ = fs::remove_dir(&self.0);
    }
}

fn read_generation(entry: &Path) -> Result<u64, AttesterError> {
    let path = entry.join("generation");
    let s = fs::read_to_string(&path)
        .map_err(|e| AttesterError::io(format!("reading {}", path.display()), e))?;
    s.trim()
        .parse()
        .map_err(|_| AttesterError::TsmUnavailable(format!("bad generation {:?}", s.trim())))
}

/// Run one request in an existing entry directory (what the kernel created on mkdir).
pub(crate) fn request_in_entry(
    entry: &Path,
    report_data: &[u8; 64],
    privlevel: Option<u8>,
) -> Result<TsmReport, AttesterError> {
    let write = |name: &str, bytes: &[u8]| {
        let path = entry.join(name);
        fs::write(&path, bytes)
            .map_err(|e| AttesterError::io(format!("writing {}", path.display()), e))
    };
    let mut writes = 0u64;
    if let Some(level) = privlevel {
        write("privlevel", format!("{level}\n").as_bytes())?;
        writes += 1;
    }
    write("inblob", report_data)?;
    writes += 1;

    let before = read_generation(entry)?;
    if before != writes {
        return Err(AttesterError::TsmRace {
            expected: writes,
            found: before,
        });
    }
    let outblob_path = entry.join("outblob");
    let outblob = fs::read(&outblob_path)
        .map_err(|e| AttesterError::io(format!("reading {}", outblob_path.display()), e))?;
    if outblob.is_empty() {
        return Err(AttesterError::InvalidReport("empty outblob".into()));
    }
    let provider_path = entry.join("provider");
    let provider = fs::read_to_string(&provider_path)
        .map_err(|e| AttesterError::io(format!("reading {}", provider_path.display()), e))?
        .trim()
        .to_string();
    let auxblob_path = entry.join("auxblob");
    let auxblob = match fs::read(&auxblob_path) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(AttesterError::io(
                format!("reading {}", auxblob_path.display()),
                e,
            ));
        }
    };
    let after = read_generation(entry)?;
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
        }
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
            match fs::create_dir(&entry) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(AttesterError::TsmUnavailable(format!(
                        "cannot create an entry under {}: {e}",
                        self.root.display()
                    )));
                }
            }
            let _guard = EntryGuard(entry.clone());
            match request_in_entry(&entry, report_data, self.privlevel) {
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
        let bundle = self.request(report_data)?.into_bundle()?;
        self.last_platform
            .store(bundle.platform as u8, Ordering::Relaxed);
        Ok(bundle)
    }
}

#[cfg(test)]
mod tests;
