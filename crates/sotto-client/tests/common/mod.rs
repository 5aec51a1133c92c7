//! In-process stack for adversarial client tests: a real enclave (simulated TEE, real
//! stories260K model, real OpenAI router) behind an in-test "evil relay" that forwards
//! WebSocket records and can tamper with them.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use sotto_attester::{Attester, SimulatedTee};
use sotto_client::{ApiFailure, ChatStream, ClientConfig, ClientError, Session, Trust};
use sotto_enclave::{Enclave, EnclaveConfig};
use sotto_engine::Model;
use sotto_openai::{ApiState, BuiltinBackend};
use sotto_wire::Claims;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const MODEL_ID: &str = "stories260K";
/// Every test body runs under this bound so a hang is a failure, not a stuck CI job.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(30);

pub fn model_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/models/stories260K"
    ))
}

/// The greedy reference text published with the model (README, the indented block).
pub fn reference_text() -> String {
    let readme = std::fs::read_to_string(model_dir().join("README.md")).expect("model README");
    let after = readme.split("prints:").nth(1).expect("reference section");
    let lines: Vec<&str> = after
        .lines()
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| l.starts_with("    "))
        .map(|l| &l[4..])
        .collect();
    let text = lines.join("\n");
    assert!(
        text.starts_with("Once upon a time"),
        "README parse: {text:?}"
    );
    text
}

/// One simulated TEE per test binary (2048-bit RSA keygen is slow). Its state directory
/// is only needed while loading: the keys live in memory afterwards.
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

pub fn model() -> Arc<Model> {
    static MODEL: OnceLock<Arc<Model>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let d = model_dir();
            Arc::new(Model::load(&d.join("stories260K.bin"), &d.join("tok512.bin")).expect("model"))
        })
        .clone()
}

pub fn claims() -> Claims {
    static CLAIMS: OnceLock<Claims> = OnceLock::new();
    CLAIMS
        .get_or_init(|| {
            let d = model_dir();
            Claims {
                model_id: MODEL_ID.into(),
                weights_sha256: sotto_enclave::sha256_file(&d.join("stories260K.bin"))
                    .expect("hash weights"),
                tokenizer_sha256: sotto_enclave::sha256_file(&d.join("tok512.bin"))
                    .expect("hash tokenizer"),
                backend: "builtin".into(),
                enclave_version: env!("CARGO_PKG_VERSION").into(),
            }
        })
        .clone()
}

/// Enclave construction options.
#[derive(Clone, Default)]
pub struct StackOpts {
    /// Evidence source; default the shared simulated TEE.
    pub attester: Option<Arc<dyn Attester>>,
    /// Delay every response body frame by this much (models a slow reader, so that the
    /// tiny model cannot finish before a cancel arrives).
    pub throttle: Option<Duration>,
    /// Serve this router instead of the OpenAI API.
    pub api: Option<axum::Router>,
}

/// A running enclave with observable API traffic.
pub struct Stack {
    pub enclave: Arc<Enclave>,
    pub addr: SocketAddr,
    pub backend: Arc<BuiltinBackend>,
    /// Requests that reached the API router inside the enclave (i.e. decrypted application
    /// data that got past the channel).
    pub api_requests: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Stack {
    pub async fn start() -> Self {
        Self::start_with(StackOpts::default()).await
    }

    pub async fn start_with(opts: StackOpts) -> Self {
        let backend = Arc::new(BuiltinBackend::new(model(), MODEL_ID));
        let api_requests = Arc::new(AtomicUsize::new(0));
        let mut api = opts
            .api
            .unwrap_or_else(|| sotto_openai::router(ApiState::new(backend.clone())));
        if let Some(delay) = opts.throttle {
            api = api.layer(axum::middleware::from_fn(
                move |req: Request, next: Next| throttle(delay, req, next),
            ));
        }
        let counter = api_requests.clone();
        api = api.layer(axum::middleware::from_fn(
            move |req: Request, next: Next| {
                counter.fetch_add(1, Ordering::SeqCst);
                next.run(req)
            },
        ));
        let attester = opts.attester.unwrap_or_else(|| tee() as Arc<dyn Attester>);
        let enclave = Arc::new(
            Enclave::new(attester, &claims(), api, EnclaveConfig::default()).expect("enclave"),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let e = enclave.clone();
        let task = tokio::spawn(async move {
            let _ = sotto_enclave::serve(listener, e).await;
        });
        Stack {
            enclave,
            addr,
            backend,
            api_requests,
            task,
        }
    }

    pub fn api_requests(&self) -> usize {
        self.api_requests.load(Ordering::SeqCst)
    }
}

async fn throttle(delay: Duration, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let (parts, body) = resp.into_parts();
    let slow = body.into_data_stream().then(move |c| async move {
        tokio::time::sleep(delay).await;
        c
    });
    Response::from_parts(parts, Body::from_stream(slow))
}

/// What the relay does with one message.
#[derive(Debug)]
pub enum Out {
    /// Forward these bytes as a binary message.
    Send(Vec<u8>),
    /// Send a text message (never valid on the channel).
    Text(String),
    /// Send a WebSocket close frame to both sides and stop.
    Close,
    /// Drop both TCP connections without any close frame.
    Abort,
}

/// Per-connection tampering for one direction: `(index of the message in this direction,
/// bytes) -> what to emit`. Index 0 enclave→client is the handshake reply.
pub type Tamper = Box<dyn FnMut(usize, Vec<u8>) -> Vec<Out> + Send>;
pub type TamperFactory = Arc<dyn Fn() -> Tamper + Send + Sync>;

pub fn pass() -> TamperFactory {
    Arc::new(|| Box::new(|_, b| vec![Out::Send(b)]))
}

/// Flips one bit of message `n`.
pub fn flip_bit(n: usize, byte: usize) -> TamperFactory {
    Arc::new(move || {
        Box::new(move |i, mut b: Vec<u8>| {
            if i == n {
                let at = byte.min(b.len() - 1);
                b[at] ^= 0x01;
            }
            vec![Out::Send(b)]
        })
    })
}

/// Sends message `n` twice (a replay).
pub fn duplicate(n: usize) -> TamperFactory {
    Arc::new(move || {
        Box::new(move |i, b: Vec<u8>| {
            if i == n {
                vec![Out::Send(b.clone()), Out::Send(b)]
            } else {
                vec![Out::Send(b)]
            }
        })
    })
}

/// Drops message `n`.
pub fn drop_msg(n: usize) -> TamperFactory {
    Arc::new(move || {
        Box::new(
            move |i, b: Vec<u8>| {
                if i == n { vec![] } else { vec![Out::Send(b)] }
            },
        )
    })
}

/// Swaps messages `n` and `n + 1`.
pub fn swap(n: usize) -> TamperFactory {
    Arc::new(move || {
        let mut held: Option<Vec<u8>> = None;
        Box::new(move |i, b: Vec<u8>| {
            if i == n {
                held = Some(b);
                vec![]
            } else if i == n + 1 {
                let mut out = vec![Out::Send(b)];
                out.extend(held.take().map(Out::Send));
                out
            } else {
                vec![Out::Send(b)]
            }
        })
    })
}

/// Replaces message `n` with `bytes`.
pub fn replace(n: usize, bytes: Vec<u8>) -> TamperFactory {
    Arc::new(move || {
        let bytes = bytes.clone();
        Box::new(move |i, b: Vec<u8>| {
            if i == n {
                vec![Out::Send(bytes.clone())]
            } else {
                vec![Out::Send(b)]
            }
        })
    })
}

/// Forwards `n` messages, then ends the connection at message `n` (close frame or abort).
pub fn cut_at(n: usize, abort: bool) -> TamperFactory {
    Arc::new(move || {
        Box::new(move |i, b: Vec<u8>| {
            if i < n {
                vec![Out::Send(b)]
            } else if abort {
                vec![Out::Abort]
            } else {
                vec![Out::Close]
            }
        })
    })
}

/// Forwards `n` messages, then silently swallows everything while keeping the connection
/// open (a stalling relay).
pub fn stall_from(n: usize) -> TamperFactory {
    Arc::new(move || Box::new(move |i, b: Vec<u8>| if i < n { vec![Out::Send(b)] } else { vec![] }))
}

/// Passes everything through and records it.
pub fn record(log: Arc<Mutex<Vec<Vec<u8>>>>) -> TamperFactory {
    Arc::new(move || {
        let log = log.clone();
        Box::new(move |_, b: Vec<u8>| {
            log.lock().expect("lock").push(b.clone());
            vec![Out::Send(b)]
        })
    })
}

#[derive(Default)]
pub struct RelayStats {
    /// Binary messages received from clients (before tampering).
    pub c2e: AtomicUsize,
    /// Binary messages received from the enclave (before tampering).
    pub e2c: AtomicUsize,
    /// Client connections accepted.
    pub connections: AtomicUsize,
    /// Client connections whose forwarding loop has ended.
    pub finished: AtomicUsize,
}

pub struct RelayOpts {
    pub upstream: SocketAddr,
    pub e2c: TamperFactory,
    pub c2e: TamperFactory,
    /// Handshake substitution: the relay runs its *own* handshake (its own ephemeral key,
    /// the client's nonce copied) with this second enclave and hands that enclave's genuine
    /// reply to the client instead of the upstream's.
    pub hello_from: Option<SocketAddr>,
}

impl RelayOpts {
    pub fn new(upstream: SocketAddr) -> Self {
        RelayOpts {
            upstream,
            e2c: pass(),
            c2e: pass(),
            hello_from: None,
        }
    }
}

/// The in-test untrusted relay.
pub struct EvilRelay {
    pub addr: SocketAddr,
    pub stats: Arc<RelayStats>,
    task: JoinHandle<()>,
}

impl Drop for EvilRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Ws<S> = WebSocketStream<S>;

impl EvilRelay {
    pub async fn start(opts: RelayOpts) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stats = Arc::new(RelayStats::default());
        let st = stats.clone();
        let opts = Arc::new(opts);
        let task = tokio::spawn(async move {
            let mut conns = Vec::new();
            while let Ok((tcp, _)) = listener.accept().await {
                st.connections.fetch_add(1, Ordering::SeqCst);
                let (st, opts) = (st.clone(), opts.clone());
                conns.push(tokio::spawn(async move {
                    relay_one(tcp, &opts, &st).await;
                    st.finished.fetch_add(1, Ordering::SeqCst);
                }));
            }
        });
        EvilRelay { addr, stats, task }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/v1/channel", self.addr)
    }

    pub fn c2e(&self) -> usize {
        self.stats.c2e.load(Ordering::SeqCst)
    }

    pub fn e2c(&self) -> usize {
        self.stats.e2c.load(Ordering::SeqCst)
    }

    /// Waits until `n` client connections have ended (so their counts are final).
    pub async fn wait_finished(&self, n: usize) {
        eventually("relay connections to finish", || {
            self.stats.finished.load(Ordering::SeqCst) >= n
        })
        .await;
    }
}

fn unlimited() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(1 << 24))
        .max_frame_size(Some(1 << 24))
}

async fn connect_channel(addr: SocketAddr) -> Ws<MaybeTlsStream<TcpStream>> {
    let (ws, _) = tokio_tungstenite::connect_async_with_config(
        format!("ws://{addr}/channel"),
        Some(unlimited()),
        false,
    )
    .await
    .expect("relay: connect to enclave");
    ws
}

/// A genuine reply from `other` to a handshake the relay started itself (own ephemeral key,
/// the client's nonce). The enclave binds its own key and that nonce in fresh evidence.
async fn foreign_hello(
    other: SocketAddr,
    client_hello: &[u8],
) -> (Vec<u8>, Ws<MaybeTlsStream<TcpStream>>) {
    // Client hello: 32-byte ephemeral key, then cleartext `version || flags || [nonce]`.
    let nonce = (client_hello.len() == 32 + 2 + 32 && client_hello[33] & 1 == 1).then(|| {
        let mut n = [0u8; 32];
        n.copy_from_slice(&client_hello[34..]);
        n
    });
    let (_hs, hello) =
        sotto_wire::ClientHandshake::start([0x77; 32], nonce).expect("relay handshake");
    let mut ws = connect_channel(other).await;
    ws.send(Message::Binary(hello.into()))
        .await
        .expect("send hello to other enclave");
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) => return (b.to_vec(), ws),
            Some(Ok(_)) => continue,
            other => panic!("other enclave did not answer: {other:?}"),
        }
    }
}

async fn relay_one(tcp: TcpStream, opts: &RelayOpts, stats: &RelayStats) {
    let Ok(mut client) = tokio_tungstenite::accept_async_with_config(tcp, Some(unlimited())).await
    else {
        return;
    };
    let mut enclave = connect_channel(opts.upstream).await;
    let mut e2c = (opts.e2c)();
    let mut c2e = (opts.c2e)();
    let (mut n_e2c, mut n_c2e) = (0usize, 0usize);
    let mut substitute: Option<Vec<u8>> = None;
    let mut _keep_other = None;
    loop {
        tokio::select! {
            m = client.next() => match m {
                Some(Ok(Message::Binary(b))) => {
                    stats.c2e.fetch_add(1, Ordering::SeqCst);
                    if n_c2e == 0 && let Some(other) = opts.hello_from {
                        let (reply, keep) = foreign_hello(other, &b).await;
                        substitute = Some(reply);
                        _keep_other = Some(keep);
                    }
                    let outs = c2e(n_c2e, b.to_vec());
                    n_c2e += 1;
                    for o in outs {
                        match o {
                            Out::Send(x) => { let _ = enclave.send(Message::Binary(x.into())).await; }
                            Out::Text(t) => { let _ = enclave.send(Message::Text(t.into())).await; }
                            Out::Close => {
                                let _ = enclave.close(None).await;
                                let _ = client.close(None).await;
                                return;
                            }
                            Out::Abort => return,
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    let _ = enclave.close(None).await;
                    return;
                }
                Some(Ok(_)) => {}
            },
            m = enclave.next() => match m {
                Some(Ok(Message::Binary(b))) => {
                    stats.e2c.fetch_add(1, Ordering::SeqCst);
                    let mut b = b.to_vec();
                    if n_e2c == 0 && let Some(s) = substitute.take() {
                        b = s;
                    }
                    let outs = e2c(n_e2c, b);
                    n_e2c += 1;
                    for o in outs {
                        match o {
                            Out::Send(x) => { let _ = client.send(Message::Binary(x.into())).await; }
                            Out::Text(t) => { let _ = client.send(Message::Text(t.into())).await; }
                            Out::Close => {
                                let _ = client.close(None).await;
                                let _ = enclave.close(None).await;
                                return;
                            }
                            Out::Abort => return,
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    let _ = client.close(None).await;
                    return;
                }
                Some(Ok(_)) => {}
            },
        }
    }
}

/// Polls `cond` every 10 ms for up to 5 s.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn client_config(url: String) -> ClientConfig {
    let mut c = ClientConfig::new(url);
    c.trust = Trust {
        simulation_root: Some(tee().root_fingerprint()),
        ..Trust::default()
    };
    c.connect_timeout = Duration::from_secs(10);
    c
}

pub async fn connect(url: String) -> Session {
    let (session, v) = sotto_client::connect(&client_config(url))
        .await
        .expect("connect and verify");
    assert!(v.is_simulated());
    session
}

/// Expects `connect` to fail; returns the error.
pub async fn connect_err(cfg: &ClientConfig) -> ClientError {
    match sotto_client::connect(cfg).await {
        Ok((_, v)) => panic!("connect unexpectedly verified: {v:?}"),
        Err(e) => e,
    }
}

pub fn greedy(prompt: &str, max_tokens: u32) -> serde_json::Value {
    serde_json::json!({
        "model": MODEL_ID,
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0,
        "max_tokens": max_tokens,
    })
}

/// Reads a chat stream to its verified end.
pub async fn collect(stream: &mut ChatStream) -> Result<String, ApiFailure> {
    let mut text = String::new();
    while let Some(d) = stream.next_delta().await? {
        text.push_str(&d);
    }
    Ok(text)
}

/// Streams a greedy completion of the empty prompt with `max_tokens` 30.
pub async fn greedy_30(session: &Session) -> Result<String, ApiFailure> {
    let mut s = ChatStream::start(session, greedy("", 30)).await?;
    let text = collect(&mut s).await?;
    assert_eq!(s.finish_reason.as_deref(), Some("length"));
    Ok(text)
}

pub fn failure_code(f: &ApiFailure) -> String {
    match f {
        ApiFailure::Client(e) => e.code().to_string(),
        ApiFailure::Api { code, .. } => format!("api:{code}"),
    }
}

/// Runs `f` under [`TEST_TIMEOUT`].
pub async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, f)
        .await
        .expect("test timed out")
}
