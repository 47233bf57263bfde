//! Random: each eligible backend with probability proportional to its
//! effective weight, from the worker's random number. Owns only a cached
//! maximum weight; must never take a lock, allocate, or use a global RNG in
//! `pick`.
//!
//! Rejection sampling keeps the usual pick O(1): draw a backend uniformly and
//! keep it with probability `weight / max_weight` if it is eligible. After
//! [`SAMPLE_TRIES`] misses one exact weighted pass over the list decides, so
//! the distribution is exact either way.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{weight_now, Balancer, PickContext, Rng, SAMPLE_TRIES};
use crate::balance::{Backend, WEIGHT_SCALE};

#[derive(Debug, Default)]
pub struct RandomPick {
    /// The largest configured weight × `WEIGHT_SCALE` (an upper bound of any
    /// effective weight), 0 until the first pick computes it. A balancer
    /// serves one fixed backend list for its life (its `Tier` owns both), so
    /// the value never changes; racing workers store the same number.
    max_weight: AtomicU64,
}

impl RandomPick {
    pub fn new() -> RandomPick {
        RandomPick::default()
    }

    fn max_weight(&self, backends: &[Arc<Backend>]) -> u64 {
        let cached = self.max_weight.load(Ordering::Relaxed);
        if cached != 0 {
            return cached;
        }
        let max = backends
            .iter()
            .map(|b| b.weight as u64 * WEIGHT_SCALE)
            .max()
            .unwrap_or(0)
            .max(1);
        self.max_weight.store(max, Ordering::Relaxed);
        max
    }
}

impl Balancer for RandomPick {
    fn pick(
        &self,
        backends: &[Arc<Backend>],
        ctx: &PickContext,
        eligible: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let n = backends.len() as u64;
        if n == 0 {
            return None;
        }
        let mut rng = Rng::new(ctx.random);
        let max_weight = self.max_weight(backends);
        for _ in 0..SAMPLE_TRIES {
            let i = rng.below(n) as usize;
            let weight = weight_now(&backends[i], ctx.now_ms);
            if weight > 0 && rng.below(max_weight) < weight && eligible(i) {
                return Some(i);
            }
        }
        // One pass of weighted reservoir sampling: the k-th qualifying
        // backend replaces the choice with probability w_k / (w_1 + … + w_k).
        let mut total: u64 = 0;
        let mut chosen = None;
        for (i, b) in backends.iter().enumerate() {
            let weight = weight_now(b, ctx.now_ms);
            if weight == 0 || !eligible(i) {
                continue;
            }
            total += weight;
            if rng.below(total) < weight {
                chosen = Some(i);
            }
        }
        chosen
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::balance::test_support::{
        backends, case, case_up_to, check_contract, check_even_spread_without_one, ctx, Spread,
        XorShift,
    };

    fn shares(weights: &[u32], picks: usize, eligible: &dyn Fn(usize) -> bool) -> Vec<f64> {
        let b = backends(weights);
        let r = RandomPick::new();
        let mut rng = XorShift(0x5eed);
        let mut counts = vec![0usize; b.len()];
        for _ in 0..picks {
            counts[r.pick(&b, &ctx(0, rng.next()), eligible).unwrap()] += 1;
        }
        counts.iter().map(|&c| c as f64 / picks as f64).collect()
    }

    fn assert_close(got: &[f64], want: &[f64]) {
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() < 0.01,
                "backend {i}: share {g}, want {w} (all: {got:?})"
            );
        }
    }

    #[test]
    fn shares_follow_weights() {
        assert_close(
            &shares(&[1, 2, 3], 60_000, &|_| true),
            &[1.0 / 6.0, 2.0 / 6.0, 3.0 / 6.0],
        );
    }

    #[test]
    fn uniform_among_eligible_only() {
        assert_close(
            &shares(&[1, 1, 1, 1], 60_000, &|i| i != 1),
            &[1.0 / 3.0, 0.0, 1.0 / 3.0, 1.0 / 3.0],
        );
    }

    #[test]
    fn exact_pass_keeps_the_weights_when_sampling_misses() {
        // One heavy backend among many light ones: the light ones are mostly
        // rejected, so many picks end in the exact pass. 1000 × 1 : 1 × 1000.
        let mut weights = vec![1; 1001];
        weights[1000] = 1000;
        let got = shares(&weights, 40_000, &|_| true);
        assert!((got[1000] - 0.5).abs() < 0.01, "heavy share {}", got[1000]);
        // And with a single eligible backend among many, it is always found.
        let only = shares(&vec![1; 500], 1000, &|i| i == 321);
        assert_eq!(only[321], 1.0);
    }

    #[test]
    fn same_random_number_same_pick() {
        let b = backends(&[1, 2, 3, 4]);
        let r = RandomPick::new();
        for seed in 0..100 {
            assert_eq!(
                r.pick(&b, &ctx(0, seed), &|_| true),
                r.pick(&b, &ctx(1, seed), &|_| true)
            );
        }
        assert_eq!(r.pick(&b, &ctx(0, 1), &|_| false), None);
        assert_eq!(RandomPick::new().pick(&[], &ctx(0, 1), &|_| true), None);
    }

    #[test]
    fn spreads_evenly_without_any_one_backend() {
        check_even_spread_without_one(|_| RandomPick::new(), Spread::Statistical);
    }

    proptest! {
        #[test]
        fn picks_only_eligible_weighted_backends(case in case()) {
            let b = backends(&case.weights);
            check_contract(&RandomPick::new(), &b, &case)?;
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn picks_only_eligible_weighted_backends_in_big_pools(case in case_up_to(150)) {
            let b = backends(&case.weights);
            check_contract(&RandomPick::new(), &b, &case)?;
        }
    }
}
