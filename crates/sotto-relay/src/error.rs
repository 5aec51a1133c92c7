//! The relay's error type.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};

/// Errors produced by the relay. Each variant has a stable machine-readable [`code`](Self::code),
/// which is also what HTTP clients see in the JSON error body
/// `{"error":{"code":"…","message":"…"}}`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// The [`RelayConfig`](crate::RelayConfig) is unusable. Code `invalid_config`.
    #[error("invalid relay configuration: {0}")]
    InvalidConfig(String),
    /// The relay was constructed outside a tokio runtime. Code `no_runtime`.
    #[error("the relay must be created inside a tokio runtime")]
    NoRuntime,
    /// The HTTP client used for health probes could not be built. Code `health_client`.
    #[error("could not build the health-check HTTP client")]
    HealthClient,
    /// `max_connections` client connections are already open. HTTP 503. Code
    /// `too_many_connections`.
    #[error("too many concurrent connections")]
    TooManyConnections,
    /// Every enclave is currently marked unhealthy. HTTP 503. Code `no_healthy_enclave`.
    #[error("no healthy enclave available")]
    NoHealthyEnclave,
    /// Connecting to every candidate enclave failed. HTTP 503. Code `enclave_unavailable`.
    #[error("could not connect to any enclave")]
    EnclaveUnavailable,
}

impl RelayError {
    /// Stable, machine-readable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidConfig(_) => "invalid_config",
            Self::NoRuntime => "no_runtime",
            Self::HealthClient => "health_client",
            Self::TooManyConnections => "too_many_connections",
            Self::NoHealthyEnclave => "no_healthy_enclave",
            Self::EnclaveUnavailable => "enclave_unavailable",
        }
    }

    /// HTTP status used when this error is returned to a client.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::TooManyConnections | Self::NoHealthyEnclave | Self::EnclaveUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::InvalidConfig(_) | Self::NoRuntime | Self::HealthClient => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

impl IntoResponse for RelayError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": { "code": self.code(), "message": self.to_string() }
        });
        (self.status(), Json(body)).into_response()
    }
}

impl From<RelayError> for std::io::Error {
    fn from(e: RelayError) -> Self {
        let kind = match e {
            RelayError::InvalidConfig(_) => std::io::ErrorKind::InvalidInput,
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, e)
    }
}
