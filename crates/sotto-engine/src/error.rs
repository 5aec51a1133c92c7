//! The engine's single error type.

/// Every failure the engine reports.
///
/// Messages never contain prompt text (prompts are private user data); they only carry sizes,
/// offsets and static descriptions. [`EngineError::code`] gives a stable machine-readable code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The checkpoint file could not be read.
    #[error("cannot read model checkpoint: {0}")]
    ModelIo(#[source] std::io::Error),
    /// The tokenizer file could not be read.
    #[error("cannot read tokenizer: {0}")]
    TokenizerIo(#[source] std::io::Error),
    /// The checkpoint header has out-of-range or inconsistent values.
    #[error("invalid model header: {0}")]
    ModelHeaderInvalid(String),
    /// The checkpoint is shorter than its header requires.
    #[error("model checkpoint truncated: expected {expected} bytes, got {actual}")]
    ModelTruncated {
        /// Size implied by the header (or the header size itself).
        expected: u64,
        /// Actual size.
        actual: u64,
    },
    /// The checkpoint is longer than its header implies (wrong file or wrong format).
    #[error("model checkpoint has trailing data: expected {expected} bytes, got {actual}")]
    ModelOversized {
        /// Size implied by the header.
        expected: u64,
        /// Actual size.
        actual: u64,
    },
    /// A weight is NaN or infinite.
    #[error("model weights invalid: non-finite value in tensor {tensor} at index {index}")]
    ModelWeightsInvalid {
        /// Tensor name (llama2.c naming).
        tensor: &'static str,
        /// Element index inside that tensor.
        index: usize,
    },
    /// The tokenizer file is malformed or does not match the model.
    #[error("invalid tokenizer: {0}")]
    TokenizerInvalid(String),
    /// Generation parameters are out of range.
    #[error("invalid generation parameters: {0}")]
    InvalidParams(&'static str),
    /// The prompt does not fit in the model's context window.
    #[error("prompt of {prompt_tokens} tokens exceeds the context length of {seq_len} tokens")]
    ContextOverflow {
        /// Tokens in the encoded prompt including BOS (a lower bound when the prompt was
        /// rejected before encoding because of its byte length).
        prompt_tokens: usize,
        /// The model's maximum sequence length.
        seq_len: usize,
    },
    /// The GGUF converter could not build or write its output (not an input problem).
    #[error("model conversion failed: {0}")]
    ConvertFailed(String),
}

impl EngineError {
    /// Stable, machine-readable identifier for the variant (safe to expose to clients).
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::ModelIo(_) => "MODEL_IO",
            EngineError::TokenizerIo(_) => "TOKENIZER_IO",
            EngineError::ModelHeaderInvalid(_) => "MODEL_HEADER_INVALID",
            EngineError::ModelTruncated { .. } => "MODEL_TRUNCATED",
            EngineError::ModelOversized { .. } => "MODEL_OVERSIZED",
            EngineError::ModelWeightsInvalid { .. } => "MODEL_WEIGHTS_INVALID",
            EngineError::TokenizerInvalid(_) => "TOKENIZER_INVALID",
            EngineError::InvalidParams(_) => "INVALID_PARAMS",
            EngineError::ContextOverflow { .. } => "CONTEXT_OVERFLOW",
            EngineError::ConvertFailed(_) => "CONVERT_FAILED",
        }
    }
}
