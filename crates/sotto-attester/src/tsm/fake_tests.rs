//! The full configfs-tsm path (`ConfigFsTsm::request` / `Attester::evidence`) against a fake
//! kernel: attribute files appear on mkdir, `inblob` writes bump `generation` and produce
//! `outblob`/`auxblob`, rmdir takes the files with it. Real SEV-SNP and TDX evidence from
//! `../shared/attestation` is read in place.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Mutex;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use sotto_attest::{Policy, TrustRoots};

use super::collateral::parse_json;
use super::*;

const SHARED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/attestation");
/// v4-dcapqvl collateral is valid here (README: verify at 2025-07-01T12:00Z).
const TDX_NOW: u64 = 1_751_371_200;
/// The genoa-msft VCEK is valid here (as in sotto-attest's real_snp tests).
const SNP_NOW: u64 = 1_772_366_400;

fn shared(rel: &str) -> Vec<u8> {
    std::fs::read(format!("{SHARED}/{rel}")).unwrap()
}

fn snp_report() -> Vec<u8> {
    shared("snp/genoa-msft.report.bin")
}
fn vcek() -> Vec<u8> {
    shared("snp/genoa-msft.vcek.der")
}
/// (ASK, ARK) DER from genoa.ask_ark.pem (ASK first in the file).
fn ask_ark() -> (Vec<u8>, Vec<u8>) {
    let chain = x509_cert::Certificate::load_pem_chain(&shared("snp/genoa.ask_ark.pem")).unwrap();
    use der::Encode;
    (chain[0].to_der().unwrap(), chain[1].to_der().unwrap())
}
fn tdx_quote() -> Vec<u8> {
    shared("tdx/v4-dcapqvl.quote.bin")
}
fn v4_collateral() -> Vec<u8> {
    shared("tdx/v4-dcapqvl.collateral.json")
}

fn pem(der: &[u8]) -> String {
    der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, der).unwrap()
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

fn real_table() -> Vec<u8> {
    let (ask, ark) = ask_ark();
    cert_table(&[
        (guids::VCEK, &vcek()),
        (guids::ASK, &ask),
        (guids::ARK, &ark),
    ])
}

/// Plays the kernel's configfs-tsm over a real temporary directory.
#[derive(Debug)]
struct FakeKernel {
    root: tempfile::TempDir,
    provider: &'static str,
    outblob: Vec<u8>,
    auxblob: Option<Vec<u8>>,
    /// This many `inblob` writes bump `generation` twice (a concurrent writer).
    racy_writes: AtomicU32,
    /// Every `inblob` ever written.
    inblobs: Mutex<Vec<Vec<u8>>>,
    mkdirs: AtomicU32,
}

impl FakeKernel {
    fn new(provider: &'static str, outblob: Vec<u8>, auxblob: Option<Vec<u8>>) -> Arc<Self> {
        Arc::new(FakeKernel {
            root: tempfile::tempdir().unwrap(),
            provider,
            outblob,
            auxblob,
            racy_writes: AtomicU32::new(0),
            inblobs: Mutex::new(Vec::new()),
            mkdirs: AtomicU32::new(0),
        })
    }
    fn snp() -> Arc<Self> {
        Self::new("sev_guest", snp_report(), Some(real_table()))
    }
    fn tdx() -> Arc<Self> {
        Self::new("tdx_guest", tdx_quote(), None)
    }
    fn tsm(self: &Arc<Self>) -> ConfigFsTsm {
        ConfigFsTsm::new(self.root.path().to_path_buf()).with_fs(self.clone())
    }
    fn entries_left(&self) -> usize {
        std::fs::read_dir(self.root.path()).unwrap().count()
    }
    fn bump(entry: &Path, by: u64) -> std::io::Result<()> {
        let g = entry.join("generation");
        let n: u64 = std::fs::read_to_string(&g)?.trim().parse().unwrap();
        std::fs::write(g, format!("{}\n", n + by))
    }
}

impl TsmFs for FakeKernel {
    fn create_dir(&self, path: &Path) -> std::io::Result<()> {
        std::fs::create_dir(path)?;
        self.mkdirs.fetch_add(1, Ordering::SeqCst);
        std::fs::write(path.join("provider"), format!("{}\n", self.provider))?;
        std::fs::write(path.join("generation"), "0\n")
    }
    fn write(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let name = path.file_name().unwrap().to_str().unwrap();
        let entry = path.parent().unwrap();
        match name {
            "privlevel" => {
                std::fs::write(path, bytes)?;
                Self::bump(entry, 1)
            }
            "inblob" => {
                std::fs::write(path, bytes)?;
                self.inblobs.lock().unwrap().push(bytes.to_vec());
                let racy = self
                    .racy_writes
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                Self::bump(entry, if racy { 2 } else { 1 })?;
                std::fs::write(entry.join("outblob"), &self.outblob)?;
                if let Some(a) = &self.auxblob {
                    std::fs::write(entry.join("auxblob"), a)?;
                }
                Ok(())
            }
            _ => Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "read-only attribute",
            )),
        }
    }
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        std::fs::read(path)
    }
    fn remove_dir(&self, path: &Path) -> std::io::Result<()> {
        std::fs::remove_dir_all(path)
    }
}

#[test]
fn snp_evidence_end_to_end() {
    let kernel = FakeKernel::snp();
    let tsm = kernel.tsm();
    let rd = [0u8; 64]; // genoa-msft's REPORT_DATA
    let bundle = tsm.evidence(&rd).unwrap();
    assert_eq!(bundle.platform, Platform::SevSnp);
    assert_eq!(tsm.platform(), Platform::SevSnp);
    assert_eq!(bundle.report, snp_report());
    let (ask, ark) = ask_ark();
    assert_eq!(bundle.vcek, vcek());
    assert_eq!(bundle.ask.as_deref(), Some(&ask[..]));
    assert_eq!(bundle.ark.as_deref(), Some(&ark[..]));
    assert!(bundle.extras.is_empty());
    assert_eq!(*kernel.inblobs.lock().unwrap(), vec![rd.to_vec()]);
    assert_eq!(kernel.entries_left(), 0, "entry directory removed");
    // The real evidence, as shipped, verifies against AMD's roots.
    let decoded = EvidenceBundle::decode(&bundle.encode()).unwrap();
    sotto_attest::verify(&decoded, &Policy::new(TrustRoots::default(), rd), SNP_NOW).unwrap();

    // privlevel is one more write: generation 2 is expected, and accepted.
    let tsm = kernel.tsm().with_privlevel(0);
    tsm.evidence(&[7; 64]).unwrap();
    assert_eq!(kernel.entries_left(), 0);
}

#[test]
fn concurrent_writer_race_is_detected_and_retried() {
    // Every attempt races: the request gives up after three, each entry removed.
    let kernel = FakeKernel::snp();
    kernel.racy_writes.store(100, Ordering::SeqCst);
    let err = kernel.tsm().evidence(&[1; 64]).unwrap_err();
    assert_eq!(err.code(), "TSM_GENERATION_RACE", "{err}");
    assert!(matches!(
        err,
        AttesterError::TsmRace {
            expected: 1,
            found: 2
        }
    ));
    assert_eq!(kernel.mkdirs.load(Ordering::SeqCst), MAX_ATTEMPTS);
    assert_eq!(kernel.entries_left(), 0);

    // One racy write: the second attempt, in a fresh entry, succeeds.
    let kernel = FakeKernel::snp();
    kernel.racy_writes.store(1, Ordering::SeqCst);
    let bundle = kernel.tsm().evidence(&[1; 64]).unwrap();
    assert_eq!(bundle.report, snp_report());
    assert_eq!(kernel.mkdirs.load(Ordering::SeqCst), 2);
    assert_eq!(kernel.entries_left(), 0);
}

fn write_tmp(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn snp_cert_cache_fills_in_what_the_auxblob_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let (ask, ark) = ask_ark();
    // Any order: ARK, VCEK, ASK.
    let full = write_tmp(
        dir.path(),
        "certs.pem",
        format!("{}{}{}", pem(&ark), pem(&vcek()), pem(&ask)).as_bytes(),
    );

    // No auxblob at all: everything from the cache.
    let kernel = FakeKernel::new("sev_guest", snp_report(), None);
    assert_eq!(
        kernel.tsm().evidence(&[0; 64]).unwrap_err().code(),
        "CERT_MISSING"
    );
    let tsm = kernel
        .tsm()
        .with_snp_certs(CertSource::File(full.clone()))
        .unwrap();
    let b = tsm.evidence(&[0; 64]).unwrap();
    assert_eq!(
        (b.vcek, b.ask, b.ark),
        (vcek(), Some(ask.clone()), Some(ark.clone()))
    );

    // The host gives only the VCEK: ASK and ARK from the cache.
    let kernel = FakeKernel::new(
        "sev_guest",
        snp_report(),
        Some(cert_table(&[(guids::VCEK, &vcek())])),
    );
    let chain_only = write_tmp(dir.path(), "chain.pem", &shared("snp/genoa.ask_ark.pem"));
    let b = kernel
        .tsm()
        .with_snp_certs(CertSource::File(chain_only))
        .unwrap()
        .evidence(&[0; 64])
        .unwrap();
    assert_eq!(
        (b.vcek, b.ask, b.ark),
        (vcek(), Some(ask.clone()), Some(ark.clone()))
    );
    sotto_attest::verify(
        &EvidenceBundle {
            platform: Platform::SevSnp,
            report: snp_report(),
            vcek: vcek(),
            ask: Some(ask.clone()),
            ark: Some(ark.clone()),
            extras: Vec::new(),
        },
        &Policy::new(TrustRoots::default(), [0; 64]),
        SNP_NOW,
    )
    .unwrap();

    // The auxblob wins where it has a certificate.
    let kernel = FakeKernel::new(
        "sev_guest",
        snp_report(),
        Some(cert_table(&[
            (guids::VCEK, b"host-vcek"),
            (guids::ASK, b"host-ask"),
        ])),
    );
    let b = kernel
        .tsm()
        .with_snp_certs(CertSource::File(full))
        .unwrap()
        .evidence(&[0; 64])
        .unwrap();
    assert_eq!(b.vcek, b"host-vcek");
    assert_eq!(b.ask.as_deref(), Some(&b"host-ask"[..]));
    assert_eq!(b.ark, Some(ark));
}

#[test]
fn bad_snp_cert_cache_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (ask, _) = ask_ark();
    let check = |bytes: &[u8], needle: &str| {
        let p = write_tmp(dir.path(), "bad.pem", bytes);
        let err = ConfigFsTsm::new(dir.path().into())
            .with_snp_certs(CertSource::File(p))
            .unwrap_err();
        assert_eq!(err.code(), "SNP_CERTS_INVALID", "{err}");
        assert!(err.to_string().contains(needle), "{err}");
    };
    check(b"not a certificate", "no certificates");
    check(b"", "no certificates");
    check(&[0xff, 0xfe, 0x30], "not text");
    check(
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        "does not parse",
    );
    check(
        format!("{}{}", pem(&ask), pem(&ask)).as_bytes(),
        "more than one ASK",
    );
    // An Intel certificate (from the TDX collateral's issuer chain) is not an AMD one.
    let c: serde_json::Value = serde_json::from_slice(&v4_collateral()).unwrap();
    check(
        c["tcb_info_issuer_chain"].as_str().unwrap().as_bytes(),
        "unrecognised certificate subject",
    );
    let err = ConfigFsTsm::new(dir.path().into())
        .with_snp_certs(CertSource::File(dir.path().join("missing.pem")))
        .unwrap_err();
    assert_eq!(err.code(), "SNP_CERTS_INVALID", "{err}");
}

fn fixed_clock(t: &Arc<AtomicU64>) -> Clock {
    let t = t.clone();
    Arc::new(move || t.load(Ordering::SeqCst))
}

fn check_tdx_bundle(bundle: &EvidenceBundle) {
    assert_eq!(bundle.platform, Platform::Tdx);
    assert_eq!(bundle.report, tdx_quote());
    assert!(bundle.vcek.is_empty() && bundle.ask.is_none() && bundle.ark.is_none());
    assert_eq!(bundle.extras.len(), 1);
    assert_eq!(bundle.extras[0].tag, tags::TDX_COLLATERAL);
    assert_eq!(
        bundle.extras[0].value,
        parse_json(&v4_collateral()).unwrap().json
    );
    let decoded = EvidenceBundle::decode(&bundle.encode()).unwrap();
    let quote = sotto_attest::tdx::parse_quote(&bundle.report).unwrap();
    let policy = Policy::new(TrustRoots::default(), quote.report.report_data);
    sotto_attest::verify(&decoded, &policy, TDX_NOW).unwrap();
}

#[test]
fn tdx_without_collateral_is_an_error() {
    let kernel = FakeKernel::tdx();
    let err = kernel.tsm().evidence(&[0; 64]).unwrap_err();
    assert_eq!(err.code(), "TDX_COLLATERAL_MISSING");
    assert_eq!(kernel.entries_left(), 0);
}

#[test]
fn tdx_collateral_from_a_file_is_shipped_and_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_tmp(dir.path(), "collateral.json", &v4_collateral());
    let now = Arc::new(AtomicU64::new(TDX_NOW));
    let kernel = FakeKernel::tdx();
    let tsm = kernel
        .tsm()
        .with_clock(fixed_clock(&now))
        .with_refresh_policy(RefreshPolicy {
            margin: Duration::from_secs(3600),
            retry: Duration::from_secs(60),
            fetch_timeout: Duration::from_secs(10),
        })
        .with_tdx_collateral(CollateralSource::File(path.clone()))
        .unwrap();
    assert_eq!(tsm.prepare().unwrap(), Platform::Tdx);
    assert_eq!(tsm.platform(), Platform::Tdx);
    let bundle = tsm.evidence(&[3; 64]).unwrap();
    check_tdx_bundle(&bundle);
    assert_eq!(kernel.entries_left(), 0);
    assert_eq!(
        tsm.collateral_loads(),
        1,
        "unchanged and fresh: not re-read"
    );

    // Changed file (atomically replaced with another platform's collateral): re-read, and
    // refused for this quote.
    let tmp = write_tmp(
        dir.path(),
        "next.json",
        &shared("tdx/v5-gotdxguest.collateral.json"),
    );
    std::fs::rename(&tmp, &path).unwrap();
    let err = tsm.evidence(&[3; 64]).unwrap_err();
    assert_eq!(err.code(), "TDX_COLLATERAL_MISMATCH", "{err}");
    assert_eq!(tsm.collateral_loads(), 2);
    let tmp = write_tmp(dir.path(), "next.json", &v4_collateral());
    std::fs::rename(&tmp, &path).unwrap();
    check_tdx_bundle(&tsm.evidence(&[3; 64]).unwrap());
    assert_eq!(tsm.collateral_loads(), 3);

    // Near the earliest nextUpdate (TCB info, 2025-07-19T10:16:03Z): re-read even though
    // unchanged, at most once per retry interval.
    let expires = parse_json(&v4_collateral()).unwrap().expires;
    now.store(expires - 1800, Ordering::SeqCst);
    tsm.evidence(&[3; 64]).unwrap();
    assert_eq!(tsm.collateral_loads(), 4);
    tsm.evidence(&[3; 64]).unwrap();
    assert_eq!(tsm.collateral_loads(), 4);
    now.store(expires - 1800 + 60, Ordering::SeqCst);
    tsm.evidence(&[3; 64]).unwrap();
    assert_eq!(tsm.collateral_loads(), 5);

    // A broken file: kept the old collateral while it is valid, an error once expired.
    std::fs::write(&path, b"{").unwrap();
    tsm.evidence(&[3; 64]).unwrap();
    now.store(expires + 1, Ordering::SeqCst);
    let err = tsm.evidence(&[3; 64]).unwrap_err();
    assert_eq!(err.code(), "TDX_COLLATERAL_INVALID", "{err}");
}

#[test]
fn bad_collateral_files_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let start = |bytes: &[u8]| {
        let p = write_tmp(dir.path(), "c.json", bytes);
        ConfigFsTsm::new(dir.path().into())
            .with_tdx_collateral(CollateralSource::File(p))
            .unwrap_err()
    };
    assert_eq!(start(b"garbage").code(), "TDX_COLLATERAL_INVALID");
    let mut c: serde_json::Value = serde_json::from_slice(&v4_collateral()).unwrap();
    c["tcb_info"] = "{\"id\":\"SGX\",\"nextUpdate\":\"2025-07-19T10:16:03Z\"}".into();
    let err = start(&serde_json::to_vec(&c).unwrap());
    assert_eq!(err.code(), "TDX_COLLATERAL_INVALID");
    assert!(err.to_string().contains("SGX"), "{err}");
    let err = ConfigFsTsm::new(dir.path().into())
        .with_tdx_collateral(CollateralSource::File(dir.path().join("none.json")))
        .unwrap_err();
    assert_eq!(err.code(), "IO_ERROR");
}

// ---------------------------------------------------------------- a tiny PCCS

fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

struct Pccs {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

/// How the test PCCS behaves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavour {
    /// An Intel PCCS: serves `rootcacrl` (hex).
    Pccs,
    /// Like Intel's PCS: no `rootcacrl` (404); the root CA CRL (DER) is at
    /// `/IntelSGXRootCA.der`, as at Intel's CRL distribution point.
    Pcs,
}

/// The PCCS v4 API's answer to `target` (a full HTTP/1.1 response), from the v4 collateral.
fn pccs_response(target: &str, flavour: Flavour) -> Vec<u8> {
    let c: serde_json::Value = serde_json::from_slice(&v4_collateral()).unwrap();
    let s = move |k: &str| c[k].as_str().unwrap().to_string();
    let not_found = ("404 Not Found", None, b"not found".to_vec());
    let (status, header, body): (&str, Option<(&str, String)>, Vec<u8>) = match target {
        "/sgx/certification/v4/pckcrl?ca=platform&encoding=der" => (
            "200 OK",
            Some(("SGX-PCK-CRL-Issuer-Chain", pct(&s("pck_crl_issuer_chain")))),
            hex::decode(s("pck_crl")).unwrap(),
        ),
        "/tdx/certification/v4/tcb?fmspc=B0C06F000000" => (
            "200 OK",
            Some(("TCB-Info-Issuer-Chain", pct(&s("tcb_info_issuer_chain")))),
            format!(
                "{{\"tcbInfo\":{},\"signature\":\"{}\"}}",
                s("tcb_info"),
                s("tcb_info_signature")
            )
            .into_bytes(),
        ),
        "/tdx/certification/v4/qe/identity" => (
            "200 OK",
            Some((
                "SGX-Enclave-Identity-Issuer-Chain",
                pct(&s("qe_identity_issuer_chain")),
            )),
            format!(
                "{{\"enclaveIdentity\":{},\"signature\":\"{}\"}}",
                s("qe_identity"),
                s("qe_identity_signature")
            )
            .into_bytes(),
        ),
        // PCCS serves the root CA CRL hex-encoded.
        "/sgx/certification/v4/rootcacrl" if flavour == Flavour::Pccs => {
            ("200 OK", None, s("root_ca_crl").into_bytes())
        }
        "/IntelSGXRootCA.der" if flavour == Flavour::Pcs => {
            ("200 OK", None, hex::decode(s("root_ca_crl")).unwrap())
        }
        _ => not_found,
    };
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some((k, v)) = header {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(&body);
    out
}

/// Read one request from `stream`, log its target, answer it.
fn serve_one(stream: &mut (impl Read + Write), log: &Mutex<Vec<String>>, flavour: Flavour) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let req = String::from_utf8_lossy(&buf);
    let target = req.split(' ').nth(1).unwrap_or("").to_string();
    log.lock().unwrap().push(target.clone());
    let _ = stream.write_all(&pccs_response(&target, flavour));
    let _ = stream.flush();
}

/// Serve the PCCS v4 API on 127.0.0.1, one request per connection, over plain TCP or, with
/// `tls`, over TLS (rustls, ring) with that server configuration.
fn start_server(tls: Option<Arc<rustls::ServerConfig>>, flavour: Flavour) -> Pccs {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{}", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let log = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            match &tls {
                None => serve_one(&mut { stream }, &log, flavour),
                Some(cfg) => {
                    let conn = rustls::ServerConnection::new(cfg.clone()).unwrap();
                    // A client that rejects our certificate aborts the handshake: the read
                    // fails and the connection is dropped.
                    serve_one(&mut rustls::StreamOwned::new(conn, stream), &log, flavour);
                }
            }
        }
    });
    Pccs { url, requests }
}

/// Serve the v4 collateral through the PCCS v4 API on 127.0.0.1 over plain HTTP.
fn start_pccs() -> Pccs {
    start_server(None, Flavour::Pccs)
}

/// A test CA and a server certificate it issued for `names`, as rcgen makes them (ECDSA
/// P-256), ready for rustls.
struct TestPki {
    ca_pem: String,
    server: Arc<rustls::ServerConfig>,
}

fn test_pki(names: &[&str]) -> TestPki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name
        .push(DnType::CommonName, "Sotto test PCCS CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate().unwrap();
    let mut leaf =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.distinguished_name
        .push(DnType::CommonName, "test PCCS");
    let cert = leaf.signed_by(&key, &issuer).unwrap();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone(), ca_cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    TestPki {
        ca_pem: ca_cert.pem(),
        server: Arc::new(server),
    }
}

fn pccs_tsm(
    kernel: &Arc<FakeKernel>,
    url: &str,
    now: &Arc<AtomicU64>,
) -> Result<ConfigFsTsm, AttesterError> {
    pccs_source_tsm(kernel, CollateralSource::Pccs(url.to_string()), now)
}

fn pccs_source_tsm(
    kernel: &Arc<FakeKernel>,
    source: CollateralSource,
    now: &Arc<AtomicU64>,
) -> Result<ConfigFsTsm, AttesterError> {
    kernel
        .tsm()
        .with_clock(fixed_clock(now))
        .with_refresh_policy(RefreshPolicy {
            margin: Duration::from_secs(3600),
            retry: Duration::from_secs(1),
            fetch_timeout: Duration::from_secs(20),
        })
        .with_tdx_collateral(source)
}

#[test]
fn tdx_collateral_from_a_pccs_is_fetched_and_refreshed() {
    let pccs = start_pccs();
    let now = Arc::new(AtomicU64::new(TDX_NOW));
    let kernel = FakeKernel::tdx();
    let tsm = pccs_tsm(&kernel, &format!("{}/", pccs.url), &now).unwrap();
    assert_eq!(tsm.prepare().unwrap(), Platform::Tdx);
    check_tdx_bundle(&tsm.evidence(&[9; 64]).unwrap());
    assert_eq!(tsm.collateral_loads(), 1);
    assert_eq!(pccs.requests.lock().unwrap().len(), 4);
    assert_eq!(kernel.entries_left(), 0);

    // Within the margin of expiry: the background thread fetches again, unprompted.
    let expires = parse_json(&v4_collateral()).unwrap().expires;
    now.store(expires - 600, Ordering::SeqCst);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while tsm.collateral_loads() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no background refresh"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(pccs.requests.lock().unwrap().len() >= 8);
    check_tdx_bundle(&tsm.evidence(&[9; 64]).unwrap());
}

#[test]
fn pccs_failures_have_clear_codes() {
    let now = Arc::new(AtomicU64::new(TDX_NOW));
    let kernel = FakeKernel::tdx();
    // https is accepted (nothing is fetched before the first request); other schemes and
    // URLs without a host are not.
    pccs_tsm(&kernel, INTEL_PCS_URL, &now).unwrap();
    for url in ["ftp://x", "https://", "https://user@host", "127.0.0.1:8081"] {
        let err = pccs_tsm(&kernel, url, &now).unwrap_err();
        assert_eq!(err.code(), "PCCS_URL_UNSUPPORTED", "{url}: {err}");
    }

    // Nobody listening.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tsm = pccs_tsm(&kernel, &format!("http://127.0.0.1:{port}"), &now).unwrap();
    let err = tsm.prepare().unwrap_err();
    assert_eq!(err.code(), "PCCS_UNREACHABLE", "{err}");
    // Fails fast afterwards, entries cleaned up.
    assert_eq!(
        tsm.evidence(&[0; 64]).unwrap_err().code(),
        "PCCS_UNREACHABLE"
    );
    assert_eq!(kernel.entries_left(), 0);

    // Something that is not a PCCS.
    let pccs = start_pccs();
    let tsm = pccs_tsm(&kernel, &format!("{}/elsewhere", pccs.url), &now).unwrap();
    let err = tsm.prepare().unwrap_err();
    assert_eq!(err.code(), "PCCS_ERROR", "{err}");
    assert!(err.to_string().contains("404"), "{err}");
}

// ---------------------------------------------------------------- https

/// Write the test CA to a PEM file and return a `PccsWithCa` source for `url`.
fn with_ca(dir: &Path, url: &str, pem: &[u8]) -> CollateralSource {
    CollateralSource::PccsWithCa {
        url: url.to_string(),
        ca_file: write_tmp(dir, "pccs-ca.pem", pem),
    }
}

#[test]
fn tdx_collateral_over_https_with_an_operator_ca() {
    let pki = test_pki(&["localhost", "127.0.0.1"]);
    let pccs = start_server(Some(pki.server.clone()), Flavour::Pccs);
    let port = pccs.url.rsplit(':').next().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicU64::new(TDX_NOW));
    // By host name (certificate DNS name) and by address (certificate IP address).
    for url in [
        format!("https://localhost:{port}/"),
        format!("https://127.0.0.1:{port}/sgx/certification/v4"),
    ] {
        let kernel = FakeKernel::tdx();
        let before = pccs.requests.lock().unwrap().len();
        let tsm = pccs_source_tsm(
            &kernel,
            with_ca(dir.path(), &url, pki.ca_pem.as_bytes()),
            &now,
        )
        .unwrap();
        assert_eq!(tsm.prepare().unwrap(), Platform::Tdx, "{url}");
        // The quote-to-collateral path: the bundle carries exactly the v4 collateral and
        // verifies against Intel's root.
        check_tdx_bundle(&tsm.evidence(&[9; 64]).unwrap());
        assert_eq!(tsm.collateral_loads(), 1);
        assert_eq!(pccs.requests.lock().unwrap().len() - before, 4, "{url}");
        assert_eq!(kernel.entries_left(), 0);
    }
    // Several CA certificates in one file: the right one among them is enough.
    let other = test_pki(&["localhost"]);
    let bundle = format!("{}{}", other.ca_pem, pki.ca_pem);
    let kernel = FakeKernel::tdx();
    let tsm = pccs_source_tsm(
        &kernel,
        with_ca(dir.path(), &pccs.url, bundle.as_bytes()),
        &now,
    )
    .unwrap();
    check_tdx_bundle(&tsm.evidence(&[9; 64]).unwrap());
}

#[test]
fn https_pccs_without_the_ca_fails_with_pccs_tls_error() {
    let pki = test_pki(&["localhost", "127.0.0.1"]);
    let pccs = start_server(Some(pki.server.clone()), Flavour::Pccs);
    let now = Arc::new(AtomicU64::new(TDX_NOW));
    let kernel = FakeKernel::tdx();
    // Only the compiled-in Mozilla roots: the test CA is unknown.
    let tsm = pccs_tsm(&kernel, &pccs.url, &now).unwrap();
    let err = tsm.prepare().unwrap_err();
    assert_eq!(err.code(), "PCCS_TLS_ERROR", "{err}");
    let msg = err.to_string();
    assert!(msg.contains("UnknownIssuer"), "{msg}");
    assert!(msg.contains("Mozilla roots"), "{msg}");
    assert!(msg.contains("--pccs-ca"), "{msg}");
    // Fails fast afterwards with the same code; nothing was served, entries cleaned up.
    assert_eq!(tsm.evidence(&[0; 64]).unwrap_err().code(), "PCCS_TLS_ERROR");
    assert!(pccs.requests.lock().unwrap().is_empty());
    assert_eq!(kernel.entries_left(), 0);

    // Another CA than the one that issued the server's certificate, with the same name
    // (an impostor): also refused, on the signature.
    let dir = tempfile::tempdir().unwrap();
    let other = test_pki(&["localhost"]);
    let tsm = pccs_source_tsm(
        &kernel,
        with_ca(dir.path(), &pccs.url, other.ca_pem.as_bytes()),
        &now,
    )
    .unwrap();
    let err = tsm.prepare().unwrap_err();
    assert_eq!(err.code(), "PCCS_TLS_ERROR", "{err}");
    assert!(err.to_string().contains("BadSignature"), "{err}");

    // A plain-HTTP server behind an https:// URL: the handshake fails, same code.
    let plain = start_pccs();
    let url = plain.url.replace("http://", "https://");
    let err = pccs_tsm(&kernel, &url, &now)
        .unwrap()
        .prepare()
        .unwrap_err();
    assert_eq!(err.code(), "PCCS_TLS_ERROR", "{err}");
}

#[test]
fn https_pccs_certificate_for_another_host_is_refused() {
    // Issued by the trusted CA, but for another name only.
    let pki = test_pki(&["pccs.example.com"]);
    let pccs = start_server(Some(pki.server.clone()), Flavour::Pccs);
    let port = pccs.url.rsplit(':').next().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicU64::new(TDX_NOW));
    let kernel = FakeKernel::tdx();
    for url in [format!("https://localhost:{port}"), pccs.url.clone()] {
        let tsm = pccs_source_tsm(
            &kernel,
            with_ca(dir.path(), &url, pki.ca_pem.as_bytes()),
            &now,
        )
        .unwrap();
        let err = tsm.prepare().unwrap_err();
        assert_eq!(err.code(), "PCCS_TLS_ERROR", "{url}: {err}");
        let msg = err.to_string();
        assert!(msg.contains("not valid for name"), "{msg}");
        assert!(msg.contains("pccs.example.com"), "{msg}");
    }
    assert!(pccs.requests.lock().unwrap().is_empty());
}

#[test]
fn bad_pccs_ca_files_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicU64::new(TDX_NOW));
    let kernel = FakeKernel::tdx();
    let url = "https://127.0.0.1:1";
    let start = |source| pccs_source_tsm(&kernel, source, &now).unwrap_err();

    let missing = dir.path().join("missing.pem");
    let err = start(CollateralSource::PccsWithCa {
        url: url.into(),
        ca_file: missing,
    });
    assert_eq!(err.code(), "PCCS_CA_INVALID", "{err}");
    assert!(err.to_string().contains("missing.pem"), "{err}");

    let err = start(with_ca(dir.path(), url, b"garbage"));
    assert_eq!(err.code(), "PCCS_CA_INVALID", "{err}");
    assert!(err.to_string().contains("no PEM certificate"), "{err}");

    let err = start(with_ca(
        dir.path(),
        url,
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    ));
    assert_eq!(err.code(), "PCCS_CA_INVALID", "{err}");

    // An extra CA for a plain-http URL would be silently unused: refused instead.
    let pki = test_pki(&["localhost"]);
    let err = start(with_ca(
        dir.path(),
        "http://127.0.0.1:1",
        pki.ca_pem.as_bytes(),
    ));
    assert_eq!(err.code(), "PCCS_CA_INVALID", "{err}");
    assert!(err.to_string().contains("http://"), "{err}");

    // And a bad URL is still a bad URL with a good CA.
    let err = start(with_ca(dir.path(), "ftp://x", pki.ca_pem.as_bytes()));
    assert_eq!(err.code(), "PCCS_URL_UNSUPPORTED", "{err}");
}

#[test]
fn root_ca_crl_from_intels_distribution_point_when_the_server_has_none() {
    // A PCS-like server (no rootcacrl) over https; the root CA CRL comes from the CRL
    // distribution point, here pointed at the same test server.
    let pki = test_pki(&["127.0.0.1"]);
    let pcs = start_server(Some(pki.server.clone()), Flavour::Pcs);
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicU64::new(TDX_NOW));
    let kernel = FakeKernel::tdx();
    let tsm = kernel
        .tsm()
        .with_clock(fixed_clock(&now))
        .with_root_crl_url(&format!("{}/IntelSGXRootCA.der", pcs.url))
        .with_tdx_collateral(with_ca(dir.path(), &pcs.url, pki.ca_pem.as_bytes()))
        .unwrap();
    check_tdx_bundle(&tsm.evidence(&[9; 64]).unwrap());
    let requests = pcs.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 5, "{requests:?}");
    assert_eq!(requests[3], "/sgx/certification/v4/rootcacrl");
    assert_eq!(requests[4], "/IntelSGXRootCA.der");
}

#[test]
fn root_ca_crl_fallback_is_the_builtin_roots_distribution_point() {
    use der::Decode;
    use x509_cert::ext::pkix::CrlDistributionPoints;
    use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
    let root = x509_cert::Certificate::from_der(sotto_attest::tdx::INTEL_SGX_ROOT_CA).unwrap();
    let ext = root
        .tbs_certificate
        .extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id == <CrlDistributionPoints as der::oid::AssociatedOid>::OID)
        .expect("the Intel root has a CRL distribution point");
    let dps = CrlDistributionPoints::from_der(ext.extn_value.as_bytes()).unwrap();
    let uris: Vec<String> = dps
        .0
        .iter()
        .filter_map(|dp| match &dp.distribution_point {
            Some(DistributionPointName::FullName(names)) => Some(names),
            _ => None,
        })
        .flatten()
        .filter_map(|n| match n {
            GeneralName::UniformResourceIdentifier(u) => Some(u.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(uris, [super::collateral::INTEL_ROOT_CA_CRL_URL]);
}

/// AMD's real Genoa CRL (sotto-attest's fixture).
fn genoa_crl_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../sotto-attest/tests/data/amd/genoa-vcek.crl")
}

#[test]
fn snp_bundles_carry_the_operators_amd_crl() {
    let kernel = FakeKernel::snp();
    let tsm = kernel.tsm().with_snp_crl(&genoa_crl_path()).unwrap();
    let rd = [0u8; 64];
    let bundle = tsm.evidence(&rd).unwrap();
    let crl = std::fs::read(genoa_crl_path()).unwrap();
    assert_eq!(
        bundle.extras,
        vec![Extra {
            tag: tags::AMD_CRL,
            value: crl
        }]
    );
    // The client finds and checks it. The only real Genoa CRL we have expired
    // (nextUpdate 2025-11-03) before this VCEK became valid (2026-02), so at a time the
    // VCEK is valid the CRL is authenticated under the Genoa ARK and then refused as
    // expired: proof that it was shipped, found and checked.
    let decoded = EvidenceBundle::decode(&bundle.encode()).unwrap();
    let mut policy = Policy::new(TrustRoots::default(), rd);
    policy.require_amd_crl = true;
    let e = sotto_attest::verify(&decoded, &policy, SNP_NOW).unwrap_err();
    assert_eq!(e.code(), "COLLATERAL_EXPIRED", "{e}");
    // Without the CRL the same policy refuses for another reason.
    let plain = kernel.tsm().evidence(&rd).unwrap();
    let e = sotto_attest::verify(&plain, &policy, SNP_NOW).unwrap_err();
    assert_eq!(e.code(), "CRL_MISSING");
}

#[test]
fn bad_amd_crl_files_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        write_tmp(dir.path(), "garbage.crl", b"not a crl"),
        write_tmp(dir.path(), "cert.der", &vcek()),
        dir.path().join("missing.crl"),
    ];
    for p in cases {
        let e = FakeKernel::snp().tsm().with_snp_crl(&p).unwrap_err();
        assert_eq!(e.code(), "SNP_CRL_INVALID", "{}", p.display());
    }
}
