//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use sotto_openai::{
    ApiError, ApiLimits, ApiState, Backend, BoxFuture, BuiltinBackend, ChatEvent, ChatRequest,
    ChatStream, ModelInfo, router, serve_plain,
};

pub const MODEL_ID: &str = "stories260K";

pub fn model_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/models/stories260K"
    ))
}

/// The model, loaded once per test binary.
pub fn model() -> Arc<sotto_engine::Model> {
    static MODEL: OnceLock<Arc<sotto_engine::Model>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let dir = model_dir();
            let model =
                sotto_engine::Model::load(&dir.join("stories260K.bin"), &dir.join("tok512.bin"))
                    .expect("load stories260K");
            Arc::new(model)
        })
        .clone()
}

/// The greedy reference text from the model folder's README (the indented block after
/// "prints:"), lines joined with "\n".
pub fn reference_text() -> String {
    let readme = std::fs::read_to_string(model_dir().join("README.md")).expect("README");
    let after = readme.split_once("prints:").expect("reference marker").1;
    let lines: Vec<&str> = after
        .lines()
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| l.starts_with("    "))
        .map(|l| &l[4..])
        .collect();
    assert_eq!(lines.len(), 2, "reference block has two lines");
    lines.join("\n")
}

/// Full greedy output for the empty prompt and `max_tokens = 255` (llama2.c's `-n 256` minus
/// the BOS position). The model README quotes only its first two lines ([`reference_text`]);
/// the rest is what llama2.c's own README shows, and what `sotto-engine`'s tests pin.
pub const FULL_255: &str = concat!(
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.\n",
    "Lily's mom said, \"Lily, let's go to the park.\" Lily was sad and didn't know what to do. She said, \"I want to play with your ball, but I can't find it.\"\n",
    "Lily was sad and didn't know what to do. She said, \"I'm sorry, Lily. I didn't know what to do.\"\n",
    "Lily didn't want to help her mom, so she said, \"I'm sorry, mom. I didn't know what to do.\" Her mom said, \"Don't worry, Lily. We can help you",
);

/// Number of greedy tokens that make up exactly the README excerpt (asked of the engine
/// directly, so the API test below is independent of how the HTTP layer chunks text).
pub fn reference_token_count() -> u32 {
    let reference = reference_text();
    let mut acc = String::new();
    let mut n = 0u32;
    let params = sotto_engine::GenerateParams {
        max_tokens: 255,
        temperature: 0.0,
        top_p: 1.0,
        seed: 0,
        ..Default::default()
    };
    model()
        .generate("", &params, &mut |piece| {
            acc.push_str(piece);
            n += 1;
            if acc.len() >= reference.len() {
                std::ops::ControlFlow::Break(())
            } else {
                std::ops::ControlFlow::Continue(())
            }
        })
        .expect("generate");
    assert_eq!(acc, reference);
    n
}

/// Serve `state` on 127.0.0.1:0; returns the base URL `http://127.0.0.1:PORT`.
pub async fn start(state: ApiState) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(serve_plain(listener, router(state)));
    format!("http://{addr}")
}

pub fn builtin(max_concurrent: usize) -> Arc<BuiltinBackend> {
    Arc::new(BuiltinBackend::new(model(), MODEL_ID).with_max_concurrent(max_concurrent))
}

pub async fn start_builtin() -> (String, Arc<BuiltinBackend>) {
    let backend = builtin(2);
    let url = start(ApiState::new(backend.clone())).await;
    (url, backend)
}

pub async fn start_with_limits(backend: Arc<dyn Backend>, limits: ApiLimits) -> String {
    start(ApiState::new(backend).with_limits(limits)).await
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

/// POST a JSON body to /v1/chat/completions; returns status and parsed JSON body.
pub async fn post_chat(base: &str, body: &Value) -> (reqwest::StatusCode, Value) {
    let resp = client()
        .post(format!("{base}/v1/chat/completions"))
        .json(body)
        .send()
        .await
        .expect("send");
    let status = resp.status();
    let json = resp.json::<Value>().await.expect("json body");
    (status, json)
}

/// Read a whole SSE response into its `data:` payloads, in order.
pub async fn read_sse(resp: reqwest::Response) -> Vec<String> {
    let mut buf = String::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        buf.push_str(std::str::from_utf8(&chunk.expect("chunk")).expect("utf8"));
    }
    assert!(buf.ends_with("\n\n"), "SSE ends with a blank line");
    buf.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            e.strip_prefix("data: ")
                .unwrap_or_else(|| panic!("unexpected SSE event {e:?}"))
                .to_owned()
        })
        .collect()
}

/// Assert an OpenAI error body and return its code.
pub fn error_code(body: &Value) -> String {
    let err = &body["error"];
    assert!(err["message"].is_string(), "error.message in {body}");
    assert!(err["type"].is_string(), "error.type in {body}");
    assert!(err.get("param").is_some(), "error.param in {body}");
    err["code"].as_str().expect("error.code").to_owned()
}

/// Sets a flag when dropped.
pub struct DropFlag(pub Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A test backend that streams "x " every 5 ms forever and records when its stream is
/// dropped — an observable for cancellation at the HTTP layer.
#[derive(Default)]
pub struct EndlessBackend {
    pub started: AtomicUsize,
    pub dropped: Arc<AtomicBool>,
}

impl Backend for EndlessBackend {
    fn list_models(&self) -> BoxFuture<'_, Result<Vec<ModelInfo>, ApiError>> {
        Box::pin(async {
            Ok(vec![ModelInfo {
                id: "endless".into(),
                created: 0,
            }])
        })
    }

    fn chat(&self, request: ChatRequest) -> BoxFuture<'_, Result<ChatStream, ApiError>> {
        Box::pin(async move {
            if request.model != "endless" {
                return Err(ApiError::ModelNotFound);
            }
            self.started.fetch_add(1, Ordering::SeqCst);
            let flag = DropFlag(self.dropped.clone());
            let stream = futures_util::stream::unfold(flag, |flag| async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                Some((Ok(ChatEvent::Delta("x ".into())), flag))
            });
            let stream: ChatStream = Box::pin(stream);
            Ok(stream)
        })
    }
}

/// Poll `cond` every 10 ms for up to `secs` seconds.
pub async fn eventually(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}
