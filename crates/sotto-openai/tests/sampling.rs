//! Sampling options over the HTTP API with the built-in engine (stories260K): stop strings,
//! top-k, min-p, penalties, seeds, usage, and the 400s for invalid values.

mod common;

use common::*;
use serde_json::{Value, json};

/// The greedy story (empty prompt) up to the first `stop`, and how many tokens the engine
/// generates up to and including the one that completes `stop`.
fn greedy_until(stop: &str) -> (String, u64) {
    let cut = FULL_255.find(stop).expect("stop occurs in the story");
    let mut acc = String::new();
    let mut n = 0u64;
    let params = sotto_engine::GenerateParams {
        max_tokens: 255,
        temperature: 0.0,
        ..Default::default()
    };
    model()
        .generate("", &params, &mut |piece| {
            acc.push_str(piece);
            n += 1;
            if acc.len() >= cut + stop.len() {
                std::ops::ControlFlow::Break(())
            } else {
                std::ops::ControlFlow::Continue(())
            }
        })
        .expect("generate");
    (FULL_255[..cut].to_owned(), n)
}

fn chat(extra: Value) -> Value {
    let mut body = json!({
        "model": MODEL_ID,
        "messages": [{"role": "user", "content": ""}],
        "max_tokens": 255,
    });
    for (k, v) in extra.as_object().expect("object") {
        body[k] = v.clone();
    }
    body
}

async fn post(base: &str, path: &str, body: &Value) -> (u16, Value) {
    let resp = client()
        .post(format!("{base}/v1/{path}"))
        .json(body)
        .send()
        .await
        .expect("send");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json"))
}

/// Streams a request; returns the concatenated text, the finish reason and the usage chunk.
async fn stream(base: &str, path: &str, body: &Value) -> (String, Value, Value) {
    let mut body = body.clone();
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let resp = client()
        .post(format!("{base}/v1/{path}"))
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let events = read_sse(resp).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).expect("chunk"))
        .collect();
    let (usage, rest) = chunks.split_last().expect("usage chunk");
    let mut text = String::new();
    let mut finish = Value::Null;
    for c in rest {
        let choice = &c["choices"][0];
        let piece = choice["delta"]["content"]
            .as_str()
            .or(choice["text"].as_str())
            .unwrap_or("");
        text.push_str(piece);
        if !choice["finish_reason"].is_null() {
            finish = choice["finish_reason"].clone();
        }
    }
    (text, finish, usage["usage"].clone())
}

#[tokio::test]
async fn stop_strings_truncate_chat_and_completions_exactly() {
    let (base, _) = start_builtin().await;
    for stop in ["Lily", "park.", "\n"] {
        let (expected, tokens) = greedy_until(stop);
        // Chat, non-streaming, stop as a list (with one that never appears).
        let body = chat(json!({"temperature": 0, "stop": ["zzz", stop]}));
        let (status, v) = post(&base, "chat/completions", &body).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["choices"][0]["message"]["content"], expected.as_str());
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(
            v["usage"],
            json!({"prompt_tokens": 1, "completion_tokens": tokens, "total_tokens": tokens + 1})
        );
        // Chat, streaming.
        let (text, finish, usage) = stream(&base, "chat/completions", &body).await;
        assert_eq!(text, expected);
        assert_eq!(finish, "stop");
        assert_eq!(usage["completion_tokens"], tokens);
        // Text completions, stop as a single string, both modes.
        let body = json!({"model": MODEL_ID, "prompt": "", "temperature": 0,
                          "max_tokens": 255, "stop": stop});
        let (status, v) = post(&base, "completions", &body).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["choices"][0]["text"], expected.as_str());
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(v["usage"]["completion_tokens"], tokens);
        let (text, finish, usage) = stream(&base, "completions", &body).await;
        assert_eq!(text, expected);
        assert_eq!(finish, "stop");
        assert_eq!(usage["prompt_tokens"], 1);
        assert_eq!(usage["total_tokens"], tokens + 1);
    }
    // A stop string that never appears: the usual length finish.
    let (_, v) = post(
        &base,
        "chat/completions",
        &chat(json!({"temperature": 0, "stop": "zebra"})),
    )
    .await;
    assert_eq!(v["choices"][0]["message"]["content"], FULL_255);
    assert_eq!(v["choices"][0]["finish_reason"], "length");
}

#[tokio::test]
async fn echo_is_not_subject_to_stop_strings() {
    // The prompt contains the stop string; only generated text is matched.
    let (base, _) = start_builtin().await;
    let prompt = "Once upon a time, there was a little girl named Lily. She loved to play.";
    let body = json!({"model": MODEL_ID, "prompt": prompt, "temperature": 0, "max_tokens": 60,
                      "echo": true, "stop": ["Lily"]});
    let (status, v) = post(&base, "completions", &body).await;
    assert_eq!(status, 200, "{v}");
    let text = v["choices"][0]["text"].as_str().expect("text");
    // "stop": the continuation did reach "Lily" (and was cut there).
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(text.starts_with(prompt));
    assert_eq!(
        &text[prompt.len()..],
        " One day, she went to the park with her mommy. They saw a big, red ball and a small ball. "
    );
}

#[tokio::test]
async fn top_k_one_is_greedy() {
    let (base, _) = start_builtin().await;
    let (_, greedy) = post(&base, "chat/completions", &chat(json!({"temperature": 0}))).await;
    let (_, k1) = post(
        &base,
        "chat/completions",
        &chat(json!({"temperature": 1.5, "top_k": 1, "seed": 9})),
    )
    .await;
    assert_eq!(
        k1["choices"][0]["message"]["content"],
        greedy["choices"][0]["message"]["content"]
    );
    assert_eq!(greedy["choices"][0]["message"]["content"], FULL_255);
}

#[tokio::test]
async fn seeds_make_sampling_with_all_options_reproducible() {
    let (base, _) = start_builtin().await;
    let options = |seed: u64| {
        chat(
            json!({"temperature": 1.2, "top_p": 0.95, "top_k": 40, "min_p": 0.05,
                    "repetition_penalty": 1.2, "presence_penalty": 0.3,
                    "frequency_penalty": 0.3, "seed": seed, "max_tokens": 60}),
        )
    };
    let (sa, a) = post(&base, "chat/completions", &options(7)).await;
    let (_, b) = post(&base, "chat/completions", &options(7)).await;
    let (_, c) = post(&base, "chat/completions", &options(8)).await;
    assert_eq!(sa, 200, "{a}");
    let text = |v: &Value| v["choices"][0]["message"]["content"].clone();
    assert_eq!(text(&a), text(&b));
    assert_ne!(text(&a), text(&c));
    assert!(a["usage"]["completion_tokens"].as_u64().expect("usage") <= 60);
    // Penalties change even greedy output.
    let (_, plain) = post(&base, "chat/completions", &chat(json!({"temperature": 0}))).await;
    let (_, penalised) = post(
        &base,
        "chat/completions",
        &chat(json!({"temperature": 0, "repetition_penalty": 1.5})),
    )
    .await;
    assert_ne!(text(&plain), text(&penalised));
    // Off values (vLLM's -1 for top_k, 0 penalties, repetition 1, min_p 0) change nothing.
    let (_, off) = post(
        &base,
        "chat/completions",
        &chat(
            json!({"temperature": 0, "top_k": -1, "min_p": 0, "repetition_penalty": 1,
                     "presence_penalty": 0, "frequency_penalty": 0, "stop": []}),
        ),
    )
    .await;
    assert_eq!(text(&off), text(&plain));
}

#[tokio::test]
async fn invalid_sampling_values_are_400_naming_the_param() {
    let (base, _) = start_builtin().await;
    let cases = [
        (json!({"stop": ""}), "stop"),
        (json!({"stop": ["a", ""]}), "stop"),
        (json!({"stop": ["a", "b", "c", "d", "e"]}), "stop"),
        (json!({"stop": 5}), "stop"),
        (json!({"stop": ["a", 5]}), "stop"),
        (json!({"top_k": -2}), "top_k"),
        (json!({"top_k": 1.5}), "top_k"),
        (json!({"top_k": "5"}), "top_k"),
        (json!({"min_p": 1.5}), "min_p"),
        (json!({"min_p": -0.1}), "min_p"),
        (json!({"min_p": "x"}), "min_p"),
        (json!({"repetition_penalty": 0}), "repetition_penalty"),
        (json!({"repetition_penalty": -1}), "repetition_penalty"),
        (json!({"repetition_penalty": 1e300}), "repetition_penalty"),
        (json!({"repetition_penalty": 1e-300}), "repetition_penalty"),
        (json!({"repetition_penalty": true}), "repetition_penalty"),
        (json!({"presence_penalty": 2.5}), "presence_penalty"),
        (json!({"presence_penalty": []}), "presence_penalty"),
        (json!({"frequency_penalty": -3}), "frequency_penalty"),
        (json!({"frequency_penalty": {}}), "frequency_penalty"),
    ];
    for (extra, param) in cases {
        for path in ["chat/completions", "completions"] {
            let mut body = if path == "completions" {
                json!({"model": MODEL_ID, "prompt": "x"})
            } else {
                chat(json!({}))
            };
            for (k, v) in extra.as_object().expect("object") {
                body[k] = v.clone();
            }
            let (status, v) = post(&base, path, &body).await;
            assert_eq!(status, 400, "{path} {extra}: {v}");
            assert_eq!(error_code(&v), "invalid_value");
            assert_eq!(v["error"]["param"], param, "{path} {extra}");
        }
    }
    // Boundary values are accepted.
    let (status, v) = post(
        &base,
        "chat/completions",
        &chat(
            json!({"stop": ["a", "b", "c", "d"], "top_k": 5_000_000_000u64, "min_p": 1,
                     "presence_penalty": -2, "frequency_penalty": 2,
                     "repetition_penalty": 0.01, "max_tokens": 5}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{v}");
}
