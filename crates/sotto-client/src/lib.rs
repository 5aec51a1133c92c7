//! # sotto-client
//!
//! Connects to an enclave through the (untrusted) relay, verifies its attestation evidence
//! and claims *before* anything is sent, then carries requests over the encrypted channel.
//!
//! ```text
//! connect(config) ── WebSocket ──> relay ──> enclave
//!   1. Noise NX: -> e [nonce]         <- e, ee, s, es [claims, evidence]
//!   2. verify evidence (sotto-attest) with REPORT_DATA = H(static key, nonce, claims)
//!   3. only then: Session::request(...)
//! ```
//!
//! The I/O here is a thin tokio shell around [`sotto_wire`] and [`sotto_attest`].

mod release;

pub use release::{LogClient, ReleaseConfig};
pub use sotto_release::{ReleaseError, VerifiedRelease};

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use sotto_attest::{EvidenceBundle, Policy, SimulationPin, TrustRoots, Verified};
use sotto_wire::{
    CancelCode, Claims, ClientHandshake, Connection, Event, Limits, RequestHead, ResponseHead,
};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Client errors. Messages never include request or response content.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Bad client configuration.
    #[error("configuration: {0}")]
    Config(String),
    /// The relay could not be reached or the WebSocket failed.
    #[error("cannot reach the relay: {0}")]
    Connect(String),
    /// The channel failed (handshake, tampering, truncation, limits).
    #[error("channel: {0}")]
    Wire(#[from] sotto_wire::WireError),
    /// The enclave's evidence was rejected. Nothing was sent.
    #[error("enclave verification failed [{code}]: {0}", code = .0.code())]
    Verification(#[from] sotto_attest::AttestError),
    /// The stream was reset by the enclave or lost with the connection.
    #[error("stream reset ({0:?})")]
    Reset(CancelCode),
    /// The session's connection is gone.
    #[error("connection closed")]
    Closed,
    /// Real-hardware evidence arrived but no measurement was pinned: the client cannot
    /// tell the intended image from any other running on genuine hardware.
    #[error(
        "enclave verification failed [MEASUREMENT_NOT_PINNED]: real hardware evidence needs a pinned launch measurement"
    )]
    MeasurementNotPinned,
    /// The enclave serves other weights than the ones required.
    #[error(
        "enclave verification failed [MODEL_DIGEST_MISMATCH]: enclave serves weights {got}, expected {expected}"
    )]
    ModelDigestMismatch {
        /// Hex digest the enclave claims.
        got: String,
        /// Hex digest required.
        expected: String,
    },
    /// The release checks failed (manifest signature, log, witnesses, consistency,
    /// measurement or model not the release's). Nothing was sent.
    #[error("enclave verification failed [{code}]: {0}", code = .0.code())]
    Release(#[from] ReleaseError),
    /// Timed out.
    #[error("timed out during {0}")]
    Timeout(&'static str),
}

impl ClientError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ClientError::Config(_) => "CONFIG_INVALID",
            ClientError::Connect(_) => "RELAY_UNREACHABLE",
            ClientError::Wire(e) => e.code(),
            ClientError::Verification(e) => e.code(),
            ClientError::Reset(CancelCode::ConnectionLost) => "STREAM_TRUNCATED",
            ClientError::Reset(_) => "STREAM_RESET",
            ClientError::Closed => "CONNECTION_CLOSED",
            ClientError::Timeout(_) => "TIMEOUT",
            ClientError::MeasurementNotPinned => "MEASUREMENT_NOT_PINNED",
            ClientError::ModelDigestMismatch { .. } => "MODEL_DIGEST_MISMATCH",
            ClientError::Release(e) => e.code(),
        }
    }

    /// True when the enclave was rejected by verification (nothing was sent to it).
    pub fn is_rejection(&self) -> bool {
        matches!(
            self,
            ClientError::Verification(_)
                | ClientError::MeasurementNotPinned
                | ClientError::ModelDigestMismatch { .. }
                | ClientError::Release(_)
        )
    }
}

/// Which roots the client trusts and what it requires of the enclave.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// Accept the simulated TEE, pinned to this ARK fingerprint. `None` (the default)
    /// rejects simulated evidence.
    pub simulation_root: Option<[u8; 32]>,
    /// The attested launch measurement must equal this. Required for real hardware (a
    /// genuine chip running someone else's image is not the enclave you meant) unless
    /// `allow_unpinned_measurement` is set; the release manifest will supply it.
    pub expected_measurement: Option<[u8; 48]>,
    /// Accept real-hardware evidence without a measurement pin (auditing only).
    pub allow_unpinned_measurement: bool,
    /// The enclave's claimed weights digest must equal this.
    pub expected_weights_sha256: Option<[u8; 32]>,
    /// SEV-SNP: minimum REPORTED_TCB per component (default: none).
    pub min_tcb: Option<sotto_attest::snp::TcbParts>,
    /// Intel TDX: TCB statuses to accept (default: only `UpToDate`).
    pub allowed_tcb_statuses: Option<Vec<sotto_attest::tdx::TcbStatus>>,
    /// SEV-SNP: require AMD's CRL in the bundle (`CRL_MISSING` otherwise); a CRL that is
    /// present is always checked.
    pub require_amd_crl: bool,
    /// Require a logged release: the evidence must carry a release signed by a trusted
    /// key, included in the transparency log under a checkpoint signed by the log and
    /// cosigned by enough witnesses, consistent with the client's earlier view; the
    /// attested measurement and the model must be the release's, and the release's
    /// minimum policy applies. A release counts as a measurement pin.
    pub release: Option<ReleaseConfig>,
}

/// Client configuration.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Relay WebSocket URL, e.g. `ws://127.0.0.1:7900/v1/channel`.
    pub relay_url: String,
    /// Trust decisions.
    pub trust: Trust,
    /// Ask for evidence bound to a fresh nonce (default), rather than per-boot evidence.
    pub fresh_evidence: bool,
    /// Channel limits.
    pub limits: Limits,
    /// Time allowed for connect + handshake.
    pub connect_timeout: Duration,
    /// Time allowed between sending a request and its response head.
    pub response_timeout: Duration,
    /// Longest silence allowed between two body chunks of a response (a stalling relay
    /// otherwise leaves the reader waiting forever).
    pub read_timeout: Duration,
}

impl ClientConfig {
    /// Defaults for `relay_url`, trusting nothing simulated.
    pub fn new(relay_url: impl Into<String>) -> Self {
        ClientConfig {
            relay_url: relay_url.into(),
            trust: Trust::default(),
            fresh_evidence: true,
            limits: Limits::default(),
            connect_timeout: Duration::from_secs(15),
            response_timeout: Duration::from_secs(120),
            read_timeout: Duration::from_secs(120),
        }
    }
}

/// What the client verified about the enclave before sending anything.
#[derive(Debug, Clone)]
pub struct Verification {
    /// Attestation result (platform, chain, measurement, steps).
    pub attestation: Verified,
    /// The enclave's claims (model, digests), bound by REPORT_DATA.
    pub claims: Claims,
    /// The enclave's Noise static key, bound by REPORT_DATA.
    pub server_key: [u8; 32],
    /// Whether evidence was bound to this connection's fresh nonce.
    pub fresh: bool,
    /// The release the enclave runs, when the client requires one.
    pub release: Option<VerifiedRelease>,
    /// What the log consistency check found (when a release was required).
    pub log_view: Option<String>,
    /// Wall time of connect + handshake + verification.
    pub elapsed: Duration,
}

impl Verification {
    /// True when the enclave is the simulated TEE: callers must warn the user.
    pub fn is_simulated(&self) -> bool {
        self.attestation.is_simulated
    }
}

/// A response: head now, body as it streams.
#[derive(Debug)]
pub struct Response {
    /// Status and headers.
    pub head: ResponseHead,
    id: u32,
    body: mpsc::UnboundedReceiver<BodyItem>,
    cmd: mpsc::UnboundedSender<Cmd>,
    done: bool,
    /// Set once the stream failed: every later read repeats the error, so a failed body
    /// can never turn into a clean end.
    failed: Option<Failure>,
    read_timeout: Duration,
}

enum BodyItem {
    Data(Bytes),
    End,
    Failed(Failure),
}

impl std::fmt::Debug for BodyItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyItem::Data(d) => write!(f, "Data({} bytes)", d.len()),
            BodyItem::End => f.write_str("End"),
            BodyItem::Failed(x) => write!(f, "Failed({x:?})"),
        }
    }
}

/// Why a stream ended without its explicit end.
#[derive(Debug, Clone)]
enum Failure {
    /// Reset by the enclave, or lost with the connection (truncation).
    Reset(CancelCode),
    /// The channel failed with this error (e.g. a record failed authentication).
    Wire(sotto_wire::WireError),
    /// The reader gave up waiting (the stream was cancelled).
    Timeout,
}

impl From<Failure> for ClientError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Reset(code) => ClientError::Reset(code),
            Failure::Wire(e) => ClientError::Wire(e),
            Failure::Timeout => ClientError::Timeout("reading the response"),
        }
    }
}

impl Response {
    /// The next body chunk; `Ok(None)` at the enclave's explicit end of stream. A stream
    /// that ends any other way (reset, connection loss, truncation) is an error.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, ClientError> {
        if let Some(f) = &self.failed {
            return Err(f.clone().into());
        }
        if self.done {
            return Ok(None);
        }
        let item = match tokio::time::timeout(self.read_timeout, self.body.recv()).await {
            Ok(item) => item,
            Err(_) => {
                // Give up on this stream (and tell the enclave to stop), but a stall is not
                // an end: report it as such.
                self.send_cancel();
                self.failed = Some(Failure::Timeout);
                return Err(Failure::Timeout.into());
            }
        };
        let failure = match item {
            Some(BodyItem::Data(d)) => return Ok(Some(d)),
            Some(BodyItem::End) => {
                self.done = true;
                return Ok(None);
            }
            Some(BodyItem::Failed(f)) => f,
            None => Failure::Reset(CancelCode::ConnectionLost),
        };
        self.done = true;
        self.failed = Some(failure.clone());
        Err(failure.into())
    }

    /// Reads the whole body.
    pub async fn bytes(mut self) -> Result<Vec<u8>, ClientError> {
        let mut out = Vec::new();
        while let Some(c) = self.chunk().await? {
            out.extend_from_slice(&c);
        }
        Ok(out)
    }

    /// Cancels the stream: the enclave stops generating.
    pub fn cancel(mut self) {
        self.send_cancel();
    }

    fn send_cancel(&mut self) {
        if !self.done {
            self.done = true;
            let _ = self.cmd.send(Cmd::Cancel(self.id));
        }
    }
}

impl Drop for Response {
    fn drop(&mut self) {
        // Dropping an unfinished response cancels it, so abandoned streams never keep the
        // enclave busy.
        self.send_cancel();
    }
}

type Opened = Result<(u32, ResponseHead, mpsc::UnboundedReceiver<BodyItem>), ClientError>;

/// Cancels a request whose caller stopped waiting for its head (the `request` future was
/// dropped or timed out). A stream not open yet at that moment is cancelled by the
/// connection task when its head arrives, as before.
struct AbandonOnDrop<'a> {
    cmd: &'a mpsc::UnboundedSender<Cmd>,
    opened: Option<oneshot::Receiver<u32>>,
}

impl Drop for AbandonOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(Ok(id)) = self.opened.as_mut().map(|rx| rx.try_recv()) {
            let _ = self.cmd.send(Cmd::Cancel(id));
        }
    }
}

enum Cmd {
    Open {
        head: RequestHead,
        body: Vec<u8>,
        reply: oneshot::Sender<Opened>,
        /// The stream's id as soon as it is open, so that a caller who stops waiting for
        /// the head can cancel it at once.
        opened: oneshot::Sender<u32>,
    },
    Cancel(u32),
    Close,
}

struct Pending {
    head_tx: Option<oneshot::Sender<Opened>>,
    body_tx: Option<mpsc::UnboundedSender<BodyItem>>,
    body_rx: Option<mpsc::UnboundedReceiver<BodyItem>>,
}

/// A verified, open channel to one enclave. Cheap to clone; requests are multiplexed.
#[derive(Debug, Clone)]
pub struct Session {
    cmd: mpsc::UnboundedSender<Cmd>,
    response_timeout: Duration,
    read_timeout: Duration,
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cmd")
    }
}

fn entropy() -> Result<[u8; 32], ClientError> {
    let mut e = [0u8; 32];
    getrandom::fill(&mut e)
        .map_err(|_| ClientError::Config("OS random number generator failed".into()))?;
    Ok(e)
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects, verifies the enclave, and returns a session. Fails closed: if anything does
/// not verify, the connection is dropped without sending application data.
pub async fn connect(config: &ClientConfig) -> Result<(Session, Verification), ClientError> {
    tokio::time::timeout(config.connect_timeout, connect_inner(config, now_unix()))
        .await
        .map_err(|_| ClientError::Timeout("connect and verify"))?
}

/// Verifies a server hello against the trust configuration at `now_unix`. Public so that
/// tools (and tests) can run exactly the client's checks.
pub fn verify_hello(
    hello: &sotto_wire::ServerHello,
    trust: &Trust,
    now_unix: u64,
) -> Result<(Verified, Claims, Option<VerifiedRelease>), ClientError> {
    let bundle = EvidenceBundle::decode(hello.evidence())?;
    // 1. The release (public data: signature, log inclusion, witnesses), before the
    //    evidence, because its minimum policy applies to the evidence.
    let release = match &trust.release {
        None => None,
        Some(rc) => {
            let extra = bundle
                .extras
                .iter()
                .find(|e| e.tag == sotto_attest::tags::RELEASE_MANIFEST)
                .ok_or(ReleaseError::ReleaseMissing)?;
            let proof = sotto_release::ReleaseProof::decode(&extra.value)?;
            Some(sotto_release::verify_release(&proof, &rc.trust, now_unix)?)
        }
    };
    // Genuine hardware proves only that *some* image runs on a genuine chip: without a
    // measurement pin (or a release listing the measurements), the operator's own image
    // would pass.
    if bundle.platform != sotto_attest::Platform::SimulatedSnp
        && trust.expected_measurement.is_none()
        && release.is_none()
        && !trust.allow_unpinned_measurement
    {
        return Err(ClientError::MeasurementNotPinned);
    }
    let roots = TrustRoots {
        simulation: trust
            .simulation_root
            .map(|ark_fingerprint| SimulationPin { ark_fingerprint }),
    };
    let mut policy = Policy::new(roots, hello.expected_report_data());
    policy.expected_measurement = trust.expected_measurement;
    // Debug and migration agents stay disallowed: a client never relaxes those.
    policy.min_tcb = trust.min_tcb;
    if let Some(statuses) = &trust.allowed_tcb_statuses {
        policy.tdx.allowed_tcb_statuses = statuses.clone();
    }
    policy.require_amd_crl = trust.require_amd_crl;
    if let Some(r) = &release {
        r.manifest.apply_to(&mut policy);
    }
    // 2. The evidence. REPORT_DATA covers the claims, so they are trustworthy once this
    //    passes. Chains that verified before are remembered process-wide (exact bytes).
    static CHAINS: std::sync::Mutex<Option<sotto_attest::ChainCache>> = std::sync::Mutex::new(None);
    let verified = {
        let mut guard = CHAINS.lock().unwrap_or_else(|p| p.into_inner());
        let cache = guard.get_or_insert_with(Default::default);
        sotto_attest::verify_cached(&bundle, &policy, now_unix, cache)?
    };
    let claims = Claims::decode(hello.claims())?;
    if let Some(want) = trust.expected_weights_sha256
        && want != claims.weights_sha256
    {
        return Err(ClientError::ModelDigestMismatch {
            got: hex::encode(claims.weights_sha256),
            expected: hex::encode(want),
        });
    }
    // 3. The evidence is a launch of the release, serving the release's model.
    if let Some(r) = &release {
        r.manifest.check_measurement(&verified)?;
        r.manifest.check_model(
            &claims.model_id,
            &claims.weights_sha256,
            &claims.tokenizer_sha256,
        )?;
    }
    Ok((verified, claims, release))
}

async fn connect_inner(
    config: &ClientConfig,
    now: u64,
) -> Result<(Session, Verification), ClientError> {
    let started = Instant::now();
    let max = config.limits.max_record;
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max));
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(
        config.relay_url.as_str(),
        Some(ws_config),
        true,
    )
    .await
    .map_err(|e| ClientError::Connect(e.to_string()))?;
    let nonce = if config.fresh_evidence {
        Some(entropy()?)
    } else {
        None
    };
    let (hs, first) = ClientHandshake::start(entropy()?, nonce)?;
    ws.send(Message::Binary(first.into()))
        .await
        .map_err(|e| ClientError::Connect(e.to_string()))?;
    let reply = loop {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) => break b,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(_)) | None => {
                return Err(ClientError::Connect(
                    "relay closed during the handshake".into(),
                ));
            }
            Some(Err(e)) => return Err(ClientError::Connect(e.to_string())),
        }
    };
    let hello = hs.read_server_hello(&reply)?;
    let checked = match verify_hello(&hello, &config.trust, now) {
        Ok((attestation, claims, release)) => {
            // 4. The log view (needs I/O: tiles for a consistency proof).
            match (&config.trust.release, &release) {
                (Some(rc), Some(r)) => release::check_view(rc, r, config.connect_timeout)
                    .await
                    .map(|view| (attestation, claims, release, Some(view))),
                _ => Ok((attestation, claims, release, None)),
            }
        }
        Err(e) => Err(e),
    };
    let (attestation, claims, release, log_view) = match checked {
        Ok(v) => v,
        Err(e) => {
            // Fail closed: say goodbye at the WebSocket level only; no channel data.
            let _ = ws.close(None).await;
            return Err(e);
        }
    };
    let server_key = *hello.server_static();
    let conn = hello.accept(config.limits.clone())?;
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    tokio::spawn(drive(ws, conn, cmd_rx));
    let verification = Verification {
        attestation,
        claims,
        server_key,
        fresh: nonce.is_some(),
        release,
        log_view,
        elapsed: started.elapsed(),
    };
    let session = Session {
        cmd: cmd_tx,
        response_timeout: config.response_timeout,
        read_timeout: config.read_timeout,
    };
    Ok((session, verification))
}

impl Session {
    /// Sends a request (head and whole body) and waits for the response head.
    ///
    /// Dropping the returned future before the head arrives (or timing out) cancels the
    /// stream in the enclave right away — which matters when the head only comes at the end
    /// of the work, as for a non-streamed completion.
    pub async fn request(&self, head: RequestHead, body: Vec<u8>) -> Result<Response, ClientError> {
        let (tx, rx) = oneshot::channel();
        let (opened_tx, opened_rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Open {
                head,
                body,
                reply: tx,
                opened: opened_tx,
            })
            .map_err(|_| ClientError::Closed)?;
        let mut abandon = AbandonOnDrop {
            cmd: &self.cmd,
            opened: Some(opened_rx),
        };
        let waited = tokio::time::timeout(self.response_timeout, rx).await;
        // The head (or the stream's failure) arrived: the `Response` takes over.
        if waited.is_ok() {
            abandon.opened = None;
        }
        let (id, head, body) = waited
            .map_err(|_| ClientError::Timeout("waiting for the response"))?
            .map_err(|_| ClientError::Closed)??;
        Ok(Response {
            head,
            id,
            body,
            cmd: self.cmd.clone(),
            done: false,
            failed: None,
            read_timeout: self.read_timeout,
        })
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(
        &self,
        path: &str,
        json: &serde_json::Value,
    ) -> Result<Response, ClientError> {
        let head = RequestHead {
            method: "POST".into(),
            path: path.into(),
            headers: vec![("content-type".into(), "application/json".into())],
        };
        self.request(head, json.to_string().into_bytes()).await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Result<Response, ClientError> {
        self.request(
            RequestHead {
                method: "GET".into(),
                path: path.into(),
                headers: vec![],
            },
            Vec::new(),
        )
        .await
    }

    /// Closes the channel gracefully.
    pub fn close(&self) {
        let _ = self.cmd.send(Cmd::Close);
    }

    /// Whether the connection task is still running.
    pub fn is_open(&self) -> bool {
        !self.cmd.is_closed()
    }
}

async fn drive(ws: Ws, mut conn: Connection, mut cmd_rx: mpsc::UnboundedReceiver<Cmd>) {
    // Writing happens in its own task so that reading never stops while a write is
    // blocked (otherwise a large upload and many responses can deadlock both ends).
    let (mut sink, mut stream) = ws.split();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let writer = tokio::spawn(async move {
        while let Some(r) = out_rx.recv().await {
            if sink.send(Message::Binary(r.into())).await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    });
    let mut pending: HashMap<u32, Pending> = HashMap::new();
    let mut closing = false;
    // The error that killed the channel, reported to every stream it cut off. `None` when
    // the transport just ended (truncation).
    let mut fatal: Option<sotto_wire::WireError> = None;
    loop {
        tokio::select! {
            cmd = cmd_rx.recv() => match cmd {
                Some(Cmd::Open { head, body, reply, opened }) => {
                    match open(&mut conn, head, &body) {
                        Ok(id) => {
                            let (btx, brx) = mpsc::unbounded_channel();
                            pending.insert(id, Pending { head_tx: Some(reply), body_tx: Some(btx), body_rx: Some(brx) });
                            let _ = opened.send(id);
                        }
                        Err(e) => { let _ = reply.send(Err(e.into())); }
                    }
                }
                Some(Cmd::Cancel(id)) => {
                    pending.remove(&id);
                    // UnknownStream: the stream already ended; nothing to cancel.
                    let _ = conn.cancel(id, CancelCode::Cancelled);
                }
                Some(Cmd::Close) | None => {
                    let _ = conn.close(0);
                    closing = true;
                }
            },
            msg = stream.next() => {
                let result = match msg {
                    Some(Ok(Message::Binary(b))) => {
                        let r = conn.handle_record(&b);
                        if let Err(e) = &r {
                            fatal = Some(e.clone());
                        }
                        r
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Ok(()),
                    Some(Ok(Message::Text(_))) => {
                        let e = sotto_wire::WireError::ProtocolViolation("text message");
                        fatal = Some(e.clone());
                        Err(e)
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => conn.transport_closed(),
                };
                while let Some(ev) = conn.poll_event() {
                    if let Some(abandoned) = on_event(ev, &mut pending, fatal.as_ref()) {
                        // The caller stopped waiting for this response: stop the enclave too.
                        let _ = conn.cancel(abandoned, CancelCode::Cancelled);
                    }
                }
                if result.is_err() || !conn.is_open() {
                    break;
                }
            }
        }
        while let Some(r) = conn.poll_transmit() {
            if out_tx.send(r).is_err() {
                // The writer failed: the transport is gone.
                let _ = conn.transport_closed();
                while let Some(ev) = conn.poll_event() {
                    let _ = on_event(ev, &mut pending, None);
                }
                break;
            }
        }
        if closing || !conn.is_open() {
            break;
        }
    }
    // Anything still pending was cut off: truncated, or killed by the fatal error.
    let failure = match fatal {
        Some(e) => Failure::Wire(e),
        None => Failure::Reset(CancelCode::ConnectionLost),
    };
    for (_, p) in pending.drain() {
        if let Some(tx) = p.head_tx {
            let _ = tx.send(Err(failure.clone().into()));
        }
        if let Some(tx) = p.body_tx {
            let _ = tx.send(BodyItem::Failed(failure.clone()));
        }
    }
    // Let the writer send what is queued (e.g. CLOSE), then close the WebSocket.
    drop(out_tx);
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
}

fn open(
    conn: &mut Connection,
    head: RequestHead,
    body: &[u8],
) -> Result<u32, sotto_wire::WireError> {
    let id = conn.open_stream(head)?;
    if !body.is_empty() {
        conn.send_data(id, body)?;
    }
    conn.finish(id)?;
    Ok(id)
}

/// Applies one channel event; returns a stream id whose requester has gone away (its
/// `Session::request` future was dropped), which the caller then cancels.
fn on_event(
    ev: Event,
    pending: &mut HashMap<u32, Pending>,
    fatal: Option<&sotto_wire::WireError>,
) -> Option<u32> {
    match ev {
        Event::Response { id, head } => {
            if let Some(p) = pending.get_mut(&id)
                && let (Some(tx), Some(rx)) = (p.head_tx.take(), p.body_rx.take())
                && tx.send(Ok((id, head, rx))).is_err()
            {
                pending.remove(&id);
                return Some(id);
            }
        }
        Event::Data { id, data } => {
            if let Some(tx) = pending.get(&id).and_then(|p| p.body_tx.as_ref()) {
                let _ = tx.send(BodyItem::Data(Bytes::from(data)));
            }
        }
        Event::End { id } => {
            if let Some(p) = pending.remove(&id)
                && let Some(tx) = p.body_tx
            {
                let _ = tx.send(BodyItem::End);
            }
        }
        Event::Reset { id, code } => {
            if let Some(p) = pending.remove(&id) {
                // Streams reset because the channel failed report why it failed.
                let failure = match (code, fatal) {
                    (CancelCode::ConnectionLost, Some(e)) => Failure::Wire(e.clone()),
                    _ => Failure::Reset(code),
                };
                if let Some(tx) = p.head_tx {
                    let _ = tx.send(Err(failure.clone().into()));
                }
                if let Some(tx) = p.body_tx {
                    let _ = tx.send(BodyItem::Failed(failure));
                }
            }
        }
        Event::Request { .. } | Event::Closed { .. } => {}
    }
    None
}

/// Parses one server-sent-events body incrementally: feed chunks, get `data:` payloads.
#[derive(Default)]
pub struct SseParser {
    buf: Vec<u8>,
}

// Manual Debug impls here print sizes, never response text.
impl std::fmt::Debug for SseParser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseParser")
            .field("buffered_bytes", &self.buf.len())
            .finish()
    }
}

impl SseParser {
    /// Adds bytes; returns complete events' data fields (joined per event).
    pub fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(pos) = find_event_end(&self.buf) {
            let event: Vec<u8> = self.buf.drain(..pos.0 + pos.1).collect();
            let text = String::from_utf8_lossy(&event[..pos.0]);
            let data: Vec<&str> = text
                .lines()
                .filter_map(|l| {
                    l.strip_prefix("data:")
                        .map(|d| d.strip_prefix(' ').unwrap_or(d))
                })
                .collect();
            if !data.is_empty() {
                out.push(data.join("\n"));
            }
        }
        out
    }
}

fn find_event_end(b: &[u8]) -> Option<(usize, usize)> {
    let lf = b.windows(2).position(|w| w == b"\n\n").map(|p| (p, 2));
    let crlf = b.windows(4).position(|w| w == b"\r\n\r\n").map(|p| (p, 4));
    match (lf, crlf) {
        (Some(a), Some(c)) => Some(if a.0 <= c.0 { a } else { c }),
        (a, c) => a.or(c),
    }
}

/// A streamed chat completion: text deltas as they arrive.
pub struct ChatStream {
    response: Response,
    sse: SseParser,
    queue: std::collections::VecDeque<String>,
    finished: bool,
    /// `finish_reason` of the final chunk, once seen.
    pub finish_reason: Option<String>,
    /// Usage object, if the enclave sent one.
    pub usage: Option<serde_json::Value>,
}

impl std::fmt::Debug for ChatStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatStream")
            .field("queued_deltas", &self.queue.len())
            .field("finished", &self.finished)
            .field("finish_reason", &self.finish_reason)
            .finish_non_exhaustive()
    }
}

impl ChatStream {
    /// Starts a streaming chat completion with the given OpenAI request body (`stream` is
    /// forced on). A non-200 answer becomes an error carrying the API's error code.
    pub async fn start(
        session: &Session,
        mut request: serde_json::Value,
    ) -> Result<Self, ApiFailure> {
        request["stream"] = serde_json::Value::Bool(true);
        let response = session
            .post_json("/v1/chat/completions", &request)
            .await
            .map_err(ApiFailure::Client)?;
        if response.head.status != 200 {
            let status = response.head.status;
            let body = response.bytes().await.map_err(ApiFailure::Client)?;
            return Err(ApiFailure::from_body(status, &body));
        }
        Ok(ChatStream {
            response,
            sse: SseParser::default(),
            queue: Default::default(),
            finished: false,
            finish_reason: None,
            usage: None,
        })
    }

    /// Next text delta; `Ok(None)` after `[DONE]` and the enclave's end of stream.
    pub async fn next_delta(&mut self) -> Result<Option<String>, ApiFailure> {
        loop {
            if let Some(d) = self.queue.pop_front() {
                return Ok(Some(d));
            }
            if self.finished {
                // `[DONE]` is not the end: wait for the channel's end of stream so that
                // truncation is caught (also when `[DONE]` shared a record with text).
                return match self.response.chunk().await.map_err(ApiFailure::Client)? {
                    None => Ok(None),
                    Some(_) => Err(ApiFailure::Api {
                        status: 200,
                        code: "bad_chunk".into(),
                        message: "data after [DONE]".into(),
                    }),
                };
            }
            match self.response.chunk().await.map_err(ApiFailure::Client)? {
                None => {
                    // The explicit end must come after [DONE]; otherwise it is truncated.
                    return Err(ApiFailure::Client(ClientError::Reset(
                        CancelCode::ConnectionLost,
                    )));
                }
                Some(c) => {
                    for data in self.sse.push(&c) {
                        if data == "[DONE]" {
                            self.finished = true;
                            continue;
                        }
                        let v: serde_json::Value =
                            serde_json::from_str(&data).map_err(|_| ApiFailure::Api {
                                status: 200,
                                code: "bad_chunk".into(),
                                message: "unparseable stream chunk".into(),
                            })?;
                        if let Some(err) = v.get("error") {
                            return Err(ApiFailure::from_error_json(200, err));
                        }
                        if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
                            self.usage = Some(u.clone());
                        }
                        if let Some(choice) = v["choices"].get(0) {
                            if let Some(t) = choice["delta"]["content"]
                                .as_str()
                                .filter(|t| !t.is_empty())
                            {
                                self.queue.push_back(t.to_string());
                            }
                            if let Some(r) = choice["finish_reason"].as_str() {
                                self.finish_reason = Some(r.to_string());
                            }
                        }
                    }
                }
            }
        }
    }

    /// Cancels generation.
    pub fn cancel(self) {
        self.response.cancel();
    }
}

/// A failed API call: either the channel failed or the API answered with an error.
#[derive(Debug, thiserror::Error)]
pub enum ApiFailure {
    /// Channel or verification failure.
    #[error(transparent)]
    Client(ClientError),
    /// The enclave's API returned an error object.
    #[error("API error {status} ({code}): {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// OpenAI-style error code.
        code: String,
        /// Message.
        message: String,
    },
}

impl ApiFailure {
    fn from_body(status: u16, body: &[u8]) -> Self {
        match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(v) => Self::from_error_json(status, &v["error"]),
            Err(_) => ApiFailure::Api {
                status,
                code: "unknown".into(),
                message: "unparseable error body".into(),
            },
        }
    }
    fn from_error_json(status: u16, err: &serde_json::Value) -> Self {
        ApiFailure::Api {
            status,
            code: err["code"].as_str().unwrap_or("unknown").to_string(),
            message: err["message"].as_str().unwrap_or("").to_string(),
        }
    }
}

/// Human-readable hex.
pub fn hex(b: &[u8]) -> String {
    hex::encode(b)
}
