//! Relay configuration.

use std::time::Duration;

use crate::error::RelayError;

/// Largest channel record a client or enclave may send (one record per WebSocket message).
pub const MAX_RECORD_SIZE: usize = 65_535;

/// Slack allowed on top of [`MAX_RECORD_SIZE`] for the default WebSocket message/frame limit.
pub const MESSAGE_SIZE_SLACK: usize = 1_024;

/// Default maximum WebSocket message (and frame) size: one record plus a little slack.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = MAX_RECORD_SIZE + MESSAGE_SIZE_SLACK;

/// Configuration of a [`Relay`](crate::Relay).
///
/// Use [`RelayConfig::default`] and override fields; [`Relay::new`](crate::Relay::new)
/// validates the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConfig {
    /// Enclave addresses as `host:port` (IPv6 hosts in brackets: `[::1]:8443`). At least one.
    /// The relay connects to `ws://host:port/channel` and probes `http://host:port/healthz`.
    pub enclaves: Vec<String>,
    /// Maximum number of concurrent client connections; extra upgrade requests get 503.
    pub max_connections: usize,
    /// Maximum WebSocket message and frame size in bytes, enforced on both the client and the
    /// enclave side. Larger messages close the connection with code 1009 (message too big).
    pub max_message_size: usize,
    /// A connection on which no data message flows in either direction for this long is closed.
    /// Ping/pong frames do not count as activity.
    pub idle_timeout: Duration,
    /// Timeout for establishing the WebSocket to an enclave (TCP + HTTP upgrade).
    pub connect_timeout: Duration,
    /// Interval between background `/healthz` probes of every enclave. The probe timeout is
    /// `min(health_interval, connect_timeout)`.
    pub health_interval: Duration,
    /// A transparency log directory to publish read-only under `/log/` (c2sp.org/tlog-tiles
    /// layout; see [`crate::logfiles`]). `None`: no log is served.
    pub log_dir: Option<std::path::PathBuf>,
}

impl Default for RelayConfig {
    /// Defaults: no enclaves (must be filled in), 1024 connections, 65535 + 1024 byte
    /// messages, 10 min idle timeout, 5 s connect timeout, 2 s health interval.
    fn default() -> Self {
        Self {
            enclaves: Vec::new(),
            max_connections: 1024,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            idle_timeout: Duration::from_secs(600),
            connect_timeout: Duration::from_secs(5),
            health_interval: Duration::from_secs(2),
            log_dir: None,
        }
    }
}

impl RelayConfig {
    /// Check the configuration; returns [`RelayError::InvalidConfig`] describing the first
    /// problem found.
    pub fn validate(&self) -> Result<(), RelayError> {
        if self.enclaves.is_empty() {
            return Err(invalid("at least one enclave address is required"));
        }
        for addr in &self.enclaves {
            validate_addr(addr)?;
        }
        if self.max_connections == 0 {
            return Err(invalid("max_connections must be at least 1"));
        }
        if self.max_connections > tokio::sync::Semaphore::MAX_PERMITS {
            return Err(invalid("max_connections is too large"));
        }
        if self.max_message_size == 0 {
            return Err(invalid("max_message_size must be at least 1"));
        }
        for (name, d) in [
            ("idle_timeout", self.idle_timeout),
            ("connect_timeout", self.connect_timeout),
            ("health_interval", self.health_interval),
        ] {
            if d.is_zero() {
                return Err(RelayError::InvalidConfig(format!(
                    "{name} must be non-zero"
                )));
            }
        }
        Ok(())
    }
}

fn invalid(msg: &str) -> RelayError {
    RelayError::InvalidConfig(msg.to_owned())
}

/// Accept `host:port` with a non-empty host made of URL-authority-safe characters and a
/// non-zero port.
fn validate_addr(addr: &str) -> Result<(), RelayError> {
    let bad = || RelayError::InvalidConfig(format!("enclave address {addr:?} is not host:port"));
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty()
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '[' | ']' | ':'))
    {
        return Err(bad());
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(bad());
    }
    match port.parse::<u16>() {
        Ok(p) if p != 0 => Ok(()),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(enclaves: &[&str]) -> RelayConfig {
        RelayConfig {
            enclaves: enclaves.iter().map(|s| (*s).to_owned()).collect(),
            ..RelayConfig::default()
        }
    }

    #[test]
    fn addresses() {
        assert!(with(&["127.0.0.1:8080"]).validate().is_ok());
        assert!(with(&["enclave-1.internal:443"]).validate().is_ok());
        assert!(with(&["[::1]:9000"]).validate().is_ok());
        for bad in [
            "",
            "host",
            "host:",
            ":80",
            "host:0",
            "host:99999",
            "a/b:80",
            "::1:80",
        ] {
            assert!(with(&[bad]).validate().is_err(), "{bad:?} accepted");
        }
        assert!(with(&[]).validate().is_err());
    }

    #[test]
    fn limits() {
        let mut c = with(&["127.0.0.1:1"]);
        c.max_connections = 0;
        assert!(c.validate().is_err());
        let mut c = with(&["127.0.0.1:1"]);
        c.idle_timeout = Duration::ZERO;
        assert!(c.validate().is_err());
        let mut c = with(&["127.0.0.1:1"]);
        c.max_message_size = 0;
        assert!(c.validate().is_err());
    }
}
