//! Sampling determinism, cancellation and stop conditions on the real model.

mod common;

use std::ops::ControlFlow;

use common::*;
use sotto_engine::{FinishReason, GenerateParams};

fn sampled(seed: u64, top_p: f32) -> GenerateParams {
    GenerateParams {
        max_tokens: 80,
        temperature: 1.0,
        top_p,
        seed,
    }
}

#[test]
fn same_seed_same_text() {
    for top_p in [0.9, 1.0] {
        let (a, ga) = run(model(), "Lily", &sampled(1234, top_p)).expect("generate");
        let (b, gb) = run(model(), "Lily", &sampled(1234, top_p)).expect("generate");
        assert_eq!(a, b);
        assert_eq!(ga.completion_tokens, gb.completion_tokens);
    }
}

#[test]
fn different_seed_different_text() {
    let (a, _) = run(model(), "", &sampled(1, 0.9)).expect("generate");
    let (b, _) = run(model(), "", &sampled(2, 0.9)).expect("generate");
    let (c, _) = run(model(), "", &sampled(0, 1.0)).expect("generate");
    assert_ne!(a, b);
    assert_ne!(a, c);
}

#[test]
fn sampling_differs_from_greedy_and_tiny_top_p_is_greedy() {
    let (greedy_text, _) = run(model(), "", &greedy(80)).expect("generate");
    // A nucleus of ~0 mass keeps only the most likely token: identical to greedy.
    let (nucleus, _) = run(model(), "", &sampled(99, 1e-6)).expect("generate");
    assert_eq!(nucleus, greedy_text);
    let (hot, _) = run(
        model(),
        "",
        &GenerateParams {
            temperature: 2.0,
            ..sampled(99, 1.0)
        },
    )
    .expect("generate");
    assert_ne!(hot, greedy_text);
}

#[test]
fn break_cancels_immediately() {
    let mut calls = 0;
    let g = model()
        .generate("", &greedy(200), &mut |_| {
            calls += 1;
            if calls == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .expect("generate");
    assert_eq!(calls, 3);
    assert_eq!(g.finish_reason, FinishReason::Cancelled);
    assert_eq!(g.completion_tokens, 3);
}

#[test]
fn max_tokens_limits_length() {
    let (text, g) = run(model(), "", &greedy(5)).expect("generate");
    assert_eq!(g.completion_tokens, 5);
    assert_eq!(g.finish_reason, FinishReason::Length);
    assert!("Once upon a time, there".starts_with(&text), "{text:?}");
    let (_, g) = run(model(), "", &greedy(1)).expect("generate");
    assert_eq!(g.completion_tokens, 1);
}

#[test]
fn context_end_is_length() {
    // A prompt close to seq_len (512) leaves room for seq_len - prompt_tokens + 1 tokens
    // (the token sampled at the last position is still emitted, as in llama2.c).
    let prompt = "Once upon a time, there was a little girl named Lily. ".repeat(33);
    let n = model().count_tokens(&prompt);
    assert!(n > 450 && n <= 512, "{n}");
    let (_, g) = run(model(), &prompt, &greedy(10_000)).expect("generate");
    assert_eq!(n, 497);
    assert_eq!(g.finish_reason, FinishReason::Length);
    assert_eq!(g.completion_tokens as usize, 512 - n + 1);
}

#[test]
fn streamed_pieces_are_utf8_and_complete() {
    // Every callback gets a non-empty &str; concatenation equals the summary text.
    let mut pieces = Vec::new();
    model()
        .generate("", &sampled(5, 0.95), &mut |p| {
            assert!(!p.is_empty());
            pieces.push(p.to_owned());
            ControlFlow::Continue(())
        })
        .expect("generate");
    let (text, _) = run(model(), "", &sampled(5, 0.95)).expect("generate");
    assert_eq!(pieces.concat(), text);
}
