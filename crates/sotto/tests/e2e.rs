//! End-to-end: enclave and relay as real processes on loopback, `sotto` commands as a user
//! runs them, and recording proxies on both sides of the relay.

mod common;

use common::*;

/// The core promise: a chat through the relay gives the reference answer, and nothing the
/// relay handles contains the prompt or the answer in any encoding we can think of.
#[test]
fn private_chat_matches_reference_and_relay_sees_only_ciphertext() {
    let enclave = start_enclave();
    // relay -> [proxy B] -> enclave : what the relay forwarded to the enclave.
    let (enclave_side, rec_b) = recording_proxy(&enclave.addr);
    let (_relay, relay_addr) = start_relay(&enclave_side.to_string());
    // client -> [proxy A] -> relay : what the relay received from and sent to the client.
    let (client_side, rec_a) = recording_proxy(&relay_addr);
    let url = format!("ws://{client_side}/v1/channel");
    let state = path_str(enclave.state.path());
    let (code, stdout, stderr) = output(sotto().args(ask_args(
        &url,
        &[
            "--allow-simulated",
            "--state-dir",
            &state,
            "--temperature",
            "0",
            "--max-tokens",
            "120",
            PROMPT,
        ],
    )));
    assert_eq!(code, 0, "stderr: {stderr}");
    assert!(
        stderr.contains("SIMULATED TEE"),
        "the client must say loudly that the TEE is simulated"
    );
    let answer = stdout.trim_end_matches('\n');
    let full = format!("{PROMPT}{answer}");
    let reference = reference_text();
    assert!(
        full.starts_with(&reference),
        "greedy answer differs from the llama2.c reference:\n{full}"
    );

    // A non-streaming request too: its answer travels as one JSON string, so a leak would
    // show the whole text contiguously (a streamed answer is split across chunks).
    let root = enclave.sim_root();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let whole = rt.block_on(async {
        let mut cfg = sotto_client::ClientConfig::new(url.clone());
        cfg.trust.simulation_root = Some(hex::decode(&root).unwrap().try_into().unwrap());
        let (session, v) = sotto_client::connect(&cfg).await.unwrap();
        assert!(v.is_simulated());
        let body = serde_json::json!({
            "model": "stories260K", "messages": [{"role": "user", "content": PROMPT}],
            "temperature": 0, "max_tokens": 120, "stream": false
        });
        let resp = session
            .post_json("/v1/chat/completions", &body)
            .await
            .unwrap();
        assert_eq!(resp.head.status, 200);
        let v: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_string()
    });
    assert!(
        answer.starts_with(&whole) || whole.starts_with(answer),
        "streamed and whole answers differ"
    );

    for (name, rec) in [("client<->relay", &rec_a), ("relay<->enclave", &rec_b)] {
        let bytes = rec.all();
        assert!(
            bytes.len() > answer.len(),
            "{name}: suspiciously little traffic recorded ({} bytes)",
            bytes.len()
        );
        let mut l = leaks(&bytes, PROMPT);
        l.extend(leaks(&bytes, answer));
        l.extend(leaks(&bytes, &whole));
        assert!(l.is_empty(), "{name} carried plaintext: {l:?}");
    }
}

/// Control for the leak detector: the same request to the plaintext engine server is caught.
#[test]
fn leak_detector_catches_plaintext_traffic() {
    let m = model_dir();
    let (_serve, addr) = spawn_until(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--model",
            m.join("stories260K.bin").to_str().unwrap(),
            "--tokenizer",
            m.join("tok512.bin").to_str().unwrap(),
        ],
        "plaintext engine server (NOT private) listening on ",
    );
    let (proxy, rec) = recording_proxy(&addr);
    let body = serde_json::json!({
        "model": "stories260K",
        "messages": [{"role": "user", "content": PROMPT}],
        "temperature": 0, "max_tokens": 60, "stream": false
    })
    .to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let answer = rt.block_on(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(proxy).await.unwrap();
        let req = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        out
    });
    assert!(String::from_utf8_lossy(&answer).contains("chat.completion"));
    let found = leaks(&rec.all(), PROMPT);
    assert!(
        !found.is_empty(),
        "the detector must find the prompt in plaintext traffic"
    );
    assert!(leaks(&rec.all(), "She loved to play outside in the park").len() > 1);
}

#[test]
fn verify_json_lists_every_check() {
    let enclave = start_enclave();
    let (enclave_side, rec) = recording_proxy(&enclave.addr);
    let (_relay, relay_addr) = start_relay(&enclave_side.to_string());
    let url = format!("ws://{relay_addr}/v1/channel");
    let root = enclave.sim_root();
    let (code, stdout, stderr) = output(sotto().args([
        "verify",
        "--json",
        "--relay",
        &url,
        "--allow-simulated",
        "--sim-root",
        &root,
    ]));
    assert_eq!(code, 0, "stderr: {stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["simulated"], true);
    assert_eq!(v["root_sha256"], root.as_str());
    let names: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for want in [
        "platform",
        "root",
        "cert_chain",
        "report_signature",
        "report_data",
        "key_binding",
        "model",
    ] {
        assert!(names.contains(&want), "missing check {want} in {names:?}");
    }
    let weights = std::fs::read(model_dir().join("stories260K.bin")).unwrap();
    use sha2::Digest;
    assert_eq!(
        v["model"]["weights_sha256"],
        hex::encode(sha2::Sha256::digest(&weights))
    );

    // Pinning the model digest: the right one passes, a wrong one fails with exit 10.
    let good = hex::encode(sha2::Sha256::digest(&weights));
    let (code, _, _) = output(sotto().args([
        "verify",
        "--relay",
        &url,
        "--allow-simulated",
        "--sim-root",
        &root,
        "--expect-model-sha256",
        &good,
    ]));
    assert_eq!(code, 0);
    let (code, stdout, _) = output(sotto().args([
        "verify",
        "--relay",
        &url,
        "--allow-simulated",
        "--sim-root",
        &root,
        "--expect-model-sha256",
        &"00".repeat(32),
    ]));
    assert_eq!(code, 10);
    assert!(stdout.contains("MODEL_DIGEST_MISMATCH"), "{stdout}");
    assert!(stdout.contains("nothing was sent"), "{stdout}");
    // The pin is checked before the channel opens: that connection carried only the hello.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let channels = rec.to_server_of(b"GET /channel");
    let last = channels.last().expect("channel connections");
    assert_eq!(
        count_ws_client_messages(last),
        1,
        "a rejected enclave must get nothing after the hello"
    );
}

/// Without the user's opt-in the simulated TEE is refused, and the enclave receives nothing
/// but the first handshake message.
#[test]
fn simulated_tee_refused_without_opt_in_and_nothing_sent() {
    let enclave = start_enclave();
    let (enclave_side, rec) = recording_proxy(&enclave.addr);
    let (_relay, relay_addr) = start_relay(&enclave_side.to_string());
    let url = format!("ws://{relay_addr}/v1/channel");
    let (code, stdout, stderr) = output(sotto().args(ask_args(&url, &["a secret question"])));
    assert_eq!(code, 10, "stderr: {stderr}");
    assert!(stderr.contains("SIMULATION_NOT_ALLOWED"), "{stderr}");
    assert!(stdout.trim().is_empty());
    std::thread::sleep(std::time::Duration::from_millis(300));
    let channels = rec.to_server_of(b"GET /channel");
    assert_eq!(channels.len(), 1, "one channel connection expected");
    assert_eq!(
        count_ws_client_messages(&channels[0]),
        1,
        "only the handshake's first message may reach the enclave"
    );
    assert!(leaks(&rec.all(), "a secret question").is_empty());

    let (code, _, stderr) = output(sotto().args(["verify", "--relay", &url]));
    assert_eq!(code, 10, "{stderr}");
}

#[test]
fn wrong_pinned_root_is_refused() {
    let enclave = start_enclave();
    let (_relay, relay_addr) = start_relay(&enclave.addr);
    let url = format!("ws://{relay_addr}/v1/channel");
    let wrong = "ab".repeat(32);
    let (code, _, stderr) = output(sotto().args(ask_args(
        &url,
        &["--allow-simulated", "--sim-root", &wrong, "hi"],
    )));
    assert_eq!(code, 10);
    assert!(stderr.contains("ROOT_NOT_TRUSTED"), "{stderr}");
    assert!(stderr.contains("nothing was sent"), "{stderr}");
}

#[test]
fn client_configuration_errors_are_clear() {
    let (code, _, stderr) = output(sotto().args([
        "ask",
        "--relay",
        "ws://127.0.0.1:9/v1/channel",
        "--sim-root",
        "00",
        "x",
    ]));
    assert_ne!(code, 0);
    assert!(
        stderr.contains("--sim-root requires --allow-simulated"),
        "{stderr}"
    );
    let (code, _, stderr) = output(sotto().args([
        "ask",
        "--relay",
        "ws://127.0.0.1:9/v1/channel",
        "--allow-simulated",
        "--sim-root",
        "zz",
        "x",
    ]));
    assert_ne!(code, 0);
    assert!(stderr.contains("not hex"), "{stderr}");
    let (code, _, stderr) =
        output(sotto().args(["ask", "--relay", "ws://127.0.0.1:9/v1/channel", "x"]));
    assert_eq!(code, 1);
    assert!(
        stderr.contains("RELAY") || stderr.contains("relay"),
        "{stderr}"
    );
}

#[test]
fn relay_closes_on_oversized_frame() {
    use futures_util::{SinkExt, StreamExt};
    let enclave = start_enclave();
    let (_relay, relay_addr) = start_relay(&enclave.addr);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let cfg = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default();
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(
            format!("ws://{relay_addr}/v1/channel"),
            Some(cfg),
            false,
        )
        .await
        .unwrap();
        let big = vec![7u8; 200_000];
        let _ = ws
            .send(tokio_tungstenite::tungstenite::Message::Binary(big.into()))
            .await;
        let msg = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .expect("relay must react");
        // Strict: only the relay's own "message too big" verdict passes. Any other ending
        // (e.g. the enclave closing on a garbage record it was handed) means the relay
        // forwarded an oversized message.
        match msg {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(Some(f)))) => {
                assert_eq!(u16::from(f.code), 1009, "message too big")
            }
            other => panic!("expected a 1009 close from the relay, got {other:?}"),
        }
    });
}

/// `sotto up` as the README runs it: starts both processes, serves a chat, stops on SIGINT
/// and takes its children with it.
#[test]
fn sotto_up_serves_and_stops_cleanly() {
    let state = tempfile::tempdir().unwrap();
    let m = model_dir();
    let (mut up, relay_url) = spawn_until(
        &[
            "up",
            "--port",
            "0",
            "--enclave-port",
            "0",
            "--state-dir",
            state.path().to_str().unwrap(),
            "--model",
            m.join("stories260K.bin").to_str().unwrap(),
            "--sim-rsa-bits",
            "2048",
        ],
        "relay:",
    );
    let (code, stdout, stderr) = output(sotto().args(ask_args(
        &relay_url,
        &[
            "--allow-simulated",
            "--state-dir",
            state.path().to_str().unwrap(),
            "--temperature",
            "0",
            "--max-tokens",
            "255",
            "",
        ],
    )));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with(&reference_text()), "{stdout}");
    assert!(
        stderr.contains("release 0.1.0 (signed by sotto-local-release) · log index 0 of 1 · 1 witness cosignature(s)"),
        "{stderr}"
    );

    // The local stack is verified the way production is: a signed release, logged,
    // witnessed, consistent with the client's stored view, matching the measurement.
    let (code, stdout, stderr) = output(sotto().args([
        "verify",
        "--json",
        "--relay",
        &relay_url,
        "--allow-simulated",
        "--state-dir",
        state.path().to_str().unwrap(),
    ]));
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let checks: Vec<(String, String)> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["result"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let find = |n: &str| {
        checks
            .iter()
            .find(|(name, _)| name == n)
            .map(|(_, r)| r.clone())
            .unwrap_or_else(|| panic!("no check {n} in {checks:?}"))
    };
    assert!(find("release_signature").contains("sotto-local-release"));
    assert!(
        find("log_checkpoint").contains("cosigned by 1 trusted witness(es): sotto-local-witness")
    );
    assert!(find("log_inclusion").contains("entry 0"));
    assert_eq!(
        find("log_consistency"),
        "same checkpoint as seen before (size 1)"
    );
    assert!(find("release_measurement").contains("is one of the release's"));

    // An operator starting the enclave with another model file than the release names
    // is stopped before it serves anything.
    let other = tempfile::tempdir().unwrap();
    let mut weights = std::fs::read(m.join("stories260K.bin")).unwrap();
    let n = weights.len();
    weights[n - 1] ^= 1;
    std::fs::write(other.path().join("stories260K.bin"), weights).unwrap();
    let (code, _, stderr) = output(
        sotto().args([
            "enclave",
            "--listen",
            "127.0.0.1:0",
            "--tee",
            "simulated",
            "--model",
            other.path().join("stories260K.bin").to_str().unwrap(),
            "--tokenizer",
            m.join("tok512.bin").to_str().unwrap(),
            "--state-dir",
            state.path().to_str().unwrap(),
            "--release",
            state
                .path()
                .join("release/release.signed")
                .to_str()
                .unwrap(),
        ]),
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("RELEASE_MODEL_MISMATCH"), "{stderr}");

    // Ctrl-C: the stack stops and the relay port closes.
    let pid = up.0.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = up.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let addr = relay_url
        .trim_start_matches("ws://")
        .trim_end_matches("/v1/channel")
        .to_string();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "relay still listening after Ctrl-C"
    );
}

/// `sotto chat` keeps multi-turn context: the second answer depends on the first turn.
#[test]
fn chat_is_multi_turn_and_exits_on_eof() {
    use std::io::Write;
    let enclave = start_enclave();
    let (_relay, relay_addr) = start_relay(&enclave.addr);
    let url = format!("ws://{relay_addr}/v1/channel");
    let root = enclave.sim_root();
    let common = [
        "--relay",
        url.as_str(),
        "--allow-simulated",
        "--sim-root",
        root.as_str(),
        "--temperature",
        "0",
        "--max-tokens",
        "24",
    ];
    let mut child = sotto()
        .arg("chat")
        .args(common)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(b"Once upon a time\nThe dog was happy\n")
            .unwrap();
    } // EOF: chat exits after answering.
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("SIMULATED TEE"));
    let answers: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(answers.len(), 2, "two answers expected: {stdout:?}");
    // The same second question asked alone gets another answer: the chat sent the history.
    let (code, alone, _) = output(sotto().arg("ask").args(common).arg("The dog was happy"));
    assert_eq!(code, 0);
    assert_ne!(
        answers[1].trim(),
        alone.trim(),
        "second turn ignored the conversation so far"
    );
}

/// The GGUF path end to end: stories260K converted with `sotto model convert`, served by
/// `sotto up --model FILE.gguf` (logged release with the GGUF file's digest for weights and
/// tokenizer), verified and answering with the reference greedy text.
#[test]
fn sotto_up_serves_a_converted_gguf_model() {
    let state = tempfile::tempdir().unwrap();
    let m = model_dir();
    let gguf = state.path().join("stories260K.gguf");
    let (code, stdout, stderr) = output(sotto().args([
        "model",
        "convert",
        "--from",
        "llama2c",
        "--checkpoint",
        m.join("stories260K.bin").to_str().unwrap(),
        "--tokenizer",
        m.join("tok512.bin").to_str().unwrap(),
        "--out",
        gguf.to_str().unwrap(),
    ]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("sha256"), "{stdout}");

    // A GGUF model carries its tokenizer: giving one is refused before anything starts.
    let (code, _, stderr) = output(sotto().args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--model",
        gguf.to_str().unwrap(),
        "--tokenizer",
        m.join("tok512.bin").to_str().unwrap(),
    ]));
    assert_ne!(code, 0);
    assert!(stderr.contains("carries its own tokenizer"), "{stderr}");

    let (mut up, relay_url) = spawn_until(
        &[
            "up",
            "--port",
            "0",
            "--enclave-port",
            "0",
            "--state-dir",
            state.path().to_str().unwrap(),
            "--model",
            gguf.to_str().unwrap(),
            "--sim-rsa-bits",
            "2048",
        ],
        "relay:",
    );
    let (code, stdout, stderr) = output(sotto().args(ask_args(
        &relay_url,
        &[
            "--allow-simulated",
            "--state-dir",
            state.path().to_str().unwrap(),
            "--temperature",
            "0",
            "--max-tokens",
            "255",
            "",
        ],
    )));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with(&reference_text()), "{stdout}");
    assert!(stderr.contains("log index 0 of 1"), "{stderr}");
    let pid = up.0.id().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status();
    assert!(up.0.wait().unwrap().success());
}
