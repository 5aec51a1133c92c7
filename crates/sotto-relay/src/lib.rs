//! `sotto-relay`: the operator's untrusted relay.
//!
//! Clients open a WebSocket to `GET /v1/channel`; the relay opens a WebSocket to one enclave at
//! `ws://HOST:PORT/channel` and pipes **binary** messages both ways, preserving message
//! boundaries and order. Each message is one opaque, end-to-end encrypted channel record; the
//! relay never parses, decrypts or logs payloads — only sizes and timings.
//!
//! * Enclaves are chosen round-robin among those currently healthy. A background task probes
//!   `GET http://HOST:PORT/healthz` every [`RelayConfig::health_interval`]; a failed WebSocket
//!   connect also marks an enclave unhealthy immediately and the next one is tried (each at most
//!   once per client connection). The enclave is connected *before* the client's upgrade is
//!   accepted, so "no enclave available" is a plain `503` with a JSON error body.
//! * Limits: [`RelayConfig::max_connections`] (extra upgrades get `503`),
//!   [`RelayConfig::max_message_size`] (larger messages close with 1009),
//!   [`RelayConfig::idle_timeout`], [`RelayConfig::connect_timeout`].
//! * Text messages from the client close the connection with 1003. A close (or failure) on
//!   either side closes the other: a clean close propagates its code; a failure of the enclave
//!   is reported to the client as 1011, a vanished client to the enclave as 1001.
//! * `GET /healthz` returns `200 {"status":"ok","healthy_enclaves":N}`.
//!
//! One access-log line (tracing, `info`) is written per connection when it ends.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! let config = sotto_relay::RelayConfig {
//!     enclaves: vec!["10.0.0.5:8443".into()],
//!     ..Default::default()
//! };
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
//! sotto_relay::serve(listener, config).await
//! # }
//! ```

mod config;
mod error;
pub mod logfiles;
mod pool;
mod session;

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use axum::{
    Json, Router,
    extract::{State, WebSocketUpgrade},
    response::{IntoResponse, Response},
    routing::get,
};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

pub use config::{DEFAULT_MAX_MESSAGE_SIZE, MAX_RECORD_SIZE, MESSAGE_SIZE_SLACK, RelayConfig};
pub use error::RelayError;

use pool::Pool;
use session::Session;

struct Shared {
    config: RelayConfig,
    pool: Pool,
    limiter: Arc<Semaphore>,
    next_conn_id: AtomicU64,
}

impl AsRef<Pool> for Shared {
    fn as_ref(&self) -> &Pool {
        &self.pool
    }
}

/// A running relay: enclave pool, health checker and connection limiter.
///
/// Cheap to clone (all clones share state). The background health checker stops once every
/// clone and every [`Router`] built from it has been dropped.
#[derive(Clone)]
pub struct Relay {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("config", &self.shared.config)
            .field("healthy_enclaves", &self.healthy_enclaves())
            .field("active_connections", &self.active_connections())
            .finish()
    }
}

impl Relay {
    /// Validate `config` and start the background health checker.
    ///
    /// Must be called from within a tokio runtime (returns [`RelayError::NoRuntime`]
    /// otherwise). All enclaves start out healthy; the first probe runs immediately.
    pub fn new(config: RelayConfig) -> Result<Self, RelayError> {
        config.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| RelayError::NoRuntime)?;
        let probe_timeout = config.health_interval.min(config.connect_timeout);
        let client = pool::health_client(probe_timeout)?;
        let shared = Arc::new(Shared {
            pool: Pool::new(&config.enclaves),
            limiter: Arc::new(Semaphore::new(config.max_connections)),
            next_conn_id: AtomicU64::new(1),
            config,
        });
        runtime.spawn(pool::health_loop(
            Arc::downgrade(&shared),
            client,
            shared.config.health_interval,
        ));
        Ok(Self { shared })
    }

    /// The relay's HTTP routes: `GET /v1/channel` (WebSocket), `GET /healthz`, and with
    /// [`RelayConfig::log_dir`] the log's files under `GET /log/`.
    ///
    /// Serve it with connection upgrades enabled (e.g. [`axum::serve`], as [`serve`] does).
    pub fn router(&self) -> Router {
        let r = Router::new()
            .route("/v1/channel", get(channel))
            .route("/healthz", get(healthz))
            .with_state(self.shared.clone());
        match &self.shared.config.log_dir {
            Some(dir) => r.nest("/log", logfiles::router(dir.clone())),
            None => r,
        }
    }

    /// Number of enclaves currently marked healthy.
    pub fn healthy_enclaves(&self) -> usize {
        self.shared.pool.healthy_count()
    }

    /// Number of client connections currently being relayed (or being set up).
    pub fn active_connections(&self) -> usize {
        self.shared.config.max_connections - self.shared.limiter.available_permits()
    }
}

/// Shorthand for `Relay::new(config)?.router()`. Must be called inside a tokio runtime.
pub fn router(config: RelayConfig) -> Result<Router, RelayError> {
    Ok(Relay::new(config)?.router())
}

/// Serve the relay on `listener` until the server fails.
///
/// An invalid configuration is reported as [`std::io::ErrorKind::InvalidInput`].
pub async fn serve(listener: tokio::net::TcpListener, config: RelayConfig) -> std::io::Result<()> {
    serve_with_shutdown(listener, config, std::future::pending()).await
}

/// Like [`serve`], but stop accepting new connections once `signal` completes and return after
/// in-flight HTTP requests finish. Established WebSocket sessions keep running until they end
/// on their own (or the process exits).
pub async fn serve_with_shutdown<F>(
    listener: tokio::net::TcpListener,
    config: RelayConfig,
    signal: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let app = router(config)?;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "relay listening");
    }
    use axum::serve::ListenerExt;
    // Records are small and latency-sensitive: disable Nagle on client connections.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(signal)
        .await
}

async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    Json(serde_json::json!({
        "status": "ok",
        "healthy_enclaves": shared.pool.healthy_count(),
    }))
    .into_response()
}

async fn channel(State(shared): State<Arc<Shared>>, upgrade: WebSocketUpgrade) -> Response {
    let started = tokio::time::Instant::now();
    let Ok(permit) = shared.limiter.clone().try_acquire_owned() else {
        tracing::warn!("rejecting connection: max_connections reached");
        return RelayError::TooManyConnections.into_response();
    };
    let conn_id = shared.next_conn_id.fetch_add(1, Ordering::Relaxed);
    let max = shared.config.max_message_size;
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max));
    let (enclave_ws, enclave_addr) = match shared
        .pool
        .connect(conn_id, ws_config, shared.config.connect_timeout)
        .await
    {
        Ok((ws, addr)) => (ws, addr.to_owned()),
        Err(e) => {
            tracing::warn!(conn = conn_id, code = e.code(), "rejecting connection");
            return e.into_response();
        }
    };
    let session = Session {
        conn_id,
        enclave_addr,
        idle_timeout: shared.config.idle_timeout,
        started,
    };
    upgrade
        .max_message_size(max)
        .max_frame_size(max)
        .on_failed_upgrade(move |_e| {
            tracing::info!(conn = conn_id, "client websocket upgrade failed");
        })
        .on_upgrade(move |socket| async move {
            session.run(socket, enclave_ws).await;
            drop(permit);
        })
}
