//! llama2.c → GGUF conversion, checked against an independent GGUF Llama implementation
//! (candle-transformers' `quantized_llama`) running the real stories260K model.

mod common;

use std::io::Cursor;

use candle_core::quantized::GgmlDType;
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_llama::ModelWeights;
use common::*;
use sotto_engine::convert::{ConvertOptions, Quantization, llama2c_to_gguf};
use sotto_engine::{BOS, EOS, Tokenizer};

/// Reference output of `./run stories260K.bin -z tok512.bin -t 0.0` (the model's README).
const REFERENCE: &str = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.\nLily's mom said, \"Lily, let's go to the park.\" Lily was sad and didn't know what to do. She said, \"I want to play with your ball, but I can't find it.\"";

fn convert(q: Quantization) -> Vec<u8> {
    let opts = ConvertOptions {
        quantize: q,
        name: "stories260K".into(),
        chat_template: None,
    };
    llama2c_to_gguf(&checkpoint_bytes(), &tokenizer_bytes(), &opts).expect("convert")
}

fn content(gguf: &[u8]) -> Content {
    Content::read(&mut Cursor::new(gguf)).expect("candle reads the GGUF")
}

/// Greedy decoding with candle's Llama over the converted file, from BOS only, like
/// `run -t 0.0`: ids from the llama2.c tokenizer, text decoded with it.
fn candle_greedy(gguf: &[u8], max_tokens: usize) -> String {
    let dev = Device::Cpu;
    let mut reader = Cursor::new(gguf);
    let ct = Content::read(&mut reader).expect("read");
    let mut model = ModelWeights::from_gguf(ct, &mut reader, &dev).expect("from_gguf");
    let tok = Tokenizer::from_bytes(&tokenizer_bytes(), 512).expect("tokenizer");
    let mut text = Vec::new();
    let mut token = BOS;
    for pos in 0..max_tokens {
        let input = Tensor::new(&[token], &dev)
            .and_then(|t| t.unsqueeze(0))
            .expect("input");
        let logits = model.forward(&input, pos).expect("forward");
        let logits: Vec<f32> = logits.squeeze(0).and_then(|l| l.to_vec1()).expect("logits");
        // First maximum on ties, like llama2.c's argmax.
        let mut next = 0u32;
        for (i, &l) in (0u32..).zip(&logits) {
            if l > logits[next as usize] {
                next = i;
            }
        }
        if next == BOS || next == EOS {
            break;
        }
        text.extend_from_slice(tok.decode(token, next));
        token = next;
    }
    String::from_utf8(text).expect("utf-8")
}

#[test]
fn f32_gguf_reproduces_reference_in_candle() {
    let text = candle_greedy(&convert(Quantization::F32), 255);
    assert!(
        text.starts_with(REFERENCE),
        "candle over the F32 GGUF diverged:\n{text}"
    );
}

#[test]
fn q8_0_gguf_keeps_first_sentence_in_candle() {
    let text = candle_greedy(&convert(Quantization::Q8_0), 120);
    let first = "Once upon a time, there was a little girl named Lily.";
    assert!(text.starts_with(first), "{text}");
    eprintln!("Q8_0 greedy: {text}");
}

#[test]
fn f16_gguf_keeps_first_sentence_in_candle() {
    let text = candle_greedy(&convert(Quantization::F16), 120);
    assert!(
        text.starts_with("Once upon a time, there was a little girl named Lily."),
        "{text}"
    );
}

fn u32_md(c: &Content, key: &str) -> u32 {
    c.metadata
        .get(key)
        .unwrap_or_else(|| panic!("missing {key}"))
        .to_u32()
        .unwrap_or_else(|_| panic!("{key} not u32"))
}

#[test]
fn metadata_is_exactly_as_intended() {
    let bytes = convert(Quantization::F32);
    assert_eq!(&bytes[..4], b"GGUF");
    assert_eq!(u32::from_le_bytes(bytes[4..8].try_into().unwrap()), 3);
    let c = content(&bytes);
    let s = |k: &str| c.metadata[k].to_string().expect(k).clone();
    let f = |k: &str| c.metadata[k].to_f32().expect(k);
    let b = |k: &str| c.metadata[k].to_bool().expect(k);
    assert_eq!(s("general.architecture"), "llama");
    assert_eq!(s("general.name"), "stories260K");
    assert_eq!(u32_md(&c, "general.file_type"), 0);
    assert!(!c.metadata.contains_key("general.quantization_version"));
    for (k, v) in [
        ("llama.vocab_size", 512),
        ("llama.context_length", 512),
        ("llama.embedding_length", 64),
        ("llama.block_count", 5),
        ("llama.feed_forward_length", 172),
        ("llama.attention.head_count", 8),
        ("llama.attention.head_count_kv", 4),
        ("llama.rope.dimension_count", 8),
        ("tokenizer.ggml.unknown_token_id", 0),
        ("tokenizer.ggml.bos_token_id", 1),
        ("tokenizer.ggml.eos_token_id", 2),
    ] {
        assert_eq!(u32_md(&c, k), v, "{k}");
    }
    assert_eq!(f("llama.attention.layer_norm_rms_epsilon"), 1e-5);
    assert_eq!(f("llama.rope.freq_base"), 10000.0);
    assert_eq!(s("tokenizer.ggml.model"), "llama");
    assert!(b("tokenizer.ggml.add_bos_token"));
    assert!(!b("tokenizer.ggml.add_eos_token"));
    assert!(b("tokenizer.ggml.add_space_prefix"));
    assert!(!c.metadata.contains_key("tokenizer.chat_template"));
    // Exactly these keys, nothing else.
    let mut keys: Vec<&str> = c.metadata.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "general.architecture",
            "general.description",
            "general.file_type",
            "general.name",
            "llama.attention.head_count",
            "llama.attention.head_count_kv",
            "llama.attention.layer_norm_rms_epsilon",
            "llama.block_count",
            "llama.context_length",
            "llama.embedding_length",
            "llama.feed_forward_length",
            "llama.rope.dimension_count",
            "llama.rope.freq_base",
            "llama.vocab_size",
            "tokenizer.ggml.add_bos_token",
            "tokenizer.ggml.add_eos_token",
            "tokenizer.ggml.add_space_prefix",
            "tokenizer.ggml.bos_token_id",
            "tokenizer.ggml.eos_token_id",
            "tokenizer.ggml.model",
            "tokenizer.ggml.scores",
            "tokenizer.ggml.token_type",
            "tokenizer.ggml.tokens",
            "tokenizer.ggml.unknown_token_id",
        ]
    );
    assert_eq!(
        s("general.description"),
        "converted from a llama2.c checkpoint by sotto-engine: all tensors F32"
    );

    let tokens: Vec<String> = c.metadata["tokenizer.ggml.tokens"]
        .to_vec()
        .unwrap()
        .iter()
        .map(|v| v.to_string().unwrap().clone())
        .collect();
    let types: Vec<i32> = c.metadata["tokenizer.ggml.token_type"]
        .to_vec()
        .unwrap()
        .iter()
        .map(|v| v.to_i32().unwrap())
        .collect();
    let scores: Vec<f32> = c.metadata["tokenizer.ggml.scores"]
        .to_vec()
        .unwrap()
        .iter()
        .map(|v| v.to_f32().unwrap())
        .collect();
    assert_eq!((tokens.len(), types.len(), scores.len()), (512, 512, 512));
    assert_eq!(&tokens[..3], ["<unk>", "<s>", "</s>"]);
    assert_eq!(&types[..3], [2, 3, 3]);
    for b in 0..256usize {
        assert_eq!(tokens[3 + b], format!("<0x{b:02X}>"));
        assert_eq!(types[3 + b], 6);
    }
    // Spaces become SentencePiece's U+2581; scores are copied.
    assert_eq!(tokens[259], "\u{2581}t");
    assert_eq!(tokens[265], "\u{2581}the");
    assert_eq!((scores[260], scores[265]), (-1.0, -6.0));
    assert!(types[259..].iter().all(|&t| t == 1));
    assert!(tokens.iter().all(|t| !t.contains(' ')));

    // Tensors: llama.cpp names, GGUF [cols, rows] = candle (rows, cols), shared classifier.
    assert_eq!(c.tensor_infos.len(), 2 + 5 * 9);
    assert!(!c.tensor_infos.contains_key("output.weight"));
    let dims = |n: &str| c.tensor_infos[n].shape.dims().to_vec();
    assert_eq!(dims("token_embd.weight"), [512, 64]);
    assert_eq!(dims("output_norm.weight"), [64]);
    assert_eq!(dims("blk.0.attn_q.weight"), [64, 64]);
    assert_eq!(dims("blk.4.attn_k.weight"), [32, 64]);
    assert_eq!(dims("blk.4.attn_v.weight"), [32, 64]);
    assert_eq!(dims("blk.0.attn_output.weight"), [64, 64]);
    assert_eq!(dims("blk.0.ffn_gate.weight"), [172, 64]);
    assert_eq!(dims("blk.0.ffn_up.weight"), [172, 64]);
    assert_eq!(dims("blk.0.ffn_down.weight"), [64, 172]);
    assert_eq!(dims("blk.3.attn_norm.weight"), [64]);
    assert_eq!(dims("blk.3.ffn_norm.weight"), [64]);
    assert!(
        c.tensor_infos
            .values()
            .all(|t| t.ggml_dtype == GgmlDType::F32)
    );
}

#[test]
fn f32_tensors_equal_checkpoint_floats() {
    // The token embedding is the first tensor after the 28-byte llama2.c header.
    let bytes = convert(Quantization::F32);
    let c = content(&bytes);
    let t = c
        .tensor(&mut Cursor::new(&bytes), "token_embd.weight", &Device::Cpu)
        .unwrap()
        .dequantize(&Device::Cpu)
        .unwrap();
    let got: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
    let ckpt = checkpoint_bytes();
    let want: Vec<f32> = ckpt[28..28 + 512 * 64 * 4]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn q8_0_types_follow_block_rule() {
    let bytes = convert(Quantization::Q8_0);
    let c = content(&bytes);
    assert_eq!(u32_md(&c, "general.file_type"), 7);
    assert_eq!(u32_md(&c, "general.quantization_version"), 2);
    for (name, info) in &c.tensor_infos {
        let want = if name.ends_with("norm.weight") || name.contains("ffn_down") {
            // Norms are vectors; ffn_down rows have 172 values, not a multiple of 32.
            GgmlDType::F32
        } else {
            GgmlDType::Q8_0
        };
        assert_eq!(info.ggml_dtype, want, "{name}");
    }
    // Q8_0 is 34 bytes per 32 weights: the file shrinks to under half.
    assert!(bytes.len() < convert(Quantization::F32).len() / 2);
}

#[test]
fn conversion_is_deterministic() {
    for q in [Quantization::F32, Quantization::F16, Quantization::Q8_0] {
        assert_eq!(convert(q), convert(q), "{q:?}");
    }
    assert_ne!(convert(Quantization::F32), convert(Quantization::Q8_0));
}

#[test]
fn unshared_classifier_becomes_output_weight() {
    // Same model with a negative vocab_size and an explicit classifier (the embedding).
    let mut ckpt = checkpoint_bytes();
    ckpt[20..24].copy_from_slice(&(-512i32).to_le_bytes());
    let emb = ckpt[28..28 + 512 * 64 * 4].to_vec();
    ckpt.extend_from_slice(&emb);
    let bytes = llama2c_to_gguf(&ckpt, &tokenizer_bytes(), &ConvertOptions::default()).unwrap();
    let c = content(&bytes);
    assert_eq!(c.tensor_infos["output.weight"].shape.dims(), [512, 64]);
    let text = candle_greedy(&bytes, 40);
    assert!(REFERENCE.starts_with(&text), "{text}");
    assert!(matches!(&c.metadata["general.name"], Value::String(s) if s == "llama2c"));
}

/// Parses tok512.bin into (score, piece) and writes it back after `edit`.
fn edited_tokenizer(edit: impl FnOnce(&mut Vec<(f32, Vec<u8>)>)) -> Vec<u8> {
    let data = tokenizer_bytes();
    let mut at = 4;
    let mut toks = Vec::new();
    for _ in 0..512 {
        let score = f32::from_le_bytes(data[at..at + 4].try_into().unwrap());
        let len = i32::from_le_bytes(data[at + 4..at + 8].try_into().unwrap()) as usize;
        toks.push((score, data[at + 8..at + 8 + len].to_vec()));
        at += 8 + len;
    }
    edit(&mut toks);
    let max = toks.iter().map(|t| t.1.len()).max().unwrap() as i32;
    let mut out = max.to_le_bytes().to_vec();
    for (score, piece) in toks {
        out.extend_from_slice(&score.to_le_bytes());
        out.extend_from_slice(&(piece.len() as i32).to_le_bytes());
        out.extend_from_slice(&piece);
    }
    out
}

fn convert_err(ckpt: &[u8], tok: &[u8], opts: &ConvertOptions) -> (String, String) {
    let e = llama2c_to_gguf(ckpt, tok, opts).expect_err("must be rejected");
    (e.code().to_string(), e.to_string())
}

#[test]
fn edited_tokenizer_round_trips() {
    // The helper itself must not change anything when nothing is edited.
    assert_eq!(edited_tokenizer(|_| {}), tokenizer_bytes());
}

#[test]
fn rejects_non_utf8_piece() {
    let tok = edited_tokenizer(|t| t[300].1 = vec![b'a', 0xff]);
    let (code, msg) = convert_err(&checkpoint_bytes(), &tok, &ConvertOptions::default());
    assert_eq!(code, "TOKENIZER_INVALID");
    assert!(msg.contains("token 300 is not valid UTF-8"), "{msg}");
}

#[test]
fn rejects_piece_with_spm_space() {
    let tok = edited_tokenizer(|t| t[300].1 = "\u{2581}x".as_bytes().to_vec());
    let (code, msg) = convert_err(&checkpoint_bytes(), &tok, &ConvertOptions::default());
    assert_eq!(code, "TOKENIZER_INVALID");
    assert!(msg.contains("U+2581"), "{msg}");
}

#[test]
fn rejects_misplaced_byte_pieces() {
    let tok = edited_tokenizer(|t| t.swap(3, 4));
    let (code, msg) = convert_err(&checkpoint_bytes(), &tok, &ConvertOptions::default());
    assert_eq!(code, "TOKENIZER_INVALID");
    assert!(msg.contains("<0x00>"), "{msg}");
}

#[test]
fn rejects_malformed_inputs_with_engine_codes() {
    let ckpt = checkpoint_bytes();
    let tok = tokenizer_bytes();
    let opts = ConvertOptions::default();
    assert_eq!(
        convert_err(&ckpt[..ckpt.len() - 4], &tok, &opts).0,
        "MODEL_TRUNCATED"
    );
    let mut longer = ckpt.clone();
    longer.push(0);
    assert_eq!(convert_err(&longer, &tok, &opts).0, "MODEL_OVERSIZED");
    let mut bad_header = ckpt.clone();
    bad_header[..4].copy_from_slice(&0i32.to_le_bytes());
    assert_eq!(
        convert_err(&bad_header, &tok, &opts).0,
        "MODEL_HEADER_INVALID"
    );
    let mut nan = ckpt.clone();
    nan[28..32].copy_from_slice(&f32::NAN.to_le_bytes());
    assert_eq!(convert_err(&nan, &tok, &opts).0, "MODEL_WEIGHTS_INVALID");
    assert_eq!(
        convert_err(&ckpt, &tok[..100], &opts).0,
        "TOKENIZER_INVALID"
    );
    assert_eq!(convert_err(&ckpt, &[], &opts).0, "TOKENIZER_INVALID");
}

#[test]
fn rejects_bad_name() {
    for name in [String::new(), "x".repeat(257)] {
        let opts = ConvertOptions {
            name,
            ..ConvertOptions::default()
        };
        let (code, _) = convert_err(&checkpoint_bytes(), &tokenizer_bytes(), &opts);
        assert_eq!(code, "INVALID_PARAMS");
    }
}
