//! The seam between the control thread and the data planes. The control
//! thread binds listening sockets (so every bind error surfaces before any
//! worker starts), publishes snapshots into [`Shared`], and drives a running
//! plane only through the [`Plane`] trait: add or remove a listener, wake it
//! to look at the drain and abort flags, wait for it to end. Start-up and
//! reload therefore name no engine's types: the io_uring L4 plane implements
//! the trait today, an epoll engine and the HTTP plane plug in the same way.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};

use arc_swap::ArcSwap;
use crossbeam_queue::ArrayQueue;
use socket2::{Domain, Protocol, Socket, Type};

use crate::accesslog;
use crate::config::ListenerConfig;
use crate::counters::Stats;
use crate::limits::Limiter;
use crate::log;
use crate::snapshot::Snapshot;

/// A running data plane, as the control thread drives it.
pub trait Plane: Send {
    /// The engine's name, for logs ("io_uring").
    fn engine(&self) -> &'static str;
    /// Starts accepting on a listener a reload added: one socket per worker,
    /// all bound to the same address (see [`bind_listener`]).
    fn listen(&self, id: u32, sockets: Vec<Socket>);
    /// Stops accepting on a listener a reload removed; its open connections
    /// run on.
    fn unlisten(&self, id: u32);
    /// Makes every worker look at [`Shared`]'s flags (drain, abort) now.
    fn wake(&self);
    /// Waits for every worker to end (after a drain).
    fn join(self: Box<Self>);
}

/// What the control thread and the workers share.
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub stats: Stats,
    /// Stop accepting; let open connections finish.
    pub draining: AtomicBool,
    /// Shutdown deadline passed: close every connection now.
    pub abort: AtomicBool,
    /// Workers hand finished connections to the access log.
    pub access_log_on: AtomicBool,
    /// One access-log queue per worker, drained by the control thread.
    pub access_queues: Box<[ArrayQueue<accesslog::Record>]>,
    /// Per-client limits state, shared by every worker and listener.
    pub limiter: Limiter,
    /// Proxied connections open in all workers, against `conn_budget`.
    pub open_conns: AtomicU64,
    /// Most proxied connections the fd limit allows while keeping fds in
    /// reserve for the admin API, health probes, pipes and reloads (see
    /// `fd_budget`); `u64::MAX` until the control thread sets it.
    pub conn_budget: AtomicU64,
    /// Pipes each worker's pool may keep (the io_uring plane's `fd_budget`),
    /// read once when a worker starts; `usize::MAX` until set: the engine's
    /// own maximum.
    pub pipes_per_worker: AtomicUsize,
}

impl Shared {
    pub fn new(snapshot: Snapshot, workers: usize, limits_table_size: usize) -> Shared {
        Shared {
            snapshot: ArcSwap::from_pointee(snapshot),
            stats: Stats::new(workers),
            draining: AtomicBool::new(false),
            abort: AtomicBool::new(false),
            access_log_on: AtomicBool::new(false),
            access_queues: (0..workers.max(1))
                .map(|_| ArrayQueue::new(accesslog::QUEUE_CAPACITY))
                .collect(),
            limiter: Limiter::new(limits_table_size),
            open_conns: AtomicU64::new(0),
            conn_budget: AtomicU64::new(u64::MAX),
            pipes_per_worker: AtomicUsize::new(usize::MAX),
        }
    }
}

/// Counter slots the planes write: one per L4 worker, then one per HTTP
/// worker (each slot has a single writer).
pub fn counter_slots(workers: usize) -> usize {
    2 * workers.max(1)
}

/// Why a listener could not be bound, in one line naming the listener.
#[derive(Debug, thiserror::Error)]
#[error("listener {name:?}: cannot listen on {addr}: {reason}")]
pub struct BindError {
    pub name: String,
    pub addr: SocketAddr,
    pub reason: String,
}

fn bind_error(l: &ListenerConfig, addr: SocketAddr, e: io::Error) -> BindError {
    let reason = match e.raw_os_error() {
        Some(libc::EADDRINUSE) => format!(
            "the address is already in use (another process listens there): stop it or change the listener's `listen` ({e})"
        ),
        Some(libc::EACCES) | Some(libc::EPERM) => format!(
            "permission denied: ports below 1024 need root or CAP_NET_BIND_SERVICE (`setcap cap_net_bind_service=+ep spliced`) ({e})"
        ),
        Some(libc::EADDRNOTAVAIL) => {
            format!("the address is not assigned to any interface of this machine ({e})")
        }
        _ => e.to_string(),
    };
    BindError {
        name: l.name.clone(),
        addr,
        reason,
    }
}

fn listen_socket(l: &ListenerConfig, addr: SocketAddr) -> Result<Socket, BindError> {
    let s = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )
    .map_err(|e| bind_error(l, addr, e))?;
    let setup = || -> io::Result<()> {
        s.set_reuse_address(true)?;
        s.set_reuse_port(true)?;
        if addr.is_ipv6() {
            // [::]:port listens on IPv6 only; an IPv4 listener is a separate entry.
            s.set_only_v6(true)?;
        }
        s.bind(&addr.into())?;
        s.listen(l.backlog as i32)
    };
    setup().map_err(|e| bind_error(l, addr, e))?;
    Ok(s)
}

/// How long start-up waits for a port held by someone else's SO_REUSEPORT
/// sockets to come free before sharing it.
const EXCLUSIVE_BIND_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether `addr` is held by another process's listening socket right now:
/// a bind without SO_REUSEPORT is refused then, while ours (with it) would
/// silently join that socket's group and share its connections.
fn held_by_another(addr: SocketAddr) -> bool {
    let Ok(probe) = Socket::new(Domain::for_address(addr), Type::STREAM.cloexec(), None) else {
        return false;
    };
    let _ = probe.set_reuse_address(true);
    if addr.is_ipv6() {
        let _ = probe.set_only_v6(true);
    }
    matches!(probe.bind(&addr.into()), Err(e) if e.kind() == io::ErrorKind::AddrInUse)
}

/// At start-up, before joining a port's SO_REUSEPORT group: waits up to
/// [`EXCLUSIVE_BIND_WAIT`] for another holder to go; `true` if it is still
/// there (the bind then either fails as "in use" or shares the port).
///
/// WHY: after `kill -9` the dead process's listening sockets linger for up to
/// about half a second (its io_uring is torn down asynchronously); a restart
/// in that window joined their group, and the connections the kernel queued
/// on them were lost. A second live instance on the same address is usually
/// a mistake too, and said so once rather than discovered from split traffic.
fn wait_for_exclusive_port(l: &ListenerConfig) -> bool {
    if l.listen.port() == 0 {
        return false;
    }
    let deadline = std::time::Instant::now() + EXCLUSIVE_BIND_WAIT;
    while held_by_another(l.listen) {
        if std::time::Instant::now() >= deadline {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    false
}

/// Binds one listener once per worker, all on the same port; a port of 0 is
/// resolved by the first bind. Returns one socket per worker and the address
/// actually bound.
pub fn bind_listener(
    l: &ListenerConfig,
    workers: usize,
) -> Result<(Vec<Socket>, SocketAddr), BindError> {
    let first = listen_socket(l, l.listen)?;
    let addr = first
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .unwrap_or(l.listen);
    let mut sockets = vec![first];
    for _ in 1..workers {
        sockets.push(listen_socket(l, addr)?);
    }
    Ok((sockets, addr))
}

/// Binds every listener (see [`bind_listener`]); returns the sockets per
/// worker (`[worker][listener]`, tagged with the listener ids given) and the
/// addresses bound. A listening socket systemd passed (socket activation) is
/// used for the listener it is named after (`FileDescriptorName=`) or whose
/// `listen` address it has; the workers then share it.
pub fn bind_listeners(
    listeners: &[ListenerConfig],
    ids: &[u32],
    workers: usize,
) -> Result<(Vec<WorkerSockets>, Vec<SocketAddr>), BindError> {
    let mut inherited: Vec<(Socket, Option<String>)> = crate::sys::take_inherited_listeners()
        .into_iter()
        .map(|(fd, name)| (Socket::from(fd), name))
        .collect();
    let mut per_worker: Vec<WorkerSockets> = (0..workers).map(|_| Vec::new()).collect();
    let mut bound = Vec::new();
    for (l, &id) in listeners.iter().zip(ids) {
        let (sockets, addr) = match take_inherited_for(l, &mut inherited) {
            Some(socket) => share_inherited(l, socket, workers)?,
            None => {
                let shared = wait_for_exclusive_port(l);
                let (sockets, addr) = bind_listener(l, workers)?;
                if shared {
                    log::warn(
                        "another process already listens on this address with SO_REUSEPORT: the two share its connections (stop the other one, or change listen:)",
                        &[("listener", &l.name), ("listen", &addr)],
                    );
                }
                (sockets, addr)
            }
        };
        for (w, s) in sockets.into_iter().enumerate() {
            per_worker[w].push((id, s));
        }
        bound.push(addr);
    }
    for (socket, name) in inherited {
        let addr = local_addr(&socket).map_or_else(|| "?".to_owned(), |a| a.to_string());
        log::warn(
            "a socket passed by systemd matches no listener (by name or address); closing it",
            &[("name", &name.unwrap_or_default()), ("addr", &addr)],
        );
    }
    Ok((per_worker, bound))
}

fn local_addr(socket: &Socket) -> Option<SocketAddr> {
    socket.local_addr().ok()?.as_socket()
}

/// The passed socket for listener `l`, by name first, then by address.
fn take_inherited_for(
    l: &ListenerConfig,
    inherited: &mut Vec<(Socket, Option<String>)>,
) -> Option<Socket> {
    let by_name = inherited
        .iter()
        .position(|(_, name)| name.as_deref() == Some(l.name.as_str()));
    let by_addr = || {
        inherited
            .iter()
            .position(|(s, _)| l.listen.port() != 0 && local_addr(s) == Some(l.listen))
    };
    let i = by_name.or_else(by_addr)?;
    Some(inherited.swap_remove(i).0)
}

/// One passed listening socket, shared by every worker (each gets its own
/// fd for it).
fn share_inherited(
    l: &ListenerConfig,
    socket: Socket,
    workers: usize,
) -> Result<(Vec<Socket>, SocketAddr), BindError> {
    let addr = local_addr(&socket).unwrap_or(l.listen);
    let setup = || -> io::Result<Vec<Socket>> {
        socket.set_nonblocking(true)?;
        let mut sockets = Vec::with_capacity(workers);
        for _ in 1..workers {
            sockets.push(socket.try_clone()?);
        }
        sockets.insert(0, socket);
        Ok(sockets)
    };
    let sockets = setup().map_err(|e| bind_error(l, addr, e))?;
    log::info(
        "using the listening socket systemd passed",
        &[("listener", &l.name), ("addr", &addr)],
    );
    Ok((sockets, addr))
}

/// One worker's listening sockets, each tagged with its listener's id.
pub type WorkerSockets = Vec<(u32, Socket)>;
