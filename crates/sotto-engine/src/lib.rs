//! sotto-engine: a small CPU inference engine for llama2.c checkpoints and GGUF models.
//!
//! Formats: float32 llama2.c checkpoints (`.bin` with a 7 x i32 header) with llama2.c
//! tokenizers, and GGUF v2/v3 files of the `llama`, `qwen2` and `qwen3` architectures with
//! F32/F16/Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/Q2_K..Q6_K weights (see `docs/engine.md`, "Model formats
//! and architectures"). GGUF weights are memory-mapped and used in place; quantized products
//! use candle's GGML kernels on raw blocks. Large products are split over rows with rayon.
//! Greedy or temperature + top-p sampling with a seeded deterministic RNG. Everything read
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

mod checkpoint;
mod error;
mod forward;
mod gguf;
mod gguf_model;
mod matrix;
mod sampler;
mod tokenizer;
mod utf8;

use std::borrow::Cow;
use std::io::Read;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;

pub use checkpoint::Config;
pub use error::EngineError;
pub use gguf::VocabSpec;
pub use gguf_model::LoadOptions;
pub use tokenizer::{BOS, EOS, Tokenizer};

use forward::{Hparams, State, Weights};
use matrix::Store;
use sampler::Sampler;
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

/// The text side of a model: encoding prompts, decoding tokens, recognising stop tokens.
/// Keeping it behind one enum lets llama2.c and GGUF vocabularies share the generate loop.
enum Vocab {
    /// SentencePiece-style (llama2.c `tokenizer.bin`, or a GGUF "llama" vocabulary).
    Spm {
        tok: Tokenizer,
        /// Token ids that end a generation.
        stops: Vec<u32>,
    },
    // MERGE POINT (GGUF tokenizer): add `Gguf(crate::gguf_tokenizer::GgufTokenizer)` here and
    // in the four methods below, and construct it in `vocab_from_spec`.
}

impl Vocab {
    fn encode(&self, text: &str) -> Result<Vec<u32>, EngineError> {
        match self {
            Vocab::Spm { tok, .. } => Ok(tok.encode(text, true, false)),
        }
    }

    fn max_token_length(&self) -> usize {
        match self {
            Vocab::Spm { tok, .. } => tok.max_token_length(),
        }
    }

    fn decode(&self, prev: u32, token: u32) -> Cow<'_, [u8]> {
        match self {
            Vocab::Spm { tok, .. } => Cow::Borrowed(tok.decode(prev, token)),
        }
    }

    fn is_stop(&self, token: u32) -> bool {
        match self {
            Vocab::Spm { stops, .. } => stops.contains(&token),
        }
    }
}

/// Builds the vocabulary of a GGUF model.
fn vocab_from_spec(spec: VocabSpec) -> Result<Vocab, EngineError> {
    // MERGE POINT (GGUF tokenizer): replace this body with
    // `GgufTokenizer::from_spec(spec).map(Vocab::Gguf)`. Until then only SentencePiece
    // vocabularies laid out like llama2.c's (BOS 1, EOS 2, byte pieces at 3..=258) work.
    if spec.model != "llama" {
        let shown: String = spec.model.chars().take(32).collect();
        return Err(EngineError::UnsupportedFeature(format!(
            "tokenizer model {shown:?} (only \"llama\" for now)"
        )));
    }
    if spec.bos.is_some_and(|b| b != BOS) || spec.eos.is_some_and(|e| e != EOS) {
        return Err(EngineError::TokenizerInvalid(
            "BOS/EOS ids other than 1/2 are not supported yet".into(),
        ));
    }
    let n = spec.tokens.len();
    let scores = spec.scores.unwrap_or_else(|| vec![0.0; n]);
    let pieces = spec
        .tokens
        .into_iter()
        .map(|t| t.replace('\u{2581}', " ").into_bytes())
        .collect();
    let tok = Tokenizer::from_vocab(pieces, scores)?;
    let mut stops = vec![BOS, EOS];
    stops.extend(spec.eot);
    Ok(Vocab::Spm { tok, stops })
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Parameters of one generation.
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
}

impl Default for GenerateParams {
    fn default() -> Self {
        GenerateParams {
            max_tokens: 256,
            temperature: 1.0,
            top_p: 0.9,
            seed: 0,
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
        Ok(())
    }
}

/// Why a generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// The model produced a stop token: BOS or EOS (and a GGUF vocabulary's EOT); the stop
    /// token is not counted or emitted.
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
    /// Tokens generated and emitted (a final BOS/EOS stop token is not counted).
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
        let file = std::fs::File::open(path).map_err(EngineError::ModelIo)?;
        // SAFETY: the map is read-only, and we only read it through bounds-checked slices.
        // Like every mmap-based loader (llama.cpp included) this relies on the model file not
        // being truncated or rewritten by another process while loaded; model files are
        // treated as immutable.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(EngineError::ModelIo)?;
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
        let mut magic = [0u8; 4];
        let n = std::fs::File::open(model)
            .and_then(|mut f| f.read(&mut magic))
            .map_err(EngineError::ModelIo)?;
        if gguf_model::is_gguf(&magic[..n]) {
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

    /// The model's tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        match &self.vocab {
            Vocab::Spm { tok, .. } => tok,
        }
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
    /// Stops when `on_text` returns `Break` ([`FinishReason::Cancelled`]), when the model emits
    /// a stop token ([`FinishReason::Stop`]), or after `max_tokens` tokens or at the end of the
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
        let mut sampler = Sampler::new(params.temperature, params.top_p, params.seed);
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
        let finish_reason = loop {
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
            if !text.is_empty() && on_text(&text).is_break() {
                break FinishReason::Cancelled;
            }
            pos += 1;
            if completion_tokens >= params.max_tokens || pos >= seq_len {
                break FinishReason::Length;
            }
            token = next;
        };
        if finish_reason != FinishReason::Cancelled {
            text.clear();
            utf8.finish(&mut text);
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
