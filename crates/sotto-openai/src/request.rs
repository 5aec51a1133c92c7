//! Parsing and validation of `POST /v1/chat/completions` request bodies.
//!
//! The body is first parsed into a generic JSON value and then validated field by field with
//! hand-written checks, so that no serde error text (which can quote offending values, i.e.
//! prompt text) ever reaches an error message. Unknown fields are ignored; `null` counts as
//! absent for every optional field, as in OpenAI's API.

use serde_json::{Map, Value};

use crate::ApiError;

/// Author of a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `system` (and OpenAI's newer alias `developer`).
    System,
    /// `user`.
    User,
    /// `assistant`.
    Assistant,
}

impl Role {
    /// The OpenAI wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One chat message with its text content (array-of-parts content already concatenated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// Author.
    pub role: Role,
    /// Text content. Text parts of an array content are concatenated without separator.
    pub content: String,
}

/// A validated chat-completion request, as handed to a [`Backend`](crate::Backend).
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    /// Requested model id (not yet checked against the served models; backends do that).
    pub model: String,
    /// Non-empty list of messages, in order.
    pub messages: Vec<ChatMessage>,
    /// Sampling temperature in `[0, 2]`; `None` means the OpenAI default (1).
    pub temperature: Option<f32>,
    /// Nucleus mass in `(0, 1]`; `None` means the OpenAI default (1, i.e. no nucleus cut).
    pub top_p: Option<f32>,
    /// Maximum completion tokens (`max_completion_tokens`, else `max_tokens`), already clamped
    /// to [`ApiLimits::max_tokens_cap`](crate::ApiLimits); `None` means "as many as fit".
    pub max_tokens: Option<u32>,
    /// Sampling seed; `None` means a fresh random seed per request.
    pub seed: Option<u64>,
    /// Stop strings, penalties, top-k and min-p.
    pub sampling: SamplingOptions,
    /// Whether the client asked for a server-sent-events stream.
    pub stream: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
}

/// Sampling options beyond `temperature`, `top_p` and `seed`, shared by chat and text
/// completions. `Default` is "none given": no stop strings, every option `None` (off).
///
/// `stop`, `presence_penalty` and `frequency_penalty` are OpenAI's; `top_k`, `min_p` and
/// `repetition_penalty` are the extension names vLLM (and llama.cpp's server) accept.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SamplingOptions {
    /// `stop`: at most [`MAX_STOP`] non-empty strings (a single string is a list of one).
    pub stop: Vec<String>,
    /// `top_k`: keep the k most likely tokens; `None` for absent, 0 or -1 (vLLM's "off").
    pub top_k: Option<u32>,
    /// `min_p` in `[0, 1]`.
    pub min_p: Option<f32>,
    /// `repetition_penalty`, a finite number > 0 (1 = off).
    pub repetition_penalty: Option<f32>,
    /// `presence_penalty` in `[-2, 2]`.
    pub presence_penalty: Option<f32>,
    /// `frequency_penalty` in `[-2, 2]`.
    pub frequency_penalty: Option<f32>,
}

/// Most stop strings per request (OpenAI's limit).
pub const MAX_STOP: usize = 4;

/// Parse and validate a request body. `max_tokens_cap` clamps `max_tokens`.
pub(crate) fn parse_chat_request(
    body: &[u8],
    max_tokens_cap: u32,
) -> Result<ChatRequest, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| ApiError::InvalidJson {
        line: e.line(),
        column: e.column(),
    })?;
    let Value::Object(obj) = value else {
        return Err(ApiError::InvalidJson { line: 0, column: 0 });
    };

    let model = match field(&obj, "model") {
        None => return Err(ApiError::MissingParameter { param: "model" }),
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(_) => return Err(invalid("model", "expected a non-empty string.")),
    };

    let messages = match field(&obj, "messages") {
        None => return Err(ApiError::MissingParameter { param: "messages" }),
        Some(Value::Array(items)) if items.is_empty() => {
            return Err(invalid(
                "messages",
                "expected a non-empty array of messages.",
            ));
        }
        Some(Value::Array(items)) => items
            .iter()
            .map(parse_message)
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(invalid("messages", "expected an array of messages.")),
    };

    let max_tokens = match field(&obj, "max_completion_tokens") {
        Some(v) => Some(parse_max_tokens(
            "max_completion_tokens",
            v,
            max_tokens_cap,
        )?),
        None => match field(&obj, "max_tokens") {
            Some(v) => Some(parse_max_tokens("max_tokens", v, max_tokens_cap)?),
            None => None,
        },
    };
    let Common {
        temperature,
        top_p,
        seed,
        sampling,
        stream,
        include_usage,
    } = parse_common(&obj)?;

    Ok(ChatRequest {
        model,
        messages,
        temperature,
        top_p,
        max_tokens,
        seed,
        sampling,
        stream,
        include_usage,
    })
}

/// Sampling and streaming parameters shared by chat and text completions.
struct Common {
    temperature: Option<f32>,
    top_p: Option<f32>,
    seed: Option<u64>,
    sampling: SamplingOptions,
    stream: bool,
    include_usage: bool,
}

/// `temperature`, `top_p`, `seed`, the [`SamplingOptions`], `stream`, `stream_options` and
/// `n` (only 1).
fn parse_common(obj: &Map<String, Value>) -> Result<Common, ApiError> {
    let temperature = match field(obj, "temperature") {
        None => None,
        Some(v) => match v.as_f64() {
            Some(t) if (0.0..=2.0).contains(&t) => Some(t as f32),
            Some(_) => return Err(invalid("temperature", "must be between 0 and 2.")),
            None => return Err(invalid("temperature", "expected a number.")),
        },
    };

    let top_p = match field(obj, "top_p") {
        None => None,
        Some(v) => match v.as_f64() {
            Some(p) if p > 0.0 && p <= 1.0 => Some(p as f32),
            Some(_) => return Err(invalid("top_p", "must be greater than 0 and at most 1.")),
            None => return Err(invalid("top_p", "expected a number.")),
        },
    };

    let seed = match field(obj, "seed") {
        None => None,
        // OpenAI's seed is a signed 64-bit integer; any integer maps bijectively onto u64.
        Some(Value::Number(n)) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Some(u),
            (None, Some(i)) => Some(i as u64),
            _ => return Err(invalid("seed", "expected an integer.")),
        },
        Some(_) => return Err(invalid("seed", "expected an integer.")),
    };

    let stream = match field(obj, "stream") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid("stream", "expected a boolean.")),
    };

    let include_usage = match field(obj, "stream_options") {
        None => false,
        Some(Value::Object(opts)) => match field(opts, "include_usage") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(invalid(
                    "stream_options.include_usage",
                    "expected a boolean.",
                ));
            }
        },
        Some(_) => return Err(invalid("stream_options", "expected an object.")),
    };

    match field(obj, "n") {
        None => {}
        Some(v) if v.as_u64() == Some(1) => {}
        Some(_) => return Err(invalid("n", "only n = 1 is supported.")),
    }

    Ok(Common {
        temperature,
        top_p,
        seed,
        sampling: parse_sampling(obj)?,
        stream,
        include_usage,
    })
}

/// A number `param` in `[lo, hi]`, as f32.
fn parse_range(
    obj: &Map<String, Value>,
    param: &'static str,
    lo: f64,
    hi: f64,
    reason: &'static str,
) -> Result<Option<f32>, ApiError> {
    match field(obj, param) {
        None => Ok(None),
        Some(v) => match v.as_f64() {
            Some(x) if (lo..=hi).contains(&x) => Ok(Some(x as f32)),
            Some(_) => Err(invalid(param, reason)),
            None => Err(invalid(param, "expected a number.")),
        },
    }
}

fn parse_sampling(obj: &Map<String, Value>) -> Result<SamplingOptions, ApiError> {
    let stop = match field(obj, "stop") {
        None => Vec::new(),
        Some(Value::String(s)) if s.is_empty() => {
            return Err(invalid("stop", "stop strings must not be empty."));
        }
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => {
            if items.len() > MAX_STOP {
                return Err(invalid("stop", "at most 4 stop strings are supported."));
            }
            let mut stop = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(s) if !s.is_empty() => stop.push(s.clone()),
                    Value::String(_) => {
                        return Err(invalid("stop", "stop strings must not be empty."));
                    }
                    _ => {
                        return Err(invalid("stop", "expected a string or an array of strings."));
                    }
                }
            }
            stop
        }
        Some(_) => {
            return Err(invalid("stop", "expected a string or an array of strings."));
        }
    };

    let top_k = match field(obj, "top_k") {
        None => None,
        Some(v) => match (v.as_u64(), v.as_i64()) {
            (Some(0), _) | (None, Some(-1)) => None,
            // Anything above the vocabulary size keeps every token anyway.
            (Some(k), _) => Some(u32::try_from(k).unwrap_or(u32::MAX)),
            (None, Some(_)) => {
                return Err(invalid(
                    "top_k",
                    "must be -1, 0 (off) or a positive integer.",
                ));
            }
            (None, None) => return Err(invalid("top_k", "expected an integer.")),
        },
    };

    let min_p = parse_range(obj, "min_p", 0.0, 1.0, "must be between 0 and 1.")?;
    let presence_penalty = parse_range(
        obj,
        "presence_penalty",
        -2.0,
        2.0,
        "must be between -2 and 2.",
    )?;
    let frequency_penalty = parse_range(
        obj,
        "frequency_penalty",
        -2.0,
        2.0,
        "must be between -2 and 2.",
    )?;

    let repetition_penalty = match field(obj, "repetition_penalty") {
        None => None,
        Some(v) => match v.as_f64() {
            // Checked after the conversion: huge values become f32 infinity, tiny ones 0.
            Some(r) if (r as f32).is_finite() && (r as f32) > 0.0 => Some(r as f32),
            Some(_) => {
                return Err(invalid(
                    "repetition_penalty",
                    "must be a number greater than 0.",
                ));
            }
            None => return Err(invalid("repetition_penalty", "expected a number.")),
        },
    };

    Ok(SamplingOptions {
        stop,
        top_k,
        min_p,
        repetition_penalty,
        presence_penalty,
        frequency_penalty,
    })
}

/// A validated text-completion request (`POST /v1/completions`), as handed to
/// [`Backend::complete`](crate::Backend::complete).
#[derive(Debug, Clone, PartialEq)]
pub struct CompletionRequest {
    /// Requested model id (not yet checked against the served models; backends do that).
    pub model: String,
    /// The prompt, continued as is (no chat rendering). May be empty.
    pub prompt: String,
    /// Sampling temperature in `[0, 2]`; `None` means the OpenAI default (1).
    pub temperature: Option<f32>,
    /// Nucleus mass in `(0, 1]`; `None` means the OpenAI default (1).
    pub top_p: Option<f32>,
    /// Maximum completion tokens: `max_tokens`, else OpenAI's default of 16, clamped to
    /// [`ApiLimits::max_tokens_cap`](crate::ApiLimits).
    pub max_tokens: u32,
    /// Sampling seed; `None` means a fresh random seed per request.
    pub seed: Option<u64>,
    /// Stop strings, penalties, top-k and min-p.
    pub sampling: SamplingOptions,
    /// Whether the client asked for a server-sent-events stream.
    pub stream: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
    /// `echo`: the returned text starts with the prompt.
    pub echo: bool,
}

/// OpenAI's default `max_tokens` for `/v1/completions`.
pub(crate) const COMPLETIONS_DEFAULT_MAX_TOKENS: u32 = 16;

/// Parse and validate a `/v1/completions` body. `max_tokens_cap` clamps `max_tokens`.
pub(crate) fn parse_completion_request(
    body: &[u8],
    max_tokens_cap: u32,
) -> Result<CompletionRequest, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| ApiError::InvalidJson {
        line: e.line(),
        column: e.column(),
    })?;
    let Value::Object(obj) = value else {
        return Err(ApiError::InvalidJson { line: 0, column: 0 });
    };
    let model = match field(&obj, "model") {
        None => return Err(ApiError::MissingParameter { param: "model" }),
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(_) => return Err(invalid("model", "expected a non-empty string.")),
    };
    let prompt = match field(&obj, "prompt") {
        None => return Err(ApiError::MissingParameter { param: "prompt" }),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => match items.as_slice() {
            [Value::String(s)] => s.clone(),
            [] => return Err(invalid("prompt", "expected a string.")),
            items if items.iter().all(Value::is_string) => {
                return Err(invalid(
                    "prompt",
                    "only one prompt per request is supported.",
                ));
            }
            _ => {
                return Err(invalid(
                    "prompt",
                    "token prompts are not supported; send text.",
                ));
            }
        },
        Some(_) => return Err(invalid("prompt", "expected a string.")),
    };
    let max_tokens = match field(&obj, "max_tokens") {
        Some(v) => parse_max_tokens("max_tokens", v, max_tokens_cap)?,
        None => COMPLETIONS_DEFAULT_MAX_TOKENS.min(max_tokens_cap.max(1)),
    };
    let Common {
        temperature,
        top_p,
        seed,
        sampling,
        stream,
        include_usage,
    } = parse_common(&obj)?;
    let echo = match field(&obj, "echo") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid("echo", "expected a boolean.")),
    };
    match field(&obj, "best_of") {
        None => {}
        Some(v) if v.as_u64() == Some(1) => {}
        Some(_) => return Err(invalid("best_of", "only best_of = 1 is supported.")),
    }
    if field(&obj, "logprobs").is_some() {
        return Err(invalid("logprobs", "log probabilities are not supported."));
    }
    match field(&obj, "suffix") {
        None => {}
        Some(Value::String(s)) if s.is_empty() => {}
        Some(_) => return Err(invalid("suffix", "suffixes are not supported.")),
    }
    Ok(CompletionRequest {
        model,
        prompt,
        temperature,
        top_p,
        max_tokens,
        seed,
        sampling,
        stream,
        include_usage,
        echo,
    })
}

/// A field, treating JSON `null` as absent.
fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).filter(|v| !v.is_null())
}

fn invalid(param: &'static str, reason: &'static str) -> ApiError {
    ApiError::InvalidValue { param, reason }
}

fn parse_max_tokens(param: &'static str, v: &Value, cap: u32) -> Result<u32, ApiError> {
    match v.as_u64() {
        Some(0) => Err(invalid(param, "must be at least 1.")),
        Some(n) => Ok(n.min(u64::from(cap.max(1))) as u32),
        None => Err(invalid(param, "expected a positive integer.")),
    }
}

fn parse_message(v: &Value) -> Result<ChatMessage, ApiError> {
    let Value::Object(msg) = v else {
        return Err(invalid("messages", "each message must be an object."));
    };
    let role = match field(msg, "role").and_then(Value::as_str) {
        Some("system" | "developer") => Role::System,
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        _ => {
            return Err(invalid(
                "messages",
                "each message needs a role of 'system', 'developer', 'user' or 'assistant'.",
            ));
        }
    };
    let content = match field(msg, "content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for part in parts {
                let Value::Object(part) = part else {
                    return Err(invalid("messages", "each content part must be an object."));
                };
                match (
                    field(part, "type").and_then(Value::as_str),
                    field(part, "text"),
                ) {
                    (Some("text"), Some(Value::String(t))) => text.push_str(t),
                    (Some("text"), _) => {
                        return Err(invalid(
                            "messages",
                            "a text content part needs a string 'text'.",
                        ));
                    }
                    _ => {
                        return Err(invalid(
                            "messages",
                            "only content parts of type 'text' are supported.",
                        ));
                    }
                }
            }
            text
        }
        // An assistant turn may have null content in OpenAI's API (tool calls); treat as empty.
        None if role == Role::Assistant => String::new(),
        None => return Err(invalid("messages", "each message needs a 'content'.")),
        Some(_) => {
            return Err(invalid(
                "messages",
                "content must be a string or an array of text parts.",
            ));
        }
    };
    Ok(ChatMessage { role, content })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ChatRequest, ApiError> {
        parse_chat_request(s.as_bytes(), 1000)
    }

    #[test]
    fn full_request() {
        let r = parse(
            r#"{"model":"m","messages":[{"role":"system","content":"S"},
            {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},
            {"role":"assistant","content":null}],
            "temperature":0,"top_p":0.5,"max_tokens":5000,"seed":-1,"stream":true,
            "stream_options":{"include_usage":true},"unknown":{"x":1},"n":1}"#,
        )
        .unwrap();
        assert_eq!(r.model, "m");
        assert_eq!(r.messages.len(), 3);
        assert_eq!(r.messages[1].content, "ab");
        assert_eq!(r.messages[2].content, "");
        assert_eq!(r.temperature, Some(0.0));
        assert_eq!(r.top_p, Some(0.5));
        assert_eq!(r.max_tokens, Some(1000), "clamped to the cap");
        assert_eq!(r.seed, Some(u64::MAX));
        assert!(r.stream && r.include_usage);
    }

    #[test]
    fn max_completion_tokens_wins_and_nulls_are_absent() {
        let r = parse(
            r#"{"model":"m","messages":[{"role":"user","content":""}],
            "max_tokens":3,"max_completion_tokens":7,"temperature":null,"stream":null}"#,
        )
        .unwrap();
        assert_eq!(r.max_tokens, Some(7));
        assert_eq!(r.temperature, None);
        assert!(!r.stream);
    }

    #[test]
    fn rejections_never_echo_content() {
        let secret = "TOP-SECRET-PROMPT";
        let cases = [
            (
                format!(r#"{{"model":"m","messages":"{secret}"}}"#),
                "messages",
            ),
            (
                format!(r#"{{"model":"m","messages":[{{"role":"{secret}","content":"x"}}]}}"#),
                "messages",
            ),
            (
                format!(
                    r#"{{"model":"m","messages":[{{"role":"user","content":5}}],"x":"{secret}"}}"#
                ),
                "messages",
            ),
            (
                format!(
                    r#"{{"model":"m","messages":[{{"role":"user","content":"{secret}"}}],"temperature":"{secret}"}}"#
                ),
                "temperature",
            ),
            (
                format!(
                    r#"{{"model":"m","messages":[{{"role":"user","content":"{secret}"}}],"temperature":5}}"#
                ),
                "temperature",
            ),
            (
                format!(
                    r#"{{"model":"m","messages":[{{"role":"user","content":"{secret}"}}],"top_p":0}}"#
                ),
                "top_p",
            ),
            (
                format!(
                    r#"{{"model":"m","messages":[{{"role":"user","content":"{secret}"}}],"max_tokens":0}}"#
                ),
                "max_tokens",
            ),
            (
                format!(
                    r#"{{"model":"m","messages":[{{"role":"user","content":"{secret}"}}],"n":2}}"#
                ),
                "n",
            ),
            (
                format!(
                    r#"{{"model":"m","messages":[{{"role":"user","content":[{{"type":"image_url","image_url":"{secret}"}}]}}]}}"#
                ),
                "messages",
            ),
            (r#"{"model":"m","messages":[]}"#.to_string(), "messages"),
        ];
        for (body, param) in cases {
            let e = parse(&body).unwrap_err();
            assert_eq!(e.param(), Some(param), "{body}");
            assert_eq!(e.status(), http::StatusCode::BAD_REQUEST);
            assert!(!e.to_json().to_string().contains(secret));
        }
        let e = parse(&format!(
            r#"{{"model":"m","messages":[{{"content":"{secret}" "#
        ))
        .unwrap_err();
        assert_eq!(e.code(), "invalid_json");
        assert!(!e.to_string().contains(secret));
        assert_eq!(parse("[1]").unwrap_err().code(), "invalid_json");
        assert_eq!(
            parse(r#"{"messages":[{"role":"user","content":""}]}"#)
                .unwrap_err()
                .code(),
            "missing_required_parameter"
        );
    }

    #[test]
    fn sampling_options() {
        let r = parse(
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stop":"END",
            "top_k":40,"min_p":0.1,"repetition_penalty":1.1,"presence_penalty":-2,
            "frequency_penalty":2}"#,
        )
        .unwrap();
        assert_eq!(
            r.sampling,
            SamplingOptions {
                stop: vec!["END".into()],
                top_k: Some(40),
                min_p: Some(0.1),
                repetition_penalty: Some(1.1),
                presence_penalty: Some(-2.0),
                frequency_penalty: Some(2.0),
            }
        );
        // Absent, null, vLLM's top_k -1 / 0 and an empty stop list: all "off".
        for extra in [
            "",
            r#","stop":null,"top_k":null,"min_p":null"#,
            r#","top_k":-1,"stop":[]"#,
            r#","top_k":0"#,
        ] {
            let r = parse(&format!(
                r#"{{"model":"m","messages":[{{"role":"user","content":"x"}}]{extra}}}"#
            ))
            .unwrap();
            assert_eq!(r.sampling, SamplingOptions::default(), "{extra}");
        }
        let r = parse(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"top_k":1e0}"#);
        assert_eq!(
            r.unwrap_err().param(),
            Some("top_k"),
            "floats are not integers"
        );
        let r = parse_completion_request(
            br#"{"model":"m","prompt":"p","stop":["a","b"],"top_k":99999999999}"#,
            10,
        )
        .unwrap();
        assert_eq!(r.sampling.stop, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(
            r.sampling.top_k,
            Some(u32::MAX),
            "clamped: keeps every token"
        );
    }

    #[test]
    fn sampling_rejections_never_echo_stop_strings() {
        let secret = "TOP-SECRET-STOP";
        for stop in [
            format!(r#"["{secret}","b","c","d","e"]"#),
            format!(r#"["{secret}",""]"#),
            format!(r#"["{secret}",{{"x":"{secret}"}}]"#),
            format!(r#"{{"s":"{secret}"}}"#),
        ] {
            let body = format!(
                r#"{{"model":"m","messages":[{{"role":"user","content":"{secret}"}}],"stop":{stop}}}"#
            );
            let e = parse(&body).unwrap_err();
            assert_eq!(e.param(), Some("stop"), "{body}");
            assert!(!e.to_json().to_string().contains(secret));
        }
    }

    #[test]
    fn completion_requests() {
        let r = parse_completion_request(
            br#"{"model":"m","prompt":"Once","temperature":0,"stream":true,
            "stream_options":{"include_usage":true},"echo":true,"best_of":1,"suffix":null,
            "logprobs":null,"stop":["x"]}"#,
            1000,
        )
        .unwrap();
        assert_eq!(r.prompt, "Once");
        assert_eq!(
            r.max_tokens, COMPLETIONS_DEFAULT_MAX_TOKENS,
            "OpenAI's default"
        );
        assert!(r.stream && r.include_usage && r.echo);
        assert_eq!(r.temperature, Some(0.0));
        let r = parse_completion_request(br#"{"model":"m","prompt":[""],"max_tokens":5000}"#, 1000)
            .unwrap();
        assert_eq!(r.prompt, "");
        assert_eq!(r.max_tokens, 1000, "clamped to the cap");
        let secret = "TOP-SECRET-PROMPT";
        for (body, param) in [
            (r#"{"model":"m"}"#.to_string(), "prompt"),
            (
                format!(r#"{{"model":"m","prompt":["{secret}","b"]}}"#),
                "prompt",
            ),
            (r#"{"model":"m","prompt":[1,2,3]}"#.to_string(), "prompt"),
            (r#"{"model":"m","prompt":5}"#.to_string(), "prompt"),
            (
                format!(r#"{{"model":"m","prompt":"{secret}","logprobs":2}}"#),
                "logprobs",
            ),
            (
                format!(r#"{{"model":"m","prompt":"{secret}","suffix":"{secret}"}}"#),
                "suffix",
            ),
            (
                format!(r#"{{"model":"m","prompt":"{secret}","best_of":3}}"#),
                "best_of",
            ),
            (
                format!(r#"{{"model":"m","prompt":"{secret}","echo":"{secret}"}}"#),
                "echo",
            ),
            (
                format!(r#"{{"model":"m","prompt":"{secret}","max_tokens":0}}"#),
                "max_tokens",
            ),
            (format!(r#"{{"model":"m","prompt":"{secret}","n":2}}"#), "n"),
            (format!(r#"{{"prompt":"{secret}"}}"#), "model"),
        ] {
            let e = parse_completion_request(body.as_bytes(), 1000).unwrap_err();
            assert_eq!(e.param(), Some(param), "{body}");
            assert_eq!(e.status(), http::StatusCode::BAD_REQUEST);
            assert!(!e.to_json().to_string().contains(secret));
        }
    }
}
