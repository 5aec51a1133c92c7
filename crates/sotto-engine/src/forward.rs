//! The transformer forward pass (llama2.c `forward`, generalised to GGUF Llama/Qwen2/Qwen3),
//! with per-generation state. One code path serves every format: weights are [`Matrix`]es in
//! whatever storage they came in.

use crate::matrix::{Matrix, dot};

/// How RoPE pairs dimensions inside a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RopeStyle {
    /// Adjacent pairs `(2i, 2i+1)` (llama2.c, GGUF `llama`: GGUF stores q/k pre-permuted).
    Norm,
    /// Pairs `(i, i + n_rot/2)` (GGUF `qwen2`/`qwen3`, HF "rotate_half").
    Neox,
}

/// Everything the forward pass needs besides weights.
#[derive(Clone, Debug)]
pub(crate) struct Hparams {
    pub dim: usize,
    pub hidden_dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    /// Width of one head (`dim / n_heads` except for e.g. Qwen3, which sets it explicitly).
    pub head_dim: usize,
    pub vocab_size: usize,
    /// Usable context: the model's, capped by the load options.
    pub seq_len: usize,
    pub rms_eps: f32,
    pub rope_theta: f32,
    /// Rotated dimensions per head (even, <= head_dim).
    pub rope_dim: usize,
    pub rope_style: RopeStyle,
    /// Llama 3 `rope_freqs.weight`: divisor per frequency (`rope_dim / 2` values).
    pub rope_freq_factors: Option<Vec<f32>>,
    /// Linear RoPE scaling: positions are multiplied by this (1.0 = none).
    pub rope_pos_scale: f32,
}

/// One transformer block.
pub(crate) struct Layer {
    pub attn_norm: Vec<f32>,
    pub wq: Matrix,
    pub wk: Matrix,
    pub wv: Matrix,
    pub wo: Matrix,
    /// Qwen2 projection biases.
    pub bq: Option<Vec<f32>>,
    pub bk: Option<Vec<f32>>,
    pub bv: Option<Vec<f32>>,
    /// Qwen3 per-head RMSNorm weights (`head_dim` values), applied before RoPE.
    pub q_norm: Option<Vec<f32>>,
    pub k_norm: Option<Vec<f32>>,
    pub ffn_norm: Vec<f32>,
    /// SwiGLU: `down(silu(gate x) * up x)` (llama2.c w1, w3, w2).
    pub gate: Matrix,
    pub up: Matrix,
    pub down: Matrix,
}

/// All weights of a model.
pub(crate) struct Weights {
    /// `vocab_size x dim`.
    pub embed: Matrix,
    pub layers: Vec<Layer>,
    pub final_norm: Vec<f32>,
    /// `None` when the classifier is tied to `embed`.
    pub output: Option<Matrix>,
}

impl Weights {
    pub fn classifier(&self) -> &Matrix {
        self.output.as_ref().unwrap_or(&self.embed)
    }
}

/// Activations and KV cache for one generation. Borrowing the model immutably keeps the
/// weights shared across concurrent generations.
pub(crate) struct State<'m> {
    hp: &'m Hparams,
    w: &'m Weights,
    x: Vec<f32>,
    xb: Vec<f32>,
    xb2: Vec<f32>,
    hb: Vec<f32>,
    hb2: Vec<f32>,
    q: Vec<f32>,
    /// Attention output, `n_heads * head_dim`.
    att_out: Vec<f32>,
    att: Vec<f32>,
    /// `(cos, sin)` per rotated pair at the current position, shared by all heads and layers.
    rope_cs: Vec<(f32, f32)>,
    logits: Vec<f32>,
    /// Per layer, `positions x kv_dim`. Grown one position at a time so a short generation
    /// never pays for a full `seq_len` cache; callers refuse positions >= seq_len.
    key_cache: Vec<Vec<f32>>,
    value_cache: Vec<Vec<f32>>,
}

impl<'m> State<'m> {
    pub fn new(hp: &'m Hparams, w: &'m Weights) -> Self {
        let q_dim = hp.n_heads * hp.head_dim;
        State {
            hp,
            w,
            x: vec![0.0; hp.dim],
            xb: vec![0.0; hp.dim],
            xb2: vec![0.0; hp.dim],
            hb: vec![0.0; hp.hidden_dim],
            hb2: vec![0.0; hp.hidden_dim],
            q: vec![0.0; q_dim],
            att_out: vec![0.0; q_dim],
            att: Vec::new(),
            rope_cs: vec![(1.0, 0.0); hp.rope_dim / 2],
            logits: vec![0.0; hp.vocab_size],
            key_cache: vec![Vec::new(); hp.n_layers],
            value_cache: vec![Vec::new(); hp.n_layers],
        }
    }

    /// Runs `token` at position `pos` and returns the next-token logits.
    ///
    /// Positions must be fed in order 0, 1, 2, ... and `pos < seq_len` (the caller enforces it).
    pub fn forward(&mut self, token: u32, pos: usize) -> &[f32] {
        self.forward_hidden(token, pos);
        let w = self.w;
        rmsnorm_in_place(&mut self.x, &w.final_norm, self.hp.rms_eps);
        w.classifier().matvec(&mut self.logits, &self.x);
        &self.logits
    }

    fn rope_tables(&mut self, pos: usize) {
        let hp = self.hp;
        let p = pos as f32 * hp.rope_pos_scale;
        for (i, cs) in self.rope_cs.iter_mut().enumerate() {
            // Same expression as run.c (`1 / theta^(2i/n)`) so llama2.c output stays bit-exact.
            let mut freq = 1.0 / hp.rope_theta.powf((2 * i) as f32 / hp.rope_dim as f32);
            if let Some(f) = hp.rope_freq_factors.as_ref().and_then(|f| f.get(i)) {
                freq /= f;
            }
            let (sin, cos) = (p * freq).sin_cos();
            *cs = (cos, sin);
        }
    }

    /// Runs all transformer blocks, leaving the final hidden state (before the last norm) in
    /// `x`. Prompt tokens other than the last only need this: their logits are never used.
    pub fn forward_hidden(&mut self, token: u32, pos: usize) {
        let (hp, w) = (self.hp, self.w);
        let head_dim = hp.head_dim;
        let kv_dim = hp.n_kv_heads * head_dim;
        // Grouped-query attention: this many query heads share one key/value head.
        let kv_mul = hp.n_heads / hp.n_kv_heads;
        let eps = hp.rms_eps;
        debug_assert!(pos < hp.seq_len);

        w.embed.row_into(token as usize, &mut self.x);
        self.rope_tables(pos);

        for (l, lw) in w.layers.iter().enumerate() {
            // --- attention ---
            rmsnorm(&mut self.xb, &self.x, &lw.attn_norm, eps);

            let kc = &mut self.key_cache[l];
            let vc = &mut self.value_cache[l];
            kc.resize((pos + 1) * kv_dim, 0.0);
            vc.resize((pos + 1) * kv_dim, 0.0);
            let k = &mut kc[pos * kv_dim..];
            let v = &mut vc[pos * kv_dim..];
            lw.wq.matvec(&mut self.q, &self.xb);
            lw.wk.matvec(k, &self.xb);
            lw.wv.matvec(v, &self.xb);
            if let Some(b) = &lw.bq {
                add_in_place(&mut self.q, b);
            }
            if let Some(b) = &lw.bk {
                add_in_place(k, b);
            }
            if let Some(b) = &lw.bv {
                add_in_place(v, b);
            }
            if let Some(n) = &lw.q_norm {
                for h in self.q.chunks_exact_mut(head_dim) {
                    rmsnorm_in_place(h, n, eps);
                }
            }
            if let Some(n) = &lw.k_norm {
                for h in k.chunks_exact_mut(head_dim) {
                    rmsnorm_in_place(h, n, eps);
                }
            }
            rope(&mut self.q, head_dim, &self.rope_cs, hp.rope_style);
            rope(k, head_dim, &self.rope_cs, hp.rope_style);

            let scale = 1.0 / (head_dim as f32).sqrt();
            self.att.resize(pos + 1, 0.0);
            for h in 0..hp.n_heads {
                let q = &self.q[h * head_dim..(h + 1) * head_dim];
                let kv_off = (h / kv_mul) * head_dim;
                for (t, a) in self.att.iter_mut().enumerate() {
                    let base = t * kv_dim + kv_off;
                    *a = dot(q, &kc[base..base + head_dim]) * scale;
                }
                softmax(&mut self.att);
                let out = &mut self.att_out[h * head_dim..(h + 1) * head_dim];
                out.fill(0.0);
                for (t, &a) in self.att.iter().enumerate() {
                    let base = t * kv_dim + kv_off;
                    for (o, &vv) in out.iter_mut().zip(&vc[base..base + head_dim]) {
                        *o += a * vv;
                    }
                }
            }
            lw.wo.matvec(&mut self.xb2, &self.att_out);
            add_in_place(&mut self.x, &self.xb2);

            // --- SwiGLU feed-forward: down(silu(gate x) * up x) ---
            rmsnorm(&mut self.xb, &self.x, &lw.ffn_norm, eps);
            lw.gate.matvec(&mut self.hb, &self.xb);
            lw.up.matvec(&mut self.hb2, &self.xb);
            for (a, &b) in self.hb.iter_mut().zip(&self.hb2) {
                let silu = *a / (1.0 + (-*a).exp());
                *a = silu * b;
            }
            lw.down.matvec(&mut self.xb, &self.hb);
            add_in_place(&mut self.x, &self.xb);
        }
    }
}

fn add_in_place(x: &mut [f32], y: &[f32]) {
    for (a, &b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

fn rms_scale(x: &[f32], eps: f32) -> f32 {
    let ss = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32 + eps;
    1.0 / ss.sqrt()
}

fn rmsnorm(out: &mut [f32], x: &[f32], weight: &[f32], eps: f32) {
    let s = rms_scale(x, eps);
    for ((o, &xi), &wi) in out.iter_mut().zip(x).zip(weight) {
        *o = wi * (s * xi);
    }
}

fn rmsnorm_in_place(x: &mut [f32], weight: &[f32], eps: f32) {
    let s = rms_scale(x, eps);
    for (xi, &wi) in x.iter_mut().zip(weight) {
        *xi = wi * (s * *xi);
    }
}

/// In-place softmax, subtracting the max for numerical stability.
pub(crate) fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in x.iter_mut() {
        *v /= sum;
    }
}

/// Rotary position embedding with precomputed `(cos, sin)` per pair: [`RopeStyle::Norm`]
/// rotates `(2i, 2i+1)` (llama2.c), [`RopeStyle::Neox`] rotates `(i, i + n_rot/2)`. Only the
/// first `2 * cs.len()` dimensions of each head rotate.
fn rope(vec: &mut [f32], head_dim: usize, cs: &[(f32, f32)], style: RopeStyle) {
    let half = cs.len();
    for head in vec.chunks_exact_mut(head_dim) {
        match style {
            RopeStyle::Norm => {
                for (pair, &(cos, sin)) in head.chunks_exact_mut(2).zip(cs) {
                    let (v0, v1) = (pair[0], pair[1]);
                    pair[0] = v0 * cos - v1 * sin;
                    pair[1] = v0 * sin + v1 * cos;
                }
            }
            RopeStyle::Neox => {
                let (lo, hi) = head.split_at_mut(half);
                for ((a, b), &(cos, sin)) in lo.iter_mut().zip(hi.iter_mut()).zip(cs) {
                    let (v0, v1) = (*a, *b);
                    *a = v0 * cos - v1 * sin;
                    *b = v0 * sin + v1 * cos;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_at_zero_is_identity_and_preserves_norm() {
        for style in [RopeStyle::Norm, RopeStyle::Neox] {
            let mut v = vec![1.0, 2.0, 3.0, 4.0];
            rope(&mut v, 4, &[(1.0, 0.0); 2], style);
            assert_eq!(v, vec![1.0, 2.0, 3.0, 4.0]);
            let cs: Vec<(f32, f32)> = [0.3f32, 1.1].iter().map(|a| (a.cos(), a.sin())).collect();
            rope(&mut v, 4, &cs, style);
            let n: f32 = v.iter().map(|x| x * x).sum();
            assert!((n - 30.0).abs() < 1e-4);
        }
    }

    #[test]
    fn rope_styles_pair_different_dimensions() {
        // A quarter turn on pair 0 only: Norm moves dim 0 into dim 1, Neox into dim 2.
        let cs = [(0.0, 1.0), (1.0, 0.0)];
        let mut a = vec![1.0, 0.0, 0.0, 0.0];
        rope(&mut a, 4, &cs, RopeStyle::Norm);
        assert_eq!(a, vec![0.0, 1.0, 0.0, 0.0]);
        let mut b = vec![1.0, 0.0, 0.0, 0.0];
        rope(&mut b, 4, &cs, RopeStyle::Neox);
        assert_eq!(b, vec![0.0, 0.0, 1.0, 0.0]);
    }

    #[test]
    fn softmax_sums_to_one() {
        let mut v = vec![1.0, 2.0, 3.0];
        softmax(&mut v);
        assert!((v.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(v[2] > v[1] && v[1] > v[0]);
    }
}
