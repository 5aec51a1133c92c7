//! [`UpstreamBackend`]: relay to an OpenAI-compatible server (vLLM, llama.cpp, Ollama) over
//! plain HTTP on loopback.

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde_json::{Value, json};

use crate::backend::{BoxFuture, ChatEvent, ChatStream, FinishReason, ModelInfo, Usage};
use crate::{ApiError, Backend, ChatRequest, CompletionRequest, SamplingOptions};

/// Longest server-sent-event line accepted from the upstream.
const MAX_SSE_LINE: usize = 4 * 1024 * 1024;
/// Largest JSON body accepted from the upstream (model lists, non-streamed fallbacks).
const MAX_JSON_BODY: usize = 16 * 1024 * 1024;

/// Forwards requests to an OpenAI-compatible upstream server.
///
/// * `GET /v1/models` is relayed (ids and `created`; `owned_by` becomes `sotto`).
/// * Chat and text completions are always requested from the upstream as a stream (with
///   `stream_options.include_usage`), re-parsed and re-emitted as [`ChatEvent`]s; the HTTP
///   layer turns them back into a streamed or a single response, so both client modes work
///   whatever the client asked. Only validated, known fields are forwarded (model, messages
///   as text, temperature, top_p, max_tokens, seed, and — only when the client set them —
///   stop, presence_penalty, frequency_penalty and the vLLM/llama.cpp extensions top_k,
///   min_p, repetition_penalty, under the same names). Stop strings are applied by the
///   upstream.
/// * Errors: unreachable upstream → 503 `upstream_unavailable`; upstream 5xx or an unusable
///   response → 502 `upstream_error` (503 stays 503); upstream 404 → 404 `model_not_found`;
///   other upstream 4xx → same status, `upstream_rejected`. Upstream error messages are not
///   relayed (they might quote the prompt), and no bodies are logged. Connecting times out
///   after 10 s, and an upstream that sends nothing for 10 minutes counts as failed.
/// * Cancellation: dropping the [`ChatStream`] drops the upstream response, which closes the
///   upstream connection; servers like vLLM abort the generation on that.
pub struct UpstreamBackend {
    client: reqwest::Client,
    base: String,
}

impl UpstreamBackend {
    /// Relay to the OpenAI base URL `base_url`, e.g. `http://127.0.0.1:8000/v1` (`/v1` is
    /// appended when missing). Only `http://` is supported (this build has no TLS).
    pub fn new(base_url: &str) -> Result<Self, ApiError> {
        let trimmed = base_url.trim().trim_end_matches('/');
        let Some(rest) = trimmed.strip_prefix("http://") else {
            return Err(ApiError::InvalidUpstreamUrl);
        };
        if rest.is_empty() || rest.starts_with('/') {
            return Err(ApiError::InvalidUpstreamUrl);
        }
        let base = if trimmed.ends_with("/v1") {
            trimmed.to_owned()
        } else {
            format!("{trimmed}/v1")
        };
        reqwest::Url::parse(&base).map_err(|_| ApiError::InvalidUpstreamUrl)?;
        let client = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(10))
            // A silent upstream (no byte for 10 minutes) is treated as failed.
            .read_timeout(Duration::from_secs(600))
            .build()
            .map_err(|_| ApiError::InvalidUpstreamUrl)?;
        Ok(UpstreamBackend { client, base })
    }

    /// The normalised base URL (ending in `/v1`).
    pub fn base_url(&self) -> &str {
        &self.base
    }
}

fn send_error(e: &reqwest::Error) -> ApiError {
    if e.is_connect() || e.is_timeout() {
        ApiError::UpstreamUnavailable
    } else {
        ApiError::UpstreamError
    }
}

fn status_error(status: reqwest::StatusCode) -> ApiError {
    match status.as_u16() {
        404 => ApiError::ModelNotFound,
        413 => ApiError::UpstreamRejected { status: 413 },
        s @ 400..=499 => ApiError::UpstreamRejected { status: s },
        503 => ApiError::UpstreamUnavailable,
        _ => ApiError::UpstreamError,
    }
}

/// Read a whole (bounded) JSON body.
async fn read_json(resp: reqwest::Response) -> Result<Value, ApiError> {
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_JSON_BODY as u64)
    {
        return Err(ApiError::UpstreamError);
    }
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| ApiError::UpstreamError)?;
        if body.len() + chunk.len() > MAX_JSON_BODY {
            return Err(ApiError::UpstreamError);
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|_| ApiError::UpstreamError)
}

fn parse_usage(v: &Value) -> Option<Usage> {
    let prompt = u32::try_from(v.get("prompt_tokens")?.as_u64()?).ok()?;
    let completion = u32::try_from(v.get("completion_tokens")?.as_u64()?).ok()?;
    Some(Usage::new(prompt, completion))
}

fn parse_finish(v: &Value) -> Option<FinishReason> {
    match v.as_str()? {
        "length" => Some(FinishReason::Length),
        // "stop", and anything else a server may invent ("eos", "content_filter", …).
        _ => Some(FinishReason::Stop),
    }
}

impl Backend for UpstreamBackend {
    fn list_models(&self) -> BoxFuture<'_, Result<Vec<ModelInfo>, ApiError>> {
        Box::pin(async move {
            let resp = self
                .client
                .get(format!("{}/models", self.base))
                .send()
                .await
                .map_err(|e| send_error(&e))?;
            if !resp.status().is_success() {
                tracing::warn!(status = resp.status().as_u16(), "upstream /models failed");
                return Err(match status_error(resp.status()) {
                    ApiError::UpstreamUnavailable => ApiError::UpstreamUnavailable,
                    _ => ApiError::UpstreamError,
                });
            }
            let body = read_json(resp).await?;
            let data = body
                .get("data")
                .and_then(Value::as_array)
                .ok_or(ApiError::UpstreamError)?;
            data.iter()
                .map(|m| {
                    let id = m
                        .get("id")
                        .and_then(Value::as_str)
                        .ok_or(ApiError::UpstreamError)?;
                    let created = m.get("created").and_then(Value::as_u64).unwrap_or(0);
                    Ok(ModelInfo {
                        id: id.to_owned(),
                        created,
                    })
                })
                .collect()
        })
    }

    fn chat(&self, request: ChatRequest) -> BoxFuture<'_, Result<ChatStream, ApiError>> {
        Box::pin(async move {
            let messages: Vec<Value> = request
                .messages
                .iter()
                .map(|m| json!({ "role": m.role.as_str(), "content": m.content }))
                .collect();
            let mut body = json!({
                "model": request.model,
                "messages": messages,
                "stream": true,
                "stream_options": { "include_usage": true },
            });
            if let Some(t) = request.temperature {
                body["temperature"] = json!(t);
            }
            if let Some(p) = request.top_p {
                body["top_p"] = json!(p);
            }
            if let Some(n) = request.max_tokens {
                body["max_tokens"] = json!(n);
            }
            if let Some(s) = request.seed {
                body["seed"] = json!(s);
            }
            add_sampling(&mut body, &request.sampling);
            drop(request);
            self.stream_from("chat/completions", body).await
        })
    }

    fn complete(&self, request: CompletionRequest) -> BoxFuture<'_, Result<ChatStream, ApiError>> {
        Box::pin(async move {
            // `echo` is applied by the HTTP layer, not asked of the upstream.
            let mut body = json!({
                "model": request.model,
                "prompt": request.prompt,
                "max_tokens": request.max_tokens,
                "stream": true,
                "stream_options": { "include_usage": true },
            });
            if let Some(t) = request.temperature {
                body["temperature"] = json!(t);
            }
            if let Some(p) = request.top_p {
                body["top_p"] = json!(p);
            }
            if let Some(s) = request.seed {
                body["seed"] = json!(s);
            }
            add_sampling(&mut body, &request.sampling);
            drop(request);
            self.stream_from("completions", body).await
        })
    }
}

/// Adds the [`SamplingOptions`] the client gave to an upstream request body, unchanged.
fn add_sampling(body: &mut Value, s: &SamplingOptions) {
    if !s.stop.is_empty() {
        body["stop"] = json!(s.stop);
    }
    if let Some(k) = s.top_k {
        body["top_k"] = json!(k);
    }
    if let Some(p) = s.min_p {
        body["min_p"] = json!(p);
    }
    if let Some(r) = s.repetition_penalty {
        body["repetition_penalty"] = json!(r);
    }
    if let Some(p) = s.presence_penalty {
        body["presence_penalty"] = json!(p);
    }
    if let Some(f) = s.frequency_penalty {
        body["frequency_penalty"] = json!(f);
    }
}

impl UpstreamBackend {
    /// POSTs `body` to `{base}/{path}` and turns the streamed (or, from a server that
    /// ignores `stream`, whole) answer into events. Chat chunks carry `delta.content`, text
    /// completion chunks `text`; the parser takes either.
    async fn stream_from(&self, path: &str, body: Value) -> Result<ChatStream, ApiError> {
        let resp = self
            .client
            .post(format!("{}/{path}", self.base))
            .json(&body)
            .send()
            .await
            .map_err(|e| send_error(&e))?;
        drop(body);
        let status = resp.status();
        if !status.is_success() {
            tracing::warn!(status = status.as_u16(), "upstream completion rejected");
            return Err(status_error(status));
        }
        let is_json = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/json"));
        if is_json {
            // A server that ignored `stream: true`: convert the single completion.
            let v = read_json(resp).await?;
            return completion_to_events(&v);
        }
        let state = SseParser {
            body: Box::pin(resp.bytes_stream()),
            buf: Vec::new(),
            data: String::new(),
            pending: VecDeque::new(),
            finish_reason: None,
            usage: None,
            done: false,
        };
        let stream = futures_util::stream::unfold(state, |mut st| async move {
            st.next_event().await.map(|ev| (ev, st))
        });
        let stream: ChatStream = Box::pin(stream);
        Ok(stream)
    }
}

fn completion_to_events(v: &Value) -> Result<ChatStream, ApiError> {
    let choice = v
        .get("choices")
        .and_then(|c| c.get(0))
        .ok_or(ApiError::UpstreamError)?;
    let content = choice
        .get("message")
        .and_then(|m| m.get("content"))
        .or_else(|| choice.get("text"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let finish_reason = choice
        .get("finish_reason")
        .and_then(parse_finish)
        .unwrap_or(FinishReason::Stop);
    let usage = v.get("usage").and_then(parse_usage);
    let mut events = Vec::new();
    if !content.is_empty() {
        events.push(Ok(ChatEvent::Delta(content)));
    }
    events.push(Ok(ChatEvent::Finish {
        finish_reason,
        usage,
    }));
    Ok(Box::pin(futures_util::stream::iter(events)))
}

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// Incremental parser of the upstream's `text/event-stream` into [`ChatEvent`]s.
struct SseParser {
    body: ByteStream,
    buf: Vec<u8>,
    /// `data:` lines of the event being assembled.
    data: String,
    pending: VecDeque<Result<ChatEvent, ApiError>>,
    finish_reason: Option<FinishReason>,
    usage: Option<Usage>,
    done: bool,
}

impl SseParser {
    async fn next_event(&mut self) -> Option<Result<ChatEvent, ApiError>> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Some(ev);
            }
            if self.done {
                return None;
            }
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                self.line(&line);
                continue;
            }
            if self.buf.len() > MAX_SSE_LINE {
                return Some(self.fail());
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                Some(Err(_)) => return Some(self.fail()),
                None => {
                    // Stream closed without `[DONE]`: tolerate it if the choice had finished.
                    self.done = true;
                    return Some(match self.finish_reason {
                        Some(finish_reason) => Ok(ChatEvent::Finish {
                            finish_reason,
                            usage: self.usage,
                        }),
                        None => Err(ApiError::UpstreamError),
                    });
                }
            }
        }
    }

    fn fail(&mut self) -> Result<ChatEvent, ApiError> {
        self.done = true;
        Err(ApiError::UpstreamError)
    }

    fn line(&mut self, line: &[u8]) {
        if line.is_empty() {
            let data = std::mem::take(&mut self.data);
            if !data.is_empty() {
                self.dispatch(&data);
            }
            return;
        }
        let Ok(line) = std::str::from_utf8(line) else {
            let err = self.fail();
            self.pending.push_back(err);
            return;
        };
        if let Some(value) = line.strip_prefix("data:") {
            let value = value.strip_prefix(' ').unwrap_or(value);
            // One event may span many `data:` lines: bound the whole event, not just a line.
            if self.data.len() + 1 + value.len() > MAX_SSE_LINE {
                let err = self.fail();
                self.pending.push_back(err);
                return;
            }
            if !self.data.is_empty() {
                self.data.push('\n');
            }
            self.data.push_str(value);
        }
        // `event:`, `id:`, `retry:` and `:` comments carry nothing we need.
    }

    fn dispatch(&mut self, data: &str) {
        if self.done {
            return;
        }
        if data.trim() == "[DONE]" {
            let ev = match self.finish_reason {
                Some(finish_reason) => Ok(ChatEvent::Finish {
                    finish_reason,
                    usage: self.usage,
                }),
                None => Err(ApiError::UpstreamError),
            };
            self.done = true;
            self.pending.push_back(ev);
            return;
        }
        let Ok(chunk) = serde_json::from_str::<Value>(data) else {
            let err = self.fail();
            self.pending.push_back(err);
            return;
        };
        if chunk.get("error").is_some() {
            tracing::warn!("upstream reported an error mid-stream");
            let err = self.fail();
            self.pending.push_back(err);
            return;
        }
        if let Some(usage) = chunk.get("usage").and_then(parse_usage) {
            self.usage = Some(usage);
        }
        if let Some(choice) = chunk.get("choices").and_then(|c| c.get(0)) {
            if let Some(text) = choice
                .get("delta")
                .and_then(|d| d.get("content"))
                .or_else(|| choice.get("text"))
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
            {
                self.pending
                    .push_back(Ok(ChatEvent::Delta(text.to_owned())));
            }
            if let Some(reason) = choice.get("finish_reason").and_then(parse_finish) {
                self.finish_reason = Some(reason);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_normalisation() {
        let b = UpstreamBackend::new("http://127.0.0.1:8000").unwrap();
        assert_eq!(b.base_url(), "http://127.0.0.1:8000/v1");
        let b = UpstreamBackend::new("http://127.0.0.1:8000/v1/").unwrap();
        assert_eq!(b.base_url(), "http://127.0.0.1:8000/v1");
        assert!(UpstreamBackend::new("https://example.com").is_err());
        assert!(UpstreamBackend::new("http://").is_err());
        assert!(UpstreamBackend::new("127.0.0.1:80").is_err());
    }

    async fn parse_all(chunks: Vec<&'static str>) -> Vec<Result<ChatEvent, ApiError>> {
        let body: ByteStream = Box::pin(futures_util::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok(Bytes::from_static(c.as_bytes()))),
        ));
        let mut p = SseParser {
            body,
            buf: Vec::new(),
            data: String::new(),
            pending: VecDeque::new(),
            finish_reason: None,
            usage: None,
            done: false,
        };
        let mut out = Vec::new();
        while let Some(ev) = p.next_event().await {
            out.push(ev);
        }
        out
    }

    #[tokio::test]
    async fn sse_parsing_split_across_chunks() {
        let out = parse_all(vec![
            ": comment\r\ndata: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\r\n\r\nda",
            "ta: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"lo\"},\"finish_reason\":null}]}\n\n",
            "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"length\"}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":3,\"total_tokens\":5}}\n\ndata: [DONE]\n\n",
        ])
        .await;
        assert_eq!(
            out,
            vec![
                Ok(ChatEvent::Delta("Hel".into())),
                Ok(ChatEvent::Delta("lo".into())),
                Ok(ChatEvent::Finish {
                    finish_reason: FinishReason::Length,
                    usage: Some(Usage::new(2, 3))
                }),
            ]
        );
    }

    #[test]
    fn sse_event_spanning_many_lines_is_bounded() {
        let body: ByteStream = Box::pin(futures_util::stream::empty());
        let mut p = SseParser {
            body,
            buf: Vec::new(),
            data: String::new(),
            pending: VecDeque::new(),
            finish_reason: None,
            usage: None,
            done: false,
        };
        // Each line is small, but together they would exceed the per-event limit.
        let line = format!("data: {}", "x".repeat(1 << 20));
        for _ in 0..8 {
            p.line(line.as_bytes());
            assert!(
                p.data.len() <= MAX_SSE_LINE,
                "event buffer grew to {}",
                p.data.len()
            );
        }
        assert!(p.done);
        assert_eq!(p.pending.front(), Some(&Err(ApiError::UpstreamError)));
    }

    #[tokio::test]
    async fn sse_truncated_or_error_is_upstream_error() {
        let out = parse_all(vec![
            "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n",
        ])
        .await;
        assert_eq!(
            out,
            vec![
                Ok(ChatEvent::Delta("a".into())),
                Err(ApiError::UpstreamError)
            ]
        );
        let out = parse_all(vec![
            "data: {\"error\":{\"message\":\"boom\"}}\n\ndata: [DONE]\n\n",
        ])
        .await;
        assert_eq!(out, vec![Err(ApiError::UpstreamError)]);
        let out = parse_all(vec!["data: not json\n\n"]).await;
        assert_eq!(out, vec![Err(ApiError::UpstreamError)]);
    }
}
