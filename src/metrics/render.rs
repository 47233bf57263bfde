//! Renders the Prometheus text exposition format from the snapshot and the
//! per-worker counters. Runs on the control thread at scrape time only.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use super::names::{self, Metric};
use crate::counters::{
    Histogram, RouteStats, Stats, WorkerStats, BACKEND_TO_CLIENT, CLIENT_TO_BACKEND,
};
use crate::limits::Limiter;
use crate::outcome::{Reject, Termination};
use crate::snapshot::Snapshot;

const DIRECTIONS: [(usize, &str); 2] = [
    (CLIENT_TO_BACKEND, "client_to_backend"),
    (BACKEND_TO_CLIENT, "backend_to_client"),
];

/// Renders a histogram summed over workers, in seconds.
fn histogram<const N: usize>(
    out: &mut String,
    m: &Metric<0>,
    stats: &Stats,
    field: impl Fn(&WorkerStats) -> &Histogram<N>,
) {
    header(out, m);
    let Some(first) = stats.workers().next() else {
        return;
    };
    let bounds = field(first).bounds_us;
    let mut cumulative = 0;
    for (i, bound) in bounds.iter().enumerate() {
        cumulative += stats
            .workers()
            .map(|w| load(&field(w).buckets[i]))
            .sum::<u64>();
        let _ = writeln!(
            out,
            "{}_bucket{{le=\"{}\"}} {cumulative}",
            m.name,
            *bound as f64 / 1e6
        );
    }
    let count: u64 = stats.workers().map(|w| load(&field(w).count)).sum();
    let sum_us: u64 = stats.workers().map(|w| load(&field(w).sum_us)).sum();
    let _ = writeln!(out, "{}_bucket{{le=\"+Inf\"}} {count}", m.name);
    let _ = writeln!(out, "{}_sum {}", m.name, sum_us as f64 / 1e6);
    let _ = writeln!(out, "{}_count {count}", m.name);
}

/// Selects one counter of a worker's stats.
type WorkerField = fn(&WorkerStats) -> &AtomicU64;

fn header<const L: usize>(out: &mut String, m: &Metric<L>) {
    let _ = writeln!(out, "# HELP {} {}", m.name, m.help);
    let _ = writeln!(out, "# TYPE {} {}", m.name, m.kind.as_str());
}

/// Escapes a label value per the exposition format.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// Renders every metric; `reloads` is (ok, error) counts from the control thread.
pub fn render(
    snapshot: &Snapshot,
    stats: &Stats,
    limiter: &Limiter,
    reloads: (u64, u64),
) -> String {
    render_at(snapshot, stats, limiter, reloads, crate::clock::now_ms())
}

/// [`render`] at `now` (`clock::now_ms()`), which decides whether an ejection
/// is still running.
pub(super) fn render_at(
    snapshot: &Snapshot,
    stats: &Stats,
    limiter: &Limiter,
    reloads: (u64, u64),
    now: u64,
) -> String {
    let mut out = String::with_capacity(8192);
    let worker_count = stats.workers().count();

    header(&mut out, &names::WORKERS);
    let _ = writeln!(out, "{} {}", names::WORKERS.name, worker_count);

    // Per-backend series, one per listener that routes to the backend's pool
    // (its default pool, or an SNI route's), from per-listener counters.
    let routes: Vec<(&str, usize, usize)> = snapshot
        .listeners
        .iter()
        .flat_map(|l| {
            let mut pools = vec![l.pool];
            for r in &l.settings.sni_routes {
                if !pools.contains(&r.pool.0) {
                    pools.push(r.pool.0);
                }
            }
            pools
                .into_iter()
                .map(move |p| (l.name.as_str(), l.metrics_slot, p))
        })
        .collect();
    let series = |out: &mut String, m: &Metric<3>, field: &dyn Fn(&RouteStats) -> &AtomicU64| {
        header(out, m);
        for &(listener, slot, pi) in &routes {
            let p = &snapshot.pools[pi];
            for b in &p.backends {
                let _ = writeln!(
                    out,
                    "{}{{listener=\"{}\",pool=\"{}\",backend=\"{}\"}} {}",
                    m.name,
                    esc(listener),
                    esc(&p.name),
                    esc(&b.name),
                    b.stats.sum_route(slot, field)
                );
            }
        }
    };
    series(&mut out, &names::CONNECTIONS_TOTAL, &|r| &r.connections);
    series(&mut out, &names::ACTIVE_CONNECTIONS, &|r| &r.active);
    header(&mut out, &names::BYTES_TOTAL);
    for &(listener, slot, pi) in &routes {
        let p = &snapshot.pools[pi];
        for b in &p.backends {
            for (d, dname) in DIRECTIONS {
                let _ = writeln!(
                    out,
                    "{}{{listener=\"{}\",pool=\"{}\",backend=\"{}\",direction=\"{}\"}} {}",
                    names::BYTES_TOTAL.name,
                    esc(listener),
                    esc(&p.name),
                    esc(&b.name),
                    dname,
                    b.stats.sum_route(slot, |r| &r.bytes[d])
                );
            }
        }
    }
    header(&mut out, &names::CONNECT_ERRORS_TOTAL);
    for p in &snapshot.pools {
        for b in &p.backends {
            for (reason, v) in [
                ("refused", b.stats.sum(|s| &s.connect_errors_refused)),
                ("timeout", b.stats.sum(|s| &s.connect_errors_timeout)),
                ("other", b.stats.sum(|s| &s.connect_errors_other)),
            ] {
                let _ = writeln!(
                    out,
                    "{}{{pool=\"{}\",backend=\"{}\",reason=\"{}\"}} {}",
                    names::CONNECT_ERRORS_TOTAL.name,
                    esc(&p.name),
                    esc(&b.name),
                    reason,
                    v
                );
            }
        }
    }
    header(&mut out, &names::BACKEND_UP);
    for p in &snapshot.pools {
        for b in &p.backends {
            let _ = writeln!(
                out,
                "{}{{pool=\"{}\",backend=\"{}\"}} {}",
                names::BACKEND_UP.name,
                esc(&p.name),
                esc(&b.name),
                u8::from(b.eligible_ignoring_capacity(now))
            );
        }
    }
    header(&mut out, &names::BACKEND_HEALTHY);
    for p in &snapshot.pools {
        for b in &p.backends {
            let _ = writeln!(
                out,
                "{}{{pool=\"{}\",backend=\"{}\"}} {}",
                names::BACKEND_HEALTHY.name,
                esc(&p.name),
                esc(&b.name),
                u8::from(b.up())
            );
        }
    }
    header(&mut out, &names::BACKEND_EJECTED);
    for p in &snapshot.pools {
        for b in &p.backends {
            let _ = writeln!(
                out,
                "{}{{pool=\"{}\",backend=\"{}\"}} {}",
                names::BACKEND_EJECTED.name,
                esc(&p.name),
                esc(&b.name),
                u8::from(b.ejected(now))
            );
        }
    }
    header(&mut out, &names::HEALTH_CHECKS_TOTAL);
    for p in snapshot.pools.iter().filter(|p| p.health_check.is_some()) {
        for b in &p.backends {
            for (result, v) in [
                ("ok", &b.stats.checks_ok),
                ("failed", &b.stats.checks_failed),
                ("skipped", &b.stats.checks_skipped),
            ] {
                let _ = writeln!(
                    out,
                    "{}{{pool=\"{}\",backend=\"{}\",result=\"{}\"}} {}",
                    names::HEALTH_CHECKS_TOTAL.name,
                    esc(&p.name),
                    esc(&b.name),
                    result,
                    load(v)
                );
            }
        }
    }
    header(&mut out, &names::HEALTH_TRANSITIONS_TOTAL);
    for p in snapshot.pools.iter().filter(|p| p.health_check.is_some()) {
        for b in &p.backends {
            for (to, v) in [("up", &b.stats.went_up), ("down", &b.stats.went_down)] {
                let _ = writeln!(
                    out,
                    "{}{{pool=\"{}\",backend=\"{}\",to=\"{}\"}} {}",
                    names::HEALTH_TRANSITIONS_TOTAL.name,
                    esc(&p.name),
                    esc(&b.name),
                    to,
                    load(v)
                );
            }
        }
    }
    header(&mut out, &names::EJECTIONS_TOTAL);
    for p in &snapshot.pools {
        for b in &p.backends {
            let _ = writeln!(
                out,
                "{}{{pool=\"{}\",backend=\"{}\"}} {}",
                names::EJECTIONS_TOTAL.name,
                esc(&p.name),
                esc(&b.name),
                load(&b.stats.ejections_total)
            );
        }
    }

    header(&mut out, &names::LISTENER_ACCEPTED_TOTAL);
    for l in &snapshot.listeners {
        let _ = writeln!(
            out,
            "{}{{listener=\"{}\"}} {}",
            names::LISTENER_ACCEPTED_TOTAL.name,
            esc(&l.name),
            l.stats.sum(|s| &s.accepted)
        );
    }
    header(&mut out, &names::LISTENER_ACTIVE);
    for l in &snapshot.listeners {
        let _ = writeln!(
            out,
            "{}{{listener=\"{}\"}} {}",
            names::LISTENER_ACTIVE.name,
            esc(&l.name),
            load(&l.stats.active)
        );
    }
    header(&mut out, &names::REJECTED_TOTAL);
    for l in &snapshot.listeners {
        for reason in Reject::ALL {
            let _ = writeln!(
                out,
                "{}{{listener=\"{}\",reason=\"{}\"}} {}",
                names::REJECTED_TOTAL.name,
                esc(&l.name),
                reason.as_str(),
                l.stats.sum(|s| &s.rejected[reason.index()])
            );
        }
    }
    header(&mut out, &names::FAIL_OPEN_TOTAL);
    for l in &snapshot.listeners {
        let _ = writeln!(
            out,
            "{}{{listener=\"{}\"}} {}",
            names::FAIL_OPEN_TOTAL.name,
            esc(&l.name),
            l.stats.sum(|s| &s.fail_open)
        );
    }

    header(&mut out, &names::RELAY_BYTES_TOTAL);
    for (d, dname) in DIRECTIONS {
        let _ = writeln!(
            out,
            "{}{{mode=\"copy\",direction=\"{}\"}} {}",
            names::RELAY_BYTES_TOTAL.name,
            dname,
            stats.sum(|w| &w.bytes_copied[d])
        );
        let _ = writeln!(
            out,
            "{}{{mode=\"splice\",direction=\"{}\"}} {}",
            names::RELAY_BYTES_TOTAL.name,
            dname,
            stats.sum(|w| &w.bytes_spliced[d])
        );
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
    for (m, field) in totals {
        header(&mut out, m);
        let _ = writeln!(out, "{} {}", m.name, stats.sum(field));
    }
    histogram(&mut out, &names::CONNECT_DURATION, stats, |w| {
        &w.connect_duration
    });
    histogram(&mut out, &names::CONNECTION_DURATION, stats, |w| {
        &w.connection_duration
    });
    header(&mut out, &names::TERMINATIONS_TOTAL);
    for t in Termination::ALL {
        let _ = writeln!(
            out,
            "{}{{termination=\"{}\"}} {}",
            names::TERMINATIONS_TOTAL.name,
            t.as_str(),
            stats.sum(|w| &w.terminations[t.index()])
        );
    }
    header(&mut out, &names::ACCESS_LOG_DROPPED_TOTAL);
    let _ = writeln!(
        out,
        "{} {}",
        names::ACCESS_LOG_DROPPED_TOTAL.name,
        stats.sum(|w| &w.access_log_dropped)
    );
    header(&mut out, &names::WORKER_ACCEPTED_TOTAL);
    for (i, w) in stats.workers().enumerate() {
        let _ = writeln!(
            out,
            "{}{{worker=\"{}\"}} {}",
            names::WORKER_ACCEPTED_TOTAL.name,
            i,
            load(&w.accepted)
        );
    }
    header(&mut out, &names::WORKER_ACTIVE);
    for (i, w) in stats.workers().enumerate() {
        let _ = writeln!(
            out,
            "{}{{worker=\"{}\"}} {}",
            names::WORKER_ACTIVE.name,
            i,
            load(&w.active)
        );
    }
    header(&mut out, &names::LIMITS_EVICTIONS_TOTAL);
    let _ = writeln!(
        out,
        "{} {}",
        names::LIMITS_EVICTIONS_TOTAL.name,
        limiter.evictions()
    );
    header(&mut out, &names::LIMITS_TABLE_ENTRIES);
    let _ = writeln!(
        out,
        "{} {}",
        names::LIMITS_TABLE_ENTRIES.name,
        limiter.len_estimate()
    );
    header(&mut out, &names::LIMITS_TABLE_CAPACITY);
    let _ = writeln!(
        out,
        "{} {}",
        names::LIMITS_TABLE_CAPACITY.name,
        limiter.capacity()
    );
    header(&mut out, &names::CONFIG_RELOADS_TOTAL);
    let _ = writeln!(
        out,
        "{}{{result=\"ok\"}} {}",
        names::CONFIG_RELOADS_TOTAL.name,
        reloads.0
    );
    let _ = writeln!(
        out,
        "{}{{result=\"error\"}} {}",
        names::CONFIG_RELOADS_TOTAL.name,
        reloads.1
    );
    out
}
