//! Every metric spliced exports, in one place (DESIGN.md §3): its name, type,
//! help text and label keys. A renderer gives a sample's label values only,
//! in the declared order (`super::family` checks the count at compile time),
//! so a label cannot be misspelt or left out at one call site. Label values
//! come from the config (listener, pool, backend names) or from fixed enums,
//! never from traffic.
//!
//! Renaming anything here renames a series the alert rules
//! (`conf/prometheus/`), the Grafana dashboard and users' queries read: the
//! golden exposition (`tests/fixtures/metrics/exposition.prom`) shows it.

/// The exposition's `# TYPE` of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A metric family with `L` label keys.
#[derive(Debug)]
pub struct Metric<const L: usize> {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    /// In the order a sample gives its values. A histogram's `le` is not
    /// among them: the family writer adds it.
    pub labels: [&'static str; L],
}

/// A [`Metric`] with its label count erased, so that every family fits in
/// one list ([`ALL`]) for checks over all of them.
#[cfg(test)]
#[derive(Debug)]
pub struct Described {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    pub labels: &'static [&'static str],
}

/// Declares each metric as a `Metric<L>` constant and lists them all in
/// [`ALL`], from one table: `ID: Kind "name" [label keys] "help";`.
macro_rules! metrics {
    ($($id:ident: $kind:ident $name:literal [$($label:literal),*] $help:literal;)*) => {
        $(
            pub const $id: Metric<{ <[&str]>::len(&[$($label),*]) }> = Metric {
                name: $name,
                kind: Kind::$kind,
                help: $help,
                labels: [$($label),*],
            };
        )*

        /// Every family above.
        #[cfg(test)]
        pub const ALL: &[Described] = &[$(Described {
            name: $name,
            kind: Kind::$kind,
            help: $help,
            labels: &[$($label),*],
        }),*];
    };
}

metrics! {
    // The process.
    WORKERS: Gauge "spliced_workers" []
        "Number of data-plane worker threads.";
    DATAPLANE_INFO: Gauge "spliced_dataplane_info" ["engine"]
        "1, labelled with the engine the L4 workers run on (io_uring, or epoll where io_uring is refused or dataplane: epoll).";

    // Backends: traffic, per listener routing to the backend's pool.
    CONNECTIONS_TOTAL: Counter "spliced_connections_total" ["listener", "pool", "backend"]
        "Connections sent to a backend (connect attempts that were made), by listener, pool and backend.";
    ACTIVE_CONNECTIONS: Gauge "spliced_active_connections" ["listener", "pool", "backend"]
        "Connections open right now to a backend, including ones still connecting.";
    BYTES_TOTAL: Counter "spliced_bytes_total" ["listener", "pool", "backend", "direction"]
        "Bytes relayed, by backend and direction (client_to_backend, backend_to_client).";
    CONNECT_ERRORS_TOTAL: Counter "spliced_connect_errors_total" ["pool", "backend", "reason"]
        "Failed connects to a backend, by reason (refused, timeout, other).";

    // Backends: health, active and passive.
    BACKEND_UP: Gauge "spliced_backend_up" ["pool", "backend"]
        "1 when the backend is in service and healthy (probes up, not ejected, not drained or disabled), else 0.";
    BACKEND_HEALTHY: Gauge "spliced_backend_healthy" ["pool", "backend"]
        "Active health check verdict: 1 up, 0 down (1 when the pool has no health check).";
    BACKEND_EJECTED: Gauge "spliced_backend_ejected" ["pool", "backend"]
        "1 while the backend is ejected after consecutive connect failures (passive health).";
    HEALTH_CHECKS_TOTAL: Counter "spliced_health_checks_total" ["pool", "backend", "result"]
        "Active health probes, by result (ok, failed; skipped: not sent because spliced was out of fds or memory).";
    HEALTH_TRANSITIONS_TOTAL: Counter "spliced_health_transitions_total" ["pool", "backend", "to"]
        "Health state changes of a backend, by new state (up, down).";
    EJECTIONS_TOTAL: Counter "spliced_ejections_total" ["pool", "backend"]
        "Times a backend was ejected after consecutive connect failures.";

    // Pools: how full they are, for autoscalers.
    POOL_ACTIVE_CONNECTIONS: Gauge "spliced_pool_active_connections" ["pool"]
        "Connections open right now to the pool's backends, from every listener.";
    POOL_ELIGIBLE_BACKENDS: Gauge "spliced_pool_eligible_backends" ["pool"]
        "Backends of the pool that may take a new connection (in service, healthy, not ejected), backups included.";
    POOL_CAPACITY: Gauge "spliced_pool_capacity_connections" ["pool"]
        "Sum of max_connections over the pool's eligible backends; only for pools whose backends all set max_connections.";
    POOL_UTILIZATION: Gauge "spliced_pool_utilization" ["pool"]
        "Open connections divided by the eligible backends' capacity (1 with no eligible backend); only for pools whose backends all set max_connections.";

    // Listeners.
    LISTENER_ACCEPTED_TOTAL: Counter "spliced_listener_accepted_total" ["listener"]
        "Client connections accepted, by listener.";
    LISTENER_ACTIVE: Gauge "spliced_listener_active_connections" ["listener"]
        "Client connections open right now, by listener.";
    REJECTED_TOTAL: Counter "spliced_rejected_connections_total" ["listener", "reason"]
        "Client connections closed before reaching a backend, by listener and reason.";
    FAIL_OPEN_TOTAL: Counter "spliced_fail_open_connections_total" ["listener"]
        "Connections sent to an unhealthy backend because no backend was eligible (on_all_down: fail_open).";

    // The workers' data path, summed over workers.
    RELAY_BYTES_TOTAL: Counter "spliced_relay_bytes_total" ["mode", "direction"]
        "Bytes relayed by data path (copy through the buffer ring, or splice through a pipe) and direction.";
    SPLICE_SWITCHES_TOTAL: Counter "spliced_splice_switches_total" []
        "Times a connection direction switched from copying to splice because it carried bulk data.";
    PIPE_EXHAUSTED_TOTAL: Counter "spliced_pipe_pool_exhausted_total" []
        "Times a bulk direction stayed on copy because no pipe was free.";
    PIPES_IN_USE: Gauge "spliced_pipes_in_use" []
        "Pipes lent out to splicing directions right now, summed over workers.";
    PIPES_MAX: Gauge "spliced_pipes_max" []
        "Upper bound of the pipe pools, summed over workers.";
    IDLE_TIMEOUTS_TOTAL: Counter "spliced_idle_timeouts_total" []
        "Connections closed because no byte moved for idle_timeout.";
    ACCEPT_RESOURCE_ERRORS_TOTAL: Counter "spliced_accept_resource_errors_total" []
        "Accepts that failed for lack of file descriptors or memory (accept backs off).";
    BUFFER_EXHAUSTED_TOTAL: Counter "spliced_buffer_ring_exhausted_total" []
        "Receives that found every provided buffer in use and waited for one.";
    SHUTDOWN_CLOSED_TOTAL: Counter "spliced_shutdown_closed_connections_total" []
        "Connections still open when the shutdown deadline passed, closed by spliced.";

    // Client connections, summed over workers.
    CONNECT_DURATION: Histogram "spliced_connect_duration_seconds" []
        "Time from starting a connect to a backend to its success.";
    CONNECTION_DURATION: Histogram "spliced_connection_duration_seconds" []
        "Lifetime of client connections, from accept to close.";
    TERMINATIONS_TOTAL: Counter "spliced_connections_closed_total" ["termination"]
        "Client connections ended, by why (client_closed, backend_closed, client_error, backend_error, idle_timeout, connect_failed, max_connections, backends_full, no_backend, resources, shutdown, rejected).";
    ACCESS_LOG_DROPPED_TOTAL: Counter "spliced_access_log_dropped_total" []
        "Access log records dropped because a worker's queue was full.";

    // Per worker.
    WORKER_ACCEPTED_TOTAL: Counter "spliced_worker_accepted_total" ["worker"]
        "Client connections accepted, by worker.";
    WORKER_ACTIVE: Gauge "spliced_worker_active_connections" ["worker"]
        "Client connections open right now, by worker.";

    // Per-client limits.
    LIMITS_EVICTIONS_TOTAL: Counter "spliced_limits_table_evictions_total" []
        "Per-client limit entries evicted because the table was full (limits_table_size).";
    LIMITS_TABLE_ENTRIES: Gauge "spliced_limits_table_entries" []
        "Per-client limit entries in use (an estimate, taken at scrape).";
    LIMITS_TABLE_CAPACITY: Gauge "spliced_limits_table_capacity" []
        "Most per-client limit entries kept (limits_table_size, rounded up to a power of two).";

    // The control thread.
    CONFIG_RELOADS_TOTAL: Counter "spliced_config_reloads_total" ["result"]
        "Configuration loads, by result (ok, error).";

    // The HTTP mode.
    HTTP_REQUESTS_TOTAL: Counter "spliced_http_requests_total" ["listener", "pool", "code_class"]
        "HTTP responses by listener, pool and status class (1xx..5xx); pool is empty for answers spliced made before choosing one (404, redirects, refusals).";
    HTTP_REQUEST_DURATION: Histogram "spliced_http_request_duration_seconds" ["listener", "pool"]
        "Time from a request's arrival to its backend's response headers.";
    HTTP_UPSTREAM_CONNECTIONS: Gauge "spliced_http_upstream_connections" ["pool", "state"]
        "HTTP mode: connections open to a pool's backends from all workers (state: open; one set per core).";
    HTTP_RATE_LIMITED_TOTAL: Counter "spliced_http_rate_limited_total" ["listener", "pool", "key"]
        "HTTP requests answered 429 by a route's rate_limit, by listener, pool and the limit's key (ip or header:NAME).";
    HTTP2_ABUSE_CLOSED_TOTAL: Counter "spliced_http2_abuse_closed_total" ["listener"]
        "HTTP/2 client connections closed with ENHANCE_YOUR_CALM (a rapid-reset flood or similar abuse).";
    TLS_HANDSHAKES_TOTAL: Counter "spliced_tls_handshakes_total" ["listener", "result"]
        "TLS handshakes on terminating listeners, by result (ok, failed, timeout, unknown_sni).";
    TLS_CERT_EXPIRY: Gauge "spliced_tls_cert_expiry_timestamp_seconds" ["store", "name"]
        "When each served certificate expires (Unix time), by store and its first name.";
    TLS_RELOADS_TOTAL: Counter "spliced_tls_reloads_total" ["result"]
        "Certificate store reloads (config reloads and file changes), by result (ok, error).";
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text format's `[a-zA-Z_][a-zA-Z0-9_]*` (no `:`: those are for
    /// recording rules).
    fn valid_name(name: &str) -> bool {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    }

    #[test]
    fn every_metric_has_a_valid_unique_name_help_and_label_keys() {
        let mut seen = std::collections::BTreeSet::new();
        for m in ALL {
            assert!(
                valid_name(m.name) && m.name.starts_with("spliced_"),
                "{}",
                m.name
            );
            assert!(seen.insert(m.name), "{} is declared twice", m.name);
            assert!(!m.help.is_empty() && !m.help.contains('\n'), "{}", m.name);
            assert_eq!(
                m.kind == Kind::Counter,
                m.name.ends_with("_total"),
                "{}: counters, and only counters, end in _total",
                m.name
            );
            let mut keys = std::collections::BTreeSet::new();
            for key in m.labels {
                assert!(
                    valid_name(key) && !key.starts_with("__"),
                    "{}: {key}",
                    m.name
                );
                assert!(keys.insert(key), "{}: label {key} twice", m.name);
                assert_ne!(*key, "le", "{}: le belongs to histogram buckets", m.name);
            }
        }
    }
}
