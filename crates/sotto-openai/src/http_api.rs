//! HTTP handlers: routing, body limits, JSON responses and server-sent-event streaming.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderValue, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::{Value, json};

use crate::backend::{ChatEvent, ChatStream, FinishReason, Usage};
use crate::request::{parse_chat_request, parse_completion_request};
use crate::{ApiError, ApiState};

/// Build the OpenAI-compatible router.
///
/// Routes: `GET /v1/models`, `GET /v1/models/{id}`, `POST /v1/chat/completions`,
/// `POST /v1/completions`. Unknown
/// paths answer 404 `unknown_url`, a wrong method 405 `method_not_allowed`, both as OpenAI
/// error JSON. The router has no state left to fill in and can be served with
/// [`serve_plain`] or driven with `tower::ServiceExt::oneshot`.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/models", get(list_models))
        .route("/v1/models/{id}", get(get_model))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .fallback(|| async { ApiError::UnknownRoute })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
}

/// Serve `router` over plain HTTP/1.1 on `listener` until the listener fails.
///
/// No TLS: meant for loopback (the plaintext baseline and test upstreams).
pub async fn serve_plain(listener: tokio::net::TcpListener, router: Router) -> io::Result<()> {
    use axum::serve::ListenerExt;
    // Streamed tokens are small writes: disable Nagle so they are not held back.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router).await
}

async fn list_models(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let models = state.backend.list_models().await?;
    let data: Vec<Value> = models.iter().map(model_object).collect();
    Ok(axum::Json(json!({ "object": "list", "data": data })).into_response())
}

async fn get_model(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let models = state.backend.list_models().await?;
    let model = models
        .iter()
        .find(|m| m.id == id)
        .ok_or(ApiError::ModelNotFound)?;
    Ok(axum::Json(model_object(model)).into_response())
}

fn model_object(m: &crate::ModelInfo) -> Value {
    json!({ "id": m.id, "object": "model", "created": m.created, "owned_by": "sotto" })
}

/// Reads a request body up to the configured limit (413 `payload_too_large` beyond it).
async fn read_body(state: &ApiState, request: Request) -> Result<Bytes, ApiError> {
    let limit = state.limits.max_body_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let body = match Limited::new(request.into_body(), limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        Err(_) => return Err(ApiError::BodyRead),
    };
    Ok(body)
}

async fn chat_completions(
    State(state): State<ApiState>,
    request: Request,
) -> Result<Response, ApiError> {
    let body = read_body(&state, request).await?;
    let chat = parse_chat_request(&body, state.limits.max_tokens_cap)?;
    drop(body);

    let meta = Arc::new(ChunkMeta {
        id: completion_id("chatcmpl-"),
        created: crate::unix_now(),
        model: chat.model.clone(),
        include_usage: chat.include_usage,
        kind: Kind::Chat,
    });
    let stream = chat.stream;
    let events = state.backend.chat(chat).await?;
    if stream {
        Ok(sse_response(events, meta))
    } else {
        collect_completion(events, &meta).await
    }
}

/// `POST /v1/completions`: legacy text completion, OpenAI's `text_completion` objects.
async fn completions(
    State(state): State<ApiState>,
    request: Request,
) -> Result<Response, ApiError> {
    let body = read_body(&state, request).await?;
    let completion = parse_completion_request(&body, state.limits.max_tokens_cap)?;
    drop(body);

    let echo = completion.echo.then(|| completion.prompt.clone());
    let meta = Arc::new(ChunkMeta {
        id: completion_id("cmpl-"),
        created: crate::unix_now(),
        model: completion.model.clone(),
        include_usage: completion.include_usage,
        kind: Kind::Text,
    });
    let stream = completion.stream;
    let mut events = state.backend.complete(completion).await?;
    if let Some(prompt) = echo.filter(|p| !p.is_empty()) {
        // `echo`: the text starts with the prompt, as if it had been generated.
        let first = futures_util::stream::once(async move { Ok(ChatEvent::Delta(prompt)) });
        events = Box::pin(first.chain(events));
    }
    if stream {
        Ok(sse_response(events, meta))
    } else {
        collect_completion(events, &meta).await
    }
}

/// Which OpenAI object family a response is made of.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `chat.completion` / `chat.completion.chunk`.
    Chat,
    /// `text_completion` (whole and chunks).
    Text,
}

/// Per-completion constants repeated in every chunk.
struct ChunkMeta {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    kind: Kind,
}

/// `prefix` (`chatcmpl-` or `cmpl-`) followed by 24 random hex digits.
fn completion_id(prefix: &str) -> String {
    static FALLBACK: AtomicU64 = AtomicU64::new(0);
    let mut raw = [0u8; 12];
    if getrandom::fill(&mut raw).is_err() {
        // Ids only need to be unique, not secret.
        let n = FALLBACK.fetch_add(1, Ordering::Relaxed) ^ crate::unix_now().rotate_left(32);
        raw[..8].copy_from_slice(&n.to_le_bytes());
    }
    let mut id = String::with_capacity(prefix.len() + 24);
    id.push_str(prefix);
    for b in raw {
        id.push_str(&format!("{b:02x}"));
    }
    id
}

fn usage_json(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
    })
}

/// Drain the event stream into one `chat.completion` object.
async fn collect_completion(
    mut events: ChatStream,
    meta: &ChunkMeta,
) -> Result<Response, ApiError> {
    let mut content = String::new();
    while let Some(event) = events.next().await {
        match event? {
            ChatEvent::Delta(text) => content.push_str(&text),
            ChatEvent::Finish {
                finish_reason,
                usage,
            } => {
                let usage = usage.unwrap_or(Usage::new(0, 0));
                if meta.kind == Kind::Text {
                    let body = json!({
                        "id": meta.id,
                        "object": "text_completion",
                        "created": meta.created,
                        "model": meta.model,
                        "choices": [{
                            "text": content,
                            "index": 0,
                            "logprobs": null,
                            "finish_reason": finish_reason.as_str(),
                        }],
                        "usage": usage_json(&usage),
                    });
                    return Ok(axum::Json(body).into_response());
                }
                let body = json!({
                    "id": meta.id,
                    "object": "chat.completion",
                    "created": meta.created,
                    "model": meta.model,
                    "choices": [{
                        "index": 0,
                        "message": { "role": "assistant", "content": content, "refusal": null },
                        "logprobs": null,
                        "finish_reason": finish_reason.as_str(),
                    }],
                    "usage": usage_json(&usage),
                });
                return Ok(axum::Json(body).into_response());
            }
        }
    }
    // The backend ended without a Finish event (worker died, upstream cut off).
    Err(ApiError::Internal)
}

impl ChunkMeta {
    /// The first event of a stream: the role announcement of a chat; nothing for text.
    fn first_chunk(&self) -> Option<Value> {
        match self.kind {
            Kind::Chat => Some(self.chunk(json!({ "role": "assistant", "content": "" }), None)),
            Kind::Text => None,
        }
    }

    /// The chunk carrying one piece of generated text.
    fn text_chunk(&self, text: String) -> Value {
        match self.kind {
            Kind::Chat => self.chunk(json!({ "content": text }), None),
            Kind::Text => self.text_completion_chunk(text, None),
        }
    }

    /// The chunk carrying `finish_reason`.
    fn final_chunk(&self, finish_reason: FinishReason) -> Value {
        match self.kind {
            Kind::Chat => self.chunk(json!({}), Some(finish_reason)),
            Kind::Text => self.text_completion_chunk(String::new(), Some(finish_reason)),
        }
    }

    /// One streamed `text_completion` object with a single choice.
    fn text_completion_chunk(&self, text: String, finish_reason: Option<FinishReason>) -> Value {
        let mut chunk = json!({
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "text": text,
                "index": 0,
                "logprobs": null,
                "finish_reason": finish_reason.map(FinishReason::as_str),
            }],
        });
        if self.include_usage {
            chunk["usage"] = Value::Null;
        }
        chunk
    }

    /// One `chat.completion.chunk` with a single choice.
    fn chunk(&self, delta: Value, finish_reason: Option<FinishReason>) -> Value {
        let mut chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "index": 0,
                "delta": delta,
                "logprobs": null,
                "finish_reason": finish_reason.map(FinishReason::as_str),
            }],
        });
        if self.include_usage {
            // As OpenAI does: every chunk but the last carries `"usage": null`.
            chunk["usage"] = Value::Null;
        }
        chunk
    }

    /// The trailing usage chunk (`choices: []`).
    fn usage_chunk(&self, usage: &Usage) -> Value {
        let object = match self.kind {
            Kind::Chat => "chat.completion.chunk",
            Kind::Text => "text_completion",
        };
        json!({
            "id": self.id,
            "object": object,
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage_json(usage),
        })
    }
}

fn sse_data(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

struct SseState {
    events: ChatStream,
    meta: Arc<ChunkMeta>,
    pending: VecDeque<Bytes>,
    finished: bool,
}

/// Stream the events as OpenAI server-sent events: a role chunk (chat only), content chunks,
/// a final chunk with `finish_reason`, an optional usage chunk, then `data: [DONE]`. Each
/// event is one body frame. A failure after the headers were sent becomes a `data: {"error":…}` event and the
/// stream ends without `[DONE]`. Dropping the body drops `events`, cancelling the generation.
fn sse_response(events: ChatStream, meta: Arc<ChunkMeta>) -> Response {
    let pending = meta
        .first_chunk()
        .map(|c| sse_data(&c))
        .into_iter()
        .collect();
    let state = SseState {
        events,
        meta,
        pending,
        finished: false,
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(frame) = st.pending.pop_front() {
                return Some((Ok::<Bytes, Infallible>(frame), st));
            }
            if st.finished {
                return None;
            }
            match st.events.next().await {
                Some(Ok(ChatEvent::Delta(text))) => {
                    let chunk = st.meta.text_chunk(text);
                    st.pending.push_back(sse_data(&chunk));
                }
                Some(Ok(ChatEvent::Finish {
                    finish_reason,
                    usage,
                })) => {
                    st.finished = true;
                    let last = st.meta.final_chunk(finish_reason);
                    st.pending.push_back(sse_data(&last));
                    if st.meta.include_usage {
                        let usage = usage.unwrap_or(Usage::new(0, 0));
                        st.pending.push_back(sse_data(&st.meta.usage_chunk(&usage)));
                    }
                    st.pending
                        .push_back(Bytes::from_static(b"data: [DONE]\n\n"));
                }
                Some(Err(e)) => {
                    st.finished = true;
                    tracing::warn!(
                        code = e.code(),
                        "chat stream failed after headers were sent"
                    );
                    st.pending.push_back(sse_data(&e.to_json()));
                }
                None => {
                    st.finished = true;
                    tracing::warn!("chat stream ended without a finish event");
                    st.pending
                        .push_back(sse_data(&ApiError::Internal.to_json()));
                }
            }
        }
    });
    let mut response = Response::new(Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
