//! In-process harness: a real enclave (simulated TEE, test API router) served on a local
//! port, and a raw client (WebSocket + `sotto_wire` handshake and connection) that
//! verifies nothing: these are tests of the enclave, not of the client.
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use sotto_attester::{Attester, AttesterError, EvidenceBundle, Platform, SimulatedTee};
use sotto_enclave::{Enclave, EnclaveConfig};
use sotto_wire::{
    CancelCode, Claims, ClientHandshake, Connection, Event, Limits, RequestHead, ResponseHead,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// Every test body runs under this bound so a hang is a failure, not a stuck CI job.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `f` under [`TEST_TIMEOUT`].
pub async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, f)
        .await
        .expect("test timed out")
}

/// Polls `cond` every 10 ms for up to `limit`.
pub async fn eventually(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One simulated TEE per test binary (2048-bit RSA keygen is slow). Its state directory is
/// only needed while loading.
pub fn tee() -> Arc<SimulatedTee> {
    static TEE: OnceLock<Arc<SimulatedTee>> = OnceLock::new();
    TEE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let tee = SimulatedTee::load_or_create_with_key_bits(dir.path(), [0x5A; 48], 2048)
            .expect("simulated TEE");
        Arc::new(tee)
    })
    .clone()
}

/// The shared simulated TEE, counting evidence generations.
pub struct Counting {
    inner: Arc<SimulatedTee>,
    calls: AtomicUsize,
}

impl Counting {
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Attester for Counting {
    fn platform(&self) -> Platform {
        self.inner.platform()
    }
    fn evidence(&self, report_data: &[u8; 64]) -> Result<EvidenceBundle, AttesterError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.evidence(report_data)
    }
}

pub fn claims() -> Claims {
    Claims {
        model_id: "test-model".into(),
        weights_sha256: [0x11; 32],
        tokenizer_sha256: [0x22; 32],
        backend: "builtin".into(),
        enclave_version: "test".into(),
    }
}

/// What the test API observed.
#[derive(Default)]
pub struct Probes {
    /// Requests that reached the API router.
    pub requests: AtomicUsize,
    /// Long-lived response bodies (`/hold`, `/firehose`) created.
    pub bodies_started: AtomicUsize,
    /// ... and dropped (the enclave stopped polling them: cancel, abort, close).
    pub bodies_dropped: AtomicUsize,
    /// Chunks `/firehose` produced (a chunk is produced only when polled).
    pub chunks: AtomicUsize,
}

impl Probes {
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
    pub fn started(&self) -> usize {
        self.bodies_started.load(Ordering::SeqCst)
    }
    pub fn dropped(&self) -> usize {
        self.bodies_dropped.load(Ordering::SeqCst)
    }
    pub fn chunks(&self) -> usize {
        self.chunks.load(Ordering::SeqCst)
    }
}

/// Counts a dropped body.
struct DropGuard(Arc<Probes>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.bodies_dropped.fetch_add(1, Ordering::SeqCst);
    }
}

pub const FIREHOSE_CHUNK: usize = 16 * 1024;

/// The API served inside the test enclave:
/// - `GET /ok`: 200 `ok`;
/// - `POST /echo`: the request body back, with `x-echo: yes`;
/// - `GET /hold`: a head, then a body that never ends;
/// - `GET /firehose`: an endless body of 16 KiB chunks, one per millisecond;
/// - `GET /many-headers`, `GET /huge-header`: heads the channel cannot carry.
pub fn test_api(probes: Arc<Probes>) -> Router {
    let hold = {
        let p = probes.clone();
        move || {
            let p = p.clone();
            async move {
                p.bodies_started.fetch_add(1, Ordering::SeqCst);
                let guard = DropGuard(p);
                let body =
                    futures_util::stream::pending::<Result<Bytes, Infallible>>().map(move |c| {
                        let _ = &guard;
                        c
                    });
                Body::from_stream(body)
            }
        }
    };
    let firehose = {
        let p = probes.clone();
        move || {
            let p = p.clone();
            async move {
                p.bodies_started.fetch_add(1, Ordering::SeqCst);
                let state = (DropGuard(p.clone()), p);
                let body = futures_util::stream::unfold(state, |(guard, p)| async move {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    p.chunks.fetch_add(1, Ordering::SeqCst);
                    let chunk = Bytes::from(vec![b'x'; FIREHOSE_CHUNK]);
                    Some((Ok::<_, Infallible>(chunk), (guard, p)))
                });
                Body::from_stream(body)
            }
        }
    };
    let counter = probes.clone();
    Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route(
            "/echo",
            post(|body: Bytes| async move { ([("x-echo", "yes")], body) }),
        )
        .route("/hold", get(hold))
        .route("/firehose", get(firehose))
        .route(
            "/many-headers",
            get(|| async {
                let mut r = "x".into_response();
                for i in 0..70 {
                    r.headers_mut().insert(
                        http::HeaderName::from_bytes(format!("x-h{i}").as_bytes()).expect("name"),
                        http::HeaderValue::from_static("v"),
                    );
                }
                r
            }),
        )
        .route(
            "/huge-header",
            get(|| async {
                let mut r = "x".into_response();
                r.headers_mut().insert(
                    "x-huge",
                    http::HeaderValue::from_str(&"a".repeat(9000)).expect("value"),
                );
                r
            }),
        )
        .layer(axum::middleware::from_fn(
            move |req: Request, next: Next| {
                counter.requests.fetch_add(1, Ordering::SeqCst);
                next.run(req)
            },
        ))
}

/// A running enclave.
pub struct Server {
    pub enclave: Arc<Enclave>,
    pub addr: SocketAddr,
    pub attester: Arc<Counting>,
    pub probes: Arc<Probes>,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    pub async fn start(config: EnclaveConfig) -> Self {
        let probes = Arc::new(Probes::default());
        let attester = Arc::new(Counting {
            inner: tee(),
            calls: AtomicUsize::new(0),
        });
        let enclave = Arc::new(
            Enclave::new(
                attester.clone(),
                &claims(),
                test_api(probes.clone()),
                config,
            )
            .expect("enclave"),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let e = enclave.clone();
        let task = tokio::spawn(async move {
            let _ = sotto_enclave::serve(listener, e).await;
        });
        Server {
            enclave,
            addr,
            attester,
            probes,
            task,
        }
    }

    pub async fn default() -> Self {
        Self::start(EnclaveConfig::default()).await
    }
}

pub type Ws = WebSocketStream<TcpStream>;

/// Opens `ws://addr/channel`.
pub async fn connect_ws(addr: SocketAddr) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/channel"), tcp).await?;
    Ok(ws)
}

/// Like [`connect_ws`] with a tiny receive buffer, so that a client that stops reading
/// stalls the enclave's writes quickly.
pub async fn connect_ws_small_buffer(addr: SocketAddr) -> Ws {
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let tcp = sock.connect(addr).await.expect("connect");
    let (ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/channel"), tcp)
        .await
        .expect("websocket");
    ws
}

/// Reads the next binary message; `None` if the connection ended (close frame, EOF or
/// error) first.
pub async fn next_binary(ws: &mut Ws) -> Option<Bytes> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) => return Some(b),
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Text(_))) => panic!("text message from the enclave"),
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
        }
    }
}

/// How a stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    End,
    Reset(CancelCode),
}

/// One stream's response as seen by the client.
#[derive(Debug, Default)]
pub struct Reply {
    pub head: Option<ResponseHead>,
    pub body: Vec<u8>,
    pub outcome: Option<Outcome>,
}

/// What the server's hello carried.
pub struct Hello {
    pub server_static: [u8; 32],
    pub claims: Vec<u8>,
    pub evidence: Vec<u8>,
    pub expected_report_data: [u8; 64],
}

/// A raw channel client.
pub struct RawClient {
    pub ws: Ws,
    pub conn: Connection,
    pub hello: Hello,
    replies: HashMap<u32, Reply>,
}

fn entropy() -> [u8; 32] {
    let mut e = [0u8; 32];
    getrandom::fill(&mut e).expect("rng");
    e
}

impl RawClient {
    pub async fn connect(addr: SocketAddr, nonce: Option<[u8; 32]>) -> Self {
        let ws = connect_ws(addr).await.expect("websocket");
        Self::handshake(ws, nonce)
            .await
            .expect("enclave answered the hello")
    }

    /// Runs the handshake on `ws`; `None` if the enclave closed instead of answering.
    pub async fn handshake(mut ws: Ws, nonce: Option<[u8; 32]>) -> Option<Self> {
        let (hs, first) = ClientHandshake::start(entropy(), nonce).expect("client hello");
        ws.send(Message::Binary(first.into())).await.ok()?;
        let reply = next_binary(&mut ws).await?;
        let sh = hs.read_server_hello(&reply).expect("server hello");
        let hello = Hello {
            server_static: *sh.server_static(),
            claims: sh.claims().to_vec(),
            evidence: sh.evidence().to_vec(),
            expected_report_data: sh.expected_report_data(),
        };
        let conn = sh.accept(Limits::default()).expect("accept");
        Some(RawClient {
            ws,
            conn,
            hello,
            replies: HashMap::new(),
        })
    }

    /// Sends every record the connection produced.
    pub async fn flush(&mut self) {
        while let Some(r) = self.conn.poll_transmit() {
            self.ws
                .send(Message::Binary(r.into()))
                .await
                .expect("send record");
        }
    }

    /// Opens a stream with a complete request.
    pub async fn request(&mut self, method: &str, path: &str, body: &[u8]) -> u32 {
        let id = self
            .conn
            .open_stream(RequestHead {
                method: method.into(),
                path: path.into(),
                headers: vec![],
            })
            .expect("open stream");
        if !body.is_empty() {
            self.conn.send_data(id, body).expect("send body");
        }
        self.conn.finish(id).expect("finish");
        self.flush().await;
        id
    }

    pub async fn cancel(&mut self, id: u32) {
        self.conn.cancel(id, CancelCode::Cancelled).expect("cancel");
        self.flush().await;
    }

    /// Reads one record and applies its events. `false`: the connection ended.
    pub async fn pump(&mut self) -> bool {
        let Some(b) = next_binary(&mut self.ws).await else {
            return false;
        };
        self.conn
            .handle_record(&b)
            .expect("record from the enclave");
        while let Some(ev) = self.conn.poll_event() {
            match ev {
                Event::Response { id, head } => {
                    self.replies.entry(id).or_default().head = Some(head)
                }
                Event::Data { id, data } => self
                    .replies
                    .entry(id)
                    .or_default()
                    .body
                    .extend_from_slice(&data),
                Event::End { id } => {
                    self.replies.entry(id).or_default().outcome = Some(Outcome::End)
                }
                Event::Reset { id, code } => {
                    self.replies.entry(id).or_default().outcome = Some(Outcome::Reset(code))
                }
                Event::Request { .. } | Event::Closed { .. } => {}
            }
        }
        true
    }

    /// Reads until stream `id` has ended (or was reset).
    pub async fn response(&mut self, id: u32) -> Reply {
        loop {
            if self.replies.get(&id).is_some_and(|r| r.outcome.is_some()) {
                return self.replies.remove(&id).expect("reply");
            }
            assert!(self.pump().await, "connection ended before stream {id} did");
        }
    }

    /// Reads until stream `id` has its response head, or was reset without one.
    pub async fn head_or_reset(&mut self, id: u32) -> Result<ResponseHead, CancelCode> {
        loop {
            if let Some(r) = self.replies.get(&id) {
                if let Some(h) = &r.head {
                    return Ok(h.clone());
                }
                if let Some(Outcome::Reset(code)) = r.outcome {
                    self.replies.remove(&id);
                    return Err(code);
                }
            }
            assert!(
                self.pump().await,
                "connection ended before stream {id}'s head"
            );
        }
    }

    /// Reads until stream `id` has its response head.
    pub async fn head(&mut self, id: u32) -> ResponseHead {
        loop {
            if let Some(h) = self.replies.get(&id).and_then(|r| r.head.clone()) {
                return h;
            }
            assert!(
                self.pump().await,
                "connection ended before stream {id}'s head"
            );
        }
    }
}
