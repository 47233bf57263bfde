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
    /// Which engine runs the L4 plane.
    pub dataplane: Dataplane,
    /// The admin listener (dashboard, API, metrics); `None` when the config has no `admin:` section.
    pub admin: Option<AdminConfig>,
    /// How long a graceful shutdown waits for open connections.
    pub shutdown_timeout: Duration,
    /// One line per finished connection; `None` = off (the default).
    pub access_log: Option<AccessLogConfig>,
    /// Most per-client entries kept for limits (flood protection bound).
    pub limits_table_size: usize,
    /// Certificate stores (`tls:`), referenced by HTTP listeners by index.
    pub tls: Vec<TlsStoreConfig>,
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
    /// DNS names the API answers to besides its IPs and `localhost` (the
    /// `Host` check against DNS rebinding).
    pub allowed_hosts: Vec<String>,
    /// The operator accepts an admin API beyond loopback without a token.
    pub allow_unauthenticated: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListenerConfig {
    pub name: String,
    /// Where clients connect; port 0 asks the kernel for a free port.
    pub listen: SocketAddr,
    /// The pool new connections go to (always set for `mode: tcp`); for
    /// `mode: http`, where requests no route matches go (`None`: 404).
    pub pool: Option<PoolId>,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    /// How many other backends to try when a connect fails.
    pub retries: u32,
    /// Most connections open at once through this listener (per process).
    pub max_connections: u32,
    pub backlog: u32,
    /// TLS passthrough routing by the ClientHello's SNI (empty: no peeking).
    pub sni_routes: Vec<SniRoute>,
    /// Refuse clients whose first bytes are not a TLS ClientHello with SNI
    /// (only meaningful with `sni_routes`).
    pub require_sni: bool,
    /// How long to wait for a complete ClientHello.
    pub tls_inspect_timeout: Duration,
    /// PROXY protocol header sent to backends.
    pub proxy_protocol: ProxyProtocolSend,
    /// PROXY protocol header expected from upstream balancers.
    pub accept_proxy_protocol: ProxyProtocolAccept,
    /// Sources allowed to send a PROXY header; anyone else is refused.
    pub trusted_proxies: Vec<Cidr>,
    /// How long to wait for a complete PROXY header.
    pub proxy_header_timeout: Duration,
    /// If not empty, only these client sources may connect.
    pub allow: Vec<Cidr>,
    /// These client sources are refused (checked before `allow`).
    pub deny: Vec<Cidr>,
    /// Per-client limits; `None` = none.
    pub limits: Option<Limits>,
    /// `mode: http`: TLS termination and HTTP proxying (`None`: `mode: tcp`,
    /// bytes relayed as they are).
    pub http: Option<Box<HttpListener>>,
}

/// The HTTP side of a `mode: http` listener.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpListener {
    /// TLS termination; `None`: plaintext HTTP/1.1 and h2c (prior knowledge).
    pub tls: Option<ListenerTls>,
    /// Answer every request with a 308 to `https://<host>:<port><path>`.
    pub redirect_https: Option<u16>,
    pub timeouts: HttpTimeouts,
    pub request_limits: RequestLimits,
    /// Sources whose `X-Forwarded-For` is kept and appended to; anyone
    /// else's is replaced by their address.
    pub trusted_proxies: Vec<Cidr>,
    /// First match wins; no match: the listener's `pool`, or 404.
    pub routes: Vec<HttpRoute>,
}

/// A listener's TLS settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerTls {
    /// Index in [`Config::tls`].
    pub store: usize,
    /// Offered by ALPN, in order of preference ("h2", "http/1.1").
    pub alpn: Vec<String>,
    pub min_version: TlsVersion,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    V1_2,
    V1_3,
}

impl TlsVersion {
    pub const ALL: [TlsVersion; 2] = [TlsVersion::V1_2, TlsVersion::V1_3];

    /// As written in the config: `"1.2"`, `"1.3"`.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsVersion::V1_2 => "1.2",
            TlsVersion::V1_3 => "1.3",
        }
    }
}

pub const DEFAULT_ALPN: [&str; 2] = ["h2", "http/1.1"];

#[derive(Debug, Clone, PartialEq)]
pub struct HttpTimeouts {
    /// A TLS handshake must complete within this.
    pub handshake: Duration,
    /// A request's headers must arrive within this (slowloris → 408).
    pub request_header: Duration,
    /// A kept-alive connection with no request in flight is closed after this.
    pub idle: Duration,
    /// An upgraded connection (WebSocket) idle this long in both directions
    /// is closed; `None` (`tunnel_idle: 0`): never.
    pub tunnel_idle: Option<Duration>,
    /// The backend must start its response within this (→ 504).
    pub backend_response: Duration,
}

pub const DEFAULT_HTTP_TIMEOUTS: HttpTimeouts = HttpTimeouts {
    handshake: Duration::from_secs(5),
    request_header: Duration::from_secs(10),
    idle: Duration::from_secs(60),
    tunnel_idle: Some(Duration::from_secs(3600)),
    backend_response: Duration::from_secs(30),
};

#[derive(Debug, Clone, PartialEq)]
pub struct RequestLimits {
    /// Largest request head (→ 431).
    pub max_header_bytes: usize,
    /// Largest request body (→ 413).
    pub max_body: u64,
    /// Concurrent HTTP/2 streams per client connection.
    pub h2_max_streams: u32,
}

pub const DEFAULT_REQUEST_LIMITS: RequestLimits = RequestLimits {
    max_header_bytes: 32 * 1024,
    max_body: 10 * 1024 * 1024,
    h2_max_streams: 100,
};

/// One route of an HTTP listener: every condition given must match.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRoute {
    /// The request's host (without port), exact or `*.suffix`.
    pub host: Option<SniPattern>,
    /// The path starts with this.
    pub path_prefix: Option<String>,
    pub pool: PoolId,
    /// Cookie-based session affinity to one backend of `pool`.
    pub sticky: Option<Sticky>,
    /// Per-request rate limits, each checked in order (empty: none).
    pub rate_limits: Vec<RateLimit>,
}

/// A route's `sticky:`: the first response sets a cookie naming the backend
/// (by an opaque keyed MAC of the pool and backend names), later requests
/// carrying it go back there while it is eligible.
#[derive(Debug, Clone, PartialEq)]
pub struct Sticky {
    pub cookie: String,
    /// `Max-Age` of the cookie; `None`: a session cookie (gone when the
    /// browser closes).
    pub ttl: Option<Duration>,
    pub secure: bool,
    pub http_only: bool,
    pub same_site: Option<SameSite>,
    /// The MAC key the backend ids are made with; `None`: a key derived from
    /// the cookie name (stable, but public: anyone can compute the id of a
    /// backend whose address they guess).
    pub secret: Option<StickySecret>,
}

/// The `sticky.secret` text; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct StickySecret(pub String);

impl std::fmt::Debug for StickySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StickySecret(..)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

impl SameSite {
    pub const ALL: [SameSite; 3] = [SameSite::Strict, SameSite::Lax, SameSite::None];

    /// As written in the config (lower case).
    pub fn as_str(self) -> &'static str {
        match self {
            SameSite::Strict => "strict",
            SameSite::Lax => "lax",
            SameSite::None => "none",
        }
    }

    /// As the `SameSite=` cookie attribute spells it.
    pub fn attribute(self) -> &'static str {
        match self {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
            SameSite::None => "None",
        }
    }
}

/// Default `sticky.http_only`: scripts have no business reading it.
pub const DEFAULT_STICKY_HTTP_ONLY: bool = true;

/// One of a route's `rate_limit:` entries: requests per second per key
/// (GCRA, shared by all workers), over which spliced answers 429.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimit {
    pub key: RateLimitKey,
    /// Requests per second.
    pub rate: f64,
    /// Requests allowed at once above the rate (default: a second's worth,
    /// at least 1).
    pub burst: u32,
    /// What a request without the header counts as (`key: header:...` only).
    pub missing: MissingKey,
}

/// What a request is counted by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateLimitKey {
    /// The client's address (IPv6 by the listener's `limits.ipv6_prefix`, /64 by default).
    Ip,
    /// The value of this request header (the name as written in the config).
    Header(String),
}

impl RateLimitKey {
    /// As written in the config, and as the metrics' `key` label.
    pub fn label(&self) -> String {
        match self {
            RateLimitKey::Ip => "ip".to_owned(),
            RateLimitKey::Header(name) => format!("header:{name}"),
        }
    }
}

/// A header-keyed limit's answer to a request without the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingKey {
    /// Count it by the client's address, in this limit's own buckets.
    Ip,
    /// This limit does not apply to it.
    Skip,
}

impl MissingKey {
    pub const ALL: [MissingKey; 2] = [MissingKey::Ip, MissingKey::Skip];

    pub fn as_str(self) -> &'static str {
        match self {
            MissingKey::Ip => "ip",
            MissingKey::Skip => "skip",
        }
    }
}

/// A certificate store (`tls:` item).
#[derive(Debug, Clone, PartialEq)]
pub struct TlsStoreConfig {
    pub name: String,
    /// PEM files; the SNI names each serves come from its certificate's SANs.
    pub certs: Vec<CertFiles>,
    /// Names a self-signed certificate is generated for at start.
    pub self_signed: Vec<String>,
    /// The name whose certificate serves unknown or missing SNI; `None`:
    /// such handshakes get an `unrecognized_name` alert.
    pub default: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The L4 plane's engine (`dataplane:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dataplane {
    /// io_uring when this process may use it, else epoll (said in one line).
    #[default]
    Auto,
    /// io_uring or nothing: start-up fails when it is refused.
    IoUring,
    /// epoll, even where io_uring would work.
    Epoll,
}

impl Dataplane {
    pub const ALL: [Dataplane; 3] = [Dataplane::Auto, Dataplane::IoUring, Dataplane::Epoll];

    pub fn as_str(self) -> &'static str {
        match self {
            Dataplane::Auto => "auto",
            Dataplane::IoUring => "io_uring",
            Dataplane::Epoll => "epoll",
        }
    }
}

/// How spliced speaks to a pool's backends in `mode: http`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 with keep-alive.
    Http1,
    /// HTTP/2 over plain TCP (prior knowledge).
    H2c,
    /// HTTP/2 over TLS (needs `backend_tls`).
    H2,
}

impl UpstreamProtocol {
    pub const ALL: [UpstreamProtocol; 3] = [
        UpstreamProtocol::Http1,
        UpstreamProtocol::H2c,
        UpstreamProtocol::H2,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamProtocol::Http1 => "http1",
            UpstreamProtocol::H2c => "h2c",
            UpstreamProtocol::H2 => "h2",
        }
    }
}

/// TLS from spliced to a pool's backends (HTTP mode).
#[derive(Debug, Clone, PartialEq)]
pub struct BackendTls {
    /// The name sent as SNI and verified; `None`: the backend's host name.
    pub sni: Option<String>,
    /// CAs to verify backends with; `None`: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// `false` skips verification (testing only; warned at start).
    pub verify: bool,
}

pub const DEFAULT_TLS_INSPECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// One SNI route of a listener: exact names are matched before `*.suffix`
/// wildcards; a route with `alpn` also needs one of those protocols offered.
#[derive(Debug, Clone, PartialEq)]
pub struct SniRoute {
    pub pattern: SniPattern,
    /// Protocols (e.g. "h2", "http/1.1"); empty = any.
    pub alpn: Vec<String>,
    pub pool: PoolId,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SniPattern {
    /// A full host name, lower case, without a trailing dot.
    Exact(String),
    /// `*.example.com` stored as `.example.com` (lower case): matches
    /// `a.example.com` and `a.b.example.com`, not `example.com`.
    Suffix(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyProtocolSend {
    Off,
    V1,
    V2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyProtocolAccept {
    Off,
    V1,
    V2,
    Any,
}

/// An IP network: `10.0.0.0/8`, `::1/128`, or a bare address (full prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network address with host bits cleared.
    pub addr: std::net::IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// Whether `ip` is inside this network. IPv4-mapped IPv6 addresses
    /// (`::ffff:a.b.c.d`) match IPv4 networks.
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.prefix as u32)
                };
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.prefix as u32)
                };
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Per-client limits of a listener (the client is its IP, or the address a
/// trusted PROXY header gave; IPv6 clients are grouped by `ipv6_prefix`).
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// New connections per second per client (GCRA / token bucket).
    pub per_ip_rate: Option<f64>,
    /// Burst allowed above the rate (default: the rate, at least 1).
    pub per_ip_burst: Option<u32>,
    /// Concurrent connections per client.
    pub per_ip_connections: Option<u32>,
    /// Bytes per second per client, each direction (throttled, not refused).
    pub per_ip_bandwidth: Option<u64>,
    pub action: LimitAction,
    /// How long `tarpit` holds a refused client before closing.
    pub tarpit_delay: Duration,
    /// IPv6 clients are keyed by this prefix length.
    pub ipv6_prefix: u8,
}

pub const DEFAULT_TARPIT_DELAY: Duration = Duration::from_secs(10);
pub const DEFAULT_IPV6_PREFIX: u8 = 64;
/// Default bound on the per-client state table (entries, shared by listeners).
pub const DEFAULT_LIMITS_TABLE_SIZE: usize = 65536;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitAction {
    /// Close at once.
    Reject,
    /// Hold the connection, then close it after `tarpit_delay`.
    Tarpit,
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
    /// HTTP listeners: how requests reach the backends.
    pub protocol: UpstreamProtocol,
    /// HTTP listeners: TLS to the backends.
    pub backend_tls: Option<BackendTls>,
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

impl ProxyProtocolSend {
    /// Every value, for validation and help text.
    pub const ALL: [ProxyProtocolSend; 3] = [
        ProxyProtocolSend::Off,
        ProxyProtocolSend::V1,
        ProxyProtocolSend::V2,
    ];

    /// The name used in the config file and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyProtocolSend::Off => "off",
            ProxyProtocolSend::V1 => "v1",
            ProxyProtocolSend::V2 => "v2",
        }
    }
}

impl ProxyProtocolAccept {
    /// Every value, for validation and help text.
    pub const ALL: [ProxyProtocolAccept; 4] = [
        ProxyProtocolAccept::Off,
        ProxyProtocolAccept::V1,
        ProxyProtocolAccept::V2,
        ProxyProtocolAccept::Any,
    ];

    /// The name used in the config file and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyProtocolAccept::Off => "off",
            ProxyProtocolAccept::V1 => "v1",
            ProxyProtocolAccept::V2 => "v2",
            ProxyProtocolAccept::Any => "any",
        }
    }
}

impl LimitAction {
    /// Every value, for validation and help text.
    pub const ALL: [LimitAction; 2] = [LimitAction::Reject, LimitAction::Tarpit];

    /// The name used in the config file and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitAction::Reject => "reject",
            LimitAction::Tarpit => "tarpit",
        }
    }
}

/// Default `limits.action`.
pub const DEFAULT_LIMIT_ACTION: LimitAction = LimitAction::Reject;

/// As written in a config: `10.0.0.0/8`, `::1/128`.
impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// As written in a config: `api.example.com`, `*.example.com`.
impl std::fmt::Display for SniPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SniPattern::Exact(name) => f.write_str(name),
            SniPattern::Suffix(suffix) => write!(f, "*{suffix}"),
        }
    }
}
