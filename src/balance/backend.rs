//! One backend as selection and the data planes see it: its configured
//! settings, frozen for the life of a snapshot, and its live counters and
//! health (shared `Arc<BackendStats>`, kept across snapshots by name). Owned
//! by `balance` because everything an algorithm decides from lives here.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use socket2::SockAddr;

use crate::config::BackendConfig;
use crate::counters::BackendStats;

pub struct Backend {
    /// The address as written in the config; the backend's name everywhere.
    pub name: String,
    pub addr: SocketAddr,
    /// `addr` in the form `connect` reads; lives as long as the backend.
    pub sockaddr: SockAddr,
    /// Configured weight (0 = drain).
    pub weight: u32,
    pub backup: bool,
    /// 0 = no limit.
    pub max_connections: u32,
    pub drain: bool,
    pub disabled: bool,
    /// The pool's slow-start ramp in ms (0 = off).
    pub slow_start_ms: u64,
    pub stats: Arc<BackendStats>,
}

/// Fixed-point scale of [`Backend::effective_weight`]: weights are multiplied
/// by this so slow start can ramp even a weight of 1 smoothly.
pub const WEIGHT_SCALE: u64 = 1000;

impl Backend {
    pub fn new(b: &BackendConfig, slow_start: Duration, stats: Arc<BackendStats>) -> Backend {
        Backend {
            name: b.name.clone(),
            addr: b.addr,
            sockaddr: SockAddr::from(b.addr),
            weight: b.weight,
            backup: b.backup,
            max_connections: b.max_connections,
            drain: b.drain,
            disabled: b.disabled,
            slow_start_ms: slow_start.as_millis() as u64,
            stats,
        }
    }

    /// A backend with default settings, for tests of selection code.
    #[doc(hidden)]
    pub fn for_test(addr: &str, weight: u32) -> Backend {
        let b = BackendConfig {
            name: addr.to_string(),
            addr: addr.parse().expect("test backend address"),
            weight,
            backup: false,
            max_connections: 0,
            drain: false,
            disabled: false,
        };
        Backend::new(&b, Duration::ZERO, Arc::new(BackendStats::new(2)))
    }

    /// The operator keeps it in service (not disabled, not draining, weight > 0).
    #[inline]
    pub fn in_service(&self) -> bool {
        !self.disabled && !self.drain && self.weight > 0
    }

    /// Connections open (or connecting) to it right now, across all workers.
    #[inline]
    pub fn active(&self) -> u64 {
        self.stats.active.load(Ordering::Relaxed)
    }

    #[inline]
    pub fn is_full(&self) -> bool {
        self.max_connections > 0 && self.active() >= self.max_connections as u64
    }

    #[inline]
    pub fn ejected(&self, now_ms: u64) -> bool {
        self.stats.ejected_until_ms.load(Ordering::Relaxed) > now_ms
    }

    #[inline]
    pub fn up(&self) -> bool {
        self.stats.up.load(Ordering::Relaxed)
    }

    /// In service and healthy (probes say up, not ejected), whatever its load.
    #[inline]
    pub fn eligible_ignoring_capacity(&self, now_ms: u64) -> bool {
        self.in_service() && self.up() && !self.ejected(now_ms)
    }

    /// May take a new connection now.
    #[inline]
    pub fn eligible(&self, now_ms: u64) -> bool {
        self.eligible_ignoring_capacity(now_ms) && !self.is_full()
    }

    /// The weight selection uses now, times [`WEIGHT_SCALE`]: the configured
    /// weight, ramped up linearly during `slow_start` after the backend became
    /// usable (never below 1%, so a recovering backend still sees some traffic).
    pub fn effective_weight(&self, now_ms: u64) -> u64 {
        let full = self.weight as u64 * WEIGHT_SCALE;
        if self.slow_start_ms == 0 || full == 0 {
            return full;
        }
        let since = self
            .stats
            .usable_since_ms
            .load(Ordering::Relaxed)
            .max(self.stats.ejected_until_ms.load(Ordering::Relaxed));
        let elapsed = now_ms.saturating_sub(since);
        if elapsed >= self.slow_start_ms {
            return full;
        }
        (full * elapsed / self.slow_start_ms).max(full / 100).max(1)
    }
}
