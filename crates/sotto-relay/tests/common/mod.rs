//! In-test fake enclaves and helpers.
#![allow(dead_code)]

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    extract::{
        State, WebSocketUpgrade,
        ws::{CloseFrame, Message},
    },
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use futures_util::StreamExt;
use sotto_relay::RelayConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite};

pub type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Ask the fake enclave to close the connection with code 4000.
pub const CLOSE_ME: &[u8] = b"__please_close__";

/// How a fake-enclave connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Received a close frame with this code (None: frame without payload).
    Close(Option<u16>),
    /// Stream ended / errored without a close frame.
    Dropped,
}

#[derive(Default)]
pub struct FakeState {
    /// Number of accepted channel connections.
    pub connections: AtomicUsize,
    /// Every binary message received: (connection index, payload).
    pub received: Mutex<Vec<(usize, Vec<u8>)>>,
    /// How each connection ended: (connection index, how).
    pub ended: Mutex<Vec<(usize, Ended)>>,
    /// When set, `/channel` answers 500 instead of upgrading (healthz stays 200).
    pub channel_broken: AtomicBool,
    /// When set, `/healthz` answers 503.
    pub unhealthy: AtomicBool,
    /// Wakes every connection handler to drop its socket without a close frame.
    pub kill: tokio::sync::Notify,
}

pub struct FakeEnclave {
    pub addr: SocketAddr,
    pub state: Arc<FakeState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeEnclave {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeEnclave {
    pub async fn start() -> Self {
        let state = Arc::new(FakeState::default());
        let app = Router::new()
            .route("/healthz", get(fake_healthz))
            .route("/channel", get(fake_channel))
            .with_state(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, state, task }
    }

    pub fn hostport(&self) -> String {
        self.addr.to_string()
    }

    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    pub fn received(&self) -> Vec<(usize, Vec<u8>)> {
        self.state.received.lock().expect("lock").clone()
    }

    pub fn ended(&self) -> Vec<(usize, Ended)> {
        self.state.ended.lock().expect("lock").clone()
    }

    /// Drop every open channel connection without a close frame.
    pub fn kill_connections(&self) {
        self.state.kill.notify_waiters();
    }

    pub fn has_received(&self, payload: &[u8]) -> bool {
        self.received().iter().any(|(_, p)| p == payload)
    }
}

async fn fake_healthz(State(state): State<Arc<FakeState>>) -> StatusCode {
    if state.unhealthy.load(Ordering::SeqCst) {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    }
}

async fn fake_channel(State(state): State<Arc<FakeState>>, ws: WebSocketUpgrade) -> Response {
    if state.channel_broken.load(Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let idx = state.connections.fetch_add(1, Ordering::SeqCst);
    ws.max_message_size(1 << 20)
        .on_upgrade(move |mut socket| async move {
            let how = loop {
                let next = tokio::select! {
                    m = socket.recv() => m,
                    () = state.kill.notified() => break Ended::Dropped,
                };
                match next {
                    Some(Ok(Message::Binary(b))) => {
                        state.received.lock().expect("lock").push((idx, b.to_vec()));
                        if b.as_ref() == CLOSE_ME {
                            let _ = socket
                                .send(Message::Close(Some(CloseFrame {
                                    code: 4000,
                                    reason: "bye".into(),
                                })))
                                .await;
                            // Wait for the relay's acknowledgement.
                            while let Some(Ok(m)) = socket.recv().await {
                                if matches!(m, Message::Close(_)) {
                                    break;
                                }
                            }
                            break Ended::Close(Some(4000));
                        }
                        let mut r = b.to_vec();
                        r.reverse();
                        if socket.send(Message::Binary(r.into())).await.is_err() {
                            break Ended::Dropped;
                        }
                    }
                    Some(Ok(Message::Close(f))) => break Ended::Close(f.map(|f| f.code)),
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break Ended::Dropped,
                }
            };
            state.ended.lock().expect("lock").push((idx, how));
        })
}

/// A local address with nothing listening on it.
pub async fn dead_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let a = l.local_addr().expect("addr");
    drop(l);
    a.to_string()
}

pub fn config(enclaves: Vec<String>) -> RelayConfig {
    RelayConfig {
        enclaves,
        connect_timeout: Duration::from_secs(2),
        // Long by default so tests control health state explicitly.
        health_interval: Duration::from_secs(3600),
        ..RelayConfig::default()
    }
}

pub struct RelayHandle {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RelayHandle {
    pub async fn start(config: RelayConfig) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            sotto_relay::serve(listener, config).await.expect("serve");
        });
        Self { addr, task }
    }

    pub fn channel_url(&self) -> String {
        format!("ws://{}/v1/channel", self.addr)
    }

    pub async fn connect(&self) -> Client {
        let (ws, _) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::connect_async(self.channel_url()),
        )
        .await
        .expect("connect timed out")
        .expect("connect failed");
        ws
    }

    /// Connect expecting an HTTP error status instead of an upgrade.
    pub async fn connect_status(&self) -> u16 {
        match tokio_tungstenite::connect_async(self.channel_url()).await {
            Ok(_) => panic!("upgrade unexpectedly succeeded"),
            Err(tungstenite::Error::Http(resp)) => resp.status().as_u16(),
            Err(e) => panic!("unexpected error: {e}"),
        }
    }

    pub async fn healthz(&self) -> serde_json::Value {
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        let resp = client
            .get(format!("http://{}/healthz", self.addr))
            .send()
            .await
            .expect("healthz");
        assert_eq!(resp.status().as_u16(), 200);
        resp.json().await.expect("json")
    }
}

/// Send a binary message and return the binary reply.
pub async fn roundtrip(ws: &mut Client, payload: &[u8]) -> Vec<u8> {
    use futures_util::SinkExt;
    ws.send(tungstenite::Message::binary(payload.to_vec()))
        .await
        .expect("send");
    next_binary(ws).await
}

pub async fn next_binary(ws: &mut Client) -> Vec<u8> {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("timed out waiting for a message")
            .expect("stream ended")
            .expect("stream error");
        match m {
            tungstenite::Message::Binary(b) => return b.to_vec(),
            tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) => {}
            other => panic!("unexpected message {other:?}"),
        }
    }
}

/// Read until a close frame arrives; return its code. Panics if the stream ends without one
/// or nothing arrives within `within`.
pub async fn expect_close(ws: &mut Client, within: Duration) -> Option<u16> {
    tokio::time::timeout(within, async {
        loop {
            match ws.next().await {
                Some(Ok(tungstenite::Message::Close(f))) => return f.map(|f| u16::from(f.code)),
                Some(Ok(tungstenite::Message::Binary(_))) => {}
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("stream error before close frame: {e}"),
                None => panic!("stream ended without a close frame"),
            }
        }
    })
    .await
    .expect("timed out waiting for close")
}

/// Poll `cond` until true or panic after 5 s.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
