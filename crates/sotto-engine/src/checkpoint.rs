//! llama2.c checkpoint parsing: a header of seven little-endian i32, then float32 tensors.

use crate::EngineError;
use crate::forward::{Hparams, Layer, RopeStyle, Weights};
use crate::matrix::Matrix;

/// RMSNorm epsilon used by llama2.c.
const RMS_EPS: f32 = 1e-5;
/// RoPE base frequency used by llama2.c.
const ROPE_THETA: f32 = 10000.0;

/// Size of the llama2.c header: seven little-endian i32.
pub const HEADER_LEN: usize = 7 * 4;

// Upper bounds on header values. They are far above any model this engine can usefully run
// on a CPU, and exist so that a corrupt header cannot make us compute absurd sizes.
const MAX_DIM: usize = 1 << 16;
const MAX_HIDDEN_DIM: usize = 1 << 18;
const MAX_LAYERS: usize = 1 << 10;
const MAX_HEADS: usize = 1 << 10;
const MAX_VOCAB: usize = 1 << 21;
const MAX_SEQ_LEN: usize = 1 << 20;

/// Model hyper-parameters, as read from the checkpoint header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Transformer width (embedding size).
    pub dim: usize,
    /// Inner width of the SwiGLU feed-forward layers.
    pub hidden_dim: usize,
    /// Number of transformer blocks.
    pub n_layers: usize,
    /// Number of query heads.
    pub n_heads: usize,
    /// Number of key/value heads (fewer than `n_heads` means grouped-query attention).
    pub n_kv_heads: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Maximum sequence length (context window), in tokens. For GGUF models this is the
    /// model's context length capped by [`crate::LoadOptions::max_context`].
    pub seq_len: usize,
    /// Width of one attention head (`dim / n_heads` unless the model says otherwise, e.g.
    /// Qwen3).
    pub head_dim: usize,
    /// Whether the output classifier shares the token-embedding matrix.
    pub shared_classifier: bool,
}

impl Config {
    /// Width of one attention head.
    pub fn head_size(&self) -> usize {
        self.head_dim
    }

    /// Width of the key/value projections (`n_kv_heads * head_size`).
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_size()
    }

    /// Parses and validates the header at the start of `data`.
    pub(crate) fn parse_header(data: &[u8]) -> Result<Config, EngineError> {
        let Some(header) = data.get(..HEADER_LEN) else {
            return Err(EngineError::ModelTruncated {
                expected: HEADER_LEN as u64,
                actual: data.len() as u64,
            });
        };
        let mut v = [0i32; 7];
        for (slot, chunk) in v.iter_mut().zip(header.chunks_exact(4)) {
            *slot = i32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        let [
            dim,
            hidden_dim,
            n_layers,
            n_heads,
            n_kv_heads,
            vocab,
            seq_len,
        ] = v;
        // llama2.c convention: a negative vocab_size flags an unshared classifier.
        let shared_classifier = vocab > 0;
        let vocab_size = vocab.unsigned_abs();

        let bounded = |name: &str, value: i64, max: usize| -> Result<usize, EngineError> {
            if value <= 0 || value as u64 > max as u64 {
                return Err(EngineError::ModelHeaderInvalid(format!(
                    "{name} = {value} is outside 1..={max}"
                )));
            }
            Ok(value as usize)
        };
        let cfg = Config {
            dim: bounded("dim", dim.into(), MAX_DIM)?,
            hidden_dim: bounded("hidden_dim", hidden_dim.into(), MAX_HIDDEN_DIM)?,
            n_layers: bounded("n_layers", n_layers.into(), MAX_LAYERS)?,
            n_heads: bounded("n_heads", n_heads.into(), MAX_HEADS)?,
            n_kv_heads: bounded("n_kv_heads", n_kv_heads.into(), MAX_HEADS)?,
            vocab_size: bounded("vocab_size", vocab_size.into(), MAX_VOCAB)?,
            seq_len: bounded("seq_len", seq_len.into(), MAX_SEQ_LEN)?,
            head_dim: 0,
            shared_classifier,
        };
        if !cfg.dim.is_multiple_of(cfg.n_heads) {
            return Err(EngineError::ModelHeaderInvalid(format!(
                "dim {} is not divisible by n_heads {}",
                cfg.dim, cfg.n_heads
            )));
        }
        if cfg.n_kv_heads > cfg.n_heads || !cfg.n_heads.is_multiple_of(cfg.n_kv_heads) {
            return Err(EngineError::ModelHeaderInvalid(format!(
                "n_heads {} is not a multiple of n_kv_heads {}",
                cfg.n_heads, cfg.n_kv_heads
            )));
        }
        let cfg = Config {
            head_dim: cfg.dim / cfg.n_heads,
            ..cfg
        };
        // RoPE rotates pairs of dimensions inside each head.
        if !cfg.head_size().is_multiple_of(2) {
            return Err(EngineError::ModelHeaderInvalid(format!(
                "head size {} is odd; RoPE needs pairs",
                cfg.head_size()
            )));
        }
        Ok(cfg)
    }

    /// Number of float32 values after the header, or `None` on arithmetic overflow.
    fn expected_floats(&self) -> Option<usize> {
        let (d, h, l, v) = (self.dim, self.hidden_dim, self.n_layers, self.vocab_size);
        let kv = self.kv_dim();
        let per_layer = d
            .checked_mul(2)? // attention + ffn rmsnorm
            .checked_add(d.checked_mul(d)?.checked_mul(2)?)? // wq, wo
            .checked_add(kv.checked_mul(d)?.checked_mul(2)?)? // wk, wv
            .checked_add(h.checked_mul(d)?.checked_mul(3)?)?; // w1, w2, w3
        let embedding = v.checked_mul(d)?;
        let freq_cis = self.seq_len.checked_mul(self.head_size())?; // real + imag halves
        let classifier = if self.shared_classifier { 0 } else { embedding };
        per_layer
            .checked_mul(l)?
            .checked_add(embedding)?
            .checked_add(d)? // final rmsnorm
            .checked_add(freq_cis)?
            .checked_add(classifier)
    }
}

/// Reads consecutive float32 tensors; the caller has already checked the total length.
struct TensorReader<'a> {
    data: &'a [u8],
}

impl TensorReader<'_> {
    fn take(&mut self, name: &'static str, n: usize) -> Result<Vec<f32>, EngineError> {
        let bytes = n * 4;
        // Size was validated up front; this branch only guards against internal bugs.
        let (head, rest) =
            self.data
                .split_at_checked(bytes)
                .ok_or(EngineError::ModelTruncated {
                    expected: bytes as u64,
                    actual: self.data.len() as u64,
                })?;
        self.data = rest;
        let mut out = Vec::with_capacity(n);
        for (index, c) in head.chunks_exact(4).enumerate() {
            let value = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            // A NaN/inf weight would silently poison every output; reject the file instead.
            if !value.is_finite() {
                return Err(EngineError::ModelWeightsInvalid {
                    tensor: name,
                    index,
                });
            }
            out.push(value);
        }
        Ok(out)
    }

    fn skip(&mut self, n: usize) {
        self.data = self.data.get(n * 4..).unwrap_or(&[]);
    }
}

/// Parses a whole checkpoint: header, exact size check, then the tensors.
pub(crate) fn parse(data: &[u8]) -> Result<(Config, Hparams, Weights), EngineError> {
    let cfg = Config::parse_header(data)?;
    let expected = cfg
        .expected_floats()
        .and_then(|f| f.checked_mul(4))
        .and_then(|b| b.checked_add(HEADER_LEN))
        .ok_or_else(|| EngineError::ModelHeaderInvalid("tensor sizes overflow".into()))?;
    let actual = data.len();
    if actual < expected {
        return Err(EngineError::ModelTruncated {
            expected: expected as u64,
            actual: actual as u64,
        });
    }
    if actual > expected {
        return Err(EngineError::ModelOversized {
            expected: expected as u64,
            actual: actual as u64,
        });
    }
    let (d, h, l, v) = (cfg.dim, cfg.hidden_dim, cfg.n_layers, cfg.vocab_size);
    let kv = cfg.kv_dim();
    let mut r = TensorReader {
        data: &data[HEADER_LEN..],
    };
    let token_embedding = r.take("token_embedding", v * d)?;
    let rms_att = r.take("rms_att", l * d)?;
    let wq = r.take("wq", l * d * d)?;
    let wk = r.take("wk", l * kv * d)?;
    let wv = r.take("wv", l * kv * d)?;
    let wo = r.take("wo", l * d * d)?;
    let rms_ffn = r.take("rms_ffn", l * d)?;
    let w1 = r.take("w1", l * h * d)?;
    let w2 = r.take("w2", l * d * h)?;
    let w3 = r.take("w3", l * h * d)?;
    let rms_final = r.take("rms_final", d)?;
    // freq_cis_real / freq_cis_imag: legacy precomputed RoPE tables; we recompute RoPE.
    r.skip(cfg.seq_len * cfg.head_size());
    let wcls = if cfg.shared_classifier {
        None
    } else {
        Some(r.take("wcls", v * d)?)
    };
    // Split the llama2.c per-kind buffers into per-layer matrices (one copy, at load).
    let split = |t: &[f32], rows: usize, cols: usize| -> Vec<Matrix> {
        t.chunks_exact(rows * cols)
            .map(|c| Matrix::owned(rows, cols, c.to_vec()))
            .collect()
    };
    let norms = |t: &[f32]| -> Vec<Vec<f32>> { t.chunks_exact(d).map(<[f32]>::to_vec).collect() };
    let mut layers = Vec::with_capacity(l);
    let parts = norms(&rms_att)
        .into_iter()
        .zip(split(&wq, d, d))
        .zip(split(&wk, kv, d))
        .zip(split(&wv, kv, d))
        .zip(split(&wo, d, d))
        .zip(norms(&rms_ffn))
        .zip(split(&w1, h, d))
        .zip(split(&w2, d, h))
        .zip(split(&w3, h, d));
    for ((((((((attn_norm, wq), wk), wv), wo), ffn_norm), gate), down), up) in parts {
        layers.push(Layer {
            attn_norm,
            wq,
            wk,
            wv,
            wo,
            bq: None,
            bk: None,
            bv: None,
            q_norm: None,
            k_norm: None,
            ffn_norm,
            gate,
            up,
            down,
        });
    }
    let weights = Weights {
        embed: Matrix::owned(v, d, token_embedding),
        layers,
        final_norm: rms_final,
        output: wcls.map(|w| Matrix::owned(v, d, w)),
    };
    let hp = Hparams {
        dim: d,
        hidden_dim: h,
        n_layers: l,
        n_heads: cfg.n_heads,
        n_kv_heads: cfg.n_kv_heads,
        head_dim: cfg.head_dim,
        vocab_size: v,
        seq_len: cfg.seq_len,
        rms_eps: RMS_EPS,
        rope_theta: ROPE_THETA,
        rope_dim: cfg.head_dim,
        rope_style: RopeStyle::Norm,
        rope_freq_factors: None,
        rope_pos_scale: 1.0,
    };
    Ok((cfg, hp, weights))
}
