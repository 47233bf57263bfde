//! Backend selection. One small trait, one module per algorithm: `pick` runs on
//! the data path for every new connection and must not lock or allocate; an
//! algorithm's state (e.g. a Maglev table) is built on the control thread when a
//! snapshot is built — that is its `rebuild`. Workers never match on the
//! algorithm: they call [`choose`], which layers backups, fail-open and
//! per-backend connection limits over whichever algorithm the pool uses.

mod backend;
mod least_conn;
mod maglev;
mod p2c;
mod random;
mod round_robin;
pub mod sticky;
mod weighted;

use std::net::IpAddr;
use std::sync::Arc;

use crate::config::{Algorithm, OnAllDown, PoolConfig};

pub use backend::{Backend, WEIGHT_SCALE};
pub use least_conn::LeastConnections;
pub use maglev::{hash_key, Maglev};
pub use p2c::PowerOfTwo;
pub use random::RandomPick;
pub use round_robin::RoundRobin;
pub use weighted::SmoothWeighted;

/// What a pick may look at besides the backends.
#[derive(Debug, Clone, Copy)]
pub struct PickContext {
    /// The client's address, the key of hashing algorithms.
    pub client: Option<IpAddr>,
    /// The calling worker, for algorithms that keep per-worker state.
    pub worker: usize,
    /// `crate::clock::now_ms()` at the time of the pick (slow start).
    pub now_ms: u64,
    /// A fresh random number from the worker's generator.
    pub random: u64,
}

/// A backend selection algorithm over one set of backends.
pub trait Balancer: Send + Sync {
    /// Chooses the index (into `backends`) of a backend for which `eligible`
    /// is true, or `None` when none qualifies. Must never return an index for
    /// which `eligible` is false.
    fn pick(
        &self,
        backends: &[Arc<Backend>],
        ctx: &PickContext,
        eligible: &dyn Fn(usize) -> bool,
    ) -> Option<usize>;
}

/// Builds the selector for a set of backends (control thread only).
/// `workers` sizes per-worker state.
pub fn build(pool: &PoolConfig, backends: &[Arc<Backend>], workers: usize) -> Box<dyn Balancer> {
    match pool.algorithm {
        Algorithm::RoundRobin => Box::new(RoundRobin::new()),
        Algorithm::WeightedRoundRobin => Box::new(SmoothWeighted::new(backends.len(), workers)),
        Algorithm::LeastConnections => Box::new(LeastConnections::new(workers)),
        Algorithm::IpHash => Box::new(Maglev::new(
            backends,
            pool.hash_table_size as usize,
            pool.hash_balance_factor,
        )),
        Algorithm::Random => Box::new(RandomPick::new()),
        Algorithm::P2c => Box::new(PowerOfTwo::new()),
    }
}

/// One tier of a pool (its primaries, or its backups) with its own selector.
pub struct Tier {
    /// Index in `Pool::backends` of each backend of this tier.
    pub members: Vec<usize>,
    pub backends: Vec<Arc<Backend>>,
    pub balancer: Box<dyn Balancer>,
}

impl Tier {
    pub fn new(
        pool: &PoolConfig,
        all: &[Arc<Backend>],
        members: Vec<usize>,
        workers: usize,
    ) -> Tier {
        let backends: Vec<Arc<Backend>> = members.iter().map(|&i| all[i].clone()).collect();
        let balancer = build(pool, &backends, workers);
        Tier {
            members,
            backends,
            balancer,
        }
    }

    fn pick(&self, ctx: &PickContext, ok: &dyn Fn(usize) -> bool) -> Option<usize> {
        self.balancer
            .pick(&self.backends, ctx, &|i| ok(self.members[i]))
            .map(|i| self.members[i])
    }
}

/// The outcome of choosing a backend for a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// Connect to this backend (index in `Pool::backends`).
    Backend(usize),
    /// Every backend is ineligible and the pool says `on_all_down: fail_open`:
    /// this one was picked ignoring health.
    FailOpen(usize),
    /// Every backend that is otherwise eligible is at its `max_connections`.
    AllFull,
    /// No backend is eligible (and the pool refuses when all are down), or all
    /// were already tried.
    NoneLeft,
}

/// Pool-level policy `choose` needs.
pub struct Policy {
    pub on_all_down: OnAllDown,
}

/// Picks a backend: primaries first, then backups, then (fail-open) any
/// backend that is merely unhealthy. `tried(i)` excludes backends this client
/// already failed to connect to.
pub fn choose(
    backends: &[Arc<Backend>],
    primary: &Tier,
    backup: &Tier,
    policy: &Policy,
    ctx: &PickContext,
    tried: &dyn Fn(usize) -> bool,
) -> Choice {
    let now = ctx.now_ms;
    let usable = |i: usize| !tried(i) && backends[i].eligible(now);
    if let Some(i) = primary.pick(ctx, &usable) {
        return Choice::Backend(i);
    }
    if let Some(i) = backup.pick(ctx, &usable) {
        return Choice::Backend(i);
    }
    // Nothing usable. Full, or down?
    let healthy_but_full = |i: usize| {
        !tried(i) && backends[i].eligible_ignoring_capacity(now) && backends[i].is_full()
    };
    if (0..backends.len()).any(healthy_but_full) {
        return Choice::AllFull;
    }
    if policy.on_all_down == OnAllDown::FailOpen {
        // Panic mode: health is ignored, the operator's choices are not.
        let any_enabled =
            |i: usize| !tried(i) && backends[i].in_service() && !backends[i].is_full();
        let all_down = (0..backends.len()).all(|i| !backends[i].eligible(now));
        if all_down {
            if let Some(i) = primary
                .pick(ctx, &any_enabled)
                .or_else(|| backup.pick(ctx, &any_enabled))
            {
                return Choice::FailOpen(i);
            }
        }
    }
    Choice::NoneLeft
}

// ---- Pieces the algorithms share ----------------------------------------

/// The weight a pick uses for backend `b` now (×`WEIGHT_SCALE`, slow start
/// applied); 0 means "never pick".
// WHY the explicit check: `effective_weight` floors the slow-start ramp at 1,
// which would make a weight-0 (draining) backend pickable while it ramps.
#[inline]
fn weight_now(b: &Backend, now_ms: u64) -> u64 {
    if b.weight == 0 {
        0
    } else {
        b.effective_weight(now_ms)
    }
}

/// True when a backend with `active_a` connections and weight `w_a` is less
/// loaded than one with `active_b` and `w_b`, comparing
/// `(active + 1) / weight` by cross-multiplying in `u128` (exact, no floats).
/// The `+ 1` (HAProxy's leastconn key) measures the load *after* this
/// connection, so among idle backends the heavier one wins and a slow-starting
/// backend stays light even when nothing is open yet. Weights must be > 0.
#[inline]
fn lighter(active_a: u64, w_a: u64, active_b: u64, w_b: u64) -> bool {
    (active_a as u128 + 1) * (w_b as u128) < (active_b as u128 + 1) * (w_a as u128)
}

/// The splitmix64 finaliser: a fixed bijection on `u64` whose output bits
/// each depend on every input bit. Part of `hash_key`'s contract — changing it
/// remaps every client of every `ip_hash` pool.
#[inline]
const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A splitmix64 stream seeded from `PickContext::random`: as many random
/// numbers as a pick needs from the one the worker supplied, with no global
/// generator and no allocation.
struct Rng(u64);

impl Rng {
    #[inline]
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    #[inline]
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }

    /// Uniform in `0..n` (`n > 0`), by Lemire's multiply-shift instead of a
    /// division; the bias is below `n / 2^64`.
    #[inline]
    fn below(&mut self, n: u64) -> u64 {
        ((self.next() as u128 * n as u128) >> 64) as u64
    }
}

/// How many uniform draws the sampling algorithms (`random`, `p2c`) try
/// before falling back to one exact pass over all backends. With half the
/// backends ineligible a miss takes 2^-16; the fallback keeps the result
/// exact either way, this only keeps the common case O(1).
const SAMPLE_TRIES: usize = 16;

#[cfg(test)]
mod test_support {
    //! Backends, contexts and the contract check the algorithms' tests share.

    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::Backend;
    use super::{Balancer, PickContext};

    /// Any fixed time: the test backends have no slow start.
    pub const NOW: u64 = 1_000_000;

    /// Backends `10.0.i/256.i%256:80` with these weights.
    pub fn backends(weights: &[u32]) -> Vec<Arc<Backend>> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                let addr = format!("10.0.{}.{}:80", i / 256, i % 256);
                Arc::new(Backend::for_test(&addr, w))
            })
            .collect()
    }

    pub fn set_active(b: &Backend, n: u64) {
        b.stats.active.store(n, Ordering::Relaxed);
    }

    pub fn bump_active(b: &Backend) {
        b.stats.active.fetch_add(1, Ordering::Relaxed);
    }

    pub fn ctx(worker: usize, random: u64) -> PickContext {
        PickContext {
            client: None,
            worker,
            now_ms: NOW,
            random,
        }
    }

    /// xorshift64: the tests' seeded stand-in for a worker's generator.
    pub struct XorShift(pub u64);

    impl XorShift {
        pub fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }
    }

    /// One random situation for the contract property.
    #[derive(Debug, Clone)]
    pub struct Case {
        pub weights: Vec<u32>,
        pub eligible: Vec<bool>,
        pub active: Vec<u64>,
        /// One pick per seed (stateful algorithms see a sequence).
        pub seeds: Vec<u64>,
        /// Whether picks carry a client address (derived from the seed).
        pub with_client: bool,
    }

    /// Pools of 1 to 12 backends.
    pub fn case() -> impl Strategy<Value = Case> {
        case_up_to(12)
    }

    /// Pools of 1 to `max` backends (beyond 64, Maglev's walk stops tracking
    /// which backends it has seen).
    pub fn case_up_to(max: usize) -> impl Strategy<Value = Case> {
        (1usize..=max).prop_flat_map(|n| {
            (
                prop::collection::vec(0u32..5, n),
                prop::collection::vec(any::<bool>(), n),
                prop::collection::vec(0u64..20, n),
                prop::collection::vec(any::<u64>(), 1..8),
                any::<bool>(),
            )
                .prop_map(|(weights, eligible, active, seeds, with_client)| Case {
                    weights,
                    eligible,
                    active,
                    seeds,
                    with_client,
                })
        })
    }

    /// The contract every algorithm keeps: `Some(i)` only for an eligible
    /// backend of weight > 0, and `Some` whenever such a backend exists.
    pub fn check_contract(
        balancer: &dyn Balancer,
        backends: &[Arc<Backend>],
        case: &Case,
    ) -> Result<(), TestCaseError> {
        for (b, &a) in backends.iter().zip(&case.active) {
            set_active(b, a);
        }
        let ok = |i: usize| case.eligible[i] && case.weights[i] > 0;
        let any_ok = (0..backends.len()).any(ok);
        for &seed in &case.seeds {
            let mut ctx = ctx((seed % 2) as usize, seed);
            if case.with_client {
                ctx.client = Some(IpAddr::V4(Ipv4Addr::from((seed >> 32) as u32)));
            }
            match balancer.pick(backends, &ctx, &|i| case.eligible[i]) {
                Some(i) => prop_assert!(ok(i), "picked {i}, which is ineligible or weightless"),
                None => prop_assert!(!any_ok, "picked nothing though a backend qualifies"),
            }
        }
        Ok(())
    }

    /// How closely an algorithm must split picks among equal backends.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Spread {
        /// Within one pick of the fair share: a deterministic rotation.
        Exact,
        /// Within 15% of the fair share: random draws, or the hashes of many
        /// distinct clients.
        Statistical,
    }

    /// Picks per situation of [`check_even_spread_without_one`]: a multiple
    /// of 3 survivors × 2 workers, so exact rotations come out even.
    const SPREAD_PICKS: usize = 3600;

    /// The contract's fairness half, after a round robin bug that gave one
    /// backend's turns all to the next (75/75/150 with 1 of 4 down): with
    /// any one of 4 equal backends out — ineligible, or at weight 0 — the
    /// other three each get a third of the picks. Each situation runs twice,
    /// once with every connection closing at once and once with all staying
    /// open; picks alternate between two workers and carry fresh random
    /// numbers and distinct client addresses. `make` builds the balancer for
    /// a set of backends.
    pub fn check_even_spread_without_one<B: Balancer>(
        make: impl Fn(&[Arc<Backend>]) -> B,
        spread: Spread,
    ) {
        let mut rng = XorShift(0x5eed_0fa1);
        let mut client: u32 = 0x0a00_0000;
        for out in 0..4 {
            for by_weight in [false, true] {
                for stay_open in [false, true] {
                    let mut weights = [1; 4];
                    if by_weight {
                        weights[out] = 0;
                    }
                    let b = backends(&weights);
                    let balancer = make(&b);
                    let eligible = |i: usize| by_weight || i != out;
                    let mut counts = [0usize; 4];
                    for pick in 0..SPREAD_PICKS {
                        let mut c = ctx(pick % 2, rng.next());
                        client += 1;
                        c.client = Some(IpAddr::V4(Ipv4Addr::from(client)));
                        let i = balancer
                            .pick(&b, &c, &eligible)
                            .expect("three backends qualify");
                        counts[i] += 1;
                        if stay_open {
                            bump_active(&b[i]);
                        }
                    }
                    let fair = SPREAD_PICKS as f64 / 3.0;
                    let slack = match spread {
                        Spread::Exact => 1.0,
                        Spread::Statistical => 0.15 * fair,
                    };
                    let how = if by_weight { "weight 0" } else { "ineligible" };
                    assert_eq!(counts[out], 0, "backend {out} ({how}) was picked");
                    for (i, &n) in counts.iter().enumerate().filter(|&(i, _)| i != out) {
                        assert!(
                            (n as f64 - fair).abs() <= slack,
                            "backend {out} {how}, connections {}: backend {i} got {n} \
                             of {SPREAD_PICKS} picks, fair {fair:.0} ± {slack:.0} \
                             (all: {counts:?})",
                            if stay_open {
                                "kept open"
                            } else {
                                "closed at once"
                            },
                        );
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use super::test_support::{ctx, set_active};
    use super::*;
    use crate::config::BackendConfig;
    use crate::counters::BackendStats;

    /// A backend as the config would give it.
    fn backend(port: u16, backup: bool, max_connections: u32, drain: bool) -> Arc<Backend> {
        let cfg = BackendConfig {
            name: format!("127.0.0.1:{port}"),
            addr: ([127, 0, 0, 1], port).into(),
            weight: 1,
            backup,
            max_connections,
            drain,
            disabled: false,
        };
        Arc::new(Backend::new(
            &cfg,
            Duration::ZERO,
            Arc::new(BackendStats::new(2)),
        ))
    }

    /// Two primaries (0, 1) and one backup (2), round robin in each tier.
    struct Pool {
        backends: Vec<Arc<Backend>>,
        primary: Tier,
        backup: Tier,
    }

    fn pool(max_connections: u32) -> Pool {
        pool_draining(max_connections, false)
    }

    fn pool_draining(max_connections: u32, drain_first: bool) -> Pool {
        let backends = vec![
            backend(9001, false, max_connections, drain_first),
            backend(9002, false, max_connections, false),
            backend(9003, true, max_connections, false),
        ];
        let tier = |members: Vec<usize>| Tier {
            backends: members.iter().map(|&i| backends[i].clone()).collect(),
            members,
            balancer: Box::new(RoundRobin::new()),
        };
        Pool {
            primary: tier(vec![0, 1]),
            backup: tier(vec![2]),
            backends,
        }
    }

    impl Pool {
        fn choose(&self, on_all_down: OnAllDown, tried: &dyn Fn(usize) -> bool) -> Choice {
            let policy = Policy { on_all_down };
            choose(
                &self.backends,
                &self.primary,
                &self.backup,
                &policy,
                &ctx(0, 0),
                tried,
            )
        }

        fn set_up(&self, i: usize, up: bool) {
            self.backends[i].stats.up.store(up, Ordering::Relaxed);
        }
    }

    const NONE_TRIED: &dyn Fn(usize) -> bool = &|_| false;

    #[test]
    fn backup_is_used_only_when_no_primary_is_eligible() {
        let p = pool(0);
        for _ in 0..10 {
            assert!(matches!(
                p.choose(OnAllDown::Refuse, NONE_TRIED),
                Choice::Backend(0 | 1)
            ));
        }
        p.set_up(0, false);
        for _ in 0..4 {
            assert_eq!(p.choose(OnAllDown::Refuse, NONE_TRIED), Choice::Backend(1));
        }
        p.set_up(1, false);
        assert_eq!(p.choose(OnAllDown::Refuse, NONE_TRIED), Choice::Backend(2));
        // A primary that was already tried counts as unavailable too.
        p.set_up(1, true);
        assert_eq!(p.choose(OnAllDown::Refuse, &|i| i == 1), Choice::Backend(2));
    }

    #[test]
    fn all_down_refuses_or_fails_open_as_configured() {
        let p = pool(0);
        (0..3).for_each(|i| p.set_up(i, false));
        assert_eq!(p.choose(OnAllDown::Refuse, NONE_TRIED), Choice::NoneLeft);
        // Fail open prefers the primaries, as a healthy pool would.
        assert!(matches!(
            p.choose(OnAllDown::FailOpen, NONE_TRIED),
            Choice::FailOpen(0 | 1)
        ));
        assert_eq!(
            p.choose(OnAllDown::FailOpen, &|i| i != 2),
            Choice::FailOpen(2)
        );
        assert_eq!(p.choose(OnAllDown::FailOpen, &|_| true), Choice::NoneLeft);
    }

    #[test]
    fn fail_open_respects_the_operator() {
        // Health is ignored in panic mode; a drain is not.
        let p = pool_draining(0, true);
        (0..3).for_each(|i| p.set_up(i, false));
        for _ in 0..4 {
            assert_eq!(
                p.choose(OnAllDown::FailOpen, NONE_TRIED),
                Choice::FailOpen(1)
            );
        }
    }

    #[test]
    fn fail_open_is_not_used_while_a_backend_is_merely_tried() {
        // Everything healthy but already tried: no panic mode, just no more.
        let p = pool(0);
        assert_eq!(p.choose(OnAllDown::FailOpen, &|_| true), Choice::NoneLeft);
    }

    #[test]
    fn all_full_when_every_healthy_backend_is_at_its_limit() {
        let p = pool(2);
        set_active(&p.backends[0], 2);
        set_active(&p.backends[1], 2);
        assert_eq!(p.choose(OnAllDown::Refuse, NONE_TRIED), Choice::Backend(2));
        set_active(&p.backends[2], 2);
        assert_eq!(p.choose(OnAllDown::Refuse, NONE_TRIED), Choice::AllFull);
        assert_eq!(p.choose(OnAllDown::FailOpen, NONE_TRIED), Choice::AllFull);
        // A full backend that is also down is down, not full.
        (0..3).for_each(|i| p.set_up(i, false));
        assert_eq!(p.choose(OnAllDown::Refuse, NONE_TRIED), Choice::NoneLeft);
        // One slot frees up.
        (0..3).for_each(|i| p.set_up(i, true));
        set_active(&p.backends[1], 1);
        assert_eq!(p.choose(OnAllDown::Refuse, NONE_TRIED), Choice::Backend(1));
    }
}
