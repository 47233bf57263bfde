//! Round robin: each new connection goes to the next eligible backend in
//! order. One shared cursor per pool, advanced with a single atomic add, so the
//! rotation is global across workers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::{Balancer, PickContext};
use crate::control::snapshot::Backend;

#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
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
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        // A weight of 0 means "never pick", here as in the weighted algorithms.
        (0..n)
            .map(|i| (start + i) % n)
            .find(|&i| backends[i].weight > 0 && eligible(i))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::balance::test_support::{case, check_contract, ctx};
    use crate::control::snapshot::Backend;

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

    proptest! {
        #[test]
        fn picks_only_eligible_weighted_backends(case in case()) {
            let b = crate::balance::test_support::backends(&case.weights);
            check_contract(&RoundRobin::new(), &b, &case)?;
        }
    }
}
