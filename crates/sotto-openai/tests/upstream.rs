//! `UpstreamBackend`: a `serve_plain` server relaying to another `serve_plain` server.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::*;
use futures_util::StreamExt;
use serde_json::{Value, json};
use sotto_openai::{ApiState, UpstreamBackend};

async fn start_relay(upstream_base: &str) -> String {
    let backend = UpstreamBackend::new(upstream_base).expect("upstream url");
    start(ApiState::new(Arc::new(backend))).await
}

fn greedy(stream: bool) -> Value {
    json!({
        "model": MODEL_ID,
        "messages": [{"role": "user", "content": ""}],
        "temperature": 0,
        "max_tokens": 255,
        "stream": stream,
        "stream_options": {"include_usage": true},
    })
}

#[tokio::test]
async fn relays_models_and_non_streaming_completions() {
    let (inner, inner_backend) = start_builtin().await;
    let outer = start_relay(&format!("{inner}/v1")).await;

    let models: Value = client()
        .get(format!("{outer}/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], MODEL_ID);
    assert_eq!(models["data"][0]["owned_by"], "sotto");

    let (status, body) = post_chat(&outer, &greedy(false)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], MODEL_ID);
    assert_eq!(body["choices"][0]["message"]["content"], FULL_255);
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 1, "completion_tokens": 255, "total_tokens": 256})
    );
    assert_eq!(
        inner_backend.finished_generations(),
        1,
        "the inner server generated it"
    );

    // Unknown model: the upstream's 404 becomes our model_not_found.
    let (status, body) = post_chat(
        &outer,
        &json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(error_code(&body), "model_not_found");

    // Validation happens before relaying.
    let (status, body) = post_chat(
        &outer,
        &json!({"model": MODEL_ID, "messages": [{"role": "user", "content": "x"}], "temperature": 5}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(error_code(&body), "invalid_value");
}

#[tokio::test]
async fn relays_streaming_completions() {
    let (inner, _) = start_builtin().await;
    let outer = start_relay(&inner).await; // "/v1" appended automatically
    let resp = client()
        .post(format!("{outer}/v1/chat/completions"))
        .json(&greedy(true))
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
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let n = chunks.len();
    assert_eq!(chunks[n - 2]["choices"][0]["finish_reason"], "length");
    assert_eq!(chunks[n - 1]["choices"], json!([]));
    assert_eq!(chunks[n - 1]["usage"]["completion_tokens"], 255);
    let text: String = chunks[1..n - 2]
        .iter()
        .map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(text.starts_with(&reference_text()));
    assert_eq!(text, FULL_255);
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["id"], chunks[0]["id"]);
    }
}

#[tokio::test]
async fn upstream_down_is_503() {
    // A port that was just free: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let outer = start_relay(&dead).await;

    let (status, body) = post_chat(&outer, &greedy(false)).await;
    assert_eq!(status, 503);
    assert_eq!(error_code(&body), "upstream_unavailable");
    assert_eq!(body["error"]["type"], "server_error");

    let (status, body) = post_chat(&outer, &greedy(true)).await;
    assert_eq!(status, 503, "streaming requests fail before the headers");
    assert_eq!(error_code(&body), "upstream_unavailable");

    let resp = client()
        .get(format!("{outer}/v1/models"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
}

#[tokio::test]
async fn upstream_garbage_is_502() {
    // An "upstream" that answers every request with a 500.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .fallback(|| async { (http::StatusCode::INTERNAL_SERVER_ERROR, "boom") });
    tokio::spawn(sotto_openai::serve_plain(listener, app));
    let outer = start_relay(&format!("http://{addr}")).await;
    let (status, body) = post_chat(&outer, &greedy(false)).await;
    assert_eq!(status, 502);
    assert_eq!(error_code(&body), "upstream_error");
}

#[tokio::test]
async fn client_disconnect_aborts_the_upstream_request() {
    let endless = Arc::new(EndlessBackend::default());
    let inner = start(ApiState::new(endless.clone())).await;
    let outer = start_relay(&inner).await;
    let resp = client()
        .post(format!("{outer}/v1/chat/completions"))
        .json(&json!({"model": "endless", "messages": [{"role": "user", "content": "hi"}], "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    for _ in 0..3 {
        body.next().await.unwrap().unwrap();
    }
    assert_eq!(endless.started.load(Ordering::SeqCst), 1);
    assert!(!endless.dropped.load(Ordering::SeqCst));
    drop(body);
    assert!(
        eventually(10, || endless.dropped.load(Ordering::SeqCst)).await,
        "upstream generation kept running after the client left"
    );
}

#[tokio::test]
async fn relays_text_completions() {
    let (inner, inner_backend) = start_builtin().await;
    let outer = start_relay(&inner).await;
    let body = json!({"model": MODEL_ID, "prompt": "", "temperature": 0, "max_tokens": 255});
    let resp = client()
        .post(format!("{outer}/v1/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["text"], FULL_255);
    assert_eq!(v["usage"]["completion_tokens"], 255);
    assert_eq!(inner_backend.finished_generations(), 1);

    // Streamed, with echo applied by the outer server (not asked of the upstream).
    let prompt = "Once upon a time";
    let resp = client()
        .post(format!("{outer}/v1/completions"))
        .json(
            &json!({"model": MODEL_ID, "prompt": prompt, "temperature": 0, "max_tokens": 30,
                      "stream": true, "echo": true}),
        )
        .send()
        .await
        .unwrap();
    let events = read_sse(resp).await;
    assert_eq!(events.last().unwrap(), "[DONE]");
    let text: String = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str::<Value>(e).unwrap())
        .map(|c| c["choices"][0]["text"].as_str().unwrap().to_owned())
        .collect();
    assert!(text.starts_with(prompt), "{text:?}");
    assert!(FULL_255.starts_with(&text), "{text:?}");
}

/// An upstream that records each request body and answers with a fixed, non-streamed
/// completion (the relay converts it).
async fn recording_upstream() -> (String, Arc<std::sync::Mutex<Vec<Value>>>) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
        let record = record.clone();
        async move {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            record.lock().unwrap().push(v);
            axum::Json(json!({
                "choices": [{"message": {"content": "ok"}, "text": "ok", "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1},
            }))
        }
    });
    tokio::spawn(sotto_openai::serve_plain(listener, app));
    (format!("http://{addr}"), seen)
}

#[tokio::test]
async fn sampling_fields_are_forwarded_unchanged() {
    let (upstream, seen) = recording_upstream().await;
    let outer = start_relay(&upstream).await;
    let fields = json!({"stop": ["\n\n", "END"], "top_k": 20, "min_p": 0.25,
                        "repetition_penalty": 1.5, "presence_penalty": -0.5,
                        "frequency_penalty": 1.25});
    let mut chat = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    let mut completion = json!({"model": "m", "prompt": "hi"});
    for (k, v) in fields.as_object().unwrap() {
        chat[k] = v.clone();
        completion[k] = v.clone();
    }
    let (status, body) = post_chat(&outer, &chat).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let resp = client()
        .post(format!("{outer}/v1/completions"))
        .json(&completion)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // A single stop string is forwarded as a list of one; absent fields are not sent.
    let (status, _) = post_chat(
        &outer,
        &json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stop": "X"}),
    )
    .await;
    assert_eq!(status, 200);

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    for forwarded in &seen[..2] {
        for (k, v) in fields.as_object().unwrap() {
            assert_eq!(&forwarded[k], v, "{k}");
        }
    }
    assert_eq!(seen[2]["stop"], json!(["X"]));
    for k in [
        "top_k",
        "min_p",
        "repetition_penalty",
        "presence_penalty",
        "frequency_penalty",
    ] {
        assert!(seen[2].get(k).is_none(), "{k} sent although absent");
    }
}

#[tokio::test]
async fn relayed_stop_strings_match_the_builtin() {
    let (inner, _) = start_builtin().await;
    let outer = start_relay(&inner).await;
    let mut body = greedy(false);
    body["stop"] = json!(["park."]);
    let (_, direct) = post_chat(&inner, &body).await;
    let (status, relayed) = post_chat(&outer, &body).await;
    assert_eq!(status, 200, "{relayed}");
    assert_eq!(relayed["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        relayed["choices"][0]["message"],
        direct["choices"][0]["message"]
    );
    assert_eq!(relayed["usage"], direct["usage"]);
    let cut = FULL_255.find("park.").unwrap();
    assert_eq!(
        relayed["choices"][0]["message"]["content"],
        &FULL_255[..cut]
    );
}
