//! The typed runtime configuration: what `validate` produces and the rest of
//! spliced consumes. Every value here has already been checked; nothing in this
//! module parses or fails. Must never hold serde attributes or raw strings that
//! still need interpretation.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Default for `shutdown_timeout`: how long a graceful stop lets open
/// connections run before closing them.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// Default listener `connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default listener `idle_timeout` (as HAProxy's common `timeout client 5m`).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default listener `retries`: other backends tried after a failed connect.
pub const DEFAULT_RETRIES: u32 = 2;
/// Default listener `max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 100_000;
/// Default listen backlog (kernel caps it at `net.core.somaxconn`).
pub const DEFAULT_BACKLOG: u32 = 4096;

/// A whole, valid configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Number of data-plane worker threads (`workers: auto` resolved to the CPU count).
    pub workers: usize,
    /// The admin listener (dashboard, API, metrics); `None` when the config has no `admin:` section.
    pub admin: Option<AdminConfig>,
    /// How long a graceful shutdown waits for open connections.
    pub shutdown_timeout: Duration,
    pub listeners: Vec<ListenerConfig>,
    pub pools: Vec<PoolConfig>,
}

/// Index of a pool in [`Config::pools`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PoolId(pub usize);

#[derive(Debug, Clone, PartialEq)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// When set, mutating API calls need `Authorization: Bearer <contents>`.
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListenerConfig {
    pub name: String,
    /// Where clients connect; port 0 asks the kernel for a free port.
    pub listen: SocketAddr,
    /// The pool new connections go to.
    pub pool: PoolId,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    /// How many other backends to try when a connect fails.
    pub retries: u32,
    /// Most connections open at once through this listener (per process).
    pub max_connections: u32,
    pub backlog: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    RoundRobin,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RoundRobin => "round_robin",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    pub name: String,
    pub algorithm: Algorithm,
    pub backends: Vec<BackendConfig>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BackendConfig {
    /// The address as written in the config (`db.internal:5432`), used as the
    /// backend's name in logs, metrics and the API.
    pub name: String,
    /// The address it resolved to when the config was loaded.
    pub addr: SocketAddr,
}

impl Algorithm {
    /// Every algorithm this version implements, for validation and help text.
    /// A new variant must be added here too, or configs cannot select it.
    pub const ALL: [Algorithm; 1] = [Algorithm::RoundRobin];
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Config {
    /// The pool a [`PoolId`] from this config points at.
    pub fn pool(&self, id: PoolId) -> &PoolConfig {
        &self.pools[id.0]
    }

    /// The pool with this name, if there is one.
    pub fn pool_id(&self, name: &str) -> Option<PoolId> {
        self.pools.iter().position(|p| p.name == name).map(PoolId)
    }
}
