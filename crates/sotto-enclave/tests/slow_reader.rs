//! A client that stops reading must not stall the enclave: writes time out, the
//! connection loop keeps reading, and stream output is back-pressured, not buffered.

mod common;

use std::time::{Duration, Instant};

use common::*;
use sotto_enclave::EnclaveConfig;

/// Waits until `/firehose` stops producing (its output is no longer consumed).
async fn wait_for_stall(server: &Server) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut last, mut stable) = (0, 0);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let n = server.probes.chunks();
        if n > 0 && n == last {
            stable += 1;
            if stable == 2 {
                return n;
            }
        } else {
            stable = 0;
        }
        last = n;
        assert!(
            Instant::now() < deadline,
            "output never stalled ({n} chunks)"
        );
    }
}

#[tokio::test]
async fn client_that_stops_reading_is_disconnected_and_its_streams_cancelled() {
    within(async {
        let server = Server::start(EnclaveConfig {
            write_timeout: Duration::from_secs(1),
            ..EnclaveConfig::default()
        })
        .await;
        let ws = connect_ws_small_buffer(server.addr).await;
        let mut c = RawClient::handshake(ws, None).await.expect("hello");
        c.request("GET", "/firehose", b"").await;
        c.request("GET", "/firehose", b"").await;
        eventually("bodies started", Duration::from_secs(5), || {
            server.probes.started() == 2
        })
        .await;

        // From here on the client reads nothing: once the socket buffers are full a write
        // exceeds the timeout, the connection is closed and generation stops.
        eventually("response bodies dropped", Duration::from_secs(20), || {
            server.probes.dropped() == 2
        })
        .await;
        let produced = server.probes.chunks();
        // The client finds what the buffers held, then the end of the connection.
        tokio::time::timeout(Duration::from_secs(20), async {
            while next_binary(&mut c.ws).await.is_some() {}
        })
        .await
        .expect("connection closed by the enclave");
        assert_eq!(
            server.probes.chunks(),
            produced,
            "nothing produced after close"
        );

        // The enclave is fine.
        let mut d = RawClient::connect(server.addr, None).await;
        let id = d.request("GET", "/ok", b"").await;
        assert_eq!(d.response(id).await.body, b"ok");
    })
    .await;
}

#[tokio::test]
async fn reading_continues_while_the_writer_is_blocked() {
    within(async {
        // Default write timeout (30 s): the writer stays blocked for the whole test.
        let server = Server::default().await;
        let ws = connect_ws_small_buffer(server.addr).await;
        let mut c = RawClient::handshake(ws, None).await.expect("hello");
        let id = c.request("GET", "/firehose", b"").await;
        eventually("body started", Duration::from_secs(5), || {
            server.probes.started() == 1
        })
        .await;

        // Backpressure: with nobody reading, production stops instead of queueing without
        // bound (what is produced is socket buffers plus the bounded queues).
        let produced = wait_for_stall(&server).await;
        assert!(
            produced * FIREHOSE_CHUNK < 64 << 20,
            "{produced} chunks produced while the client did not read"
        );
        assert_eq!(server.probes.dropped(), 0);

        // The enclave still reads the socket: a cancel gets through and stops the body.
        c.cancel(id).await;
        eventually(
            "cancel processed while the writer is blocked",
            Duration::from_secs(3),
            || server.probes.dropped() == 1,
        )
        .await;
    })
    .await;
}
