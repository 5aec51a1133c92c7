//! Enclave pool: round-robin selection, health state, background health checker.

use std::{
    sync::{
        Weak,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::net::TcpStream;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::protocol::WebSocketConfig};

use crate::error::RelayError;

/// The WebSocket stream to an enclave.
pub(crate) type EnclaveWs = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub(crate) struct Enclave {
    pub(crate) addr: String,
    ws_url: String,
    health_url: String,
    healthy: AtomicBool,
}

impl Enclave {
    fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    fn set_healthy(&self, healthy: bool, why: &'static str) {
        let was = self.healthy.swap(healthy, Ordering::AcqRel);
        if was != healthy {
            if healthy {
                tracing::info!(enclave = %self.addr, reason = why, "enclave marked healthy");
            } else {
                tracing::warn!(enclave = %self.addr, reason = why, "enclave marked unhealthy");
            }
        }
    }
}

pub(crate) struct Pool {
    enclaves: Vec<Enclave>,
    next: AtomicUsize,
}

impl Pool {
    /// Addresses must already be validated. All enclaves start healthy; the first health probe
    /// runs immediately after start-up.
    pub(crate) fn new(addrs: &[String]) -> Self {
        Self {
            enclaves: addrs
                .iter()
                .map(|a| Enclave {
                    addr: a.clone(),
                    ws_url: format!("ws://{a}/channel"),
                    health_url: format!("http://{a}/healthz"),
                    healthy: AtomicBool::new(true),
                })
                .collect(),
            next: AtomicUsize::new(0),
        }
    }

    pub(crate) fn healthy_count(&self) -> usize {
        self.enclaves.iter().filter(|e| e.is_healthy()).count()
    }

    /// Connect to the next healthy enclave in round-robin order. An enclave whose connect fails
    /// (or times out) is marked unhealthy and the next one is tried; each enclave is tried at
    /// most once. Returns the stream and the enclave's address.
    pub(crate) async fn connect(
        &self,
        conn_id: u64,
        ws_config: WebSocketConfig,
        connect_timeout: Duration,
    ) -> Result<(EnclaveWs, &str), RelayError> {
        let n = self.enclaves.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut tried = 0usize;
        for k in 0..n {
            let enclave = &self.enclaves[start.wrapping_add(k) % n];
            if !enclave.is_healthy() {
                continue;
            }
            tried += 1;
            let attempt = tokio::time::timeout(
                connect_timeout,
                tokio_tungstenite::connect_async_with_config(
                    enclave.ws_url.as_str(),
                    Some(ws_config),
                    true,
                ),
            )
            .await;
            match attempt {
                Ok(Ok((ws, _response))) => {
                    enclave.set_healthy(true, "websocket connect succeeded");
                    if k > 0 {
                        // Skipped unhealthy/failed enclaves: continue the rotation after the
                        // one we used so healthy enclaves share load evenly. Best effort.
                        let _ = self.next.compare_exchange(
                            start.wrapping_add(1),
                            start.wrapping_add(k + 1),
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        );
                    }
                    return Ok((ws, enclave.addr.as_str()));
                }
                Ok(Err(e)) => {
                    tracing::warn!(conn = conn_id, enclave = %enclave.addr, error = %e,
                        "enclave websocket connect failed");
                    enclave.set_healthy(false, "websocket connect failed");
                }
                Err(_) => {
                    tracing::warn!(conn = conn_id, enclave = %enclave.addr,
                        "enclave websocket connect timed out");
                    enclave.set_healthy(false, "websocket connect timed out");
                }
            }
        }
        Err(if tried == 0 {
            RelayError::NoHealthyEnclave
        } else {
            RelayError::EnclaveUnavailable
        })
    }
}

/// Build the HTTP client used for health probes. Proxies from the environment are ignored:
/// enclaves are always probed directly.
pub(crate) fn health_client(timeout: Duration) -> Result<reqwest::Client, RelayError> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|_| RelayError::HealthClient)
}

/// Probe every enclave each `interval` until the owning relay is dropped.
pub(crate) async fn health_loop<S: AsRef<Pool>>(
    owner: Weak<S>,
    client: reqwest::Client,
    interval: Duration,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(owner) = owner.upgrade() else {
            return;
        };
        let pool: &Pool = (*owner).as_ref();
        let probes = pool.enclaves.iter().map(|e| probe(&client, e));
        futures_util::future::join_all(probes).await;
        drop(owner);
    }
}

async fn probe(client: &reqwest::Client, enclave: &Enclave) {
    match client.get(&enclave.health_url).send().await {
        Ok(resp) if resp.status() == reqwest::StatusCode::OK => {
            enclave.set_healthy(true, "health probe ok");
        }
        Ok(resp) => {
            tracing::debug!(enclave = %enclave.addr, status = resp.status().as_u16(),
                "health probe returned non-200");
            enclave.set_healthy(false, "health probe returned non-200");
        }
        Err(e) => {
            tracing::debug!(enclave = %enclave.addr, timeout = e.is_timeout(),
                "health probe failed");
            enclave.set_healthy(false, "health probe failed");
        }
    }
}
