//! Configuration: which database, where to listen, limits and quotas, the clock.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use crate::StoreError;

/// Which database to use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendConfig {
    /// A SQLite database file (created if missing). One store process per file.
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
    /// A PostgreSQL database, shared by any number of store processes.
    Postgres {
        /// A libpq-style URL or `key=value` string.
        url: String,
        /// Optional schema to keep the store's tables in (created if missing).
        schema: Option<String>,
        /// Maximum connections in this process's pool.
        pool_size: usize,
    },
}

/// Size limits, quotas, pagination and auth lifetimes. Every limit is enforced before or
/// inside the database transaction, and a request over a limit changes nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest item blob (and so the largest item `PUT` body). Default 1 MiB.
    pub max_blob_bytes: u64,
    /// Largest wrapped-key record. Default 16 KiB.
    pub max_key_bytes: u64,
    /// Largest JSON request body. Default 16 KiB.
    pub max_json_bytes: u64,
    /// Per-account quota: total bytes of live item blobs. Default 256 MiB.
    pub quota_bytes: u64,
    /// Per-account quota: number of live items. Default 100 000.
    pub quota_items: u64,
    /// Wrapped-key records per account. Default 64.
    pub max_keys: u64,
    /// Active credentials per account. Default 32.
    pub max_credentials: u64,
    /// Outstanding (unused, unexpired) challenges per credential. Default 8.
    pub max_outstanding_challenges: u64,
    /// Sync page size when the request gives none. Default 100.
    pub default_page_items: u32,
    /// Largest sync page (larger `limit`s are clamped). Default 1000.
    pub max_page_items: u32,
    /// A sync page with blobs stops once their total passes this (at least one item is always
    /// returned). Default 8 MiB.
    pub max_page_blob_bytes: u64,
    /// How long a challenge may be answered. Default 60 s.
    pub challenge_ttl: Duration,
    /// How long a bearer session lasts. Default 15 min.
    pub session_ttl: Duration,
    /// How long a pairing slot lives. Default 10 min.
    pub pairing_ttl: Duration,
    /// Pending (unexpired, unfinished) pairing slots per account. Default 4.
    pub max_pending_pairings: u64,
    /// Largest pairing request (inside the JSON body). Default 1 KiB.
    pub max_pairing_request_bytes: u64,
    /// Largest pairing response (raw body). Default 64 KiB.
    pub max_pairing_response_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_blob_bytes: 1 << 20,
            max_key_bytes: 16 << 10,
            max_json_bytes: 16 << 10,
            quota_bytes: 256 << 20,
            quota_items: 100_000,
            max_keys: 64,
            max_credentials: 32,
            max_outstanding_challenges: 8,
            default_page_items: 100,
            max_page_items: 1000,
            max_page_blob_bytes: 8 << 20,
            challenge_ttl: Duration::from_secs(60),
            session_ttl: Duration::from_secs(15 * 60),
            pairing_ttl: Duration::from_secs(10 * 60),
            max_pending_pairings: 4,
            max_pairing_request_bytes: 1 << 10,
            max_pairing_response_bytes: 64 << 10,
        }
    }
}

impl Limits {
    /// Rejects zero or inconsistent limits.
    pub fn validate(&self) -> Result<(), StoreError> {
        let bad = |what: &str| Err(StoreError::InvalidConfig(what.to_owned()));
        if self.max_blob_bytes == 0 || self.max_key_bytes == 0 || self.max_json_bytes < 1024 {
            return bad("size limits must be positive (JSON bodies at least 1 KiB)");
        }
        if self.max_blob_bytes > i64::MAX as u64 / 2 || self.quota_bytes > i64::MAX as u64 / 2 {
            return bad("size limits too large");
        }
        if self.max_keys == 0 || self.max_credentials == 0 || self.max_outstanding_challenges == 0 {
            return bad(
                "max_keys, max_credentials and max_outstanding_challenges must be positive",
            );
        }
        if self.default_page_items == 0 || self.max_page_items < self.default_page_items {
            return bad("need 0 < default_page_items <= max_page_items");
        }
        if self.challenge_ttl.is_zero() || self.session_ttl.is_zero() || self.pairing_ttl.is_zero()
        {
            return bad("challenge_ttl, session_ttl and pairing_ttl must be positive");
        }
        if self.max_pending_pairings == 0
            || self.max_pairing_request_bytes == 0
            || self.max_pairing_response_bytes == 0
        {
            return bad("pairing limits must be positive");
        }
        Ok(())
    }
}

/// Where "now" comes from (Unix milliseconds). Tests substitute a controllable clock.
pub trait Clock: Send + Sync + 'static {
    /// The current time in Unix milliseconds.
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        crate::unix_ms_now()
    }
}

/// Everything [`serve`](crate::serve) needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// The database.
    pub backend: BackendConfig,
    /// Address to listen on (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Limits and quotas.
    pub limits: Limits,
}
