//! One relayed connection: pipe binary messages between the client and the enclave.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use axum::extract::ws::{self, WebSocket};
use futures_util::{
    SinkExt, StreamExt,
    stream::{SplitSink, SplitStream},
};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{
    self as ts,
    protocol::{CloseFrame as TsCloseFrame, frame::coding::CloseCode},
};

use crate::pool::EnclaveWs;

/// How long we wait for a close frame to be flushed / acknowledged before dropping a socket.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

const CLOSE_NORMAL: u16 = 1000;
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_PROTOCOL: u16 = 1002;
const CLOSE_UNSUPPORTED: u16 = 1003;
const CLOSE_TOO_BIG: u16 = 1009;
/// 1011 "internal error". (1014 "bad gateway" would fit better, but tungstenite peers
/// reject it as a protocol violation.)
const CLOSE_ENCLAVE_ERROR: u16 = 1011;

/// Why a relayed connection ended. Logged by name only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EndReason {
    /// Client sent a close frame (code, if any, is propagated to the enclave).
    ClientClosed,
    /// Client's TCP connection ended or failed without a close handshake.
    ClientDisconnected,
    /// Client sent a text message (protocol violation).
    ClientText,
    /// Client sent a message larger than `max_message_size`.
    ClientTooBig,
    /// Client violated the WebSocket protocol.
    ClientProtocolError,
    /// Enclave sent a close frame (code, if any, is propagated to the client).
    EnclaveClosed,
    /// Enclave's connection ended or failed without a close handshake.
    EnclaveDisconnected,
    /// Enclave sent a text message.
    EnclaveText,
    /// Enclave sent a message larger than `max_message_size`.
    EnclaveTooBig,
    /// Enclave violated the WebSocket protocol.
    EnclaveProtocolError,
    /// No data in either direction for `idle_timeout`.
    IdleTimeout,
}

impl EndReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::ClientClosed => "client_closed",
            Self::ClientDisconnected => "client_disconnected",
            Self::ClientText => "client_text_message",
            Self::ClientTooBig => "client_message_too_big",
            Self::ClientProtocolError => "client_protocol_error",
            Self::EnclaveClosed => "enclave_closed",
            Self::EnclaveDisconnected => "enclave_disconnected",
            Self::EnclaveText => "enclave_text_message",
            Self::EnclaveTooBig => "enclave_message_too_big",
            Self::EnclaveProtocolError => "enclave_protocol_error",
            Self::IdleTimeout => "idle_timeout",
        }
    }
}

/// A close frame in library-neutral form.
#[derive(Debug, Clone)]
struct Close {
    code: u16,
    reason: String,
}

impl Close {
    fn new(code: u16, reason: &str) -> Self {
        Self {
            code,
            reason: reason.to_owned(),
        }
    }

    /// Codes that may legitimately be sent on the wire (and that tungstenite accepts) are
    /// forwarded as-is; anything else (reserved/unknown) becomes 1000.
    fn sanitized(code: u16, reason: &str) -> Self {
        let sendable = matches!(code, 1000..=1003 | 1007..=1013 | 3000..=4999);
        let code = if sendable { code } else { CLOSE_NORMAL };
        Self::new(code, reason)
    }

    fn to_axum(&self) -> ws::Message {
        ws::Message::Close(Some(ws::CloseFrame {
            code: self.code,
            reason: self.reason.clone().into(),
        }))
    }

    fn to_ts(&self) -> ts::Message {
        ts::Message::Close(Some(TsCloseFrame {
            code: CloseCode::from(self.code),
            reason: self.reason.clone().into(),
        }))
    }
}

/// What to do with one side once the session is over.
#[derive(Debug)]
enum Shutdown {
    /// The peer started the close handshake: flush our (automatically queued) reply.
    FlushReply,
    /// Send this close frame, then wait for the peer's acknowledgement.
    CloseAndDrain(Close),
    /// Reading from this side failed: send this close frame best-effort, never read again.
    CloseOnly(Close),
    /// The side is gone: just drop it.
    Drop,
}

/// Per-direction counters (sizes only; payloads are never inspected or logged).
#[derive(Debug, Default)]
struct DirStats {
    messages: u64,
    bytes: u64,
}

/// Last data activity, as milliseconds since the session start.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    async fn idle(&self, timeout: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = last + timeout;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// Parameters for one session.
pub(crate) struct Session {
    pub(crate) conn_id: u64,
    pub(crate) enclave_addr: String,
    pub(crate) idle_timeout: Duration,
    pub(crate) started: Instant,
}

type ClientTx = SplitSink<WebSocket, ws::Message>;
type ClientRx = SplitStream<WebSocket>;
type EnclaveTx = SplitSink<EnclaveWs, ts::Message>;
type EnclaveRx = SplitStream<EnclaveWs>;

impl Session {
    /// Pipe until either side closes, errors, or the idle timeout fires; then close both sides
    /// and write the access-log line.
    pub(crate) async fn run(self, client: WebSocket, enclave: EnclaveWs) {
        let (mut client_tx, mut client_rx) = client.split();
        let (mut enclave_tx, mut enclave_rx) = enclave.split();
        let mut up = DirStats::default();
        let mut down = DirStats::default();
        let activity = Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        };

        let (reason, client_sd, enclave_sd) = tokio::select! {
            r = client_to_enclave(&mut client_rx, &mut enclave_tx, &mut up, &activity) => r,
            r = enclave_to_client(&mut enclave_rx, &mut client_tx, &mut down, &activity) => r,
            () = activity.idle(self.idle_timeout) => {
                let c = Close::new(CLOSE_NORMAL, "idle timeout");
                (EndReason::IdleTimeout, Shutdown::CloseAndDrain(c.clone()), Shutdown::CloseAndDrain(c))
            }
        };

        tokio::join!(
            shutdown_client(&mut client_tx, &mut client_rx, client_sd),
            shutdown_enclave(&mut enclave_tx, &mut enclave_rx, enclave_sd),
        );

        let duration_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::info!(
            conn = self.conn_id,
            enclave = %self.enclave_addr,
            duration_ms,
            up_msgs = up.messages,
            up_bytes = up.bytes,
            down_msgs = down.messages,
            down_bytes = down.bytes,
            close_reason = reason.as_str(),
            "connection closed"
        );
    }
}

type Outcome = (EndReason, Shutdown, Shutdown);

fn client_error_outcome(e: &axum::Error) -> Outcome {
    let going_away = || Shutdown::CloseAndDrain(Close::new(CLOSE_GOING_AWAY, "client gone"));
    match std::error::Error::source(e).and_then(|s| s.downcast_ref::<ts::Error>()) {
        Some(ts::Error::Capacity(_)) => (
            EndReason::ClientTooBig,
            Shutdown::CloseOnly(Close::new(CLOSE_TOO_BIG, "message too big")),
            going_away(),
        ),
        Some(ts::Error::Protocol(ts::error::ProtocolError::ResetWithoutClosingHandshake))
        | Some(ts::Error::Io(_))
        | Some(ts::Error::ConnectionClosed)
        | Some(ts::Error::AlreadyClosed) => {
            (EndReason::ClientDisconnected, Shutdown::Drop, going_away())
        }
        _ => (
            EndReason::ClientProtocolError,
            Shutdown::CloseOnly(Close::new(CLOSE_PROTOCOL, "protocol error")),
            going_away(),
        ),
    }
}

fn enclave_error_outcome(e: &ts::Error) -> Outcome {
    let enclave_error =
        || Shutdown::CloseAndDrain(Close::new(CLOSE_ENCLAVE_ERROR, "enclave error"));
    match e {
        ts::Error::Capacity(_) => (
            EndReason::EnclaveTooBig,
            enclave_error(),
            Shutdown::CloseOnly(Close::new(CLOSE_TOO_BIG, "message too big")),
        ),
        ts::Error::Protocol(ts::error::ProtocolError::ResetWithoutClosingHandshake)
        | ts::Error::Io(_)
        | ts::Error::ConnectionClosed
        | ts::Error::AlreadyClosed => (
            EndReason::EnclaveDisconnected,
            enclave_error(),
            Shutdown::Drop,
        ),
        _ => (
            EndReason::EnclaveProtocolError,
            enclave_error(),
            Shutdown::CloseOnly(Close::new(CLOSE_PROTOCOL, "protocol error")),
        ),
    }
}

/// Forward client → enclave. Returns how the session ends and what to do with each side
/// (client, enclave).
async fn client_to_enclave(
    rx: &mut ClientRx,
    tx: &mut EnclaveTx,
    stats: &mut DirStats,
    activity: &Activity,
) -> Outcome {
    loop {
        let msg = match rx.next().await {
            None => {
                return (
                    EndReason::ClientDisconnected,
                    Shutdown::Drop,
                    Shutdown::CloseAndDrain(Close::new(CLOSE_GOING_AWAY, "client gone")),
                );
            }
            Some(Err(e)) => return client_error_outcome(&e),
            Some(Ok(m)) => m,
        };
        match msg {
            ws::Message::Binary(data) => {
                activity.touch();
                let len = data.len() as u64;
                if let Err(e) = tx.send(ts::Message::Binary(data)).await {
                    return enclave_error_outcome(&e);
                }
                stats.messages += 1;
                stats.bytes += len;
            }
            ws::Message::Text(_) => {
                return (
                    EndReason::ClientText,
                    Shutdown::CloseAndDrain(Close::new(
                        CLOSE_UNSUPPORTED,
                        "only binary messages are accepted",
                    )),
                    Shutdown::CloseAndDrain(Close::new(CLOSE_GOING_AWAY, "client gone")),
                );
            }
            ws::Message::Ping(_) | ws::Message::Pong(_) => {}
            ws::Message::Close(frame) => {
                let to_enclave = match frame {
                    Some(f) => Close::sanitized(f.code, f.reason.as_str()),
                    None => Close::new(CLOSE_NORMAL, ""),
                };
                return (
                    EndReason::ClientClosed,
                    Shutdown::FlushReply,
                    Shutdown::CloseAndDrain(to_enclave),
                );
            }
        }
    }
}

/// Forward enclave → client.
async fn enclave_to_client(
    rx: &mut EnclaveRx,
    tx: &mut ClientTx,
    stats: &mut DirStats,
    activity: &Activity,
) -> Outcome {
    loop {
        let msg = match rx.next().await {
            None => {
                return (
                    EndReason::EnclaveDisconnected,
                    Shutdown::CloseAndDrain(Close::new(CLOSE_ENCLAVE_ERROR, "enclave gone")),
                    Shutdown::Drop,
                );
            }
            Some(Err(e)) => return enclave_error_outcome(&e),
            Some(Ok(m)) => m,
        };
        match msg {
            ts::Message::Binary(data) => {
                activity.touch();
                let len = data.len() as u64;
                if let Err(e) = tx.send(ws::Message::Binary(data)).await {
                    return client_error_outcome(&e);
                }
                stats.messages += 1;
                stats.bytes += len;
            }
            ts::Message::Text(_) => {
                return (
                    EndReason::EnclaveText,
                    Shutdown::CloseAndDrain(Close::new(CLOSE_ENCLAVE_ERROR, "enclave error")),
                    Shutdown::CloseAndDrain(Close::new(
                        CLOSE_UNSUPPORTED,
                        "only binary messages are accepted",
                    )),
                );
            }
            ts::Message::Ping(_) | ts::Message::Pong(_) | ts::Message::Frame(_) => {}
            ts::Message::Close(frame) => {
                let to_client = match frame {
                    Some(f) => Close::sanitized(u16::from(f.code), f.reason.as_str()),
                    None => Close::new(CLOSE_NORMAL, ""),
                };
                return (
                    EndReason::EnclaveClosed,
                    Shutdown::CloseAndDrain(to_client),
                    Shutdown::FlushReply,
                );
            }
        }
    }
}

async fn shutdown_client(tx: &mut ClientTx, rx: &mut ClientRx, how: Shutdown) {
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        match how {
            Shutdown::Drop => {}
            Shutdown::FlushReply => {
                let _ = tx.close().await;
            }
            Shutdown::CloseOnly(c) => {
                let _ = tx.send(c.to_axum()).await;
            }
            Shutdown::CloseAndDrain(c) => {
                if tx.send(c.to_axum()).await.is_ok() {
                    // Discard whatever is still in flight until the peer acknowledges.
                    while let Some(Ok(m)) = rx.next().await {
                        if matches!(m, ws::Message::Close(_)) {
                            break;
                        }
                    }
                    let _ = tx.close().await;
                }
            }
        }
    })
    .await;
}

async fn shutdown_enclave(tx: &mut EnclaveTx, rx: &mut EnclaveRx, how: Shutdown) {
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        match how {
            Shutdown::Drop => {}
            Shutdown::FlushReply => {
                let _ = tx.close().await;
            }
            Shutdown::CloseOnly(c) => {
                let _ = tx.send(c.to_ts()).await;
            }
            Shutdown::CloseAndDrain(c) => {
                if tx.send(c.to_ts()).await.is_ok() {
                    while let Some(Ok(m)) = rx.next().await {
                        if matches!(m, ts::Message::Close(_)) {
                            break;
                        }
                    }
                    let _ = tx.close().await;
                }
            }
        }
    })
    .await;
}
