//! Power of two random choices (Mitzenmacher): draw two distinct eligible
//! backends uniformly at random and take the one with the lower
//! `(active + 1) / weight`. Nearly as even as least connections at O(1) per
//! pick, and without least connections' herd onto one idle backend when many
//! workers pick at once. Owns no state; must never take a lock, allocate, or
//! use a global RNG in `pick`.

use std::sync::Arc;

use super::Backend;
use super::{lighter, weight_now, Balancer, PickContext, Rng, SAMPLE_TRIES};

#[derive(Debug, Default)]
pub struct PowerOfTwo;

impl PowerOfTwo {
    pub fn new() -> PowerOfTwo {
        PowerOfTwo
    }
}

/// The less loaded of two distinct candidates; a fair coin on a tie.
fn better(backends: &[Arc<Backend>], now_ms: u64, a: usize, b: usize, coin: bool) -> usize {
    let (wa, wb) = (
        weight_now(&backends[a], now_ms),
        weight_now(&backends[b], now_ms),
    );
    let (la, lb) = (backends[a].active(), backends[b].active());
    if lighter(la, wa, lb, wb) {
        a
    } else if lighter(lb, wb, la, wa) || coin {
        b
    } else {
        a
    }
}

impl Balancer for PowerOfTwo {
    fn pick(
        &self,
        backends: &[Arc<Backend>],
        ctx: &PickContext,
        eligible: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let n = backends.len();
        let usable = |i: usize| weight_now(&backends[i], ctx.now_ms) > 0 && eligible(i);
        if n <= 1 {
            return (n == 1 && usable(0)).then_some(0);
        }
        let mut rng = Rng::new(ctx.random);
        let coin = rng.next() & 1 == 1;

        // Rejection-sample two distinct usable backends.
        let mut first = None;
        for _ in 0..SAMPLE_TRIES {
            let i = rng.below(n as u64) as usize;
            if first == Some(i) || !usable(i) {
                continue;
            }
            match first {
                None => first = Some(i),
                Some(a) => return Some(better(backends, ctx.now_ms, a, i, coin)),
            }
        }

        // Few usable backends: a uniform pair by reservoir sampling over the
        // whole list (or the only one there is).
        let (mut a, mut b) = (None, None);
        let mut seen: u64 = 0;
        for i in (0..n).filter(|&i| usable(i)) {
            seen += 1;
            match seen {
                1 => a = Some(i),
                2 => b = Some(i),
                _ => match rng.below(seen) {
                    0 => a = Some(i),
                    1 => b = Some(i),
                    _ => {}
                },
            }
        }
        match (a, b) {
            (Some(a), Some(b)) => Some(better(backends, ctx.now_ms, a, b, coin)),
            (a, _) => a,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::balance::test_support::{
        backends, case, case_up_to, check_contract, check_even_spread_without_one, ctx, set_active,
        Spread, XorShift,
    };

    fn counts(b: &[Arc<Backend>], picks: usize, eligible: &dyn Fn(usize) -> bool) -> Vec<usize> {
        let p = PowerOfTwo::new();
        let mut rng = XorShift(0xfeed);
        let mut counts = vec![0; b.len()];
        for _ in 0..picks {
            counts[p.pick(b, &ctx(0, rng.next()), eligible).unwrap()] += 1;
        }
        counts
    }

    #[test]
    fn the_less_loaded_of_two_wins() {
        let b = backends(&[1, 1]);
        set_active(&b[0], 5);
        assert_eq!(counts(&b, 100, &|_| true), [0, 100]);
    }

    #[test]
    fn the_most_loaded_never_wins_a_pair() {
        let b = backends(&[1, 1, 1]);
        set_active(&b[2], 100);
        let c = counts(&b, 30_000, &|_| true);
        assert_eq!(c[2], 0);
        // 0 and 1 tie against each other; each wins its pairing with 2.
        assert!((c[0] as f64 / 15_000.0 - 1.0).abs() < 0.05, "{c:?}");
    }

    #[test]
    fn weights_scale_the_comparison() {
        // (2+1)/1 = 3 against (4+1)/3 ≈ 1.7.
        let b = backends(&[1, 3]);
        set_active(&b[0], 2);
        set_active(&b[1], 4);
        assert_eq!(counts(&b, 50, &|_| true), [0, 50]);
    }

    #[test]
    fn a_single_eligible_backend_is_taken() {
        let b = backends(&[1; 300]);
        set_active(&b[77], 1000);
        assert_eq!(counts(&b, 200, &|i| i == 77)[77], 200);
        assert_eq!(
            PowerOfTwo::new().pick(&b[..1], &ctx(0, 3), &|_| true),
            Some(0)
        );
        assert_eq!(PowerOfTwo::new().pick(&b, &ctx(0, 3), &|_| false), None);
        assert_eq!(PowerOfTwo::new().pick(&[], &ctx(0, 3), &|_| true), None);
    }

    #[test]
    fn idle_equal_backends_share_evenly() {
        let b = backends(&[1; 4]);
        for c in counts(&b, 40_000, &|_| true) {
            assert!((c as f64 / 10_000.0 - 1.0).abs() < 0.05, "{c}");
        }
    }

    #[test]
    fn spreads_evenly_without_any_one_backend() {
        check_even_spread_without_one(|_| PowerOfTwo::new(), Spread::Statistical);
    }

    proptest! {
        #[test]
        fn picks_only_eligible_weighted_backends(case in case()) {
            let b = backends(&case.weights);
            check_contract(&PowerOfTwo::new(), &b, &case)?;
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn picks_only_eligible_weighted_backends_in_big_pools(case in case_up_to(150)) {
            let b = backends(&case.weights);
            check_contract(&PowerOfTwo::new(), &b, &case)?;
        }
    }
}
