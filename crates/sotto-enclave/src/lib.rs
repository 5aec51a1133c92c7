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
//!
//! Bounds against clients (see [`EnclaveConfig`]): connections and streams enclave-wide,
//! fresh-evidence generations per second, and write time. Each connection has one writer
//! task fed by a bounded queue; stream output is consumed only when that queue has room,
//! so a client that stops reading stalls only its own streams, then loses its connection.

use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use http_body_util::BodyExt;
use sotto_attester::Attester;
use sotto_wire::{
    CancelCode, Claims, Connection, Event, Limits, RequestHead, ResponseHead, ServerHandshake,
    StaticKeypair, WireError,
};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
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
    /// Writing to the client took longer than [`EnclaveConfig::write_timeout`].
    #[error("write to the client timed out")]
    WriteTimeout,
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
            EnclaveError::WriteTimeout => "WRITE_TIMEOUT",
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
    /// A handshake asking for fresh evidence is refused when its turn would come later
    /// than this (the rate limiter's queue is full).
    pub fresh_evidence_max_wait: Duration,
    /// Time allowed for the client's first message.
    pub handshake_timeout: Duration,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// Most channel connections at once; beyond it the WebSocket upgrade is refused with
    /// 503 before any handshake work.
    pub max_connections: usize,
    /// Most streams being served at once across all connections; a stream beyond it is
    /// refused ([`CancelCode::Refused`]) without reaching the API.
    pub max_streams_total: usize,
    /// A single record write to the client taking longer than this (the client stopped
    /// reading) closes the connection and cancels its streams.
    pub write_timeout: Duration,
}

impl Default for EnclaveConfig {
    fn default() -> Self {
        EnclaveConfig {
            limits: Limits::default(),
            fresh_evidence_interval: Duration::from_millis(20),
            fresh_evidence_max_wait: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(600),
            max_connections: 256,
            max_streams_total: 512,
            write_timeout: Duration::from_secs(30),
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
    cached_evidence: sotto_attest::EvidenceBundle,
    /// The encoded release proof (signed manifest, inclusion proof, checkpoint) attached to
    /// every bundle; public data, refreshed as the log grows and witnesses cosign.
    release: Mutex<Option<Vec<u8>>>,
    attester: Arc<dyn Attester>,
    api: Router,
    config: EnclaveConfig,
    next_fresh: Mutex<Instant>,
    /// One permit per open channel connection.
    connections: Arc<Semaphore>,
    /// One permit per stream being served, across all connections.
    streams: Arc<Semaphore>,
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
            .map_err(|e| EnclaveError::Attestation(e.to_string()))?;
        Ok(Enclave {
            key,
            claims,
            cached_evidence,
            release: Mutex::new(None),
            attester,
            api,
            next_fresh: Mutex::new(Instant::now()),
            connections: Arc::new(Semaphore::new(
                config.max_connections.min(Semaphore::MAX_PERMITS),
            )),
            streams: Arc::new(Semaphore::new(
                config.max_streams_total.min(Semaphore::MAX_PERMITS),
            )),
            config,
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

    /// Sets (or clears) the release proof attached to every evidence bundle from now on.
    /// It is public data outside the hardware-signed region: the client checks it against
    /// the attested measurement and the log, so whoever supplies it cannot forge a release.
    pub fn set_release_proof(&self, proof: Option<Vec<u8>>) {
        if let Ok(mut r) = self.release.lock() {
            *r = proof;
        }
    }

    fn with_release(&self, mut bundle: sotto_attest::EvidenceBundle) -> Vec<u8> {
        if let Ok(r) = self.release.lock()
            && let Some(proof) = r.as_ref()
        {
            bundle.extras.push(sotto_attest::Extra {
                tag: sotto_attest::tags::RELEASE_MANIFEST,
                value: proof.clone(),
            });
        }
        bundle.encode()
    }

    /// Evidence for a handshake: the per-boot bundle, or a fresh one bound to the nonce.
    async fn evidence_for(&self, nonce: Option<&[u8; 32]>) -> Result<Vec<u8>, EnclaveError> {
        let Some(nonce) = nonce else {
            return Ok(self.with_release(self.cached_evidence.clone()));
        };
        let wait = {
            let mut next = self
                .next_fresh
                .lock()
                .map_err(|_| EnclaveError::Attestation("lock poisoned".into()))?;
            let now = Instant::now();
            let slot = (*next).max(now);
            let wait = slot - now;
            // Reserve the slot only for a request that is accepted: rejected requests
            // must not push the queue out (a flood would otherwise lock everyone out).
            if wait > self.config.fresh_evidence_max_wait {
                return Err(EnclaveError::Attestation(
                    "fresh evidence rate limit".into(),
                ));
            }
            *next = slot + self.config.fresh_evidence_interval;
            wait
        };
        tokio::time::sleep(wait).await;
        let rd = sotto_wire::report_data(self.key.public(), Some(nonce), &self.claims);
        let attester = self.attester.clone();
        let bundle = tokio::task::spawn_blocking(move || attester.evidence(&rd))
            .await
            .map_err(|_| EnclaveError::Attestation("attester task failed".into()))?
            .map_err(|e| EnclaveError::Attestation(e.to_string()))?;
        Ok(self.with_release(bundle))
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

async fn upgrade(State(enclave): State<Arc<Enclave>>, ws: WebSocketUpgrade) -> Response {
    // Checked before the upgrade is accepted: at the limit, no handshake work is done.
    let Ok(permit) = enclave.connections.clone().try_acquire_owned() else {
        tracing::debug!(
            limit = enclave.config.max_connections,
            "channel refused: connection limit"
        );
        return (StatusCode::SERVICE_UNAVAILABLE, "connection limit reached").into_response();
    };
    let max = enclave.config.limits.max_record;
    ws.max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| async move {
            let _permit = permit;
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
                streams_refused = stats.streams_refused,
                "channel"
            );
        })
        .into_response()
}

#[derive(Default)]
struct Stats {
    records_in: u64,
    /// Records handed to the writer.
    records_out: u64,
    bytes_in: u64,
    bytes_out: u64,
    streams: u64,
    /// Streams refused by the enclave-wide stream limit.
    streams_refused: u64,
}

impl Stats {
    fn out(&mut self, r: &[u8]) {
        self.records_out += 1;
        self.bytes_out += r.len() as u64;
    }
}

/// What a stream task asks the connection loop to send.
enum Cmd {
    Head(u32, ResponseHead),
    Data(u32, Bytes),
    End(u32),
    Reset(u32),
}

impl Cmd {
    fn id(&self) -> u32 {
        match self {
            Cmd::Head(id, _) | Cmd::Data(id, _) | Cmd::End(id) | Cmd::Reset(id) => *id,
        }
    }
}

struct StreamTask {
    body_tx: Option<mpsc::UnboundedSender<Bytes>>,
    task: tokio::task::JoinHandle<()>,
}

/// Records queued between the connection loop and the writer task.
const WRITE_QUEUE: usize = 64;
/// Records waiting beyond [`WRITE_QUEUE`] (the loop's overflow) at which the loop stops
/// reading the socket too. Stream output is not consumed at all while anything waits
/// there; this bounds what the peer's own frames can queue (refusals, cancels, rekeys).
const MAX_OVERFLOW: usize = 256;

fn closed() -> EnclaveError {
    EnclaveError::Wire(WireError::Closed)
}

/// The only place that writes to the WebSocket. Every write is bounded by `timeout`; on
/// failure the task ends, dropping `rx`, which the connection loop notices.
async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Vec<u8>>,
    timeout: Duration,
) -> Result<(), EnclaveError> {
    while let Some(r) = rx.recv().await {
        match tokio::time::timeout(timeout, sink.send(Message::Binary(r.into()))).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(closed()),
            Err(_) => return Err(EnclaveError::WriteTimeout),
        }
    }
    let close = Message::Close(Some(CloseFrame {
        code: 1000,
        reason: "".into(),
    }));
    let _ = tokio::time::timeout(timeout, sink.send(close)).await;
    Ok(())
}

async fn handle_socket(
    enclave: &Arc<Enclave>,
    ws: WebSocket,
    stats: &mut Stats,
) -> Result<(), EnclaveError> {
    let write_timeout = enclave.config.write_timeout;
    let (sink, mut source) = ws.split();
    let (out_tx, out_rx) = mpsc::channel(WRITE_QUEUE);
    let mut writer = tokio::spawn(write_loop(sink, out_rx, write_timeout));
    let mut streams = HashMap::new();
    let mut pending = VecDeque::new();
    let result = run_channel(
        enclave,
        &mut source,
        &out_tx,
        &mut streams,
        &mut pending,
        stats,
    )
    .await;
    // Stop generation at once: aborting a stream task drops its response body.
    for (_, s) in streams.drain() {
        s.task.abort();
    }
    // Records already produced are still sent, in order, then the writer closes the
    // WebSocket; all of it bounded by the write timeout.
    let drain = async {
        for r in pending {
            let n = r.len() as u64;
            if out_tx.send(r).await.is_err() {
                break;
            }
            stats.records_out += 1;
            stats.bytes_out += n;
        }
        drop(out_tx);
        (&mut writer).await
    };
    let written = tokio::time::timeout(write_timeout, drain).await;
    let written = match written {
        Ok(Ok(w)) => w,
        Ok(Err(_)) => Err(closed()),
        Err(_) => {
            writer.abort();
            Err(EnclaveError::WriteTimeout)
        }
    };
    match written {
        // The client stopped reading: that is why the loop ended, whatever it saw.
        Err(EnclaveError::WriteTimeout) => Err(EnclaveError::WriteTimeout),
        _ => result,
    }
}

/// Handshake, then the connection loop. Returns when the connection ends; records still
/// to be sent are left in `pending`.
async fn run_channel(
    enclave: &Arc<Enclave>,
    source: &mut SplitStream<WebSocket>,
    out_tx: &mpsc::Sender<Vec<u8>>,
    streams: &mut HashMap<u32, StreamTask>,
    pending: &mut VecDeque<Vec<u8>>,
    stats: &mut Stats,
) -> Result<(), EnclaveError> {
    let first = match tokio::time::timeout(enclave.config.handshake_timeout, source.next()).await {
        Ok(Some(Ok(Message::Binary(b)))) => b,
        _ => return Err(WireError::Handshake("no client hello").into()),
    };
    stats.records_in += 1;
    stats.bytes_in += first.len() as u64;
    let hs = ServerHandshake::read_client_hello(&enclave.key, entropy()?, &first)?;
    let evidence = enclave.evidence_for(hs.client_nonce()).await?;
    let (reply, mut conn) = hs.finish(&enclave.claims, &evidence, enclave.config.limits.clone())?;
    pending.push_back(reply);

    let idle_timeout = enclave.config.idle_timeout;
    let idle = tokio::time::sleep(idle_timeout);
    tokio::pin!(idle);
    let (cmd_tx, mut cmd_rx) = mpsc::channel::<Cmd>(64);
    loop {
        while let Some(r) = conn.poll_transmit() {
            pending.push_back(r);
        }
        // Hand over what fits without waiting; the rest waits in `pending` (in order:
        // the Noise nonce makes a dropped, duplicated or reordered record fatal).
        while let Some(r) = pending.pop_front() {
            match out_tx.try_reserve() {
                Ok(permit) => {
                    stats.out(&r);
                    permit.send(r);
                }
                Err(e) => {
                    pending.push_front(r);
                    if matches!(e, TrySendError::Closed(())) {
                        return Err(closed());
                    }
                    break;
                }
            }
        }
        if !conn.is_open() {
            return Ok(());
        }
        tokio::select! {
            // Cancel-safe: a slot is only taken when this branch wins.
            permit = out_tx.reserve(), if !pending.is_empty() => {
                let Ok(permit) = permit else {
                    return Err(closed());
                };
                if let Some(r) = pending.pop_front() {
                    stats.out(&r);
                    permit.send(r);
                }
            }
            // The writer gave up (write timeout or a dead socket).
            () = out_tx.closed() => return Err(closed()),
            () = &mut idle => return Err(closed()),
            // Reading goes on while the writer is busy (cancels must get through), up to
            // a bound on what the peer's frames can queue.
            msg = source.next(), if pending.len() < MAX_OVERFLOW => {
                idle.as_mut().reset(tokio::time::Instant::now() + idle_timeout);
                match msg {
                    Some(Ok(Message::Binary(b))) => {
                        stats.records_in += 1;
                        stats.bytes_in += b.len() as u64;
                        conn.handle_record(&b)?;
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) | None => {
                        return conn.transport_closed().map_err(EnclaveError::from);
                    }
                    Some(Ok(Message::Text(_))) | Some(Err(_)) => {
                        return Err(WireError::ProtocolViolation("not a binary record").into());
                    }
                }
                while let Some(ev) = conn.poll_event() {
                    on_event(enclave, ev, &mut conn, streams, &cmd_tx, stats);
                }
            }
            // Backpressure: stream output is taken only when nothing waits for the writer.
            Some(cmd) = cmd_rx.recv(), if pending.is_empty() => {
                idle.as_mut().reset(tokio::time::Instant::now() + idle_timeout);
                on_cmd(&mut conn, cmd, streams);
            }
        }
    }
}

/// Applies a stream task's output to the connection.
fn on_cmd(conn: &mut Connection, cmd: Cmd, streams: &mut HashMap<u32, StreamTask>) {
    let id = cmd.id();
    let result = match cmd {
        Cmd::Head(_, head) => conn.send_response(id, head),
        Cmd::Data(_, data) => conn.send_data(id, &data),
        Cmd::End(_) => {
            streams.remove(&id);
            conn.finish(id)
        }
        Cmd::Reset(_) => {
            streams.remove(&id);
            conn.cancel(id, CancelCode::Internal)
        }
    };
    match result {
        // The stream was cancelled meanwhile (late output is dropped), or the connection
        // is no longer open (the loop ends).
        Ok(()) | Err(WireError::UnknownStream(_) | WireError::Closed) => {}
        Err(e) => {
            // E.g. a response head the wire refuses (too many headers, an oversized
            // value): reset the stream, or the client would wait for it forever.
            tracing::warn!(code = e.code(), "stream output rejected; stream reset");
            if let Some(s) = streams.remove(&id) {
                s.task.abort();
            }
            let _ = conn.cancel(id, CancelCode::Internal);
        }
    }
}

fn on_event(
    enclave: &Arc<Enclave>,
    ev: Event,
    conn: &mut Connection,
    streams: &mut HashMap<u32, StreamTask>,
    cmd_tx: &mpsc::Sender<Cmd>,
    stats: &mut Stats,
) {
    match ev {
        Event::Request { id, head } => {
            // The permit lives as long as the stream's task.
            let Ok(permit) = enclave.streams.clone().try_acquire_owned() else {
                stats.streams_refused += 1;
                let _ = conn.cancel(id, CancelCode::Refused);
                return;
            };
            stats.streams += 1;
            let (body_tx, body_rx) = mpsc::unbounded_channel();
            let task = tokio::spawn(run_stream(
                enclave.api.clone(),
                id,
                head,
                body_rx,
                cmd_tx.clone(),
                permit,
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
    _permit: OwnedSemaphorePermit,
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
