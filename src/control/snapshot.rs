//! The immutable routing view workers read: listeners → pools → backends, with
//! each pool's prepared selector. Built whole on the control thread and
//! published through `arc-swap`; a worker loads it once per new connection and
//! never waits for the control thread. Counters hang off it in `Arc`s keyed by
//! name so they survive a rebuild.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::SockAddr;

use crate::balance::{self, Balancer};
use crate::config::{Config, ListenerConfig};
use crate::metrics::{BackendStats, ListenerStats};
use crate::uring::{timespec, Timespec};

pub struct Snapshot {
    pub listeners: Vec<Arc<Listener>>,
    pub pools: Vec<Pool>,
}

pub struct Listener {
    pub name: String,
    /// Index in `Snapshot::listeners` (and of the worker's socket for it).
    pub index: usize,
    pub pool: usize,
    pub connect_timeout: Duration,
    /// `connect_timeout` in the form the kernel reads; connections keep this
    /// listener alive while their connect is queued.
    pub connect_timespec: Timespec,
    pub idle_timeout: Duration,
    pub retries: u32,
    pub max_connections: u32,
    pub stats: Arc<ListenerStats>,
}

pub struct Pool {
    pub name: String,
    pub backends: Vec<Arc<Backend>>,
    pub balancer: Box<dyn Balancer>,
}

pub struct Backend {
    /// The address as written in the config; the backend's name everywhere.
    pub name: String,
    pub addr: SocketAddr,
    /// `addr` in the form `connect` reads; lives as long as the backend.
    pub sockaddr: SockAddr,
    pub stats: Arc<BackendStats>,
}

impl Backend {
    fn new(name: &str, addr: SocketAddr, stats: Arc<BackendStats>) -> Backend {
        Backend {
            name: name.to_string(),
            addr,
            sockaddr: SockAddr::from(addr),
            stats,
        }
    }

    #[cfg(test)]
    pub fn for_test(addr: &str, workers: usize) -> Backend {
        Backend::new(
            addr,
            addr.parse().unwrap(),
            Arc::new(BackendStats::new(workers)),
        )
    }
}

impl Snapshot {
    /// Builds the view of `config`, reusing the counters of listeners and
    /// backends that `previous` already had (same name; same pool and address).
    pub fn build(config: &Config, workers: usize, previous: Option<&Snapshot>) -> Snapshot {
        let pools = config
            .pools
            .iter()
            .map(|p| {
                let backends: Vec<Arc<Backend>> = p
                    .backends
                    .iter()
                    .map(|b| {
                        let stats = previous
                            .and_then(|s| s.pools.iter().find(|old| old.name == p.name))
                            .and_then(|old| old.backends.iter().find(|ob| ob.addr == b.addr))
                            .map(|ob| ob.stats.clone())
                            .unwrap_or_else(|| Arc::new(BackendStats::new(workers)));
                        Arc::new(Backend::new(&b.name, b.addr, stats))
                    })
                    .collect();
                Pool {
                    name: p.name.clone(),
                    balancer: balance::build(p.algorithm, &backends),
                    backends,
                }
            })
            .collect();
        let listeners = config
            .listeners
            .iter()
            .enumerate()
            .map(|(index, l)| {
                let stats = previous
                    .and_then(|s| s.listeners.iter().find(|old| old.name == l.name))
                    .map(|old| old.stats.clone())
                    .unwrap_or_else(|| Arc::new(ListenerStats::new(workers)));
                Arc::new(Listener::new(l, index, stats))
            })
            .collect();
        Snapshot { listeners, pools }
    }
}

impl Listener {
    fn new(l: &ListenerConfig, index: usize, stats: Arc<ListenerStats>) -> Listener {
        Listener {
            name: l.name.clone(),
            index,
            pool: l.pool.0,
            connect_timeout: l.connect_timeout,
            connect_timespec: timespec(l.connect_timeout),
            idle_timeout: l.idle_timeout,
            retries: l.retries,
            max_connections: l.max_connections,
            stats,
        }
    }
}
