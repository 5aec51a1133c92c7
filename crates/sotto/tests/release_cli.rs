//! Release transparency from the command line, black-box: `sotto key`, `sotto release`,
//! `sotto log` and `sotto witness` run as real processes (witness and log server on
//! loopback), and every outcome is checked against values this file computes on its own
//! (SHA-256/384 digests, RFC 6962 roots, tile and bundle bytes).

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use sha2::{Digest, Sha256, Sha384};
use sotto_log::{CheckpointPolicy, Ed25519Signer, KeyType, VerifierKey};

const RELEASE_NAME: &str = "release.sotto.test";
const LOG_ORIGIN: &str = "log.sotto.test/releases";
const WITNESS_NAME: &str = "sotto-witness.test";
/// Upper case on purpose: the manifest must carry it in lower case.
const COMMIT: &str = "94ACA28C0FFEE0DDBA11DEADBEEF0123456789AB";

// ---------------------------------------------------------------------------------------
// Helpers: processes

fn sotto() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sotto"));
    c.env("SOTTO_LOG", "warn")
        .env_remove("SOTTO_RELAY")
        .env_remove("SOTTO_SIM_ROOT")
        .env_remove("SOTTO_ALLOW_SIMULATED")
        .stdin(Stdio::null());
    c
}

/// What one `sotto` invocation did.
#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run<I, S>(args: I) -> Out
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = sotto().args(args).output().expect("run sotto");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs and requires exit 0.
fn ok<I, S>(args: I) -> Out
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = run(args);
    assert_eq!(out.code, 0, "sotto failed: {out:?}");
    out
}

/// A child process killed (and reaped) on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns `sotto ARGS`, waits for a stdout line starting with `prefix`; returns the process,
/// the rest of that line and the lines printed before it.
fn spawn_ready<S: AsRef<OsStr>>(args: &[S], prefix: &str) -> (Proc, String, Vec<String>) {
    let mut child = sotto()
        .args(args)
        // Servers log refusals at `warn`; the tests check them through the clients.
        .env("SOTTO_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn sotto");
    let stdout = child.stdout.take().expect("stdout");
    let proc = Proc(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Keeps draining after the ready line so the child never blocks on stdout.
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let mut before = Vec::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no {prefix:?} line; got {before:?}"));
        if let Some(rest) = line.strip_prefix(prefix) {
            return (proc, rest.trim().to_string(), before);
        }
        before.push(line);
    }
}

fn p(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

// ---------------------------------------------------------------------------------------
// Helpers: independent computations

fn model_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/models/stories260K"
    ))
}

fn model() -> PathBuf {
    model_dir().join("stories260K.bin")
}

fn tokenizer() -> PathBuf {
    model_dir().join("tok512.bin")
}

fn sha256_hex(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).expect("read file")))
}

/// The simulated measurement, from its definition in the release format.
fn sim_measurement(enclave: &Path, weights: &Path, tokenizer: &Path) -> String {
    let mut h = Sha384::new();
    h.update(b"sotto-sim-measurement-v1\0");
    for f in [enclave, weights, tokenizer] {
        h.update(Sha256::digest(std::fs::read(f).unwrap()));
    }
    hex::encode(h.finalize())
}

/// The canonical manifest the CLI must produce for these inputs (no optional lines but
/// the given extra lines, which must be in canonical order).
fn expected_manifest(
    version: &str,
    enclave: &Path,
    weights: &Path,
    name: &str,
    extra: &[String],
) -> String {
    let mut s = format!(
        "sotto-release-manifest/v1\nversion {version}\nsource-commit {}\nenclave-sha256 {}\nmodel-name {name}\nmodel-weights-sha256 {}\nmodel-tokenizer-sha256 {}\n",
        COMMIT.to_ascii_lowercase(),
        sha256_hex(enclave),
        sha256_hex(weights),
        sha256_hex(&tokenizer()),
    );
    for l in extra {
        s.push_str(l);
        s.push('\n');
    }
    s
}

fn leaf(entry: &[u8]) -> [u8; 32] {
    Sha256::new()
        .chain_update([0u8])
        .chain_update(entry)
        .finalize()
        .into()
}

/// RFC 6962 Merkle tree hash of the leaf hashes.
fn mth(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves.len() {
        0 => Sha256::digest(b"").into(),
        1 => leaves[0],
        n => {
            // The largest power of two smaller than n.
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            Sha256::new()
                .chain_update([1u8])
                .chain_update(mth(&leaves[..k]))
                .chain_update(mth(&leaves[k..]))
                .finalize()
                .into()
        }
    }
}

fn root_b64(entries: &[Vec<u8>]) -> String {
    let leaves: Vec<[u8; 32]> = entries.iter().map(|e| leaf(e)).collect();
    base64::engine::general_purpose::STANDARD.encode(mth(&leaves))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A parsed checkpoint file: its text and signature lines (`(name, base64)`).
struct CheckpointFile {
    bytes: Vec<u8>,
    text: String,
    sigs: Vec<(String, String)>,
}

fn read_checkpoint(dir: &Path) -> CheckpointFile {
    let bytes = std::fs::read(dir.join("checkpoint")).expect("checkpoint file");
    let s = String::from_utf8(bytes.clone()).expect("UTF-8 checkpoint");
    let (text, sigs) = s.rsplit_once("\n\n").expect("signed note");
    let sigs = sigs
        .lines()
        .map(|l| {
            let rest = l
                .strip_prefix("\u{2014} ")
                .expect("signature line with em dash");
            let (name, b64) = rest.split_once(' ').expect("name and signature");
            (name.to_string(), b64.to_string())
        })
        .collect();
    CheckpointFile {
        bytes,
        text: format!("{text}\n"),
        sigs,
    }
}

/// Checks the log's checkpoint: exact text for `entries`, a log signature first, and
/// exactly `witnesses` cosignatures (verified) by the witness key after it.
fn assert_checkpoint(
    dir: &Path,
    entries: &[Vec<u8>],
    log_vkey: &str,
    witness_vkey: Option<&str>,
) -> CheckpointFile {
    let cp = read_checkpoint(dir);
    assert_eq!(
        cp.text,
        format!("{LOG_ORIGIN}\n{}\n{}\n", entries.len(), root_b64(entries)),
        "checkpoint text"
    );
    let names: Vec<&str> = cp.sigs.iter().map(|(n, _)| n.as_str()).collect();
    let log_key = VerifierKey::parse(log_vkey).unwrap();
    let policy = CheckpointPolicy::new(LOG_ORIGIN, log_key).unwrap();
    match witness_vkey {
        None => {
            assert_eq!(names, [LOG_ORIGIN], "only the log signs");
            policy.verify(&cp.bytes, now()).expect("log signature");
        }
        Some(w) => {
            assert_eq!(
                names,
                [LOG_ORIGIN, WITNESS_NAME],
                "log signature + cosignature"
            );
            let v = policy
                .with_witnesses(vec![VerifierKey::parse(w).unwrap()], 1)
                .unwrap()
                .verify(&cp.bytes, now())
                .expect("checkpoint signed and cosigned");
            assert_eq!(v.cosignatures.len(), 1);
            // key ID (4) || timestamp (8) || Ed25519 signature (64), timestamp = now.
            let raw = base64::engine::general_purpose::STANDARD
                .decode(&cp.sigs[1].1)
                .unwrap();
            assert_eq!(raw.len(), 76);
            let t = u64::from_be_bytes(raw[4..12].try_into().unwrap());
            assert!(t.abs_diff(now()) < 120, "cosignature time {t}");
        }
    }
    cp
}

/// A raw HTTP/1.1 GET (no URL normalisation on the way): status, headers, body.
fn http_get(addr: &str, path: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).expect("read response");
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of head");
    let head = String::from_utf8(resp[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    let body = resp[split + 4..].to_vec();
    let len = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map(|(_, v)| v.parse::<usize>().unwrap());
    assert_eq!(len, Some(body.len()), "{path}: content-length and body");
    (status, headers, body)
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

fn flip_byte(path: &Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    b[at] ^= 0x01;
    std::fs::write(path, b).unwrap();
}

// ---------------------------------------------------------------------------------------
// Helpers: a working directory with keys and releases

struct Kit {
    dir: tempfile::TempDir,
    enclave: PathBuf,
}

impl Kit {
    fn new() -> Kit {
        let dir = tempfile::tempdir().unwrap();
        let enclave = dir.path().join("enclave.bin");
        std::fs::write(&enclave, b"\x7fELF pretend enclave build 1").unwrap();
        Kit { dir, enclave }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `sotto key generate`; returns the printed vkey (checked against FILE.vkey).
    fn key(&self, kind: &str, name: &str, file: &str) -> String {
        let out = ok([
            "key",
            "generate",
            "--kind",
            kind,
            "--name",
            name,
            "--out",
            p(&self.path(file)),
        ]);
        let vkey = out.stdout.trim().to_string();
        assert_eq!(out.stdout, format!("{vkey}\n"));
        assert_eq!(
            std::fs::read_to_string(self.path(&format!("{file}.vkey"))).unwrap(),
            format!("{vkey}\n")
        );
        vkey
    }

    /// `sotto release manifest --simulated` for `version`, written to FILE.
    fn manifest(&self, version: &str) -> PathBuf {
        let out = self.path(&format!("manifest-{version}.txt"));
        ok([
            "release",
            "manifest",
            "--version",
            version,
            "--source-commit",
            COMMIT,
            "--enclave-binary",
            p(&self.enclave),
            "--model",
            p(&model()),
            "--tokenizer",
            p(&tokenizer()),
            "--simulated",
            "-o",
            p(&out),
        ]);
        out
    }

    /// A signed release of `version` by the key in `key_file`; returns (path, bytes).
    fn release(&self, key_file: &str, version: &str) -> (PathBuf, Vec<u8>) {
        let m = self.manifest(version);
        let out = self.path(&format!("release-{version}-{key_file}.signed"));
        ok([
            "release",
            "sign",
            "--key",
            p(&self.path(key_file)),
            p(&m),
            "-o",
            p(&out),
        ]);
        let bytes = std::fs::read(&out).unwrap();
        (out, bytes)
    }

    /// `log append --dir DIR --key log.key [--release-key release.key.vkey] [--witness W]
    /// FILES...`.
    fn append(&self, dir: &Path, release_key: bool, witness: Option<&str>, files: &[&Path]) -> Out {
        self.append_as("log.key", dir, release_key, witness, files)
    }

    /// [`Kit::append`] with another log key file.
    fn append_as(
        &self,
        log_key: &str,
        dir: &Path,
        release_key: bool,
        witness: Option<&str>,
        files: &[&Path],
    ) -> Out {
        let mut args: Vec<String> = vec![
            "log".into(),
            "append".into(),
            "--dir".into(),
            p(dir).into(),
            "--key".into(),
            p(&self.path(log_key)).into(),
        ];
        if release_key {
            args.push("--release-key".into());
            args.push(p(&self.path("release.key.vkey")).into());
        }
        if let Some(w) = witness {
            args.push("--witness".into());
            args.push(w.into());
        }
        args.extend(files.iter().map(|f| p(f).to_string()));
        run(args)
    }

    /// Starts `sotto witness run` for the log key with state file `state`; returns the
    /// process and the `--witness` argument for `log append`.
    fn witness(&self, state: &Path, witness_vkey: &str) -> (Proc, String) {
        let (proc, url, before) = spawn_ready(
            &[
                "witness",
                "run",
                "--key",
                p(&self.path("witness.key")),
                "--log-key",
                p(&self.path("log.key.vkey")),
                "--state",
                p(state),
                "--listen",
                "127.0.0.1:0",
            ],
            "witness listening on ",
        );
        assert_eq!(before, [format!("witness {witness_vkey}")]);
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        (proc, format!("{url}={witness_vkey}"))
    }
}

fn signed_note_by(key_file: &Path, text: &str) -> Vec<u8> {
    let secret = std::fs::read_to_string(key_file).unwrap();
    let signer = Ed25519Signer::from_private_key(secret.trim()).unwrap();
    let mut note = sotto_log::Note::new(text).unwrap();
    note.sign(&signer);
    note.to_bytes()
}

// ---------------------------------------------------------------------------------------
// 1. keys, manifests, signing, showing

#[test]
fn key_generate_writes_private_key_0600_and_refuses_to_overwrite() {
    let k = Kit::new();
    let vkey = k.key("release", RELEASE_NAME, "release.key");
    let vk = VerifierKey::parse(&vkey).unwrap();
    assert_eq!(vk.name(), RELEASE_NAME);
    assert_eq!(vk.key_type(), KeyType::Ed25519);
    let secret_path = k.path("release.key");
    let secret = std::fs::read_to_string(&secret_path).unwrap();
    assert!(
        secret.starts_with(&format!("PRIVATE+KEY+{RELEASE_NAME}+")),
        "{secret}"
    );
    let signer = Ed25519Signer::from_private_key(secret.trim()).unwrap();
    assert_eq!(signer.verifier_key().to_vkey(), vkey);
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secret_path)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "secret key mode {mode:o}");
    }

    // Refuses to overwrite, and leaves both files as they were.
    let again = run([
        "key",
        "generate",
        "--kind",
        "release",
        "--name",
        RELEASE_NAME,
        "--out",
        p(&secret_path),
    ]);
    assert_eq!(again.code, 1, "{again:?}");
    assert!(again.stderr.contains("cannot create"), "{again:?}");
    assert!(again.stdout.is_empty());
    assert_eq!(std::fs::read_to_string(&secret_path).unwrap(), secret);
    assert_eq!(
        std::fs::read_to_string(k.path("release.key.vkey")).unwrap(),
        format!("{vkey}\n")
    );

    // A stale `.vkey` whose secret is gone is not overwritten, and no secret is written
    // beside it (it would publish the wrong public key).
    std::fs::remove_file(&secret_path).unwrap();
    let stale = run([
        "key",
        "generate",
        "--kind",
        "release",
        "--name",
        RELEASE_NAME,
        "--out",
        p(&secret_path),
    ]);
    assert_eq!(stale.code, 1, "{stale:?}");
    assert!(stale.stderr.contains("already exists"), "{stale:?}");
    assert!(!secret_path.exists());
    assert_eq!(
        std::fs::read_to_string(k.path("release.key.vkey")).unwrap(),
        format!("{vkey}\n")
    );
    std::fs::write(&secret_path, &secret).unwrap();

    // Each kind has its key type; two keys of one name differ.
    let w = VerifierKey::parse(&k.key("witness", WITNESS_NAME, "witness.key")).unwrap();
    assert_eq!(w.key_type(), KeyType::CosignatureV1);
    assert_eq!(w.name(), WITNESS_NAME);
    let wsecret = std::fs::read_to_string(k.path("witness.key")).unwrap();
    let cosigner = sotto_log::Cosigner::from_private_key(wsecret.trim()).unwrap();
    assert_eq!(cosigner.verifier_key(), w);
    let l = VerifierKey::parse(&k.key("log", LOG_ORIGIN, "log.key")).unwrap();
    assert_eq!(l.key_type(), KeyType::Ed25519);
    let other = k.key("release", RELEASE_NAME, "release2.key");
    assert_ne!(other, vkey);

    // A name a note cannot carry is refused before anything is written.
    let bad = run([
        "key",
        "generate",
        "--kind",
        "log",
        "--name",
        "bad name",
        "--out",
        p(&k.path("bad.key")),
    ]);
    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(bad.stderr.contains("key name"), "{bad:?}");
    assert!(!k.path("bad.key").exists());
    assert!(!k.path("bad.key.vkey").exists());
}

fn manifest_args<'a>(k: &'a Kit, extra: &[&'a str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "release",
        "manifest",
        "--version",
        "1.2.3",
        "--source-commit",
        COMMIT,
        "--enclave-binary",
        p(&k.enclave),
        "--model",
        p(&model()),
        "--tokenizer",
        p(&tokenizer()),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

#[test]
fn release_manifest_is_canonical_and_deterministic() {
    let k = Kit::new();
    let sim = format!(
        "measurement simulated {}",
        sim_measurement(&k.enclave, &model(), &tokenizer())
    );
    let want = expected_manifest(
        "1.2.3",
        &k.enclave,
        &model(),
        "stories260K",
        std::slice::from_ref(&sim),
    );
    let m1 = ok(manifest_args(&k, &["--simulated"]));
    assert_eq!(m1.stdout, want);
    assert!(m1.stdout.starts_with("sotto-release-manifest/v1\n"));
    assert!(m1.stdout.lines().any(|l| l == sim));
    // Deterministic; -o writes the same bytes and nothing to stdout.
    assert_eq!(ok(manifest_args(&k, &["--simulated"])).stdout, want);
    let file = k.path("m.txt");
    let o = ok(manifest_args(&k, &["--simulated", "-o", p(&file)]));
    assert!(o.stdout.is_empty());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), want);

    // Another enclave binary: another digest and another simulated measurement.
    let enclave2 = k.path("enclave2.bin");
    std::fs::write(&enclave2, b"\x7fELF pretend enclave build 2").unwrap();
    let mut a = manifest_args(&k, &["--simulated"]);
    a[7] = p(&enclave2).to_string();
    let m2 = ok(&a).stdout;
    let sim2 = format!(
        "measurement simulated {}",
        sim_measurement(&enclave2, &model(), &tokenizer())
    );
    assert_ne!(sim2, sim);
    assert_eq!(
        m2,
        expected_manifest("1.2.3", &enclave2, &model(), "stories260K", &[sim2])
    );

    // Other weights: another digest and measurement; the model id follows the file name
    // unless given.
    let weights2 = k.path("other-weights.bin");
    let mut w = std::fs::read(model()).unwrap();
    w[100] ^= 1;
    std::fs::write(&weights2, w).unwrap();
    let sim3 = format!(
        "measurement simulated {}",
        sim_measurement(&k.enclave, &weights2, &tokenizer())
    );
    assert_ne!(sim3, sim);
    let mut a = manifest_args(&k, &["--simulated"]);
    a[9] = p(&weights2).to_string();
    assert_eq!(
        ok(&a).stdout,
        expected_manifest(
            "1.2.3",
            &k.enclave,
            &weights2,
            "other-weights",
            std::slice::from_ref(&sim3)
        )
    );
    a.extend(["--model-id".to_string(), "stories260K".to_string()]);
    assert_eq!(
        ok(&a).stdout,
        expected_manifest("1.2.3", &k.enclave, &weights2, "stories260K", &[sim3])
    );

    // Hardware measurements (upper-case hex in, lower case out), sorted by encoding
    // whatever the order given; policy lines in canonical order.
    let snp = "AB".repeat(48);
    let mrtd = "11".repeat(48);
    let rtmr2 = "2f".repeat(48);
    let tdx = format!("rtmr2={rtmr2},mrtd={mrtd}");
    let out = ok(manifest_args(
        &k,
        &[
            "--tdx-measurement",
            &tdx,
            "--snp-measurement",
            &snp,
            "--simulated",
            "--min-tcb",
            "ucode=115,bl=3,snp=8",
            "--tdx-tcb-status",
            "SWHardeningNeeded,UpToDate",
        ],
    ));
    assert_eq!(
        out.stdout,
        expected_manifest(
            "1.2.3",
            &k.enclave,
            &model(),
            "stories260K",
            &[
                sim.clone(),
                format!("measurement snp {}", "ab".repeat(48)),
                format!("measurement tdx mrtd={mrtd} rtmr2={rtmr2}"),
                "min-tcb bl=3,tee=0,snp=8,ucode=115".into(),
                "tdx-tcb-status UpToDate,SWHardeningNeeded".into(),
            ]
        )
    );

    // Refusals, with the reason, and no output file.
    let out_file = k.path("refused.txt");
    let zz = "zz".repeat(48);
    let short = "ab".repeat(47);
    let bad_mrtd = format!("mrtd={}", "1".repeat(95));
    let no_mrtd = format!("rtmr0={mrtd}");
    let bad_reg = format!("mrtd={mrtd},rtmr4={mrtd}");
    let dup_mrtd = format!("mrtd={mrtd},mrtd={rtmr2}");
    let dup_rtmr = format!("mrtd={mrtd},rtmr1={mrtd},rtmr1={rtmr2}");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--snp-measurement", &zz], "--snp-measurement: not hex"),
        (
            vec!["--snp-measurement", &short],
            "--snp-measurement: expected 48 bytes",
        ),
        (vec!["--tdx-measurement", &bad_mrtd], "mrtd: not hex"),
        (vec!["--tdx-measurement", &no_mrtd], "needs mrtd=HEX"),
        (vec!["--tdx-measurement", &bad_reg], "unknown register"),
        (vec!["--tdx-measurement", &dup_mrtd], "mrtd given twice"),
        (vec!["--tdx-measurement", &dup_rtmr], "rtmr1 given twice"),
        (vec![], "at least one measurement"),
        (
            vec![
                "--simulated",
                "--snp-measurement",
                &snp,
                "--snp-measurement",
                &snp,
            ],
            "duplicate measurement",
        ),
        (
            vec!["--simulated", "--tdx-tcb-status", "Revoked"],
            "MANIFEST_INVALID",
        ),
        (
            vec!["--simulated", "--tdx-tcb-status", "UpToDate,Bogus"],
            "--tdx-tcb-status: unknown status \"Bogus\"",
        ),
        (
            vec!["--simulated", "--min-tcb", "bl=300"],
            "--min-tcb: \"300\" is not 0..=255",
        ),
        (
            vec!["--simulated", "--model-id", "has space"],
            "MANIFEST_INVALID",
        ),
    ];
    for (extra, want) in cases {
        let mut extra = extra.clone();
        extra.extend(["-o", p(&out_file)]);
        let r = run(manifest_args(&k, &extra));
        assert_eq!(r.code, 1, "{extra:?}: {r:?}");
        assert!(r.stderr.contains(want), "{extra:?}: want {want:?} in {r:?}");
        assert!(!out_file.exists(), "{extra:?} wrote a manifest");
    }
    let mut a = manifest_args(&k, &["--simulated"]);
    a[5] = COMMIT[..39].to_string();
    let r = run(&a);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("source commit"), "{r:?}");
    assert!(r.stderr.contains("MANIFEST_INVALID"), "{r:?}");
}

#[test]
fn release_sign_and_show() {
    let k = Kit::new();
    let vkey = k.key("release", RELEASE_NAME, "release.key");
    let other = k.key("release", "other.release.test", "other.key");
    let witness = k.key("witness", WITNESS_NAME, "witness.key");
    let m = k.manifest("1.2.3");
    let manifest = std::fs::read_to_string(&m).unwrap();

    // The signed release is the manifest as a signed note with one signature line.
    let signed = k.path("signed");
    let o = ok([
        "release",
        "sign",
        "--key",
        p(&k.path("release.key")),
        p(&m),
        "-o",
        p(&signed),
    ]);
    assert!(o.stdout.is_empty());
    let bytes = std::fs::read(&signed).unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    let sig_line = text
        .strip_prefix(&format!("{manifest}\n"))
        .expect("manifest, then a blank line");
    assert!(
        sig_line.starts_with(&format!("\u{2014} {RELEASE_NAME} ")) && sig_line.ends_with('\n'),
        "{sig_line:?}"
    );
    assert_eq!(sig_line.lines().count(), 1);
    let mut keys = sotto_log::KeySet::new();
    keys.insert(VerifierKey::parse(&vkey).unwrap()).unwrap();
    let (parsed, signer) = sotto_release::open_release(&bytes, &keys).unwrap();
    assert_eq!(signer, RELEASE_NAME);
    assert_eq!(parsed.encode().unwrap(), manifest);
    // Ed25519 is deterministic: to stdout, the same bytes.
    let to_stdout = ok(["release", "sign", "--key", p(&k.path("release.key")), p(&m)]);
    assert_eq!(to_stdout.stdout.as_bytes(), bytes.as_slice());

    // show: the right key (file or inline) accepts and prints signer and manifest.
    let shown = format!("signed by: {RELEASE_NAME}\n{manifest}");
    for key in [p(&k.path("release.key.vkey")).to_string(), vkey.clone()] {
        let o = ok(["release", "show", "--release-key", &key, p(&signed)]);
        assert_eq!(o.stdout, shown);
    }
    let o = ok([
        "release",
        "show",
        "--release-key",
        &other,
        "--release-key",
        &vkey,
        p(&signed),
    ]);
    assert_eq!(o.stdout, shown);
    // Another key (or a witness key) rejects it with the code and exit 10.
    for key in [&other, &witness] {
        let r = run(["release", "show", "--release-key", key, p(&signed)]);
        assert_eq!(r.code, 10, "{r:?}");
        assert!(r.stderr.contains("RELEASE_SIGNATURE_INVALID"), "{r:?}");
        assert!(r.stdout.is_empty(), "{r:?}");
    }
    // A changed byte in the manifest breaks the signature.
    let tampered = k.path("tampered");
    std::fs::write(
        &tampered,
        text.replacen("version 1.2.3", "version 1.2.4", 1),
    )
    .unwrap();
    let r = run(["release", "show", "--release-key", &vkey, p(&tampered)]);
    assert_eq!(r.code, 10, "{r:?}");
    assert!(r.stderr.contains("RELEASE_SIGNATURE_INVALID"), "{r:?}");
    // A validly signed but non-canonical manifest is still rejected.
    let upper = manifest.replacen(
        &format!("enclave-sha256 {}", sha256_hex(&k.enclave)),
        &format!(
            "enclave-sha256 {}",
            sha256_hex(&k.enclave).to_ascii_uppercase()
        ),
        1,
    );
    assert_ne!(upper, manifest);
    let noncanon = k.path("noncanon.signed");
    std::fs::write(&noncanon, signed_note_by(&k.path("release.key"), &upper)).unwrap();
    let r = run(["release", "show", "--release-key", &vkey, p(&noncanon)]);
    assert_eq!(r.code, 10, "{r:?}");
    assert!(r.stderr.contains("MANIFEST_MALFORMED"), "{r:?}");

    // sign refuses anything but the canonical manifest, and writes nothing.
    let lines: Vec<&str> = manifest.lines().collect();
    let variants = [
        format!("{manifest}\n"),
        manifest.replacen('\n', "\n\n", 1),
        manifest.replacen("version 1.2.3", "version 1.2.3 ", 1),
        manifest.replace('\n', "\r\n"),
        upper.clone(),
        manifest.trim_end_matches('\n').to_string(),
        format!("{}\n{}\n", lines[1..].join("\n"), lines[0]),
        format!("{manifest}# comment\n"),
    ];
    let out = k.path("refused.signed");
    for (i, v) in variants.iter().enumerate() {
        let f = k.path(&format!("bad-manifest-{i}"));
        std::fs::write(&f, v).unwrap();
        let r = run([
            "release",
            "sign",
            "--key",
            p(&k.path("release.key")),
            p(&f),
            "-o",
            p(&out),
        ]);
        assert_eq!(r.code, 1, "variant {i}: {r:?}");
        assert!(
            r.stderr.contains("MANIFEST_MALFORMED"),
            "variant {i}: {r:?}"
        );
        assert!(r.stderr.contains("malformed release manifest"), "{r:?}");
        assert!(!out.exists(), "variant {i} was signed");
    }
    // A witness key cannot sign releases.
    let r = run([
        "release",
        "sign",
        "--key",
        p(&k.path("witness.key")),
        p(&m),
        "-o",
        p(&out),
    ]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("not a release/log key"), "{r:?}");
    assert!(!out.exists());
}

// ---------------------------------------------------------------------------------------
// 2. log append with a witness

#[test]
fn log_append_checks_entries_and_collects_cosignatures_across_restarts() {
    let k = Kit::new();
    k.key("release", RELEASE_NAME, "release.key");
    k.key("release", "other.release.test", "other.key");
    let log_vkey = k.key("log", LOG_ORIGIN, "log.key");
    let w_vkey = k.key("witness", WITNESS_NAME, "witness.key");
    let state = k.path("witness.state");
    let log = k.path("log");
    let (witness, w) = k.witness(&state, &w_vkey);

    let (r1, e1) = k.release("release.key", "1.0.0");
    let (r2, e2) = k.release("release.key", "1.1.0");
    let o = k.append(&log, true, Some(&w), &[&r1, &r2]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        o.stdout,
        format!("{} -> index 0\n{} -> index 1\n", r1.display(), r2.display())
    );
    let mut entries = vec![e1, e2];
    let cp = assert_checkpoint(&log, &entries, &log_vkey, Some(&w_vkey));
    let needle = format!("\n\u{2014} {WITNESS_NAME} ");
    assert!(
        cp.bytes
            .windows(needle.len())
            .any(|x| x == needle.as_bytes()),
        "no witness cosignature line"
    );
    assert_eq!(
        std::fs::read_to_string(&state).unwrap(),
        format!("{LOG_ORIGIN} 2 {}\n", root_b64(&entries))
    );
    // The entries are stored verbatim.
    let mut bundle = Vec::new();
    for e in &entries {
        bundle.extend_from_slice(&(e.len() as u16).to_be_bytes());
        bundle.extend_from_slice(e);
    }
    assert_eq!(
        std::fs::read(log.join("tile/entries/000.p/2")).unwrap(),
        bundle
    );

    // Refused appends change nothing (not even the valid entries of a mixed batch).
    let (bad_key, _) = k.release("other.key", "6.6.6");
    let (r3, e3) = k.release("release.key", "1.2.0");
    let not_a_note = k.path("not-a-note");
    std::fs::write(&not_a_note, "hello, log\n").unwrap();
    let not_a_manifest = k.path("not-a-manifest");
    std::fs::write(
        &not_a_manifest,
        signed_note_by(&k.path("release.key"), "hello, log\n"),
    )
    .unwrap();
    let missing = k.path("missing");
    let cases: Vec<(Vec<&Path>, bool, &str)> = vec![
        (vec![&bad_key], true, "RELEASE_SIGNATURE_INVALID"),
        (vec![&r3, &bad_key], true, "entry 1: "),
        (vec![&not_a_note], true, "not a signed note"),
        (vec![&not_a_note], false, "not a signed note"),
        (vec![&not_a_manifest], true, "MANIFEST_MALFORMED"),
        (vec![&not_a_manifest], false, "MANIFEST_MALFORMED"),
        (vec![&missing], true, "No such file"),
    ];
    for (files, release_key, want) in cases {
        let o = k.append(&log, release_key, Some(&w), &files);
        assert_ne!(o.code, 0, "{files:?}: {o:?}");
        assert!(o.stderr.contains(want), "{files:?}: want {want:?}: {o:?}");
        assert_eq!(
            read_checkpoint(&log).bytes,
            cp.bytes,
            "{files:?} changed the log"
        );
        assert!(!log.join("tile/entries/000.p/3").exists());
    }

    // A witness answering with another key's cosignature is not accepted as that key.
    let other_w = k.key("witness", WITNESS_NAME, "witness2.key");
    let url = w.split_once('=').unwrap().0;
    let o = k.append(&log, true, Some(&format!("{url}={other_w}")), &[]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("returned no cosignature"), "{o:?}");
    assert_eq!(read_checkpoint(&log).bytes, cp.bytes);

    // Restart the witness (state from its file) and append again later: it cosigns the
    // grown tree, and its state advances.
    drop(witness);
    let (_witness, w) = k.witness(&state, &w_vkey);
    let o = k.append(&log, true, Some(&w), &[&r3]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(o.stdout, format!("{} -> index 2\n", r3.display()));
    entries.push(e3);
    let cp3 = assert_checkpoint(&log, &entries, &log_vkey, Some(&w_vkey));
    assert_eq!(
        std::fs::read_to_string(&state).unwrap(),
        format!("{LOG_ORIGIN} 3 {}\n", root_b64(&entries))
    );
    // With no files: only asks for a cosignature again; one per witness in the file.
    let o = k.append(&log, true, Some(&w), &[]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.is_empty());
    let again = assert_checkpoint(&log, &entries, &log_vkey, Some(&w_vkey));
    assert_eq!(again.text, cp3.text);
    // Without a witness the log still grows, signed by the log only.
    let (r4, e4) = k.release("release.key", "1.3.0");
    let o = k.append(&log, true, None, &[&r4]);
    assert_eq!(o.code, 0, "{o:?}");
    entries.push(e4);
    assert_checkpoint(&log, &entries, &log_vkey, None);
    // ... and a witness catches up from its last size (consistency proof 3 -> 4).
    let o = k.append(&log, true, Some(&w), &[]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_checkpoint(&log, &entries, &log_vkey, Some(&w_vkey));
    assert_eq!(
        std::fs::read_to_string(&state).unwrap(),
        format!("{LOG_ORIGIN} 4 {}\n", root_b64(&entries))
    );
}

// ---------------------------------------------------------------------------------------
// 3. the witness refuses forks

#[test]
fn witness_refuses_forked_logs() {
    let k = Kit::new();
    k.key("release", RELEASE_NAME, "release.key");
    let log_vkey = k.key("log", LOG_ORIGIN, "log.key");
    let w_vkey = k.key("witness", WITNESS_NAME, "witness.key");
    let state = k.path("witness.state");
    let (witness, w) = k.witness(&state, &w_vkey);
    let (r1, e1) = k.release("release.key", "1.0.0");
    let (r2, e2) = k.release("release.key", "1.1.0");
    let (r2b, e2b) = k.release("release.key", "2.0.0-fork");
    let (r3, e3) = k.release("release.key", "1.2.0");

    let a = k.path("log-a");
    assert_eq!(k.append(&a, true, Some(&w), &[&r1, &r2]).code, 0);
    let a_entries = vec![e1.clone(), e2];
    assert_checkpoint(&a, &a_entries, &log_vkey, Some(&w_vkey));
    let cosigned = format!("{LOG_ORIGIN} 2 {}\n", root_b64(&a_entries));
    assert_eq!(std::fs::read_to_string(&state).unwrap(), cosigned);
    let a_cp = read_checkpoint(&a);

    // Same log key, same size, different entries.
    let b = k.path("log-b");
    assert_eq!(k.append(&b, true, None, &[&r1, &r2b]).code, 0);
    let mut b_entries = vec![e1.clone(), e2b];
    let b_cp = assert_checkpoint(&b, &b_entries, &log_vkey, None);
    assert_ne!(root_b64(&b_entries), root_b64(&a_entries));
    let o = k.append(&b, true, Some(&w), &[]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("FORK_DETECTED"), "{o:?}");
    assert!(o.stderr.contains("409"), "{o:?}");
    assert_eq!(
        read_checkpoint(&b).bytes,
        b_cp.bytes,
        "no cosignature added"
    );
    assert_eq!(std::fs::read_to_string(&state).unwrap(), cosigned);

    // A larger forked tree: its consistency proof from the cosigned size fails. (The
    // entry is appended, the cosignature refused.)
    let o = k.append(&b, true, Some(&w), &[&r3]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("CONSISTENCY_PROOF_INVALID"), "{o:?}");
    assert!(o.stderr.contains("422"), "{o:?}");
    assert!(o.stderr.contains("appended index 2; log size 3"), "{o:?}");
    b_entries.push(e3.clone());
    assert_checkpoint(&b, &b_entries, &log_vkey, None);
    assert_eq!(std::fs::read_to_string(&state).unwrap(), cosigned);

    // A smaller tree than the one cosigned is a rollback.
    let c = k.path("log-c");
    let (r9, _) = k.release("release.key", "9.0.0");
    let o = k.append(&c, true, Some(&w), &[&r9]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("CHECKPOINT_ROLLBACK"), "{o:?}");
    assert!(o.stderr.contains("409"), "{o:?}");

    // A checkpoint signed by another key with the log's name is not the log's.
    let evil = k.key("log", LOG_ORIGIN, "evil.key");
    assert_ne!(evil, log_vkey);
    let d = k.path("log-d");
    let o = run([
        "log",
        "append",
        "--dir",
        p(&d),
        "--key",
        p(&k.path("evil.key")),
        "--witness",
        &w,
        p(&r1),
    ]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("CHECKPOINT_SIGNATURE_MISSING"), "{o:?}");
    assert!(o.stderr.contains("403"), "{o:?}");
    assert_eq!(std::fs::read_to_string(&state).unwrap(), cosigned);
    // ... nor can that key append to the log's directory.
    let o = k.append_as("evil.key", &a, true, Some(&w), &[&r3]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("STORE_CORRUPT"), "{o:?}");
    assert_eq!(read_checkpoint(&a).bytes, a_cp.bytes);

    // After a restart (state from the file) the fork is still refused, and the real log
    // still gets cosigned as it grows.
    drop(witness);
    let (_witness, w) = k.witness(&state, &w_vkey);
    let o = k.append(&b, true, Some(&w), &[]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("CONSISTENCY_PROOF_INVALID"), "{o:?}");
    let o = k.append(&a, true, Some(&w), &[&r3]);
    assert_eq!(o.code, 0, "{o:?}");
    let a_entries = vec![e1, a_entries[1].clone(), e3];
    assert_checkpoint(&a, &a_entries, &log_vkey, Some(&w_vkey));
    assert_eq!(
        std::fs::read_to_string(&state).unwrap(),
        format!("{LOG_ORIGIN} 3 {}\n", root_b64(&a_entries))
    );
    // Now both have 3 entries: the same-size fork again.
    let o = k.append(&b, true, Some(&w), &[]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("FORK_DETECTED"), "{o:?}");

    // A witness that does not know the log says so.
    let other_log = k.key("log", "other.log.test", "other-log.key");
    let (_w2, url2, _) = spawn_ready(
        &[
            "witness",
            "run",
            "--key",
            p(&k.path("witness.key")),
            "--log-key",
            &other_log,
            "--state",
            p(&k.path("witness2.state")),
            "--listen",
            "127.0.0.1:0",
        ],
        "witness listening on ",
    );
    let o = k.append(&a, true, Some(&format!("{url2}={w_vkey}")), &[]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("UNKNOWN_ORIGIN"), "{o:?}");
    assert!(o.stderr.contains("404"), "{o:?}");
    assert!(!k.path("witness2.state").exists());
}

// ---------------------------------------------------------------------------------------
// 4. serve and audit

fn audit(args: &[&str]) -> (i32, serde_json::Value, Out) {
    let mut a = vec!["log", "audit", "--json"];
    a.extend(args);
    let o = run(&a);
    let v = serde_json::from_str(o.stdout.trim()).unwrap_or(serde_json::Value::Null);
    (o.code, v, o)
}

fn finding_codes(v: &serde_json::Value) -> Vec<String> {
    v["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| f["code"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn log_serve_and_audit() {
    let k = Kit::new();
    let rel_vkey = k.key("release", RELEASE_NAME, "release.key");
    let other_rel = k.key("release", "other.release.test", "other.key");
    let log_vkey = k.key("log", LOG_ORIGIN, "log.key");
    let log = k.path("log");
    let mut entries = Vec::new();
    let mut files = Vec::new();
    for v in ["1.0.0", "1.1.0", "1.2.0"] {
        let (f, e) = k.release("release.key", v);
        files.push(f);
        entries.push(e);
    }
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    assert_eq!(k.append(&log, true, None, &refs).code, 0);
    let cp = assert_checkpoint(&log, &entries, &log_vkey, None);

    // An empty log: the checkpoint of the empty tree, and a clean audit.
    let empty = k.path("empty");
    let o = k.append(&empty, true, None, &[]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.is_empty());
    assert_checkpoint(&empty, &[], &log_vkey, None);
    let (code, v, o) = audit(&[
        "--log-key",
        &log_vkey,
        "--release-key",
        &rel_vkey,
        "--dir",
        p(&empty),
    ]);
    assert_eq!(code, 0, "{o:?}");
    assert_eq!(v["clean"], true);
    assert_eq!(v["size"], 0);
    assert_eq!(v["entries_checked"], 0);

    let (_server, url, before) = spawn_ready(
        &["log", "serve", "--dir", p(&log), "--listen", "127.0.0.1:0"],
        "log listening on ",
    );
    assert_eq!(before, [format!("serving log directory {}", log.display())]);
    let addr = url.strip_prefix("http://").expect("http URL").to_string();

    // The published files, byte for byte, with their content types.
    let (s, h, body) = http_get(&addr, "/checkpoint");
    assert_eq!(s, 200);
    assert_eq!(body, cp.bytes);
    assert_eq!(
        header(&h, "content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(header(&h, "cache-control"), Some("no-cache"));
    let (s, h, body) = http_get(&addr, "/tile/0/000.p/3");
    assert_eq!(s, 200);
    let leaves: Vec<u8> = entries.iter().flat_map(|e| leaf(e)).collect();
    assert_eq!(body, leaves);
    assert_eq!(header(&h, "content-type"), Some("application/octet-stream"));
    let (s, _, body) = http_get(&addr, "/tile/entries/000.p/3");
    assert_eq!(s, 200);
    assert_eq!(
        body,
        std::fs::read(log.join("tile/entries/000.p/3")).unwrap()
    );
    assert!(body.ends_with(&entries[2]));
    // Nothing else is reachable.
    for path in [
        "/tile/../checkpoint",
        "/tile/%2e%2e/checkpoint",
        "/tile/0/../../checkpoint",
        "/tile/0/000.p/3/../../../../checkpoint",
        "/tile/entries/../../.lock",
        "/tile/%2E%2E/.lock",
        "/.lock",
        "/checkpoint/../.lock",
        "/tile/0/000",
        "/tile/0/0.p/3",
        "/tile/0/000.p/03",
        "/tile/0/000.p/2",
        "/tile/1/000.p/3",
        "/tile/entries/000",
    ] {
        let (s, _, _) = http_get(&addr, path);
        assert_eq!(s, 404, "{path}");
    }

    // Clean audits over HTTP and from the directory agree.
    let base = ["--log-key", &log_vkey, "--release-key", &rel_vkey];
    let (code, via_url, o) = audit(&[&base[..], &["--url", url.as_str()][..]].concat());
    assert_eq!(code, 0, "{o:?}");
    assert_eq!(via_url["clean"], true, "{via_url}");
    assert_eq!(via_url["entries_checked"], 3);
    assert_eq!(via_url["size"], 3);
    assert_eq!(via_url["origin"], LOG_ORIGIN);
    assert_eq!(via_url["root"], root_b64(&entries).as_str());
    assert_eq!(via_url["findings"], serde_json::json!([]));
    let dir_args = [&base[..], &["--dir", p(&log)][..]].concat();
    let (code, via_dir, o) = audit(&dir_args);
    assert_eq!(code, 0, "{o:?}");
    assert_eq!(via_dir, via_url);
    let o = run([&["log", "audit"][..], &dir_args[..]].concat());
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout
            .starts_with(&format!("log {LOG_ORIGIN}: size 3, 3 entries and ")),
        "{o:?}"
    );
    assert!(o.stdout.contains("\nclean: "), "{o:?}");

    // Another log key: the checkpoint itself is rejected.
    let evil = k.key("log", LOG_ORIGIN, "evil.key");
    let (code, _, o) = audit(&[
        "--log-key",
        &evil,
        "--release-key",
        &rel_vkey,
        "--dir",
        p(&log),
    ]);
    assert_eq!(code, 10, "{o:?}");
    assert!(o.stderr.contains("checkpoint rejected"), "{o:?}");
    // Another release key: every entry is rejected.
    let (code, v, o) = audit(&[
        "--log-key",
        &log_vkey,
        "--release-key",
        &other_rel,
        "--url",
        &url,
    ]);
    assert_eq!(code, 10, "{o:?}");
    assert_eq!(v["clean"], false);
    assert_eq!(finding_codes(&v), ["ENTRY_REJECTED"; 3]);

    // Tampering with a copy of the directory.
    let tamper = |name: &str, f: &dyn Fn(&Path)| -> serde_json::Value {
        let copy = k.path(name);
        copy_dir(&log, &copy);
        f(&copy);
        let (code, v, o) = audit(&[&base[..], &["--dir", p(&copy)][..]].concat());
        assert_eq!(code, 10, "{name}: {o:?}");
        assert_eq!(v["clean"], false, "{name}: {v}");
        v
    };
    let leaf_tile = |d: &Path| d.join("tile/0/000.p/3");
    let v = tamper("tile-byte", &|d| flip_byte(&leaf_tile(d), 40));
    assert_eq!(finding_codes(&v), ["TILE_MISMATCH"], "{v}");
    assert_eq!(v["entries_checked"], 3);
    let v = tamper("tile-gone", &|d| {
        std::fs::remove_file(leaf_tile(d)).unwrap()
    });
    assert_eq!(finding_codes(&v), ["TILE_MISSING"], "{v}");
    let v = tamper("tile-short", &|d| {
        let t = leaf_tile(d);
        let b = std::fs::read(&t).unwrap();
        std::fs::write(&t, &b[..64]).unwrap();
    });
    assert!(
        finding_codes(&v).contains(&"TILE_MALFORMED".to_string()),
        "{v}"
    );
    // A changed entry (byte in the manifest text of entry 1).
    let v = tamper("entry-byte", &|d| {
        let b = d.join("tile/entries/000.p/3");
        let at = 2 + entries[0].len() + 2 + 40;
        flip_byte(&b, at);
    });
    assert!(
        finding_codes(&v).contains(&"ENTRY_MISMATCH".to_string()),
        "{v}"
    );
    // A tampered copy served over HTTP is caught the same way.
    let copy = k.path("tile-byte");
    let (_server2, url2, _) = spawn_ready(
        &["log", "serve", "--dir", p(&copy), "--listen", "127.0.0.1:0"],
        "log listening on ",
    );
    let (code, v, o) = audit(&[&base[..], &["--url", url2.as_str()][..]].concat());
    assert_eq!(code, 10, "{o:?}");
    assert_eq!(finding_codes(&v), ["TILE_MISMATCH"], "{v}");

    // Entries that are not releases by the trusted key: raw bytes appended with the
    // library, and a well-formed release by another key appended without --release-key.
    {
        let secret = std::fs::read_to_string(k.path("log.key")).unwrap();
        let signer = Ed25519Signer::from_private_key(secret.trim()).unwrap();
        let l = sotto_log::Log::open(&log, LOG_ORIGIN, signer).unwrap();
        assert_eq!(l.append(b"not a release manifest").unwrap(), 3);
    }
    let (foreign, foreign_bytes) = k.release("other.key", "6.6.6");
    let o = k.append(&log, false, None, &[&foreign]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stderr.contains("warning: no --release-key"), "{o:?}");
    assert_eq!(o.stdout, format!("{} -> index 4\n", foreign.display()));
    entries.push(b"not a release manifest".to_vec());
    entries.push(foreign_bytes);
    assert_checkpoint(&log, &entries, &log_vkey, None);
    for how in [["--url", url.as_str()], ["--dir", p(&log)]] {
        let (code, v, o) = audit(&[&base[..], &how[..]].concat());
        assert_eq!(code, 10, "{o:?}");
        assert_eq!(v["clean"], false);
        assert_eq!(v["size"], 5);
        assert_eq!(v["entries_checked"], 5);
        assert_eq!(
            finding_codes(&v),
            ["ENTRY_REJECTED", "ENTRY_REJECTED"],
            "{v}"
        );
        let details: Vec<&str> = v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["detail"].as_str().unwrap())
            .collect();
        assert!(details[0].contains("index: 3"), "{details:?}");
        assert!(details[1].contains("index: 4"), "{details:?}");
        assert!(
            details[1].contains("RELEASE_SIGNATURE_INVALID"),
            "{details:?}"
        );
    }
    // Trusting both release keys leaves only the raw entry.
    let (code, v, o) = audit(&[
        "--log-key",
        &log_vkey,
        "--release-key",
        &rel_vkey,
        "--release-key",
        &other_rel,
        "--dir",
        p(&log),
    ]);
    assert_eq!(code, 10, "{o:?}");
    assert_eq!(finding_codes(&v), ["ENTRY_REJECTED"], "{v}");
}

/// Entry bundle bytes (c2sp.org/tlog-tiles): each entry prefixed by its u16 BE length.
fn bundle(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        out.extend_from_slice(&u16::try_from(e.len()).unwrap().to_be_bytes());
        out.extend_from_slice(e);
    }
    out
}

#[test]
fn log_past_a_full_tile_is_witnessed_served_and_audited() {
    let k = Kit::new();
    let rel_vkey = k.key("release", RELEASE_NAME, "release.key");
    let log_vkey = k.key("log", LOG_ORIGIN, "log.key");
    let w_vkey = k.key("witness", WITNESS_NAME, "witness.key");
    let state = k.path("witness.state");
    let (_witness, w) = k.witness(&state, &w_vkey);
    // 300 distinct signed releases (the CLI's signing is checked byte for byte above).
    let manifest = std::fs::read_to_string(k.manifest("1.0.0")).unwrap();
    let mut files = Vec::new();
    let mut entries = Vec::new();
    for i in 0..300 {
        let text = manifest.replacen("version 1.0.0\n", &format!("version 1.0.{i}\n"), 1);
        let bytes = signed_note_by(&k.path("release.key"), &text);
        let f = k.path(&format!("r{i}.signed"));
        std::fs::write(&f, &bytes).unwrap();
        files.push(f);
        entries.push(bytes);
    }
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let log = k.path("log");
    let o = k.append(&log, true, Some(&w), &refs[..2]);
    assert_eq!(o.code, 0, "{o:?}");
    // The witness was at 2: it needs a consistency proof 2 -> 300 across tile levels.
    let o = k.append(&log, true, Some(&w), &refs[2..]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(o.stdout.lines().count(), 298);
    assert_eq!(
        o.stdout.lines().last().unwrap(),
        format!("{} -> index 299", files[299].display())
    );
    assert_checkpoint(&log, &entries, &log_vkey, Some(&w_vkey));
    assert_eq!(
        std::fs::read_to_string(&state).unwrap(),
        format!("{LOG_ORIGIN} 300 {}\n", root_b64(&entries))
    );

    // The files: full level-0 tile and bundle (their partial versions gone), the right
    // edge, and the level-1 tile holding the root of the first full tile.
    let leaves: Vec<[u8; 32]> = entries.iter().map(|e| leaf(e)).collect();
    let read = |rel: &str| std::fs::read(log.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    assert_eq!(read("tile/0/000"), leaves[..256].concat());
    assert_eq!(read("tile/0/001.p/44"), leaves[256..].concat());
    assert_eq!(read("tile/1/000.p/1"), mth(&leaves[..256]));
    assert_eq!(read("tile/entries/000"), bundle(&entries[..256]));
    assert_eq!(read("tile/entries/001.p/44"), bundle(&entries[256..]));
    assert!(!log.join("tile/0/000.p").exists());
    assert!(!log.join("tile/entries/000.p").exists());

    let (_server, url, _) = spawn_ready(
        &["log", "serve", "--dir", p(&log), "--listen", "127.0.0.1:0"],
        "log listening on ",
    );
    let addr = url.strip_prefix("http://").unwrap();
    let (s, h, body) = http_get(addr, "/tile/0/000");
    assert_eq!(s, 200);
    assert_eq!(body, leaves[..256].concat());
    assert_eq!(
        header(&h, "cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    let (s, h, body) = http_get(addr, "/tile/1/000.p/1");
    assert_eq!(s, 200);
    assert_eq!(body, mth(&leaves[..256]));
    assert_eq!(header(&h, "cache-control"), Some("no-cache"));
    let (s, _, body) = http_get(addr, "/tile/entries/001.p/44");
    assert_eq!(s, 200);
    assert_eq!(body, bundle(&entries[256..]));

    let base = [
        "--log-key",
        log_vkey.as_str(),
        "--release-key",
        rel_vkey.as_str(),
    ];
    let slash = format!("{url}/");
    for how in [["--url", slash.as_str()], ["--dir", p(&log)]] {
        let (code, v, o) = audit(&[&base[..], &how[..]].concat());
        assert_eq!(code, 0, "{how:?}: {o:?}");
        assert_eq!(v["clean"], true);
        assert_eq!(v["size"], 300);
        assert_eq!(v["entries_checked"], 300);
    }
    // A flipped byte in the full tile is found there.
    let copy = k.path("copy");
    copy_dir(&log, &copy);
    flip_byte(&copy.join("tile/0/000"), 32 * 200);
    let (code, v, o) = audit(&[&base[..], &["--dir", p(&copy)][..]].concat());
    assert_eq!(code, 10, "{o:?}");
    assert_eq!(finding_codes(&v), ["TILE_MISMATCH"], "{v}");
    assert!(
        v["findings"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("position: 200"),
        "{v}"
    );
}

#[test]
fn one_witness_keeps_separate_state_for_several_logs() {
    let k = Kit::new();
    k.key("release", RELEASE_NAME, "release.key");
    let log_a = k.key("log", LOG_ORIGIN, "log.key");
    let log_b = k.key("log", "second.log.test", "log-b.key");
    let w_vkey = k.key("witness", WITNESS_NAME, "witness.key");
    let state = k.path("witness.state");
    let start = || {
        let (proc, url, _) = spawn_ready(
            &[
                "witness",
                "run",
                "--key",
                p(&k.path("witness.key")),
                "--log-key",
                p(&k.path("log.key.vkey")),
                "--log-key",
                &log_b,
                "--state",
                p(&state),
                "--listen",
                "127.0.0.1:0",
            ],
            "witness listening on ",
        );
        // The verifier key given as a file.
        (proc, format!("{url}={}", p(&k.path("witness.key.vkey"))))
    };
    let (witness, w) = start();
    let (r1, e1) = k.release("release.key", "1.0.0");
    let (r2, e2) = k.release("release.key", "1.1.0");
    let (r3, e3) = k.release("release.key", "1.2.0");
    let a = k.path("log-a");
    let b = k.path("log-b");
    assert_eq!(k.append(&a, true, Some(&w), &[&r1]).code, 0);
    let o = k.append_as("log-b.key", &b, true, Some(&w), &[&r2, &r3]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_checkpoint(&a, std::slice::from_ref(&e1), &log_a, Some(&w_vkey));
    let b_entries = vec![e2.clone(), e3.clone()];
    let b_cp = read_checkpoint(&b);
    assert_eq!(
        b_cp.text,
        format!("second.log.test\n2\n{}\n", root_b64(&b_entries))
    );
    CheckpointPolicy::new("second.log.test", VerifierKey::parse(&log_b).unwrap())
        .unwrap()
        .with_witnesses(vec![VerifierKey::parse(&w_vkey).unwrap()], 1)
        .unwrap()
        .verify(&b_cp.bytes, now())
        .expect("log B cosigned");
    let mut lines: Vec<String> = std::fs::read_to_string(&state)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    let line_a1 = format!("{LOG_ORIGIN} 1 {}", root_b64(std::slice::from_ref(&e1)));
    let line_b2 = format!("second.log.test 2 {}", root_b64(&b_entries));
    let mut want = vec![line_a1, line_b2.clone()];
    want.sort();
    assert_eq!(lines, want);

    // After a restart, both logs' heads are remembered: A grows, B cannot fork.
    drop(witness);
    let (_witness, w) = start();
    let o = k.append(&a, true, Some(&w), &[&r2]);
    assert_eq!(o.code, 0, "{o:?}");
    let a_entries = vec![e1, e2.clone()];
    assert_checkpoint(&a, &a_entries, &log_a, Some(&w_vkey));
    let mut lines: Vec<String> = std::fs::read_to_string(&state)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    let mut want = vec![format!("{LOG_ORIGIN} 2 {}", root_b64(&a_entries)), line_b2];
    want.sort();
    assert_eq!(lines, want);
    let fork = k.path("log-b-fork");
    let o = k.append_as("log-b.key", &fork, true, None, &[&r3, &r2]);
    assert_eq!(o.code, 0, "{o:?}");
    let o = k.append_as("log-b.key", &fork, true, Some(&w), &[]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("FORK_DETECTED"), "{o:?}");
}

#[test]
fn every_witness_is_asked_even_when_one_fails() {
    let k = Kit::new();
    k.key("release", RELEASE_NAME, "release.key");
    let log_vkey = k.key("log", LOG_ORIGIN, "log.key");
    let w_vkey = k.key("witness", WITNESS_NAME, "witness.key");
    let (_witness, w) = k.witness(&k.path("witness.state"), &w_vkey);
    // A witness URL nobody listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let dead_w = format!("http://{dead}={w_vkey}");
    let (r1, e1) = k.release("release.key", "1.0.0");
    let log = k.path("log");
    let mut args: Vec<String> = [
        "log",
        "append",
        "--dir",
        p(&log),
        "--key",
        p(&k.path("log.key")),
        "--release-key",
        p(&k.path("release.key.vkey")),
        "--witness",
        &dead_w,
        "--witness",
        &w,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(p(&r1).to_string());
    let o = run(&args);
    // The failure is reported, with what was appended...
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains(&format!("http://{dead}")), "{o:?}");
    assert!(
        o.stderr
            .starts_with("error: appended index 0; log size 1, not cosigned by every witness"),
        "{o:?}"
    );
    // ... and the working witness still cosigned.
    assert_checkpoint(&log, std::slice::from_ref(&e1), &log_vkey, Some(&w_vkey));

    // Two live witnesses: both cosignatures end up in the checkpoint.
    let w2_vkey = k.key("witness", "sotto-witness2.test", "witness2.key");
    let (_witness2, url2) = start_witness(
        &k.path("witness2.key"),
        &[&log_vkey],
        &k.path("witness2.state"),
    );
    let (r2, e2) = k.release("release.key", "1.1.0");
    args.pop();
    args[9] = format!("{url2}={w2_vkey}");
    args.push(p(&r2).to_string());
    let o = run(&args);
    assert_eq!(o.code, 0, "{o:?}");
    let entries = [e1, e2];
    let cp = read_checkpoint(&log);
    assert_eq!(
        cp.text,
        format!("{LOG_ORIGIN}\n2\n{}\n", root_b64(&entries))
    );
    let names: Vec<&str> = cp.sigs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, [LOG_ORIGIN, "sotto-witness2.test", WITNESS_NAME]);
    let v = CheckpointPolicy::new(LOG_ORIGIN, VerifierKey::parse(&log_vkey).unwrap())
        .unwrap()
        .with_witnesses(
            vec![
                VerifierKey::parse(&w_vkey).unwrap(),
                VerifierKey::parse(&w2_vkey).unwrap(),
            ],
            2,
        )
        .unwrap()
        .verify(&cp.bytes, now())
        .expect("cosigned by both witnesses");
    assert_eq!(v.cosignatures.len(), 2);
}

/// `sotto witness run` with explicit log keys; returns the process and its URL.
fn start_witness(key: &Path, log_keys: &[&str], state: &Path) -> (Proc, String) {
    let mut args: Vec<String> = vec![
        "witness".into(),
        "run".into(),
        "--key".into(),
        p(key).into(),
    ];
    for k in log_keys {
        args.push("--log-key".into());
        args.push(k.to_string());
    }
    args.extend([
        "--state".into(),
        p(state).into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
    ]);
    let (proc, url, _) = spawn_ready(&args, "witness listening on ");
    (proc, url)
}

#[test]
fn witness_accepts_every_key_of_a_log_and_keeps_heads_of_logs_it_no_longer_serves() {
    let k = Kit::new();
    k.key("release", RELEASE_NAME, "release.key");
    // Two keys for one log (key rotation), and a second log.
    let key1 = k.key("log", LOG_ORIGIN, "log.key");
    let key2 = k.key("log", LOG_ORIGIN, "log-new.key");
    let other = k.key("log", "other.log.test", "other-log.key");
    let w_vkey = k.key("witness", WITNESS_NAME, "witness.key");
    let state = k.path("witness.state");
    let wkey = k.path("witness.key");
    let (r1, e1) = k.release("release.key", "1.0.0");
    let (r2, e2) = k.release("release.key", "1.1.0");
    let (r3, _) = k.release("release.key", "1.2.0");

    let (witness, url) = start_witness(&wkey, &[&key1, &key2], &state);
    let w = format!("{url}={w_vkey}");
    let a = k.path("log-a");
    let o = k.append(&a, true, Some(&w), &[&r1]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_checkpoint(&a, std::slice::from_ref(&e1), &key1, Some(&w_vkey));
    // The same log, now signed with its new key (a copy of the directory re-signed:
    // a log directory is opened with the key that signed its checkpoint).
    let a2 = k.path("log-a2");
    let o = k.append_as("log-new.key", &a2, true, None, &[&r1, &r2]);
    assert_eq!(o.code, 0, "{o:?}");
    let o = k.append_as("log-new.key", &a2, true, Some(&w), &[]);
    assert_eq!(
        o.code, 0,
        "the witness must accept the log's second key: {o:?}"
    );
    assert_eq!(
        std::fs::read_to_string(&state).unwrap(),
        format!("{LOG_ORIGIN} 2 {}\n", root_b64(&[e1.clone(), e2.clone()]))
    );
    drop(witness);

    // Reconfigured for the other log only: the first log's head must stay in the state
    // file, so that re-adding it later still refuses forks of it.
    let (witness, url) = start_witness(&wkey, &[&other], &state);
    let o = k.append_as(
        "other-log.key",
        &k.path("log-other"),
        true,
        Some(&format!("{url}={w_vkey}")),
        &[&r3],
    );
    assert_eq!(o.code, 0, "{o:?}");
    let text = std::fs::read_to_string(&state).unwrap();
    assert!(
        text.contains(&format!(
            "{LOG_ORIGIN} 2 {}\n",
            root_b64(&[e1.clone(), e2.clone()])
        )),
        "{text}"
    );
    assert!(text.contains("other.log.test 1 "), "{text}");
    drop(witness);
    let (_witness, url) = start_witness(&wkey, &[&key1, &other], &state);
    let fork = k.path("log-fork");
    assert_eq!(k.append(&fork, true, None, &[&r1, &r3]).code, 0);
    let o = k.append(&fork, true, Some(&format!("{url}={w_vkey}")), &[]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("FORK_DETECTED"), "{o:?}");
}

/// Runs `sotto ARGS` that must exit on its own within 20 s (killed otherwise: code -1).
fn run_bounded(args: &[&str]) -> Out {
    let mut child = sotto()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sotto");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn witness_state_problems_stop_it_instead_of_forgetting() {
    let k = Kit::new();
    k.key("release", RELEASE_NAME, "release.key");
    let log_vkey = k.key("log", LOG_ORIGIN, "log.key");
    let w_vkey = k.key("witness", WITNESS_NAME, "witness.key");
    let state = k.path("witness.state");
    let wkey = k.path("witness.key");
    let witness_args = |state: &Path| {
        let args: Vec<String> = [
            "witness",
            "run",
            "--key",
            p(&wkey),
            "--log-key",
            &log_vkey,
            "--state",
            p(state),
            "--listen",
            "127.0.0.1:0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args
    };
    // An unreadable state file refuses to start (rather than starting from scratch).
    let root = root_b64(&[]);
    for (content, want) in [
        ("garbage\n".to_string(), "expected ORIGIN SIZE ROOT"),
        (format!("{LOG_ORIGIN} two {root}\n"), "bad size"),
        (format!("{LOG_ORIGIN} 2 AAAA\n"), "bad root"),
        (
            format!("{LOG_ORIGIN} 0 {}\n", "A".repeat(43) + "="),
            "log keys of",
        ),
    ] {
        std::fs::write(&state, &content).unwrap();
        let args = witness_args(&state);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = run_bounded(&args);
        assert_eq!(o.code, 1, "{content:?}: {o:?}");
        assert!(o.stderr.contains(want), "{content:?}: want {want:?}: {o:?}");
    }
    // A state that cannot be written: no cosignature leaves the witness.
    let unwritable = k.path("no-such-dir").join("witness.state");
    let args = witness_args(&unwritable);
    let (witness, url, _) = spawn_ready(&args, "witness listening on ");
    let (r1, e1) = k.release("release.key", "1.0.0");
    let log = k.path("log");
    let o = k.append(&log, true, Some(&format!("{url}={w_vkey}")), &[&r1]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("500"), "{o:?}");
    assert!(o.stderr.contains("STATE_NOT_PERSISTED"), "{o:?}");
    assert_checkpoint(&log, std::slice::from_ref(&e1), &log_vkey, None);
    drop(witness);
    // With a good state file all is well.
    std::fs::remove_file(&state).unwrap();
    let (_witness, w) = k.witness(&state, &w_vkey);
    let o = k.append(&log, true, Some(&w), &[]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_checkpoint(&log, &[e1], &log_vkey, Some(&w_vkey));
}

type Requests = std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>;

/// A scripted witness's answers: (HTTP status, content type, body).
type Script = Vec<(u16, &'static str, Vec<u8>)>;

/// A scripted witness: the n-th request gets `script[min(n, last)]` as (status,
/// content type, body). Returns its base URL and the request bodies it received.
fn fake_witness(script: Script) -> (String, Requests) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests: Requests = Default::default();
    let rec = requests.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { break };
            let mut buf = Vec::new();
            let mut byte = [0u8; 1];
            while !buf.ends_with(b"\r\n\r\n") {
                if conn.read(&mut byte).unwrap_or(0) == 0 {
                    break;
                }
                buf.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            let mut body = vec![0u8; len];
            if conn.read_exact(&mut body).is_err() {
                continue;
            }
            let n = {
                let mut r = rec.lock().unwrap();
                r.push(body);
                r.len() - 1
            };
            let (status, ctype, reply) = &script[n.min(script.len() - 1)];
            let _ = write!(
                conn,
                "HTTP/1.1 {status} X\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                reply.len()
            );
            let _ = conn.write_all(reply);
        }
    });
    (url, requests)
}

#[test]
fn log_append_handles_witness_answers_strictly() {
    let k = Kit::new();
    k.key("release", RELEASE_NAME, "release.key");
    let log_vkey = k.key("log", LOG_ORIGIN, "log.key");
    let w_vkey = k.key("witness", WITNESS_NAME, "witness.key");
    let cosigner = sotto_log::Cosigner::from_private_key(
        std::fs::read_to_string(k.path("witness.key"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    let log = k.path("log");
    let mut files = Vec::new();
    let mut entries = Vec::new();
    for v in ["1.0.0", "1.1.0", "1.2.0"] {
        let (f, e) = k.release("release.key", v);
        files.push(f);
        entries.push(e);
    }
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    assert_eq!(k.append(&log, true, None, &refs).code, 0);
    let cp = assert_checkpoint(&log, &entries, &log_vkey, None);
    let good_line = cosigner.cosign_text(&cp.text, now()).unwrap().to_line();
    let forged_line = cosigner
        .cosign_text(&format!("{LOG_ORIGIN}\n3\n{}\n", root_b64(&[])), now())
        .unwrap()
        .to_line();
    let size = "text/x.tlog.size";
    let plain = "text/plain";
    let first_request = [b"old 0\n\n".as_slice(), &cp.bytes].concat();

    let cases: Vec<(Script, &str, usize)> = vec![
        (
            vec![(200, plain, b"garbage\n".to_vec())],
            "bad cosignature lines",
            1,
        ),
        (
            // A witness cannot make the log's tooling allocate without bound.
            vec![(200, plain, vec![b'a'; 200 * 1024])],
            "response larger than 64 KiB",
            1,
        ),
        (
            vec![(200, plain, forged_line.into_bytes())],
            "COSIGNATURE_INVALID",
            1,
        ),
        (
            vec![(409, size, b"5\n".to_vec())],
            "has cosigned a larger tree (5)",
            1,
        ),
        (
            vec![(409, size, b"three\n".to_vec())],
            "bad size in conflict response",
            1,
        ),
        (vec![(409, size, b"0\n".to_vec())], "could not agree", 2),
        (
            vec![(409, plain, b"FORK_DETECTED\n".to_vec())],
            "HTTP 409 Conflict: FORK_DETECTED",
            1,
        ),
        (
            vec![(503, plain, b"busy\n".to_vec())],
            "HTTP 503 Service Unavailable: busy",
            1,
        ),
    ];
    for (script, want, n) in cases {
        let (url, requests) = fake_witness(script);
        let o = k.append(&log, true, Some(&format!("{url}={w_vkey}")), &[]);
        assert_eq!(o.code, 1, "{want}: {o:?}");
        assert!(o.stderr.contains(want), "want {want:?}: {o:?}");
        assert_eq!(
            read_checkpoint(&log).bytes,
            cp.bytes,
            "{want}: checkpoint changed"
        );
        let r = requests.lock().unwrap();
        assert_eq!(r.len(), n, "{want}");
        for body in r.iter() {
            assert_eq!(body, &first_request, "{want}");
        }
    }

    // A witness at size 1 gets the consistency proof 1 -> 3: [leaf 1, leaf 2].
    let (url, requests) = fake_witness(vec![
        (409, size, b"1\n".to_vec()),
        (200, plain, good_line.into_bytes()),
    ]);
    let o = k.append(&log, true, Some(&format!("{url}={w_vkey}")), &[]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_checkpoint(&log, &entries, &log_vkey, Some(&w_vkey));
    let r = requests.lock().unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!(r[0], first_request);
    let b64 = |h: [u8; 32]| base64::engine::general_purpose::STANDARD.encode(h);
    let second = format!(
        "old 1\n{}\n{}\n\n",
        b64(leaf(&entries[1])),
        b64(leaf(&entries[2]))
    );
    assert_eq!(r[1], [second.as_bytes(), &cp.bytes].concat());
}

#[test]
fn concurrent_appends_all_land_once() {
    let k = Kit::new();
    let rel_vkey = k.key("release", RELEASE_NAME, "release.key");
    let log_vkey = k.key("log", LOG_ORIGIN, "log.key");
    let log = k.path("log");
    // Create the log first, then race four appenders.
    assert_eq!(k.append(&log, true, None, &[]).code, 0);
    let releases: Vec<(PathBuf, Vec<u8>)> = (0..4)
        .map(|i| k.release("release.key", &format!("3.0.{i}")))
        .collect();
    let children: Vec<Child> = releases
        .iter()
        .map(|(f, _)| {
            sotto()
                .args([
                    "log",
                    "append",
                    "--dir",
                    p(&log),
                    "--key",
                    p(&k.path("log.key")),
                    "--release-key",
                    &rel_vkey,
                    p(f),
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut indexes = Vec::new();
    for (c, (f, _)) in children.into_iter().zip(&releases) {
        let out = c.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let i: usize = stdout
            .trim()
            .strip_prefix(&format!("{} -> index ", f.display()))
            .unwrap_or_else(|| panic!("{stdout}"))
            .parse()
            .unwrap();
        indexes.push(i);
    }
    let mut sorted = indexes.clone();
    sorted.sort();
    assert_eq!(sorted, [0, 1, 2, 3]);
    // The log holds each release at the index its appender printed.
    let mut entries = vec![Vec::new(); 4];
    for (i, (_, e)) in indexes.iter().zip(&releases) {
        entries[*i] = e.clone();
    }
    assert_checkpoint(&log, &entries, &log_vkey, None);
    assert_eq!(
        std::fs::read(log.join("tile/entries/000.p/4")).unwrap(),
        bundle(&entries)
    );
    let (code, v, o) = audit(&[
        "--log-key",
        &log_vkey,
        "--release-key",
        &rel_vkey,
        "--dir",
        p(&log),
    ]);
    assert_eq!(code, 0, "{o:?}");
    assert_eq!(v["entries_checked"], 4);
}
