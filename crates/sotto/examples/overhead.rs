//! Overhead of the private path, measured side by side in one run:
//!
//! - plaintext: HTTP client → `sotto serve`-style plain OpenAI server → engine
//! - private:   client → relay → enclave (Noise channel, simulated TEE) → same engine
//!
//! Both servers run in this process on loopback, share one loaded model, and are measured
//! alternately (ABAB…) so machine noise hits both equally. Reports time to first token
//! (TTFT), streaming tokens/s, loopback round-trip time, and the client's CPU cost of a
//! handshake (including evidence verification).
//!
//! `cargo run --release -p sotto --example overhead -- [ITERATIONS] [MAX_TOKENS] [SIM_RSA_BITS]`

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sotto_attester::{Attester, SimulatedTee};
use sotto_client::{ClientConfig, Session, SseParser};
use sotto_openai::{ApiState, BuiltinBackend};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn model_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/models/stories260K"
    ))
}

#[derive(Default)]
struct Sample {
    ttft: Vec<f64>,
    tps: Vec<f64>,
    total: Vec<f64>,
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

fn request(max_tokens: u32) -> serde_json::Value {
    json!({
        "model": "stories260K",
        "messages": [{"role": "user", "content": "Once upon a time"}],
        "temperature": 0, "max_tokens": max_tokens, "stream": true
    })
}

/// Streams one completion over plain HTTP/1.1 (raw socket, so no client library overhead
/// distorts the baseline). Returns (ttft, tokens, total).
async fn plain_once(addr: std::net::SocketAddr, max_tokens: u32) -> (Duration, usize, Duration) {
    let body = request(max_tokens).to_string();
    let t0 = Instant::now();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut sse = SseParser::default();
    let mut buf = vec![0u8; 65536];
    let mut ttft = None;
    let mut tokens = 0;
    let mut head_done = false;
    let mut pending = Vec::new();
    loop {
        let n = s.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        let mut chunk = &buf[..n];
        if !head_done {
            pending.extend_from_slice(chunk);
            let Some(p) = pending.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            head_done = true;
            let rest = pending[p + 4..].to_vec();
            pending = rest;
            chunk = &pending;
        }
        // Chunked transfer encoding: SSE events are still found by the parser because
        // chunk-size lines never contain "\n\n" inside event data.
        for ev in sse.push(chunk) {
            if ev.contains("\"content\":\"") && !ev.contains("\"content\":\"\"") {
                tokens += 1;
                ttft.get_or_insert(t0.elapsed());
            }
        }
        pending.clear();
    }
    (ttft.unwrap_or_default(), tokens, t0.elapsed())
}

async fn private_once(session: &Session, max_tokens: u32) -> (Duration, usize, Duration) {
    let t0 = Instant::now();
    let mut resp = session
        .post_json("/v1/chat/completions", &request(max_tokens))
        .await
        .unwrap();
    assert_eq!(resp.head.status, 200);
    let mut sse = SseParser::default();
    let mut ttft = None;
    let mut tokens = 0;
    while let Some(c) = resp.chunk().await.unwrap() {
        for ev in sse.push(&c) {
            if ev.contains("\"content\":\"") && !ev.contains("\"content\":\"\"") {
                tokens += 1;
                ttft.get_or_insert(t0.elapsed());
            }
        }
    }
    (ttft.unwrap_or_default(), tokens, t0.elapsed())
}

fn record(s: &mut Sample, (ttft, tokens, total): (Duration, usize, Duration)) {
    s.ttft.push(ttft.as_secs_f64() * 1e3);
    s.total.push(total.as_secs_f64() * 1e3);
    let gen_secs = (total - ttft).as_secs_f64();
    if tokens > 1 && gen_secs > 0.0 {
        s.tps.push((tokens - 1) as f64 / gen_secs);
    }
}

/// Loopback TCP round trip (1-byte ping-pong), median of many.
async fn loopback_rtt() -> f64 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        s.set_nodelay(true).unwrap();
        let mut b = [0u8; 1];
        while s.read_exact(&mut b).await.is_ok() {
            if s.write_all(&b).await.is_err() {
                break;
            }
        }
    });
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.set_nodelay(true).unwrap();
    let mut v = Vec::new();
    let mut b = [0u8; 1];
    for _ in 0..2000 {
        let t = Instant::now();
        c.write_all(&b).await.unwrap();
        c.read_exact(&mut b).await.unwrap();
        v.push(t.elapsed().as_secs_f64() * 1e3);
    }
    median(&v)
}

/// The client's CPU cost of a handshake: building message 1, processing message 2 and
/// verifying the evidence (chain, signature, binding). The enclave's side is excluded.
fn handshake_client_cpu(sim: &SimulatedTee, n: usize) -> (f64, f64, f64) {
    let key = sotto_wire::StaticKeypair::from_entropy([7; 32]).unwrap();
    let claims = sotto_wire::Claims {
        model_id: "stories260K".into(),
        weights_sha256: [1; 32],
        tokenizer_sha256: [2; 32],
        backend: "builtin".into(),
        enclave_version: "bench".into(),
    }
    .encode()
    .unwrap();
    let roots = sotto_attest::TrustRoots {
        simulation: Some(sotto_attest::SimulationPin {
            ark_fingerprint: sim.root_fingerprint(),
        }),
    };
    // A cache of our own, cold at the start (the client library's is process-wide).
    let mut cache = sotto_attest::ChainCache::default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut noise = Vec::new();
    let mut verify = Vec::new();
    for i in 0..n {
        let mut e = [0u8; 32];
        getrandom_fill(&mut e, i);
        let nonce = [i as u8; 32];
        let t = Instant::now();
        let (ch, m1) = sotto_wire::ClientHandshake::start(e, Some(nonce)).unwrap();
        let t_start = t.elapsed();
        let sh = sotto_wire::ServerHandshake::read_client_hello(&key, [9; 32], &m1).unwrap();
        let rd = sotto_wire::report_data(key.public(), Some(&nonce), &claims);
        let ev = sim.evidence(&rd).unwrap().encode();
        let (m2, _) = sh.finish(&claims, &ev, Default::default()).unwrap();
        let t = Instant::now();
        let hello = ch.read_server_hello(&m2).unwrap();
        let t_read = t.elapsed();
        let t = Instant::now();
        // Exactly the client's checks (sotto_client::verify_hello), with our cache.
        let bundle = sotto_attest::EvidenceBundle::decode(hello.evidence()).unwrap();
        let policy = sotto_attest::Policy::new(roots.clone(), hello.expected_report_data());
        sotto_attest::verify_cached(&bundle, &policy, now, &mut cache).unwrap();
        sotto_wire::Claims::decode(hello.claims()).unwrap();
        let t_verify = t.elapsed();
        let _ = hello.accept(Default::default()).unwrap();
        noise.push((t_start + t_read).as_secs_f64() * 1e3);
        verify.push(t_verify.as_secs_f64() * 1e3);
    }
    // The first verification paid for the certificate chain; later ones hit the cache.
    (median(&noise), verify[0], median(&verify[1..]))
}

fn getrandom_fill(e: &mut [u8; 32], i: usize) {
    for (j, b) in e.iter_mut().enumerate() {
        *b = (i * 131 + j * 7 + 1) as u8;
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let iterations: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(30);
    let max_tokens: u32 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(200);
    // RSA size of the simulated ARK/ASK: 4096 as `sotto up` (and AMD) use.
    let rsa_bits: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(4096);
    let dir = model_dir();
    let weights = std::fs::read(dir.join("stories260K.bin")).unwrap();
    let tok = std::fs::read(dir.join("tok512.bin")).unwrap();
    let model = Arc::new(sotto_engine::Model::from_bytes(&weights, &tok).unwrap());

    // Plaintext server.
    let plain_api = sotto_openai::router(ApiState::new(Arc::new(
        BuiltinBackend::new(model.clone(), "stories260K").with_max_concurrent(1),
    )));
    let pl = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain_addr = pl.local_addr().unwrap();
    tokio::spawn(sotto_openai::serve_plain(pl, plain_api));

    // Enclave + relay.
    let state = tempfile::tempdir().unwrap();
    let sim = SimulatedTee::load_or_create_with_key_bits(state.path(), [3; 48], rsa_bits).unwrap();
    let claims = sotto_wire::Claims {
        model_id: "stories260K".into(),
        weights_sha256: [1; 32],
        tokenizer_sha256: [2; 32],
        backend: "builtin".into(),
        enclave_version: "bench".into(),
    };
    let api = sotto_openai::router(ApiState::new(Arc::new(
        BuiltinBackend::new(model.clone(), "stories260K").with_max_concurrent(1),
    )));
    let sim_for_enclave =
        SimulatedTee::load_or_create_with_key_bits(state.path(), [3; 48], rsa_bits).unwrap();
    let enclave = Arc::new(
        sotto_enclave::Enclave::new(Arc::new(sim_for_enclave), &claims, api, Default::default())
            .unwrap(),
    );
    let el = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let enclave_addr = el.local_addr().unwrap();
    tokio::spawn(sotto_enclave::serve(el, enclave));
    let rl = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_addr = rl.local_addr().unwrap();
    tokio::spawn(sotto_relay::serve(
        rl,
        sotto_relay::RelayConfig {
            enclaves: vec![enclave_addr.to_string()],
            ..Default::default()
        },
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut config = ClientConfig::new(format!("ws://{relay_addr}/v1/channel"));
    config.trust.simulation_root = Some(sim.root_fingerprint());
    let mut connect_ms = Vec::new();
    let mut session = None;
    for _ in 0..10 {
        let t = Instant::now();
        let (s, _) = sotto_client::connect(&config).await.unwrap();
        connect_ms.push(t.elapsed().as_secs_f64() * 1e3);
        session = Some(s);
    }
    let session = session.unwrap();

    // Warm up both paths.
    for _ in 0..3 {
        plain_once(plain_addr, max_tokens).await;
        private_once(&session, max_tokens).await;
    }
    let mut plain = Sample::default();
    let mut private = Sample::default();
    for i in 0..iterations {
        if i % 2 == 0 {
            record(&mut plain, plain_once(plain_addr, max_tokens).await);
            record(&mut private, private_once(&session, max_tokens).await);
        } else {
            record(&mut private, private_once(&session, max_tokens).await);
            record(&mut plain, plain_once(plain_addr, max_tokens).await);
        }
    }
    let rtt = loopback_rtt().await;
    let (noise_ms, verify_cold_ms, verify_ms) = handshake_client_cpu(&sim, 50);

    let (pt, pp) = (median(&plain.ttft), median(&private.ttft));
    let (ps, qs) = (median(&plain.tps), median(&private.tps));
    println!(
        "# Sotto private-path overhead ({iterations} alternating runs each, {max_tokens} tokens, stories260K, greedy, sim RSA-{rsa_bits})"
    );
    println!(
        "loopback RTT (TCP ping-pong, median):        {:8.3} ms",
        rtt
    );
    println!("TTFT plaintext (new HTTP connection):       {:8.3} ms", pt);
    println!("TTFT private (open channel, via relay):     {:8.3} ms", pp);
    println!(
        "TTFT added by the private path:             {:8.3} ms (target <= 1 ms + one loopback RTT = {:.3} ms)",
        pp - pt,
        1.0 + rtt
    );
    println!("tokens/s plaintext:                         {:8.0}", ps);
    println!("tokens/s private:                           {:8.0}", qs);
    println!(
        "tokens/s private / plaintext:               {:8.4} (target >= 0.99)",
        qs / ps
    );
    println!(
        "total ms plaintext / private (median):      {:8.3} / {:.3}",
        median(&plain.total),
        median(&private.total)
    );
    println!(
        "connect + handshake + verify (wall, median):{:8.3} ms",
        median(&connect_ms)
    );
    println!(
        "client handshake CPU, Noise only (median):  {:8.3} ms",
        noise_ms
    );
    println!(
        "client evidence verification, first (chain): {:7.3} ms",
        verify_cold_ms
    );
    println!(
        "client evidence verification, cached chain:  {:7.3} ms (median)",
        verify_ms
    );
    println!(
        "client handshake CPU, first contact:         {:7.3} ms",
        noise_ms + verify_cold_ms
    );
    println!(
        "client handshake CPU, known chip (median):   {:7.3} ms (target < 1 ms)",
        noise_ms + verify_ms
    );
}
