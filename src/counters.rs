//! The counter structures shared between workers (writers) and the control
//! thread (reader). Per-worker slots are padded to a cache line each so two
//! workers never write the same line.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

use crate::outcome::Reject;

/// Adds `n` to a counter that only the calling worker writes. A load and a
/// store instead of `fetch_add`: no locked instruction on the hot path, and the
/// reader at scrape time tolerates seeing the value a moment late.
#[inline]
pub fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
}

/// Subtracts `n` from a gauge only the calling worker writes.
#[inline]
pub fn unbump(counter: &AtomicU64, n: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).saturating_sub(n),
        Ordering::Relaxed,
    );
}

/// Index into per-direction arrays.
pub const CLIENT_TO_BACKEND: usize = 0;
pub const BACKEND_TO_CLIENT: usize = 1;

/// Upper bounds (µs) of the connect-time histogram's buckets.
pub const CONNECT_BUCKETS_US: [u64; 13] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000,
];
/// Upper bounds (µs) of the connection-duration histogram's buckets.
pub const DURATION_BUCKETS_US: [u64; 10] = [
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    60_000_000,
    300_000_000,
    1_800_000_000,
    3_600_000_000,
    86_400_000_000,
];

/// A fixed-bucket histogram written by one worker: per-bucket counts (not
/// cumulative; the last slot counts values above every bound), a count and a
/// sum. Rendering sums workers and accumulates.
#[derive(Debug)]
pub struct Histogram<const N: usize> {
    pub bounds_us: &'static [u64; N],
    pub buckets: [AtomicU64; N],
    pub overflow: AtomicU64,
    pub count: AtomicU64,
    pub sum_us: AtomicU64,
}

impl<const N: usize> Histogram<N> {
    pub fn new(bounds_us: &'static [u64; N]) -> Self {
        Histogram {
            bounds_us,
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            overflow: AtomicU64::new(0),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }

    /// Records one value; only the owning worker calls this.
    #[inline]
    pub fn observe(&self, us: u64) {
        match self.bounds_us.iter().position(|&b| us <= b) {
            Some(i) => bump(&self.buckets[i], 1),
            None => bump(&self.overflow, 1),
        }
        bump(&self.count, 1);
        bump(&self.sum_us, us);
    }
}

/// Connections ended, per [`crate::outcome::Termination`] (indexed by `Termination::index`).
pub const TERMINATIONS: usize = crate::outcome::Termination::ALL.len();

/// One worker's own counters.
#[derive(Debug)]
pub struct WorkerStats {
    pub accepted: AtomicU64,
    /// Connections open on this worker right now (gauge).
    pub active: AtomicU64,
    /// Bytes relayed through the provided-buffer ring, per direction.
    pub bytes_copied: [AtomicU64; 2],
    /// Bytes relayed by splice through a pipe, per direction.
    pub bytes_spliced: [AtomicU64; 2],
    /// Times a direction switched from copy to splice.
    pub splice_switches: AtomicU64,
    /// Times a direction wanted to splice but no pipe was free.
    pub pipe_exhausted: AtomicU64,
    /// Pipes lent out right now (gauge) and the pool's bound.
    pub pipes_in_use: AtomicU64,
    pub pipes_max: AtomicU64,
    pub idle_timeouts: AtomicU64,
    /// Accepts that failed for lack of file descriptors or memory.
    pub accept_resource_errors: AtomicU64,
    /// Receives that found the buffer ring empty and had to wait.
    pub buffer_exhausted: AtomicU64,
    /// Connections closed when the shutdown deadline passed.
    pub shutdown_closed: AtomicU64,
    /// Time from starting a backend connect to its success.
    pub connect_duration: Histogram<13>,
    /// Lifetime of client connections, accept to close.
    pub connection_duration: Histogram<10>,
    /// Why connections ended.
    pub terminations: [AtomicU64; TERMINATIONS],
    /// Access log records dropped because the worker's queue was full.
    pub access_log_dropped: AtomicU64,
}

impl Default for WorkerStats {
    fn default() -> Self {
        WorkerStats {
            accepted: Default::default(),
            active: Default::default(),
            bytes_copied: Default::default(),
            bytes_spliced: Default::default(),
            splice_switches: Default::default(),
            pipe_exhausted: Default::default(),
            pipes_in_use: Default::default(),
            pipes_max: Default::default(),
            idle_timeouts: Default::default(),
            accept_resource_errors: Default::default(),
            buffer_exhausted: Default::default(),
            shutdown_closed: Default::default(),
            connect_duration: Histogram::new(&CONNECT_BUCKETS_US),
            connection_duration: Histogram::new(&DURATION_BUCKETS_US),
            terminations: Default::default(),
            access_log_dropped: Default::default(),
        }
    }
}

/// Per-backend live state shared by workers and the control thread, kept
/// across snapshot rebuilds (keyed by pool and address): the `active` gauge
/// (exact across workers, also counting connections still connecting), health
/// and ejection state, and per-worker totals.
#[derive(Debug)]
pub struct BackendStats {
    pub active: CachePadded<AtomicU64>,
    /// Active health: set by the control thread's probes (true without probes).
    pub up: AtomicBool,
    /// Passive health: consecutive failed connects seen by any worker.
    pub consecutive_failures: AtomicU32,
    /// Ejected until this `clock::now_ms()` (0: not ejected).
    pub ejected_until_ms: AtomicU64,
    /// Ejections so far (each doubles the next one's length); decays on the control thread.
    pub ejections: AtomicU32,
    /// When the backend last became usable (slow start ramps from here).
    pub usable_since_ms: AtomicU64,
    per_worker: Box<[CachePadded<BackendWorkerStats>]>,
    /// Probe results and transitions, written by the control thread only.
    pub checks_ok: AtomicU64,
    pub checks_failed: AtomicU64,
    /// Added while running to a pool with a health check: down until its
    /// first probe (set by the snapshot builder, read by the probe loop).
    pub unprobed: AtomicBool,
    /// Probes not sent because spliced itself was out of fds or memory.
    pub checks_skipped: AtomicU64,
    pub went_down: AtomicU64,
    pub went_up: AtomicU64,
    pub ejections_total: AtomicU64,
}

#[derive(Debug, Default)]
pub struct BackendWorkerStats {
    pub connections: AtomicU64,
    /// HTTP mode: connections this worker has open to the backend (gauge).
    pub upstream_open: AtomicU64,
    pub connect_errors_refused: AtomicU64,
    pub connect_errors_timeout: AtomicU64,
    pub connect_errors_other: AtomicU64,
    pub bytes: [AtomicU64; 2],
    /// The same traffic split by the listener it came through (indexed by
    /// `Listener::metrics_slot`), for the `listener` label of the
    /// per-backend series.
    pub by_listener: [RouteStats; LISTENER_SLOTS],
}

/// Listeners told apart in per-backend series. A listener's slot is its
/// stable id modulo this; more listeners than this routing to one pool would
/// share slots.
pub const LISTENER_SLOTS: usize = 16;

/// One worker's traffic from one listener to one backend.
#[derive(Debug)]
pub struct RouteStats {
    pub connections: AtomicU64,
    /// Open (or connecting) right now; single writer, so a gauge per worker.
    pub active: AtomicU64,
    pub bytes: [AtomicU64; 2],
    /// HTTP mode: responses by status class (1xx..5xx, indexed by
    /// [`code_class`]), and the time from request to response headers.
    pub http_responses: [AtomicU64; CODE_CLASSES],
    pub http_duration: Histogram<13>,
}

impl Default for RouteStats {
    fn default() -> Self {
        RouteStats {
            connections: Default::default(),
            active: Default::default(),
            bytes: Default::default(),
            http_responses: Default::default(),
            http_duration: Histogram::new(&CONNECT_BUCKETS_US),
        }
    }
}

/// HTTP status classes counted: 1xx to 5xx.
pub const CODE_CLASSES: usize = 5;

/// The slot of `status` in per-class arrays (1xx → 0 … 5xx → 4).
#[inline]
pub fn code_class(status: u16) -> usize {
    (status / 100).clamp(1, 5) as usize - 1
}

/// TLS handshake results counted per listener, in this order (the labels
/// of the `HANDSHAKE_*` indices).
pub const HANDSHAKE_RESULTS: [&str; 4] = ["ok", "failed", "timeout", "unknown_sni"];
pub const HANDSHAKE_OK: usize = 0;
pub const HANDSHAKE_FAILED: usize = 1;
pub const HANDSHAKE_TIMEOUT: usize = 2;
pub const HANDSHAKE_UNKNOWN_SNI: usize = 3;

impl BackendStats {
    pub fn new(workers: usize) -> BackendStats {
        BackendStats {
            active: CachePadded::new(AtomicU64::new(0)),
            up: AtomicBool::new(true),
            consecutive_failures: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
            usable_since_ms: AtomicU64::new(crate::clock::now_ms()),
            per_worker: (0..workers.max(1)).map(|_| Default::default()).collect(),
            checks_ok: AtomicU64::new(0),
            checks_failed: AtomicU64::new(0),
            checks_skipped: AtomicU64::new(0),
            unprobed: AtomicBool::new(false),
            went_down: AtomicU64::new(0),
            went_up: AtomicU64::new(0),
            ejections_total: AtomicU64::new(0),
        }
    }

    /// How many worker slots it has.
    pub fn workers(&self) -> usize {
        self.per_worker.len()
    }

    /// The slot only worker `w` writes.
    #[inline]
    pub fn worker(&self, w: usize) -> &BackendWorkerStats {
        &self.per_worker[w]
    }

    /// Sums one field over all workers.
    pub fn sum(&self, field: impl Fn(&BackendWorkerStats) -> &AtomicU64) -> u64 {
        self.per_worker
            .iter()
            .map(|s| field(s).load(Ordering::Relaxed))
            .sum()
    }

    /// Sums one field of listener slot `slot` over all workers.
    pub fn sum_route(&self, slot: usize, field: impl Fn(&RouteStats) -> &AtomicU64) -> u64 {
        self.per_worker
            .iter()
            .map(|s| field(&s.by_listener[slot % LISTENER_SLOTS]).load(Ordering::Relaxed))
            .sum()
    }
}

/// Per-listener counters.
#[derive(Debug)]
pub struct ListenerStats {
    /// Open connections through this listener (shared, for `max_connections`).
    pub active: CachePadded<AtomicU64>,
    per_worker: Box<[CachePadded<ListenerWorkerStats>]>,
}

#[derive(Debug, Default)]
pub struct ListenerWorkerStats {
    pub accepted: AtomicU64,
    /// Indexed by [`Reject::index`].
    pub rejected: [AtomicU64; Reject::ALL.len()],
    /// New connections sent to an unhealthy backend because all were down (fail_open).
    pub fail_open: AtomicU64,
    /// HTTP mode: answers spliced made before any backend was involved (no
    /// route, no backend, refused requests), by status class.
    pub http_local: [AtomicU64; CODE_CLASSES],
    /// HTTP/2 connections closed for a flood of reset streams (rapid reset)
    /// or other abuse h2 answers with ENHANCE_YOUR_CALM.
    pub h2_abuse_closed: AtomicU64,
    /// TLS handshakes by result ([`HANDSHAKE_RESULTS`]).
    pub tls_handshakes: [AtomicU64; HANDSHAKE_RESULTS.len()],
}

impl ListenerStats {
    pub fn new(workers: usize) -> ListenerStats {
        ListenerStats {
            active: CachePadded::new(AtomicU64::new(0)),
            per_worker: (0..workers.max(1)).map(|_| Default::default()).collect(),
        }
    }

    #[inline]
    pub fn worker(&self, w: usize) -> &ListenerWorkerStats {
        &self.per_worker[w]
    }

    pub fn sum(&self, field: impl Fn(&ListenerWorkerStats) -> &AtomicU64) -> u64 {
        self.per_worker
            .iter()
            .map(|s| field(s).load(Ordering::Relaxed))
            .sum()
    }
}

/// HTTP requests answered 429 by one route limit, per worker; shared by every
/// limit with the same `{listener, pool, key}` labels and kept across
/// reloads by them.
#[derive(Debug)]
pub struct RateLimitedStats {
    per_worker: Box<[CachePadded<AtomicU64>]>,
}

impl RateLimitedStats {
    pub fn new(workers: usize) -> RateLimitedStats {
        RateLimitedStats {
            per_worker: (0..workers.max(1)).map(|_| Default::default()).collect(),
        }
    }

    /// The counter only worker `w` writes.
    #[inline]
    pub fn worker(&self, w: usize) -> &AtomicU64 {
        &self.per_worker[w]
    }

    pub fn sum(&self) -> u64 {
        self.per_worker
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

/// Process-wide counters: one padded slot per worker.
#[derive(Debug)]
pub struct Stats {
    workers: Box<[CachePadded<WorkerStats>]>,
    /// The L4 workers' engine ("io_uring", "epoll"), set once they start.
    engine: std::sync::OnceLock<&'static str>,
}

impl Stats {
    pub fn new(workers: usize) -> Stats {
        Stats {
            workers: (0..workers.max(1)).map(|_| Default::default()).collect(),
            engine: std::sync::OnceLock::new(),
        }
    }

    /// Records which engine the L4 workers run on (the first call wins).
    pub fn set_engine(&self, name: &'static str) {
        let _ = self.engine.set(name);
    }

    /// The L4 workers' engine, `None` before they start.
    pub fn engine(&self) -> Option<&'static str> {
        self.engine.get().copied()
    }

    #[inline]
    pub fn worker(&self, w: usize) -> &WorkerStats {
        &self.workers[w]
    }

    pub fn workers(&self) -> impl Iterator<Item = &WorkerStats> {
        self.workers.iter().map(|w| &**w)
    }

    pub fn sum(&self, field: impl Fn(&WorkerStats) -> &AtomicU64) -> u64 {
        self.workers()
            .map(|s| field(s).load(Ordering::Relaxed))
            .sum()
    }
}
