//! sotto-openai: the OpenAI-compatible HTTP API of Sotto, as an [`axum::Router`].
//!
//! The same router is used in two places:
//!
//! 1. inside the enclave's end-to-end encrypted channel, where each decrypted HTTP request is
//!    fed to `router.oneshot(request)` and the response body is streamed back frame by frame
//!    (one server-sent event per body frame when streaming), and
//! 2. as a plain loopback HTTP server via [`serve_plain`] (the plaintext baseline, and an
//!    upstream for tests).
//!
//! Endpoints: `GET /v1/models`, `GET /v1/models/{id}`, `POST /v1/chat/completions` and
//! `POST /v1/completions` (legacy text completions: the prompt is continued as is), each
//! non-streaming or `stream: true` server-sent events, including
//! `stream_options.include_usage`. Every error is an OpenAI error object
//! `{"error":{"message","type","param","code"}}` with a stable [`ApiError::code`]; error
//! messages never contain request contents, and this crate never logs bodies.
//!
//! Completions come from a [`Backend`]: [`BuiltinBackend`] (the in-process engine) or
//! [`UpstreamBackend`] (an OpenAI-compatible server such as vLLM, llama.cpp or Ollama on
//! loopback). **Cancellation:** dropping the response body (client disconnected, stream
//! abandoned) drops the backend's [`ChatStream`], which stops the generation / aborts the
//! upstream request.
//!
//! ```no_run
//! use std::sync::Arc;
//! use sotto_openai::{ApiState, BuiltinBackend, router, serve_plain};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let model = sotto_engine::Model::load("stories260K.bin".as_ref(), "tok512.bin".as_ref())?;
//! let backend = BuiltinBackend::new(Arc::new(model), "stories260K").with_max_concurrent(2);
//! let app = router(ApiState::new(Arc::new(backend)));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! serve_plain(listener, app).await?;
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod backend;
mod builtin;
mod error;
mod http_api;
mod request;
mod upstream;

use std::sync::Arc;

pub use backend::{Backend, BoxFuture, ChatEvent, ChatStream, FinishReason, ModelInfo, Usage};
pub use builtin::BuiltinBackend;
pub use error::ApiError;
pub use http_api::{router, serve_plain};
pub use request::{ChatMessage, ChatRequest, CompletionRequest, MAX_STOP, Role, SamplingOptions};
pub use upstream::UpstreamBackend;

/// Request limits enforced by the HTTP layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiLimits {
    /// Largest accepted request body in bytes; larger bodies get 413 `payload_too_large`.
    pub max_body_bytes: usize,
    /// Upper bound for `max_tokens` / `max_completion_tokens`; larger values are clamped.
    pub max_tokens_cap: u32,
}

impl Default for ApiLimits {
    /// 1 MiB bodies, at most 16384 completion tokens per request.
    fn default() -> Self {
        ApiLimits {
            max_body_bytes: 1024 * 1024,
            max_tokens_cap: 16384,
        }
    }
}

/// Shared state of the [`router`]: the backend and the limits.
#[derive(Clone)]
pub struct ApiState {
    /// Where completions come from.
    pub backend: Arc<dyn Backend>,
    /// Request limits.
    pub limits: ApiLimits,
}

impl ApiState {
    /// State with [`ApiLimits::default`].
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        ApiState {
            backend,
            limits: ApiLimits::default(),
        }
    }

    /// Replace the limits.
    pub fn with_limits(mut self, limits: ApiLimits) -> Self {
        self.limits = limits;
        self
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
