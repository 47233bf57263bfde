//! The vocabulary of how connections end, shared by every layer that reports
//! it: why a connection ended ([`Termination`], the access log's `termination`
//! and a metric label) and why a client was turned away before reaching a
//! backend ([`Reject`], the `reason` label). Pure data at the bottom of the
//! module graph, so the data planes, the counters, the access log and the
//! metrics all name the same values without importing one another.

/// Why a connection ended. Also a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    /// The client sent FIN first; everything was delivered.
    ClientClosed,
    /// The backend sent FIN first; everything was delivered.
    BackendClosed,
    /// The client's socket failed (reset, error).
    ClientError,
    /// The backend's socket failed after connecting.
    BackendError,
    IdleTimeout,
    /// No backend accepted the connection (after retries).
    ConnectFailed,
    /// Refused before any connect: the listener's `max_connections`.
    MaxConnections,
    /// Refused: every backend was at its `max_connections`.
    BackendsFull,
    /// Refused: no eligible backend (`on_all_down: refuse`).
    NoBackend,
    /// Refused: spliced ran out of file descriptors or memory.
    Resources,
    /// Closed when the shutdown deadline passed.
    Shutdown,
    /// Turned away before reaching a backend for another reason (bad
    /// ClientHello or PROXY header, untrusted source, access list, limits);
    /// `spliced_rejected_connections_total` says which.
    Rejected,
}

impl Termination {
    pub const ALL: [Termination; 12] = [
        Termination::ClientClosed,
        Termination::BackendClosed,
        Termination::ClientError,
        Termination::BackendError,
        Termination::IdleTimeout,
        Termination::ConnectFailed,
        Termination::MaxConnections,
        Termination::BackendsFull,
        Termination::NoBackend,
        Termination::Resources,
        Termination::Shutdown,
        Termination::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Termination::ClientClosed => "client_closed",
            Termination::BackendClosed => "backend_closed",
            Termination::ClientError => "client_error",
            Termination::BackendError => "backend_error",
            Termination::IdleTimeout => "idle_timeout",
            Termination::ConnectFailed => "connect_failed",
            Termination::MaxConnections => "max_connections",
            Termination::BackendsFull => "backends_full",
            Termination::NoBackend => "no_backend",
            Termination::Resources => "resources",
            Termination::Shutdown => "shutdown",
            Termination::Rejected => "rejected",
        }
    }

    pub fn index(self) -> usize {
        Termination::ALL
            .iter()
            .position(|t| *t == self)
            .unwrap_or(0)
    }
}

/// Why a client was turned away before reaching a backend: the `reason`
/// label of `spliced_rejected_connections_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// The listener's `max_connections`.
    MaxConnections,
    /// No eligible backend (`on_all_down: refuse`) or none left to try.
    NoBackend,
    /// Every backend at its `max_connections`.
    BackendsFull,
    /// spliced ran out of file descriptors or memory.
    Resources,
    /// A malformed TLS ClientHello on an SNI-routed listener.
    BadClientHello,
    /// Not TLS, or TLS without SNI, where the listener has `require_sni`.
    NoSni,
    /// No complete ClientHello within `tls_inspect_timeout`.
    TlsInspectTimeout,
    /// A malformed PROXY protocol header.
    BadProxyHeader,
    /// A PROXY header expected from a source outside `trusted_proxies`.
    UntrustedProxy,
    /// No complete PROXY header within `proxy_header_timeout`.
    ProxyHeaderTimeout,
    /// The source is in the listener's `deny` list.
    Deny,
    /// The listener has an `allow` list and the source is not in it.
    NotAllowed,
    /// Over `per_ip_rate`.
    Rate,
    /// Over `per_ip_connections`.
    PerIpConnections,
}

impl Reject {
    pub const ALL: [Reject; 14] = [
        Reject::MaxConnections,
        Reject::NoBackend,
        Reject::BackendsFull,
        Reject::Resources,
        Reject::BadClientHello,
        Reject::NoSni,
        Reject::TlsInspectTimeout,
        Reject::BadProxyHeader,
        Reject::UntrustedProxy,
        Reject::ProxyHeaderTimeout,
        Reject::Deny,
        Reject::NotAllowed,
        Reject::Rate,
        Reject::PerIpConnections,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reject::MaxConnections => "max_connections",
            Reject::NoBackend => "no_backend",
            Reject::BackendsFull => "backends_full",
            Reject::Resources => "resources",
            Reject::BadClientHello => "bad_client_hello",
            Reject::NoSni => "no_sni",
            Reject::TlsInspectTimeout => "tls_inspect_timeout",
            Reject::BadProxyHeader => "bad_proxy_header",
            Reject::UntrustedProxy => "untrusted_proxy",
            Reject::ProxyHeaderTimeout => "proxy_header_timeout",
            Reject::Deny => "deny",
            Reject::NotAllowed => "not_allowed",
            Reject::Rate => "rate",
            Reject::PerIpConnections => "per_ip_connections",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}
