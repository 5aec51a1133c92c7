//! `sotto gateway`: the local OpenAI-compatible server in front of the private channel,
//! driven as a user would — by the official OpenAI Python SDK (pinned in
//! `tests/py/requirements.txt`, installed into `target/py-venv` by `scripts/python-env.sh`,
//! which `scripts/test.sh` runs) — against real `sotto up` / enclave / relay processes.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// The prompt `gateway_sdk.py rejected` sends; it must never reach the enclave.
const SECRET_PROMPT: &str = "The secret word is marmalade-4711, never tell anyone.";

fn workspace() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// The venv's Python with the pinned `openai` package. Missing is a failure, not a skip.
fn python() -> PathBuf {
    let p = match std::env::var_os("SOTTO_TEST_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => workspace().join("target/py-venv/bin/python"),
    };
    let ok = Command::new(&p)
        .args(["-c", "import openai"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "the gateway tests need Python with the pinned OpenAI SDK at {}; install it with \
         `scripts/python-env.sh` (scripts/test.sh runs it; it creates target/py-venv from \
         crates/sotto/tests/py/requirements.txt), or point SOTTO_TEST_PYTHON at a Python \
         that has those packages",
        p.display()
    );
    p
}

fn script() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/py/gateway_sdk.py"
    ))
}

/// Runs the SDK script; panics with its output unless it passes. Bounded in time.
fn run_sdk(python: &Path, args: &[&str]) -> String {
    let mut child = Command::new(python)
        .arg(script())
        .args(args)
        .env("NO_PROXY", "*")
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "gateway_sdk.py {args:?} failed ({:?}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
    stdout
}

/// Spawns `sotto ARGS` with stderr (its log) going to `log`, and waits for a stdout line
/// starting with `prefix`; returns the rest of that line.
fn spawn_logged(args: &[&str], prefix: &str, env: &[(&str, &str)], log: &Path) -> (Proc, String) {
    let mut cmd = sotto();
    cmd.args(args)
        .env_remove("SOTTO_GATEWAY_TOKEN")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn sotto");
    let stdout = child.stdout.take().unwrap();
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
        .unwrap_or_else(|_| {
            panic!(
                "`sotto {}` did not become ready:\n{}",
                args.join(" "),
                read_log(log)
            )
        });
    (Proc(child), value)
}

/// A log file without terminal colour codes.
fn read_log(path: &Path) -> String {
    let raw = String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned();
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn start_gateway(relay: &str, extra: &[&str], env: &[(&str, &str)], log: &Path) -> (Proc, String) {
    let mut args = vec!["gateway", "--listen", "127.0.0.1:0", "--relay", relay];
    args.extend_from_slice(extra);
    spawn_logged(&args, "gateway listening on ", env, log)
}

/// Done-when 1 and 3: through the official SDK, a streaming and a non-streaming chat, text
/// completions, a models listing, an unknown model, an invalid request, an abort mid-stream
/// and ten concurrent streams, against `sotto up` — with the greedy reference text.
#[test]
fn openai_python_sdk_through_the_gateway() {
    let python = python();
    let state = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let s = state.path().to_str().unwrap();
    let m = model_dir();
    let up_log = logs.path().join("up.log");
    let (_up, relay) = spawn_logged(
        &[
            "up",
            "--port",
            "0",
            "--enclave-port",
            "0",
            "--state-dir",
            s,
            "--model",
            m.join("stories260K.bin").to_str().unwrap(),
            "--sim-rsa-bits",
            "2048",
        ],
        "relay:",
        // The engine's cancellation notices (counts only) are what the abort check reads.
        &[("SOTTO_LOG", "warn,sotto_openai=info")],
        &up_log,
    );
    let gw_log = logs.path().join("gateway.log");
    let (_gw, base) = start_gateway(
        &relay,
        &["--allow-simulated", "--state-dir", s],
        &[("SOTTO_LOG", "info")],
        &gw_log,
    );
    let gateway_log = read_log(&gw_log);
    assert!(
        gateway_log.contains("SIMULATED TEE") && gateway_log.contains("verified enclave"),
        "the gateway verifies before the first request and says the TEE is simulated:\n{gateway_log}"
    );
    assert!(
        gateway_log.contains("release 0.1.0 (signed by sotto-local-release)"),
        "the gateway checks the logged release like `sotto ask`:\n{gateway_log}"
    );
    let reference = logs.path().join("reference.txt");
    std::fs::write(&reference, reference_text()).unwrap();
    let started = Instant::now();
    let out = run_sdk(
        &python,
        &["happy", &format!("{base}/v1"), reference.to_str().unwrap()],
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(60), "SDK tour took {took:?}");
    assert!(out.contains("abort mid-stream"), "{out}");

    // The abort reached the engine: the enclave stopped that generation early (the full one
    // would run to the context length, about 511 tokens).
    let deadline = Instant::now() + Duration::from_secs(10);
    let stopped_at = loop {
        let log = read_log(&up_log);
        let found = log
            .lines()
            .filter(|l| l.contains("generation cancelled: the client went away"))
            .filter_map(|l| l.split("completion_tokens=").nth(1))
            .filter_map(|n| n.trim().parse::<u32>().ok())
            .next();
        if let Some(n) = found {
            break n;
        }
        assert!(
            Instant::now() < deadline,
            "the enclave never reported a cancelled generation:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    println!("the enclave stopped the aborted generation after {stopped_at} tokens");
    assert!(
        stopped_at < 400,
        "the generation ran on after the abort ({stopped_at} tokens)"
    );

    // Nothing the gateway or the stack logged contains the answers.
    for (name, log) in [("gateway", read_log(&gw_log)), ("stack", read_log(&up_log))] {
        let l = leaks(log.as_bytes(), "She loved to play outside in the park");
        assert!(l.is_empty(), "{name} log carries answer text: {l:?}\n{log}");
        assert!(log.contains("INFO"), "{name} log is empty?\n{log}");
    }
}

/// Done-when 2: with a wrong pinned root (or a wrong model pin), the SDK gets 502 with the
/// rejection code, and the enclave receives nothing but each handshake's first message.
#[test]
fn verification_failure_reaches_the_sdk_and_nothing_reaches_the_enclave() {
    let python = python();
    let enclave = start_enclave();
    let (enclave_side, rec) = recording_proxy(&enclave.addr);
    let (_relay, relay_addr) = start_relay(&enclave_side.to_string());
    let url = format!("ws://{relay_addr}/v1/channel");
    let root = enclave.sim_root();
    let wrong_root = "ab".repeat(32);
    let wrong_model = "00".repeat(32);
    let s = enclave.state.path().to_str().unwrap().to_string();
    let logs = tempfile::tempdir().unwrap();
    let cases: [(Vec<&str>, &str); 2] = [
        (vec!["--sim-root", &wrong_root], "ROOT_NOT_TRUSTED"),
        (
            vec!["--sim-root", &root, "--expect-model-sha256", &wrong_model],
            "MODEL_DIGEST_MISMATCH",
        ),
    ];
    for (i, (pins, code)) in cases.iter().enumerate() {
        let mut extra = vec!["--allow-simulated", "--state-dir", &s];
        extra.extend(pins.iter().copied());
        let log = logs.path().join(format!("gateway-{i}.log"));
        let (_gw, base) = start_gateway(&url, &extra, &[], &log);
        run_sdk(&python, &["rejected", &format!("{base}/v1"), code]);
        let gateway_log = read_log(&log);
        assert!(
            gateway_log.contains(&format!("enclave REJECTED [{code}]")),
            "{gateway_log}"
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    let channels = rec.to_server_of(b"GET /channel");
    assert!(channels.len() >= 2, "each gateway tried to connect");
    for c in &channels {
        assert_eq!(
            count_ws_client_messages(c),
            1,
            "a rejected enclave must get nothing after the handshake's first message"
        );
    }
    let l = leaks(&rec.all(), SECRET_PROMPT);
    assert!(l.is_empty(), "the prompt reached the enclave side: {l:?}");

    // The control: the right pins pass, over the same relay.
    let log = logs.path().join("gateway-ok.log");
    let (_gw, base) = start_gateway(
        &url,
        &["--allow-simulated", "--state-dir", &s, "--sim-root", &root],
        &[],
        &log,
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let r = http()
            .get(format!("{base}/v1/models"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    });
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn call(req: reqwest::RequestBuilder) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.json::<Value>().await.unwrap_or(Value::Null);
    (status, headers, body)
}

fn code_of(body: &Value) -> &str {
    let e = &body["error"];
    assert!(
        e["message"].is_string() && e["type"].is_string() && e.get("param").is_some(),
        "not an OpenAI error object: {body}"
    );
    e["code"].as_str().unwrap_or("")
}

/// Errors map faithfully (400, 401, 404, 405, 413, 503), the bearer token is enforced, and
/// after the enclave restarts (new key) the gateway reconnects and verifies the new one.
#[test]
fn errors_limits_token_and_reconnect_to_a_new_enclave() {
    let enclave = start_enclave();
    let (_relay, relay_addr) = start_relay(&enclave.addr);
    let url = format!("ws://{relay_addr}/v1/channel");
    let root = enclave.sim_root();
    let s = enclave.state.path().to_str().unwrap().to_string();
    let logs = tempfile::tempdir().unwrap();
    let gw_log = logs.path().join("gateway.log");
    let token = "test-token-5b1d0c";
    let (_gw, base) = start_gateway(
        &url,
        &[
            "--allow-simulated",
            "--sim-root",
            &root,
            "--state-dir",
            &s,
            "--max-body-bytes",
            "4096",
        ],
        &[("SOTTO_GATEWAY_TOKEN", token)],
        &gw_log,
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = http();
    let bearer = format!("Bearer {token}");
    let chat = |body: Value| {
        c.post(format!("{base}/v1/chat/completions"))
            .header("authorization", &bearer)
            .json(&body)
    };
    let hello = json!({"model": "stories260K", "messages": [{"role": "user", "content": ""}],
                       "temperature": 0, "max_tokens": 12});
    let first_key = rt.block_on(async {
        // The token: missing or wrong is 401 (never forwarded), right is served.
        let (st, h, b) = call(c.get(format!("{base}/v1/models"))).await;
        assert_eq!((st, code_of(&b)), (401, "invalid_api_key"));
        assert_eq!(h["www-authenticate"], "Bearer");
        let (st, _, _) = call(
            c.get(format!("{base}/v1/models"))
                .header("authorization", "Bearer test-token-5b1d0d"),
        )
        .await;
        assert_eq!(st, 401);
        let (st, _, b) = call(
            c.get(format!("{base}/v1/models"))
                .header("authorization", &bearer),
        )
        .await;
        assert_eq!(st, 200, "{b}");
        assert_eq!(b["data"][0]["id"], "stories260K");

        // 413 at the gateway's body limit, 400 for malformed JSON (both local), 400 and 404
        // from the enclave's API, 404/405 for routes the gateway does not forward.
        let big = json!({"model": "stories260K", "messages": [{"role": "user", "content": "x".repeat(5000)}]});
        let (st, _, b) = call(chat(big)).await;
        assert_eq!((st, code_of(&b)), (413, "payload_too_large"));
        let (st, _, b) = call(
            c.post(format!("{base}/v1/chat/completions"))
                .header("authorization", &bearer)
                .body("{\"model\": "),
        )
        .await;
        assert_eq!((st, code_of(&b)), (400, "invalid_json"));
        let (st, _, b) = call(chat(json!({"model": "stories260K", "messages": []}))).await;
        assert_eq!((st, code_of(&b)), (400, "invalid_value"));
        let (st, _, b) = call(chat(
            json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
        ))
        .await;
        assert_eq!((st, code_of(&b)), (404, "model_not_found"));
        let (st, _, b) = call(
            c.get(format!("{base}/v1/embeddings"))
                .header("authorization", &bearer),
        )
        .await;
        assert_eq!((st, code_of(&b)), (404, "unknown_url"));
        let (st, _, b) = call(
            c.get(format!("{base}/v1/chat/completions"))
                .header("authorization", &bearer),
        )
        .await;
        assert_eq!((st, code_of(&b)), (405, "method_not_allowed"));
        let (st, _, b) = call(chat(hello.clone())).await;
        assert_eq!(st, 200, "{b}");
        assert!(reference_text().starts_with(b["choices"][0]["message"]["content"].as_str().unwrap()));

        let (_, _, status) = call(
            c.get(format!("{base}/sotto/status"))
                .header("authorization", &bearer),
        )
        .await;
        assert_eq!(status["verified"], true);
        assert_eq!(status["connects"], 1);
        status["enclave"]["channel_key"].as_str().unwrap().to_string()
    });

    // The enclave goes away: 503, retryable.
    let Enclave { proc, addr, state } = enclave;
    drop(proc);
    std::thread::sleep(Duration::from_millis(300));
    rt.block_on(async {
        let (st, h, b) = call(chat(hello.clone())).await;
        assert_eq!((st, code_of(&b)), (503, "enclave_unavailable"), "{b}");
        assert_eq!(h["x-should-retry"], "true");
        assert!(h.contains_key("retry-after"));
    });

    // It comes back (same simulated root, new channel key): the gateway reconnects,
    // verifies the new key and serves again.
    let m = model_dir();
    let (_enclave2, addr2) = spawn_until(
        &[
            "enclave",
            "--listen",
            &addr,
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
    assert_eq!(addr2, addr);
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (st, _, b) = call(chat(hello.clone())).await;
            if st == 200 {
                break;
            }
            assert_eq!(st, 503, "{b}");
            assert!(
                Instant::now() < deadline,
                "the gateway did not reconnect: {b}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let (_, _, status) = call(
            c.get(format!("{base}/sotto/status"))
                .header("authorization", &bearer),
        )
        .await;
        assert_ne!(status["enclave"]["channel_key"], first_key.as_str());
        assert!(status["connects"].as_u64().unwrap() >= 2);
    });
    let log = read_log(&gw_log);
    assert!(log.contains("enclave key changed"), "{log}");
    assert_eq!(
        log.lines()
            .filter(|l| l.starts_with("verified enclave "))
            .count(),
        2,
        "one verification per connection:\n{log}"
    );
}

/// Listening beyond loopback needs an explicit flag and a bearer token.
#[test]
fn non_loopback_needs_a_flag_and_a_token() {
    let relay = "ws://127.0.0.1:9/v1/channel";
    let (code, _, stderr) = output(sotto().env_remove("SOTTO_GATEWAY_TOKEN").args([
        "gateway",
        "--listen",
        "0.0.0.0:0",
        "--relay",
        relay,
    ]));
    assert_eq!(code, 1);
    assert!(stderr.contains("--allow-non-loopback"), "{stderr}");
    let (code, _, stderr) = output(sotto().env_remove("SOTTO_GATEWAY_TOKEN").args([
        "gateway",
        "--listen",
        "0.0.0.0:0",
        "--allow-non-loopback",
        "--relay",
        relay,
    ]));
    assert_eq!(code, 1);
    assert!(stderr.contains("requires a bearer token"), "{stderr}");
}

/// Without a token, web pages (an Origin header) and non-loopback Host names (DNS
/// rebinding) are refused; the gateway answers 503 while no enclave can be reached.
#[test]
fn browser_requests_refused_and_unreachable_relay_is_503() {
    let logs = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let root = "ab".repeat(32);
    let (_gw, base) = start_gateway(
        "ws://127.0.0.1:9/v1/channel",
        &[
            "--allow-simulated",
            "--sim-root",
            &root,
            "--state-dir",
            state.path().to_str().unwrap(),
        ],
        &[],
        &logs.path().join("gateway.log"),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = http();
        let (st, _, b) = call(
            c.get(format!("{base}/v1/models"))
                .header("origin", "https://example.com"),
        )
        .await;
        assert_eq!((st, code_of(&b)), (403, "browser_request_refused"));
        let (st, _, b) = call(
            c.get(format!("{base}/v1/models"))
                .header("host", "rebound.example:80"),
        )
        .await;
        assert_eq!((st, code_of(&b)), (403, "host_not_allowed"));
        let (st, h, b) = call(c.get(format!("{base}/v1/models"))).await;
        assert_eq!((st, code_of(&b)), (503, "enclave_unavailable"));
        assert!(
            b["error"]["message"]
                .as_str()
                .unwrap()
                .contains("RELAY_UNREACHABLE")
        );
        assert!(h.contains_key("retry-after"));
    });
}
