//! Overhead of the private path as an OpenAI client sees it, side by side in one run:
//!
//! - plaintext: HTTP client → `sotto serve` (plain OpenAI server) → engine
//! - private:   HTTP client → `sotto gateway` → relay → enclave (simulated TEE) → engine,
//!   the stack started by `sotto up`
//!
//! Every part is a real `sotto` process on loopback, as a user runs them; the client is
//! one `reqwest` client with keep-alive connections (as the OpenAI SDKs pool theirs), and
//! the two paths are measured alternately (ABAB…) so machine noise hits both equally.
//! Reports time to first token (TTFT), streaming tokens/s and whole-request time.
//!
//! ```sh
//! cargo build --release -p sotto && \
//!   cargo run --release -p sotto --example gateway_overhead -- [ITERATIONS] [MAX_TOKENS] [SIM_RSA_BITS]
//! ```
//!
//! The `sotto` binary is taken from beside the example (`target/release/sotto`), or from
//! `SOTTO_BIN`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use sotto_client::SseParser;

fn model_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/models/stories260K"
    ))
}

fn sotto_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SOTTO_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/examples/gateway_overhead → target/<profile>/sotto
    let bin = exe
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("sotto"))
        .expect("target dir");
    if !bin.is_file() {
        eprintln!(
            "no sotto binary at {}: build it first (cargo build --release -p sotto) or set SOTTO_BIN",
            bin.display()
        );
        std::process::exit(2);
    }
    bin
}

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns `sotto ARGS`, waits for a stdout line starting with `prefix` and returns the rest,
/// plus the stderr lines as they come.
fn spawn(args: &[&str], prefix: &str) -> (Proc, String, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(sotto_bin())
        .args(args)
        .env("SOTTO_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sotto");
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
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
    let (etx, erx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = etx.send(line);
        }
    });
    let value = rx
        .recv_timeout(Duration::from_secs(180))
        .unwrap_or_else(|_| panic!("`sotto {}` did not start", args.join(" ")));
    (Proc(child), value, erx)
}

/// CPU time (user + system) a process has used, from /proc (Linux; 100 ticks per second,
/// the kernel's USER_HZ on every mainstream architecture).
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses): state is index 0, utime 11,
    // stime 12.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

#[derive(Default)]
struct Sample {
    ttft: Vec<f64>,
    tps: Vec<f64>,
    total: Vec<f64>,
    tokens: usize,
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

/// Streams one greedy chat completion; returns (ttft, content deltas, total).
async fn once(
    client: &reqwest::Client,
    base: &str,
    max_tokens: u32,
) -> (Duration, usize, Duration) {
    let body = json!({
        "model": "stories260K",
        "messages": [{"role": "user", "content": "Once upon a time"}],
        "temperature": 0, "max_tokens": max_tokens, "stream": true
    });
    let t0 = Instant::now();
    let mut resp = client
        .post(format!("{base}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut sse = SseParser::default();
    let mut ttft = None;
    let mut tokens = 0;
    let mut done = false;
    while let Some(chunk) = resp.chunk().await.unwrap() {
        for ev in sse.push(&chunk) {
            if ev == "[DONE]" {
                done = true;
            } else if ev.contains("\"content\":\"") && !ev.contains("\"content\":\"\"") {
                tokens += 1;
                ttft.get_or_insert(t0.elapsed());
            }
        }
    }
    assert!(done, "stream ended without [DONE]");
    (ttft.unwrap_or_default(), tokens, t0.elapsed())
}

fn record(s: &mut Sample, (ttft, tokens, total): (Duration, usize, Duration)) {
    s.tokens += tokens;
    s.ttft.push(ttft.as_secs_f64() * 1e3);
    s.total.push(total.as_secs_f64() * 1e3);
    let gen_secs = (total - ttft).as_secs_f64();
    if tokens > 1 && gen_secs > 0.0 {
        s.tps.push((tokens - 1) as f64 / gen_secs);
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let iterations: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(30);
    let max_tokens: u32 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(200);
    // 4096 is what `sotto up` uses by default (and AMD); key generation takes a while.
    let rsa_bits = args.get(3).cloned().unwrap_or_else(|| "4096".into());
    let m = model_dir();
    let weights = m.join("stories260K.bin");
    let weights = weights.to_str().unwrap();
    let state = tempfile::tempdir().unwrap();
    let s = state.path().to_str().unwrap();

    let (_serve, plain_addr, _) = spawn(
        &["serve", "--listen", "127.0.0.1:0", "--model", weights],
        "plaintext engine server (NOT private) listening on ",
    );
    let (_up, relay, _) = spawn(
        &[
            "up",
            "--port",
            "0",
            "--enclave-port",
            "0",
            "--state-dir",
            s,
            "--model",
            weights,
            "--sim-rsa-bits",
            &rsa_bits,
        ],
        "relay:",
    );
    let (gw, gateway, gw_err) = spawn(
        &[
            "gateway",
            "--listen",
            "127.0.0.1:0",
            "--relay",
            &relay,
            "--allow-simulated",
            "--state-dir",
            s,
        ],
        "gateway listening on ",
    );
    // "verified enclave … · N ms": the gateway's connect + handshake + verification
    // (evidence and the logged release) at start.
    let mut verify_ms = "?".to_string();
    while let Ok(l) = gw_err.recv_timeout(Duration::from_secs(5)) {
        if let Some(t) = l
            .strip_prefix("verified enclave ")
            .and_then(|r| r.rsplit(" · ").next())
        {
            verify_ms = t.trim_end_matches(" ms").to_string();
            break;
        }
    }
    let plain = format!("http://{plain_addr}");

    let client = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .build()
        .unwrap();
    for _ in 0..3 {
        once(&client, &plain, max_tokens).await;
        once(&client, &gateway, max_tokens).await;
    }
    let mut p = Sample::default();
    let mut q = Sample::default();
    let gw_cpu_before = cpu_secs(gw.0.id());
    for i in 0..iterations {
        if i % 2 == 0 {
            record(&mut p, once(&client, &plain, max_tokens).await);
            record(&mut q, once(&client, &gateway, max_tokens).await);
        } else {
            record(&mut q, once(&client, &gateway, max_tokens).await);
            record(&mut p, once(&client, &plain, max_tokens).await);
        }
    }
    let gw_cpu = cpu_secs(gw.0.id()) - gw_cpu_before;
    let (pt, qt) = (median(&p.ttft), median(&q.ttft));
    let (ps, qs) = (median(&p.tps), median(&q.tps));
    println!(
        "# OpenAI client: gateway -> relay -> enclave -> engine vs plaintext server ({iterations} alternating runs each, {max_tokens} tokens, stories260K, greedy, streaming, sim RSA-{rsa_bits})"
    );
    println!("TTFT plaintext (sotto serve):                 {pt:8.3} ms");
    println!("TTFT private (sotto gateway, open channel):   {qt:8.3} ms");
    println!(
        "TTFT added by the private path:               {:8.3} ms",
        qt - pt
    );
    println!("tokens/s plaintext:                           {ps:8.0}");
    println!("tokens/s private:                             {qs:8.0}");
    println!(
        "tokens/s private / plaintext:                 {:8.4}",
        qs / ps
    );
    println!(
        "total ms plaintext / private (median):        {:8.3} / {:.3}",
        median(&p.total),
        median(&q.total)
    );
    println!(
        "gateway CPU per streamed token:               {:8.1} µs ({:.2} s for {} tokens)",
        gw_cpu * 1e6 / q.tokens.max(1) as f64,
        gw_cpu,
        q.tokens
    );
    println!("gateway connect + handshake + verify (start): {verify_ms:>8} ms");
}
