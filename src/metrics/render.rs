//! What the exposition says: the snapshot's gauges and the per-worker
//! counters summed, one short function per area, each writing its families
//! through [`Exposition`] (which owns the spelling). Families come out in the
//! order of the areas in [`render_at`]; the golden test pins it. Runs on the
//! control thread at scrape time only, and only ever loads counters.

use std::sync::atomic::{AtomicU64, Ordering};

use super::family::Exposition;
use super::names::{self, Metric};
use crate::balance::Backend;
use crate::counters::{
    BackendWorkerStats, Histogram, RouteStats, Stats, WorkerStats, BACKEND_TO_CLIENT,
    CLIENT_TO_BACKEND, CODE_CLASSES, CONNECT_BUCKETS_US, HANDSHAKE_RESULTS, LISTENER_SLOTS,
};
use crate::limits::Limiter;
use crate::outcome::{Reject, Termination};
use crate::snapshot::{Pool, Snapshot};

/// The `direction` label of each per-direction counter index.
const DIRECTIONS: [(usize, &str); 2] = [
    (CLIENT_TO_BACKEND, "client_to_backend"),
    (BACKEND_TO_CLIENT, "backend_to_client"),
];

/// Selects one counter of a worker's stats.
type WorkerField = fn(&WorkerStats) -> &AtomicU64;
/// Selects one counter of a worker's traffic from one listener to a backend.
type RouteField = fn(&RouteStats) -> &AtomicU64;
/// Selects one counter of a worker's traffic to a backend.
type BackendField = fn(&BackendWorkerStats) -> &AtomicU64;

/// The control thread's reload counts, (ok, error) each.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reloads {
    pub config: (u64, u64),
    pub tls: (u64, u64),
}

/// Renders every metric.
pub fn render(snapshot: &Snapshot, stats: &Stats, limiter: &Limiter, reloads: Reloads) -> String {
    render_at(snapshot, stats, limiter, reloads, crate::clock::now_ms())
}

/// [`render`] at `now` (`clock::now_ms()`), which decides whether an ejection
/// is still running.
pub(super) fn render_at(
    snapshot: &Snapshot,
    stats: &Stats,
    limiter: &Limiter,
    reloads: Reloads,
    now: u64,
) -> String {
    let mut out = Exposition::new();
    process(&mut out, stats);
    backend_traffic(&mut out, snapshot);
    backend_health(&mut out, snapshot, now);
    pools(&mut out, snapshot, now);
    listeners(&mut out, snapshot);
    data_path(&mut out, stats);
    connections(&mut out, stats);
    workers(&mut out, stats);
    limits(&mut out, limiter);
    control(&mut out, reloads.config);
    http(&mut out, snapshot);
    tls(&mut out, snapshot, reloads.tls);
    out.finish()
}

fn process(out: &mut Exposition, stats: &Stats) {
    out.family(&names::WORKERS)
        .sample([], stats.workers().count());
    if let Some(engine) = stats.engine() {
        out.family(&names::DATAPLANE_INFO).sample([engine], 1);
    }
}

/// Traffic from one listener to one pool, counted in the listener's slot of
/// each backend's per-listener counters.
struct Route<'a> {
    listener: &'a str,
    slot: usize,
    pool: &'a Pool,
}

/// Every (listener, pool) pair traffic can take: each listener's default
/// pool, then its SNI (or HTTP) routes' pools, each pool once per listener.
fn routes(snapshot: &Snapshot) -> Vec<Route<'_>> {
    let mut routes = Vec::new();
    for l in &snapshot.listeners {
        routes.extend(l.pools().into_iter().map(|p| Route {
            listener: &l.name,
            slot: l.metrics_slot,
            pool: &snapshot.pools[p],
        }));
    }
    routes
}

/// Every backend with its pool, in config order.
fn backends(snapshot: &Snapshot) -> impl Iterator<Item = (&Pool, &Backend)> {
    snapshot
        .pools
        .iter()
        .flat_map(|p| p.backends.iter().map(move |b| (p, &**b)))
}

/// Per-backend traffic, by the listener it came through where the counters
/// keep it apart.
fn backend_traffic(out: &mut Exposition, snapshot: &Snapshot) {
    let routes = routes(snapshot);
    let per_route = |out: &mut Exposition, metric: &Metric<3>, field: RouteField| {
        let mut family = out.family(metric);
        for r in &routes {
            for b in &r.pool.backends {
                let value = b.stats.sum_route(r.slot, field);
                family.sample([r.listener, &r.pool.name, &b.name], value);
            }
        }
    };
    per_route(out, &names::CONNECTIONS_TOTAL, |r| &r.connections);
    per_route(out, &names::ACTIVE_CONNECTIONS, |r| &r.active);

    let mut bytes = out.family(&names::BYTES_TOTAL);
    for r in &routes {
        for b in &r.pool.backends {
            for (d, direction) in DIRECTIONS {
                let value = b.stats.sum_route(r.slot, |s| &s.bytes[d]);
                bytes.sample([r.listener, &r.pool.name, &b.name, direction], value);
            }
        }
    }

    let reasons: [(&str, BackendField); 3] = [
        ("refused", |s| &s.connect_errors_refused),
        ("timeout", |s| &s.connect_errors_timeout),
        ("other", |s| &s.connect_errors_other),
    ];
    let mut errors = out.family(&names::CONNECT_ERRORS_TOTAL);
    for (p, b) in backends(snapshot) {
        for (reason, field) in reasons {
            errors.sample([&p.name, &b.name, reason], b.stats.sum(field));
        }
    }
}

/// Whether each backend may be used, and the probes and ejections behind it.
fn backend_health(out: &mut Exposition, snapshot: &Snapshot, now: u64) {
    let flag = |out: &mut Exposition, metric: &Metric<2>, on: &dyn Fn(&Backend) -> bool| {
        let mut family = out.family(metric);
        for (p, b) in backends(snapshot) {
            family.sample([&p.name, &b.name], u8::from(on(b)));
        }
    };
    flag(out, &names::BACKEND_UP, &|b| {
        b.eligible_ignoring_capacity(now)
    });
    flag(out, &names::BACKEND_HEALTHY, &|b| b.up());
    flag(out, &names::BACKEND_EJECTED, &|b| b.ejected(now));

    // Probe counters only where probes run: elsewhere they would be zeros
    // that look like a check that never ran.
    let probed = || backends(snapshot).filter(|(p, _)| p.health_check.is_some());
    let mut checks = out.family(&names::HEALTH_CHECKS_TOTAL);
    for (p, b) in probed() {
        let s = &b.stats;
        for (result, n) in [
            ("ok", &s.checks_ok),
            ("failed", &s.checks_failed),
            ("skipped", &s.checks_skipped),
        ] {
            checks.sample([&p.name, &b.name, result], load(n));
        }
    }
    let mut transitions = out.family(&names::HEALTH_TRANSITIONS_TOTAL);
    for (p, b) in probed() {
        for (to, n) in [("up", &b.stats.went_up), ("down", &b.stats.went_down)] {
            transitions.sample([&p.name, &b.name, to], load(n));
        }
    }

    let mut ejections = out.family(&names::EJECTIONS_TOTAL);
    for (p, b) in backends(snapshot) {
        ejections.sample([&p.name, &b.name], load(&b.stats.ejections_total));
    }
}

/// How full each pool is. Capacity is known only where every backend sets
/// `max_connections` (an unlimited backend has none to divide by), so the
/// capacity and utilization series exist only for such pools; the active
/// and eligible counts always do (connections per backend is their ratio).
fn pools(out: &mut Exposition, snapshot: &Snapshot, now: u64) {
    /// One pool's figures, read once so the four series agree.
    struct Fill<'a> {
        pool: &'a str,
        active: u64,
        eligible: usize,
        capacity: Option<u64>,
    }
    let fills: Vec<Fill> = snapshot
        .pools
        .iter()
        .map(|p| {
            let eligible: Vec<&Backend> = p
                .backends
                .iter()
                .map(|b| &**b)
                .filter(|b| b.eligible_ignoring_capacity(now))
                .collect();
            let limited = p.backends.iter().all(|b| b.max_connections > 0);
            Fill {
                pool: &p.name,
                active: p.backends.iter().map(|b| b.active()).sum(),
                eligible: eligible.len(),
                capacity: limited
                    .then(|| eligible.iter().map(|b| u64::from(b.max_connections)).sum()),
            }
        })
        .collect();
    let mut family = out.family(&names::POOL_ACTIVE_CONNECTIONS);
    for f in &fills {
        family.sample([f.pool], f.active);
    }
    let mut family = out.family(&names::POOL_ELIGIBLE_BACKENDS);
    for f in &fills {
        family.sample([f.pool], f.eligible);
    }
    let mut family = out.family(&names::POOL_CAPACITY);
    for f in &fills {
        if let Some(c) = f.capacity {
            family.sample([f.pool], c);
        }
    }
    let mut family = out.family(&names::POOL_UTILIZATION);
    for f in &fills {
        match f.capacity {
            Some(0) => family.sample([f.pool], 1.0),
            Some(c) => family.sample([f.pool], f.active as f64 / c as f64),
            None => {}
        }
    }
}

fn listeners(out: &mut Exposition, snapshot: &Snapshot) {
    let listeners = &snapshot.listeners;
    let mut accepted = out.family(&names::LISTENER_ACCEPTED_TOTAL);
    for l in listeners {
        accepted.sample([&l.name], l.stats.sum(|s| &s.accepted));
    }
    let mut active = out.family(&names::LISTENER_ACTIVE);
    for l in listeners {
        active.sample([&l.name], load(&l.stats.active));
    }
    let mut rejected = out.family(&names::REJECTED_TOTAL);
    for l in listeners {
        for reason in Reject::ALL {
            let value = l.stats.sum(|s| &s.rejected[reason.index()]);
            rejected.sample([&l.name, reason.as_str()], value);
        }
    }
    let mut fail_open = out.family(&names::FAIL_OPEN_TOTAL);
    for l in listeners {
        fail_open.sample([&l.name], l.stats.sum(|s| &s.fail_open));
    }
}

/// How the workers moved bytes and what they ran short of, summed.
fn data_path(out: &mut Exposition, stats: &Stats) {
    let mut relay = out.family(&names::RELAY_BYTES_TOTAL);
    for (d, direction) in DIRECTIONS {
        relay.sample(["copy", direction], stats.sum(|w| &w.bytes_copied[d]));
        relay.sample(["splice", direction], stats.sum(|w| &w.bytes_spliced[d]));
    }
    let totals: [(&Metric<0>, WorkerField); 8] = [
        (&names::SPLICE_SWITCHES_TOTAL, |w| &w.splice_switches),
        (&names::PIPE_EXHAUSTED_TOTAL, |w| &w.pipe_exhausted),
        (&names::PIPES_IN_USE, |w| &w.pipes_in_use),
        (&names::PIPES_MAX, |w| &w.pipes_max),
        (&names::IDLE_TIMEOUTS_TOTAL, |w| &w.idle_timeouts),
        (&names::ACCEPT_RESOURCE_ERRORS_TOTAL, |w| {
            &w.accept_resource_errors
        }),
        (&names::BUFFER_EXHAUSTED_TOTAL, |w| &w.buffer_exhausted),
        (&names::SHUTDOWN_CLOSED_TOTAL, |w| &w.shutdown_closed),
    ];
    for (metric, field) in totals {
        out.family(metric).sample([], stats.sum(field));
    }
}

/// How long client connections took and how they ended, summed over workers.
fn connections(out: &mut Exposition, stats: &Stats) {
    histogram(out, &names::CONNECT_DURATION, stats, |w| {
        &w.connect_duration
    });
    histogram(out, &names::CONNECTION_DURATION, stats, |w| {
        &w.connection_duration
    });
    let mut closed = out.family(&names::TERMINATIONS_TOTAL);
    for t in Termination::ALL {
        closed.sample([t.as_str()], stats.sum(|w| &w.terminations[t.index()]));
    }
    out.family(&names::ACCESS_LOG_DROPPED_TOTAL)
        .sample([], stats.sum(|w| &w.access_log_dropped));
}

/// One worker histogram summed over workers, from µs to seconds.
fn histogram<const N: usize>(
    out: &mut Exposition,
    metric: &Metric<0>,
    stats: &Stats,
    field: impl Fn(&WorkerStats) -> &Histogram<N>,
) {
    let mut family = out.histogram(metric);
    let Some(first) = stats.workers().next() else {
        return;
    };
    let bounds = field(first).bounds_us;
    // WHY buckets before count: a worker bumps its bucket, then the count;
    // read in that order, a concurrent observation does not leave a bucket
    // above `+Inf`.
    let buckets: [(f64, u64); N] = std::array::from_fn(|i| {
        let n = stats.workers().map(|w| load(&field(w).buckets[i])).sum();
        (bounds[i] as f64 / 1e6, n)
    });
    let count: u64 = stats.workers().map(|w| load(&field(w).count)).sum();
    let sum_us: u64 = stats.workers().map(|w| load(&field(w).sum_us)).sum();
    family.series([], buckets, sum_us as f64 / 1e6, count);
}

fn workers(out: &mut Exposition, stats: &Stats) {
    let per_worker = |out: &mut Exposition, metric: &Metric<1>, field: WorkerField| {
        let mut family = out.family(metric);
        for (i, w) in stats.workers().enumerate() {
            family.sample([&i.to_string()], load(field(w)));
        }
    };
    per_worker(out, &names::WORKER_ACCEPTED_TOTAL, |w| &w.accepted);
    per_worker(out, &names::WORKER_ACTIVE, |w| &w.active);
}

fn limits(out: &mut Exposition, limiter: &Limiter) {
    out.family(&names::LIMITS_EVICTIONS_TOTAL)
        .sample([], limiter.evictions());
    out.family(&names::LIMITS_TABLE_ENTRIES)
        .sample([], limiter.len_estimate());
    out.family(&names::LIMITS_TABLE_CAPACITY)
        .sample([], limiter.capacity());
}

/// The control thread's own counters; `(ok, error)` config loads.
fn control(out: &mut Exposition, (ok, error): (u64, u64)) {
    let mut reloads = out.family(&names::CONFIG_RELOADS_TOTAL);
    reloads.sample(["ok"], ok);
    reloads.sample(["error"], error);
}

/// The HTTP mode's requests: by (listener, pool) from the backends' route
/// counters, and each listener's own answers with an empty pool.
fn http(out: &mut Exposition, snapshot: &Snapshot) {
    let is_http = |name: &str| {
        snapshot
            .listeners
            .iter()
            .any(|l| l.name == name && l.settings.http.is_some())
    };
    let routes: Vec<Route<'_>> = routes(snapshot)
        .into_iter()
        .filter(|r| is_http(r.listener))
        .collect();
    let mut requests = out.family(&names::HTTP_REQUESTS_TOTAL);
    for r in &routes {
        for (class, label) in CODE_CLASS_LABELS.iter().enumerate() {
            let n: u64 = r
                .pool
                .backends
                .iter()
                .map(|b| b.stats.sum_route(r.slot, |s| &s.http_responses[class]))
                .sum();
            requests.sample([r.listener, &r.pool.name, label], n);
        }
    }
    for l in snapshot
        .listeners
        .iter()
        .filter(|l| l.settings.http.is_some())
    {
        for (class, label) in CODE_CLASS_LABELS.iter().enumerate() {
            requests.sample([&l.name, "", label], l.stats.sum(|s| &s.http_local[class]));
        }
    }
    let mut upstream = out.family(&names::HTTP_UPSTREAM_CONNECTIONS);
    for p in &snapshot.pools {
        let open: u64 = p
            .backends
            .iter()
            .map(|b| b.stats.sum(|s| &s.upstream_open))
            .sum();
        if open > 0 || routes.iter().any(|r| std::ptr::eq(r.pool, p)) {
            upstream.sample([&p.name, "open"], open);
        }
    }
    let mut limited = out.family(&names::HTTP_RATE_LIMITED_TOTAL);
    for l in &snapshot.listeners {
        let Some(http) = &l.settings.http else {
            continue;
        };
        // Limits with the same labels share one counter: each is shown once.
        let mut shown: Vec<*const crate::counters::RateLimitedStats> = Vec::new();
        for (route, state) in http.routes.iter().zip(&l.routes) {
            let pool = &snapshot.pools[route.pool.0].name;
            for limit in &state.limits {
                let ptr = std::sync::Arc::as_ptr(&limit.rejected);
                if !shown.contains(&ptr) {
                    shown.push(ptr);
                    limited.sample([&l.name, pool, &limit.label], limit.rejected.sum());
                }
            }
        }
    }
    let mut abuse = out.family(&names::HTTP2_ABUSE_CLOSED_TOTAL);
    for l in snapshot
        .listeners
        .iter()
        .filter(|l| l.settings.http.is_some())
    {
        abuse.sample([&l.name], l.stats.sum(|s| &s.h2_abuse_closed));
    }
    let mut durations = out.histogram(&names::HTTP_REQUEST_DURATION);
    for r in &routes {
        let per_worker = || {
            r.pool.backends.iter().flat_map(|b| {
                (0..b.stats.workers()).map(move |w| {
                    &b.stats.worker(w).by_listener[r.slot % LISTENER_SLOTS].http_duration
                })
            })
        };
        let buckets: Vec<(f64, u64)> = CONNECT_BUCKETS_US
            .iter()
            .enumerate()
            .map(|(i, bound)| {
                (
                    *bound as f64 / 1e6,
                    per_worker().map(|h| load(&h.buckets[i])).sum(),
                )
            })
            .collect();
        let count: u64 = per_worker().map(|h| load(&h.count)).sum();
        let sum_us: u64 = per_worker().map(|h| load(&h.sum_us)).sum();
        durations.series(
            [r.listener, &r.pool.name],
            buckets,
            sum_us as f64 / 1e6,
            count,
        );
    }
}

/// The `code_class` label of each status-class index.
const CODE_CLASS_LABELS: [&str; CODE_CLASSES] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Handshakes per terminating listener, certificate expiry, reloads.
fn tls(out: &mut Exposition, snapshot: &Snapshot, (ok, error): (u64, u64)) {
    let mut handshakes = out.family(&names::TLS_HANDSHAKES_TOTAL);
    for l in snapshot
        .listeners
        .iter()
        .filter(|l| l.server_config.is_some())
    {
        for (i, result) in HANDSHAKE_RESULTS.iter().enumerate() {
            handshakes.sample([&l.name, result], l.stats.sum(|s| &s.tls_handshakes[i]));
        }
    }
    let mut expiry = out.family(&names::TLS_CERT_EXPIRY);
    for store in &snapshot.tls_stores {
        let current = store.current();
        for cert in current.certs() {
            let name = cert.names.first().map_or("", String::as_str);
            expiry.sample([current.name(), name], cert.not_after_unix);
        }
    }
    let mut reloads = out.family(&names::TLS_RELOADS_TOTAL);
    reloads.sample(["ok"], ok);
    reloads.sample(["error"], error);
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}
