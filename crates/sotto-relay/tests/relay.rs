//! End-to-end tests: tokio-tungstenite client → relay → fake enclave(s).

mod common;

use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::{
    Message,
    protocol::{CloseFrame, frame::coding::CloseCode},
};

fn reversed(b: &[u8]) -> Vec<u8> {
    b.iter().rev().copied().collect()
}

/// Deterministic pseudo-random bytes (including every byte value).
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2_654_435_761)
                .rotate_left(seed as u32 % 32) as u8
                ^ seed
        })
        .collect()
}

#[tokio::test]
async fn pipes_both_ways_byte_exact_and_in_order() {
    let enclave = FakeEnclave::start().await;
    let relay = RelayHandle::start(config(vec![enclave.hostport()])).await;
    let mut ws = relay.connect().await;

    // Lock-step round trips, including an empty record.
    for (i, len) in [0usize, 1, 2, 255, 256, 1000, 4096].into_iter().enumerate() {
        let p = pattern(len, i as u8);
        assert_eq!(roundtrip(&mut ws, &p).await, reversed(&p), "len {len}");
    }

    // Pipelined: many messages sent before reading any reply; order must be preserved.
    const N: usize = 500;
    let msgs: Vec<Vec<u8>> = (0..N)
        .map(|i| {
            let mut m = (i as u32).to_be_bytes().to_vec();
            m.extend(pattern(i % 300, i as u8));
            m
        })
        .collect();
    let (mut sink, mut stream) = futures_util::StreamExt::split(ws);
    let to_send = msgs.clone();
    let sender = tokio::spawn(async move {
        for m in to_send {
            sink.send(Message::binary(m)).await.expect("send");
        }
        sink
    });
    for (i, m) in msgs.iter().enumerate() {
        let got = tokio::time::timeout(
            Duration::from_secs(10),
            futures_util::StreamExt::next(&mut stream),
        )
        .await
        .expect("timeout")
        .expect("ended")
        .expect("error");
        assert_eq!(got, Message::binary(reversed(m)), "message {i}");
    }
    let _sink = sender.await.expect("sender");

    // The enclave saw exactly what the client sent, in order (7 lock-step + N pipelined).
    let received: Vec<Vec<u8>> = enclave.received().into_iter().map(|(_, p)| p).collect();
    assert_eq!(received.len(), 7 + N);
    assert_eq!(&received[7..], &msgs[..]);
}

#[tokio::test]
async fn record_sized_message_passes_larger_one_closes() {
    let enclave = FakeEnclave::start().await;
    let cfg = config(vec![enclave.hostport()]);
    let max = cfg.max_message_size;
    assert!(max >= 65_535);
    let relay = RelayHandle::start(cfg).await;

    let mut ws = relay.connect().await;
    let record = pattern(65_535, 7);
    assert_eq!(roundtrip(&mut ws, &record).await, reversed(&record));
    let at_limit = pattern(max, 9);
    assert_eq!(roundtrip(&mut ws, &at_limit).await, reversed(&at_limit));

    let too_big = pattern(max + 1, 8);
    ws.send(Message::binary(too_big)).await.expect("send");
    assert_eq!(
        expect_close(&mut ws, Duration::from_secs(5)).await,
        Some(1009)
    );
    // The enclave side is closed too, and never saw the oversized message.
    eventually("enclave side closed", || enclave.ended().len() == 1).await;
    assert_eq!(enclave.received().len(), 2);
}

#[tokio::test]
async fn round_robin_across_two_enclaves() {
    let a = FakeEnclave::start().await;
    let b = FakeEnclave::start().await;
    let relay = RelayHandle::start(config(vec![a.hostport(), b.hostport()])).await;

    let mut reached = Vec::new();
    let mut clients = Vec::new();
    for i in 0..6u8 {
        let mut ws = relay.connect().await;
        let tag = vec![b'c', i];
        assert_eq!(roundtrip(&mut ws, &tag).await, reversed(&tag));
        let which = match (a.has_received(&tag), b.has_received(&tag)) {
            (true, false) => 'a',
            (false, true) => 'b',
            other => panic!("client {i} reached {other:?}"),
        };
        reached.push(which);
        clients.push(ws);
    }
    assert!(
        reached == ['a', 'b', 'a', 'b', 'a', 'b'] || reached == ['b', 'a', 'b', 'a', 'b', 'a'],
        "not round robin: {reached:?}"
    );
    assert_eq!(a.connections(), 3);
    assert_eq!(b.connections(), 3);
}

#[tokio::test]
async fn down_enclave_is_skipped_and_marked_unhealthy() {
    let good = FakeEnclave::start().await;
    let dead = dead_addr().await;
    let relay = RelayHandle::start(config(vec![dead, good.hostport()])).await;

    for i in 0..4u8 {
        let mut ws = relay.connect().await;
        let tag = vec![b'd', i];
        assert_eq!(roundtrip(&mut ws, &tag).await, reversed(&tag));
        assert!(good.has_received(&tag));
    }
    assert_eq!(good.connections(), 4);
    assert_eq!(relay.healthz().await["healthy_enclaves"], 1);
}

#[tokio::test]
async fn failed_websocket_connect_marks_enclave_unhealthy_immediately() {
    // Both pass /healthz, but one refuses the channel upgrade. The health checker (1 h
    // interval) cannot be what marks it: only the connect failure can.
    let broken = FakeEnclave::start().await;
    broken
        .state
        .channel_broken
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let good = FakeEnclave::start().await;
    let relay = RelayHandle::start(config(vec![broken.hostport(), good.hostport()])).await;
    // Give the immediate first probe time to run; both are healthy.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(relay.healthz().await["healthy_enclaves"], 2);

    for i in 0..3u8 {
        let mut ws = relay.connect().await;
        let tag = vec![b'f', i];
        assert_eq!(roundtrip(&mut ws, &tag).await, reversed(&tag));
        assert!(good.has_received(&tag));
    }
    assert_eq!(relay.healthz().await["healthy_enclaves"], 1);
}

#[tokio::test]
async fn health_checker_marks_down_and_back_up() {
    let a = FakeEnclave::start().await;
    let mut cfg = config(vec![a.hostport()]);
    cfg.health_interval = Duration::from_millis(100);
    let relay = RelayHandle::start(cfg).await;
    let h = || async { relay.healthz().await["healthy_enclaves"].as_u64() };

    a.state
        .unhealthy
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while h().await != Some(0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never marked unhealthy"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Unhealthy by probe => not even tried: 503 without a connection attempt.
    assert_eq!(relay.connect_status().await, 503);
    assert_eq!(a.connections(), 0);

    a.state
        .unhealthy
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while h().await != Some(1) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never marked healthy again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut ws = relay.connect().await;
    assert_eq!(roundtrip(&mut ws, b"up").await, b"pu");
}

#[tokio::test]
async fn all_enclaves_down_is_503() {
    let relay = RelayHandle::start(config(vec![dead_addr().await, dead_addr().await])).await;
    assert_eq!(relay.connect_status().await, 503);
    // Second attempt: both are now marked unhealthy and rejected without trying.
    assert_eq!(relay.connect_status().await, 503);
    assert_eq!(relay.healthz().await["healthy_enclaves"], 0);

    // The body is a small JSON error.
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let resp = client
        .get(relay.channel_url().replace("ws://", "http://"))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 503);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["code"], "no_healthy_enclave");
}

#[tokio::test]
async fn max_connections_rejects_extra_with_503() {
    let enclave = FakeEnclave::start().await;
    let mut cfg = config(vec![enclave.hostport()]);
    cfg.max_connections = 2;
    let relay = RelayHandle::start(cfg).await;

    let mut c1 = relay.connect().await;
    let mut c2 = relay.connect().await;
    assert_eq!(roundtrip(&mut c1, b"one").await, b"eno");
    assert_eq!(roundtrip(&mut c2, b"two").await, b"owt");
    assert_eq!(relay.connect_status().await, 503);
    assert_eq!(
        enclave.connections(),
        2,
        "rejected client must not reach an enclave"
    );

    // Closing one frees a slot.
    c1.close(None).await.expect("close");
    drop(c1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut c3 = loop {
        match tokio_tungstenite::connect_async(relay.channel_url()).await {
            Ok((ws, _)) => break ws,
            Err(_) => {
                assert!(tokio::time::Instant::now() < deadline, "slot never freed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(roundtrip(&mut c3, b"three").await, b"eerht");
}

#[tokio::test]
async fn client_close_propagates_to_enclave() {
    let enclave = FakeEnclave::start().await;
    let relay = RelayHandle::start(config(vec![enclave.hostport()])).await;
    let mut ws = relay.connect().await;
    assert_eq!(roundtrip(&mut ws, b"hi").await, b"ih");
    ws.close(Some(CloseFrame {
        code: CloseCode::Library(4321),
        reason: "done".into(),
    }))
    .await
    .expect("close");
    // The client's close handshake completes (relay acknowledges).
    assert_eq!(
        expect_close(&mut ws, Duration::from_secs(5)).await,
        Some(4321)
    );
    eventually("enclave observed close", || !enclave.ended().is_empty()).await;
    assert_eq!(enclave.ended(), vec![(0, Ended::Close(Some(4321)))]);
}

#[tokio::test]
async fn client_vanishing_closes_enclave_side() {
    let enclave = FakeEnclave::start().await;
    let relay = RelayHandle::start(config(vec![enclave.hostport()])).await;
    let mut ws = relay.connect().await;
    assert_eq!(roundtrip(&mut ws, b"hi").await, b"ih");
    drop(ws); // TCP close without a WebSocket close frame.
    eventually("enclave observed close", || !enclave.ended().is_empty()).await;
    assert_eq!(enclave.ended(), vec![(0, Ended::Close(Some(1001)))]);
}

#[tokio::test]
async fn enclave_close_propagates_to_client() {
    let enclave = FakeEnclave::start().await;
    let relay = RelayHandle::start(config(vec![enclave.hostport()])).await;
    let mut ws = relay.connect().await;
    assert_eq!(roundtrip(&mut ws, b"hi").await, b"ih");
    ws.send(Message::binary(CLOSE_ME.to_vec()))
        .await
        .expect("send");
    assert_eq!(
        expect_close(&mut ws, Duration::from_secs(5)).await,
        Some(4000)
    );
}

#[tokio::test]
async fn enclave_vanishing_closes_client_with_1011() {
    let enclave = FakeEnclave::start().await;
    let relay = RelayHandle::start(config(vec![enclave.hostport()])).await;
    let mut ws = relay.connect().await;
    assert_eq!(roundtrip(&mut ws, b"hi").await, b"ih");
    enclave.kill_connections(); // TCP close without a WebSocket close frame
    assert_eq!(
        expect_close(&mut ws, Duration::from_secs(5)).await,
        Some(1011)
    );
}

#[tokio::test]
async fn text_message_from_client_closes() {
    let enclave = FakeEnclave::start().await;
    let relay = RelayHandle::start(config(vec![enclave.hostport()])).await;
    let mut ws = relay.connect().await;
    assert_eq!(roundtrip(&mut ws, b"hi").await, b"ih");
    ws.send(Message::text("hello")).await.expect("send");
    assert_eq!(
        expect_close(&mut ws, Duration::from_secs(5)).await,
        Some(1003)
    );
    eventually("enclave side closed", || !enclave.ended().is_empty()).await;
    // The text was not forwarded.
    assert_eq!(enclave.received().len(), 1);
}

#[tokio::test]
async fn idle_timeout_closes_and_traffic_keeps_alive() {
    let enclave = FakeEnclave::start().await;
    let mut cfg = config(vec![enclave.hostport()]);
    cfg.idle_timeout = Duration::from_millis(400);
    let relay = RelayHandle::start(cfg).await;
    let mut ws = relay.connect().await;

    // Traffic every 100 ms for well over the idle timeout keeps the connection open.
    let start = tokio::time::Instant::now();
    while start.elapsed() < Duration::from_millis(1200) {
        assert_eq!(roundtrip(&mut ws, b"ka").await, b"ak");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Then silence closes it, roughly after the idle timeout.
    let quiet = tokio::time::Instant::now();
    assert_eq!(
        expect_close(&mut ws, Duration::from_secs(5)).await,
        Some(1000)
    );
    assert!(
        quiet.elapsed() >= Duration::from_millis(250),
        "closed too early"
    );
    eventually("enclave side closed", || !enclave.ended().is_empty()).await;
}

#[tokio::test]
async fn relay_healthz_reports_healthy_count() {
    let a = FakeEnclave::start().await;
    let relay = RelayHandle::start(config(vec![a.hostport(), dead_addr().await])).await;
    // Immediate first probe marks the dead one.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let v = relay.healthz().await;
        assert_eq!(v["status"], "ok");
        if v["healthy_enclaves"] == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "got {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn invalid_config_is_rejected() {
    let err =
        sotto_relay::Relay::new(sotto_relay::RelayConfig::default()).expect_err("no enclaves");
    assert_eq!(err.code(), "invalid_config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let err = sotto_relay::serve(listener, sotto_relay::RelayConfig::default())
        .await
        .expect_err("must fail");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}
