//! One client connection of a `mode: http` listener: the accept loop, the
//! admission checks every listener applies (connection caps, the fd budget,
//! allow/deny lists, per-client limits), the TLS handshake under its
//! timeout, and hyper serving HTTP/1.1 or HTTP/2 on it until the client
//! leaves or the drain ends it gracefully.

use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::server::Acceptor;
use socket2::Socket;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_rustls::LazyConfigAcceptor;

use super::deadline::{Activity, Timed};
use super::proxy::{self, ConnInfo};
use super::worker::{ConnGuard, Worker};
use super::LocalExec;
use crate::clock;
use crate::config::RequestLimits;
use crate::counters::{
    bump, unbump, ListenerStats, HANDSHAKE_FAILED, HANDSHAKE_OK, HANDSHAKE_TIMEOUT,
    HANDSHAKE_UNKNOWN_SNI,
};
use crate::limits::{self, ClientKey, Ticket, Verdict};
use crate::log;
use crate::outcome::Reject;
use crate::snapshot::Listener;
use crate::tls;

/// How long accepting pauses after running out of fds or memory.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Starts accepting on `socket` for listener `id`; notifying the returned
/// switch stops it (the socket closes, open connections run on).
pub(super) fn accept_loop(worker: &Rc<Worker>, id: u32, socket: Socket) -> io::Result<Rc<Notify>> {
    socket.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(std::net::TcpListener::from(socket))?;
    let stop = Rc::new(Notify::new());
    let switch = stop.clone();
    let worker = worker.clone();
    tokio::task::spawn_local(async move {
        let mut last_warning = None;
        loop {
            let accepted = tokio::select! {
                _ = stop.notified() => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => admit(&worker, id, stream, peer),
                Err(e) => {
                    if is_resource_error(&e) {
                        bump(
                            &worker
                                .shared
                                .stats
                                .worker(worker.slot)
                                .accept_resource_errors,
                            1,
                        );
                        crate::session::warn_resources(
                            &mut last_warning,
                            std::time::Instant::now(),
                            worker.slot,
                            "cannot accept: out of file descriptors or memory (raise `ulimit -n` / LimitNOFILE); pausing accepts",
                            &e,
                        );
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                }
            }
        }
    });
    Ok(switch)
}

fn is_resource_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// What an admitted connection holds until it closes: its place in the
/// listener's and the process's connection counts, and its limits ticket.
struct Hold {
    worker: Rc<Worker>,
    listener: Arc<Listener>,
    ticket: Option<Ticket>,
    _conn: ConnGuard,
}

impl Drop for Hold {
    fn drop(&mut self) {
        let shared = &self.worker.shared;
        self.listener.stats.active.fetch_sub(1, Ordering::Relaxed);
        shared.open_conns.fetch_sub(1, Ordering::Relaxed);
        unbump(&shared.stats.worker(self.worker.slot).active, 1);
        if let Some(ticket) = self.ticket.take() {
            shared.limiter.release(ticket);
        }
    }
}

/// Applies the listener's admission checks to a new connection and serves
/// it when it passes; a refused one is closed and counted by reason.
fn admit(worker: &Rc<Worker>, id: u32, stream: TcpStream, peer: SocketAddr) {
    let shared = &worker.shared;
    let snapshot = shared.snapshot.load();
    let Some(listener) = snapshot.listeners.iter().find(|l| l.id == id).cloned() else {
        return;
    };
    let ls = listener.stats.worker(worker.slot);
    bump(&ls.accepted, 1);
    bump(&shared.stats.worker(worker.slot).accepted, 1);
    let reject = |reason: Reject| bump(&ls.rejected[reason.index()], 1);
    let settings = &listener.settings;
    if let Err(reason) = limits::access_allowed(peer.ip(), &settings.allow, &settings.deny) {
        reject(reason);
        return;
    }
    if listener.stats.active.load(Ordering::Relaxed) >= listener.max_connections as u64 {
        reject(Reject::MaxConnections);
        return;
    }
    if shared.open_conns.load(Ordering::Relaxed) >= shared.conn_budget.load(Ordering::Relaxed) {
        reject(Reject::Resources);
        return;
    }
    let mut ticket = None;
    if let Some(limits) = &settings.limits {
        let key = ClientKey::in_scope(listener.limit_scope, peer.ip(), limits.ipv6_prefix);
        match shared.limiter.admit(key, limits, clock::now_ns()) {
            Verdict::Admit(t) => ticket = Some(t),
            Verdict::Reject(reason) => {
                reject(reason);
                return;
            }
        }
    }
    listener.stats.active.fetch_add(1, Ordering::Relaxed);
    shared.open_conns.fetch_add(1, Ordering::Relaxed);
    bump(&shared.stats.worker(worker.slot).active, 1);
    let hold = Hold {
        worker: worker.clone(),
        listener: listener.clone(),
        ticket,
        _conn: worker.enter(),
    };
    let worker = worker.clone();
    tokio::task::spawn_local(async move {
        serve(&worker, listener, stream, peer).await;
        drop(hold);
    });
}

/// The TLS handshake (when the listener terminates TLS), then HTTP.
async fn serve(worker: &Rc<Worker>, listener: Arc<Listener>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let Some(http) = listener.settings.http.as_deref() else {
        return;
    };
    let local = stream.local_addr().ok();
    let activity = Arc::new(Activity::default());
    let mut info = ConnInfo {
        listener_id: listener.id,
        client: peer,
        local,
        tls: None,
        activity: activity.clone(),
    };
    let limits = http.request_limits.clone();
    let timers = (http.timeouts.request_header, http.timeouts.idle);
    let stats = listener.stats.clone();
    match (listener.server_config.clone(), listener.tls_store.clone()) {
        (Some(config), Some(store)) => {
            let handshake = tokio::time::timeout(http.timeouts.handshake, async {
                let start = LazyConfigAcceptor::new(Acceptor::default(), stream).await?;
                let sni = start.client_hello().server_name().map(str::to_owned);
                if !store.accepts(sni.as_deref()) {
                    // No certificate for this name and no default: say so
                    // with the alert meant for it (rustls would say
                    // access_denied).
                    let mut io = start.io;
                    let _ = io.write_all(&tls::UNRECOGNIZED_NAME_ALERT).await;
                    return Err(Handshake::UnknownSni);
                }
                Ok(start.into_stream(config).await?)
            });
            let tls = match handshake.await {
                Ok(Ok(tls)) => tls,
                Ok(Err(Handshake::UnknownSni)) => {
                    count_handshake(worker, &listener, HANDSHAKE_UNKNOWN_SNI);
                    return;
                }
                Ok(Err(Handshake::Failed(e))) => {
                    count_handshake(worker, &listener, HANDSHAKE_FAILED);
                    log::debug("TLS handshake failed", &[("client", &peer), ("error", &e)]);
                    return;
                }
                Err(_) => {
                    count_handshake(worker, &listener, HANDSHAKE_TIMEOUT);
                    return;
                }
            };
            count_handshake(worker, &listener, HANDSHAKE_OK);
            let (_, session) = tls.get_ref();
            info.tls = Some(proxy::TlsInfo {
                sni: session.server_name().map(str::to_owned),
                alpn: session
                    .alpn_protocol()
                    .map(|p| String::from_utf8_lossy(p).into_owned()),
                version: session.protocol_version().and_then(|v| v.as_str()),
            });
            serve_http(
                worker,
                TokioIo::new(Timed::new(
                    tls,
                    activity,
                    timers,
                    stats.clone(),
                    worker.slot,
                )),
                info,
                &limits,
                &stats,
            )
            .await;
        }
        _ => {
            serve_http(
                worker,
                TokioIo::new(Timed::new(
                    stream,
                    activity,
                    timers,
                    stats.clone(),
                    worker.slot,
                )),
                info,
                &limits,
                &stats,
            )
            .await
        }
    }
}

/// Whether h2 ended the connection with ENHANCE_YOUR_CALM: a rapid-reset
/// flood (more reset streams than `max_pending_accept_reset_streams`) or
/// another abuse it refuses to keep serving.
fn calmed_down(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            return h2.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM);
        }
        next = e.source();
    }
    false
}

/// Counts a TLS handshake on its listener (`result`: a `HANDSHAKE_*` index).
fn count_handshake(worker: &Worker, listener: &Listener, result: usize) {
    bump(
        &listener.stats.worker(worker.slot).tls_handshakes[result],
        1,
    );
}

/// How a TLS handshake failed.
enum Handshake {
    /// No certificate serves the client's SNI (answered `unrecognized_name`).
    UnknownSni,
    Failed(io::Error),
}

impl From<io::Error> for Handshake {
    fn from(e: io::Error) -> Self {
        Handshake::Failed(e)
    }
}

/// Serves HTTP/1.1 or HTTP/2 (by the client's first bytes: ALPN's choice,
/// or h2c with prior knowledge) on one connection; when the drain starts,
/// in-flight requests finish and the connection closes (h2 GOAWAY, h1
/// `Connection: close`).
async fn serve_http<I>(
    worker: &Rc<Worker>,
    io: I,
    info: ConnInfo,
    limits: &RequestLimits,
    stats: &ListenerStats,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let mut builder = auto::Builder::new(LocalExec);
    builder
        .http1()
        .timer(TokioTimer::new())
        // `deadline::Timed` keeps the request-head and idle timers (with a
        // 408); hyper's own would close without a word.
        .header_read_timeout(None)
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_streams)
        .max_header_list_size(limits.max_header_bytes as u32)
        // A rapid-reset flood (CVE-2023-44487) ends the connection instead
        // of growing without bound.
        .max_pending_accept_reset_streams(Some(20))
        .max_local_error_reset_streams(Some(1024));
    let info = Rc::new(info);
    let service_worker = worker.clone();
    // Boxed: hyper moves a request's future a few times on its way into
    // the stream's task (and the task into its slot); a pointer moves
    // cheaper than the ~3 KB future.
    let service = hyper::service::service_fn(move |req| {
        Box::pin(proxy::handle(service_worker.clone(), info.clone(), req))
    });
    let mut conn = pin!(builder.serve_connection_with_upgrades(io, service));
    let mut draining = worker.draining.clone();
    let mut graceful = *draining.borrow();
    if graceful {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    if calmed_down(&*e) {
                        bump(&stats.worker(worker.slot).h2_abuse_closed, 1);
                    }
                    log::debug("HTTP connection ended with an error", &[("error", &e)]);
                }
                return;
            }
            changed = draining.changed(), if !graceful => {
                graceful = true;
                if changed.is_ok() {
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}
