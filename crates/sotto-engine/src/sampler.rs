//! Token sampling: penalties, greedy, temperature, top-k, top-p (nucleus) and min-p.
//!
//! Greedy, temperature and top-p follow llama2.c exactly; the rest are extensions with
//! llama.cpp (repetition penalty), OpenAI (presence/frequency) and vLLM (top-k, min-p)
//! semantics. See [`Sampler`] for the order in which they apply.

use std::cmp::Ordering;
use std::collections::VecDeque;

use crate::forward::softmax;
use crate::{BOS, EOS, GenerateParams};

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
///
/// Order of operations for each token (see `docs/engine.md`, "Sampling"):
/// penalties → greedy (temperature 0 or `top_k` 1) or temperature → softmax → top-k → top-p →
/// min-p → draw. With every extension off (`top_k` 0, `min_p` 0, no penalties) this is exactly
/// llama2.c's sampler and allocates nothing after the first token.
pub(crate) struct Sampler {
    temperature: f32,
    top_p: f32,
    top_k: u32,
    min_p: f32,
    rng: Rng,
    probs: Vec<f32>,
    /// Scratch for top-p / top-k / min-p: (probability, token id).
    candidates: Vec<(f32, u32)>,
    /// `None` when no penalty is enabled, so the common path never touches it.
    penalties: Option<Penalties>,
}

impl Sampler {
    /// `params` must have passed [`GenerateParams::validate`]. `prompt` is the encoded prompt
    /// (it seeds the repetition-penalty window); `vocab_size` sizes the token counters.
    pub fn new(params: &GenerateParams, vocab_size: usize, prompt: &[u32]) -> Self {
        let penalties = Penalties::new(params, vocab_size).map(|mut p| {
            for &t in prompt {
                p.observe(t, false);
            }
            p
        });
        Sampler {
            temperature: params.temperature,
            top_p: params.top_p,
            top_k: params.top_k,
            min_p: params.min_p,
            rng: Rng::new(params.seed),
            probs: Vec::new(),
            candidates: Vec::new(),
            penalties,
        }
    }

    /// Picks the next token from `logits` and records it for the penalties.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let next = self.pick(logits);
        if let Some(p) = &mut self.penalties {
            p.observe(next, true);
        }
        next
    }

    fn pick(&mut self, logits: &[f32]) -> u32 {
        // Penalties edit a copy of the logits (the model's buffer stays untouched).
        let penalised = match &mut self.penalties {
            Some(p) => {
                self.probs.clear();
                self.probs.extend_from_slice(logits);
                p.apply(&mut self.probs);
                true
            }
            None => false,
        };
        if self.temperature == 0.0 || self.top_k == 1 {
            return argmax(if penalised { &self.probs } else { logits });
        }
        if penalised {
            for l in &mut self.probs {
                *l /= self.temperature;
            }
        } else {
            self.probs.clear();
            self.probs
                .extend(logits.iter().map(|&l| l / self.temperature));
        }
        softmax(&mut self.probs);
        // Draw the coin even for top_p == 1 so the random stream does not depend on top_p.
        let coin = self.rng.next_f32();
        if self.top_k == 0 && self.min_p == 0.0 {
            // llama2.c's own rules, kept bit-identical.
            if self.top_p >= 1.0 {
                sample_mult(&self.probs, coin)
            } else {
                sample_topp(&self.probs, self.top_p, coin, &mut self.candidates)
            }
        } else {
            let filter = Filter {
                top_k: self.top_k,
                top_p: self.top_p,
                min_p: self.min_p,
            };
            sample_filtered(&self.probs, filter, coin, &mut self.candidates)
        }
    }
}

/// Repetition (llama.cpp/CTRL) and presence/frequency (OpenAI) penalties.
struct Penalties {
    /// Divides positive logits, multiplies negative ones; 1 = off.
    repetition: f32,
    presence: f32,
    frequency: f32,
    /// Size of the repetition window (0 = repetition penalty off).
    window: usize,
    /// The last `window` tokens, prompt included.
    recent: VecDeque<u32>,
    /// Scratch: the distinct tokens of `recent` (each is penalised once, as in llama.cpp).
    distinct: Vec<u32>,
    /// How often each token id was generated (empty when presence/frequency are off).
    counts: Vec<u32>,
    /// Distinct generated token ids, so applying the penalty is O(distinct), not O(vocab).
    generated: Vec<u32>,
}

impl Penalties {
    fn new(params: &GenerateParams, vocab_size: usize) -> Option<Self> {
        let window = if params.repetition_penalty == 1.0 {
            0
        } else {
            usize::try_from(params.repeat_last_n).unwrap_or(usize::MAX)
        };
        let counted = params.presence_penalty != 0.0 || params.frequency_penalty != 0.0;
        if window == 0 && !counted {
            return None;
        }
        Some(Penalties {
            repetition: params.repetition_penalty,
            presence: params.presence_penalty,
            frequency: params.frequency_penalty,
            window,
            // Bounded so that a huge window does not reserve memory up front.
            recent: VecDeque::with_capacity(window.min(4096)),
            distinct: Vec::with_capacity(window.min(4096)),
            counts: if counted {
                vec![0; vocab_size]
            } else {
                Vec::new()
            },
            generated: Vec::new(),
        })
    }

    /// Records `token`. BOS/EOS are control tokens, not text the model repeats, so they are
    /// never penalised (penalising BOS would also discourage the model from ending).
    fn observe(&mut self, token: u32, generated: bool) {
        if token == BOS || token == EOS {
            return;
        }
        if self.window > 0 {
            if self.recent.len() >= self.window {
                self.recent.pop_front();
            }
            self.recent.push_back(token);
        }
        if generated && let Some(c) = self.counts.get_mut(token as usize) {
            if *c == 0 {
                self.generated.push(token);
            }
            *c = c.saturating_add(1);
        }
    }

    fn apply(&mut self, logits: &mut [f32]) {
        if self.window > 0 {
            self.distinct.clear();
            self.distinct.extend(self.recent.iter().copied());
            self.distinct.sort_unstable();
            self.distinct.dedup();
            for &t in &self.distinct {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l = if *l > 0.0 {
                        *l / self.repetition
                    } else {
                        *l * self.repetition
                    };
                }
            }
        }
        for &t in &self.generated {
            let count = self.counts.get(t as usize).copied().unwrap_or(0);
            if let Some(l) = logits.get_mut(t as usize) {
                *l -= count as f32 * self.frequency + self.presence;
            }
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

/// The truncation options of [`sample_filtered`].
#[derive(Clone, Copy, Debug)]
struct Filter {
    top_k: u32,
    top_p: f32,
    min_p: f32,
}

/// Descending probability, ties by ascending id: a total order, so results never depend on
/// the sort algorithm or the input order.
fn by_prob_desc(a: &(f32, u32), b: &(f32, u32)) -> Ordering {
    b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
}

/// Top-k, then top-p over the renormalised top-k set, then min-p, then a draw within what is
/// left (renormalised). `probs` is a softmax output.
fn sample_filtered(probs: &[f32], f: Filter, coin: f32, cand: &mut Vec<(f32, u32)>) -> u32 {
    let n = probs.len();
    let k = usize::try_from(f.top_k).unwrap_or(usize::MAX);
    let restrict_k = k > 0 && k < n;
    // min-p keeps tokens at least `min_p` times as likely as the most likely one.
    let p_max = probs.iter().copied().fold(0.0, f32::max);
    let min_keep = f.min_p * p_max;
    cand.clear();
    if restrict_k {
        cand.extend(probs.iter().enumerate().map(|(i, &p)| (p, i as u32)));
        // Partial selection: O(n) to find the k best, then only those k are sorted.
        cand.select_nth_unstable_by(k - 1, by_prob_desc);
        cand.truncate(k);
    } else {
        // Without top-k the mass is 1, so llama2.c's cutoff is valid: a token below it can
        // never be in the nucleus. Tokens under the min-p threshold can be dropped too.
        let cutoff = if f.top_p < 1.0 {
            (1.0 - f.top_p) / (n.saturating_sub(1).max(1)) as f32
        } else {
            0.0
        };
        let lowest = cutoff.max(min_keep);
        cand.extend(
            probs
                .iter()
                .enumerate()
                .filter(|&(_, &p)| p >= lowest)
                .map(|(i, &p)| (p, i as u32)),
        );
    }
    if cand.is_empty() {
        // Only reachable with degenerate (NaN) probabilities.
        return argmax(probs);
    }
    cand.sort_unstable_by(by_prob_desc);
    let mut keep = cand.len();
    if f.top_p < 1.0 {
        // After top-k the distribution is renormalised, i.e. the nucleus is `top_p` of the
        // top-k mass.
        let mass: f32 = if restrict_k {
            cand.iter().map(|c| c.0).sum()
        } else {
            1.0
        };
        let target = f.top_p * mass;
        let mut cumulative = 0.0;
        for (i, &(p, _)) in cand.iter().enumerate() {
            cumulative += p;
            if cumulative > target {
                keep = i + 1;
                break;
            }
        }
    }
    if f.min_p > 0.0 {
        // Sorted descending, so the survivors are a prefix; the most likely token always stays.
        keep = keep.min(cand.partition_point(|c| c.0 >= min_keep).max(1));
    }
    let kept = cand.get(..keep).unwrap_or(cand.as_slice());
    let total: f32 = kept.iter().map(|c| c.0).sum();
    let r = coin * total;
    let mut cdf = 0.0;
    for &(p, id) in kept {
        cdf += p;
        if r < cdf {
            return id;
        }
    }
    kept.last().map_or(0, |c| c.1) // rounding: r may reach the total
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

    fn params() -> GenerateParams {
        GenerateParams {
            temperature: 1.0,
            top_p: 1.0,
            ..GenerateParams::default()
        }
    }

    fn filter(top_k: u32, top_p: f32, min_p: f32) -> Filter {
        Filter {
            top_k,
            top_p,
            min_p,
        }
    }

    #[test]
    fn top_k_keeps_the_k_best_and_renormalises() {
        let probs = [0.1, 0.4, 0.3, 0.2];
        let mut cand = Vec::new();
        let f = filter(2, 1.0, 0.0);
        // Kept {1: 0.4, 2: 0.3}, mass 0.7: r = coin * 0.7.
        assert_eq!(sample_filtered(&probs, f, 0.0, &mut cand), 1);
        assert_eq!(sample_filtered(&probs, f, 0.5, &mut cand), 1); // r = 0.35 < 0.4
        assert_eq!(sample_filtered(&probs, f, 0.6, &mut cand), 2); // r = 0.42
        assert_eq!(sample_filtered(&probs, f, 0.999, &mut cand), 2);
        // top_k >= vocab is no restriction: token 3 reachable.
        assert_eq!(
            sample_filtered(&probs, filter(9, 1.0, 0.0), 0.999, &mut cand),
            0
        );
        // Nucleus of 0.5 *of the top-2 mass* (0.35) is {1} alone; unrenormalised it would
        // be {1, 2}.
        for coin in [0.0, 0.7, 0.999] {
            assert_eq!(
                sample_filtered(&probs, filter(2, 0.5, 0.0), coin, &mut cand),
                1
            );
        }
    }

    #[test]
    fn min_p_is_relative_to_the_best_token() {
        let probs = [0.5, 0.3, 0.15, 0.05];
        let mut cand = Vec::new();
        // Threshold 0.25: {0, 1}, mass 0.8.
        assert_eq!(
            sample_filtered(&probs, filter(0, 1.0, 0.5), 0.999, &mut cand),
            1
        );
        assert_eq!(
            sample_filtered(&probs, filter(0, 1.0, 0.5), 0.6, &mut cand),
            0
        );
        // Threshold 0.09: {0, 1, 2}.
        assert_eq!(
            sample_filtered(&probs, filter(0, 1.0, 0.18), 0.999, &mut cand),
            2
        );
        // min_p = 1 keeps only the maximum.
        assert_eq!(
            sample_filtered(&probs, filter(0, 1.0, 1.0), 0.999, &mut cand),
            0
        );
        // Combined with top-p: the smaller of the two prefixes.
        assert_eq!(
            sample_filtered(&probs, filter(0, 0.9, 0.18), 0.999, &mut cand),
            2
        );
        assert_eq!(
            sample_filtered(&probs, filter(0, 0.6, 0.18), 0.999, &mut cand),
            1
        );
    }

    #[test]
    fn ties_break_by_token_id() {
        let probs = [0.25; 4];
        let mut cand = Vec::new();
        assert_eq!(
            sample_filtered(&probs, filter(1, 1.0, 0.0), 0.9, &mut cand),
            0
        );
        assert_eq!(
            sample_filtered(&probs, filter(2, 1.0, 0.0), 0.9, &mut cand),
            1
        );
    }

    #[test]
    fn general_path_matches_llama2c_top_p() {
        // With top-k/min-p inert the general path reproduces llama2.c's nucleus sampling.
        let probs = [0.05, 0.6, 0.3, 0.05];
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for top_p in [0.3, 0.5, 0.8, 0.95] {
            for coin in [0.0, 0.2, 0.5, 0.7, 0.9, 0.999] {
                assert_eq!(
                    sample_filtered(&probs, filter(100, top_p, 0.0), coin, &mut a),
                    sample_topp(&probs, top_p, coin, &mut b),
                );
            }
        }
    }

    #[test]
    fn no_penalty_state_when_penalties_are_off() {
        let s = Sampler::new(&params(), 4, &[5, 6]);
        assert!(s.penalties.is_none());
        // A repetition penalty with an empty window is off too.
        let p = GenerateParams {
            repetition_penalty: 1.5,
            repeat_last_n: 0,
            ..params()
        };
        assert!(Sampler::new(&p, 4, &[]).penalties.is_none());
    }

    #[test]
    fn repetition_penalty_divides_positive_and_multiplies_negative() {
        let p = GenerateParams {
            repetition_penalty: 2.0,
            repeat_last_n: 4,
            ..params()
        };
        // BOS/EOS are ignored; the window of 4 holds tokens 0, 3, 4, 4 (token 5 fell out).
        let s = Sampler::new(&p, 8, &[BOS, 5, 0, EOS, 3, 4, 4]);
        let Some(mut pen) = s.penalties else {
            panic!("penalties on");
        };
        let mut logits = [2.0, 1.0, 1.0, -2.0, 0.5, 3.0, 1.0, 1.0];
        pen.apply(&mut logits);
        // Token 4 appears twice but is penalised once.
        assert_eq!(logits, [1.0, 1.0, 1.0, -4.0, 0.25, 3.0, 1.0, 1.0]);
    }

    #[test]
    fn presence_and_frequency_count_generated_tokens_only() {
        let p = GenerateParams {
            presence_penalty: 0.5,
            frequency_penalty: 0.25,
            ..params()
        };
        let mut s = Sampler::new(&p, 6, &[BOS, 5, 5]);
        let Some(pen) = &mut s.penalties else {
            panic!("penalties on");
        };
        for t in [3, 3, 4, EOS] {
            pen.observe(t, true);
        }
        let mut logits = [0.0; 6];
        pen.apply(&mut logits);
        // Prompt token 5 and EOS untouched; 4 once: 0.25 + 0.5; 3 twice: 0.5 + 0.5.
        assert_eq!(logits, [0.0, 0.0, 0.0, -1.0, -0.75, 0.0]);
    }

    #[test]
    fn greedy_applies_penalties_first() {
        let p = GenerateParams {
            temperature: 0.0,
            repetition_penalty: 2.0,
            ..params()
        };
        // (Ids 1 and 2 are BOS and EOS, which are never penalised.)
        let mut s = Sampler::new(&p, 6, &[0]);
        // Token 0 would win, but 3.0 / 2 < 2.0.
        assert_eq!(s.sample(&[3.0, 0.0, 0.0, 2.0, 0.0, 0.0]), 3);
        // Token 3 is now in the window too: 0 and 3 drop to 1.0, below token 5's 1.2.
        assert_eq!(s.sample(&[2.0, 0.0, 0.0, 2.0, 0.0, 1.2]), 5);
        // top_k = 1 is greedy as well, whatever the temperature.
        let p = GenerateParams {
            top_k: 1,
            temperature: 1.5,
            ..params()
        };
        let mut s = Sampler::new(&p, 3, &[]);
        assert_eq!(s.sample(&[0.0, 5.0, 4.9]), 1);
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
