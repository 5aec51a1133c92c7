//! The transformer forward pass (llama2.c `forward`), with per-generation state.

use crate::checkpoint::{Config, Weights};

/// RMSNorm epsilon used by llama2.c.
const RMS_EPS: f32 = 1e-5;
/// RoPE base frequency.
const ROPE_THETA: f32 = 10000.0;

/// Activations and KV cache for one generation. Borrowing the model immutably keeps the
/// weights shared across concurrent generations.
pub(crate) struct State<'m> {
    cfg: &'m Config,
    w: &'m Weights,
    x: Vec<f32>,
    xb: Vec<f32>,
    xb2: Vec<f32>,
    hb: Vec<f32>,
    hb2: Vec<f32>,
    q: Vec<f32>,
    att: Vec<f32>,
    logits: Vec<f32>,
    /// Per layer, `positions x kv_dim`. Grown one position at a time so a short generation
    /// never pays for a full `seq_len` cache; `forward` refuses positions >= seq_len.
    key_cache: Vec<Vec<f32>>,
    value_cache: Vec<Vec<f32>>,
}

impl<'m> State<'m> {
    pub fn new(cfg: &'m Config, w: &'m Weights) -> Self {
        State {
            cfg,
            w,
            x: vec![0.0; cfg.dim],
            xb: vec![0.0; cfg.dim],
            xb2: vec![0.0; cfg.dim],
            hb: vec![0.0; cfg.hidden_dim],
            hb2: vec![0.0; cfg.hidden_dim],
            q: vec![0.0; cfg.dim],
            att: Vec::new(),
            logits: vec![0.0; cfg.vocab_size],
            key_cache: vec![Vec::new(); cfg.n_layers],
            value_cache: vec![Vec::new(); cfg.n_layers],
        }
    }

    /// Runs `token` at position `pos` and returns the next-token logits.
    ///
    /// Positions must be fed in order 0, 1, 2, ... and `pos < seq_len` (the caller enforces it).
    pub fn forward(&mut self, token: u32, pos: usize) -> &[f32] {
        self.forward_hidden(token, pos);
        let w = self.w;
        rmsnorm_in_place(&mut self.x, &w.rms_final);
        matmul(&mut self.logits, &self.x, w.classifier());
        &self.logits
    }

    /// Runs all transformer blocks, leaving the final hidden state (before the last norm) in
    /// `x`. Prompt tokens other than the last only need this: their logits are never used.
    pub fn forward_hidden(&mut self, token: u32, pos: usize) {
        let (cfg, w) = (self.cfg, self.w);
        let (dim, hidden) = (cfg.dim, cfg.hidden_dim);
        let head_size = cfg.head_size();
        let kv_dim = cfg.kv_dim();
        // Grouped-query attention: this many query heads share one key/value head.
        let kv_mul = cfg.n_heads / cfg.n_kv_heads;
        debug_assert!(pos < cfg.seq_len);

        let row = token as usize * dim;
        self.x.copy_from_slice(&w.token_embedding[row..row + dim]);

        for l in 0..cfg.n_layers {
            // --- attention ---
            rmsnorm(&mut self.xb, &self.x, &w.rms_att[l * dim..(l + 1) * dim]);

            let kc = &mut self.key_cache[l];
            let vc = &mut self.value_cache[l];
            kc.resize((pos + 1) * kv_dim, 0.0);
            vc.resize((pos + 1) * kv_dim, 0.0);
            let k = &mut kc[pos * kv_dim..];
            let v = &mut vc[pos * kv_dim..];
            matmul(&mut self.q, &self.xb, layer(&w.wq, l, dim * dim));
            matmul(k, &self.xb, layer(&w.wk, l, kv_dim * dim));
            matmul(v, &self.xb, layer(&w.wv, l, kv_dim * dim));
            rope(&mut self.q, pos, head_size);
            rope(k, pos, head_size);

            let scale = 1.0 / (head_size as f32).sqrt();
            self.att.resize(pos + 1, 0.0);
            for h in 0..cfg.n_heads {
                let q = &self.q[h * head_size..(h + 1) * head_size];
                let kv_off = (h / kv_mul) * head_size;
                for (t, a) in self.att.iter_mut().enumerate() {
                    let base = t * kv_dim + kv_off;
                    *a = dot(q, &kc[base..base + head_size]) * scale;
                }
                softmax(&mut self.att);
                let out = &mut self.xb[h * head_size..(h + 1) * head_size];
                out.fill(0.0);
                for (t, &a) in self.att.iter().enumerate() {
                    let base = t * kv_dim + kv_off;
                    for (o, &vv) in out.iter_mut().zip(&vc[base..base + head_size]) {
                        *o += a * vv;
                    }
                }
            }
            matmul(&mut self.xb2, &self.xb, layer(&w.wo, l, dim * dim));
            add_in_place(&mut self.x, &self.xb2);

            // --- SwiGLU feed-forward: w2(silu(w1 x) * w3 x) ---
            rmsnorm(&mut self.xb, &self.x, &w.rms_ffn[l * dim..(l + 1) * dim]);
            matmul(&mut self.hb, &self.xb, layer(&w.w1, l, hidden * dim));
            matmul(&mut self.hb2, &self.xb, layer(&w.w3, l, hidden * dim));
            for (a, &b) in self.hb.iter_mut().zip(&self.hb2) {
                let silu = *a / (1.0 + (-*a).exp());
                *a = silu * b;
            }
            matmul(&mut self.xb, &self.hb, layer(&w.w2, l, dim * hidden));
            add_in_place(&mut self.x, &self.xb);
        }
    }
}

/// Slice of layer `l` in a tensor whose layers each hold `size` floats.
fn layer(t: &[f32], l: usize, size: usize) -> &[f32] {
    &t[l * size..(l + 1) * size]
}

fn add_in_place(x: &mut [f32], y: &[f32]) {
    for (a, &b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

fn rms_scale(x: &[f32]) -> f32 {
    let ss = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32 + RMS_EPS;
    1.0 / ss.sqrt()
}

fn rmsnorm(out: &mut [f32], x: &[f32], weight: &[f32]) {
    let s = rms_scale(x);
    for ((o, &xi), &wi) in out.iter_mut().zip(x).zip(weight) {
        *o = wi * (s * xi);
    }
}

fn rmsnorm_in_place(x: &mut [f32], weight: &[f32]) {
    let s = rms_scale(x);
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

/// Rotary position embedding, llama2.c style: within each head, pair `(2i, 2i+1)` rotates by
/// `pos * 10000^(-2i/head_size)`.
fn rope(vec: &mut [f32], pos: usize, head_size: usize) {
    for head in vec.chunks_exact_mut(head_size) {
        for (i, pair) in head.chunks_exact_mut(2).enumerate() {
            let freq = 1.0 / ROPE_THETA.powf((2 * i) as f32 / head_size as f32);
            let (sin, cos) = (pos as f32 * freq).sin_cos();
            let (v0, v1) = (pair[0], pair[1]);
            pair[0] = v0 * cos - v1 * sin;
            pair[1] = v0 * sin + v1 * cos;
        }
    }
}

/// Dot product with eight independent accumulators so the compiler can vectorise it.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    let mut acc = [0.0f32; 8];
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `out = W x` for a row-major `W` of shape `out.len() x x.len()`.
fn matmul(out: &mut [f32], x: &[f32], w: &[f32]) {
    for (o, row) in out.iter_mut().zip(w.chunks_exact(x.len())) {
        *o = dot(row, x);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_naive() {
        let a: Vec<f32> = (0..19).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..19).map(|i| 1.0 - i as f32 * 0.25).collect();
        let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - naive).abs() < 1e-3);
    }

    #[test]
    fn rope_at_zero_is_identity_and_preserves_norm() {
        let mut v = vec![1.0, 2.0, 3.0, 4.0];
        rope(&mut v, 0, 4);
        assert_eq!(v, vec![1.0, 2.0, 3.0, 4.0]);
        rope(&mut v, 7, 4);
        let n: f32 = v.iter().map(|x| x * x).sum();
        assert!((n - 30.0).abs() < 1e-4);
    }

    #[test]
    fn softmax_sums_to_one() {
        let mut v = vec![1.0, 2.0, 3.0];
        softmax(&mut v);
        assert!((v.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(v[2] > v[1] && v[1] > v[0]);
    }
}
