//! Every error path, with its stable code.

mod common;

use common::*;
use sotto_engine::{EngineError, GenerateParams, Model};

fn header(v: [i32; 7]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// stories260K's header with one field replaced.
fn with_field(i: usize, value: i32) -> Vec<u8> {
    let mut c = checkpoint_bytes();
    c[i * 4..i * 4 + 4].copy_from_slice(&value.to_le_bytes());
    c
}

fn load_err(ckpt: &[u8], tok: &[u8]) -> EngineError {
    Model::from_bytes(ckpt, tok).expect_err("must fail")
}

#[test]
fn truncated_checkpoint() {
    let c = checkpoint_bytes();
    let t = tokenizer_bytes();
    for len in [0, 3, 27, 28, 1000, c.len() - 1] {
        let e = load_err(&c[..len], &t);
        assert_eq!(e.code(), "MODEL_TRUNCATED", "len {len}: {e}");
    }
}

#[test]
fn oversized_checkpoint() {
    let mut c = checkpoint_bytes();
    c.extend_from_slice(&[0; 4]);
    assert_eq!(load_err(&c, &tokenizer_bytes()).code(), "MODEL_OVERSIZED");
}

#[test]
fn unshared_classifier_flag_changes_expected_size() {
    // Negative vocab => an extra classifier tensor is expected; the real file lacks it.
    let e = load_err(&with_field(5, -512), &tokenizer_bytes());
    assert_eq!(e.code(), "MODEL_TRUNCATED");
    // ... and appending one makes it load, with shared_classifier = false.
    let mut c = with_field(5, -512);
    c.extend(std::iter::repeat_n(0u8, 512 * 64 * 4));
    let m = Model::from_bytes(&c, &tokenizer_bytes()).expect("unshared classifier");
    assert!(!m.config().shared_classifier);
}

#[test]
fn bad_headers() {
    let t = tokenizer_bytes();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("zero dim", with_field(0, 0)),
        ("negative hidden", with_field(1, -172)),
        ("zero layers", with_field(2, 0)),
        ("zero heads", with_field(3, 0)),
        ("zero kv heads", with_field(4, 0)),
        ("zero vocab", with_field(5, 0)),
        ("i32::MIN vocab", with_field(5, i32::MIN)),
        ("zero seq_len", with_field(6, 0)),
        ("huge dim", with_field(0, i32::MAX)),
        ("huge seq_len", with_field(6, i32::MAX)),
        ("dim not divisible by heads", with_field(3, 7)),
        ("kv heads not dividing heads", with_field(4, 3)),
        ("more kv heads than heads", with_field(4, 16)),
        ("odd head size", with_field(3, 64)),
        ("all max", header([i32::MAX; 7])),
    ];
    for (what, c) in cases {
        let e = load_err(&c, &t);
        assert_eq!(e.code(), "MODEL_HEADER_INVALID", "{what}: {e}");
    }
}

#[test]
fn plausible_header_with_wrong_size() {
    // Valid header for a bigger model, but only the 260K file's bytes follow.
    let e = load_err(&with_field(2, 6), &tokenizer_bytes());
    assert_eq!(e.code(), "MODEL_TRUNCATED");
    let e = load_err(&with_field(2, 4), &tokenizer_bytes());
    assert_eq!(e.code(), "MODEL_OVERSIZED");
}

#[test]
fn non_finite_weight() {
    let mut c = checkpoint_bytes();
    c[28..32].copy_from_slice(&f32::NAN.to_le_bytes());
    let e = load_err(&c, &tokenizer_bytes());
    assert_eq!(e.code(), "MODEL_WEIGHTS_INVALID");
    let mut c = checkpoint_bytes();
    // Last float of rms_final, just before the two 512 x 4 freq_cis tables.
    let last = c.len() - 4 * (2 * 512 * 4) - 4;
    c[last..last + 4].copy_from_slice(&f32::INFINITY.to_le_bytes());
    assert_eq!(
        load_err(&c, &tokenizer_bytes()).code(),
        "MODEL_WEIGHTS_INVALID"
    );
    // The unused freq_cis tables are not checked (llama2.c ignores them too).
    let mut c = checkpoint_bytes();
    let n = c.len();
    c[n - 4..].copy_from_slice(&f32::NAN.to_le_bytes());
    Model::from_bytes(&c, &tokenizer_bytes()).expect("freq_cis is ignored");
}

#[test]
fn bad_tokenizers() {
    let c = checkpoint_bytes();
    let t = tokenizer_bytes();
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("header only", t[..4].to_vec()),
        ("truncated", t[..t.len() - 1].to_vec()),
        ("truncated mid-token", t[..100].to_vec()),
        ("trailing", [t.clone(), vec![0]].concat()),
    ];
    let mut bad = t.clone();
    bad[..4].copy_from_slice(&0i32.to_le_bytes());
    cases.push(("zero max_token_length", bad));
    let mut bad = t.clone();
    bad[..4].copy_from_slice(&(-1i32).to_le_bytes());
    cases.push(("negative max_token_length", bad));
    // First token's length field sits at bytes 8..12.
    let mut bad = t.clone();
    bad[8..12].copy_from_slice(&(-5i32).to_le_bytes());
    cases.push(("negative piece length", bad));
    let mut bad = t.clone();
    bad[8..12].copy_from_slice(&100i32.to_le_bytes());
    cases.push(("piece longer than max_token_length", bad));
    let mut bad = t.clone();
    bad[4..8].copy_from_slice(&f32::NAN.to_le_bytes());
    cases.push(("NaN score", bad));
    for (what, tok) in cases {
        let e = load_err(&c, &tok);
        assert_eq!(e.code(), "TOKENIZER_INVALID", "{what}: {e}");
    }
}

#[test]
fn tokenizer_vocab_must_match_model() {
    // Same tokenizer, model header claiming a larger vocabulary (and matching tensor sizes).
    let mut c = with_field(5, 513);
    // Insert one more embedding row right after the header.
    c.splice(28..28, std::iter::repeat_n(0u8, 64 * 4));
    let e = load_err(&c, &tokenizer_bytes());
    assert_eq!(e.code(), "TOKENIZER_INVALID", "{e}");
}

#[test]
fn missing_files() {
    let e = Model::load("/nonexistent/model.bin".as_ref(), &tokenizer_path()).expect_err("fail");
    assert_eq!(e.code(), "MODEL_IO");
    let e = Model::load(&checkpoint_path(), "/nonexistent/tok.bin".as_ref()).expect_err("fail");
    assert_eq!(e.code(), "TOKENIZER_IO");
}

#[test]
fn invalid_params() {
    let base = greedy(10);
    let cases = [
        GenerateParams {
            max_tokens: 0,
            ..base.clone()
        },
        GenerateParams {
            temperature: -0.1,
            ..base.clone()
        },
        GenerateParams {
            temperature: f32::NAN,
            ..base.clone()
        },
        GenerateParams {
            temperature: f32::INFINITY,
            ..base.clone()
        },
        GenerateParams {
            top_p: 0.0,
            ..base.clone()
        },
        GenerateParams {
            top_p: -1.0,
            ..base.clone()
        },
        GenerateParams {
            top_p: 1.0001,
            ..base.clone()
        },
        GenerateParams {
            top_p: f32::NAN,
            ..base.clone()
        },
        GenerateParams {
            min_p: -0.01,
            ..base.clone()
        },
        GenerateParams {
            min_p: 1.01,
            ..base.clone()
        },
        GenerateParams {
            min_p: f32::NAN,
            ..base.clone()
        },
        GenerateParams {
            repetition_penalty: 0.0,
            ..base.clone()
        },
        GenerateParams {
            repetition_penalty: -1.0,
            ..base.clone()
        },
        GenerateParams {
            repetition_penalty: f32::INFINITY,
            ..base.clone()
        },
        GenerateParams {
            repetition_penalty: f32::NAN,
            ..base.clone()
        },
        GenerateParams {
            presence_penalty: 2.01,
            ..base.clone()
        },
        GenerateParams {
            presence_penalty: f32::NAN,
            ..base.clone()
        },
        GenerateParams {
            frequency_penalty: -2.01,
            ..base.clone()
        },
        GenerateParams {
            frequency_penalty: f32::NAN,
            ..base.clone()
        },
        GenerateParams {
            stop: vec!["a".into(), "b".into(), "c".into(), "d".into(), "e".into()],
            ..base.clone()
        },
        GenerateParams {
            stop: vec!["a".into(), String::new()],
            ..base.clone()
        },
    ];
    for p in cases {
        let mut called = false;
        let e = model()
            .generate("hi", &p, &mut |_| {
                called = true;
                std::ops::ControlFlow::Continue(())
            })
            .expect_err("invalid");
        assert_eq!(e.code(), "INVALID_PARAMS", "{p:?}");
        assert!(!called);
    }
    assert!(GenerateParams::default().validate().is_ok());
    // The boundaries themselves are valid.
    let edges = GenerateParams {
        min_p: 1.0,
        presence_penalty: -2.0,
        frequency_penalty: 2.0,
        repetition_penalty: 1e-3,
        top_k: u32::MAX,
        repeat_last_n: u32::MAX,
        stop: vec!["a".into(), "b".into(), "c".into(), "d".into()],
        ..base
    };
    assert!(edges.validate().is_ok());
}

#[test]
fn context_overflow_without_leaking_prompt() {
    let secret = "SECRETWORD";
    // ~15 tokens per sentence: 40 sentences is well over seq_len = 512.
    let prompt = format!("{secret} was a little girl named Lily. ").repeat(40);
    let e = run(model(), &prompt, &greedy(10)).expect_err("overflow");
    assert_eq!(e.code(), "CONTEXT_OVERFLOW");
    assert!(!e.to_string().contains(secret));
    assert!(!format!("{e:?}").contains(secret));
    // A huge prompt is rejected before encoding (cheap) with the same code.
    let huge = "a".repeat(1 << 20);
    assert_eq!(
        run(model(), &huge, &greedy(10))
            .expect_err("overflow")
            .code(),
        "CONTEXT_OVERFLOW"
    );
    // Exactly seq_len prompt tokens still fits: one token is generated at the last position.
    let mut prompt = String::new();
    while model().count_tokens(&prompt) < 512 {
        prompt.push_str(" x");
    }
    if model().count_tokens(&prompt) == 512 {
        let (_, g) = run(model(), &prompt, &greedy(10)).expect("fits");
        assert!(g.completion_tokens <= 1);
    }
}

#[test]
fn codes_are_stable_and_distinct() {
    let errs = [
        EngineError::ModelIo(std::io::Error::other("x")),
        EngineError::TokenizerIo(std::io::Error::other("x")),
        EngineError::ModelHeaderInvalid(String::new()),
        EngineError::ModelTruncated {
            expected: 1,
            actual: 0,
        },
        EngineError::ModelOversized {
            expected: 1,
            actual: 2,
        },
        EngineError::ModelWeightsInvalid {
            tensor: "wq",
            index: 0,
        },
        EngineError::TokenizerInvalid(String::new()),
        EngineError::InvalidParams("x"),
        EngineError::ContextOverflow {
            prompt_tokens: 2,
            seq_len: 1,
        },
    ];
    let codes: Vec<&str> = errs.iter().map(EngineError::code).collect();
    assert_eq!(
        codes,
        [
            "MODEL_IO",
            "TOKENIZER_IO",
            "MODEL_HEADER_INVALID",
            "MODEL_TRUNCATED",
            "MODEL_OVERSIZED",
            "MODEL_WEIGHTS_INVALID",
            "TOKENIZER_INVALID",
            "INVALID_PARAMS",
            "CONTEXT_OVERFLOW",
        ]
    );
}
