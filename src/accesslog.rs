//! The access log: one line per finished connection (time, listener, client,
//! backend, bytes each way, duration, connect time and why it ended, in the
//! spirit of HAProxy's termination flags). Workers push a fixed-size record
//! into their own bounded lock-free queue (no formatting, no allocation, no
//! I/O on the data path; a full queue drops the record and counts it); the
//! control thread drains the queues a few times a second, formats and writes.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_queue::ArrayQueue;

use crate::config::{AccessLogConfig, AccessLogFormat, AccessLogTarget};
use crate::log;
use crate::outcome::Termination;
use crate::snapshot::Snapshot;

/// One finished connection, as a worker hands it over.
pub struct Record {
    pub end_unix_ms: u64,
    /// The snapshot the connection ran under (names come from it).
    pub snapshot: Arc<Snapshot>,
    pub listener: usize,
    /// The pool it was routed to (the listener's, or an SNI route's).
    pub pool: usize,
    pub backend: Option<usize>,
    pub client: Option<SocketAddr>,
    pub bytes_client_to_backend: u64,
    pub bytes_backend_to_client: u64,
    pub duration_us: u64,
    pub connect_us: Option<u64>,
    pub termination: Termination,
    /// HTTP mode: the request (one record per request, not per connection).
    pub http: Option<Box<HttpRecord>>,
}

/// What an HTTP request's access-log line adds.
pub struct HttpRecord {
    pub method: String,
    pub host: String,
    pub path: String,
    pub status: u16,
    /// Request arrival to the backend's response headers (`None`: answered
    /// by spliced itself).
    pub response_us: Option<u64>,
    /// Whether `pool` is meaningful (a route or the listener's pool chose it).
    pub routed: bool,
    pub sni: Option<String>,
    pub alpn: Option<String>,
    pub tls_version: Option<&'static str>,
}

/// Per-worker queue capacity: at 8192 records and a 200 ms flush, a worker can
/// finish ~40k connections/s before records are dropped.
pub const QUEUE_CAPACITY: usize = 8192;
const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// Formats one record as a line (with its newline).
pub fn format(r: &Record, format: AccessLogFormat) -> String {
    let listener = &r.snapshot.listeners[r.listener];
    let routed = r.http.as_ref().is_none_or(|h| h.routed);
    let pool = r.snapshot.pools.get(r.pool).filter(|_| routed);
    let pool_name = pool.map_or("-", |p| p.name.as_str());
    let backend = r
        .backend
        .and_then(|i| Some(pool?.backends.get(i)?.name.as_str()))
        .unwrap_or("-");
    let client = r
        .client
        .map(|c| c.to_string())
        .unwrap_or_else(|| "-".into());
    let time = log::rfc3339(r.end_unix_ms);
    let duration_ms = r.duration_us as f64 / 1000.0;
    let connect_ms = r.connect_us.map(|c| c as f64 / 1000.0);
    let mut out = String::with_capacity(256);
    match format {
        AccessLogFormat::Json => {
            out.push_str("{\"time\":");
            log::json_str(&mut out, &time);
            out.push_str(",\"listener\":");
            log::json_str(&mut out, &listener.name);
            out.push_str(",\"client\":");
            log::json_str(&mut out, &client);
            out.push_str(",\"pool\":");
            log::json_str(&mut out, pool_name);
            out.push_str(",\"backend\":");
            log::json_str(&mut out, backend);
            let _ = write!(
                out,
                ",\"bytes_client_to_backend\":{},\"bytes_backend_to_client\":{},\"duration_ms\":{duration_ms:.3},\"connect_ms\":{},\"termination\":\"{}\"}}",
                r.bytes_client_to_backend,
                r.bytes_backend_to_client,
                connect_ms.map_or("null".to_string(), |c| format!("{c:.3}")),
                r.termination.as_str()
            );
            if let Some(h) = &r.http {
                out.pop();
                out.push_str(",\"method\":");
                log::json_str(&mut out, &h.method);
                out.push_str(",\"host\":");
                log::json_str(&mut out, &h.host);
                out.push_str(",\"path\":");
                log::json_str(&mut out, &h.path);
                let _ = write!(
                    out,
                    ",\"status\":{},\"response_ms\":{}",
                    h.status,
                    h.response_us.map_or("null".to_string(), |us| format!(
                        "{:.3}",
                        us as f64 / 1000.0
                    ))
                );
                for (key, value) in [
                    ("sni", h.sni.as_deref()),
                    ("alpn", h.alpn.as_deref()),
                    ("tls", h.tls_version),
                ] {
                    let _ = write!(out, ",\"{key}\":");
                    match value {
                        Some(v) => log::json_str(&mut out, v),
                        None => out.push_str("null"),
                    }
                }
                out.push('}');
            }
        }
        AccessLogFormat::Logfmt => {
            let _ = write!(
                out,
                "time={time} listener={} client={client} pool={} backend={backend} bytes_client_to_backend={} bytes_backend_to_client={} duration_ms={duration_ms:.3} connect_ms={} termination={}",
                listener.name,
                pool_name,
                r.bytes_client_to_backend,
                r.bytes_backend_to_client,
                connect_ms.map_or("-".to_string(), |c| format!("{c:.3}")),
                r.termination.as_str()
            );
            if let Some(h) = &r.http {
                let quoted = |s: &str| {
                    if s.is_empty() || s.contains([' ', '"', '=']) {
                        format!("{s:?}")
                    } else {
                        s.to_owned()
                    }
                };
                let _ = write!(
                    out,
                    " method={} host={} path={} status={} response_ms={} sni={} alpn={} tls={}",
                    quoted(&h.method),
                    quoted(&h.host),
                    quoted(&h.path),
                    h.status,
                    h.response_us
                        .map_or("-".to_string(), |us| format!("{:.3}", us as f64 / 1000.0)),
                    h.sni.as_deref().unwrap_or("-"),
                    h.alpn.as_deref().unwrap_or("-"),
                    h.tls_version.unwrap_or("-"),
                );
            }
        }
    }
    out.push('\n');
    out
}

enum Sink {
    Stderr,
    File(File),
}

fn open(config: &AccessLogConfig) -> Option<Sink> {
    match &config.target {
        AccessLogTarget::Stderr => Some(Sink::Stderr),
        AccessLogTarget::File(path) => {
            match OpenOptions::new().create(true).append(true).open(path) {
                Ok(f) => Some(Sink::File(f)),
                Err(e) => {
                    log::error(
                        "cannot open the access log; access logging is off until the next reload",
                        &[("path", &path.display()), ("error", &e)],
                    );
                    None
                }
            }
        }
    }
}

/// Where the writer gets its orders: the wanted config (`None`: logging off)
/// with a generation that changes on every reload (so a reload reopens the
/// file), the flag that tells workers whether to queue records at all, and
/// the workers' queues.
pub struct Source<'a> {
    pub wanted: &'a (dyn Fn() -> (Option<AccessLogConfig>, u64) + Send + Sync),
    pub on: &'a AtomicBool,
    pub queues: &'a [ArrayQueue<Record>],
}

/// Drains the workers' queues and writes the lines, until the runtime stops.
/// Follows the running config: a reload turns logging on or off and reopens
/// the file (so log rotation needs only a reload).
pub async fn run(source: Source<'_>) {
    let mut current: Option<(AccessLogConfig, u64)> = None;
    let mut sink: Option<Sink> = None;
    let mut buf = String::new();
    loop {
        tokio::time::sleep(FLUSH_EVERY).await;
        let (wanted, generation) = (source.wanted)();
        source.on.store(wanted.is_some(), Ordering::Relaxed);
        match &wanted {
            None => {
                current = None;
                sink = None;
            }
            Some(cfg) if current.as_ref() != Some(&(cfg.clone(), generation)) => {
                sink = open(cfg);
                current = Some((cfg.clone(), generation));
            }
            Some(_) => {}
        }
        let format = wanted.map(|c| c.format).unwrap_or(AccessLogFormat::Json);
        buf.clear();
        for queue in source.queues {
            while let Some(r) = queue.pop() {
                if sink.is_some() {
                    buf.push_str(&self::format(&r, format));
                }
            }
        }
        if buf.is_empty() {
            continue;
        }
        let result = match &mut sink {
            Some(Sink::Stderr) => std::io::stderr().lock().write_all(buf.as_bytes()),
            Some(Sink::File(f)) => f.write_all(buf.as_bytes()),
            None => Ok(()),
        };
        if let Err(e) = result {
            log::error("access log write failed", &[("error", &e)]);
        }
    }
}
