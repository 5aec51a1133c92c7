//! Regenerates the test vectors in docs/protocol.md from fixed keys and compares them with
//! the published ones. Run with `SOTTO_BLESS=1` to rewrite the block after an intended change.

use sotto_wire::*;

const BEGIN: &str = "<!-- vectors:begin -->";
const END: &str = "<!-- vectors:end -->";

fn fixed(b: u8) -> [u8; 32] {
    [b; 32]
}

fn generate() -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: &[u8]| out.push_str(&format!("{k} = {}\n", hex::encode(v)));
    let server = StaticKeypair::from_entropy(fixed(0x11)).unwrap();
    let client_e = fixed(0x22);
    let server_e = fixed(0x33);
    let nonce = fixed(0x44);
    let claims = Claims {
        model_id: "stories260K".into(),
        weights_sha256: fixed(0x55),
        tokenizer_sha256: fixed(0x66),
        backend: "builtin".into(),
        enclave_version: "0.1.0".into(),
    }
    .encode()
    .unwrap();
    let evidence = b"example evidence bundle".to_vec();
    line("server_static_private", &fixed(0x11));
    line("server_static_public", server.public());
    line("client_ephemeral_private", &client_e);
    line("server_ephemeral_private", &server_e);
    line("nonce", &nonce);
    line("claims", &claims);
    line("evidence", &evidence);
    let (ch, m1) = ClientHandshake::start(client_e, Some(nonce)).unwrap();
    line("message1", &m1);
    let sh = ServerHandshake::read_client_hello(&server, server_e, &m1).unwrap();
    let (m2, mut s) = sh.finish(&claims, &evidence, Limits::default()).unwrap();
    line("message2", &m2);
    let hello = ch.read_server_hello(&m2).unwrap();
    line("handshake_hash", hello.handshake_hash());
    line("report_data", &hello.expected_report_data());
    let mut c = hello.accept(Limits::default()).unwrap();
    let id = c
        .open_stream(RequestHead {
            method: "POST".into(),
            path: "/v1/chat/completions".into(),
            headers: vec![("content-type".into(), "application/json".into())],
        })
        .unwrap();
    let body =
        br#"{"model":"stories260K","messages":[{"role":"user","content":"Hi"}],"stream":false}"#;
    c.send_data(id, body).unwrap();
    c.finish(id).unwrap();
    let mut i = 0;
    while let Some(r) = c.poll_transmit() {
        line(&format!("client_record_{i}"), &r);
        s.handle_record(&r).unwrap();
        i += 1;
    }
    while s.poll_event().is_some() {}
    s.send_response(
        id,
        ResponseHead {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
        },
    )
    .unwrap();
    s.send_data(id, br#"{"object":"chat.completion"}"#).unwrap();
    s.finish(id).unwrap();
    let mut i = 0;
    while let Some(r) = s.poll_transmit() {
        line(&format!("server_record_{i}"), &r);
        c.handle_record(&r).unwrap();
        i += 1;
    }
    out
}

#[test]
fn protocol_vectors_match_docs() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/protocol.md");
    let doc = std::fs::read_to_string(path).expect("docs/protocol.md");
    let start = doc.find(BEGIN).expect("vectors begin marker") + BEGIN.len();
    let end = doc.find(END).expect("vectors end marker");
    let block = format!("\n```text\n{}```\n", generate());
    if std::env::var_os("SOTTO_BLESS").is_some() {
        let new = format!("{}{}{}", &doc[..start], block, &doc[end..]);
        std::fs::write(path, new).unwrap();
        return;
    }
    assert_eq!(
        &doc[start..end],
        block,
        "vectors changed: rerun with SOTTO_BLESS=1 if intended"
    );
}

#[test]
fn vectors_are_deterministic() {
    assert_eq!(generate(), generate());
}
