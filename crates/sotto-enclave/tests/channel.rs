//! Basic behaviour of the real enclave: requests and responses through the channel,
//! health check, evidence binding, malformed first messages.

mod common;

use common::*;
use futures_util::SinkExt;
use sotto_attest::EvidenceBundle;
use sotto_wire::report_data;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

fn report_data_of(evidence: &[u8]) -> [u8; 64] {
    let bundle = EvidenceBundle::decode(evidence).expect("evidence bundle");
    sotto_attest::snp::parse(&bundle.report)
        .expect("SNP report")
        .report_data
}

#[tokio::test]
async fn request_and_response_through_the_channel() {
    within(async {
        let server = Server::default().await;
        let mut c = RawClient::connect(server.addr, None).await;

        let id = c.request("GET", "/ok", b"").await;
        let r = c.response(id).await;
        assert_eq!(r.outcome, Some(Outcome::End));
        assert_eq!(r.head.expect("head").status, 200);
        assert_eq!(r.body, b"ok");

        // A body spanning several records each way.
        let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let id = c.request("POST", "/echo", &body).await;
        let r = c.response(id).await;
        assert_eq!(r.outcome, Some(Outcome::End));
        let head = r.head.expect("head");
        assert_eq!(head.status, 200);
        assert!(
            head.headers
                .iter()
                .any(|(k, v)| k == "x-echo" && v == "yes")
        );
        assert_eq!(r.body, body);

        // Unknown path: the router's 404 goes back as a normal response.
        let id = c.request("GET", "/nope", b"").await;
        let r = c.response(id).await;
        assert_eq!(r.head.expect("head").status, 404);
        assert_eq!(r.outcome, Some(Outcome::End));
        assert_eq!(server.probes.requests(), 3);
    })
    .await;
}

#[tokio::test]
async fn concurrent_streams_arrive_intact() {
    // Many multi-record responses at once go through the writer queue and its overflow:
    // a dropped, duplicated or reordered record would fail authentication here.
    within(async {
        let server = Server::default().await;
        let mut c = RawClient::connect(server.addr, None).await;
        let mut ids = Vec::new();
        for n in 0..16u8 {
            let body = vec![n; 200_000];
            ids.push((c.request("POST", "/echo", &body).await, body));
        }
        for (id, body) in ids {
            let r = c.response(id).await;
            assert_eq!(r.outcome, Some(Outcome::End), "stream {id}");
            assert_eq!(r.body, body, "stream {id}");
        }
    })
    .await;
}

#[tokio::test]
async fn healthz() {
    within(async {
        let server = Server::default().await;
        let mut tcp = tokio::net::TcpStream::connect(server.addr)
            .await
            .expect("connect");
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: enclave\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut resp = String::new();
        tcp.read_to_string(&mut resp).await.expect("read");
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert!(resp.ends_with("\r\n\r\nok"), "{resp}");
    })
    .await;
}

#[tokio::test]
async fn per_boot_and_nonce_bound_evidence() {
    within(async {
        let server = Server::default().await;
        let key = *server.enclave.public_key();
        let claims = claims().encode().expect("claims");
        // Enclave::new produced the per-boot evidence.
        assert_eq!(server.attester.calls(), 1);

        let a = RawClient::connect(server.addr, None).await;
        let b = RawClient::connect(server.addr, None).await;
        assert_eq!(a.hello.server_static, key);
        assert_eq!(a.hello.claims, claims);
        assert_eq!(
            a.hello.evidence, b.hello.evidence,
            "per-boot evidence is cached"
        );
        assert_eq!(
            server.attester.calls(),
            1,
            "no evidence generated per connection"
        );
        let rd = report_data_of(&a.hello.evidence);
        assert_eq!(rd, report_data(&key, None, &claims));
        assert_eq!(rd, a.hello.expected_report_data);

        let nonce = [0xA7; 32];
        let f = RawClient::connect(server.addr, Some(nonce)).await;
        assert_eq!(server.attester.calls(), 2, "fresh evidence for a nonce");
        let rd = report_data_of(&f.hello.evidence);
        assert_eq!(rd, report_data(&key, Some(&nonce), &claims));
        assert_eq!(rd, f.hello.expected_report_data);
        assert_ne!(f.hello.evidence, a.hello.evidence);
    })
    .await;
}

#[tokio::test]
async fn malformed_first_messages_close_the_connection() {
    within(async {
        let server = Server::default().await;
        let bad: Vec<Message> = vec![
            Message::Binary(b"garbage".to_vec().into()),
            Message::Binary(Vec::new().into()),
            Message::Binary(vec![0u8; 32 + 2].into()), // wrong version inside
            Message::Binary(vec![0x42; 500].into()),   // too long for a hello
            Message::Text("hello".into()),
        ];
        for m in bad {
            let mut ws = connect_ws(server.addr).await.expect("websocket");
            ws.send(m).await.expect("send");
            assert!(
                next_binary(&mut ws).await.is_none(),
                "enclave answered a malformed hello"
            );
        }
        // The enclave is still serving.
        let mut c = RawClient::connect(server.addr, None).await;
        let id = c.request("GET", "/ok", b"").await;
        assert_eq!(c.response(id).await.body, b"ok");
        assert_eq!(server.probes.requests(), 1);
    })
    .await;
}
