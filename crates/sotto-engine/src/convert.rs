//! llama2.c checkpoint + tokenizer → GGUF, in memory (sans-I/O).
//!
//! The output follows llama.cpp's conventions for the `llama` architecture, so any GGUF reader
//! (llama.cpp, candle's `quantized_llama`, this engine's GGUF loader) runs it:
//!
//! - GGUF v3, 32-byte alignment, metadata and tensors in a fixed order: the same input and
//!   options always give the same bytes, so a release can pin the file's SHA-256.
//! - Hyper-parameters under `llama.*`; RMSNorm epsilon 1e-5 and RoPE base 10000 (llama2.c's
//!   hard-coded values); `rope.dimension_count` is the head size.
//! - Tensors use llama.cpp names (`token_embd`, `blk.N.attn_q`, …, `ffn_gate` = llama2.c `w1`,
//!   `ffn_down` = `w2`, `ffn_up` = `w3`, `output` only when the classifier is not shared).
//!   GGUF lists dimensions innermost first, so a llama2.c `(rows, cols)` matrix becomes
//!   `[cols, rows]`. llama2.c rotates adjacent pairs in RoPE, which is llama.cpp's default
//!   ("NORM") RoPE for `llama`, so q/k rows are copied as they are (no permutation, unlike
//!   the Hugging Face → GGUF path).
//! - The vocabulary becomes a `llama` (SentencePiece) tokenizer: spaces are written as U+2581,
//!   ids 0/1/2 become `<unk>`/`<s>`/`</s>` (llama2.c's export writes BOS/EOS as `"\n<s>\n"`),
//!   ids 3..=258 are byte tokens, BOS is added and EOS is not (llama2.c's `encode(.., 1, 0)`).
//!   There is no chat template: llama2.c checkpoints are base models.
//!
//! Quantization: [`Quantization::Q8_0`] quantizes every 2-D weight whose rows are a multiple
//! of 32 values (the Q8_0 block); other matrices (e.g. stories260K's `ffn_down`, rows of 172)
//! and all norm vectors stay F32. [`Quantization::F16`] stores every 2-D weight as F16.

use std::io::{Cursor, Seek, SeekFrom, Write};

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

use crate::checkpoint::{self, Config};
use crate::{BOS, EOS, EngineError, Tokenizer};

/// GGUF version written. candle's writer emits version 2; version 3 only added big-endian
/// files, so a little-endian v2 file is byte-for-byte a v3 file apart from this field.
pub const GGUF_VERSION: u32 = 3;

/// RMSNorm epsilon of llama2.c (`run.c` hard-codes 1e-5).
pub const RMS_NORM_EPS: f32 = 1e-5;

/// RoPE frequency base of llama2.c (`run.c` hard-codes 10000).
pub const ROPE_FREQ_BASE: f32 = 10_000.0;

/// Values per Q8_0 block: a matrix is quantized only if its rows are a multiple of this.
pub const Q8_0_BLOCK: usize = 32;

/// Id of the unknown token in llama2.c (SentencePiece) vocabularies.
const UNK: u32 = 0;
/// llama2.c's byte fallback: byte `b` is token `b + 3`.
const BYTE_OFFSET: u32 = 3;
/// SentencePiece's visible space, which GGUF `llama` vocabularies use instead of `' '`.
const SPM_SPACE: char = '\u{2581}';

/// llama.cpp `llama_token_type` values written to `tokenizer.ggml.token_type`.
mod token_type {
    pub const NORMAL: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const CONTROL: i32 = 3;
    pub const BYTE: i32 = 6;
}

/// How 2-D weight matrices are stored in the GGUF file (norm vectors are always F32).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Quantization {
    /// Everything float32: lossless, same numbers as the llama2.c checkpoint.
    #[default]
    F32,
    /// 2-D weights as IEEE half floats (rounded to nearest).
    F16,
    /// 2-D weights whose rows are a multiple of 32 as Q8_0 (per-block scale + int8);
    /// other matrices stay F32.
    Q8_0,
}

impl Quantization {
    /// Lower-case name as used on the command line (`f32`, `f16`, `q8_0`).
    pub fn as_str(self) -> &'static str {
        match self {
            Quantization::F32 => "f32",
            Quantization::F16 => "f16",
            Quantization::Q8_0 => "q8_0",
        }
    }

    /// llama.cpp `llama_ftype` recorded as `general.file_type` (the dominant tensor type).
    fn file_type(self) -> u32 {
        match self {
            Quantization::F32 => 0,  // LLAMA_FTYPE_ALL_F32
            Quantization::F16 => 1,  // LLAMA_FTYPE_MOSTLY_F16
            Quantization::Q8_0 => 7, // LLAMA_FTYPE_MOSTLY_Q8_0
        }
    }

    /// GGML type of a `rows x cols` weight matrix.
    fn matrix_dtype(self, cols: usize) -> GgmlDType {
        match self {
            Quantization::F32 => GgmlDType::F32,
            Quantization::F16 => GgmlDType::F16,
            Quantization::Q8_0 if cols.is_multiple_of(Q8_0_BLOCK) => GgmlDType::Q8_0,
            Quantization::Q8_0 => GgmlDType::F32,
        }
    }
}

impl std::str::FromStr for Quantization {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Self, EngineError> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(Quantization::F32),
            "f16" => Ok(Quantization::F16),
            "q8_0" => Ok(Quantization::Q8_0),
            _ => Err(EngineError::InvalidParams(
                "unknown quantization (expected f32, f16 or q8_0)",
            )),
        }
    }
}

/// Options of [`llama2c_to_gguf`].
#[derive(Clone, Debug)]
pub struct ConvertOptions {
    /// Storage of the 2-D weights.
    pub quantize: Quantization,
    /// `general.name` of the model (e.g. the checkpoint's file stem); 1–256 bytes.
    pub name: String,
    /// A Jinja chat template to store as `tokenizer.chat_template` (llama2.c checkpoints
    /// have none; at most 64 KiB; it must parse).
    pub chat_template: Option<String>,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            quantize: Quantization::F32,
            name: "llama2c".into(),
            chat_template: None,
        }
    }
}

/// Longest `general.name` accepted.
const MAX_NAME_LEN: usize = 256;

/// Converts a llama2.c checkpoint and its tokenizer into a GGUF file, returned in memory.
///
/// Errors: the checkpoint and tokenizer are validated exactly as [`crate::Model::from_bytes`]
/// does (same error codes: `MODEL_HEADER_INVALID`, `MODEL_TRUNCATED`, `MODEL_OVERSIZED`,
/// `MODEL_WEIGHTS_INVALID`, `TOKENIZER_INVALID`); in addition `TOKENIZER_INVALID` for a
/// piece that is not UTF-8 (GGUF stores pieces as strings), that contains U+2581 (it would
/// decode as a space), or when ids 3..=258 are not the byte pieces `<0x00>`..`<0xFF>` that
/// llama2.c's byte fallback assumes; `INVALID_PARAMS` for a bad [`ConvertOptions::name`].
pub fn llama2c_to_gguf(
    checkpoint: &[u8],
    tokenizer: &[u8],
    opts: &ConvertOptions,
) -> Result<Vec<u8>, EngineError> {
    let mut out = Cursor::new(Vec::new());
    write_llama2c_gguf(checkpoint, tokenizer, opts, &mut out)?;
    Ok(out.into_inner())
}

/// Like [`llama2c_to_gguf`], but writes the file to `w` (from its current position).
pub fn write_llama2c_gguf<W: Write + Seek>(
    checkpoint: &[u8],
    tokenizer: &[u8],
    opts: &ConvertOptions,
    w: &mut W,
) -> Result<(), EngineError> {
    if opts.name.is_empty() || opts.name.len() > MAX_NAME_LEN {
        return Err(EngineError::InvalidParams(
            "model name must be 1 to 256 bytes long",
        ));
    }
    let (cfg, _hp, weights) = checkpoint::parse(checkpoint)?;
    // Validates the tokenizer (layout, sizes, scores) with the engine's own parser first.
    let tok = Tokenizer::from_bytes(tokenizer, cfg.vocab_size)?;
    let vocab = gguf_vocab(&tok, &read_scores(tokenizer, cfg.vocab_size)?)?;

    let metadata = metadata(&cfg, opts, vocab)?;
    let tensors = tensors(&cfg, &weights, opts.quantize)?;

    let start = w.stream_position().map_err(io_failed)?;
    let md: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    gguf_file::write(w, &md, &ts).map_err(candle_failed)?;
    // Patch the version field (bytes 4..8) from candle's 2 to 3; see GGUF_VERSION.
    let end = w.stream_position().map_err(io_failed)?;
    w.seek(SeekFrom::Start(start + 4)).map_err(io_failed)?;
    w.write_all(&GGUF_VERSION.to_le_bytes())
        .map_err(io_failed)?;
    w.seek(SeekFrom::Start(end)).map_err(io_failed)?;
    Ok(())
}

fn io_failed(e: std::io::Error) -> EngineError {
    EngineError::ConvertFailed(format!("write: {e}"))
}

fn candle_failed(e: candle_core::Error) -> EngineError {
    EngineError::ConvertFailed(e.to_string())
}

/// Scores of a tokenizer file that [`Tokenizer::from_bytes`] has already accepted (the
/// engine's tokenizer keeps them private; re-reading four bytes per token is cheap).
fn read_scores(data: &[u8], vocab_size: usize) -> Result<Vec<f32>, EngineError> {
    let truncated = || EngineError::TokenizerInvalid("truncated".into());
    let word = |at: usize| -> Result<[u8; 4], EngineError> {
        at.checked_add(4)
            .and_then(|end| data.get(at..end))
            .and_then(|b| b.try_into().ok())
            .ok_or_else(truncated)
    };
    let mut at = 4; // after max_token_length
    let mut scores = Vec::with_capacity(vocab_size);
    for _ in 0..vocab_size {
        scores.push(f32::from_le_bytes(word(at)?));
        let len = i32::from_le_bytes(word(at + 4)?);
        let len = usize::try_from(len).map_err(|_| truncated())?;
        at = at
            .checked_add(8)
            .and_then(|a| a.checked_add(len))
            .ok_or_else(truncated)?;
    }
    Ok(scores)
}

/// The GGUF `llama` vocabulary: token strings, scores and types.
struct Vocab {
    tokens: Vec<Value>,
    scores: Vec<Value>,
    types: Vec<Value>,
}

fn gguf_vocab(tok: &Tokenizer, scores: &[f32]) -> Result<Vocab, EngineError> {
    let n = tok.vocab_size();
    let mut vocab = Vocab {
        tokens: Vec::with_capacity(n),
        scores: Vec::with_capacity(n),
        types: Vec::with_capacity(n),
    };
    for (id, &score) in (0u32..).zip(scores) {
        let piece = tok
            .piece(id)
            .ok_or_else(|| EngineError::TokenizerInvalid(format!("token {id} is missing")))?;
        let (text, ty) = match id {
            UNK => ("<unk>".to_string(), token_type::UNKNOWN),
            BOS => ("<s>".to_string(), token_type::CONTROL),
            EOS => ("</s>".to_string(), token_type::CONTROL),
            _ => {
                let text = std::str::from_utf8(piece).map_err(|_| {
                    EngineError::TokenizerInvalid(format!(
                        "token {id} is not valid UTF-8; GGUF stores vocabulary pieces as UTF-8 strings"
                    ))
                })?;
                if text.contains(SPM_SPACE) {
                    return Err(EngineError::TokenizerInvalid(format!(
                        "token {id} contains U+2581, which a GGUF llama vocabulary reads as a space"
                    )));
                }
                let ty = if (BYTE_OFFSET..BYTE_OFFSET + 256).contains(&id) {
                    let byte = id - BYTE_OFFSET;
                    if text != format!("<0x{byte:02X}>") {
                        return Err(EngineError::TokenizerInvalid(format!(
                            "token {id} is not the byte piece <0x{byte:02X}> that llama2.c's byte fallback expects there"
                        )));
                    }
                    token_type::BYTE
                } else if text.is_empty() {
                    // llama.cpp's own llama2.c converter marks empty pieces as control tokens.
                    token_type::CONTROL
                } else {
                    token_type::NORMAL
                };
                (text.replace(' ', "\u{2581}"), ty)
            }
        };
        vocab.tokens.push(Value::String(text));
        vocab.scores.push(Value::F32(score));
        vocab.types.push(Value::I32(ty));
    }
    Ok(vocab)
}

fn u32_of(name: &'static str, v: usize) -> Result<Value, EngineError> {
    u32::try_from(v)
        .map(Value::U32)
        .map_err(|_| EngineError::ModelHeaderInvalid(format!("{name} = {v} does not fit in u32")))
}

/// Metadata in the order it is written (fixed, so output bytes are reproducible).
fn metadata(
    cfg: &Config,
    opts: &ConvertOptions,
    vocab: Vocab,
) -> Result<Vec<(&'static str, Value)>, EngineError> {
    let q = opts.quantize;
    let description = match q {
        Quantization::F32 => {
            "converted from a llama2.c checkpoint by sotto-engine: all tensors F32"
        }
        Quantization::F16 => {
            "converted from a llama2.c checkpoint by sotto-engine: 2-D weights F16, norms F32"
        }
        Quantization::Q8_0 => {
            "converted from a llama2.c checkpoint by sotto-engine: 2-D weights with rows a multiple of 32 Q8_0, other weights and norms F32"
        }
    };
    let mut md = vec![
        ("general.architecture", Value::String("llama".into())),
        ("general.name", Value::String(opts.name.clone())),
        ("general.description", Value::String(description.into())),
        ("general.file_type", Value::U32(q.file_type())),
    ];
    if q == Quantization::Q8_0 {
        // Version of ggml's quantized block layouts (2 since May 2023), as llama.cpp writes.
        md.push(("general.quantization_version", Value::U32(2)));
    }
    md.extend([
        ("llama.vocab_size", u32_of("vocab_size", cfg.vocab_size)?),
        ("llama.context_length", u32_of("seq_len", cfg.seq_len)?),
        ("llama.embedding_length", u32_of("dim", cfg.dim)?),
        ("llama.block_count", u32_of("n_layers", cfg.n_layers)?),
        (
            "llama.feed_forward_length",
            u32_of("hidden_dim", cfg.hidden_dim)?,
        ),
        (
            "llama.attention.head_count",
            u32_of("n_heads", cfg.n_heads)?,
        ),
        (
            "llama.attention.head_count_kv",
            u32_of("n_kv_heads", cfg.n_kv_heads)?,
        ),
        (
            "llama.attention.layer_norm_rms_epsilon",
            Value::F32(RMS_NORM_EPS),
        ),
        (
            "llama.rope.dimension_count",
            u32_of("head_size", cfg.head_size())?,
        ),
        ("llama.rope.freq_base", Value::F32(ROPE_FREQ_BASE)),
        ("tokenizer.ggml.model", Value::String("llama".into())),
        ("tokenizer.ggml.tokens", Value::Array(vocab.tokens)),
        ("tokenizer.ggml.scores", Value::Array(vocab.scores)),
        ("tokenizer.ggml.token_type", Value::Array(vocab.types)),
        ("tokenizer.ggml.unknown_token_id", Value::U32(UNK)),
        ("tokenizer.ggml.bos_token_id", Value::U32(BOS)),
        ("tokenizer.ggml.eos_token_id", Value::U32(EOS)),
        ("tokenizer.ggml.add_bos_token", Value::Bool(true)),
        ("tokenizer.ggml.add_eos_token", Value::Bool(false)),
        // llama2.c's encode adds SentencePiece's dummy-prefix space to a non-empty prompt.
        ("tokenizer.ggml.add_space_prefix", Value::Bool(true)),
    ]);
    if let Some(t) = &opts.chat_template {
        if t.len() > 64 << 10 {
            return Err(EngineError::InvalidParams("chat template over 64 KiB"));
        }
        // Refuse a template that does not even parse now rather than at the first request
        // (runtime refusals such as `raise_exception` depend on the conversation).
        let probe = [crate::chat_template::ChatMessage {
            role: "user".into(),
            content: "hello".into(),
        }];
        if let Err(e @ EngineError::ChatTemplateInvalid(_)) =
            crate::chat_template::render_chat(t, &probe, true, "<s>", "</s>")
        {
            return Err(e);
        }
        md.push(("tokenizer.chat_template", Value::String(t.clone())));
    }
    Ok(md)
}

/// One tensor: `rows x cols` floats (rows = 1 for a vector) from a layer-concatenated
/// llama2.c buffer.
fn tensor(
    data: &[f32],
    layer: usize,
    shape: (usize, usize),
    dtype: GgmlDType,
) -> Result<QTensor, EngineError> {
    let (rows, cols) = shape;
    let n = rows * cols;
    let slice = data
        .get(layer * n..(layer + 1) * n)
        .ok_or_else(|| EngineError::ConvertFailed("tensor out of range".into()))?;
    let t = if rows == 1 {
        Tensor::from_slice(slice, cols, &Device::Cpu)
    } else {
        Tensor::from_slice(slice, (rows, cols), &Device::Cpu)
    }
    .map_err(candle_failed)?;
    QTensor::quantize(&t, dtype).map_err(candle_failed)
}

/// All tensors with their llama.cpp names, in a fixed order.
fn tensors(
    cfg: &Config,
    w: &crate::forward::Weights,
    q: Quantization,
) -> Result<Vec<(String, QTensor)>, EngineError> {
    let (d, h, v, kv) = (cfg.dim, cfg.hidden_dim, cfg.vocab_size, cfg.kv_dim());
    let norm = |data: &[f32]| tensor(data, 0, (1, d), GgmlDType::F32);
    let matrix = |m: &crate::matrix::Matrix, rows: usize, cols: usize| {
        tensor(&m.to_f32(), 0, (rows, cols), q.matrix_dtype(cols))
    };
    let mut out = vec![
        ("token_embd.weight".to_string(), matrix(&w.embed, v, d)?),
        ("output_norm.weight".to_string(), norm(&w.final_norm)?),
    ];
    if let Some(wcls) = &w.output {
        out.push(("output.weight".to_string(), matrix(wcls, v, d)?));
    }
    if w.layers.len() != cfg.n_layers {
        return Err(EngineError::ConvertFailed("layer count".into()));
    }
    for (l, layer) in w.layers.iter().enumerate() {
        let name = |t: &str| format!("blk.{l}.{t}.weight");
        out.push((name("attn_norm"), norm(&layer.attn_norm)?));
        out.push((name("attn_q"), matrix(&layer.wq, d, d)?));
        out.push((name("attn_k"), matrix(&layer.wk, kv, d)?));
        out.push((name("attn_v"), matrix(&layer.wv, kv, d)?));
        out.push((name("attn_output"), matrix(&layer.wo, d, d)?));
        out.push((name("ffn_norm"), norm(&layer.ffn_norm)?));
        out.push((name("ffn_gate"), matrix(&layer.gate, h, d)?));
        out.push((name("ffn_down"), matrix(&layer.down, d, h)?));
        out.push((name("ffn_up"), matrix(&layer.up, h, d)?));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantization_names_round_trip() {
        for q in [Quantization::F32, Quantization::F16, Quantization::Q8_0] {
            assert_eq!(q.as_str().parse::<Quantization>().ok(), Some(q));
        }
        assert!("q4_0".parse::<Quantization>().is_err());
    }

    #[test]
    fn q8_0_only_for_whole_blocks() {
        assert_eq!(Quantization::Q8_0.matrix_dtype(64), GgmlDType::Q8_0);
        assert_eq!(Quantization::Q8_0.matrix_dtype(172), GgmlDType::F32);
        assert_eq!(Quantization::F16.matrix_dtype(172), GgmlDType::F16);
    }
}
