//! Chat templates: real model templates rendered to exact expected prompts, and error paths.
//!
//! Template sources (verbatim copies under tests/templates/):
//! - `Qwen-Qwen2.5-Instruct.jinja` and `meta-llama-Llama-3.1-8B-Instruct.jinja`: the
//!   `chat_template` of Qwen/Qwen2.5-*-Instruct and meta-llama/Llama-3.1-8B-Instruct
//!   `tokenizer_config.json` on Hugging Face, as copied into github.com/johnmai-dev/Jinja
//!   `Tests/Templates/ChatTemplates.swift` (commit ad6b51d7, `qwen2_5` and `llama3_1`).
//! - `meta-llama-Llama-3.2-3B-Instruct.jinja`: github.com/ggerganov/llama.cpp
//!   `models/templates/meta-llama-Llama-3.2-3B-Instruct.jinja` (commit 7b5e0803; identical
//!   to `llama3_2` in the Swift file above, 3827 bytes); the Llama 3.1 template extended with
//!   `strftime_now`.
//! - `HuggingFaceTB-SmolLM2-Instruct.jinja` (ChatML with a default system prompt) and
//!   `TinyLlama-1.1B-Chat-v1.0.jinja` (the Zephyr template, which relies on `trim_blocks`): the
//!   `chat_template` of those Hugging Face repositories, as quoted verbatim in public code; the
//!   SmolLM2 expectation below is the rendered prompt shown in the Hugging Face agents course.

use sotto_engine::{CHATML_TEMPLATE, ChatMessage, EngineError, render_chat, render_chat_at};

const QWEN25: &str = include_str!("templates/Qwen-Qwen2.5-Instruct.jinja");
const LLAMA31: &str = include_str!("templates/meta-llama-Llama-3.1-8B-Instruct.jinja");
const LLAMA32: &str = include_str!("templates/meta-llama-Llama-3.2-3B-Instruct.jinja");
const SMOLLM2: &str = include_str!("templates/HuggingFaceTB-SmolLM2-Instruct.jinja");
const ZEPHYR: &str = include_str!("templates/TinyLlama-1.1B-Chat-v1.0.jinja");

/// 2025-03-14 15:09:26 UTC.
const PI_DAY: i64 = 1_741_964_966;

fn msg(role: &str, content: &str) -> ChatMessage {
    ChatMessage {
        role: role.into(),
        content: content.into(),
    }
}

fn conversation() -> Vec<ChatMessage> {
    vec![
        msg("system", "You are a terse assistant."),
        msg("user", "Hello!"),
        msg("assistant", "Hi. What do you need?"),
        msg("user", "  The capital of France?\n"),
    ]
}

#[test]
fn qwen25_multi_turn() {
    let out = render_chat(QWEN25, &conversation(), true, "", "<|im_end|>").expect("render");
    assert_eq!(
        out,
        "<|im_start|>system\nYou are a terse assistant.<|im_end|>\n\
         <|im_start|>user\nHello!<|im_end|>\n\
         <|im_start|>assistant\nHi. What do you need?<|im_end|>\n\
         <|im_start|>user\n  The capital of France?\n<|im_end|>\n\
         <|im_start|>assistant\n"
    );
}

#[test]
fn qwen25_default_system_prompt_and_no_generation_prompt() {
    let out = render_chat(QWEN25, &[msg("user", "Hi")], false, "", "").expect("render");
    assert_eq!(
        out,
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n\
         <|im_start|>user\nHi<|im_end|>\n"
    );
}

#[test]
fn llama31_multi_turn() {
    // Llama 3.1's template trims contents and, without `date_string`, prints its fixed date.
    let out = render_chat(
        LLAMA31,
        &conversation(),
        true,
        "<|begin_of_text|>",
        "<|eot_id|>",
    )
    .expect("render");
    assert_eq!(
        out,
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n\
         Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n\
         You are a terse assistant.<|eot_id|>\
         <|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\nHi. What do you need?<|eot_id|>\
         <|start_header_id|>user<|end_header_id|>\n\nThe capital of France?<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\n"
    );
    // Deterministic: the wall clock does not enter the Llama 3.1 prompt.
    let later = render_chat_at(
        LLAMA31,
        &conversation(),
        true,
        "<|begin_of_text|>",
        "<|eot_id|>",
        PI_DAY,
    )
    .expect("render");
    assert_eq!(out, later);
}

#[test]
fn llama32_uses_injected_strftime_now() {
    let out = render_chat_at(
        LLAMA32,
        &[msg("user", "Hi")],
        true,
        "<|begin_of_text|>",
        "<|eot_id|>",
        PI_DAY,
    )
    .expect("render");
    assert_eq!(
        out,
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n\
         Cutting Knowledge Date: December 2023\nToday Date: 14 Mar 2025\n\n<|eot_id|>\
         <|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\n"
    );
}

#[test]
fn smollm2_default_system_prompt() {
    let msgs = [
        msg("user", "I need help with my order"),
        msg(
            "assistant",
            "I'd be happy to help. Could you provide your order number?",
        ),
        msg("user", "It's ORDER-123"),
    ];
    let out = render_chat(SMOLLM2, &msgs, true, "<|im_start|>", "<|im_end|>").expect("render");
    assert_eq!(
        out,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\nI need help with my order<|im_end|>\n\
         <|im_start|>assistant\nI'd be happy to help. Could you provide your order number?<|im_end|>\n\
         <|im_start|>user\nIt's ORDER-123<|im_end|>\n\
         <|im_start|>assistant\n"
    );
}

#[test]
fn zephyr_trims_block_newlines() {
    let out = render_chat(ZEPHYR, &conversation(), true, "<s>", "</s>").expect("render");
    assert_eq!(
        out,
        "<|system|>\nYou are a terse assistant.</s>\n\
         <|user|>\nHello!</s>\n\
         <|assistant|>\nHi. What do you need?</s>\n\
         <|user|>\n  The capital of France?\n</s>\n\
         <|assistant|>\n"
    );
}

#[test]
fn chatml_fallback() {
    let out = render_chat(CHATML_TEMPLATE, &conversation()[..2], true, "", "").expect("render");
    assert_eq!(
        out,
        "<|im_start|>system\nYou are a terse assistant.<|im_end|>\n\
         <|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn python_string_methods_work() {
    let t = "{% for m in messages %}{{ m.content.strip() }}|{{ m.content.startswith(' a') }}|\
             {{ m['content'].upper() }}{% endfor %}";
    let out = render_chat(t, &[msg("user", " ab ")], false, "", "").expect("render");
    // Booleans print the Python way, as in Jinja2.
    assert_eq!(out, "ab|True| AB ");
}

const SECRET: &str = "my private diary entry";

fn render_err(template: &str) -> EngineError {
    let e = render_chat(template, &[msg("user", SECRET)], true, "<s>", "</s>")
        .expect_err("render must fail");
    assert!(
        !e.to_string().contains(SECRET) && !format!("{e:?}").contains(SECRET),
        "message contents leaked into {e:?}"
    );
    e
}

#[test]
fn raise_exception_is_an_error_code_without_contents() {
    let e = render_err("{{ raise_exception('Conversation roles must alternate') }}");
    assert_eq!(e.code(), "CHAT_TEMPLATE_EXCEPTION");
    // Templates may build the message from contents; it is dropped.
    let e = render_err("\n{{ raise_exception('bad message: ' + messages[0].content) }}");
    assert!(
        matches!(e, EngineError::ChatTemplateException { line: 2 }),
        "{e:?}"
    );
}

#[test]
fn syntax_errors_are_invalid_templates() {
    let e = render_err("{% if %}");
    assert_eq!(e.code(), "CHAT_TEMPLATE_INVALID");
    let e = render_err("{% for m in messages %}");
    assert_eq!(e.code(), "CHAT_TEMPLATE_INVALID");
}

#[test]
fn runtime_errors_are_render_errors() {
    let e = render_err("{{ messages[0].content.no_such_method() }}");
    assert_eq!(e.code(), "CHAT_TEMPLATE_RENDER");
    let e = render_err("{{ messages[0].content + 1 }}");
    assert_eq!(e.code(), "CHAT_TEMPLATE_RENDER");
    let e = render_err("{{ strftime_now('%Q') }}");
    assert_eq!(e.code(), "CHAT_TEMPLATE_RENDER");
}

#[test]
fn output_and_fuel_are_bounded() {
    let e = render_err("{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}");
    assert!(
        matches!(e, EngineError::ChatTemplateLimit("output size")),
        "{e:?}"
    );
    let e = render_err(
        "{% for i in range(100000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}",
    );
    assert!(matches!(e, EngineError::ChatTemplateLimit("fuel")), "{e:?}");
    assert_eq!(e.code(), "CHAT_TEMPLATE_LIMIT");
}
