//! Helpers for process-level tests: spawn `sotto` subcommands, record bytes on the wire.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const PROMPT: &str = "Once upon a time, there was a little girl named Lily.";

pub fn shared() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared"))
}

pub fn model_dir() -> PathBuf {
    shared().join("models/stories260K")
}

/// The reference greedy text quoted in the model's README (indented block).
pub fn reference_text() -> String {
    let readme = std::fs::read_to_string(model_dir().join("README.md")).expect("model README");
    let lines: Vec<&str> = readme
        .lines()
        .skip_while(|l| !l.starts_with("## Reference output"))
        .filter(|l| l.starts_with("    ") && !l.trim_start().starts_with("./run"))
        .map(|l| &l[4..])
        .collect();
    assert!(lines.len() >= 2, "reference text not found in README");
    lines.join("\n")
}

pub fn sotto() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sotto"));
    c.env("SOTTO_LOG", "warn")
        .env_remove("SOTTO_RELAY")
        .env_remove("SOTTO_SIM_ROOT")
        .env_remove("SOTTO_ALLOW_SIMULATED");
    c
}

/// A child process killed on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns `sotto ARGS` and waits for a stdout line starting with `prefix`; returns the rest.
pub fn spawn_until(args: &[&str], prefix: &str) -> (Proc, String) {
    let mut child = sotto()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn sotto");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let prefix = prefix.to_string();
    std::thread::spawn(move || {
        let mut found = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let (false, Some(rest)) = (found, line.trim_start().strip_prefix(prefix.as_str())) {
                found = true;
                let _ = tx.send(rest.trim().to_string());
            }
        }
    });
    let value = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("process did not become ready");
    (Proc(child), value)
}

pub struct Enclave {
    pub proc: Proc,
    pub addr: String,
    pub state: tempfile::TempDir,
}

impl Enclave {
    pub fn sim_root(&self) -> String {
        std::fs::read_to_string(self.state.path().join("sim-root.sha256"))
            .unwrap()
            .trim()
            .to_string()
    }
}

pub fn start_enclave() -> Enclave {
    let state = tempfile::tempdir().unwrap();
    let m = model_dir();
    let (proc, addr) = spawn_until(
        &[
            "enclave",
            "--listen",
            "127.0.0.1:0",
            "--model",
            m.join("stories260K.bin").to_str().unwrap(),
            "--tokenizer",
            m.join("tok512.bin").to_str().unwrap(),
            "--state-dir",
            state.path().to_str().unwrap(),
            "--sim-rsa-bits",
            "2048",
            "--tee",
            "simulated",
        ],
        "enclave listening on ",
    );
    Enclave { proc, addr, state }
}

pub fn start_relay(enclave_addr: &str) -> (Proc, String) {
    spawn_until(
        &[
            "relay",
            "--listen",
            "127.0.0.1:0",
            "--enclave",
            enclave_addr,
        ],
        "relay listening on ",
    )
}

type Bytes = Arc<Mutex<Vec<u8>>>;

/// Everything that crossed a recording proxy: per connection, (to server, to client).
#[derive(Clone, Default)]
pub struct Recording {
    pub conns: Arc<Mutex<Vec<(Bytes, Bytes)>>>,
}

impl Recording {
    /// All bytes, both directions, all connections.
    pub fn all(&self) -> Vec<u8> {
        let mut v = Vec::new();
        for (a, b) in self.conns.lock().unwrap().iter() {
            v.extend_from_slice(&a.lock().unwrap());
            v.extend_from_slice(&b.lock().unwrap());
        }
        v
    }

    /// Client-to-server bytes of each connection that began with `prefix`.
    pub fn to_server_of(&self, prefix: &[u8]) -> Vec<Vec<u8>> {
        self.conns
            .lock()
            .unwrap()
            .iter()
            .map(|(a, _)| a.lock().unwrap().clone())
            .filter(|a| a.starts_with(prefix))
            .collect()
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    rec: Arc<Mutex<Vec<u8>>>,
) {
    let mut buf = vec![0u8; 65536];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                rec.lock().unwrap().extend_from_slice(&buf[..n]);
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown().await;
}

/// A TCP proxy on 127.0.0.1 that records every byte both ways (runs on its own thread).
pub fn recording_proxy(target: &str) -> (SocketAddr, Recording) {
    let rec = Recording::default();
    let r2 = rec.clone();
    let target = target.to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            while let Ok((c, _)) = l.accept().await {
                let Ok(s) = TcpStream::connect(&target).await else {
                    continue;
                };
                let up = Arc::new(Mutex::new(Vec::new()));
                let down = Arc::new(Mutex::new(Vec::new()));
                r2.conns.lock().unwrap().push((up.clone(), down.clone()));
                let (cr, cw) = c.into_split();
                let (sr, sw) = s.into_split();
                tokio::spawn(pipe(cr, sw, up));
                tokio::spawn(pipe(sr, cw, down));
            }
        });
    });
    (rx.recv().unwrap(), rec)
}

/// Counts WebSocket data messages (binary or text) in a client→server byte stream that
/// starts with the HTTP upgrade request.
pub fn count_ws_client_messages(stream: &[u8]) -> usize {
    let Some(start) = stream.windows(4).position(|w| w == b"\r\n\r\n") else {
        return 0;
    };
    let mut b = &stream[start + 4..];
    let mut count = 0;
    while b.len() >= 2 {
        let opcode = b[0] & 0x0f;
        let masked = b[1] & 0x80 != 0;
        let mut len = (b[1] & 0x7f) as usize;
        let mut off = 2;
        if len == 126 {
            len = u16::from_be_bytes([b[2], b[3]]) as usize;
            off = 4;
        } else if len == 127 {
            len = u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize;
            off = 10;
        }
        if masked {
            off += 4;
        }
        if b.len() < off + len {
            break;
        }
        if opcode == 1 || opcode == 2 {
            count += 1;
        }
        b = &b[off + len..];
    }
    count
}

fn b64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Encodings of `secret` that a leak could take.
pub fn encodings(secret: &str) -> Vec<Vec<u8>> {
    let mut out = vec![secret.as_bytes().to_vec()];
    out.push(
        serde_json::to_string(secret)
            .unwrap()
            .trim_matches('"')
            .as_bytes()
            .to_vec(),
    );
    out.push(hex_lower(secret.as_bytes()).into_bytes());
    out.push(
        secret
            .encode_utf16()
            .flat_map(|u| u.to_le_bytes())
            .collect(),
    );
    out.push(secret.to_lowercase().into_bytes());
    // Base64 at each of the three alignments; drop the edge characters that depend on
    // neighbouring bytes.
    for pad in 0..3 {
        let mut v = vec![0u8; pad];
        v.extend_from_slice(secret.as_bytes());
        let enc = b64(&v);
        let skip = if pad == 0 { 0 } else { 4 };
        let core = &enc[skip..enc.len().saturating_sub(4)];
        if core.len() >= 8 {
            out.push(core.as_bytes().to_vec());
        }
    }
    out
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The leaks of `text` (whole, and every word of at least 5 letters) found in `haystack`.
pub fn leaks(haystack: &[u8], text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut secrets: Vec<String> = vec![text.to_string()];
    for w in text.split(|c: char| !c.is_alphanumeric() && c != '\'') {
        if w.chars().count() >= 5 && !secrets.iter().any(|s| s == w) {
            secrets.push(w.to_string());
        }
    }
    for s in &secrets {
        for enc in encodings(s) {
            if enc.len() >= 5 && haystack.windows(enc.len()).any(|win| win == enc.as_slice()) {
                found.push(format!("{s:?} as {:?}", String::from_utf8_lossy(&enc)));
                break;
            }
        }
    }
    found
}

pub fn output(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().expect("run sotto");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn ask_args<'a>(relay: &'a str, extra: &[&'a str]) -> Vec<String> {
    let mut v: Vec<String> = vec!["ask".into(), "--relay".into(), relay.into()];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}
