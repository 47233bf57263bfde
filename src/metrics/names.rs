//! Every metric name and help text spliced exports, in one place (DESIGN.md §3).
//! Label values come from the config (listener, pool, backend names) or from
//! fixed enums, never from traffic.

/// A metric's name, type and help text.
pub struct Metric {
    pub name: &'static str,
    pub kind: &'static str,
    pub help: &'static str,
}

macro_rules! metric {
    ($id:ident, $name:literal, $kind:literal, $help:literal) => {
        pub const $id: Metric = Metric {
            name: $name,
            kind: $kind,
            help: $help,
        };
    };
}

metric!(CONNECTIONS_TOTAL, "spliced_connections_total", "counter",
    "Connections sent to a backend (connect attempts that were made), by listener, pool and backend.");
metric!(
    ACTIVE_CONNECTIONS,
    "spliced_active_connections",
    "gauge",
    "Connections open right now to a backend, including ones still connecting."
);
metric!(
    BYTES_TOTAL,
    "spliced_bytes_total",
    "counter",
    "Bytes relayed, by backend and direction (client_to_backend, backend_to_client)."
);
metric!(
    CONNECT_ERRORS_TOTAL,
    "spliced_connect_errors_total",
    "counter",
    "Failed connects to a backend, by reason (refused, timeout, other)."
);
metric!(
    BACKEND_UP,
    "spliced_backend_up",
    "gauge",
    "1 when the backend is in service and healthy (probes up, not ejected, not drained or disabled), else 0."
);
metric!(
    LISTENER_ACCEPTED_TOTAL,
    "spliced_listener_accepted_total",
    "counter",
    "Client connections accepted, by listener."
);
metric!(
    LISTENER_ACTIVE,
    "spliced_listener_active_connections",
    "gauge",
    "Client connections open right now, by listener."
);
metric!(
    REJECTED_TOTAL,
    "spliced_rejected_connections_total",
    "counter",
    "Client connections closed before reaching a backend, by listener and reason."
);
metric!(RELAY_BYTES_TOTAL, "spliced_relay_bytes_total", "counter",
    "Bytes relayed by data path (copy through the buffer ring, or splice through a pipe) and direction.");
metric!(
    SPLICE_SWITCHES_TOTAL,
    "spliced_splice_switches_total",
    "counter",
    "Times a connection direction switched from copying to splice because it carried bulk data."
);
metric!(
    PIPE_EXHAUSTED_TOTAL,
    "spliced_pipe_pool_exhausted_total",
    "counter",
    "Times a bulk direction stayed on copy because no pipe was free."
);
metric!(
    PIPES_IN_USE,
    "spliced_pipes_in_use",
    "gauge",
    "Pipes lent out to splicing directions right now, summed over workers."
);
metric!(
    PIPES_MAX,
    "spliced_pipes_max",
    "gauge",
    "Upper bound of the pipe pools, summed over workers."
);
metric!(
    WORKER_ACCEPTED_TOTAL,
    "spliced_worker_accepted_total",
    "counter",
    "Client connections accepted, by worker."
);
metric!(
    WORKER_ACTIVE,
    "spliced_worker_active_connections",
    "gauge",
    "Client connections open right now, by worker."
);
metric!(
    IDLE_TIMEOUTS_TOTAL,
    "spliced_idle_timeouts_total",
    "counter",
    "Connections closed because no byte moved for idle_timeout."
);
metric!(
    ACCEPT_RESOURCE_ERRORS_TOTAL,
    "spliced_accept_resource_errors_total",
    "counter",
    "Accepts that failed for lack of file descriptors or memory (accept backs off)."
);
metric!(
    BUFFER_EXHAUSTED_TOTAL,
    "spliced_buffer_ring_exhausted_total",
    "counter",
    "Receives that found every provided buffer in use and waited for one."
);
metric!(
    SHUTDOWN_CLOSED_TOTAL,
    "spliced_shutdown_closed_connections_total",
    "counter",
    "Connections still open when the shutdown deadline passed, closed by spliced."
);
metric!(
    CONFIG_RELOADS_TOTAL,
    "spliced_config_reloads_total",
    "counter",
    "Configuration loads, by result (ok, error)."
);
metric!(
    WORKERS,
    "spliced_workers",
    "gauge",
    "Number of data-plane worker threads."
);

metric!(
    BACKEND_HEALTHY,
    "spliced_backend_healthy",
    "gauge",
    "Active health check verdict: 1 up, 0 down (1 when the pool has no health check)."
);
metric!(
    BACKEND_EJECTED,
    "spliced_backend_ejected",
    "gauge",
    "1 while the backend is ejected after consecutive connect failures (passive health)."
);
metric!(
    HEALTH_CHECKS_TOTAL,
    "spliced_health_checks_total",
    "counter",
    "Active health probes, by result (ok, failed; skipped: not sent because spliced was out of fds or memory)."
);
metric!(
    HEALTH_TRANSITIONS_TOTAL,
    "spliced_health_transitions_total",
    "counter",
    "Health state changes of a backend, by new state (up, down)."
);
metric!(
    EJECTIONS_TOTAL,
    "spliced_ejections_total",
    "counter",
    "Times a backend was ejected after consecutive connect failures."
);
metric!(
    FAIL_OPEN_TOTAL,
    "spliced_fail_open_connections_total",
    "counter",
    "Connections sent to an unhealthy backend because no backend was eligible (on_all_down: fail_open)."
);
metric!(
    CONNECT_DURATION,
    "spliced_connect_duration_seconds",
    "histogram",
    "Time from starting a connect to a backend to its success."
);
metric!(
    CONNECTION_DURATION,
    "spliced_connection_duration_seconds",
    "histogram",
    "Lifetime of client connections, from accept to close."
);
metric!(
    TERMINATIONS_TOTAL,
    "spliced_connections_closed_total",
    "counter",
    "Client connections ended, by why (client_closed, backend_closed, client_error, backend_error, idle_timeout, connect_failed, max_connections, backends_full, no_backend, resources, shutdown)."
);
metric!(
    ACCESS_LOG_DROPPED_TOTAL,
    "spliced_access_log_dropped_total",
    "counter",
    "Access log records dropped because a worker's queue was full."
);
metric!(
    LIMITS_EVICTIONS_TOTAL,
    "spliced_limits_table_evictions_total",
    "counter",
    "Per-client limit entries evicted because the table was full (limits_table_size)."
);
metric!(
    LIMITS_TABLE_ENTRIES,
    "spliced_limits_table_entries",
    "gauge",
    "Per-client limit entries in use (an estimate, taken at scrape)."
);
metric!(
    LIMITS_TABLE_CAPACITY,
    "spliced_limits_table_capacity",
    "gauge",
    "Most per-client limit entries kept (limits_table_size, rounded up to a power of two)."
);
