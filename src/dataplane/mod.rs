//! The L4 data plane: worker threads, each with its own engine (an io_uring,
//! or the epoll engine where io_uring is refused) and its own SO_REUSEPORT
//! socket per listener (thread-per-core, nothing shared but the snapshot
//! pointer and atomic counters). This module chooses the engine, spawns and
//! pins the workers and drives them for the control thread as a
//! [`crate::plane::Plane`]; it also shares the fd limit out (`fd_budget`).

mod conn;
mod token;
mod worker;

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use socket2::Socket;

use crate::config::Dataplane;
use crate::epoll::Poller;
use crate::log;
use crate::plane::{Plane, Shared, WorkerSockets};
use crate::sys;
use crate::uring::Ring;

pub use worker::PIPE_POOL_MAX;

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

/// A listener change sent to a worker by a reload.
pub(crate) enum Command {
    /// Start accepting on this worker's socket of a new listener.
    Listen { id: u32, socket: Socket },
    /// Stop accepting on a removed listener; its connections run on.
    Unlisten { id: u32 },
}

/// A running worker as the plane sees it.
struct WorkerHandle {
    thread: JoinHandle<()>,
    wake: OwnedFd,
    commands: std::sync::mpsc::Sender<Command>,
}

impl WorkerHandle {
    /// Makes the worker look at the shared flags and its commands now.
    fn wake(&self) {
        let _ = sys::eventfd_signal(&self.wake);
    }

    /// Sends a listener change and wakes the worker to apply it.
    fn send(&self, cmd: Command) {
        // A worker that already stopped has no listeners to change.
        let _ = self.commands.send(cmd);
        self.wake();
    }
}

/// The L4 plane: one pinned worker thread per entry of the sockets it was
/// started with, all on one engine.
pub struct L4Plane {
    engine: Engine,
    workers: Vec<WorkerHandle>,
}

/// How the L4 workers reach the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    IoUring,
    /// Readiness (epoll) with inline syscalls, where io_uring is refused.
    Epoll,
}

impl Engine {
    /// The name logs, metrics and the API use.
    pub fn name(self) -> &'static str {
        match self {
            Engine::IoUring => "io_uring",
            Engine::Epoll => "epoll",
        }
    }
}

/// Fails when io_uring cannot be used here (old kernel, seccomp, sysctl),
/// with the reason and what to do.
pub fn probe() -> io::Result<()> {
    Ring::probe().map_err(io::Error::other)
}

/// What `spliced check` says about the engine `wanted` would run here.
pub fn describe(wanted: Dataplane) -> String {
    let probed = probe();
    match (wanted, probed) {
        (Dataplane::Epoll, _) => "epoll (dataplane: epoll)".to_owned(),
        (Dataplane::IoUring, Ok(())) => "io_uring (dataplane: io_uring)".to_owned(),
        (Dataplane::IoUring, Err(e)) => {
            format!("io_uring (dataplane: io_uring), which will NOT start here: {e}")
        }
        (Dataplane::Auto, Ok(())) => "io_uring (dataplane: auto; io_uring works here)".to_owned(),
        (Dataplane::Auto, Err(e)) => {
            format!("epoll (dataplane: auto; io_uring cannot be used here: {e})")
        }
    }
}

/// The engine `wanted` names. `auto` takes io_uring when this process may
/// use it and otherwise epoll, saying so in one line with the reason and the
/// fix; `io_uring` fails with that reason instead.
pub fn choose(wanted: Dataplane) -> io::Result<Engine> {
    match wanted {
        Dataplane::IoUring => probe().map(|()| Engine::IoUring),
        Dataplane::Epoll => Ok(Engine::Epoll),
        Dataplane::Auto => match probe() {
            Ok(()) => Ok(Engine::IoUring),
            Err(e) => {
                log::warn(
                    "io_uring cannot be used here: the L4 data plane runs on epoll instead",
                    &[
                        ("reason", &e),
                        (
                            "fix",
                            &"allow io_uring_setup, io_uring_enter and io_uring_register (conf/seccomp/spliced.json), or set `dataplane: epoll` to choose epoll without this warning",
                        ),
                    ],
                );
                Ok(Engine::Epoll)
            }
        },
    }
}

/// Starts one worker per entry of `sockets`, pinned to the allowed CPUs in
/// turn. `on_exit` runs on each worker thread as it ends.
pub fn start(
    engine: Engine,
    shared: &Arc<Shared>,
    sockets: Vec<WorkerSockets>,
    on_exit: impl Fn() + Send + Sync + 'static,
) -> io::Result<L4Plane> {
    shared.stats.set_engine(engine.name());
    let cpus = sys::allowed_cpus();
    let on_exit = Arc::new(on_exit);
    let mut workers = Vec::new();
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
                let result = match engine {
                    Engine::IoUring => Ring::new().map_err(io::Error::other).and_then(|ring| {
                        worker::Worker::new(
                            id,
                            ring,
                            shared.clone(),
                            socks,
                            worker_wake,
                            command_rx,
                        )?
                        .run()
                    }),
                    Engine::Epoll => Poller::new().and_then(|poller| {
                        worker::Worker::new(
                            id,
                            poller,
                            shared.clone(),
                            socks,
                            worker_wake,
                            command_rx,
                        )?
                        .run()
                    }),
                };
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
        workers.push(WorkerHandle {
            thread,
            wake,
            commands,
        });
    }
    Ok(L4Plane { engine, workers })
}

impl Plane for L4Plane {
    fn engine(&self) -> &'static str {
        self.engine.name()
    }

    fn listen(&self, id: u32, sockets: Vec<Socket>) {
        for (w, socket) in self.workers.iter().zip(sockets) {
            w.send(Command::Listen { id, socket });
        }
    }

    fn unlisten(&self, id: u32) {
        for w in &self.workers {
            w.send(Command::Unlisten { id });
        }
    }

    fn wake(&self) {
        self.workers.iter().for_each(WorkerHandle::wake);
    }

    fn join(self: Box<Self>) {
        for w in self.workers {
            let _ = w.thread.join();
        }
    }
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
