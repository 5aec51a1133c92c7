//! The single error type of this crate and its OpenAI-style JSON rendering.
//!
//! Every variant has a stable machine-readable [`ApiError::code`] and an HTTP status. Messages
//! are built only from static text, parameter *names*, numbers and error codes — never from
//! request contents — so an error can never echo prompt text back or into a log.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Serialize;

/// Everything that can go wrong while serving the API, with a stable code per variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The request body is not valid JSON (or not a JSON object). Code `invalid_json`, 400.
    #[error("We could not parse the JSON body of your request (line {line}, column {column}).")]
    InvalidJson {
        /// 1-based line of the syntax error (0 when the body is valid JSON but not an object).
        line: usize,
        /// 1-based column of the syntax error.
        column: usize,
    },
    /// A required parameter is absent. Code `missing_required_parameter`, 400.
    #[error("Missing required parameter: '{param}'.")]
    MissingParameter {
        /// Name of the missing parameter (e.g. `messages`).
        param: &'static str,
    },
    /// A parameter has a wrong type or an out-of-range value. Code `invalid_value`, 400.
    #[error("Invalid value for '{param}': {reason}")]
    InvalidValue {
        /// Name (or JSON path) of the offending parameter, e.g. `temperature`.
        param: &'static str,
        /// Static explanation; never contains request data.
        reason: &'static str,
    },
    /// The prompt does not fit into the model's context window. Code `context_length_exceeded`, 400.
    #[error(
        "This model's maximum context length is {limit} tokens, but the messages use {prompt_tokens} tokens."
    )]
    ContextLengthExceeded {
        /// Tokens the rendered prompt needs.
        prompt_tokens: usize,
        /// The model's context length.
        limit: usize,
    },
    /// The `model` is not served here. Code `model_not_found`, 404.
    #[error("The requested model does not exist or you do not have access to it.")]
    ModelNotFound,
    /// The request body exceeds the configured limit. Code `payload_too_large`, 413.
    #[error("The request body exceeds the limit of {limit} bytes.")]
    PayloadTooLarge {
        /// The configured limit in bytes.
        limit: usize,
    },
    /// The request body could not be read (client aborted, malformed chunking). Code `body_read_error`, 400.
    #[error("The request body could not be read.")]
    BodyRead,
    /// No such route. Code `unknown_url`, 404.
    #[error("Invalid URL: no such endpoint.")]
    UnknownRoute,
    /// The route exists but not for this HTTP method. Code `method_not_allowed`, 405.
    #[error("Method not allowed for this endpoint.")]
    MethodNotAllowed,
    /// The upstream server rejected the request with a 4xx status. Code `upstream_rejected`,
    /// relayed with the upstream's status.
    #[error("The upstream server rejected the request (HTTP {status}).")]
    UpstreamRejected {
        /// The upstream's 4xx status code.
        status: u16,
    },
    /// The upstream server failed or answered something unusable. Code `upstream_error`, 502.
    #[error("The upstream server returned an invalid or failed response.")]
    UpstreamError,
    /// The upstream server could not be reached. Code `upstream_unavailable`, 503.
    #[error("The upstream server is unavailable.")]
    UpstreamUnavailable,
    /// The built-in engine failed. Code `engine_error`, 500.
    #[error("The inference engine failed ({engine_code}).")]
    Engine {
        /// The engine's own stable error code (`EngineError::code`).
        engine_code: &'static str,
    },
    /// [`UpstreamBackend::new`](crate::UpstreamBackend::new) got an unusable base URL (not
    /// `http://host[:port][/path]`). Code `invalid_upstream_url`, 500 (a configuration error).
    #[error("The configured upstream URL is invalid (only http:// URLs are supported).")]
    InvalidUpstreamUrl,
    /// An internal failure (e.g. a worker task panicked). Code `internal_error`, 500.
    #[error("Internal server error.")]
    Internal,
}

impl ApiError {
    /// Stable machine-readable code (the `error.code` field of the JSON body).
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidJson { .. } => "invalid_json",
            ApiError::MissingParameter { .. } => "missing_required_parameter",
            ApiError::InvalidValue { .. } => "invalid_value",
            ApiError::ContextLengthExceeded { .. } => "context_length_exceeded",
            ApiError::ModelNotFound => "model_not_found",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::BodyRead => "body_read_error",
            ApiError::UnknownRoute => "unknown_url",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::UpstreamRejected { .. } => "upstream_rejected",
            ApiError::UpstreamError => "upstream_error",
            ApiError::UpstreamUnavailable => "upstream_unavailable",
            ApiError::Engine { .. } => "engine_error",
            ApiError::InvalidUpstreamUrl => "invalid_upstream_url",
            ApiError::Internal => "internal_error",
        }
    }

    /// HTTP status of the error response.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidJson { .. }
            | ApiError::MissingParameter { .. }
            | ApiError::InvalidValue { .. }
            | ApiError::ContextLengthExceeded { .. }
            | ApiError::BodyRead => StatusCode::BAD_REQUEST,
            ApiError::ModelNotFound | ApiError::UnknownRoute => StatusCode::NOT_FOUND,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::UpstreamRejected { status } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST)
            }
            ApiError::UpstreamError => StatusCode::BAD_GATEWAY,
            ApiError::UpstreamUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Engine { .. } | ApiError::InvalidUpstreamUrl | ApiError::Internal => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// OpenAI error `type`: `invalid_request_error` for client errors, `server_error` otherwise.
    pub fn error_type(&self) -> &'static str {
        if self.status().is_client_error() {
            "invalid_request_error"
        } else {
            "server_error"
        }
    }

    /// OpenAI error `param`, when one parameter is to blame.
    pub fn param(&self) -> Option<&'static str> {
        match self {
            ApiError::MissingParameter { param } | ApiError::InvalidValue { param, .. } => {
                Some(param)
            }
            ApiError::ModelNotFound => Some("model"),
            ApiError::ContextLengthExceeded { .. } => Some("messages"),
            _ => None,
        }
    }

    /// The OpenAI error object: `{"error":{"message","type","param","code"}}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "error": ErrorBody {
            message: self.to_string(),
            r#type: self.error_type(),
            param: self.param(),
            code: self.code(),
        }})
    }
}

#[derive(Serialize)]
struct ErrorBody {
    message: String,
    r#type: &'static str,
    param: Option<&'static str>,
    code: &'static str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status(), axum::Json(self.to_json())).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_and_codes() {
        let e = ApiError::ModelNotFound;
        let v = e.to_json();
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["param"], "model");
        assert_eq!(v["error"]["code"], "model_not_found");
        assert!(v["error"]["message"].is_string());
        assert_eq!(e.status(), StatusCode::NOT_FOUND);
        assert_eq!(ApiError::UpstreamUnavailable.error_type(), "server_error");
        assert_eq!(
            ApiError::UpstreamRejected { status: 422 }.status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }
}
