//! One HTTP worker: a pinned thread running a current-thread tokio runtime
//! with a `LocalSet`, an accept loop per listener, and the drain. The control
//! thread talks to it through a command channel and a wake-up; everything
//! else it needs is in the shared snapshot and flags.

use std::cell::Cell;
use std::collections::HashMap;
use std::io;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::Socket;
use tokio::sync::{mpsc, watch, Notify};

use super::upstream::Upstreams;
use crate::log;
use crate::plane::Shared;
use crate::sys;

/// A listener change sent to a worker by a reload.
pub(crate) enum Command {
    Listen { id: u32, socket: Socket },
    Unlisten { id: u32 },
}

/// A running HTTP worker as the plane sees it.
pub(crate) struct Handle {
    thread: JoinHandle<()>,
    wake: Arc<Notify>,
    commands: mpsc::UnboundedSender<Command>,
}

impl Handle {
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    pub(crate) fn send(&self, cmd: Command) {
        // A worker that already stopped has no listeners to change.
        let _ = self.commands.send(cmd);
    }

    pub(crate) fn join(self) {
        let _ = self.thread.join();
    }
}

/// What one worker's connections and requests share (single-threaded).
pub(crate) struct Worker {
    pub shared: Arc<Shared>,
    /// This worker's counter slot in `Shared::stats` and the per-backend,
    /// per-listener counters.
    pub slot: usize,
    pub upstreams: Upstreams,
    rng: Cell<u64>,
    /// Client connections open on this worker.
    conns: Cell<usize>,
    /// Becomes `true` when the drain starts: connections finish their
    /// requests, then close (h1 `Connection: close`, h2 GOAWAY).
    pub draining: watch::Receiver<bool>,
    idle: Notify,
}

impl Worker {
    /// A fresh random number (xorshift64) for balancing and request ids.
    pub fn random(&self) -> u64 {
        let mut x = self.rng.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.set(x);
        x
    }

    /// Counts a client connection until the guard drops.
    pub fn enter(self: &Rc<Self>) -> ConnGuard {
        self.conns.set(self.conns.get() + 1);
        ConnGuard(self.clone())
    }
}

/// One open client connection, counted on its worker.
pub(crate) struct ConnGuard(Rc<Worker>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let n = self.0.conns.get() - 1;
        self.0.conns.set(n);
        if n == 0 {
            self.0.idle.notify_one();
        }
    }
}

/// Starts worker `index` on its own pinned thread.
pub(crate) fn spawn(
    shared: Arc<Shared>,
    index: usize,
    slot: usize,
    sockets: Vec<(u32, Socket)>,
    on_exit: Arc<dyn Fn() + Send + Sync>,
) -> io::Result<Handle> {
    let cpus = sys::allowed_cpus();
    let cpu = (!cpus.is_empty()).then(|| cpus[index % cpus.len()]);
    let wake = Arc::new(Notify::new());
    let (commands, command_rx) = mpsc::unbounded_channel();
    let worker_wake = wake.clone();
    let thread = std::thread::Builder::new()
        .name(format!("spliced-h{index}"))
        .spawn(move || {
            if let Some(cpu) = cpu {
                if let Err(e) = sys::pin_current_thread(cpu) {
                    log::warn(
                        "cannot pin HTTP worker to its CPU; running unpinned",
                        &[("worker", &index), ("cpu", &cpu), ("error", &e)],
                    );
                }
            }
            if let Err(e) = run(shared.clone(), slot, sockets, worker_wake, command_rx) {
                log::error(
                    "HTTP worker stopped with an error",
                    &[("worker", &index), ("error", &e)],
                );
                shared.draining.store(true, Ordering::Release);
            }
            on_exit();
        })?;
    Ok(Handle {
        thread,
        wake,
        commands,
    })
}

fn run(
    shared: Arc<Shared>,
    slot: usize,
    sockets: Vec<(u32, Socket)>,
    wake: Arc<Notify>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) -> io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let (drain_tx, drain_rx) = watch::channel(false);
    let worker = Rc::new(Worker {
        shared: shared.clone(),
        slot,
        upstreams: Upstreams::default(),
        rng: Cell::new(
            0x9e37_79b9_7f4a_7c15 ^ (slot as u64 + 1).wrapping_mul(0xff51_afd7_ed55_8ccd),
        ),
        conns: Cell::new(0),
        draining: drain_rx,
        idle: Notify::new(),
    });
    local.block_on(&rt, async move {
        // One stop switch per listener's accept loop.
        let mut accepting: HashMap<u32, Rc<Notify>> = HashMap::new();
        let mut commands_open = true;
        for (id, socket) in sockets {
            accepting.insert(id, super::conn::accept_loop(&worker, id, socket)?);
        }
        loop {
            if shared.abort.load(Ordering::Acquire) {
                // Past the shutdown deadline: dropping the runtime closes
                // every connection still open.
                break;
            }
            if shared.draining.load(Ordering::Acquire) {
                if !*drain_tx.borrow() {
                    for stop in accepting.values() {
                        stop.notify_one();
                    }
                    accepting.clear();
                    let _ = drain_tx.send(true);
                }
                if worker.conns.get() == 0 {
                    break;
                }
            }
            tokio::select! {
                _ = wake.notified() => {}
                _ = worker.idle.notified() => {}
                cmd = commands.recv(), if commands_open => match cmd {
                    Some(Command::Listen { id, socket }) => {
                        if !shared.draining.load(Ordering::Acquire) {
                            match super::conn::accept_loop(&worker, id, socket) {
                                Ok(stop) => { accepting.insert(id, stop); }
                                Err(e) => log::error("cannot accept on a new HTTP listener", &[("error", &e)]),
                            }
                        }
                    }
                    Some(Command::Unlisten { id }) => {
                        if let Some(stop) = accepting.remove(&id) {
                            stop.notify_one();
                        }
                    }
                    None => commands_open = false,
                },
                // The drain checks connections and the deadline again now
                // and then, whatever wakes it.
                _ = tokio::time::sleep(Duration::from_millis(200)), if shared.draining.load(Ordering::Relaxed) => {}
            }
        }
        io::Result::Ok(())
    })
}
