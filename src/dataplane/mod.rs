//! The data plane: worker threads, each with its own io_uring and its own
//! SO_REUSEPORT socket per listener (thread-per-core, nothing shared but the
//! snapshot pointer and atomic counters). This module binds the sockets (so
//! every bind error surfaces before any worker starts), spawns and pins the
//! workers, and holds the state they share with the control thread.

mod conn;
mod inspect;
mod relay;
mod token;
mod worker;

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use arc_swap::ArcSwap;
use crossbeam_queue::ArrayQueue;
use socket2::{Domain, Protocol, Socket, Type};

use crate::accesslog;
use crate::config::ListenerConfig;
use crate::counters::Stats;
use crate::limits::Limiter;
use crate::log;
use crate::snapshot::Snapshot;
use crate::sys;

pub use worker::{BUF_COUNT, BUF_SIZE, PIPE_POOL_MAX, PIPE_SIZE};

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
    /// Pipes each worker's pool may keep (see `fd_budget`), read once when
    /// a worker starts.
    pub pipes_per_worker: AtomicUsize,
}

/// The most fds kept out of the data plane's reach: the admin API, health
/// probes, logs, config reloads and listeners added by a reload. Without
/// this reserve a full fd table also locks the operator out (`/ready` and
/// `/metrics` cannot accept). Under small limits it shrinks with the limit
/// (see [`fd_budget`]) instead of switching itself off.
pub const FD_RESERVE: u64 = 256;

/// The smallest reserve: a few admin connections (`MAX_ADMIN_CONNECTIONS`
/// is far above what needs to fit) and one probe per pool or so.
const FD_RESERVE_MIN: u64 = 32;

/// How the fd limit is shared out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdBudget {
    /// Most proxied connections open at once (2 fds each).
    pub connections: u64,
    /// Pipes each worker's splice pool may keep (2 fds each).
    pub pipes_per_worker: usize,
    /// fds left for the control thread (admin API, probes, reloads).
    pub reserve: u64,
}

/// Shares `fd_limit` out: an eighth (32 to [`FD_RESERVE`]) for the control
/// thread, each worker's ring, eventfd and listeners, at most a quarter of
/// the rest for pipes (so a small limit means smaller pipe pools, and splice falls back to
/// copying sooner), and the rest to connections. Scales down to the classic
/// 1,024 and below instead of giving up: 1,024 fds with 2 workers keep 128
/// in reserve, 54 pipes per worker and allow 327 connections.
pub fn fd_budget(fd_limit: u64, workers: usize, listeners: usize) -> FdBudget {
    let workers = workers.max(1) as u64;
    let reserve = (fd_limit / 8).clamp(FD_RESERVE_MIN, FD_RESERVE);
    // Rings, eventfds and one socket per listener per worker, plus stdio and
    // the access log.
    let fixed = workers * (4 + listeners as u64) + 16;
    let spare = fd_limit.saturating_sub(reserve + fixed);
    let pipes_per_worker = (spare / 4 / (2 * workers)).min(PIPE_POOL_MAX as u64);
    let pipe_fds = 2 * workers * pipes_per_worker;
    FdBudget {
        connections: fd_limit.saturating_sub(reserve + fixed + pipe_fds) / 2,
        pipes_per_worker: pipes_per_worker as usize,
        reserve,
    }
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
            pipes_per_worker: AtomicUsize::new(PIPE_POOL_MAX),
        }
    }
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
/// addresses bound.
pub fn bind_listeners(
    listeners: &[ListenerConfig],
    ids: &[u32],
    workers: usize,
) -> Result<(Vec<WorkerSockets>, Vec<SocketAddr>), BindError> {
    let mut per_worker: Vec<WorkerSockets> = (0..workers).map(|_| Vec::new()).collect();
    let mut bound = Vec::new();
    for (l, &id) in listeners.iter().zip(ids) {
        let shared = wait_for_exclusive_port(l);
        let (sockets, addr) = bind_listener(l, workers)?;
        if shared {
            log::warn(
                "another process already listens on this address with SO_REUSEPORT: the two share its connections (stop the other one, or change listen:)",
                &[("listener", &l.name), ("listen", &addr)],
            );
        }
        for (w, s) in sockets.into_iter().enumerate() {
            per_worker[w].push((id, s));
        }
        bound.push(addr);
    }
    Ok((per_worker, bound))
}

/// One worker's listening sockets, each tagged with its listener's id.
pub type WorkerSockets = Vec<(u32, Socket)>;

/// A listener change sent to a worker by a reload.
pub enum Command {
    /// Start accepting on this worker's socket of a new listener.
    Listen { id: u32, socket: Socket },
    /// Stop accepting on a removed listener; its connections run on.
    Unlisten { id: u32 },
}

/// A running worker as the control thread sees it.
pub struct WorkerHandle {
    pub thread: JoinHandle<()>,
    pub wake: OwnedFd,
    pub commands: std::sync::mpsc::Sender<Command>,
}

impl WorkerHandle {
    /// Makes the worker look at the shared flags and its commands now.
    pub fn wake(&self) {
        let _ = sys::eventfd_signal(&self.wake);
    }

    /// Sends a listener change and wakes the worker to apply it.
    pub fn send(&self, cmd: Command) {
        // A worker that already stopped has no listeners to change.
        let _ = self.commands.send(cmd);
        self.wake();
    }
}

/// Starts one worker per entry of `sockets`, pinned to the allowed CPUs in
/// turn. `on_exit` runs on each worker thread as it ends.
pub fn spawn_workers(
    shared: &Arc<Shared>,
    sockets: Vec<WorkerSockets>,
    on_exit: impl Fn() + Send + Sync + 'static,
) -> io::Result<Vec<WorkerHandle>> {
    let cpus = sys::allowed_cpus();
    let on_exit = Arc::new(on_exit);
    let mut handles = Vec::new();
    for (id, socks) in sockets.into_iter().enumerate() {
        let wake = sys::eventfd()?;
        let worker_wake = wake.try_clone()?;
        let (commands, command_rx) = std::sync::mpsc::channel();
        let shared = shared.clone();
        let cpu = (!cpus.is_empty()).then(|| cpus[id % cpus.len()]);
        let on_exit = on_exit.clone();
        let thread = std::thread::Builder::new()
            .name(format!("spliced-w{id}"))
            .spawn(move || {
                if let Some(cpu) = cpu {
                    if let Err(e) = sys::pin_current_thread(cpu) {
                        log::warn(
                            "cannot pin worker to its CPU; running unpinned",
                            &[("worker", &id), ("cpu", &cpu), ("error", &e)],
                        );
                    }
                }
                let result =
                    worker::Worker::new(id, shared.clone(), socks, worker_wake, command_rx)
                        .and_then(|w| w.run());
                if let Err(e) = result {
                    log::error(
                        "worker stopped with an error",
                        &[("worker", &id), ("error", &e)],
                    );
                    // A dead worker would leave its listener sockets unserved:
                    // stop the whole process cleanly instead.
                    shared.draining.store(true, Ordering::Release);
                }
                on_exit();
            })?;
        handles.push(WorkerHandle {
            thread,
            wake,
            commands,
        });
    }
    Ok(handles)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_leaves_the_reserve_and_pipes_free() {
        let b = fd_budget(20_000, 1, 2);
        assert_eq!(b.reserve, FD_RESERVE);
        assert_eq!(b.pipes_per_worker, PIPE_POOL_MAX);
        let fixed = 4 + 2 + 16;
        assert_eq!(
            b.connections,
            (20_000 - FD_RESERVE - fixed - 2 * PIPE_POOL_MAX as u64) / 2
        );
        assert!(fd_budget(20_000, 2, 2).connections < b.connections);
    }

    /// Regression: below about 1,044 fds the reserve switched itself off
    /// (the budget was u64::MAX), so a full table locked out `/ready`,
    /// `/metrics` and the health probes.
    #[test]
    fn the_reserve_scales_down_with_small_limits_instead_of_switching_off() {
        let b = fd_budget(1024, 2, 1);
        assert_eq!(b.reserve, 128);
        assert_eq!(b.pipes_per_worker, 54);
        assert_eq!(b.connections, 327);
        let b = fd_budget(512, 2, 1);
        assert_eq!((b.reserve, b.pipes_per_worker), (64, 26));
        assert!(b.connections > 100, "{b:?}");
        for limit in [0, 16, 64, 256, 1000, 1024, 1100, 4096, 1 << 20] {
            for workers in [1, 2, 8, 64] {
                let b = fd_budget(limit, workers, 3);
                let used =
                    b.reserve + 2 * b.connections + 2 * workers as u64 * b.pipes_per_worker as u64;
                assert!(b.connections < u64::MAX / 4, "{limit} {workers}: {b:?}");
                assert!(
                    used <= limit.max(FD_RESERVE_MIN),
                    "{limit} {workers}: {b:?}"
                );
            }
        }
    }
}
