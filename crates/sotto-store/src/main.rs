//! `sotto-store`: the encrypted-history store as its own process.
//!
//! ```text
//! sotto-store --sqlite /var/lib/sotto/store.db --listen 127.0.0.1:8091
//! sotto-store --postgres postgresql://sotto@127.0.0.1/sotto --listen 0.0.0.0:8091
//! ```
//!
//! Prints `store listening on ADDR` on stdout once the database is migrated and the port is
//! bound. Logs go to stderr (`SOTTO_LOG`, default `info`; never blob contents). Stops
//! gracefully on SIGTERM or Ctrl-C.

use std::{
    io::{IsTerminal, Write},
    net::SocketAddr,
    path::PathBuf,
    process::ExitCode,
    time::Duration,
};

use clap::{ArgGroup, Parser};
use sotto_store::{BackendConfig, Limits, PasskeyConfig, StoreConfig};

#[derive(Debug, Parser)]
#[command(
    name = "sotto-store",
    version,
    about = "Sotto's store for encrypted history"
)]
#[command(group(ArgGroup::new("db").required(true).args(["sqlite", "postgres"])))]
struct Args {
    /// SQLite database file (created if missing).
    #[arg(long, value_name = "PATH")]
    sqlite: Option<PathBuf>,
    /// PostgreSQL connection URL (libpq style), e.g. postgresql://user@127.0.0.1:5432/db.
    #[arg(long, value_name = "URL", env = "SOTTO_STORE_POSTGRES")]
    postgres: Option<String>,
    /// PostgreSQL schema for the store's tables (created if missing).
    #[arg(long, value_name = "NAME", requires = "postgres")]
    postgres_schema: Option<String>,
    /// PostgreSQL connection pool size.
    #[arg(long, value_name = "N", default_value_t = 8)]
    postgres_pool: usize,
    /// Address to listen on (port 0: any free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8091")]
    listen: SocketAddr,
    /// Largest item blob, bytes.
    #[arg(long, value_name = "BYTES")]
    max_blob_bytes: Option<u64>,
    /// Per-account quota: bytes of live items.
    #[arg(long, value_name = "BYTES")]
    quota_bytes: Option<u64>,
    /// Per-account quota: number of live items.
    #[arg(long, value_name = "N")]
    quota_items: Option<u64>,
    /// Bearer session lifetime, seconds.
    #[arg(long, value_name = "SECS")]
    session_ttl: Option<u64>,
    /// WebAuthn relying-party id (a registrable domain, e.g. `example.com`); with
    /// `--rp-origin` it enables passkey registration and login.
    #[arg(long, requires = "rp_origin")]
    rp_id: Option<String>,
    /// The web client's origin (e.g. `https://chat.example.com`); its host must be the
    /// `--rp-id` or a subdomain of it.
    #[arg(long, requires = "rp_id")]
    rp_origin: Option<String>,
    /// Name authenticators show for the relying party (default: the `--rp-id`).
    #[arg(long, requires = "rp_id")]
    rp_name: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("SOTTO_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let mut limits = Limits::default();
    if let Some(v) = args.max_blob_bytes {
        limits.max_blob_bytes = v;
    }
    if let Some(v) = args.quota_bytes {
        limits.quota_bytes = v;
    }
    if let Some(v) = args.quota_items {
        limits.quota_items = v;
    }
    if let Some(v) = args.session_ttl {
        limits.session_ttl = Duration::from_secs(v);
    }
    let backend = match (args.sqlite, args.postgres) {
        (Some(path), None) => BackendConfig::Sqlite { path },
        (None, Some(url)) => BackendConfig::Postgres {
            url,
            schema: args.postgres_schema,
            pool_size: args.postgres_pool,
        },
        _ => unreachable!("clap enforces exactly one of --sqlite / --postgres"),
    };
    let passkeys = match (args.rp_id, args.rp_origin) {
        (Some(rp_id), Some(rp_origin)) => Some(PasskeyConfig {
            rp_name: args.rp_name,
            ..PasskeyConfig::new(rp_id, rp_origin)
        }),
        _ => None,
    };
    let config = StoreConfig {
        backend,
        listen: args.listen,
        limits,
    };

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sotto-store: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let bound = sotto_store::bind_with_passkeys(config, passkeys).await?;
        println!("store listening on {}", bound.local_addr());
        let _ = std::io::stdout().flush();
        bound.run_until(shutdown_signal()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sotto-store: {e} ({})", e.code());
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
