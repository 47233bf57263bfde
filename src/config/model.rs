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
    /// One line per finished connection; `None` = off (the default).
    pub access_log: Option<AccessLogConfig>,
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
    WeightedRoundRobin,
    LeastConnections,
    IpHash,
    Random,
    P2c,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RoundRobin => "round_robin",
            Algorithm::WeightedRoundRobin => "weighted_round_robin",
            Algorithm::LeastConnections => "least_connections",
            Algorithm::IpHash => "ip_hash",
            Algorithm::Random => "random",
            Algorithm::P2c => "p2c",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    pub name: String,
    pub algorithm: Algorithm,
    pub backends: Vec<BackendConfig>,
    /// Active health probes; `None` = no probes (backends count as up).
    pub health_check: Option<HealthCheck>,
    /// Consecutive connect failures on the data path that eject a backend
    /// (passive health, a circuit breaker); 0 turns ejection off.
    pub eject_after: u32,
    /// First ejection lasts this long; each further one doubles it...
    pub ejection_time: Duration,
    /// ...up to this cap.
    pub max_ejection_time: Duration,
    /// Never eject more than this share of the pool's backends at once (0..=100).
    pub max_ejection_percent: u8,
    /// What to do when no backend at all is eligible.
    pub on_all_down: OnAllDown,
    /// A recovered or new backend's weight ramps up linearly over this long (ZERO = off).
    pub slow_start: Duration,
    /// `ip_hash` bounded load: spill a client to the next table choice when its
    /// backend has more than this factor × the average load. `None` = off.
    pub hash_balance_factor: Option<f64>,
    /// `ip_hash` Maglev lookup table size (a prime).
    pub hash_table_size: u32,
}

/// Defaults of the pool-level health and selection settings.
pub const DEFAULT_EJECT_AFTER: u32 = 5;
pub const DEFAULT_EJECTION_TIME: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX_EJECTION_TIME: Duration = Duration::from_secs(300);
pub const DEFAULT_MAX_EJECTION_PERCENT: u8 = 50;
/// Maglev's recommended table size for up to a few hundred backends (a prime).
pub const DEFAULT_HASH_TABLE_SIZE: u32 = 65537;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnAllDown {
    /// Ignore health and send to any backend (Envoy's panic mode).
    FailOpen,
    /// Close the client's connection.
    Refuse,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    pub kind: HealthKind,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive good probes that bring a down backend up.
    pub rise: u32,
    /// Consecutive failed probes that take an up backend down.
    pub fall: u32,
}

pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(2);
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
pub const DEFAULT_HEALTH_RISE: u32 = 2;
pub const DEFAULT_HEALTH_FALL: u32 = 3;

#[derive(Debug, Clone, PartialEq)]
pub enum HealthKind {
    /// Connect; if `send` is set write it; if `expect` is set, the reply must
    /// contain it (within the timeout).
    Tcp {
        send: Option<Vec<u8>>,
        expect: Option<Vec<u8>>,
    },
    /// `GET path` over HTTP/1.1; healthy when the status is in `expect_status`.
    Http {
        path: String,
        host: Option<String>,
        expect_status: Vec<std::ops::RangeInclusive<u16>>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct BackendConfig {
    /// The address as written in the config (`db.internal:5432`), used as the
    /// backend's name in logs, metrics and the API.
    pub name: String,
    /// The address it resolved to when the config was loaded.
    pub addr: SocketAddr,
    /// Relative share of new connections (weighted algorithms); 0 = drain.
    pub weight: u32,
    /// Only used when no primary backend is eligible.
    pub backup: bool,
    /// Most connections open at once to this backend; 0 = no limit.
    pub max_connections: u32,
    /// Operator state: no new connections, open ones run on.
    pub drain: bool,
    /// Operator state: taken out of service entirely.
    pub disabled: bool,
}

pub const DEFAULT_WEIGHT: u32 = 1;

impl Algorithm {
    /// Every algorithm this version implements, for validation and help text.
    /// A new variant must be added here too, or configs cannot select it.
    pub const ALL: [Algorithm; 6] = [
        Algorithm::RoundRobin,
        Algorithm::WeightedRoundRobin,
        Algorithm::LeastConnections,
        Algorithm::IpHash,
        Algorithm::Random,
        Algorithm::P2c,
    ];
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

/// Largest backend `weight`: enough for fine ratios (1 : 1000), small enough
/// that weight sums over thousands of backends stay far from overflow. The
/// admin API's weight changes must use the same bound.
pub const MAX_WEIGHT: u32 = 1000;
/// Default `on_all_down`.
pub const DEFAULT_ON_ALL_DOWN: OnAllDown = OnAllDown::FailOpen;
/// Default `slow_start`: off.
pub const DEFAULT_SLOW_START: Duration = Duration::ZERO;
/// Default `path` of an HTTP health check.
pub const DEFAULT_HEALTH_PATH: &str = "/";
/// Default `expect_status` of an HTTP health check: any success or redirect,
/// as HAProxy's `http-check` counts 2xx and 3xx as passing.
pub const DEFAULT_EXPECT_STATUS: std::ops::RangeInclusive<u16> = 200..=399;

impl BackendConfig {
    /// A backend with every per-backend setting at its default (what the short
    /// form `- host:port` gives).
    pub fn new(name: impl Into<String>, addr: SocketAddr) -> Self {
        BackendConfig {
            name: name.into(),
            addr,
            weight: DEFAULT_WEIGHT,
            backup: false,
            max_connections: 0,
            drain: false,
            disabled: false,
        }
    }
}

impl OnAllDown {
    /// Every value, for validation and help text.
    pub const ALL: [OnAllDown; 2] = [OnAllDown::FailOpen, OnAllDown::Refuse];

    /// The name used in the config file and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            OnAllDown::FailOpen => "fail_open",
            OnAllDown::Refuse => "refuse",
        }
    }
}

impl HealthKind {
    /// The `kind:` that selects it in the config file.
    pub fn as_str(&self) -> &'static str {
        match self {
            HealthKind::Tcp { .. } => "tcp",
            HealthKind::Http { .. } => "http",
        }
    }
}

/// Where and how the access log is written.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessLogConfig {
    pub target: AccessLogTarget,
    pub format: AccessLogFormat,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AccessLogTarget {
    Stderr,
    File(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLogFormat {
    Json,
    Logfmt,
}

impl AccessLogFormat {
    pub const ALL: [AccessLogFormat; 2] = [AccessLogFormat::Json, AccessLogFormat::Logfmt];

    pub fn as_str(self) -> &'static str {
        match self {
            AccessLogFormat::Json => "json",
            AccessLogFormat::Logfmt => "logfmt",
        }
    }
}
