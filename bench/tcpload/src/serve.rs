//! `tcpload serve`: the echo backend and idle-connection holder.
//!
//! The benchmarks need a backend behind spliced that costs as little as
//! possible per connection and per byte, echoes every byte (so clients can
//! time round trips end to end), honours half-close, and can keep tens of
//! thousands of idle connections open. One epoll loop per thread; all
//! threads watch every listener with EPOLLEXCLUSIVE so one wakes per
//! incoming connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::stats::{emit, JsonObject};
use crate::sys::{self, Epoll, Fd};

/// Listen backlog; the kernel caps it at net.core.somaxconn.
const BACKLOG: i32 = 65535;
/// Tokens at or above this are listeners (index = token - base).
const LISTENER_BASE: u64 = 1 << 62;
/// How long accepting pauses after running out of fds.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// Upper bound on accepts per listener wakeup (the listener is
/// level-triggered, so the rest are picked up on the next one).
const ACCEPTS_PER_EVENT: usize = 128;
/// Upper bound on reads per readiness event, so one busy connection cannot
/// starve the others in a level-triggered loop.
const READS_PER_EVENT: usize = 4;

pub struct ServeArgs {
    pub listen: Vec<SocketAddr>,
    pub threads: usize,
}

/// Counters shared by all loops.
#[derive(Default)]
struct Shared {
    open: AtomicU64,
    max_open: AtomicU64,
}

#[derive(Default)]
struct LoopStats {
    accepted: u64,
    bytes: u64,
    accept_errors: u64,
}

struct Conn {
    fd: Fd,
    /// Bytes read but not yet echoed (the socket's send buffer was full).
    /// While non-empty we stop reading: backpressure to the client. EOF is
    /// only read once this is empty, so "finish echoing, then close" holds.
    pending: Vec<u8>,
}

pub fn run(args: ServeArgs) -> Result<()> {
    let limit = sys::raise_nofile_limit()?;
    sys::install_stop_handlers()?;
    let mut listeners = Vec::new();
    let mut bound = Vec::new();
    for addr in &args.listen {
        let fd = sys::listen(addr, BACKLOG)?;
        bound.push(sys::local_addr(&fd)?.to_string());
        listeners.push(fd);
    }
    let listeners = Arc::new(listeners);
    let shared = Arc::new(Shared::default());

    let mut handles = Vec::new();
    for i in 0..args.threads.max(1) {
        let listeners = Arc::clone(&listeners);
        let shared = Arc::clone(&shared);
        let h = std::thread::Builder::new()
            .name(format!("serve-{i}"))
            .spawn(move || serve_loop(&listeners, &shared))
            .context("spawning serve thread")?;
        handles.push(h);
    }
    eprintln!(
        "tcpload serve: fd limit {limit}, {} thread(s)",
        args.threads.max(1)
    );
    eprintln!("READY {}", bound.join(" "));

    let mut total = LoopStats::default();
    let mut first_err = None;
    for h in handles {
        match h.join() {
            Ok(Ok(s)) => {
                total.accepted += s.accepted;
                total.bytes += s.bytes;
                total.accept_errors += s.accept_errors;
            }
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(_) => {
                first_err.get_or_insert(anyhow::anyhow!("a serve thread panicked"));
            }
        }
    }
    emit(
        &JsonObject::new()
            .str("mode", "serve")
            .int("accepted", total.accepted)
            .int("bytes", total.bytes)
            .int("max_open", shared.max_open.load(Ordering::Relaxed))
            .int("accept_errors", total.accept_errors)
            .finish(),
    )?;
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn serve_loop(listeners: &[Fd], shared: &Shared) -> Result<LoopStats> {
    let ep = Epoll::new()?;
    let listen_events = sys::IN | sys::EXCLUSIVE;
    for (i, l) in listeners.iter().enumerate() {
        ep.add(l.raw(), listen_events, LISTENER_BASE + i as u64)
            .context("adding listener to epoll")?;
    }
    let mut stats = LoopStats::default();
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut events = sys::event_buffer(1024);
    let mut scratch = vec![0u8; 64 * 1024];
    let mut paused_until: Option<Instant> = None;

    while !sys::stop_requested() {
        if let Some(t) = paused_until {
            if Instant::now() >= t {
                for (i, l) in listeners.iter().enumerate() {
                    ep.add(l.raw(), listen_events, LISTENER_BASE + i as u64)
                        .context("re-adding listener to epoll")?;
                }
                paused_until = None;
            }
        }
        let n = ep.wait(&mut events, Duration::from_millis(100))?;
        for ev in &events[..n] {
            let (flags, token) = sys::event_parts(ev);
            if token >= LISTENER_BASE {
                if paused_until.is_some() {
                    continue;
                }
                let l = &listeners[(token - LISTENER_BASE) as usize];
                if accept_some(l, &ep, &mut conns, &mut free, shared, &mut stats) {
                    // Out of fds (or kernel memory): stop accepting for a
                    // moment instead of spinning on a readable listener.
                    for l in listeners {
                        let _ = ep.delete(l.raw());
                    }
                    paused_until = Some(Instant::now() + ACCEPT_PAUSE);
                }
                continue;
            }
            let idx = token as usize;
            let Some(Some(conn)) = conns.get_mut(idx) else {
                continue;
            };
            if !on_conn_event(&ep, idx, conn, flags, &mut scratch, &mut stats) {
                conns[idx] = None;
                free.push(idx);
                shared.open.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
    let open = conns.iter().filter(|c| c.is_some()).count() as u64;
    shared.open.fetch_sub(open, Ordering::Relaxed);
    Ok(stats)
}

/// Accepts what is queued (bounded). Returns true when accepting must
/// pause because fds or memory ran out.
fn accept_some(
    listener: &Fd,
    ep: &Epoll,
    conns: &mut Vec<Option<Conn>>,
    free: &mut Vec<usize>,
    shared: &Shared,
    stats: &mut LoopStats,
) -> bool {
    // Bounded so a connect storm cannot starve established connections.
    for _ in 0..ACCEPTS_PER_EVENT {
        let fd = match sys::accept(listener) {
            Ok(Some(fd)) => fd,
            Ok(None) => return false,
            Err(e) => {
                stats.accept_errors += 1;
                if stats.accept_errors.is_power_of_two() {
                    eprintln!(
                        "tcpload serve: accept: {e} ({} so far, {} open)",
                        stats.accept_errors,
                        shared.open.load(Ordering::Relaxed)
                    );
                }
                return matches!(
                    e.raw_os_error(),
                    Some(libc::EMFILE)
                        | Some(libc::ENFILE)
                        | Some(libc::ENOBUFS)
                        | Some(libc::ENOMEM)
                );
            }
        };
        // Echo is request/response traffic: never let Nagle hold a tail.
        let _ = sys::set_nodelay(&fd);
        let idx = match free.pop() {
            Some(i) => i,
            None => {
                conns.push(None);
                conns.len() - 1
            }
        };
        if let Err(e) = ep.add(fd.raw(), sys::IN, idx as u64) {
            eprintln!("tcpload serve: epoll add: {e}");
            free.push(idx);
            continue;
        }
        conns[idx] = Some(Conn {
            fd,
            pending: Vec::new(),
        });
        stats.accepted += 1;
        let open = shared.open.fetch_add(1, Ordering::Relaxed) + 1;
        shared.max_open.fetch_max(open, Ordering::Relaxed);
    }
    false
}

/// Handles readiness on one connection. Returns false when it is done and
/// must be dropped (which closes it).
fn on_conn_event(
    ep: &Epoll,
    idx: usize,
    conn: &mut Conn,
    flags: u32,
    scratch: &mut [u8],
    stats: &mut LoopStats,
) -> bool {
    if !conn.pending.is_empty() {
        if flags & (sys::OUT | sys::ERR | sys::HUP) == 0 {
            return true;
        }
        match sys::send(&conn.fd, &conn.pending) {
            Ok(Some(n)) => {
                conn.pending.drain(..n);
            }
            Ok(None) => return true,
            Err(_) => return false,
        }
        if !conn.pending.is_empty() {
            return true;
        }
        conn.pending = Vec::new();
        // Drained: back to reading.
        return ep.modify(conn.fd.raw(), sys::IN, idx as u64).is_ok();
    }
    for _ in 0..READS_PER_EVENT {
        let n = match sys::recv(&conn.fd, scratch) {
            Ok(Some(0)) => return finish(conn),
            Ok(Some(n)) => n,
            Ok(None) => return true,
            Err(_) => return false,
        };
        stats.bytes += n as u64;
        let data = &scratch[..n];
        let sent = match sys::send(&conn.fd, data) {
            Ok(Some(s)) => s,
            Ok(None) => 0,
            Err(_) => return false,
        };
        if sent < n {
            conn.pending.extend_from_slice(&data[sent..]);
            return ep.modify(conn.fd.raw(), sys::OUT, idx as u64).is_ok();
        }
        if n < scratch.len() {
            // Short read: the socket is very likely drained.
            return true;
        }
    }
    true
}

/// The client sent EOF and everything it sent has been echoed: send our
/// FIN. Returning false drops (closes) the socket.
fn finish(conn: &Conn) -> bool {
    let _ = sys::shutdown_write(&conn.fd);
    false
}
