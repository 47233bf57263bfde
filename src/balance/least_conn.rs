//! Weighted least connections: the eligible backend with the lowest
//! `(active + 1) / weight`, where `active` is the exact count shared by all
//! workers (it includes connections still connecting). Ties go round the
//! backends in turn from a per-worker rotating offset, so equal backends share
//! evenly instead of the first one taking every tie. Owns only that offset;
//! must never take a lock or allocate in `pick`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_utils::CachePadded;

use super::Backend;
use super::{lighter, weight_now, Balancer, PickContext};

#[derive(Debug)]
pub struct LeastConnections {
    /// Where worker `w` starts its next scan: one past its last pick. Only
    /// worker `w` writes slot `w`.
    start: Box<[CachePadded<AtomicUsize>]>,
}

impl LeastConnections {
    pub fn new(workers: usize) -> LeastConnections {
        LeastConnections {
            start: (0..workers.max(1)).map(|_| Default::default()).collect(),
        }
    }
}

impl Balancer for LeastConnections {
    fn pick(
        &self,
        backends: &[Arc<Backend>],
        ctx: &PickContext,
        eligible: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let n = backends.len();
        if n == 0 {
            return None;
        }
        debug_assert!(
            ctx.worker < self.start.len(),
            "worker {} out of range",
            ctx.worker
        );
        // WHY clamp: an out-of-range worker is a bug, not worth a worker panic.
        let slot = &self.start[ctx.worker.min(self.start.len() - 1)];
        let mut i = slot.load(Ordering::Relaxed);
        if i >= n {
            i = 0;
        }
        // (index, active, weight) of the lightest so far; strict comparison
        // keeps the first in rotation order among equals. Eligibility is the
        // dearest test (a call and several atomics), so it is asked only of a
        // backend that would win — same answer, about half the cost at scale.
        let mut best: Option<(usize, u64, u64)> = None;
        for _ in 0..n {
            let b = &backends[i];
            let weight = weight_now(b, ctx.now_ms);
            if weight > 0 {
                let active = b.active();
                if best.is_none_or(|(_, a, w)| lighter(active, weight, a, w)) && eligible(i) {
                    best = Some((i, active, weight));
                }
            }
            i += 1;
            if i == n {
                i = 0;
            }
        }
        let (chosen, _, _) = best?;
        slot.store(
            if chosen + 1 == n { 0 } else { chosen + 1 },
            Ordering::Relaxed,
        );
        Some(chosen)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::balance::test_support::{
        backends, bump_active, case, check_contract, check_even_spread_without_one, ctx,
        set_active, Spread,
    };

    /// `picks` sequential picks on worker 0, each opening a connection to the
    /// backend it chose.
    fn open(
        b: &[Arc<Backend>],
        lc: &LeastConnections,
        picks: usize,
        eligible: &dyn Fn(usize) -> bool,
    ) -> Vec<usize> {
        let mut counts = vec![0; b.len()];
        for _ in 0..picks {
            let i = lc.pick(b, &ctx(0, 0), eligible).unwrap();
            bump_active(&b[i]);
            counts[i] += 1;
        }
        counts
    }

    #[test]
    fn equal_idle_backends_share_evenly() {
        let b = backends(&[1, 1, 1]);
        assert_eq!(
            open(&b, &LeastConnections::new(1), 30, &|_| true),
            [10, 10, 10]
        );
    }

    #[test]
    fn ties_rotate_even_when_connections_close_at_once() {
        // Nothing stays open, so every pick is a three-way tie.
        let b = backends(&[1, 1, 1]);
        let lc = LeastConnections::new(1);
        let seq: Vec<usize> = (0..6)
            .map(|_| lc.pick(&b, &ctx(0, 0), &|_| true).unwrap())
            .collect();
        assert_eq!(seq, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn weights_scale_the_load_each_backend_takes() {
        let b = backends(&[1, 2]);
        assert_eq!(
            open(&b, &LeastConnections::new(1), 300, &|_| true),
            [100, 200]
        );
    }

    #[test]
    fn active_counts_steer_picks() {
        let b = backends(&[1, 2]);
        let lc = LeastConnections::new(1);
        // (2+1)/1 = 3 against (3+1)/2 = 2: the heavier one, despite more connections.
        set_active(&b[0], 2);
        set_active(&b[1], 3);
        assert_eq!(lc.pick(&b, &ctx(0, 0), &|_| true), Some(1));
        // (1+1)/1 = 2 against (4+1)/2 = 2.5.
        set_active(&b[0], 1);
        set_active(&b[1], 4);
        assert_eq!(lc.pick(&b, &ctx(0, 0), &|_| true), Some(0));
        // A huge count does not overflow the comparison.
        set_active(&b[0], u64::MAX - 1);
        assert_eq!(lc.pick(&b, &ctx(0, 0), &|_| true), Some(1));
    }

    #[test]
    fn never_picks_ineligible_even_when_idlest() {
        let b = backends(&[1, 1, 1]);
        set_active(&b[1], 50);
        set_active(&b[2], 80);
        let lc = LeastConnections::new(1);
        for _ in 0..10 {
            assert_eq!(lc.pick(&b, &ctx(0, 0), &|i| i != 0), Some(1));
        }
        assert_eq!(lc.pick(&b, &ctx(0, 0), &|_| false), None);
        assert_eq!(lc.pick(&[], &ctx(0, 0), &|_| true), None);
    }

    #[test]
    fn spreads_evenly_without_any_one_backend() {
        // Exact either way: idle, each worker's tie rotation skips the one
        // out; loaded, the lightest always wins.
        check_even_spread_without_one(|_| LeastConnections::new(2), Spread::Exact);
    }

    proptest! {
        #[test]
        fn picks_only_eligible_weighted_backends(case in case()) {
            let b = backends(&case.weights);
            check_contract(&LeastConnections::new(2), &b, &case)?;
        }
    }
}
