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
    /// The GGUF vocabulary uses a tokenizer model or pre-tokenizer this engine does not implement.
    #[error("unsupported tokenizer: {0}")]
    TokenizerUnsupported(String),
    /// Text could not be tokenized (regex backtracking limit, or a character the vocabulary cannot
    /// represent and no byte-fallback/unknown token exists).
    #[error("cannot tokenize text: {0}")]
    TokenizerEncode(&'static str),
    /// The chat template does not parse (message: error kind, line and parser detail; the
    /// template comes from the model file, never from users).
    #[error("invalid chat template: {0}")]
    ChatTemplateInvalid(String),
    /// The chat template called `raise_exception` (its message is not kept: templates may build
    /// it from message contents).
    #[error("chat template raised an exception (line {line})")]
    ChatTemplateException {
        /// Template line of the call, 0 if unknown.
        line: usize,
    },
    /// Rendering the chat template failed (message: error kind and line only).
    #[error("chat template render failed: {0}")]
    ChatTemplateRender(String),
    /// Rendering the chat template exceeded the output-size or instruction (fuel) budget.
    #[error("chat template exceeded its {0} limit")]
    ChatTemplateLimit(&'static str),
    /// The GGUF file is structurally invalid (bad magic, inconsistent lengths, offsets,
    /// alignment, duplicate names, invalid UTF-8, ...).
    #[error("malformed GGUF file: {0}")]
    GgufMalformed(String),
    /// The GGUF file ends before a structure or tensor it declares.
    #[error("GGUF file truncated: needs {expected} bytes, has {actual}")]
    GgufTruncated {
        /// Bytes needed to read the structure or tensor that did not fit.
        expected: u64,
        /// Actual file size.
        actual: u64,
    },
    /// The GGUF container version is not 2 or 3.
    #[error("unsupported GGUF version {0} (supported: 2, 3)")]
    GgufUnsupportedVersion(u32),
    /// A required metadata key is missing or has the wrong type or an out-of-range value.
    #[error("invalid GGUF metadata: {0}")]
    GgufMetadataInvalid(String),
    /// `general.architecture` names an architecture this engine does not implement.
    #[error("unsupported model architecture {0:?} (supported: llama, qwen2, qwen3)")]
    UnsupportedArchitecture(String),
    /// A tensor uses a GGML data type this engine cannot compute with.
    #[error("tensor {tensor} has unsupported type {ggml_type}")]
    UnsupportedTensorType {
        /// Tensor name from the file.
        tensor: String,
        /// GGML type id, or its name when known.
        ggml_type: String,
    },
    /// A model feature this engine does not implement (e.g. YaRN RoPE scaling).
    #[error("unsupported model feature: {0}")]
    UnsupportedFeature(String),
    /// A tensor the architecture requires is absent.
    #[error("required tensor {0} is missing")]
    TensorMissing(String),
    /// A tensor's shape does not match the hyper-parameters.
    #[error("tensor {tensor} has shape {actual:?}, expected {expected:?}")]
    TensorShapeMismatch {
        /// Tensor name.
        tensor: String,
        /// Shape implied by the metadata (GGUF order: innermost dimension first).
        expected: Vec<u64>,
        /// Shape in the file.
        actual: Vec<u64>,
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
            EngineError::TokenizerUnsupported(_) => "TOKENIZER_UNSUPPORTED",
            EngineError::TokenizerEncode(_) => "TOKENIZER_ENCODE",
            EngineError::ChatTemplateInvalid(_) => "CHAT_TEMPLATE_INVALID",
            EngineError::ChatTemplateException { .. } => "CHAT_TEMPLATE_EXCEPTION",
            EngineError::ChatTemplateRender(_) => "CHAT_TEMPLATE_RENDER",
            EngineError::ChatTemplateLimit(_) => "CHAT_TEMPLATE_LIMIT",
            EngineError::GgufMalformed(_) => "GGUF_MALFORMED",
            EngineError::GgufTruncated { .. } => "GGUF_TRUNCATED",
            EngineError::GgufUnsupportedVersion(_) => "GGUF_UNSUPPORTED_VERSION",
            EngineError::GgufMetadataInvalid(_) => "GGUF_METADATA_INVALID",
            EngineError::UnsupportedArchitecture(_) => "UNSUPPORTED_ARCHITECTURE",
            EngineError::UnsupportedTensorType { .. } => "UNSUPPORTED_TENSOR_TYPE",
            EngineError::UnsupportedFeature(_) => "UNSUPPORTED_FEATURE",
            EngineError::TensorMissing(_) => "TENSOR_MISSING",
            EngineError::TensorShapeMismatch { .. } => "TENSOR_SHAPE_MISMATCH",
            EngineError::ConvertFailed(_) => "CONVERT_FAILED",
        }
    }
}
