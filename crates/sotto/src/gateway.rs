//! `sotto gateway`: a local OpenAI-compatible HTTP server whose every request travels through
//! a verified Sotto channel.
//!
//! ```text
//! OpenAI SDK ──HTTP (loopback)──▶ sotto gateway ══Noise channel══▶ relay ══▶ enclave ──▶ model
//!                                  verify first, then forward
//! ```
//!
//! - **Verification.** The gateway connects and verifies the enclave exactly as `sotto ask`
//!   does (the same [`ConnectArgs`] policy flags), before the first request, and again on
//!   every reconnection (each new connection is a new handshake with fresh evidence, so a
//!   changed enclave key is always verified before use). While no enclave verifies, nothing
//!   is forwarded: every request gets 502 with the rejection code.
//! - **Forwarding.** Only the OpenAI routes below are forwarded, with their JSON body and a
//!   `content-type` header and nothing else (no client headers, no API key); the enclave's
//!   status, `content-type`, `cache-control` and body come back unchanged, streamed chunk by
//!   chunk, so server-sent events are exactly the enclave's (OpenAI's format, `[DONE]`, the
//!   usage chunk).
//! - **Connections.** All requests are multiplexed over one channel; when it dies the next
//!   request reconnects (and re-verifies), failed attempts back off exponentially, and a
//!   request that lost its channel before any answer is retried once on a new one. An HTTP
//!   client that goes away cancels its stream in the enclave, which stops generating.
//! - **Exposure.** Loopback only unless `--allow-non-loopback`, which requires a bearer
//!   token. Without a token, requests from web pages (an `Origin` header) and requests for a
//!   non-loopback `Host` (DNS rebinding) are refused.
//! - **Logs** carry routes, statuses, sizes, timings and error codes; never a prompt, an
//!   answer or a header value.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use clap::Args;
use futures_util::StreamExt;
use serde_json::{Value, json};
use sha2::Digest;
use sotto_client::{ClientConfig, ClientError, Session, Verification};
use sotto_wire::{CancelCode, RequestHead};

use crate::CliError;
use crate::cli_client::ConnectArgs;

#[derive(Args, Debug)]
pub struct GatewayArgs {
    /// Address of the local OpenAI-compatible server (loopback; port 0 picks a free one).
    #[arg(long, env = "SOTTO_GATEWAY_LISTEN", default_value = "127.0.0.1:7903")]
    pub listen: SocketAddr,
    /// Allow a non-loopback --listen address. Requires --token: anyone who can reach the
    /// port could otherwise use the enclave in your name.
    #[arg(long)]
    pub allow_non_loopback: bool,
    /// Require `Authorization: Bearer TOKEN` on every request (the SDKs' API key). Prefer
    /// the environment variable or --token-file: arguments are visible to other users.
    #[arg(long, env = "SOTTO_GATEWAY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Read the bearer token from this file (first line).
    #[arg(long, conflicts_with = "token")]
    pub token_file: Option<PathBuf>,
    /// Largest request body accepted, in bytes (larger: 413).
    #[arg(long, default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// Most requests forwarded at once (further requests wait for a slot).
    #[arg(long, default_value_t = 32)]
    pub max_concurrent: usize,
    /// Seconds to wait for the enclave's answer to begin (a non-streamed completion begins
    /// when it is complete).
    #[arg(long, default_value_t = 600)]
    pub response_timeout_secs: u64,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Longest wait between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Wait after the first failed attempt; doubles with every further failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

pub async fn gateway(args: GatewayArgs) -> Result<ExitCode, CliError> {
    let token = match (&args.token, &args.token_file) {
        (Some(t), _) => Some(t.trim().to_string()),
        (None, Some(f)) => {
            let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
            Some(text.lines().next().unwrap_or_default().trim().to_string())
        }
        (None, None) => None,
    };
    if token.as_deref() == Some("") {
        return Err("the bearer token is empty".into());
    }
    if !args.listen.ip().is_loopback() {
        if !args.allow_non_loopback {
            return Err(format!(
                "refusing to listen on non-loopback address {} (pass --allow-non-loopback and --token)",
                args.listen
            )
            .into());
        }
        if token.is_none() {
            return Err(
                "--allow-non-loopback requires a bearer token (--token, SOTTO_GATEWAY_TOKEN or --token-file)"
                    .into(),
            );
        }
    }
    if args.max_concurrent == 0 || args.max_body_bytes == 0 {
        return Err("--max-concurrent and --max-body-bytes must be at least 1".into());
    }
    let mut config = args.connect.config()?;
    config.response_timeout = Duration::from_secs(args.response_timeout_secs.max(1));
    let slots = args
        .max_concurrent
        .min(config.limits.max_concurrent_streams.max(1));
    let gw = Arc::new(Gateway {
        upstream: Upstream::new(config),
        token_digest: token.map(|t| sha2::Sha256::digest(t.as_bytes()).into()),
        max_body: args.max_body_bytes,
        slots: Arc::new(tokio::sync::Semaphore::new(slots)),
        stats: Stats::default(),
    });
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    // Verify before the first request. A failure is not fatal: the gateway answers with the
    // reason (502/503) and tries again, with backoff, as requests come in.
    if let Err(e) = gw.upstream.session().await {
        eprintln!(
            "warning: no verified enclave yet [{}]: {}; requests are refused until one verifies",
            e.code, e.message
        );
    }
    println!("OpenAI base URL: http://{addr}/v1");
    println!("gateway listening on http://{addr}");
    serve(listener, gw.clone()).await?;
    gw.upstream.close().await;
    Ok(ExitCode::SUCCESS)
}

/// Serves until Ctrl-C.
async fn serve(listener: tokio::net::TcpListener, gw: Arc<Gateway>) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    // Streamed tokens are small writes: no Nagle delay.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let app = Router::new().fallback(handle).with_state(gw);
    tokio::select! {
        r = axum::serve(listener, app) => r,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("stopping");
            Ok(())
        }
    }
}

struct Gateway {
    upstream: Upstream,
    /// SHA-256 of the bearer token, when one is required.
    token_digest: Option<[u8; 32]>,
    max_body: usize,
    slots: Arc<tokio::sync::Semaphore>,
    stats: Stats,
}

#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    active: AtomicU64,
    peak_active: AtomicU64,
    completed: AtomicU64,
    cancelled: AtomicU64,
    failed: AtomicU64,
    refused: AtomicU64,
}

/// An error the gateway answers itself, in OpenAI's error shape.
#[derive(Debug, Clone)]
struct GwError {
    status: StatusCode,
    r#type: &'static str,
    code: String,
    message: String,
    /// `x-should-retry` for the OpenAI SDKs (which otherwise retry every 5xx).
    retry: Option<bool>,
    retry_after: Option<Duration>,
}

impl GwError {
    fn new(
        status: StatusCode,
        r#type: &'static str,
        code: &str,
        message: impl Into<String>,
    ) -> Self {
        GwError {
            status,
            r#type,
            code: code.to_string(),
            message: message.into(),
            retry: None,
            retry_after: None,
        }
    }

    fn invalid(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        let mut e = GwError::new(status, "invalid_request_error", code, message);
        e.retry = Some(false);
        e
    }

    /// Why no verified channel could be had.
    fn from_connect(e: &ClientError) -> Self {
        if e.is_rejection() {
            let mut g = GwError::new(
                StatusCode::BAD_GATEWAY,
                "enclave_verification_error",
                e.code(),
                format!(
                    "{e}. Nothing was sent to the enclave: the gateway forwards no request until an enclave verifies."
                ),
            );
            g.retry = Some(false);
            return g;
        }
        match e {
            // The relay or enclave answered the handshake with something that is not a valid
            // enclave (a tampering relay, a wrong endpoint): not verified either.
            ClientError::Wire(_) => {
                let mut g = GwError::new(
                    StatusCode::BAD_GATEWAY,
                    "enclave_verification_error",
                    e.code(),
                    format!(
                        "could not establish a verified channel [{}]: {e}. Nothing was sent to the enclave.",
                        e.code()
                    ),
                );
                g.retry = Some(true);
                g
            }
            _ => GwError::unavailable(e),
        }
    }

    fn unavailable(e: &ClientError) -> Self {
        let mut g = GwError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "enclave_unavailable",
            format!("The enclave is unavailable [{}]: {e}", e.code()),
        );
        g.retry = Some(true);
        g
    }

    /// A request that failed after a verified channel was open.
    fn from_request(e: &ClientError) -> Self {
        match e {
            ClientError::Reset(CancelCode::Refused) => {
                let mut g = GwError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server_error",
                    "enclave_busy",
                    "The enclave refused the request: it is at its concurrency limit.",
                );
                g.retry = Some(true);
                g.retry_after = Some(Duration::from_secs(1));
                g
            }
            ClientError::Timeout(_) => GwError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "server_error",
                e.code(),
                format!("The enclave did not answer in time [{}].", e.code()),
            ),
            ClientError::Reset(_) => GwError::new(
                StatusCode::BAD_GATEWAY,
                "server_error",
                e.code(),
                format!("The enclave reset the request [{}].", e.code()),
            ),
            _ => GwError::unavailable(e),
        }
    }

    fn to_json(&self) -> Value {
        json!({ "error": {
            "message": self.message,
            "type": self.r#type,
            "param": Value::Null,
            "code": self.code,
        }})
    }
}

impl IntoResponse for GwError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.to_json())).into_response();
        let h = r.headers_mut();
        if let Some(retry) = self.retry {
            h.insert(
                "x-should-retry",
                HeaderValue::from_static(if retry { "true" } else { "false" }),
            );
        }
        if let Some(after) = self.retry_after {
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
                h.insert(header::RETRY_AFTER, v);
            }
        }
        if self.status == StatusCode::UNAUTHORIZED {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

/// The one channel requests share, (re)connected and verified on demand.
struct Upstream {
    config: ClientConfig,
    /// Held while connecting, so concurrent requests wait for one handshake.
    conn: tokio::sync::Mutex<Conn>,
    /// What `/sotto/status` shows; never held across an await.
    info: std::sync::Mutex<Info>,
}

#[derive(Default)]
struct Conn {
    session: Option<(Session, u64)>,
    generation: u64,
    last_key: Option<[u8; 32]>,
    failures: u32,
    retry_at: Option<Instant>,
    last_error: Option<GwError>,
}

#[derive(Default)]
struct Info {
    verified: Option<Value>,
    connects: u64,
    connect_failures: u64,
    last_error: Option<(String, String)>,
}

impl Upstream {
    fn new(config: ClientConfig) -> Self {
        Upstream {
            config,
            conn: Default::default(),
            info: Default::default(),
        }
    }

    /// An open, verified session, connecting (and verifying) when there is none. While a
    /// failed attempt's backoff runs, its error is returned without a new attempt.
    async fn session(&self) -> Result<(Session, u64), GwError> {
        let mut c = self.conn.lock().await;
        if let Some((s, generation)) = &c.session {
            if s.is_open() {
                return Ok((s.clone(), *generation));
            }
            tracing::info!("channel to the enclave closed; the next request reconnects");
            c.session = None;
        }
        if let (Some(at), Some(e)) = (c.retry_at, &c.last_error) {
            let now = Instant::now();
            if now < at {
                let mut e = e.clone();
                e.retry_after = Some(at - now);
                return Err(e);
            }
        }
        match sotto_client::connect(&self.config).await {
            Ok((session, v)) => {
                eprintln!("{}", crate::cli_client::status_line(&v));
                if let Some(old) = c.last_key
                    && old != v.server_key
                {
                    eprintln!(
                        "enclave key changed ({}… → {}…): the new enclave was verified before use",
                        &hex::encode(old)[..16],
                        &hex::encode(v.server_key)[..16]
                    );
                }
                c.last_key = Some(v.server_key);
                c.failures = 0;
                c.retry_at = None;
                c.last_error = None;
                c.generation += 1;
                c.session = Some((session.clone(), c.generation));
                let mut info = self.info.lock().unwrap_or_else(|p| p.into_inner());
                info.verified = Some(verification_json(&v));
                info.connects += 1;
                info.last_error = None;
                Ok((session, c.generation))
            }
            Err(e) => {
                let g = GwError::from_connect(&e);
                c.failures = c.failures.saturating_add(1);
                let backoff = FIRST_BACKOFF
                    .saturating_mul(1 << (c.failures - 1).min(8))
                    .min(MAX_BACKOFF);
                c.retry_at = Some(Instant::now() + backoff);
                c.last_error = Some(g.clone());
                tracing::warn!(
                    code = e.code(),
                    retry_in_ms = backoff.as_millis() as u64,
                    "cannot reach a verified enclave"
                );
                if e.is_rejection() {
                    eprintln!(
                        "enclave REJECTED [{}]: {e}; nothing was sent to it",
                        e.code()
                    );
                }
                let mut info = self.info.lock().unwrap_or_else(|p| p.into_inner());
                info.verified = None;
                info.connect_failures += 1;
                info.last_error = Some((g.code.clone(), g.message.clone()));
                let mut g = g;
                g.retry_after = Some(backoff);
                Err(g)
            }
        }
    }

    /// Forgets session `generation` (its connection failed under a request).
    async fn invalidate(&self, generation: u64) {
        let mut c = self.conn.lock().await;
        if c.session.as_ref().is_some_and(|(_, g)| *g == generation) {
            c.session = None;
        }
    }

    /// Sends one request; a request whose channel died before any answer is retried once
    /// on a new (newly verified) channel.
    async fn send(
        &self,
        head: RequestHead,
        body: Vec<u8>,
    ) -> Result<sotto_client::Response, GwError> {
        let mut retried = false;
        loop {
            let (session, generation) = self.session().await?;
            match session.request(head.clone(), body.clone()).await {
                Ok(r) => return Ok(r),
                Err(e) if !retried && channel_lost(&e) => {
                    tracing::info!(
                        code = e.code(),
                        "channel lost before the answer; retrying once"
                    );
                    self.invalidate(generation).await;
                    retried = true;
                }
                Err(e) => {
                    if channel_lost(&e) {
                        self.invalidate(generation).await;
                    }
                    return Err(GwError::from_request(&e));
                }
            }
        }
    }

    async fn close(&self) {
        if let Some((s, _)) = self.conn.lock().await.session.take() {
            s.close();
            // Let the CLOSE record go out.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The request never got an answer because its channel failed.
fn channel_lost(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Closed | ClientError::Wire(_) | ClientError::Reset(CancelCode::ConnectionLost)
    )
}

fn verification_json(v: &Verification) -> Value {
    let verified_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    json!({
        "simulated": v.is_simulated(),
        "platform": format!("{:?}", v.attestation.platform),
        "root_sha256": hex::encode(v.attestation.ark_fingerprint),
        "measurement": hex::encode(v.attestation.measurement),
        "channel_key": hex::encode(v.server_key),
        "model": {
            "id": v.claims.model_id,
            "backend": v.claims.backend,
            "weights_sha256": hex::encode(v.claims.weights_sha256),
        },
        "release": v.release.as_ref().map(|r| json!({
            "version": r.manifest.version,
            "signer": r.signer,
            "log_index": r.index,
            "log_size": r.checkpoint.checkpoint.size(),
            "witness_cosignatures": r.checkpoint.cosignatures.len(),
        })),
        "fresh_evidence": v.fresh,
        "verified_at": verified_at,
    })
}

/// What a request is.
#[derive(Clone, Copy)]
enum Route {
    /// Forwarded to the enclave; the name is what logs show.
    Forward(&'static str),
    /// `GET /sotto/status`, answered here.
    Status,
}

fn route(method: &Method, path: &str) -> Result<Route, GwError> {
    let (route, allowed) = match path {
        "/v1/models" => (Route::Forward("models"), Method::GET),
        "/v1/chat/completions" => (Route::Forward("chat.completions"), Method::POST),
        "/v1/completions" => (Route::Forward("completions"), Method::POST),
        "/sotto/status" => (Route::Status, Method::GET),
        p if p
            .strip_prefix("/v1/models/")
            .is_some_and(|id| !id.is_empty() && !id.contains('/')) =>
        {
            (Route::Forward("model"), Method::GET)
        }
        _ => {
            return Err(GwError::invalid(
                StatusCode::NOT_FOUND,
                "unknown_url",
                "Invalid URL: no such endpoint.",
            ));
        }
    };
    if *method != allowed {
        return Err(GwError::invalid(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "Method not allowed for this endpoint.",
        ));
    }
    Ok(route)
}

impl Gateway {
    /// The gateway's own access rules, checked before anything else.
    fn admit(&self, headers: &HeaderMap) -> Result<(), GwError> {
        match &self.token_digest {
            Some(want) => {
                let given = headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .map(str::trim);
                let ok = given.is_some_and(|g| {
                    let got: [u8; 32] = sha2::Sha256::digest(g.as_bytes()).into();
                    constant_time_eq(&got, want)
                });
                if !ok {
                    return Err(GwError::invalid(
                        StatusCode::UNAUTHORIZED,
                        "invalid_api_key",
                        "Missing or wrong bearer token: pass the gateway's token as the API key.",
                    ));
                }
            }
            None => {
                // Without a token, only local programs may use the gateway: a web page (any
                // site open in a browser on this machine) must not drive it.
                if headers.contains_key(header::ORIGIN) {
                    return Err(GwError::invalid(
                        StatusCode::FORBIDDEN,
                        "browser_request_refused",
                        "Requests from web pages are refused unless the gateway requires a token (--token).",
                    ));
                }
                if let Some(host) = headers.get(header::HOST)
                    && !is_loopback_host(host.to_str().unwrap_or(""))
                {
                    return Err(GwError::invalid(
                        StatusCode::FORBIDDEN,
                        "host_not_allowed",
                        "The Host header must name a loopback address unless the gateway requires a token (--token).",
                    ));
                }
            }
        }
        Ok(())
    }

    fn status(&self) -> Response {
        let s = &self.stats;
        // Never waits: while a connection attempt holds the lock, it is "connecting".
        let channel = match self.upstream.conn.try_lock() {
            Ok(c) if c.session.as_ref().is_some_and(|(s, _)| s.is_open()) => "open",
            Ok(_) => "closed",
            Err(_) => "connecting",
        };
        let info = self.upstream.info.lock().unwrap_or_else(|p| p.into_inner());
        let last_error = info
            .last_error
            .as_ref()
            .map(|(code, message)| json!({ "code": code, "message": message }));
        axum::Json(json!({
            // The open channel's enclave passed verification (it always has: a channel is
            // only kept once verified); `enclave` is the last verified one.
            "verified": channel == "open" && info.verified.is_some(),
            "channel": channel,
            "enclave": info.verified,
            "last_error": last_error,
            "connects": info.connects,
            "connect_failures": info.connect_failures,
            "requests": {
                "total": s.requests.load(Ordering::SeqCst),
                "active": s.active.load(Ordering::SeqCst),
                "peak_active": s.peak_active.load(Ordering::SeqCst),
                "completed": s.completed.load(Ordering::SeqCst),
                "cancelled": s.cancelled.load(Ordering::SeqCst),
                "failed": s.failed.load(Ordering::SeqCst),
                "refused": s.refused.load(Ordering::SeqCst),
            },
        }))
        .into_response()
    }
}

/// Equal 32-byte digests, compared without data-dependent branches.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// `localhost`, or a loopback IP, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => match host.rsplit_once(':') {
            Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
            _ => host,
        },
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// How a forwarded request ended.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Completed,
    Failed,
}

/// Accounts for one forwarded request from admission to its end. Dropped before it is
/// finished means the HTTP client went away: the request counts as cancelled (the
/// [`sotto_client::Response`] dropped alongside cancels the stream in the enclave).
struct Tracker {
    gw: Arc<Gateway>,
    route: &'static str,
    started: Instant,
    status: u16,
    bytes: u64,
    done: bool,
}

impl Tracker {
    fn new(gw: Arc<Gateway>, route: &'static str) -> Self {
        let s = &gw.stats;
        s.requests.fetch_add(1, Ordering::SeqCst);
        let active = s.active.fetch_add(1, Ordering::SeqCst) + 1;
        s.peak_active.fetch_max(active, Ordering::SeqCst);
        Tracker {
            gw,
            route,
            started: Instant::now(),
            status: 0,
            bytes: 0,
            done: false,
        }
    }

    fn finish(&mut self, outcome: Outcome, code: &str) {
        if self.done {
            return;
        }
        self.done = true;
        let s = &self.gw.stats;
        s.active.fetch_sub(1, Ordering::SeqCst);
        match outcome {
            Outcome::Completed => s.completed.fetch_add(1, Ordering::SeqCst),
            Outcome::Failed => s.failed.fetch_add(1, Ordering::SeqCst),
        };
        tracing::info!(
            route = self.route,
            status = self.status,
            outcome = code,
            bytes_out = self.bytes,
            ms = self.started.elapsed().as_millis() as u64,
            "request"
        );
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let s = &self.gw.stats;
        s.active.fetch_sub(1, Ordering::SeqCst);
        s.cancelled.fetch_add(1, Ordering::SeqCst);
        tracing::info!(
            route = self.route,
            status = self.status,
            bytes_out = self.bytes,
            ms = self.started.elapsed().as_millis() as u64,
            "request cancelled by the client; its stream in the enclave is cancelled"
        );
    }
}

async fn handle(State(gw): State<Arc<Gateway>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    if let Err(e) = gw.admit(&parts.headers) {
        gw.stats.refused.fetch_add(1, Ordering::SeqCst);
        tracing::info!(code = e.code, status = e.status.as_u16(), "request refused");
        return e.into_response();
    }
    let name = match route(&parts.method, parts.uri.path()) {
        Ok(Route::Status) => return gw.status(),
        Ok(Route::Forward(name)) => name,
        Err(e) => return e.into_response(),
    };
    // Moves into the response body once there is one; dropped unfinished before that (the
    // client went away while the request waited) it counts as cancelled.
    let mut tracker = Some(Tracker::new(gw.clone(), name));
    match forward(&gw, &parts, body, &mut tracker).await {
        Ok(resp) => resp,
        Err(e) => {
            if let Some(t) = tracker.as_mut() {
                t.status = e.status.as_u16();
                t.finish(Outcome::Failed, &e.code);
            }
            e.into_response()
        }
    }
}

async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Vec<u8>, GwError> {
    let too_large = || {
        GwError::invalid(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("The request body exceeds the limit of {limit} bytes."),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut out = Vec::new();
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| {
            GwError::invalid(
                StatusCode::BAD_REQUEST,
                "body_read_error",
                "The request body could not be read.",
            )
        })?;
        if out.len() + chunk.len() > limit {
            return Err(too_large());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

async fn forward(
    gw: &Arc<Gateway>,
    parts: &axum::http::request::Parts,
    body: Body,
    tracker: &mut Option<Tracker>,
) -> Result<Response, GwError> {
    let mut headers = Vec::new();
    let body = if parts.method == Method::POST {
        let body = read_body(body, &parts.headers, gw.max_body).await?;
        // Malformed JSON is answered here: it never needs the enclave. Everything else is
        // validated by the enclave's API, whose 4xx answers come back unchanged.
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(_)) => {}
            Ok(_) => return Err(invalid_json(0, 0)),
            Err(e) => return Err(invalid_json(e.line(), e.column())),
        }
        headers.push(("content-type".to_string(), "application/json".to_string()));
        body
    } else {
        Vec::new()
    };
    let head = RequestHead {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        headers,
    };
    let permit = gw.slots.clone().acquire_owned().await.map_err(|_| {
        GwError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "shutting_down",
            "The gateway is shutting down.",
        )
    })?;
    let response = gw.upstream.send(head, body).await?;
    let status = StatusCode::from_u16(response.head.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut builder = Response::builder().status(status);
    let mut sse = false;
    for (k, v) in &response.head.headers {
        let name = match k.to_ascii_lowercase().as_str() {
            "content-type" => header::CONTENT_TYPE,
            "cache-control" => header::CACHE_CONTROL,
            _ => continue,
        };
        let Ok(value) = HeaderValue::from_str(v) else {
            continue;
        };
        if name == header::CONTENT_TYPE && v.starts_with("text/event-stream") {
            sse = true;
        }
        builder = builder.header(name, value);
    }
    let relay = Relay {
        response,
        tracker: tracker.take().map(|mut t| {
            t.status = status.as_u16();
            t
        }),
        sse,
        state: RelayState::Open,
        _permit: permit,
    };
    let stream = futures_util::stream::unfold(relay, |mut r| async move {
        let item = r.next().await?;
        Some((item, r))
    });
    builder.body(Body::from_stream(stream)).map_err(|_| {
        GwError::new(
            StatusCode::BAD_GATEWAY,
            "server_error",
            "bad_response_head",
            "The enclave sent an unusable response head.",
        )
    })
}

fn invalid_json(line: usize, column: usize) -> GwError {
    GwError::invalid(
        StatusCode::BAD_REQUEST,
        "invalid_json",
        format!("We could not parse the JSON body of your request (line {line}, column {column})."),
    )
}

enum RelayState {
    Open,
    /// The stream failed; the SSE error event was sent, the body must now end abnormally.
    Abort,
    Done,
}

/// The enclave's response body on its way to the HTTP client.
struct Relay {
    response: sotto_client::Response,
    tracker: Option<Tracker>,
    sse: bool,
    state: RelayState,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Relay {
    async fn next(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        match self.state {
            RelayState::Done => return None,
            RelayState::Abort => {
                self.state = RelayState::Done;
                return Some(Err(truncated()));
            }
            RelayState::Open => {}
        }
        match self.response.chunk().await {
            Ok(Some(data)) => {
                if let Some(t) = self.tracker.as_mut() {
                    t.bytes += data.len() as u64;
                }
                Some(Ok(data))
            }
            Ok(None) => {
                self.state = RelayState::Done;
                if let Some(t) = self.tracker.as_mut() {
                    t.finish(Outcome::Completed, "OK");
                }
                None
            }
            Err(e) => {
                // The channel failed mid-answer. The body must not end cleanly (the client
                // would take a cut-off answer for a whole one): an SSE client first gets an
                // error event, then the connection is cut without the final chunk.
                let code = e.code();
                if let Some(t) = self.tracker.as_mut() {
                    t.finish(Outcome::Failed, code);
                }
                if self.sse {
                    self.state = RelayState::Abort;
                    let event = json!({ "error": {
                        "message": format!("The channel to the enclave failed mid-answer [{code}]; the answer is incomplete."),
                        "type": "server_error",
                        "param": Value::Null,
                        "code": code,
                    }});
                    Some(Ok(Bytes::from(format!("data: {event}\n\n"))))
                } else {
                    self.state = RelayState::Done;
                    Some(Err(truncated()))
                }
            }
        }
    }
}

fn truncated() -> std::io::Error {
    std::io::Error::other("the channel to the enclave failed mid-answer")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert!(matches!(
            route(&Method::POST, "/v1/chat/completions"),
            Ok(Route::Forward("chat.completions"))
        ));
        assert!(matches!(
            route(&Method::POST, "/v1/completions"),
            Ok(Route::Forward("completions"))
        ));
        assert!(matches!(
            route(&Method::GET, "/v1/models"),
            Ok(Route::Forward("models"))
        ));
        assert!(matches!(
            route(&Method::GET, "/v1/models/stories260K"),
            Ok(Route::Forward("model"))
        ));
        assert!(matches!(
            route(&Method::GET, "/sotto/status"),
            Ok(Route::Status)
        ));
        let e = route(&Method::GET, "/v1/chat/completions").err().unwrap();
        assert_eq!(e.status, StatusCode::METHOD_NOT_ALLOWED);
        for p in [
            "/v1/embeddings",
            "/v1/models/",
            "/v1/models/a/b",
            "/",
            "/v1",
        ] {
            let e = route(&Method::GET, p).err().unwrap();
            assert_eq!(e.status, StatusCode::NOT_FOUND, "{p}");
            assert_eq!(e.code, "unknown_url");
        }
    }

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "LOCALHOST:8080",
            "127.0.0.1",
            "127.0.0.1:7903",
            "127.1.2.3:1",
            "[::1]:7903",
            "[::1]",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "evil.example",
            "evil.example:7903",
            "10.0.0.1:7903",
            "localhost.evil.example",
            "[2001:db8::1]:80",
            "",
            "0.0.0.0:7903",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn token_comparison() {
        let a: [u8; 32] = sha2::Sha256::digest(b"secret").into();
        let b: [u8; 32] = sha2::Sha256::digest(b"secres").into();
        assert!(constant_time_eq(&a, &a));
        assert!(!constant_time_eq(&a, &b));
    }

    #[test]
    fn error_shape() {
        let e = GwError::invalid(StatusCode::NOT_FOUND, "unknown_url", "x");
        let v = e.to_json();
        assert_eq!(v["error"]["code"], "unknown_url");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert!(v["error"]["param"].is_null());
        let r = e.into_response();
        assert_eq!(r.headers()["x-should-retry"], "false");
    }
}
