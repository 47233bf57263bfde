//! Backend health on the control thread. Active: one probe loop per backend
//! of every pool with a `health_check`, with jitter so probes don't
//! synchronise, feeding the hysteresis in `state`; the result is published in
//! the backend's shared `up` flag that workers read. Passive: workers eject a
//! backend after consecutive connect failures (see the data plane); this
//! module logs ejections and returns, and lets the backoff decay. A supervisor
//! reconciles the running probe loops with the current snapshot, so a reload
//! that adds, removes or changes backends needs nothing else.

mod probe;
pub mod state;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::State;
use crate::clock;
use crate::config::HealthCheck;
use crate::log;
use crate::metrics::{bump, BackendStats};
use state::{Hysteresis, Transition};

pub use probe::{parse_status, probe, ProbeError};

/// How often the supervisor looks at the snapshot.
const RECONCILE_EVERY: Duration = Duration::from_millis(250);

/// A small xorshift generator for jitter (no need for a crypto RNG here).
struct Jitter(u64);

impl Jitter {
    fn new(seed: u64) -> Jitter {
        Jitter(seed | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// `d` scaled by a random factor in [lo, hi) (per mille).
    fn scale(&mut self, d: Duration, lo: u64, hi: u64) -> Duration {
        let f = lo + self.next() % (hi - lo).max(1);
        d * f as u32 / 1000
    }
}

/// Probes one backend forever (until its task is aborted).
async fn probe_loop(
    state: Arc<State>,
    pool: String,
    name: String,
    addr: SocketAddr,
    hc: HealthCheck,
    stats: Arc<BackendStats>,
) {
    let mut jitter =
        Jitter::new(crate::balance::hash_key(addr.ip()) ^ addr.port() as u64 ^ clock::now_ms());
    let mut h = Hysteresis::new(stats.up.load(Ordering::Relaxed));
    // Spread the first probes of all backends over one interval.
    tokio::time::sleep(jitter.scale(hc.interval, 0, 1000)).await;
    loop {
        let result = match tokio::time::timeout(hc.timeout, probe(addr, &hc.kind)).await {
            Ok(r) => r,
            Err(_) => Err(ProbeError::Timeout),
        };
        match &result {
            Ok(()) => bump(&stats.checks_ok, 1),
            Err(_) => bump(&stats.checks_failed, 1),
        }
        match h.observe(result.is_ok(), hc.rise, hc.fall) {
            Some(Transition::WentDown) => {
                stats.up.store(false, Ordering::Relaxed);
                bump(&stats.went_down, 1);
                let reason = result.err().map(|e| e.to_string()).unwrap_or_default();
                state.events.push(&pool, &name, "down", reason.clone());
                log::warn(
                    "backend down",
                    &[
                        ("pool", &pool),
                        ("backend", &name),
                        ("reason", &reason),
                        ("fall", &hc.fall),
                    ],
                );
            }
            Some(Transition::WentUp) => {
                stats
                    .usable_since_ms
                    .store(clock::now_ms(), Ordering::Relaxed);
                stats.up.store(true, Ordering::Relaxed);
                bump(&stats.went_up, 1);
                state
                    .events
                    .push(&pool, &name, "up", format!("{} good probes", hc.rise));
                log::info(
                    "backend up",
                    &[("pool", &pool), ("backend", &name), ("rise", &hc.rise)],
                );
            }
            None => {}
        }
        // ±10% so probes of many backends never line up.
        tokio::time::sleep(jitter.scale(hc.interval, 900, 1100)).await;
    }
}

/// Identity of a probe loop: a change of any part restarts it.
type ProbeKey = (String, SocketAddr, String);

/// Runs the health supervisor until the runtime stops.
pub async fn supervise(state: Arc<State>) {
    let shared = state.shared.clone();
    let mut loops: HashMap<ProbeKey, JoinHandle<()>> = HashMap::new();
    let mut ejected: HashMap<(String, SocketAddr), bool> = HashMap::new();
    loop {
        let snapshot = shared.snapshot.load_full();
        let now = clock::now_ms();
        let mut wanted: HashMap<ProbeKey, ()> = HashMap::new();
        for pool in &snapshot.pools {
            for b in &pool.backends {
                // Passive health: report ejections and let the backoff decay.
                let is_ejected = b.ejected(now);
                let key = (pool.name.clone(), b.addr);
                let was = ejected.insert(key, is_ejected).unwrap_or(false);
                if is_ejected && !was {
                    let until = b.stats.ejected_until_ms.load(Ordering::Relaxed);
                    state.events.push(
                        &pool.name,
                        &b.name,
                        "ejected",
                        format!("for {}ms", until.saturating_sub(now)),
                    );
                    log::warn(
                        "backend ejected after consecutive connect failures",
                        &[
                            ("pool", &pool.name),
                            ("backend", &b.name),
                            ("for", &format!("{}ms", until.saturating_sub(now))),
                        ],
                    );
                } else if was && !is_ejected {
                    state
                        .events
                        .push(&pool.name, &b.name, "returned", "ejection ended");
                    log::info(
                        "backend back from ejection",
                        &[("pool", &pool.name), ("backend", &b.name)],
                    );
                }
                let until = b.stats.ejected_until_ms.load(Ordering::Relaxed);
                if !is_ejected && until > 0 && now.saturating_sub(until) > pool.max_ejection_time_ms
                {
                    b.stats.ejections.store(0, Ordering::Relaxed);
                }

                let Some(hc) = &pool.health_check else {
                    continue;
                };
                let key = (pool.name.clone(), b.addr, format!("{hc:?}"));
                if !loops.contains_key(&key) {
                    let task = tokio::spawn(probe_loop(
                        state.clone(),
                        pool.name.clone(),
                        b.name.clone(),
                        b.addr,
                        hc.clone(),
                        b.stats.clone(),
                    ));
                    loops.insert(key.clone(), task);
                }
                wanted.insert(key, ());
            }
        }
        loops.retain(|key, task| {
            let keep = wanted.contains_key(key);
            if !keep {
                task.abort();
            }
            keep
        });
        // A backend whose pool no longer probes it counts as up again.
        for pool in snapshot.pools.iter().filter(|p| p.health_check.is_none()) {
            for b in &pool.backends {
                if !b.up() {
                    b.stats.up.store(true, Ordering::Relaxed);
                }
            }
        }
        tokio::time::sleep(RECONCILE_EVERY).await;
    }
}
