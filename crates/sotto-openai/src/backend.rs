//! The [`Backend`] abstraction the HTTP layer is written against.

use std::future::Future;
use std::pin::Pin;

use futures_util::Stream;
use serde::{Deserialize, Serialize};

use crate::{ApiError, ChatRequest, CompletionRequest};

/// A boxed, `Send` future (what [`Backend`] methods return; no `async-trait` needed).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The event stream of one chat completion.
///
/// It yields zero or more [`ChatEvent::Delta`]s followed by exactly one [`ChatEvent::Finish`]
/// — or an `Err` instead, after which nothing more is read. **Dropping the stream cancels the
/// generation**: implementations must stop work promptly once their stream is dropped.
pub type ChatStream = Pin<Box<dyn Stream<Item = Result<ChatEvent, ApiError>> + Send + 'static>>;

/// A model served by a backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The model id clients put in `model`.
    pub id: String,
    /// Creation time (Unix seconds) as reported in `GET /v1/models`.
    pub created: u64,
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// The model produced its end-of-sequence token (OpenAI `"stop"`).
    Stop,
    /// `max_tokens` or the context window was reached (OpenAI `"length"`).
    Length,
}

impl FinishReason {
    /// The OpenAI wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// Token accounting of one completion (OpenAI `usage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the rendered prompt (including any BOS the model adds).
    pub prompt_tokens: u32,
    /// Tokens generated.
    pub completion_tokens: u32,
    /// `prompt_tokens + completion_tokens`.
    pub total_tokens: u32,
}

impl Usage {
    /// Build a usage record, computing the total (saturating).
    pub fn new(prompt_tokens: u32, completion_tokens: u32) -> Self {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
        }
    }
}

/// One event of a [`ChatStream`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatEvent {
    /// A piece of generated text (never empty).
    Delta(String),
    /// The generation finished. Always the last event.
    Finish {
        /// Why it ended.
        finish_reason: FinishReason,
        /// Token accounting; `None` when an upstream did not report it.
        usage: Option<Usage>,
    },
}

/// Something that can serve OpenAI-style chat completions.
///
/// Implemented by [`BuiltinBackend`](crate::BuiltinBackend) (the in-process engine) and
/// [`UpstreamBackend`](crate::UpstreamBackend) (an OpenAI-compatible server on loopback); tests
/// may provide their own.
pub trait Backend: Send + Sync + 'static {
    /// The models served (for `GET /v1/models`).
    fn list_models(&self) -> BoxFuture<'_, Result<Vec<ModelInfo>, ApiError>>;

    /// Start a chat completion.
    ///
    /// The future resolves once the request has been admitted (e.g. after waiting for a
    /// generation slot) or has failed before producing anything; request-level failures such
    /// as [`ApiError::ModelNotFound`] or [`ApiError::ContextLengthExceeded`] are reported here
    /// so that they become proper HTTP error responses even for streaming requests. Dropping
    /// the future or the returned stream cancels the work.
    fn chat(&self, request: ChatRequest) -> BoxFuture<'_, Result<ChatStream, ApiError>>;

    /// Start a text completion (`POST /v1/completions`): the prompt is continued as is,
    /// without any chat rendering. Same contract as [`chat`](Self::chat): the stream yields
    /// deltas and one finish event, and dropping it cancels the work.
    ///
    /// The default answers 404 `unknown_url`: a backend that cannot continue raw text does
    /// not have the endpoint.
    fn complete(&self, request: CompletionRequest) -> BoxFuture<'_, Result<ChatStream, ApiError>> {
        drop(request);
        Box::pin(async { Err(ApiError::UnknownRoute) })
    }
}
