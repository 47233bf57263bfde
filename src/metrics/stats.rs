//! The counter structures shared between workers (writers) and the control
//! thread (reader). Per-worker slots are padded to a cache line each so two
//! workers never write the same line.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

/// Adds `n` to a counter that only the calling worker writes. A load and a
/// store instead of `fetch_add`: no locked instruction on the hot path, and the
/// reader at scrape time tolerates seeing the value a moment late.
#[inline]
pub fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
}

/// Index into per-direction arrays.
pub const CLIENT_TO_BACKEND: usize = 0;
pub const BACKEND_TO_CLIENT: usize = 1;

/// One worker's own counters.
#[derive(Debug, Default)]
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
}

/// Per-backend counters: the shared `active` gauge (exact across workers, also
/// counting connections still connecting) and per-worker totals.
#[derive(Debug)]
pub struct BackendStats {
    pub active: CachePadded<AtomicU64>,
    per_worker: Box<[CachePadded<BackendWorkerStats>]>,
}

#[derive(Debug, Default)]
pub struct BackendWorkerStats {
    pub connections: AtomicU64,
    pub connect_errors_refused: AtomicU64,
    pub connect_errors_timeout: AtomicU64,
    pub connect_errors_other: AtomicU64,
    pub bytes: [AtomicU64; 2],
}

impl BackendStats {
    pub fn new(workers: usize) -> BackendStats {
        BackendStats {
            active: CachePadded::new(AtomicU64::new(0)),
            per_worker: (0..workers.max(1)).map(|_| Default::default()).collect(),
        }
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
    pub rejected_max_connections: AtomicU64,
    pub rejected_no_backend: AtomicU64,
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

/// Process-wide counters: one padded slot per worker.
#[derive(Debug)]
pub struct Stats {
    workers: Box<[CachePadded<WorkerStats>]>,
}

impl Stats {
    pub fn new(workers: usize) -> Stats {
        Stats {
            workers: (0..workers.max(1)).map(|_| Default::default()).collect(),
        }
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
