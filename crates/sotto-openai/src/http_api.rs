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
use crate::request::parse_chat_request;
use crate::{ApiError, ApiState};

/// Build the OpenAI-compatible router.
///
/// Routes: `GET /v1/models`, `GET /v1/models/{id}`, `POST /v1/chat/completions`. Unknown
/// paths answer 404 `unknown_url`, a wrong method 405 `method_not_allowed`, both as OpenAI
/// error JSON. The router has no state left to fill in and can be served with
/// [`serve_plain`] or driven with `tower::ServiceExt::oneshot`.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/models", get(list_models))
        .route("/v1/models/{id}", get(get_model))
        .route("/v1/chat/completions", post(chat_completions))
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

async fn chat_completions(
    State(state): State<ApiState>,
    request: Request,
) -> Result<Response, ApiError> {
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
    let chat = parse_chat_request(&body, state.limits.max_tokens_cap)?;
    drop(body);

    let meta = Arc::new(ChunkMeta {
        id: completion_id(),
        created: crate::unix_now(),
        model: chat.model.clone(),
        include_usage: chat.include_usage,
    });
    let stream = chat.stream;
    let events = state.backend.chat(chat).await?;
    if stream {
        Ok(sse_response(events, meta))
    } else {
        collect_completion(events, &meta).await
    }
}

/// Per-completion constants repeated in every chunk.
struct ChunkMeta {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
}

/// `chatcmpl-` followed by 24 random hex digits.
fn completion_id() -> String {
    static FALLBACK: AtomicU64 = AtomicU64::new(0);
    let mut raw = [0u8; 12];
    if getrandom::fill(&mut raw).is_err() {
        // Ids only need to be unique, not secret.
        let n = FALLBACK.fetch_add(1, Ordering::Relaxed) ^ crate::unix_now().rotate_left(32);
        raw[..8].copy_from_slice(&n.to_le_bytes());
    }
    let mut id = String::with_capacity(9 + 24);
    id.push_str("chatcmpl-");
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
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
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

/// Stream the events as OpenAI server-sent events: a role chunk, content chunks, a final chunk
/// with `finish_reason`, an optional usage chunk, then `data: [DONE]`. Each event is one body
/// frame. A failure after the headers were sent becomes a `data: {"error":…}` event and the
/// stream ends without `[DONE]`. Dropping the body drops `events`, cancelling the generation.
fn sse_response(events: ChatStream, meta: Arc<ChunkMeta>) -> Response {
    let first = sse_data(&meta.chunk(json!({ "role": "assistant", "content": "" }), None));
    let state = SseState {
        events,
        meta,
        pending: VecDeque::from([first]),
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
                    let chunk = st.meta.chunk(json!({ "content": text }), None);
                    st.pending.push_back(sse_data(&chunk));
                }
                Some(Ok(ChatEvent::Finish {
                    finish_reason,
                    usage,
                })) => {
                    st.finished = true;
                    let last = st.meta.chunk(json!({}), Some(finish_reason));
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
