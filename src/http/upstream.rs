//! Per-core connection pools to backends, keyed by address and protocol:
//! HTTP/1.1 connections kept alive and reused one request at a time; HTTP/2
//! (h2c) one connection per backend per core carrying many streams. A pool
//! is this worker's alone (no lock, no sharing across cores; the cost is
//! one set of backend connections per core, as Pingora's thread-per-core
//! runtime has).
//!
//! WHY our own pool rather than hyper-util's client: the proxy chooses the
//! backend itself (balancing, health, retries on another backend), must
//! know whether a request was sent before a failure (only then is a retry
//! unsafe), and must never move a request to another backend behind the
//! balancer's back.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::{Body, LocalExec};
use crate::balance::Backend;
use crate::config::UpstreamProtocol;
use crate::counters::{bump, unbump, BackendStats};
use crate::log;
use crate::snapshot::UpstreamTls;
use rustls::pki_types::ServerName;
use std::sync::Arc;

/// Idle HTTP/1.1 connections kept per backend per core (busy ones, still
/// carrying a request, are not counted: there are as many as requests in
/// flight).
const MAX_IDLE_PER_BACKEND: usize = 128;

/// What a pooled connection can be reused for: the backend, the protocol,
/// and the TLS settings it was made with (0: plaintext).
pub(super) type Key = (SocketAddr, UpstreamProtocol, u64);

/// A connection a request can be sent on.
pub(super) enum Sender {
    H1(http1::SendRequest<Body>),
    H2(http2::SendRequest<Body>),
}

#[derive(Default)]
struct Conns {
    /// HTTP/1.1 connections, most recently used last; some may be busy
    /// streaming a response (not ready) or closed by the backend.
    h1: Vec<http1::SendRequest<Body>>,
    h2: Option<http2::SendRequest<Body>>,
    /// An HTTP/2 connection being opened: requests wait for it instead of
    /// each opening their own.
    h2_connecting: Option<Rc<Notify>>,
}

/// One worker's pools.
#[derive(Default)]
pub(crate) struct Upstreams {
    by_backend: RefCell<HashMap<Key, Conns>>,
}

/// Why no connection could be had.
#[derive(Debug)]
pub(super) enum ConnectError {
    Refused,
    Timeout,
    Other(io::Error),
    Handshake(hyper::Error),
    Tls(io::Error),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Refused => f.write_str("connection refused"),
            ConnectError::Timeout => f.write_str("connect timed out"),
            ConnectError::Other(e) => write!(f, "cannot connect: {e}"),
            ConnectError::Handshake(e) => write!(f, "HTTP handshake failed: {e}"),
            ConnectError::Tls(e) => write!(f, "TLS to the backend failed: {e}"),
        }
    }
}

impl ConnectError {
    pub(super) fn errno(&self) -> i32 {
        match self {
            ConnectError::Refused => libc::ECONNREFUSED,
            ConnectError::Timeout => libc::ETIMEDOUT,
            ConnectError::Other(e) => e.raw_os_error().unwrap_or(libc::EIO),
            ConnectError::Handshake(_) | ConnectError::Tls(_) => libc::EPROTO,
        }
    }
}

impl Upstreams {
    /// A pooled connection to `addr` ready for a request, if there is one.
    pub(super) fn checkout(&self, key: Key) -> Option<Sender> {
        let protocol = key.1;
        let mut pools = self.by_backend.borrow_mut();
        let conns = pools.get_mut(&key)?;
        match protocol {
            UpstreamProtocol::Http1 => {
                conns.h1.retain(|s| !s.is_closed());
                let ready = conns.h1.iter().rposition(|s| s.is_ready())?;
                Some(Sender::H1(conns.h1.swap_remove(ready)))
            }
            UpstreamProtocol::H2c | UpstreamProtocol::H2 => match &conns.h2 {
                Some(s) if !s.is_closed() => Some(Sender::H2(s.clone())),
                _ => {
                    conns.h2 = None;
                    None
                }
            },
        }
    }

    /// Gives an HTTP/1.1 connection back once its request is sent (it
    /// becomes ready again when the response has been read), or keeps a new
    /// HTTP/2 one for the requests that follow.
    pub(super) fn checkin(&self, key: Key, sender: Sender) {
        let mut pools = self.by_backend.borrow_mut();
        let conns = pools.entry(key).or_default();
        match sender {
            Sender::H1(s) => {
                if s.is_closed() {
                    return;
                }
                conns.h1.push(s);
                // The cap is on idle connections: one still carrying its
                // request does not count (capping busy ones too made every
                // request beyond the cap's concurrency open, and later
                // close, a connection of its own). Past the cap, the
                // oldest idle ones go.
                if conns.h1.len() > MAX_IDLE_PER_BACKEND {
                    let mut idle = conns.h1.iter().filter(|s| s.is_ready()).count();
                    conns.h1.retain(|s| {
                        let drop = idle > MAX_IDLE_PER_BACKEND && s.is_ready();
                        idle -= usize::from(drop);
                        !drop && !s.is_closed()
                    });
                }
            }
            Sender::H2(s) => {
                if conns.h2.as_ref().is_none_or(|old| old.is_closed()) {
                    conns.h2 = Some(s);
                }
            }
        }
    }

    /// When an HTTP/2 connection to `addr` is being opened by another
    /// request, what to wait on; otherwise marks this caller as the opener
    /// (it must hold an [`Opening`] until done) and returns `None`.
    pub(super) fn h2_wait_or_open(&self, key: Key) -> Option<Rc<Notify>> {
        let mut pools = self.by_backend.borrow_mut();
        let conns = pools.entry(key).or_default();
        match &conns.h2_connecting {
            Some(wait) => Some(wait.clone()),
            None => {
                conns.h2_connecting = Some(Rc::new(Notify::new()));
                None
            }
        }
    }

    /// The opener of an HTTP/2 connection is done (connected or not):
    /// wakes the requests that waited for it.
    fn h2_opened(&self, key: Key) {
        let mut pools = self.by_backend.borrow_mut();
        if let Some(wait) = pools.get_mut(&key).and_then(|c| c.h2_connecting.take()) {
            wait.notify_waiters();
        }
    }
}

/// The opener of an HTTP/2 connection: wakes the requests waiting for it
/// when dropped, connected or not.
pub(super) struct Opening<'a> {
    upstreams: &'a Upstreams,
    key: Key,
}

impl<'a> Opening<'a> {
    pub(super) fn new(upstreams: &'a Upstreams, key: Key) -> Self {
        Opening { upstreams, key }
    }
}

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        self.upstreams.h2_opened(self.key);
    }
}

/// Opens a new connection to `backend` within `timeout` (TCP, then TLS when
/// the pool has `backend_tls`) and does the HTTP handshake for `protocol`;
/// the connection's task runs on this worker. `upgrades`: an HTTP/1.1
/// connection that may switch protocols (it is then never pooled).
pub(super) async fn connect(
    backend: &Backend,
    protocol: UpstreamProtocol,
    tls: Option<&UpstreamTls>,
    timeout: Duration,
    upgrades: bool,
    slot: usize,
) -> Result<Sender, ConnectError> {
    let addr = backend.addr;
    let deadline = tokio::time::Instant::now() + timeout;
    let stream = match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
        Err(_) => return Err(ConnectError::Timeout),
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
            return Err(ConnectError::Refused)
        }
        Ok(Err(e)) => return Err(ConnectError::Other(e)),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    let Some(tls) = tls else {
        return handshake(
            TokioIo::new(stream),
            addr,
            protocol,
            upgrades,
            Open::new(backend, slot),
        )
        .await;
    };
    let name = server_name(tls.sni.as_deref(), backend)?;
    let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
    let stream = match tokio::time::timeout_at(deadline, connector.connect(name, stream)).await {
        Err(_) => return Err(ConnectError::Timeout),
        Ok(Err(e)) => return Err(ConnectError::Tls(e)),
        Ok(Ok(s)) => s,
    };
    handshake(
        TokioIo::new(stream),
        addr,
        protocol,
        upgrades,
        Open::new(backend, slot),
    )
    .await
}

/// The name a backend's certificate must carry: the pool's `sni`, else the
/// host part of the backend's address as configured.
fn server_name(sni: Option<&str>, backend: &Backend) -> Result<ServerName<'static>, ConnectError> {
    let host = match sni {
        Some(name) => name.to_owned(),
        None => match backend.name.rsplit_once(':') {
            Some((host, _)) => host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            None => backend.name.clone(),
        },
    };
    ServerName::try_from(host)
        .map_err(|e| ConnectError::Tls(io::Error::new(io::ErrorKind::InvalidInput, e.to_string())))
}

/// A connection to a backend, counted open (on its worker's slot) until its
/// task ends.
struct Open {
    stats: Arc<BackendStats>,
    slot: usize,
}

impl Open {
    fn new(backend: &Backend, slot: usize) -> Open {
        bump(&backend.stats.worker(slot).upstream_open, 1);
        Open {
            stats: backend.stats.clone(),
            slot,
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        unbump(&self.stats.worker(self.slot).upstream_open, 1);
    }
}

async fn handshake<I>(
    io: TokioIo<I>,
    addr: SocketAddr,
    protocol: UpstreamProtocol,
    upgrades: bool,
    open: Open,
) -> Result<Sender, ConnectError>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    match protocol {
        UpstreamProtocol::Http1 => {
            let (sender, conn) = http1::Builder::new()
                .handshake(io)
                .await
                .map_err(ConnectError::Handshake)?;
            tokio::task::spawn_local(async move {
                let _open = open;
                let result = if upgrades {
                    conn.with_upgrades().await
                } else {
                    conn.await
                };
                if let Err(e) = result {
                    log::debug(
                        "backend connection ended with an error",
                        &[("backend", &addr), ("error", &e)],
                    );
                }
            });
            Ok(Sender::H1(sender))
        }
        UpstreamProtocol::H2c | UpstreamProtocol::H2 => {
            let (sender, conn) = http2::Builder::new(LocalExec)
                .timer(TokioTimer::new())
                .keep_alive_interval(Duration::from_secs(30))
                .handshake(io)
                .await
                .map_err(ConnectError::Handshake)?;
            tokio::task::spawn_local(async move {
                let _open = open;
                if let Err(e) = conn.await {
                    log::debug(
                        "backend connection ended with an error",
                        &[("backend", &addr), ("error", &e)],
                    );
                }
            });
            Ok(Sender::H2(sender))
        }
    }
}
