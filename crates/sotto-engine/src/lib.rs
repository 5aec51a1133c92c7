//! sotto-engine: a small, dependency-light CPU inference engine for llama2.c checkpoints.
//!
//! First cut: float32 llama2.c checkpoints (`.bin` with a 7 x i32 header) and llama2.c
//! tokenizers, single-threaded plain-Rust matmuls, greedy or temperature + top-p sampling with
//! a seeded deterministic RNG. Everything read from disk is validated; malformed files produce
//! an [`EngineError`], never a panic.
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
pub mod convert;
mod error;
mod forward;
mod sampler;
mod tokenizer;
mod utf8;

use std::ops::ControlFlow;
use std::path::Path;

pub use checkpoint::Config;
pub use error::EngineError;
pub use tokenizer::{BOS, EOS, Tokenizer};

use checkpoint::Weights;
use forward::State;
use sampler::Sampler;
use utf8::Utf8Stream;

/// A loaded model: configuration, weights and tokenizer. Immutable after loading, so it is
/// `Send + Sync` and can be shared in an `Arc` across threads; every [`Model::generate`] call
/// allocates its own KV cache and activations.
pub struct Model {
    config: Config,
    weights: Weights,
    tokenizer: Tokenizer,
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
    /// The model produced BOS or EOS (the stop token is not counted or emitted).
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
        let (config, weights) = checkpoint::parse(checkpoint)?;
        let tokenizer = Tokenizer::from_bytes(tokenizer, config.vocab_size)?;
        Ok(Model {
            config,
            weights,
            tokenizer,
        })
    }

    /// Model hyper-parameters.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The model's tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Number of tokens `text` encodes to, BOS included (what `generate` would count as
    /// `prompt_tokens`).
    pub fn count_tokens(&self, text: &str) -> usize {
        self.tokenizer.encode(text, true, false).len()
    }

    /// Runs one generation after `prompt`.
    ///
    /// `on_text` receives each new piece of decoded text as soon as it forms valid UTF-8
    /// (partial multi-byte sequences are buffered; invalid bytes become U+FFFD; lone ASCII
    /// control bytes other than whitespace are dropped, like llama2.c's `safe_printf`). The
    /// first piece after BOS has its leading space stripped, as in llama2.c.
    ///
    /// Stops when `on_text` returns `Break` ([`FinishReason::Cancelled`]), when the model emits
    /// BOS or EOS ([`FinishReason::Stop`]), or after `max_tokens` tokens or at the end of the
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
        let seq_len = self.config.seq_len;
        // Each token covers at most max_token_length bytes, so a longer prompt cannot fit.
        // Checking first avoids encoding arbitrarily large inputs just to reject them.
        let min_tokens = prompt.len() / self.tokenizer.max_token_length();
        if min_tokens > seq_len {
            return Err(EngineError::ContextOverflow {
                prompt_tokens: min_tokens,
                seq_len,
            });
        }
        let prompt_ids = self.tokenizer.encode(prompt, true, false);
        if prompt_ids.len() > seq_len {
            return Err(EngineError::ContextOverflow {
                prompt_tokens: prompt_ids.len(),
                seq_len,
            });
        }
        let prompt_tokens = u32::try_from(prompt_ids.len()).unwrap_or(u32::MAX);

        let mut state = State::new(&self.config, &self.weights);
        let mut sampler = Sampler::new(params.temperature, params.top_p, params.seed);
        let mut utf8 = Utf8Stream::default();
        let mut text = String::new();

        // Prefill: all prompt tokens but the last only fill the KV cache.
        let last = prompt_ids.len() - 1; // encode(.., bos=true) is never empty
        for (pos, &tok) in prompt_ids[..last].iter().enumerate() {
            state.forward_hidden(tok, pos);
        }
        let mut token = prompt_ids[last];
        let mut pos = last;
        let mut completion_tokens = 0u32;
        let finish_reason = loop {
            let next = sampler.sample(state.forward(token, pos));
            if next == BOS || next == EOS {
                break FinishReason::Stop;
            }
            completion_tokens += 1;
            let piece = self.tokenizer.decode(token, next);
            text.clear();
            if !is_unsafe_control(piece) {
                utf8.push(piece, &mut text);
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
