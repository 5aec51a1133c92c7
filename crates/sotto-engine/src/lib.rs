//! sotto-engine: a small CPU inference engine for llama2.c checkpoints and GGUF models.
//!
//! Formats: float32 llama2.c checkpoints (`.bin` with a 7 x i32 header) with llama2.c
//! tokenizers, and GGUF v2/v3 files of the `llama`, `qwen2` and `qwen3` architectures with
//! F32/F16/Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/Q2_K..Q6_K weights (see `docs/engine.md`, "Model formats
//! and architectures"). GGUF weights are memory-mapped and used in place; quantized products
//! use candle's GGML kernels on raw blocks. Large products are split over rows with rayon.
//! GGUF tokenizers (SentencePiece and byte-level BPE) and Jinja chat templates come from the
//! file. Sampling: greedy or temperature, top-k, top-p, min-p, repetition/presence/frequency
//! penalties and stop strings, with a seeded deterministic RNG. Everything read
//! from disk is validated; malformed files produce an [`EngineError`], never a panic.
//!
//! Compatibility with llama2.c `run.c`: same forward pass (RMSNorm eps 1e-5, RoPE recomputed
//! per head, grouped-query attention, SwiGLU), same tokenizer encode/decode, same greedy and
//! top-p sampling rules. Greedy output therefore matches `run -t 0.0` token for token.
//! The sampling RNG is llama2.c's xorshift64* with its `random_f32`, but the seed is first
//! scrambled with SplitMix64 (raw xorshift is degenerate for seed 0), so seeded *sampled* text
//! is deterministic across runs and platforms but differs from `run -s <seed>`.
//!
//! ```no_run
//! use std::ops::ControlFlow;
//! use sotto_engine::{GenerateParams, Model};
//! let model = Model::load("stories260K.bin".as_ref(), "tok512.bin".as_ref())?;
//! let params = GenerateParams { temperature: 0.0, ..GenerateParams::default() };
//! model.generate("Once upon a time", &params, &mut |piece| {
//!     print!("{piece}");
//!     ControlFlow::Continue(())
//! })?;
//! # Ok::<(), sotto_engine::EngineError>(())
//! ```

pub mod bench;
mod chat_template;
mod checkpoint;
pub mod convert;
mod error;
mod forward;
mod gguf;
mod gguf_info;
mod gguf_model;
mod gguf_tokenizer;
mod matrix;
mod sampler;
mod stop;
mod tokenizer;
mod utf8;

use std::borrow::Cow;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;

pub use chat_template::{CHATML_TEMPLATE, ChatMessage, render_chat, render_chat_at};
pub use checkpoint::Config;
pub use error::EngineError;
pub use gguf_info::{describe_gguf, describe_gguf_file, is_gguf_file};
pub use gguf_model::LoadOptions;
pub use gguf_tokenizer::{GgufTokenizer, VocabSpec};
pub use tokenizer::{BOS, EOS, Tokenizer};

use forward::{Hparams, State, Weights};
use matrix::Store;
use sampler::Sampler;
use stop::StopMatcher;
use utf8::Utf8Stream;

/// A loaded model: configuration, weights and tokenizer. Immutable after loading, so it is
/// `Send + Sync` and can be shared in an `Arc` across threads; every [`Model::generate`] call
/// allocates its own KV cache and activations.
pub struct Model {
    config: Config,
    hp: Hparams,
    weights: Weights,
    vocab: Vocab,
}

/// Memory-maps a model file read-only.
pub(crate) fn map_file(path: &Path) -> Result<memmap2::Mmap, EngineError> {
    let file = std::fs::File::open(path).map_err(EngineError::ModelIo)?;
    // SAFETY: the map is read-only, and we only read it through bounds-checked slices.
    // Like every mmap-based loader (llama.cpp included) this relies on the model file not
    // being truncated or rewritten by another process while loaded; model files are
    // treated as immutable (the enclave does not map: it hashes and parses one copy).
    unsafe { memmap2::Mmap::map(&file) }.map_err(EngineError::ModelIo)
}

/// The text side of a model: encoding prompts, decoding tokens, recognising stop tokens.
/// Keeping it behind one enum lets llama2.c and GGUF vocabularies share the generate loop.
enum Vocab {
    /// SentencePiece-style (llama2.c `tokenizer.bin`, or a GGUF "llama" vocabulary).
    Spm {
        tok: Tokenizer,
        /// Token ids that end a generation.
        stops: Vec<u32>,
    },
    /// A GGUF vocabulary (SentencePiece or byte-level BPE) with its special tokens and chat
    /// template.
    Gguf {
        /// Boxed: the tokenizer's byte tables make it large and models hold one vocabulary.
        tok: Box<GgufTokenizer>,
        /// Longest byte sequence of one token, computed once.
        max_len: usize,
    },
}

impl Vocab {
    /// Encodes a prompt (BOS first when the vocabulary wants it). In a GGUF vocabulary,
    /// special tokens written in the text (`<|im_start|>`, `</s>`…) are parsed as such: chat
    /// templates produce them. A template that already starts with BOS does not get a second.
    fn encode(&self, text: &str) -> Result<Vec<u32>, EngineError> {
        match self {
            Vocab::Spm { tok, .. } => Ok(tok.encode(text, true, false)),
            Vocab::Gguf { tok, .. } => {
                let mut ids = tok.encode(text, tok.add_bos_default())?;
                if let Some(bos) = tok.bos()
                    && ids.len() >= 2
                    && ids[0] == bos
                    && ids[1] == bos
                {
                    ids.remove(0);
                }
                if ids.is_empty() {
                    // The forward pass needs one token to start from.
                    ids.extend(tok.bos().or(tok.eos()));
                }
                Ok(ids)
            }
        }
    }

    fn max_token_length(&self) -> usize {
        match self {
            Vocab::Spm { tok, .. } => tok.max_token_length(),
            Vocab::Gguf { max_len, .. } => *max_len,
        }
    }

    fn decode(&self, prev: u32, token: u32) -> Cow<'_, [u8]> {
        match self {
            Vocab::Spm { tok, .. } => Cow::Borrowed(tok.decode(prev, token)),
            Vocab::Gguf { tok, .. } => {
                let mut bytes = tok.token_bytes(token).unwrap_or_default();
                // SentencePiece's dummy prefix: the first piece after BOS loses its space.
                if tok.is_sentencepiece() && Some(prev) == tok.bos() && bytes.first() == Some(&b' ')
                {
                    bytes.remove(0);
                }
                Cow::Owned(bytes)
            }
        }
    }

    fn is_stop(&self, token: u32) -> bool {
        match self {
            Vocab::Spm { stops, .. } => stops.contains(&token),
            // BOS too, like llama2.c: a model that starts over has finished.
            Vocab::Gguf { tok, .. } => tok.is_stop(token) || Some(token) == tok.bos(),
        }
    }
}

/// Builds the vocabulary of a GGUF model.
fn vocab_from_spec(mut spec: VocabSpec) -> Result<Vocab, EngineError> {
    // llama.cpp's defaults for SentencePiece vocabularies without the ids in their metadata
    // (older conversions): <unk> 0, BOS 1, EOS 2.
    if spec.model == "llama" && spec.tokens.len() > 2 {
        spec.bos = spec.bos.or(Some(BOS));
        spec.eos = spec.eos.or(Some(EOS));
    }
    let tok = GgufTokenizer::from_spec(spec)?;
    let max_len = tok.max_token_bytes().max(1);
    Ok(Vocab::Gguf {
        tok: Box::new(tok),
        max_len,
    })
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Parameters of one generation.
///
/// Defaults (see [`GenerateParams::default`]) switch every extension off; the order in which
/// the options apply is penalties → temperature (or greedy) → top-k → top-p → min-p → draw
/// (details in `docs/engine.md`, section "Sampling").
#[derive(Clone, Debug)]
pub struct GenerateParams {
    /// Maximum number of generated tokens (prompt excluded); must be >= 1.
    pub max_tokens: u32,
    /// Softmax temperature; `0.0` means greedy (argmax). Must be finite and >= 0.
    pub temperature: f32,
    /// Nucleus mass in (0, 1]; `1.0` samples from the full distribution.
    pub top_p: f32,
    /// Seed of the sampling RNG: the same seed, prompt and parameters give the same output.
    pub seed: u64,
    /// Keep only the `top_k` most likely tokens; `0` = off, `1` = greedy.
    pub top_k: u32,
    /// Drop tokens less than `min_p` times as likely as the most likely one; in [0, 1],
    /// `0` = off.
    pub min_p: f32,
    /// llama.cpp/CTRL repetition penalty: the logit of every token seen among the last
    /// `repeat_last_n` tokens (prompt included) is divided by it if positive, multiplied by
    /// it otherwise. Finite and > 0; `1` = off.
    pub repetition_penalty: f32,
    /// Window of the repetition penalty in tokens; `0` disables the penalty.
    pub repeat_last_n: u32,
    /// OpenAI presence penalty in [-2, 2]: subtracted once from the logit of every token
    /// generated so far. `0` = off.
    pub presence_penalty: f32,
    /// OpenAI frequency penalty in [-2, 2]: subtracted from a token's logit once per time it
    /// was generated so far. `0` = off.
    pub frequency_penalty: f32,
    /// Up to [`MAX_STOP_STRINGS`] non-empty strings; generation ends before the first one
    /// that appears in the generated text, which is not emitted ([`FinishReason::Stop`]).
    pub stop: Vec<String>,
}

/// Most stop strings one generation may have (OpenAI's limit).
pub const MAX_STOP_STRINGS: usize = 4;

/// Default window of [`GenerateParams::repeat_last_n`] (llama.cpp's default).
pub const DEFAULT_REPEAT_LAST_N: u32 = 64;

impl Default for GenerateParams {
    fn default() -> Self {
        GenerateParams {
            max_tokens: 256,
            temperature: 1.0,
            top_p: 0.9,
            seed: 0,
            top_k: 0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            repeat_last_n: DEFAULT_REPEAT_LAST_N,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            stop: Vec::new(),
        }
    }
}

impl GenerateParams {
    /// Checks the ranges documented on each field.
    pub fn validate(&self) -> Result<(), EngineError> {
        if self.max_tokens == 0 {
            return Err(EngineError::InvalidParams("max_tokens must be at least 1"));
        }
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(EngineError::InvalidParams(
                "temperature must be a finite number >= 0",
            ));
        }
        // Written so that NaN fails too.
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(EngineError::InvalidParams("top_p must be in (0, 1]"));
        }
        if !(self.min_p >= 0.0 && self.min_p <= 1.0) {
            return Err(EngineError::InvalidParams("min_p must be in [0, 1]"));
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return Err(EngineError::InvalidParams(
                "repetition_penalty must be a finite number > 0",
            ));
        }
        if !(self.presence_penalty >= -2.0 && self.presence_penalty <= 2.0) {
            return Err(EngineError::InvalidParams(
                "presence_penalty must be in [-2, 2]",
            ));
        }
        if !(self.frequency_penalty >= -2.0 && self.frequency_penalty <= 2.0) {
            return Err(EngineError::InvalidParams(
                "frequency_penalty must be in [-2, 2]",
            ));
        }
        if self.stop.len() > MAX_STOP_STRINGS {
            return Err(EngineError::InvalidParams("at most 4 stop strings"));
        }
        if self.stop.iter().any(String::is_empty) {
            return Err(EngineError::InvalidParams("stop strings must not be empty"));
        }
        Ok(())
    }
}

/// Why a generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// The model produced a stop token: BOS or EOS (and a GGUF vocabulary's end-of-turn
    /// tokens; the stop token is not counted or emitted), or the generated text reached one of
    /// the stop strings (the token completing it is counted, the stop string and anything
    /// after it are not emitted).
    Stop,
    /// `max_tokens` was reached or the context window is full.
    Length,
    /// The `on_text` callback returned `ControlFlow::Break`.
    Cancelled,
}

/// Summary of one generation.
#[derive(Clone, Debug)]
pub struct Generation {
    /// Tokens in the encoded prompt, BOS included.
    pub prompt_tokens: u32,
    /// Tokens generated (a final BOS/EOS stop token is not counted; the token that completed
    /// a stop string is, even though its text is withheld).
    pub completion_tokens: u32,
    /// Why generation ended.
    pub finish_reason: FinishReason,
}

impl Model {
    /// Loads a llama2.c checkpoint and tokenizer from disk.
    pub fn load(checkpoint: &Path, tokenizer: &Path) -> Result<Model, EngineError> {
        let ckpt = std::fs::read(checkpoint).map_err(EngineError::ModelIo)?;
        let tok = std::fs::read(tokenizer).map_err(EngineError::TokenizerIo)?;
        Model::from_bytes(&ckpt, &tok)
    }

    /// Parses a llama2.c checkpoint and tokenizer from memory. The tokenizer must hold exactly
    /// the model's `vocab_size` tokens.
    pub fn from_bytes(checkpoint: &[u8], tokenizer: &[u8]) -> Result<Model, EngineError> {
        let (config, hp, weights) = checkpoint::parse(checkpoint)?;
        let tok = Tokenizer::from_bytes(tokenizer, config.vocab_size)?;
        Ok(Model {
            config,
            hp,
            weights,
            vocab: Vocab::Spm {
                tok,
                stops: vec![BOS, EOS],
            },
        })
    }

    /// Loads a GGUF model (weights, hyper-parameters and tokenizer) from disk. The file is
    /// memory-mapped and its weights are used in place.
    pub fn load_gguf(path: &Path, opts: &LoadOptions) -> Result<Model, EngineError> {
        let map = map_file(path)?;
        Model::from_store(Store::Mapped(map), opts)
    }

    /// Parses a GGUF model held in memory (copied once into an aligned buffer).
    pub fn from_gguf_bytes(data: &[u8], opts: &LoadOptions) -> Result<Model, EngineError> {
        Model::from_store(Store::copy_of(data), opts)
    }

    fn from_store(store: Store, opts: &LoadOptions) -> Result<Model, EngineError> {
        // GGUF and GGML blocks are little-endian and viewed in place.
        if cfg!(target_endian = "big") {
            return Err(EngineError::UnsupportedFeature(
                "GGUF on big-endian hosts".into(),
            ));
        }
        let loaded = gguf_model::load(Arc::new(store), opts)?;
        let vocab = vocab_from_spec(loaded.vocab)?;
        Ok(Model {
            config: loaded.config,
            hp: loaded.hp,
            weights: loaded.weights,
            vocab,
        })
    }

    /// Loads either format: a GGUF file (recognised by its magic; it carries its own
    /// tokenizer, so `tokenizer` must be `None`) with [`LoadOptions::default`], or a llama2.c
    /// checkpoint with its required `tokenizer` file.
    pub fn load_auto(model: &Path, tokenizer: Option<&Path>) -> Result<Model, EngineError> {
        if is_gguf_file(model)? {
            if tokenizer.is_some() {
                return Err(EngineError::TokenizerInvalid(
                    "GGUF models carry their own tokenizer; none may be given".into(),
                ));
            }
            return Model::load_gguf(model, &LoadOptions::default());
        }
        let tokenizer = tokenizer.ok_or_else(|| {
            EngineError::TokenizerInvalid("a llama2.c checkpoint needs a tokenizer file".into())
        })?;
        Model::load(model, tokenizer)
    }

    /// Model hyper-parameters.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The llama2.c tokenizer of a llama2.c model (`None` for a GGUF model: see
    /// [`Model::gguf_tokenizer`]).
    pub fn tokenizer(&self) -> Option<&Tokenizer> {
        match &self.vocab {
            Vocab::Spm { tok, .. } => Some(tok),
            Vocab::Gguf { .. } => None,
        }
    }

    /// The tokenizer of a GGUF model (`None` for a llama2.c model).
    pub fn gguf_tokenizer(&self) -> Option<&GgufTokenizer> {
        match &self.vocab {
            Vocab::Gguf { tok, .. } => Some(tok.as_ref()),
            Vocab::Spm { .. } => None,
        }
    }

    /// Longest byte sequence one token stands for: a prompt of `n` bytes encodes to at least
    /// `n / max_token_length()` tokens (a cheap bound checked before encoding).
    pub fn max_token_length(&self) -> usize {
        self.vocab.max_token_length()
    }

    /// The model's chat template, if its file has one (llama2.c checkpoints have none).
    pub fn chat_template(&self) -> Option<&str> {
        self.gguf_tokenizer().and_then(GgufTokenizer::chat_template)
    }

    /// Renders a conversation with the model's chat template (with the generation prompt
    /// for the assistant's turn), exactly the text the model was trained on. `Ok(None)` when
    /// the model has no template (a base model): callers then use plain text.
    pub fn render_chat(
        &self,
        messages: &[chat_template::ChatMessage],
    ) -> Result<Option<String>, EngineError> {
        let Some(tok) = self.gguf_tokenizer() else {
            return Ok(None);
        };
        let Some(template) = tok.chat_template() else {
            return Ok(None);
        };
        let text = |id: Option<u32>| id.and_then(|i| tok.token_text(i)).unwrap_or("").to_string();
        chat_template::render_chat(template, messages, true, &text(tok.bos()), &text(tok.eos()))
            .map(Some)
    }

    /// Number of tokens `text` encodes to, BOS included (what `generate` would count as
    /// `prompt_tokens`).
    pub fn count_tokens(&self, text: &str) -> usize {
        self.vocab.encode(text).map(|t| t.len()).unwrap_or(0)
    }

    /// Next-token logits after each token of `tokens` (fed from position 0), for testing a
    /// model against a reference implementation. Fails with
    /// [`EngineError::ContextOverflow`] past the context window and [`EngineError::InvalidParams`]
    /// for an out-of-vocabulary id.
    pub fn logits(&self, tokens: &[u32]) -> Result<Vec<Vec<f32>>, EngineError> {
        if tokens.len() > self.hp.seq_len {
            return Err(EngineError::ContextOverflow {
                prompt_tokens: tokens.len(),
                seq_len: self.hp.seq_len,
            });
        }
        if tokens.iter().any(|&t| t as usize >= self.hp.vocab_size) {
            return Err(EngineError::InvalidParams(
                "token id outside the vocabulary",
            ));
        }
        let mut state = State::new(&self.hp, &self.weights);
        Ok(tokens
            .iter()
            .enumerate()
            .map(|(pos, &t)| state.forward(t, pos).to_vec())
            .collect())
    }

    /// Runs one generation after `prompt`.
    ///
    /// `on_text` receives each new piece of decoded text as soon as it forms valid UTF-8
    /// (partial multi-byte sequences are buffered; invalid bytes become U+FFFD; lone ASCII
    /// control bytes other than whitespace are dropped, like llama2.c's `safe_printf`). The
    /// first piece after BOS has its leading space stripped, as in llama2.c.
    ///
    /// With [`GenerateParams::stop`] set, text that could be the start of a stop string is held
    /// back until it is clear it is not; the first stop string to appear and everything after
    /// it are never passed to `on_text`.
    ///
    /// Stops when `on_text` returns `Break` ([`FinishReason::Cancelled`]), when the model emits
    /// a stop token or the text reaches a stop string ([`FinishReason::Stop`]), or after `max_tokens` tokens or at the end of the
    /// context window ([`FinishReason::Length`]). Like llama2.c, the token sampled at the last
    /// position `seq_len - 1` is still emitted, so at most `seq_len - prompt_tokens + 1` tokens
    /// are generated.
    ///
    /// Errors: [`EngineError::InvalidParams`] for out-of-range parameters and
    /// [`EngineError::ContextOverflow`] for a prompt longer than `seq_len` tokens.
    pub fn generate(
        &self,
        prompt: &str,
        params: &GenerateParams,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Generation, EngineError> {
        params.validate()?;
        let seq_len = self.hp.seq_len;
        // Each token covers at most max_token_length bytes, so a longer prompt cannot fit.
        // Checking first avoids encoding arbitrarily large inputs just to reject them.
        let min_tokens = prompt.len() / self.vocab.max_token_length().max(1);
        if min_tokens > seq_len {
            return Err(EngineError::ContextOverflow {
                prompt_tokens: min_tokens,
                seq_len,
            });
        }
        let prompt_ids = self.vocab.encode(prompt)?;
        if prompt_ids.len() > seq_len {
            return Err(EngineError::ContextOverflow {
                prompt_tokens: prompt_ids.len(),
                seq_len,
            });
        }
        let prompt_tokens = u32::try_from(prompt_ids.len()).unwrap_or(u32::MAX);

        // Only ids the embedding covers may enter the forward pass.
        if prompt_ids.is_empty() || prompt_ids.iter().any(|&t| t as usize >= self.hp.vocab_size) {
            return Err(EngineError::TokenizerInvalid(
                "prompt encodes to an empty sequence or an id outside the model's vocabulary"
                    .into(),
            ));
        }
        let mut state = State::new(&self.hp, &self.weights);
        let mut sampler = Sampler::new(params, self.hp.vocab_size, &prompt_ids);
        let mut stop = StopMatcher::new(&params.stop);
        let mut utf8 = Utf8Stream::default();
        let mut text = String::new();

        // Prefill: all prompt tokens but the last only fill the KV cache.
        let last = prompt_ids.len() - 1; // checked non-empty above
        for (pos, &tok) in prompt_ids[..last].iter().enumerate() {
            state.forward_hidden(tok, pos);
        }
        let mut token = prompt_ids[last];
        let mut pos = last;
        let mut completion_tokens = 0u32;
        let mut finish_reason = loop {
            let next = sampler.sample(state.forward(token, pos));
            if self.vocab.is_stop(next) {
                break FinishReason::Stop;
            }
            completion_tokens += 1;
            let piece = self.vocab.decode(token, next);
            text.clear();
            if !is_unsafe_control(&piece) {
                utf8.push(&piece, &mut text);
            }
            let stopped = stop.filter(&mut text);
            if !text.is_empty() && on_text(&text).is_break() {
                break FinishReason::Cancelled;
            }
            if stopped {
                break FinishReason::Stop;
            }
            pos += 1;
            if completion_tokens >= params.max_tokens || pos >= seq_len {
                break FinishReason::Length;
            }
            token = next;
        };
        if finish_reason != FinishReason::Cancelled && !stop.matched() {
            text.clear();
            utf8.finish(&mut text);
            if stop.filter(&mut text) {
                finish_reason = FinishReason::Stop;
            } else {
                // Text held back as a possible stop-string start is final now.
                stop.flush(&mut text);
            }
            if !text.is_empty() {
                // Generation is over either way; a Break here changes nothing.
                let _ = on_text(&text);
            }
        }
        Ok(Generation {
            prompt_tokens,
            completion_tokens,
            finish_reason,
        })
    }
}

/// A single raw ASCII control byte that is not whitespace (llama2.c's `safe_printf` filter).
fn is_unsafe_control(piece: &[u8]) -> bool {
    match piece {
        [b] => (b.is_ascii_control() && !b" \t\n\x0b\x0c\r".contains(b)) || *b == 0x7f,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_is_send_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Model>();
    }

    #[test]
    fn control_filter() {
        assert!(is_unsafe_control(b"\x1b"));
        assert!(!is_unsafe_control(b"\n"));
        assert!(!is_unsafe_control(b"a"));
        assert!(!is_unsafe_control(b"\x1b["));
    }
}
