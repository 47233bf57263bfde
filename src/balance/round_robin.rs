//! Round robin: each new connection goes to the next backend in order. One
//! shared cursor per pool, advanced with a single atomic add, so the rotation
//! is global across workers. When the cursor's backend is ineligible (down,
//! draining, disabled, full, already tried, or of weight 0), a second shared
//! cursor deals that turn to the eligible backends in rotation, so each of the
//! `k` eligible backends gets `1/k` of the picks, not its predecessor's share
//! on top of its own.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::Backend;
use super::{Balancer, PickContext};

#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
    /// Deals the turns of ineligible backends; advanced only on a miss.
    spill: AtomicUsize,
}

impl RoundRobin {
    pub fn new() -> RoundRobin {
        RoundRobin::default()
    }
}

impl Balancer for RoundRobin {
    fn pick(
        &self,
        backends: &[Arc<Backend>],
        _ctx: &PickContext,
        eligible: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let n = backends.len();
        if n == 0 {
            return None;
        }
        // A weight of 0 means "never pick", here as in the weighted algorithms.
        let usable = |i: usize| backends[i].weight > 0 && eligible(i);
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        if usable(start) {
            return Some(start);
        }
        // WHY not walk on to the next usable backend: then the backend after
        // a down one takes all of its turns (1 of 4 down gave 75/75/150).
        // Dealing the missed turns in rotation over the k usable backends
        // gives each its own 1/n plus 1/k of the (n - k)/n missed: 1/k in all
        // (100/100/100). Only a miss pays for this pass and second atomic.
        let k = (0..n).filter(|&i| usable(i)).count();
        if k == 0 {
            return None;
        }
        let target = self.spill.fetch_add(1, Ordering::Relaxed) % k;
        // Eligibility can change between the passes (health, capacity): then
        // the last usable backend seen stands in, so a pick still succeeds
        // whenever one qualifies at the time of this pass.
        let mut last = None;
        for (seen, i) in (0..n).filter(|&i| usable(i)).enumerate() {
            if seen == target {
                return Some(i);
            }
            last = Some(i);
        }
        last
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::Backend;
    use super::*;
    use crate::balance::test_support::{self, case, check_contract, ctx, Spread};

    fn backends(n: usize) -> Vec<Arc<Backend>> {
        (0..n)
            .map(|i| Arc::new(Backend::for_test(&format!("127.0.0.1:{}", 9000 + i), 1)))
            .collect()
    }

    #[test]
    fn rotates_evenly() {
        let b = backends(3);
        let rr = RoundRobin::new();
        let ctx = ctx(0, 0);
        let mut counts = [0; 3];
        for _ in 0..300 {
            counts[rr.pick(&b, &ctx, &|_| true).unwrap()] += 1;
        }
        assert_eq!(counts, [100, 100, 100]);
    }

    #[test]
    fn skips_ineligible_and_gives_up_when_none_qualify() {
        let b = backends(3);
        let rr = RoundRobin::new();
        let ctx = ctx(0, 0);
        for _ in 0..10 {
            assert_ne!(rr.pick(&b, &ctx, &|i| i != 1), Some(1));
        }
        assert_eq!(rr.pick(&b, &ctx, &|_| false), None);
        assert_eq!(rr.pick(&[], &ctx, &|_| true), None);
    }

    #[test]
    fn a_down_backends_turns_are_spread_evenly_not_given_to_its_neighbour() {
        // Backend 1 out of four is ineligible: its turns used to all go to 2.
        let b = backends(4);
        let rr = RoundRobin::new();
        let mut counts = [0; 4];
        for _ in 0..300 {
            counts[rr.pick(&b, &ctx(0, 0), &|i| i != 1).unwrap()] += 1;
        }
        assert_eq!(counts, [100, 0, 100, 100]);

        // The same with backend 1 at weight 0 (draining by weight).
        let b = test_support::backends(&[1, 0, 1, 1]);
        let rr = RoundRobin::new();
        let mut counts = [0; 4];
        for _ in 0..300 {
            counts[rr.pick(&b, &ctx(0, 0), &|_| true).unwrap()] += 1;
        }
        assert_eq!(counts, [100, 0, 100, 100]);
    }

    #[test]
    fn spreads_evenly_without_any_one_backend() {
        test_support::check_even_spread_without_one(|_| RoundRobin::new(), Spread::Exact);
    }

    proptest! {
        #[test]
        fn picks_only_eligible_weighted_backends(case in case()) {
            let b = test_support::backends(&case.weights);
            check_contract(&RoundRobin::new(), &b, &case)?;
        }
    }
}
