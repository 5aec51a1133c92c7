//! Token sampling: greedy, temperature, and top-p (nucleus), with llama2.c semantics.

use crate::forward::softmax;

/// llama2.c's xorshift64* generator.
///
/// We keep llama2.c's generator and its `random_f32` derivation but scramble the user seed with
/// SplitMix64 first: raw xorshift is stuck at zero for seed 0 and poorly mixed for small seeds.
/// Same seed => same stream, on every platform (pure integer arithmetic).
#[derive(Clone, Debug)]
pub(crate) struct Rng {
    state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        // SplitMix64 finaliser: a bijection, so distinct seeds give distinct states.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // xorshift must never hold 0; exactly one seed maps there.
        Rng {
            state: if z == 0 { 0x9E37_79B9_7F4A_7C15 } else { z },
        }
    }

    fn next_u32(&mut self) -> u32 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        (self.state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32
    }

    /// Uniform in [0, 1), 24 bits of precision (llama2.c `random_f32`).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u32() >> 8) as f32 / 16_777_216.0
    }
}

/// Per-generation sampler state.
pub(crate) struct Sampler {
    temperature: f32,
    top_p: f32,
    rng: Rng,
    probs: Vec<f32>,
    /// Scratch for top-p: (probability, token id).
    candidates: Vec<(f32, u32)>,
}

impl Sampler {
    /// `temperature` must be finite and >= 0, `top_p` in (0, 1] (validated by the caller).
    pub fn new(temperature: f32, top_p: f32, seed: u64) -> Self {
        Sampler {
            temperature,
            top_p,
            rng: Rng::new(seed),
            probs: Vec::new(),
            candidates: Vec::new(),
        }
    }

    /// Picks the next token from `logits`.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        if self.temperature == 0.0 {
            return argmax(logits);
        }
        self.probs.clear();
        self.probs
            .extend(logits.iter().map(|&l| l / self.temperature));
        softmax(&mut self.probs);
        // Draw the coin even for top_p == 1 so the random stream does not depend on top_p.
        let coin = self.rng.next_f32();
        if self.top_p >= 1.0 {
            sample_mult(&self.probs, coin)
        } else {
            sample_topp(&self.probs, self.top_p, coin, &mut self.candidates)
        }
    }
}

/// Index of the first maximum (llama2.c uses a strict `>`); NaNs are never chosen unless
/// everything is NaN or -inf (then 0).
pub(crate) fn argmax(v: &[f32]) -> u32 {
    let (mut best, mut best_val) = (0, f32::NEG_INFINITY);
    for (i, &x) in v.iter().enumerate() {
        if x > best_val {
            (best, best_val) = (i, x);
        }
    }
    best as u32
}

/// Samples from the full distribution by inverting the CDF.
fn sample_mult(probs: &[f32], coin: f32) -> u32 {
    let mut cdf = 0.0;
    for (i, &p) in probs.iter().enumerate() {
        cdf += p;
        if coin < cdf {
            return i as u32;
        }
    }
    probs.len().saturating_sub(1) as u32 // rounding: the CDF may end just below 1
}

/// Nucleus sampling as in llama2.c: keep the smallest prefix of tokens (by descending
/// probability) whose mass exceeds `top_p`, then sample within it.
fn sample_topp(probs: &[f32], top_p: f32, coin: f32, cand: &mut Vec<(f32, u32)>) -> u32 {
    // Tokens below this can never be in the nucleus; dropping them first makes the sort cheap.
    let cutoff = (1.0 - top_p) / (probs.len().saturating_sub(1).max(1)) as f32;
    cand.clear();
    cand.extend(
        probs
            .iter()
            .enumerate()
            .filter(|&(_, &p)| p >= cutoff)
            .map(|(i, &p)| (p, i as u32)),
    );
    if cand.is_empty() {
        // Only reachable with degenerate (NaN) probabilities.
        return argmax(probs);
    }
    // Stable sort: equal probabilities keep ascending ids, so results are reproducible.
    cand.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut last = cand.len() - 1;
    let mut cumulative = 0.0;
    for (i, &(p, _)) in cand.iter().enumerate() {
        cumulative += p;
        if cumulative > top_p {
            last = i;
            break;
        }
    }
    let r = coin * cumulative;
    let mut cdf = 0.0;
    for &(p, id) in &cand[..=last] {
        cdf += p;
        if r < cdf {
            return id;
        }
    }
    cand[last].1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_deterministic_and_seed_sensitive() {
        let a: Vec<u32> = {
            let mut r = Rng::new(42);
            (0..4).map(|_| r.next_u32()).collect()
        };
        let b: Vec<u32> = {
            let mut r = Rng::new(42);
            (0..4).map(|_| r.next_u32()).collect()
        };
        let c: Vec<u32> = {
            let mut r = Rng::new(43);
            (0..4).map(|_| r.next_u32()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut r = Rng::new(0);
        let f = r.next_f32();
        assert!((0.0..1.0).contains(&f));
    }

    #[test]
    fn argmax_takes_first_maximum() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
        assert_eq!(argmax(&[f32::NAN, 1.0]), 1);
    }

    #[test]
    fn topp_restricts_to_nucleus() {
        let probs = [0.05, 0.6, 0.3, 0.05];
        let mut cand = Vec::new();
        // Nucleus for 0.5 is {1} alone: every coin picks token 1.
        for coin in [0.0, 0.5, 0.999] {
            assert_eq!(sample_topp(&probs, 0.5, coin, &mut cand), 1);
        }
        // Nucleus for 0.8 is {1, 2}.
        assert_eq!(sample_topp(&probs, 0.8, 0.99, &mut cand), 2);
        assert_eq!(sample_mult(&probs, 0.99), 3);
    }
}
