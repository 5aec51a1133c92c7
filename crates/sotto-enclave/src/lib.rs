//! # sotto-enclave
//!
//! The process half that runs inside the confidential VM. At start it generates its Noise
//! static key, obtains evidence binding that key and its [`Claims`] (model digests) from an
//! [`Attester`], and then serves:
//!
//! - `GET /channel`: a WebSocket whose binary messages are channel records
//!   ([`sotto_wire`]); inside the channel, requests are dispatched to the API router
//!   (normally `sotto_openai::router`);
//! - `GET /healthz`: liveness for the relay's health checks (no secrets, no evidence).
//!
//! Nothing decrypted ever leaves this process except through the channel, and nothing
//! from inside streams (paths, bodies) is logged: log lines carry sizes, counts and codes.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::IntoResponse;
use axum::routing::get;
use bytes::Bytes;
use http_body_util::BodyExt;
use sotto_attester::Attester;
use sotto_wire::{
    CancelCode, Claims, Connection, Event, Limits, RequestHead, ResponseHead, ServerHandshake,
    StaticKeypair,
};
use tokio::sync::mpsc;
use tower::ServiceExt;

/// Errors of the enclave process.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnclaveError {
    /// The OS random number generator failed.
    #[error("random number generator failed")]
    Rng,
    /// The attester could not produce evidence.
    #[error("attestation failed: {0}")]
    Attestation(String),
    /// Channel setup failed.
    #[error("channel error: {0}")]
    Wire(#[from] sotto_wire::WireError),
    /// Reading a model file failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
}

impl EnclaveError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            EnclaveError::Rng => "RNG_FAILED",
            EnclaveError::Attestation(_) => "ATTESTATION_FAILED",
            EnclaveError::Wire(e) => e.code(),
            EnclaveError::Io { .. } => "IO_ERROR",
        }
    }
}

/// Enclave settings.
#[derive(Debug, Clone)]
pub struct EnclaveConfig {
    /// Channel limits.
    pub limits: Limits,
    /// Minimum interval between nonce-bound (fresh) evidence generations; real hardware
    /// takes tens of milliseconds per report, so this is rate-limited.
    pub fresh_evidence_interval: Duration,
    /// Time allowed for the client's first message.
    pub handshake_timeout: Duration,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for EnclaveConfig {
    fn default() -> Self {
        EnclaveConfig {
            limits: Limits::default(),
            fresh_evidence_interval: Duration::from_millis(20),
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(600),
        }
    }
}

/// SHA-256 of a file, streamed (model weights can be gigabytes).
pub fn sha256_file(path: &Path) -> Result<[u8; 32], EnclaveError> {
    use sha2::Digest;
    let io = |source| EnclaveError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}

fn entropy() -> Result<[u8; 32], EnclaveError> {
    let mut e = [0u8; 32];
    getrandom::fill(&mut e).map_err(|_| EnclaveError::Rng)?;
    Ok(e)
}

/// A running enclave identity: key, claims, cached evidence and the API it serves.
pub struct Enclave {
    key: StaticKeypair,
    claims: Vec<u8>,
    cached_evidence: Vec<u8>,
    attester: Arc<dyn Attester>,
    api: Router,
    config: EnclaveConfig,
    next_fresh: Mutex<Instant>,
}

impl std::fmt::Debug for Enclave {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enclave")
            .field("public_key", &hex::encode(self.key.public()))
            .finish_non_exhaustive()
    }
}

impl Enclave {
    /// Generates the static key and the per-boot evidence binding it and `claims`.
    pub fn new(
        attester: Arc<dyn Attester>,
        claims: &Claims,
        api: Router,
        config: EnclaveConfig,
    ) -> Result<Self, EnclaveError> {
        let key = StaticKeypair::from_entropy(entropy()?)?;
        let claims = claims.encode()?;
        let rd = sotto_wire::report_data(key.public(), None, &claims);
        let cached_evidence = attester
            .evidence(&rd)
            .map_err(|e| EnclaveError::Attestation(e.to_string()))?
            .encode();
        Ok(Enclave {
            key,
            claims,
            cached_evidence,
            attester,
            api,
            config,
            next_fresh: Mutex::new(Instant::now()),
        })
    }

    /// The channel's static public key (bound into the evidence).
    pub fn public_key(&self) -> &[u8; 32] {
        self.key.public()
    }

    /// The HTTP router serving `/channel` and `/healthz`.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/channel", get(upgrade))
            .route("/healthz", get(|| async { "ok" }))
            .with_state(self)
    }

    /// Evidence for a handshake: the per-boot bundle, or a fresh one bound to the nonce.
    async fn evidence_for(&self, nonce: Option<&[u8; 32]>) -> Result<Vec<u8>, EnclaveError> {
        let Some(nonce) = nonce else {
            return Ok(self.cached_evidence.clone());
        };
        let wait = {
            let mut next = self
                .next_fresh
                .lock()
                .map_err(|_| EnclaveError::Attestation("lock poisoned".into()))?;
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + self.config.fresh_evidence_interval;
            slot - now
        };
        if wait > Duration::from_secs(5) {
            return Err(EnclaveError::Attestation(
                "fresh evidence rate limit".into(),
            ));
        }
        tokio::time::sleep(wait).await;
        let rd = sotto_wire::report_data(self.key.public(), Some(nonce), &self.claims);
        let attester = self.attester.clone();
        let bundle = tokio::task::spawn_blocking(move || attester.evidence(&rd))
            .await
            .map_err(|_| EnclaveError::Attestation("attester task failed".into()))?
            .map_err(|e| EnclaveError::Attestation(e.to_string()))?;
        Ok(bundle.encode())
    }
}

/// Serves the enclave on `listener` until the process ends.
pub async fn serve(
    listener: tokio::net::TcpListener,
    enclave: Arc<Enclave>,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    // Tokens are small records: without TCP_NODELAY, Nagle + delayed ACK add ~40 ms.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, enclave.router()).await
}

async fn upgrade(State(enclave): State<Arc<Enclave>>, ws: WebSocketUpgrade) -> impl IntoResponse {
    let max = enclave.config.limits.max_record;
    ws.max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| async move {
            let started = Instant::now();
            let mut stats = Stats::default();
            let outcome = handle_socket(&enclave, socket, &mut stats).await;
            let (result, code) = match &outcome {
                Ok(()) => ("closed", "OK"),
                Err(e) => ("failed", e.code()),
            };
            tracing::info!(
                result,
                code,
                duration_ms = started.elapsed().as_millis() as u64,
                records_in = stats.records_in,
                records_out = stats.records_out,
                bytes_in = stats.bytes_in,
                bytes_out = stats.bytes_out,
                streams = stats.streams,
                "channel"
            );
        })
}

#[derive(Default)]
struct Stats {
    records_in: u64,
    records_out: u64,
    bytes_in: u64,
    bytes_out: u64,
    streams: u64,
}

/// What a stream task asks the connection loop to send.
enum Cmd {
    Head(u32, ResponseHead),
    Data(u32, Bytes),
    End(u32),
    Reset(u32),
}

struct StreamTask {
    body_tx: Option<mpsc::UnboundedSender<Bytes>>,
    task: tokio::task::JoinHandle<()>,
}

async fn send_record(
    ws: &mut WebSocket,
    r: Vec<u8>,
    stats: &mut Stats,
) -> Result<(), EnclaveError> {
    stats.records_out += 1;
    stats.bytes_out += r.len() as u64;
    ws.send(Message::Binary(r.into()))
        .await
        .map_err(|_| EnclaveError::Wire(sotto_wire::WireError::Closed))
}

async fn flush(
    ws: &mut WebSocket,
    conn: &mut Connection,
    stats: &mut Stats,
) -> Result<(), EnclaveError> {
    while let Some(r) = conn.poll_transmit() {
        send_record(ws, r, stats).await?;
    }
    Ok(())
}

async fn handle_socket(
    enclave: &Arc<Enclave>,
    mut ws: WebSocket,
    stats: &mut Stats,
) -> Result<(), EnclaveError> {
    let first = match tokio::time::timeout(enclave.config.handshake_timeout, ws.recv()).await {
        Ok(Some(Ok(Message::Binary(b)))) => b,
        _ => return Err(sotto_wire::WireError::Handshake("no client hello").into()),
    };
    stats.records_in += 1;
    stats.bytes_in += first.len() as u64;
    let hs = ServerHandshake::read_client_hello(&enclave.key, entropy()?, &first)?;
    let evidence = enclave.evidence_for(hs.client_nonce()).await?;
    let (reply, mut conn) = hs.finish(&enclave.claims, &evidence, enclave.config.limits.clone())?;
    send_record(&mut ws, reply, stats).await?;

    let (cmd_tx, mut cmd_rx) = mpsc::channel::<Cmd>(64);
    let mut streams: HashMap<u32, StreamTask> = HashMap::new();
    let result = loop {
        tokio::select! {
            msg = tokio::time::timeout(enclave.config.idle_timeout, ws.recv()) => {
                let msg = match msg {
                    Err(_) => break Err(sotto_wire::WireError::Closed.into()),
                    Ok(m) => m,
                };
                match msg {
                    Some(Ok(Message::Binary(b))) => {
                        stats.records_in += 1;
                        stats.bytes_in += b.len() as u64;
                        if let Err(e) = conn.handle_record(&b) {
                            break Err(e.into());
                        }
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) | None => {
                        break conn.transport_closed().map_err(EnclaveError::from);
                    }
                    Some(Ok(Message::Text(_))) | Some(Err(_)) => {
                        break Err(sotto_wire::WireError::ProtocolViolation("not a binary record").into());
                    }
                }
                while let Some(ev) = conn.poll_event() {
                    on_event(enclave, ev, &mut streams, &cmd_tx, stats);
                }
            }
            Some(cmd) = cmd_rx.recv() => {
                // Errors here mean the stream was cancelled meanwhile: drop the command.
                let _ = match cmd {
                    Cmd::Head(id, head) => conn.send_response(id, head),
                    Cmd::Data(id, data) => conn.send_data(id, &data),
                    Cmd::End(id) => {
                        streams.remove(&id);
                        conn.finish(id)
                    }
                    Cmd::Reset(id) => {
                        streams.remove(&id);
                        conn.cancel(id, CancelCode::Internal)
                    }
                };
            }
        }
        if let Err(e) = flush(&mut ws, &mut conn, stats).await {
            break Err(e);
        }
        if !conn.is_open() {
            break Ok(());
        }
    };
    for (_, s) in streams.drain() {
        s.task.abort();
    }
    let _ = ws
        .send(Message::Close(Some(CloseFrame {
            code: 1000,
            reason: "".into(),
        })))
        .await;
    result
}

fn on_event(
    enclave: &Arc<Enclave>,
    ev: Event,
    streams: &mut HashMap<u32, StreamTask>,
    cmd_tx: &mpsc::Sender<Cmd>,
    stats: &mut Stats,
) {
    match ev {
        Event::Request { id, head } => {
            stats.streams += 1;
            let (body_tx, body_rx) = mpsc::unbounded_channel();
            let task = tokio::spawn(run_stream(
                enclave.api.clone(),
                id,
                head,
                body_rx,
                cmd_tx.clone(),
            ));
            streams.insert(
                id,
                StreamTask {
                    body_tx: Some(body_tx),
                    task,
                },
            );
        }
        Event::Data { id, data } => {
            if let Some(tx) = streams.get(&id).and_then(|s| s.body_tx.as_ref()) {
                let _ = tx.send(Bytes::from(data));
            }
        }
        Event::End { id } => {
            if let Some(s) = streams.get_mut(&id) {
                s.body_tx = None;
            }
        }
        Event::Reset { id, .. } => {
            // Cancelled by the client (or a limit): dropping the response body stops the
            // backend (the engine's generation loop sees its receiver gone).
            if let Some(s) = streams.remove(&id) {
                s.task.abort();
            }
        }
        Event::Response { .. } | Event::Closed { .. } => {}
    }
}

fn error_head(status: u16) -> ResponseHead {
    ResponseHead {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
    }
}

async fn run_stream(
    api: Router,
    id: u32,
    head: RequestHead,
    mut body_rx: mpsc::UnboundedReceiver<Bytes>,
    cmd_tx: mpsc::Sender<Cmd>,
) {
    let mut body = Vec::new();
    while let Some(chunk) = body_rx.recv().await {
        body.extend_from_slice(&chunk);
    }
    let mut builder = http::Request::builder()
        .method(head.method.as_str())
        .uri(head.path.as_str());
    for (k, v) in &head.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    let req = match builder.body(axum::body::Body::from(body)) {
        Ok(r) => r,
        Err(_) => {
            let msg = br#"{"error":{"message":"malformed request head","type":"invalid_request_error","code":"bad_request"}}"#;
            let _ = cmd_tx.send(Cmd::Head(id, error_head(400))).await;
            let _ = cmd_tx.send(Cmd::Data(id, Bytes::from_static(msg))).await;
            let _ = cmd_tx.send(Cmd::End(id)).await;
            return;
        }
    };
    let Ok(resp) = api.oneshot(req).await;
    let (parts, mut body) = resp.into_parts();
    let headers = parts
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    if cmd_tx
        .send(Cmd::Head(
            id,
            ResponseHead {
                status: parts.status.as_u16(),
                headers,
            },
        ))
        .await
        .is_err()
    {
        return;
    }
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Ok(data) = f.into_data()
                    && !data.is_empty()
                    && cmd_tx.send(Cmd::Data(id, data)).await.is_err()
                {
                    return;
                }
            }
            Err(_) => {
                let _ = cmd_tx.send(Cmd::Reset(id)).await;
                return;
            }
        }
    }
    let _ = cmd_tx.send(Cmd::End(id)).await;
}
