//! `sotto-store`: the operator's store for encrypted history.
//!
//! It keeps what clients give it — accounts, device credentials (public keys), wrapped copies
//! of the account key, and items (opaque ciphertext blobs with a version and a per-account
//! sequence number) — and learns nothing beyond ids, sizes, versions and timing. It never
//! sees a key that decrypts anything.
//!
//! * [`Backend`]: the storage trait; [`SqliteBackend`] (default, one file, WAL,
//!   `synchronous=FULL`) and [`PostgresBackend`] (several relays), with versioned
//!   migrations and identical semantics.
//! * [`Store`]: the HTTP API (axum) over a backend: device challenge–response auth, bearer
//!   sessions, optimistic concurrency (`If-Match`), a sync cursor, quotas and size limits.
//! * [`serve`] / [`bind`]: run it as its own process (the `sotto-store` binary).
//!
//! The reference is `docs/store.md`.
//!
//! ```no_run
//! # async fn run() -> Result<(), sotto_store::StoreError> {
//! let config = sotto_store::StoreConfig {
//!     backend: sotto_store::BackendConfig::Sqlite { path: "store.db".into() },
//!     listen: "127.0.0.1:8091".parse().unwrap(),
//!     limits: Default::default(),
//! };
//! let bound = sotto_store::bind(config).await?;
//! println!("store listening on {}", bound.local_addr());
//! bound.run().await
//! # }
//! ```

pub mod api;
mod auth;
mod backend;
mod config;
mod error;
mod http;
mod model;

use std::{future::Future, net::SocketAddr};

pub use auth::{AUTH_LABEL, auth_message, verify_device_signature};
pub use backend::{
    AnyBackend, Backend, PasskeyBackend, PostgresBackend, SCHEMA_VERSION, SqliteBackend,
    postgres::validate_schema_name,
};
pub use config::{BackendConfig, Clock, Limits, StoreConfig, SystemClock};
pub use error::{PasskeyRejection, StoreError};
pub use http::passkey::{
    CeremonyFinishRequest, CeremonyStartResponse, LoginStartRequest, LoginStartResponse,
    PasskeyConfig, PasskeySessionResponse, RegisterStartRequest, RegisterStartResponse,
};
pub use http::{SEQ_HEADER, Store, VERSION_HEADER};
pub use model::{
    AccountId, AccountUsage, Ceremony, CeremonyKind, Challenge, ChangePage, Credential,
    CredentialId, CredentialKind, Item, ItemId, ItemWrite, KeyId, KeyRecord, MAX_NAME_LEN,
    NewCredential, PairingId, PairingSlot, PairingState, PairingUpdate, Quota, Session,
    StoredPasskey, WriteOutcome,
};

/// Unix time in milliseconds.
pub(crate) fn unix_ms_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Opens the configured database and applies pending migrations.
pub async fn open_backend(config: &BackendConfig) -> Result<AnyBackend, StoreError> {
    match config {
        BackendConfig::Sqlite { path } => Ok(AnyBackend::Sqlite(SqliteBackend::open(path).await?)),
        BackendConfig::Postgres {
            url,
            schema,
            pool_size,
        } => Ok(AnyBackend::Postgres(
            PostgresBackend::connect(url, schema.as_deref(), *pool_size).await?,
        )),
    }
}

/// A store whose database is open and migrated and whose listener is bound: it accepts
/// connections (they queue in the kernel) and serves them once [`run`](Self::run) is called.
#[derive(Debug)]
pub struct BoundStore {
    listener: tokio::net::TcpListener,
    store: Store<AnyBackend>,
    addr: SocketAddr,
}

impl BoundStore {
    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The store service.
    pub fn store(&self) -> &Store<AnyBackend> {
        &self.store
    }

    /// Serves until the process ends.
    pub async fn run(self) -> Result<(), StoreError> {
        self.run_until(std::future::pending()).await
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StoreError> {
        axum::serve(self.listener, self.store.router())
            .with_graceful_shutdown(shutdown)
            .await?;
        Ok(())
    }
}

/// Opens the database (running migrations) and binds the listener.
pub async fn bind(config: StoreConfig) -> Result<BoundStore, StoreError> {
    bind_with_passkeys(config, None).await
}

/// [`bind`], with WebAuthn passkeys enabled when `passkeys` is given.
pub async fn bind_with_passkeys(
    config: StoreConfig,
    passkeys: Option<PasskeyConfig>,
) -> Result<BoundStore, StoreError> {
    config.limits.validate()?;
    let backend = open_backend(&config.backend).await?;
    let mut store = Store::new(backend, config.limits)?;
    if let Some(passkeys) = &passkeys {
        store = store.with_passkeys(passkeys)?;
    }
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "store listening");
    Ok(BoundStore {
        listener,
        store,
        addr,
    })
}

/// [`bind`], then serve until the process ends.
pub async fn serve(config: StoreConfig) -> Result<(), StoreError> {
    bind(config).await?.run().await
}
