//! Smooth weighted round robin (nginx's `ngx_http_upstream_get_peer`): each
//! pick adds every eligible backend's weight to its running credit, takes the
//! backend with the most credit and charges it the total. Weights 5:1:1 give
//! `a a b a c a a`, interleaved rather than in bursts. Owns one credit array
//! per worker (each worker rotates on its own, with no shared writes); must
//! never take a lock or allocate in `pick`.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use crossbeam_utils::CachePadded;

use super::Backend;
use super::{weight_now, Balancer, PickContext};

/// Credits per padded line: 16 × 8 bytes fill the 128 bytes `CachePadded`
/// aligns to on x86_64 and aarch64, so no two workers' credits share a line.
const LANES: usize = 16;

type Line = CachePadded<[AtomicI64; LANES]>;

#[derive(Debug)]
pub struct SmoothWeighted {
    backends: usize,
    workers: usize,
    lines_per_worker: usize,
    /// Worker `w`'s credits are `lines[w * lines_per_worker..][..lines_per_worker]`,
    /// backend `i` at `[i / LANES][i % LANES]`. Only worker `w` writes them,
    /// so plain loads and stores suffice.
    lines: Box<[Line]>,
}

impl SmoothWeighted {
    pub fn new(n_backends: usize, workers: usize) -> SmoothWeighted {
        let workers = workers.max(1);
        let lines_per_worker = n_backends.div_ceil(LANES);
        let lines = (0..workers * lines_per_worker)
            .map(|_| CachePadded::new(std::array::from_fn(|_| AtomicI64::new(0))))
            .collect();
        SmoothWeighted {
            backends: n_backends,
            workers,
            lines_per_worker,
            lines,
        }
    }
}

impl Balancer for SmoothWeighted {
    fn pick(
        &self,
        backends: &[Arc<Backend>],
        ctx: &PickContext,
        eligible: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        debug_assert_eq!(
            backends.len(),
            self.backends,
            "built for another backend set"
        );
        debug_assert!(
            ctx.worker < self.workers,
            "worker {} out of range",
            ctx.worker
        );
        // WHY clamp rather than index blindly: a mismatch is a bug, but a
        // panic here would take a worker and all its connections down.
        let n = backends.len().min(self.backends);
        let w = ctx.worker.min(self.workers - 1);
        let mine = &self.lines[w * self.lines_per_worker..][..self.lines_per_worker];
        let credit = |i: usize| &mine[i / LANES][i % LANES];

        let mut total: i64 = 0;
        let mut best: Option<(usize, i64)> = None;
        for (i, b) in backends[..n].iter().enumerate() {
            let weight = weight_now(b, ctx.now_ms);
            if weight == 0 || !eligible(i) {
                continue;
            }
            // Weights are at most u32::MAX × 1000, so neither the credit nor
            // the total of any realistic pool comes near i64::MAX.
            let weight = weight as i64;
            let c = credit(i).load(Ordering::Relaxed) + weight;
            credit(i).store(c, Ordering::Relaxed);
            total += weight;
            if best.is_none_or(|(_, top)| c > top) {
                best = Some((i, c));
            }
        }
        let (i, c) = best?;
        credit(i).store(c - total, Ordering::Relaxed);
        Some(i)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::balance::test_support::{
        backends, case, check_contract, check_even_spread_without_one, ctx, Spread,
    };

    fn sequence(b: &[Arc<Backend>], s: &SmoothWeighted, worker: usize, picks: usize) -> Vec<usize> {
        (0..picks)
            .map(|_| s.pick(b, &ctx(worker, 0), &|_| true).unwrap())
            .collect()
    }

    #[test]
    fn five_one_one_is_interleaved_not_bursts() {
        let b = backends(&[5, 1, 1]);
        let s = SmoothWeighted::new(3, 1);
        let seq = sequence(&b, &s, 0, 70);
        for cycle in seq.chunks(7) {
            // nginx's documented order for 5:1:1.
            assert_eq!(cycle, [0, 0, 1, 0, 2, 0, 0]);
        }
        for pair in seq.windows(2) {
            assert!(
                pair[0] == 0 || pair[0] != pair[1],
                "a weight-1 backend twice in a row: {seq:?}"
            );
        }
    }

    #[test]
    fn one_two_three_is_exact_over_600_picks() {
        let b = backends(&[1, 2, 3]);
        let s = SmoothWeighted::new(3, 1);
        let mut counts = [0; 3];
        for i in sequence(&b, &s, 0, 600) {
            counts[i] += 1;
        }
        assert_eq!(counts, [100, 200, 300]);
    }

    #[test]
    fn ineligible_backends_are_skipped_for_that_pick() {
        let b = backends(&[5, 1, 1]);
        let s = SmoothWeighted::new(3, 1);
        let seq: Vec<usize> = (0..6)
            .map(|_| s.pick(&b, &ctx(0, 0), &|i| i != 0).unwrap())
            .collect();
        assert_eq!(seq, [1, 2, 1, 2, 1, 2]);
        assert_eq!(s.pick(&b, &ctx(0, 0), &|_| false), None);
    }

    #[test]
    fn weight_zero_is_never_picked() {
        let b = backends(&[0, 1, 0, 2]);
        let s = SmoothWeighted::new(4, 1);
        assert!(sequence(&b, &s, 0, 30).iter().all(|&i| i == 1 || i == 3));
        let only_zero = backends(&[0, 0]);
        assert_eq!(
            SmoothWeighted::new(2, 1).pick(&only_zero, &ctx(0, 0), &|_| true),
            None
        );
    }

    #[test]
    fn workers_keep_separate_credits() {
        // Interleaving two workers' picks leaves each with the exact sequence
        // it would have had alone; 20 backends also span two padded lines.
        // Weights total 24: 48 picks are two whole cycles.
        let mut weights = vec![1; 20];
        weights[17] = 5;
        let b = backends(&weights);
        let s = SmoothWeighted::new(20, 2);
        let alone = sequence(&b, &SmoothWeighted::new(20, 1), 0, 48);
        let (mut w0, mut w1) = (Vec::new(), Vec::new());
        for _ in 0..48 {
            w0.push(s.pick(&b, &ctx(0, 0), &|_| true).unwrap());
            w1.push(s.pick(&b, &ctx(1, 0), &|_| true).unwrap());
        }
        assert_eq!(w0, alone);
        assert_eq!(w1, alone);
        assert_eq!(alone.iter().filter(|&&i| i == 17).count(), 10);
    }

    #[test]
    fn spreads_evenly_without_any_one_backend() {
        check_even_spread_without_one(|b| SmoothWeighted::new(b.len(), 2), Spread::Exact);
    }

    proptest! {
        #[test]
        fn picks_only_eligible_weighted_backends(case in case()) {
            let b = backends(&case.weights);
            check_contract(&SmoothWeighted::new(b.len(), 2), &b, &case)?;
        }
    }
}
