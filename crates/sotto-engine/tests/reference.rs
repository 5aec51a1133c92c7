//! End-to-end checks against the real stories260K model.

mod common;

use std::ops::ControlFlow;

use common::*;
use sotto_engine::{FinishReason, Model};

/// Reference output of `./run stories260K.bin -z tok512.bin -t 0.0` from the model's README.
const REFERENCE: &str = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.\nLily's mom said, \"Lily, let's go to the park.\" Lily was sad and didn't know what to do. She said, \"I want to play with your ball, but I can't find it.\"";

/// Full greedy output for `max_tokens = 255` (run.c's default `-n 256` minus the BOS
/// position). The README quotes its first two lines; llama2.c's own README quotes the rest.
const FULL_255: &str = concat!(
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.\n",
    "Lily's mom said, \"Lily, let's go to the park.\" Lily was sad and didn't know what to do. She said, \"I want to play with your ball, but I can't find it.\"\n",
    "Lily was sad and didn't know what to do. She said, \"I'm sorry, Lily. I didn't know what to do.\"\n",
    "Lily didn't want to help her mom, so she said, \"I'm sorry, mom. I didn't know what to do.\" Her mom said, \"Don't worry, Lily. We can help you",
);

#[test]
fn greedy_reproduces_reference_exactly() {
    let (text, g) = run(model(), "", &greedy(255)).expect("generate");
    assert_eq!(text, FULL_255);
    assert!(text.starts_with(REFERENCE));
    assert_eq!(g.prompt_tokens, 1);
    assert_eq!(g.completion_tokens, 255);
    assert_eq!(g.finish_reason, FinishReason::Length);
}

#[test]
fn greedy_stops_exactly_at_readme_text() {
    // Count the tokens that make up the README excerpt, then regenerate exactly that many.
    let mut acc = String::new();
    let mut n = 0u32;
    model()
        .generate("", &greedy(255), &mut |piece| {
            acc.push_str(piece);
            n += 1;
            if acc.len() >= REFERENCE.len() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .expect("generate");
    assert_eq!(acc, REFERENCE);
    let (text, g) = run(model(), "", &greedy(n)).expect("generate");
    assert_eq!(text, REFERENCE);
    assert_eq!(g.completion_tokens, n);
}

#[test]
fn greedy_runs_to_natural_stop() {
    // With room to spare the model ends its story with a BOS token.
    let (text, g) = run(model(), "", &greedy(1000)).expect("generate");
    assert!(text.starts_with(FULL_255));
    assert_eq!(g.finish_reason, FinishReason::Stop);
    assert_eq!(g.completion_tokens, 345);
    assert!(text.ends_with("You are a good friend.\""));
}

#[test]
fn config_has_grouped_query_attention() {
    let c = model().config();
    assert_eq!(
        (
            c.dim,
            c.hidden_dim,
            c.n_layers,
            c.n_heads,
            c.n_kv_heads,
            c.vocab_size,
            c.seq_len
        ),
        (64, 172, 5, 8, 4, 512, 512)
    );
    assert!(c.shared_classifier);
    assert_eq!(c.head_size(), 8);
    assert_eq!(c.kv_dim(), 32);
}

#[test]
fn load_and_from_bytes_agree() {
    let m = Model::from_bytes(&checkpoint_bytes(), &tokenizer_bytes()).expect("from_bytes");
    let (a, _) = run(&m, "Lily", &greedy(40)).expect("generate");
    let (b, _) = run(model(), "Lily", &greedy(40)).expect("generate");
    assert_eq!(a, b);
}

#[test]
fn prompt_continuation_and_counts() {
    let prompt = "Once upon a time, there was a little girl named Lily.";
    let (text, g) = run(model(), prompt, &greedy(20)).expect("generate");
    assert_eq!(g.prompt_tokens as usize, model().count_tokens(prompt));
    assert_eq!(g.completion_tokens, 20);
    assert_eq!(g.finish_reason, FinishReason::Length);
    // The continuation after a prompt keeps its leading space (no BOS strip).
    assert!(text.starts_with(' '), "{text:?}");
    // Greedy is deterministic and the prefix of a longer run.
    let (longer, _) = run(model(), prompt, &greedy(30)).expect("generate");
    assert!(longer.starts_with(&text));
}

#[test]
fn concurrent_generations_share_one_model() {
    let model =
        std::sync::Arc::new(Model::load(&checkpoint_path(), &tokenizer_path()).expect("load"));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let m = model.clone();
            std::thread::spawn(move || run(&m, "", &greedy(255)).expect("generate").0)
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().expect("thread"), FULL_255);
    }
}
