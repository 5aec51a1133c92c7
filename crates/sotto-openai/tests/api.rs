//! End-to-end tests of the OpenAI-compatible API over `serve_plain` + reqwest, with the
//! built-in engine serving stories260K.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::*;
use futures_util::StreamExt;
use serde_json::{Value, json};
use sotto_openai::{ApiLimits, ApiState, Backend, ChatEvent, ChatMessage, ChatRequest, Role};
use tower::ServiceExt;

fn greedy_body(stream: bool, include_usage: bool) -> Value {
    json!({
        "model": MODEL_ID,
        "messages": [{"role": "user", "content": ""}],
        "temperature": 0,
        "max_tokens": 255,
        "stream": stream,
        "stream_options": if stream { json!({"include_usage": include_usage}) } else { Value::Null },
        "some_unknown_field": {"ignored": true},
    })
}

#[tokio::test]
async fn lists_and_gets_models() {
    let (base, _) = start_builtin().await;
    let resp = client()
        .get(format!("{base}/v1/models"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "list");
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["id"], MODEL_ID);
    assert_eq!(data[0]["object"], "model");
    assert_eq!(data[0]["owned_by"], "sotto");
    assert!(data[0]["created"].as_u64().unwrap() > 1_600_000_000);

    let resp = client()
        .get(format!("{base}/v1/models/{MODEL_ID}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["id"], MODEL_ID);

    let resp = client()
        .get(format!("{base}/v1/models/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(error_code(&resp.json().await.unwrap()), "model_not_found");
}

#[tokio::test]
async fn non_streaming_greedy_matches_reference() {
    let (base, backend) = start_builtin().await;
    let (status, body) = post_chat(&base, &greedy_body(false, false)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "chat.completion");
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert!(body["created"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(body["model"], MODEL_ID);
    let choices = body["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 1);
    assert_eq!(choices[0]["index"], 0);
    assert_eq!(choices[0]["message"]["role"], "assistant");
    let content = choices[0]["message"]["content"].as_str().unwrap();
    assert!(content.starts_with(&reference_text()));
    assert_eq!(content, FULL_255);
    assert_eq!(choices[0]["finish_reason"], "length");
    let usage = &body["usage"];
    assert_eq!(usage["prompt_tokens"], 1, "the empty prompt is just BOS");
    assert_eq!(usage["completion_tokens"], 255);
    assert_eq!(usage["total_tokens"], 256);
    assert_eq!(backend.finished_generations(), 1);
    assert_eq!(backend.active_generations(), 0);
}

#[tokio::test]
async fn streaming_greedy_matches_reference_with_usage() {
    let (base, _) = start_builtin().await;
    let resp = client()
        .post(format!("{base}/v1/chat/completions"))
        .json(&greedy_body(true, true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = read_sse(resp).await;
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(chunks.len() >= 4);
    let id = chunks[0]["id"].as_str().unwrap();
    assert!(id.starts_with("chatcmpl-"));
    for c in &chunks {
        assert_eq!(c["id"], id);
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["model"], MODEL_ID);
        assert_eq!(c["created"], chunks[0]["created"]);
    }
    // First chunk: role announcement.
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    assert!(chunks[0]["choices"][0]["finish_reason"].is_null());
    // Usage chunk last, with no choices.
    let usage_chunk = &chunks[chunks.len() - 1];
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(
        usage_chunk["usage"],
        json!({"prompt_tokens": 1, "completion_tokens": 255, "total_tokens": 256})
    );
    // Final choice chunk: empty delta, finish_reason.
    let last = &chunks[chunks.len() - 2];
    assert_eq!(last["choices"][0]["delta"], json!({}));
    assert_eq!(last["choices"][0]["finish_reason"], "length");
    // Content deltas in between.
    let mut text = String::new();
    for c in &chunks[1..chunks.len() - 2] {
        assert!(c["usage"].is_null());
        let choice = &c["choices"][0];
        assert_eq!(choice["index"], 0);
        assert!(choice["finish_reason"].is_null());
        text.push_str(choice["delta"]["content"].as_str().unwrap());
    }
    assert!(text.starts_with(&reference_text()));
    assert_eq!(text, FULL_255);
}

#[tokio::test]
async fn api_reproduces_the_readme_reference_exactly() {
    let n = reference_token_count();
    let (base, _) = start_builtin().await;
    let mut body = greedy_body(false, false);
    body["max_tokens"] = json!(n);
    let (status, resp) = post_chat(&base, &body).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["choices"][0]["message"]["content"], reference_text());
    assert_eq!(resp["choices"][0]["finish_reason"], "length");
    assert_eq!(resp["usage"]["completion_tokens"], n);

    // With room to spare the story ends by itself: finish_reason "stop".
    body["max_tokens"] = json!(1000);
    let (status, resp) = post_chat(&base, &body).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["choices"][0]["finish_reason"], "stop");
    let content = resp["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(content.starts_with(FULL_255));
}

#[tokio::test]
async fn streaming_without_include_usage_has_no_usage_chunk() {
    let (base, _) = start_builtin().await;
    let mut body = greedy_body(true, false);
    body["max_tokens"] = json!(10);
    let resp = client()
        .post(format!("{base}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let events = read_sse(resp).await;
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    for c in &chunks {
        assert!(c.get("usage").is_none(), "{c}");
        assert_eq!(c["choices"].as_array().unwrap().len(), 1);
    }
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "length"
    );
    let text: String = chunks[1..chunks.len() - 1]
        .iter()
        .map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(reference_text().starts_with(&text), "{text:?}");
    assert!(!text.is_empty());
}

#[tokio::test]
async fn seeded_sampling_is_deterministic_and_prompts_are_used() {
    let (base, _) = start_builtin().await;
    let body = json!({
        "model": MODEL_ID,
        "messages": [{"role": "system", "content": "Once upon a time"},
                     {"role": "user", "content": [{"type": "text", "text": "there was a dog"}]}],
        "temperature": 1.0, "top_p": 0.9, "seed": 42, "max_completion_tokens": 40,
    });
    let (s1, a) = post_chat(&base, &body).await;
    let (s2, b) = post_chat(&base, &body).await;
    assert_eq!((s1.as_u16(), s2.as_u16()), (200, 200));
    assert_eq!(a["choices"][0]["message"], b["choices"][0]["message"]);
    assert!(a["usage"]["prompt_tokens"].as_u64().unwrap() > 5);
    assert!(a["usage"]["completion_tokens"].as_u64().unwrap() <= 40);
}

#[test]
fn prompt_rendering_joins_contents_with_newlines() {
    let msg = |role, content: &str| ChatMessage {
        role,
        content: content.into(),
    };
    assert_eq!(
        sotto_openai::BuiltinBackend::render_prompt(&[
            msg(Role::System, "a"),
            msg(Role::User, "b"),
            msg(Role::Assistant, ""),
            msg(Role::User, "c")
        ]),
        "a\nb\n\nc"
    );
    assert_eq!(
        sotto_openai::BuiltinBackend::render_prompt(&[msg(Role::User, "")]),
        ""
    );
}

#[tokio::test]
async fn request_errors_are_openai_shaped_and_never_echo_prompts() {
    let (base, backend) = start_builtin().await;
    let secret = "SECRET-PROMPT-TEXT";
    let msgs = json!([{"role": "user", "content": secret}]);
    let cases = [
        (
            json!({"model": "gpt-nope", "messages": msgs}),
            404,
            "model_not_found",
            Some("model"),
        ),
        (
            json!({"model": MODEL_ID, "messages": msgs, "temperature": 5}),
            400,
            "invalid_value",
            Some("temperature"),
        ),
        (
            json!({"model": MODEL_ID, "messages": msgs, "top_p": 0}),
            400,
            "invalid_value",
            Some("top_p"),
        ),
        (
            json!({"model": MODEL_ID, "messages": msgs, "max_tokens": 0}),
            400,
            "invalid_value",
            Some("max_tokens"),
        ),
        (
            json!({"model": MODEL_ID, "messages": []}),
            400,
            "invalid_value",
            Some("messages"),
        ),
        (
            json!({"model": MODEL_ID, "messages": [{"role": "robot", "content": secret}]}),
            400,
            "invalid_value",
            Some("messages"),
        ),
        (
            json!({"model": MODEL_ID, "messages": secret}),
            400,
            "invalid_value",
            Some("messages"),
        ),
        (
            json!({"messages": msgs}),
            400,
            "missing_required_parameter",
            Some("model"),
        ),
        (
            json!({"model": MODEL_ID, "messages": msgs, "stream": true, "temperature": -1}),
            400,
            "invalid_value",
            Some("temperature"),
        ),
    ];
    for (body, status, code, param) in cases {
        let (s, resp) = post_chat(&base, &body).await;
        assert_eq!(s.as_u16(), status, "{body} -> {resp}");
        assert_eq!(error_code(&resp), code);
        assert_eq!(resp["error"]["param"].as_str(), param);
        assert_eq!(resp["error"]["type"], "invalid_request_error", "{resp}");
        assert!(!resp.to_string().contains(secret), "{resp}");
    }

    // Invalid JSON.
    let resp = client()
        .post(format!("{base}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(format!(
            "{{\"model\": \"{MODEL_ID}\", \"messages\": [{{\"content\": \"{secret}\""
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(error_code(&body), "invalid_json");
    assert!(!body.to_string().contains(secret));

    // A prompt longer than the 512-token context.
    let long = "Once upon a time there was a dog. ".repeat(200);
    let (s, resp) = post_chat(
        &base,
        &json!({"model": MODEL_ID, "messages": [{"role": "user", "content": long}]}),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(error_code(&resp), "context_length_exceeded");
    assert!(!resp.to_string().contains("dog"));
    assert_eq!(backend.finished_generations(), 0, "nothing was generated");
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let backend = builtin(1);
    let base = start_with_limits(
        backend,
        ApiLimits {
            max_body_bytes: 1024,
            ..ApiLimits::default()
        },
    )
    .await;
    let big =
        json!({"model": MODEL_ID, "messages": [{"role": "user", "content": "a".repeat(2000)}]});
    let (s, resp) = post_chat(&base, &big).await;
    assert_eq!(s, 413);
    assert_eq!(error_code(&resp), "payload_too_large");
    assert_eq!(resp["error"]["type"], "invalid_request_error");

    // Chunked (no Content-Length): the limit is enforced while reading.
    let bytes = serde_json::to_vec(&big).unwrap();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(100).map(|c| Ok(c.to_vec())).collect();
    let resp = client()
        .post(format!("{base}/v1/chat/completions"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(error_code(&resp.json().await.unwrap()), "payload_too_large");

    // Just under the limit is fine.
    let ok =
        json!({"model": MODEL_ID, "messages": [{"role": "user", "content": ""}], "max_tokens": 1});
    let (s, _) = post_chat(&base, &ok).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn unknown_routes_and_methods() {
    let (base, _) = start_builtin().await;
    let resp = client()
        .get(format!("{base}/v1/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(error_code(&resp.json().await.unwrap()), "unknown_url");

    let resp = client()
        .get(format!("{base}/v1/chat/completions"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(
        error_code(&resp.json().await.unwrap()),
        "method_not_allowed"
    );

    let resp = client()
        .post(format!("{base}/v1/models"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
}

#[tokio::test]
async fn router_works_in_process_via_oneshot() {
    // How the enclave uses it: one request at a time through `oneshot`, no socket.
    let app = sotto_openai::router(ApiState::new(builtin(1)));
    let req = http::Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(greedy_body(true, false).to_string()))
        .unwrap();
    let resp = app.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body().into_data_stream();
    let mut frames = Vec::new();
    while let Some(frame) = body.next().await {
        frames.push(String::from_utf8(frame.unwrap().to_vec()).unwrap());
    }
    // One SSE event per body frame.
    assert!(
        frames
            .iter()
            .all(|f| f.starts_with("data: ") && f.ends_with("\n\n"))
    );
    assert_eq!(frames.last().unwrap(), "data: [DONE]\n\n");
}

#[tokio::test]
async fn requests_queue_for_generation_slots() {
    let backend = builtin(1);
    let base = start(ApiState::new(backend.clone())).await;
    let body = json!({"model": MODEL_ID, "messages": [{"role": "user", "content": ""}],
                      "temperature": 0, "max_tokens": 100});
    let results = futures_util::future::join_all((0..3).map(|_| post_chat(&base, &body))).await;
    for (s, r) in &results {
        assert_eq!(*s, 200, "{r}");
        assert_eq!(
            r["choices"][0]["message"],
            results[0].1["choices"][0]["message"]
        );
    }
    assert_eq!(backend.finished_generations(), 3);
    assert_eq!(backend.free_slots(), 1);
}

#[tokio::test]
async fn dropping_the_stream_stops_the_builtin_generation() {
    let backend = builtin(1);
    let request = ChatRequest {
        model: MODEL_ID.into(),
        messages: vec![ChatMessage {
            role: Role::User,
            content: String::new(),
        }],
        temperature: Some(0.0),
        top_p: None,
        max_tokens: Some(500),
        seed: Some(1),
        sampling: Default::default(),
        stream: true,
        include_usage: false,
    };
    let mut stream = backend.chat(request).await.unwrap();
    assert!(matches!(stream.next().await, Some(Ok(ChatEvent::Delta(_)))));
    assert_eq!(backend.active_generations(), 1);
    assert_eq!(backend.free_slots(), 0);
    drop(stream);
    assert!(
        eventually(10, || backend.active_generations() == 0).await,
        "generation did not stop"
    );
    assert_eq!(backend.free_slots(), 1, "slot released");
    assert_eq!(backend.cancelled_generations(), 1);
    assert_eq!(backend.finished_generations(), 0);
    // Only the delta-channel's worth of tokens past the one we read was generated, not 500.
    let generated = backend.generated_tokens();
    assert!(generated < 30, "generated {generated} tokens after cancel");
}

#[tokio::test]
async fn client_disconnect_drops_the_backend_stream() {
    let backend = Arc::new(EndlessBackend::default());
    let base = start(ApiState::new(backend.clone())).await;
    let resp = client()
        .post(format!("{base}/v1/chat/completions"))
        .json(&json!({"model": "endless", "messages": [{"role": "user", "content": "hi"}], "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut seen = 0;
    while seen < 3 {
        body.next().await.unwrap().unwrap();
        seen += 1;
    }
    assert!(!backend.dropped.load(Ordering::SeqCst));
    drop(body); // disconnect mid-stream
    assert!(
        eventually(10, || backend.dropped.load(Ordering::SeqCst)).await,
        "server kept the backend stream alive after the client left"
    );
}

/// POST a JSON body to /v1/completions; returns status and parsed JSON body.
async fn post_completion(base: &str, body: &Value) -> (reqwest::StatusCode, Value) {
    let resp = client()
        .post(format!("{base}/v1/completions"))
        .json(body)
        .send()
        .await
        .expect("send");
    let status = resp.status();
    (status, resp.json::<Value>().await.expect("json body"))
}

#[tokio::test]
async fn text_completions_continue_the_prompt_as_is() {
    let (base, _) = start_builtin().await;
    // Non-streaming, the empty prompt: the reference, in OpenAI's text_completion shape.
    let (status, body) = post_completion(
        &base,
        &json!({"model": MODEL_ID, "prompt": "", "temperature": 0, "max_tokens": 255}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "text_completion");
    assert!(body["id"].as_str().unwrap().starts_with("cmpl-"));
    assert_eq!(body["model"], MODEL_ID);
    let choice = &body["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["text"], FULL_255);
    assert_eq!(choice["finish_reason"], "length");
    assert!(choice["logprobs"].is_null());
    assert_eq!(body["usage"]["prompt_tokens"], 1);
    assert_eq!(body["usage"]["completion_tokens"], 255);

    // Without max_tokens: OpenAI's default of 16 tokens.
    let (status, body) = post_completion(
        &base,
        &json!({"model": MODEL_ID, "prompt": "", "temperature": 0}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["usage"]["completion_tokens"], 16);
    assert!(FULL_255.starts_with(body["choices"][0]["text"].as_str().unwrap()));

    // A prompt is continued without any rendering: the prompt plus its continuation is the
    // reference when the prompt is the reference's beginning.
    let prompt = "Once upon a time, there was a little girl";
    let (_, body) = post_completion(
        &base,
        &json!({"model": MODEL_ID, "prompt": prompt, "temperature": 0, "max_tokens": 20, "echo": true}),
    )
    .await;
    let text = body["choices"][0]["text"].as_str().unwrap();
    assert!(
        text.starts_with(prompt),
        "echo prepends the prompt: {text:?}"
    );
    assert!(FULL_255.starts_with(text), "{text:?}");

    // Errors: unknown model 404, invalid request 400, both OpenAI-shaped.
    let (status, body) = post_completion(&base, &json!({"model": "nope", "prompt": "x"})).await;
    assert_eq!(status, 404);
    assert_eq!(error_code(&body), "model_not_found");
    let (status, body) = post_completion(&base, &json!({"model": MODEL_ID})).await;
    assert_eq!(status, 400);
    assert_eq!(error_code(&body), "missing_required_parameter");
}

#[tokio::test]
async fn text_completions_stream_with_usage() {
    let (base, _) = start_builtin().await;
    let resp = client()
        .post(format!("{base}/v1/completions"))
        .json(
            &json!({"model": MODEL_ID, "prompt": "", "temperature": 0, "max_tokens": 255,
                      "stream": true, "stream_options": {"include_usage": true}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let events = read_sse(resp).await;
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let id = chunks[0]["id"].as_str().unwrap();
    assert!(id.starts_with("cmpl-"));
    let mut text = String::new();
    let (last, rest) = chunks.split_last().unwrap();
    let (finish, deltas) = rest.split_last().unwrap();
    for c in deltas {
        assert_eq!(c["id"], id);
        assert_eq!(c["object"], "text_completion");
        assert!(c["usage"].is_null());
        assert!(c["choices"][0]["finish_reason"].is_null());
        text.push_str(c["choices"][0]["text"].as_str().unwrap());
    }
    assert_eq!(text, FULL_255);
    assert_eq!(finish["choices"][0]["finish_reason"], "length");
    assert_eq!(finish["choices"][0]["text"], "");
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["completion_tokens"], 255);
}
