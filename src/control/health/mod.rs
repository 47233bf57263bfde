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
use crate::counters::{bump, BackendStats};
use crate::log;
use state::{Hysteresis, Transition};

pub use probe::{parse_status, probe, ProbeError};

/// How often the supervisor looks at the snapshot.
const RECONCILE_EVERY: Duration = Duration::from_millis(250);
/// At most one "out of fds" warning per backend this often.
const LOCAL_WARN_EVERY: Duration = Duration::from_secs(10);

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
    let unprobed = stats.unprobed.load(Ordering::Relaxed);
    let mut h = if unprobed {
        Hysteresis::unprobed()
    } else {
        Hysteresis::new(stats.up.load(Ordering::Relaxed))
    };
    let mut local_warned: Option<tokio::time::Instant> = None;
    // Spread the first probes of all backends over one interval; one that
    // waits for its first probe to take traffic is probed at once.
    if !unprobed {
        tokio::time::sleep(jitter.scale(hc.interval, 0, 1000)).await;
    }
    loop {
        let result = match tokio::time::timeout(hc.timeout, probe(addr, &hc.kind)).await {
            Ok(r) => r,
            Err(_) => Err(ProbeError::Timeout),
        };
        if let Some(e) = result.as_ref().err().filter(|e| e.is_local()) {
            // Our shortage, not the backend's: no verdict this round.
            bump(&stats.checks_skipped, 1);
            if local_warned.is_none_or(|t| t.elapsed() >= LOCAL_WARN_EVERY) {
                local_warned = Some(tokio::time::Instant::now());
                log::warn(
                    "health probe not sent: spliced is out of file descriptors or memory (raise LimitNOFILE); the backend's health is unchanged",
                    &[("pool", &pool), ("backend", &name), ("error", e)],
                );
            }
            tokio::time::sleep(jitter.scale(hc.interval, 900, 1100)).await;
            continue;
        }
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
                stats.unprobed.store(false, Ordering::Relaxed);
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

/// Starts the health supervisor on a thread of its own with its own
/// current-thread runtime; it ends once `state.stopped` is set.
pub fn start(state: Arc<State>) -> std::io::Result<std::thread::JoinHandle<()>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("spliced-health".into())
        .spawn(move || rt.block_on(supervise(state)))
}

/// Reconciles the probe loops with the snapshot until `state.stopped`.
async fn supervise(state: Arc<State>) {
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
        if state.stopped.load(Ordering::Acquire) {
            loops.values().for_each(JoinHandle::abort);
            return;
        }
        tokio::time::sleep(RECONCILE_EVERY).await;
    }
}
