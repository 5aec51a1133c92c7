//! Builds the engine's weights and hyper-parameters from a parsed GGUF file (architectures
//! `llama`, `qwen2`, `qwen3`). Matrices stay in the file's storage (used in place).

use std::sync::Arc;

use crate::EngineError;
use crate::checkpoint::Config;
use crate::forward::{Hparams, Layer, RopeStyle, Weights};
use crate::gguf::{self, Gguf};
use crate::gguf_tokenizer::VocabSpec;
use crate::matrix::{Matrix, Store};

// Upper bounds on hyper-parameters: far above anything this CPU engine can usefully run, and
// there so corrupt metadata cannot make us compute absurd sizes.
const MAX_DIM: usize = 1 << 16;
const MAX_HIDDEN_DIM: usize = 1 << 18;
const MAX_LAYERS: usize = 1 << 10;
const MAX_HEADS: usize = 1 << 10;
const MAX_HEAD_DIM: usize = 1 << 12;
const MAX_CONTEXT: usize = 1 << 24;

/// Options for loading a GGUF model.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Cap on the context window (KV cache positions). The effective context is
    /// `min(model context_length, max_context)`; `None` uses the model's full context. The
    /// default, 4096, keeps a 32k-context model from reserving gigabytes per generation.
    pub max_context: Option<usize>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            max_context: Some(4096),
        }
    }
}

/// Which GGUF architecture a model uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Arch {
    Llama,
    Qwen2,
    Qwen3,
}

/// Everything a GGUF file yields.
pub(crate) struct Loaded {
    pub config: Config,
    pub hp: Hparams,
    pub weights: Weights,
    pub vocab: VocabSpec,
}

struct Ctx<'a> {
    g: &'a Gguf,
    store: &'a Arc<Store>,
}

impl Ctx<'_> {
    fn info(&self, name: &str) -> Result<&gguf::TensorInfo, EngineError> {
        self.g
            .tensors
            .get(name)
            .ok_or_else(|| EngineError::TensorMissing(name.to_owned()))
    }

    /// A `rows x cols` matrix (GGUF dims `[cols, rows]`).
    fn mat(&self, name: &str, rows: usize, cols: usize) -> Result<Matrix, EngineError> {
        let t = self.info(name)?;
        let expected = vec![cols as u64, rows as u64];
        // A trailing dimension of 1 is the same matrix.
        let actual: Vec<u64> = match t.dims.as_slice() {
            [c, r, 1] | [c, r, 1, 1] => vec![*c, *r],
            d => d.to_vec(),
        };
        if actual != expected {
            return Err(EngineError::TensorShapeMismatch {
                tensor: name.to_owned(),
                expected,
                actual: t.dims.clone(),
            });
        }
        Matrix::mapped(name, rows, cols, t.ty, self.store.clone(), t.start, t.len)
    }

    /// A vector of `n` values, converted to f32.
    fn vec(&self, name: &str, n: usize) -> Result<Vec<f32>, EngineError> {
        let t = self.info(name)?;
        if t.dims != [n as u64] {
            return Err(EngineError::TensorShapeMismatch {
                tensor: name.to_owned(),
                expected: vec![n as u64],
                actual: t.dims.clone(),
            });
        }
        let m = Matrix::mapped(name, 1, n, t.ty, self.store.clone(), t.start, t.len)?;
        Ok(m.to_f32())
    }

    fn opt_vec(&self, name: &str, n: usize) -> Result<Option<Vec<f32>>, EngineError> {
        if self.g.tensors.contains_key(name) {
            self.vec(name, n).map(Some)
        } else {
            Ok(None)
        }
    }
}

fn invalid(msg: String) -> EngineError {
    EngineError::GgufMetadataInvalid(msg)
}

/// Parses the GGUF in `store` and maps its weights.
pub(crate) fn load(store: Arc<Store>, opts: &LoadOptions) -> Result<Loaded, EngineError> {
    let g = gguf::parse(store.bytes())?;
    let arch_name = g
        .opt_str("general.architecture")?
        .ok_or_else(|| invalid("general.architecture: missing".into()))?;
    let arch = match arch_name {
        "llama" => Arch::Llama,
        "qwen2" => Arch::Qwen2,
        "qwen3" => Arch::Qwen3,
        other => {
            // The name comes from the file: bound what we echo back.
            let shown: String = other.chars().take(64).collect();
            return Err(EngineError::UnsupportedArchitecture(shown));
        }
    };
    let key = |k: &str| format!("{arch_name}.{k}");

    let dim = g.req_usize(&key("embedding_length"), MAX_DIM)?;
    let n_layers = g.req_usize(&key("block_count"), MAX_LAYERS)?;
    let hidden_dim = g.req_usize(&key("feed_forward_length"), MAX_HIDDEN_DIM)?;
    let n_heads = g.req_usize(&key("attention.head_count"), MAX_HEADS)?;
    let n_kv_heads = g
        .opt_usize(&key("attention.head_count_kv"), MAX_HEADS)?
        .unwrap_or(n_heads);
    let model_ctx = g.req_usize(&key("context_length"), MAX_CONTEXT)?;
    if n_kv_heads > n_heads || !n_heads.is_multiple_of(n_kv_heads) {
        return Err(invalid(format!(
            "head_count {n_heads} is not a multiple of head_count_kv {n_kv_heads}"
        )));
    }
    let head_dim = match g.opt_usize(&key("attention.key_length"), MAX_HEAD_DIM)? {
        Some(h) => h,
        None if dim.is_multiple_of(n_heads) => dim / n_heads,
        None => {
            return Err(invalid(format!(
                "embedding_length {dim} is not divisible by head_count {n_heads}"
            )));
        }
    };
    if let Some(v) = g.opt_usize(&key("attention.value_length"), MAX_HEAD_DIM)?
        && v != head_dim
    {
        return Err(EngineError::UnsupportedFeature(format!(
            "attention value_length {v} differs from key_length {head_dim}"
        )));
    }
    let rope_dim = g
        .opt_usize(&key("rope.dimension_count"), MAX_HEAD_DIM)?
        .unwrap_or(head_dim);
    if !rope_dim.is_multiple_of(2) || rope_dim > head_dim {
        return Err(invalid(format!(
            "rope.dimension_count {rope_dim} must be even and <= head size {head_dim}"
        )));
    }
    let rms_eps = g
        .opt_f32(&key("attention.layer_norm_rms_epsilon"))?
        .unwrap_or(1e-5);
    let rope_theta = g.opt_f32(&key("rope.freq_base"))?.unwrap_or(10000.0);
    let rope_pos_scale = match g.opt_str(&key("rope.scaling.type"))? {
        None | Some("none") => 1.0,
        Some("linear") => {
            let f = g.opt_f32(&key("rope.scaling.factor"))?.unwrap_or(1.0);
            1.0 / f
        }
        Some(other) => {
            let shown: String = other.chars().take(32).collect();
            return Err(EngineError::UnsupportedFeature(format!(
                "RoPE scaling type {shown:?} (supported: none, linear, Llama 3 rope_freqs)"
            )));
        }
    };
    let seq_len = match opts.max_context {
        Some(0) => return Err(EngineError::InvalidParams("max_context must be at least 1")),
        Some(cap) => model_ctx.min(cap),
        None => model_ctx,
    };

    let c = Ctx {
        g: &g,
        store: &store,
    };
    let embd = c.info("token_embd.weight")?;
    let vocab_size = match embd.dims.as_slice() {
        [d, v] if *d == dim as u64 && *v >= 1 && *v <= (1 << 22) => *v as usize,
        d => {
            return Err(EngineError::TensorShapeMismatch {
                tensor: "token_embd.weight".into(),
                expected: vec![dim as u64, 0],
                actual: d.to_vec(),
            });
        }
    };
    let embed = c.mat("token_embd.weight", vocab_size, dim)?;
    let output = if g.tensors.contains_key("output.weight") {
        Some(c.mat("output.weight", vocab_size, dim)?)
    } else {
        None
    };
    let rope_freq_factors = c.opt_vec("rope_freqs.weight", rope_dim / 2)?;
    if rope_freq_factors
        .as_ref()
        .is_some_and(|f| f.iter().any(|x| !(x.is_finite() && *x > 0.0)))
    {
        return Err(invalid("rope_freqs.weight has non-positive values".into()));
    }

    let q_dim = n_heads * head_dim;
    let kv_dim = n_kv_heads * head_dim;
    let mut layers = Vec::with_capacity(n_layers);
    for l in 0..n_layers {
        let n = |t: &str| format!("blk.{l}.{t}");
        let (bq, bk, bv) = if arch == Arch::Qwen2 {
            (
                Some(c.vec(&n("attn_q.bias"), q_dim)?),
                Some(c.vec(&n("attn_k.bias"), kv_dim)?),
                Some(c.vec(&n("attn_v.bias"), kv_dim)?),
            )
        } else {
            (None, None, None)
        };
        let (q_norm, k_norm) = if arch == Arch::Qwen3 {
            (
                Some(c.vec(&n("attn_q_norm.weight"), head_dim)?),
                Some(c.vec(&n("attn_k_norm.weight"), head_dim)?),
            )
        } else {
            (None, None)
        };
        layers.push(Layer {
            attn_norm: c.vec(&n("attn_norm.weight"), dim)?,
            wq: c.mat(&n("attn_q.weight"), q_dim, dim)?,
            wk: c.mat(&n("attn_k.weight"), kv_dim, dim)?,
            wv: c.mat(&n("attn_v.weight"), kv_dim, dim)?,
            wo: c.mat(&n("attn_output.weight"), dim, q_dim)?,
            bq,
            bk,
            bv,
            q_norm,
            k_norm,
            ffn_norm: c.vec(&n("ffn_norm.weight"), dim)?,
            gate: c.mat(&n("ffn_gate.weight"), hidden_dim, dim)?,
            up: c.mat(&n("ffn_up.weight"), hidden_dim, dim)?,
            down: c.mat(&n("ffn_down.weight"), dim, hidden_dim)?,
        });
    }
    let final_norm = c.vec("output_norm.weight", dim)?;
    let vocab = gguf::vocab_spec_from_metadata(&g)?;
    if vocab.tokens.len() > vocab_size {
        return Err(invalid(format!(
            "{} tokens but the embedding has {vocab_size} rows",
            vocab.tokens.len()
        )));
    }

    let config = Config {
        dim,
        hidden_dim,
        n_layers,
        n_heads,
        n_kv_heads,
        vocab_size,
        seq_len,
        head_dim,
        shared_classifier: output.is_none(),
    };
    let hp = Hparams {
        dim,
        hidden_dim,
        n_layers,
        n_heads,
        n_kv_heads,
        head_dim,
        vocab_size,
        seq_len,
        rms_eps,
        rope_theta,
        rope_dim,
        rope_style: match arch {
            Arch::Llama => RopeStyle::Norm,
            Arch::Qwen2 | Arch::Qwen3 => RopeStyle::Neox,
        },
        rope_freq_factors,
        rope_pos_scale,
    };
    let weights = Weights {
        embed,
        layers,
        final_norm,
        output,
    };
    Ok(Loaded {
        config,
        hp,
        weights,
        vocab,
    })
}
