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
        ..GenerateParams::default()
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

/// Outputs of the sampler before top-k/min-p/penalties/stop strings existed (captured from
/// the previous implementation): with the extensions off, sampling is bit-identical.
#[test]
fn extensions_off_reproduce_previous_sampler_exactly() {
    let pins: [(f32, f32, u64, &str, &str); 4] = [
        (
            1.0,
            0.9,
            1234,
            "Lily",
            " arrived around her house. She loved to pretend the trucks and see where it was a special plant. One day, Lily's mom told her that she",
        ),
        (
            0.7,
            0.95,
            5,
            "",
            "Once upon a time, there was a little girl named Lily. She loved to play in the park with her friends. One day, she saw a boy playing with a shiny box. It was so clean and d",
        ),
        (
            1.3,
            1.0,
            7,
            "Once",
            " upon a time, there was a little girl named Lily. Timmy loved calling Leo so much. One day, Leediamo got to his kite to rescue. Sometimes open",
        ),
        (
            0.5,
            0.5,
            42,
            "",
            "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, shiny ball. She wanted to play with it, but it was too h",
        ),
    ];
    for (temperature, top_p, seed, prompt, expected) in pins {
        let params = GenerateParams {
            max_tokens: 60,
            temperature,
            top_p,
            seed,
            ..GenerateParams::default()
        };
        let (text, g) = run(model(), prompt, &params).expect("generate");
        assert_eq!(text, expected, "T={temperature} top_p={top_p} seed={seed}");
        assert_eq!(g.completion_tokens, 60);
    }
}

#[test]
fn top_k_one_is_greedy_and_full_top_k_changes_nothing() {
    let (greedy_text, _) = run(model(), "", &greedy(120)).expect("generate");
    let k1 = GenerateParams {
        top_k: 1,
        max_tokens: 120,
        ..sampled(3, 1.0)
    };
    assert_eq!(run(model(), "", &k1).expect("generate").0, greedy_text);
    // top_k = vocab size goes through the general top-k/top-p/min-p path, which must agree
    // with llama2.c's nucleus sampling.
    for seed in [1, 2, 3] {
        let plain = run(model(), "Lily", &sampled(seed, 0.9))
            .expect("generate")
            .0;
        let k_all = GenerateParams {
            top_k: 512,
            ..sampled(seed, 0.9)
        };
        assert_eq!(run(model(), "Lily", &k_all).expect("generate").0, plain);
    }
}

fn all_options(seed: u64) -> GenerateParams {
    GenerateParams {
        max_tokens: 80,
        temperature: 1.2,
        top_p: 0.95,
        seed,
        top_k: 40,
        min_p: 0.05,
        repetition_penalty: 1.3,
        repeat_last_n: 64,
        presence_penalty: 0.5,
        frequency_penalty: 0.5,
        stop: Vec::new(),
    }
}

#[test]
fn all_options_are_seeded_and_deterministic() {
    let (a, _) = run(model(), "", &all_options(11)).expect("generate");
    let (b, _) = run(model(), "", &all_options(11)).expect("generate");
    let (c, _) = run(model(), "", &all_options(12)).expect("generate");
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn penalties_change_greedy_output() {
    let (plain, _) = run(model(), "", &greedy(255)).expect("generate");
    // The greedy story repeats "know what to do" four times.
    assert_eq!(plain.matches("know what to do").count(), 4);
    for params in [
        GenerateParams {
            repetition_penalty: 1.5,
            ..greedy(255)
        },
        GenerateParams {
            frequency_penalty: 1.0,
            ..greedy(255)
        },
        GenerateParams {
            presence_penalty: 1.0,
            ..greedy(255)
        },
    ] {
        let (text, _) = run(model(), "", &params).expect("generate");
        assert_ne!(text, plain, "{params:?}");
        assert!(text.matches("know what to do").count() < 4, "{params:?}");
    }
    // A negative penalty encourages repetition instead: the text is different again.
    let (neg, _) = run(
        model(),
        "",
        &GenerateParams {
            frequency_penalty: -1.0,
            ..greedy(255)
        },
    )
    .expect("generate");
    assert_ne!(neg, plain);
}

/// Greedy story (empty prompt) cut at the first occurrence of `stop`, and the number of
/// tokens up to and including the one that completes it.
fn greedy_cut(stop: &str) -> (String, u32) {
    let (full, _) = run(model(), "", &greedy(255)).expect("generate");
    let cut = full.find(stop).expect("stop occurs");
    let mut n = 0;
    let mut acc = String::new();
    model()
        .generate("", &greedy(255), &mut |piece| {
            acc.push_str(piece);
            n += 1;
            if acc.len() >= cut + stop.len() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .expect("generate");
    (full[..cut].to_owned(), n)
}

#[test]
fn stop_strings_cut_before_the_first_occurrence() {
    // "Lily" spans tokens; "." and "\n" are single tokens; "mom said" is two words.
    for stop in ["Lily", ".", "\n", "mom said", "ball. She"] {
        let (expected, n) = greedy_cut(stop);
        let params = GenerateParams {
            stop: vec!["never appears".into(), stop.into()],
            ..greedy(255)
        };
        let mut pieces = Vec::new();
        let g = model()
            .generate("", &params, &mut |p| {
                pieces.push(p.to_owned());
                ControlFlow::Continue(())
            })
            .expect("generate");
        let text = pieces.concat();
        assert_eq!(text, expected, "stop {stop:?}");
        assert_eq!(g.finish_reason, FinishReason::Stop);
        assert_eq!(
            g.completion_tokens, n,
            "counts the token completing {stop:?}"
        );
        assert!(pieces.iter().all(|p| !p.is_empty()));
    }
    // A stop string that never appears changes nothing.
    let params = GenerateParams {
        stop: vec!["zebra".into()],
        ..greedy(255)
    };
    let (text, g) = run(model(), "", &params).expect("generate");
    assert_eq!(text, run(model(), "", &greedy(255)).expect("generate").0);
    assert_eq!(g.finish_reason, FinishReason::Length);
    assert_eq!(g.completion_tokens, 255);
}

#[test]
fn held_back_text_is_flushed_at_the_end() {
    // A stop string that starts with the last character of the output: that character is
    // held back until the end, then flushed.
    let (five, _) = run(model(), "", &greedy(5)).expect("generate");
    let tail = five.chars().last().expect("non-empty");
    let params = GenerateParams {
        stop: vec![format!("{tail}\u{1F600}")],
        ..greedy(5)
    };
    let (text, g) = run(model(), "", &params).expect("generate");
    assert_eq!(text, five);
    assert_eq!(g.finish_reason, FinishReason::Length);
    // Also after a natural stop (BOS).
    let (full, _) = run(model(), "", &greedy(1000)).expect("generate");
    let params = GenerateParams {
        stop: vec!["\"\u{1F600}".into()],
        ..greedy(1000)
    };
    let (text, g) = run(model(), "", &params).expect("generate");
    assert_eq!(text, full);
    assert_eq!(g.finish_reason, FinishReason::Stop);
    assert_eq!(g.completion_tokens, 345);
}

#[test]
fn cancelling_while_text_is_held_back() {
    // Break on the first callback; held-back text is never delivered afterwards.
    let params = GenerateParams {
        stop: vec!["Once upon a time, there was a big".into()],
        ..greedy(50)
    };
    let mut calls = Vec::new();
    let g = model()
        .generate("", &params, &mut |p| {
            calls.push(p.to_owned());
            ControlFlow::Break(())
        })
        .expect("generate");
    assert_eq!(g.finish_reason, FinishReason::Cancelled);
    assert_eq!(calls.len(), 1);
    // The whole prefix was held back until " little" diverged from " big".
    assert_eq!(calls[0], "Once upon a time, there was a little");
}
