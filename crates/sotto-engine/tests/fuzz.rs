//! Property tests: hostile bytes never panic the parsers; encode/decode round-trips.

mod common;

use std::ops::ControlFlow;

use common::*;
use proptest::prelude::*;
use sotto_engine::{GenerateParams, Model, Tokenizer};

/// A synthetic tokenizer: unk/bos/eos, the 256 byte pieces, then `extra` pieces.
fn synthetic_tokenizer(extra: &[(f32, Vec<u8>)]) -> Vec<u8> {
    let mut toks: Vec<(f32, Vec<u8>)> = vec![
        (0.0, b"<unk>".to_vec()),
        (0.0, b"\n<s>\n".to_vec()),
        (0.0, b"\n</s>\n".to_vec()),
    ];
    toks.extend((0..=255u8).map(|b| (0.0, format!("<0x{b:02X}>").into_bytes())));
    toks.extend(extra.iter().cloned());
    let max = toks.iter().map(|t| t.1.len()).max().unwrap_or(1).max(1) as i32;
    let mut out = max.to_le_bytes().to_vec();
    for (s, p) in toks {
        out.extend_from_slice(&s.to_le_bytes());
        out.extend_from_slice(&(p.len() as i32).to_le_bytes());
        out.extend_from_slice(&p);
    }
    out
}

/// Shape of a tiny random model.
struct Tiny<'a> {
    n_heads: usize,
    kv_div: usize,
    head_half: usize,
    layers: usize,
    seq_len: usize,
    shared: bool,
    extra: &'a [(f32, Vec<u8>)],
    seed: u32,
}

/// A tiny random model with a valid header and exactly sized tensors.
fn tiny_model(spec: &Tiny) -> (Vec<u8>, Vec<u8>) {
    let Tiny {
        n_heads,
        kv_div,
        head_half,
        layers,
        seq_len,
        shared,
        extra,
        seed,
    } = *spec;
    let n_kv = (n_heads / kv_div).max(1);
    let n_heads = n_kv * kv_div.max(1);
    let head = head_half * 2;
    let dim = n_heads * head;
    let hidden = dim + 3;
    let vocab = 259 + extra.len();
    let kv = n_kv * head;
    let floats = vocab * dim
        + layers * (2 * dim + 2 * dim * dim + 2 * kv * dim + 3 * hidden * dim)
        + dim
        + seq_len * head
        + if shared { 0 } else { vocab * dim };
    let v = if shared {
        vocab as i32
    } else {
        -(vocab as i32)
    };
    let mut c: Vec<u8> = [dim, hidden, layers, n_heads, n_kv]
        .iter()
        .map(|&x| x as i32)
        .chain([v, seq_len as i32])
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let mut s = seed | 1;
    for _ in 0..floats {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        let f = (s as f32 / u32::MAX as f32 - 0.5) * 2.0;
        c.extend_from_slice(&f.to_le_bytes());
    }
    (c, synthetic_tokenizer(extra))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_checkpoint_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Model::from_bytes(&data, &tokenizer_bytes());
    }

    #[test]
    fn arbitrary_header_never_panics(h in proptest::array::uniform7(any::<i32>()), tail in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut data: Vec<u8> = h.iter().flat_map(|x| x.to_le_bytes()).collect();
        data.extend(tail);
        let _ = Model::from_bytes(&data, &tokenizer_bytes());
    }

    #[test]
    fn arbitrary_tokenizer_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048), vocab in 0usize..2000) {
        let _ = Tokenizer::from_bytes(&data, vocab);
    }

    #[test]
    fn mutated_real_tokenizer_never_panics(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8), cut in any::<prop::sample::Index>()) {
        let mut t = tokenizer_bytes();
        for (i, b) in flips {
            let i = i.index(t.len());
            t[i] = b;
        }
        let _ = Tokenizer::from_bytes(&t, 512);
        let cut = cut.index(t.len());
        let _ = Tokenizer::from_bytes(&t[..cut], 512);
        // Whatever parses must encode and decode without panicking.
        if let Ok(tok) = Tokenizer::from_bytes(&t, 512) {
            let ids = tok.encode("Once upon a time é 🦀", true, true);
            for w in ids.windows(2) {
                let _ = tok.decode(w[0], w[1]);
            }
        }
    }

    #[test]
    fn encode_decode_round_trip(text in "\\PC{0,60}|[ a-zA-Z.,'\n]{0,80}") {
        let tok = model().tokenizer().expect("a llama2.c model");
        let ids = tok.encode(&text, true, false);
        let bytes: Vec<u8> = ids.windows(2).flat_map(|w| tok.decode(w[0], w[1]).to_vec()).collect();
        prop_assert_eq!(bytes, text.as_bytes());
        prop_assert!(ids.iter().all(|&i| (i as usize) < tok.vocab_size()));
    }

    #[test]
    fn random_tiny_models_generate_without_panic(
        n_heads in 1usize..5, kv_div in 1usize..3, head_half in 1usize..4, layers in 1usize..3,
        seq_len in 1usize..12, shared in any::<bool>(),
        extra in proptest::collection::vec((-10.0f32..10.0, proptest::collection::vec(any::<u8>(), 0..4)), 0..20),
        seed in any::<u32>(), prompt in "\\PC{0,8}",
        temperature in prop_oneof![Just(0.0f32), 0.01f32..3.0], top_p in 0.01f32..=1.0,
        top_k in prop_oneof![Just(0u32), 0u32..300], min_p in prop_oneof![Just(0.0f32), 0.0f32..=1.0],
        repetition_penalty in prop_oneof![Just(1.0f32), 0.01f32..5.0], repeat_last_n in 0u32..20,
        presence_penalty in -2.0f32..=2.0, frequency_penalty in -2.0f32..=2.0,
        stop in proptest::collection::vec("\\PC{1,3}", 0..=4),
    ) {
        let (c, t) = tiny_model(&Tiny { n_heads, kv_div, head_half, layers, seq_len, shared, extra: &extra, seed });
        let model = Model::from_bytes(&c, &t).expect("well-formed tiny model");
        let params = GenerateParams {
            max_tokens: 16, temperature, top_p, seed: seed.into(), top_k, min_p, repetition_penalty,
            repeat_last_n, presence_penalty, frequency_penalty, stop: stop.clone(),
        };
        let mut out = String::new();
        match model.generate(&prompt, &params, &mut |p| { out.push_str(p); ControlFlow::Continue(()) }) {
            Ok(g) => {
                prop_assert!(g.completion_tokens <= 16);
                // No stop string is ever emitted.
                prop_assert!(stop.iter().all(|s| !out.contains(s.as_str())));
                prop_assert!(g.prompt_tokens as usize + g.completion_tokens as usize <= seq_len + 1);
            }
            Err(e) => prop_assert_eq!(e.code(), "CONTEXT_OVERFLOW"),
        }
    }
}
