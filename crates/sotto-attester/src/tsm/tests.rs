//! configfs-tsm against a fake configfs: the test plays the kernel by writing the
//! attribute files an entry would expose.

use std::fs;
use std::path::Path;

use super::*;

const SNP_DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/attestation/snp"
);

fn real_report() -> Vec<u8> {
    fs::read(format!("{SNP_DIR}/genoa-msft.report.bin")).unwrap()
}

fn real_vcek() -> Vec<u8> {
    fs::read(format!("{SNP_DIR}/genoa-msft.vcek.der")).unwrap()
}

/// A certificate table as the host passes it: entries, terminator, then the data.
fn cert_table(entries: &[([u8; 16], &[u8])]) -> Vec<u8> {
    let header = (entries.len() + 1) * ENTRY_LEN;
    let mut table = Vec::new();
    let mut data = Vec::new();
    for (guid, bytes) in entries {
        table.extend_from_slice(guid);
        table.extend_from_slice(&((header + data.len()) as u32).to_le_bytes());
        table.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        data.extend_from_slice(bytes);
    }
    table.extend_from_slice(&[0u8; ENTRY_LEN]);
    table.extend_from_slice(&data);
    table
}

struct FakeEntry<'a> {
    provider: &'a str,
    generation: Option<&'a str>,
    outblob: Vec<u8>,
    auxblob: Option<Vec<u8>>,
}

impl FakeEntry<'_> {
    fn snp(auxblob: Vec<u8>) -> Self {
        FakeEntry {
            provider: "sev_guest\n",
            generation: Some("1\n"),
            outblob: real_report(),
            auxblob: Some(auxblob),
        }
    }

    fn write(&self, entry: &Path) {
        fs::create_dir_all(entry).unwrap();
        fs::write(entry.join("provider"), self.provider).unwrap();
        if let Some(g) = self.generation {
            fs::write(entry.join("generation"), g).unwrap();
        }
        fs::write(entry.join("outblob"), &self.outblob).unwrap();
        if let Some(a) = &self.auxblob {
            fs::write(entry.join("auxblob"), a).unwrap();
        }
    }
}

fn full_table() -> Vec<u8> {
    cert_table(&[
        (guids::ARK, b"ark-der"),
        (guids::VCEK, &real_vcek()),
        (guids::ASK, b"ask-der"),
    ])
}

fn run(fake: &FakeEntry<'_>, privlevel: Option<u8>) -> Result<TsmReport, AttesterError> {
    let dir = tempfile::tempdir().unwrap();
    let entry = dir.path().join("entry");
    fake.write(&entry);
    let r = request_in_entry(&StdFs, &entry, &[0x5A; 64], privlevel);
    if r.is_ok() {
        assert_eq!(fs::read(entry.join("inblob")).unwrap(), [0x5A; 64]);
    }
    r
}

#[test]
fn snp_request_produces_a_bundle() {
    let report = run(&FakeEntry::snp(full_table()), None).unwrap();
    assert_eq!(report.provider, "sev_guest");
    assert_eq!(report.generation, 1);
    let bundle = report.into_bundle().unwrap();
    assert_eq!(bundle.platform, Platform::SevSnp);
    assert_eq!(bundle.report, real_report());
    assert_eq!(bundle.vcek, real_vcek());
    assert_eq!(bundle.ask.as_deref(), Some(&b"ask-der"[..]));
    assert_eq!(bundle.ark.as_deref(), Some(&b"ark-der"[..]));
    // It survives the wire encoding.
    assert_eq!(EvidenceBundle::decode(&bundle.encode()).unwrap(), bundle);
}

#[test]
fn privlevel_is_written_and_counted() {
    let mut fake = FakeEntry::snp(full_table());
    fake.generation = Some("2");
    let dir = tempfile::tempdir().unwrap();
    let entry = dir.path().join("e");
    fake.write(&entry);
    request_in_entry(&StdFs, &entry, &[0; 64], Some(2)).unwrap();
    assert_eq!(fs::read_to_string(entry.join("privlevel")).unwrap(), "2\n");
    // Without the privlevel write the same generation means someone else wrote.
    let err = run(&fake, None).unwrap_err();
    assert_eq!(err.code(), "TSM_GENERATION_RACE");
}

#[test]
fn concurrent_writer_is_detected() {
    let mut fake = FakeEntry::snp(full_table());
    fake.generation = Some("3");
    let err = run(&fake, None).unwrap_err();
    assert!(
        matches!(
            err,
            AttesterError::TsmRace {
                expected: 1,
                found: 3
            }
        ),
        "{err}"
    );
}

#[test]
fn bad_or_missing_generation() {
    let mut fake = FakeEntry::snp(full_table());
    fake.generation = None;
    assert_eq!(run(&fake, None).unwrap_err().code(), "IO_ERROR");
    fake.generation = Some("one");
    assert_eq!(run(&fake, None).unwrap_err().code(), "TSM_UNAVAILABLE");
}

#[test]
fn bad_outblob_and_provider() {
    let mut fake = FakeEntry::snp(full_table());
    fake.outblob = Vec::new();
    assert_eq!(run(&fake, None).unwrap_err().code(), "INVALID_REPORT");

    let mut fake = FakeEntry::snp(full_table());
    fake.outblob.truncate(100);
    let err = run(&fake, None).unwrap().into_bundle().unwrap_err();
    assert_eq!(err.code(), "INVALID_REPORT");

    let mut fake = FakeEntry::snp(full_table());
    fake.provider = "arm_cca_guest";
    let err = run(&fake, None).unwrap().into_bundle().unwrap_err();
    assert_eq!(err.code(), "TSM_UNKNOWN_PROVIDER");
}

#[test]
fn tdx_quote_is_carried_as_is() {
    let fake = FakeEntry {
        provider: "tdx_guest\n",
        generation: Some("1"),
        outblob: vec![4, 0, 2, 0, 0x81, 0, 0, 0],
        auxblob: None,
    };
    let bundle = run(&fake, None).unwrap().into_bundle().unwrap();
    assert_eq!(bundle.platform, Platform::Tdx);
    assert_eq!(bundle.report, fake.outblob);
    assert!(bundle.vcek.is_empty() && bundle.ask.is_none() && bundle.ark.is_none());
}

#[test]
fn missing_certificates() {
    // No auxblob file at all, an empty one, and a table without a VCEK.
    let mut fake = FakeEntry::snp(Vec::new());
    fake.auxblob = None;
    let err = run(&fake, None).unwrap().into_bundle().unwrap_err();
    assert_eq!(err.code(), "CERT_MISSING");
    let fake = FakeEntry::snp(Vec::new());
    let err = run(&fake, None).unwrap().into_bundle().unwrap_err();
    assert_eq!(err.code(), "CERT_MISSING");
    let fake = FakeEntry::snp(cert_table(&[(guids::ASK, b"a"), (guids::ARK, b"b")]));
    let err = run(&fake, None).unwrap().into_bundle().unwrap_err();
    assert_eq!(err.code(), "CERT_MISSING");
}

#[test]
fn vlek_is_used_when_there_is_no_vcek() {
    let fake = FakeEntry::snp(cert_table(&[(guids::VLEK, b"vlek"), ([7; 16], b"other")]));
    let bundle = run(&fake, None).unwrap().into_bundle().unwrap();
    assert_eq!(bundle.vcek, b"vlek");
    assert_eq!(bundle.ask, None);
}

#[test]
fn cert_table_parses_entries_in_order() {
    let t = cert_table(&[(guids::VCEK, b"v"), ([9; 16], b"xyz")]);
    let entries = parse_cert_table(&t).unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].guid, guids::VCEK);
    assert_eq!(entries[0].data, b"v");
    assert_eq!(entries[1].data, b"xyz");
    // Just a terminator: valid, empty.
    assert!(parse_cert_table(&[0; ENTRY_LEN]).unwrap().is_empty());
}

#[test]
fn truncated_and_garbage_cert_tables_are_rejected() {
    let good = full_table();
    let malformed = |aux: &[u8]| {
        let err = parse_cert_table(aux).unwrap_err();
        assert_eq!(err.code(), "CERT_TABLE_MALFORMED", "{err}");
        let fake = FakeEntry::snp(aux.to_vec());
        let err = run(&fake, None).unwrap().into_bundle().unwrap_err();
        assert_eq!(err.code(), "CERT_TABLE_MALFORMED", "{err}");
    };
    // Cut inside the entries (no terminator) and inside the data.
    malformed(&good[..10]);
    malformed(&good[..ENTRY_LEN * 2]);
    malformed(&good[..good.len() - 1]);
    // Garbage: a non-zero entry pointing far outside the blob.
    malformed(&[0xFF; 100]);
    // Offset + length overflows.
    let mut t = cert_table(&[(guids::VCEK, b"v")]);
    t[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
    malformed(&t);
    // Zero-length entry.
    let mut t = cert_table(&[(guids::VCEK, b"v")]);
    t[20..24].copy_from_slice(&0u32.to_le_bytes());
    malformed(&t);
    // Duplicate GUID.
    malformed(&cert_table(&[(guids::VCEK, b"v"), (guids::VCEK, b"w")]));
    // Too many entries.
    let many: Vec<([u8; 16], &[u8])> = (0..=MAX_ENTRIES as u8)
        .map(|i| ([i.wrapping_add(1); 16], &b"x"[..]))
        .collect();
    malformed(&cert_table(&many));
}

#[test]
fn request_fails_cleanly_without_configfs() {
    let dir = tempfile::tempdir().unwrap();
    let tsm = ConfigFsTsm::new(dir.path().join("does-not-exist"));
    let err = tsm.evidence(&[0; 64]).unwrap_err();
    assert_eq!(err.code(), "TSM_UNAVAILABLE");
    assert_eq!(tsm.platform(), Platform::SevSnp);

    // A plain empty directory is not configfs: the entry gets no generation attribute.
    let tsm = ConfigFsTsm::new(dir.path().to_path_buf()).with_privlevel(0);
    let err = tsm.evidence(&[0; 64]).unwrap_err();
    assert_eq!(err.code(), "IO_ERROR");
}
