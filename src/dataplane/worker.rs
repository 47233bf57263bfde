//! One data-plane worker: its own engine (an io_uring, or the epoll engine's
//! emulation of one: any [`Reactor`]), its own SO_REUSEPORT socket per
//! listener, a slab of connections, a pool of receive buffers and a pipe pool.
//! It accepts, hands each connection to a sans-IO [`Session`] (which decides
//! everything from inspection to the last byte), turns the session's requests
//! into submissions and inline syscalls (`conn::ReactorIo`), feeds the
//! completions back, and frees a connection once nothing is in flight. It
//! never blocks, never takes a lock and never touches the filesystem.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::{SockRef, Socket};

use super::conn::{ReactorIo, Resources, Slot};
use super::token::{Op, Token, GEN_MASK, NO_SLOT};
use super::Command;
use crate::accesslog::Record;
use crate::clock;
use crate::counters::{bump, WorkerStats};
use crate::outcome::{Reject, Termination};
use crate::plane::Shared;
use crate::reactor::{Completion, Reactor};
use crate::session::{self, Ctx, Dir, Phase, Rng, Session, RECV_BUFFER};
use crate::sys;
use crate::uring::PipePool;

/// Provided buffers per worker and their size. WHY 256 × 32 KiB (8 MiB of
/// address space, touched lazily): research/uring-datapath.md found 64 KiB+
/// buffers best for bulk copy, but bulk moves to splice after two full reads, so
/// copy mostly carries request/response traffic; 32 KiB keeps the resident set
/// small while still letting the two-full-reads signal fire early.
pub const BUF_COUNT: u16 = 256;
pub const BUF_SIZE: u32 = RECV_BUFFER;
/// Pipe size for splice: 256 KiB was the sweet spot measured (64 KiB was 40%
/// slower, 1 MiB added little).
pub const PIPE_SIZE: usize = 256 * 1024;
/// Pipes per worker. WHY 64: an unprivileged process gets only ~256 pipes of
/// 256 KiB in total (fs.pipe-user-pages-soft), shared by all workers.
pub const PIPE_POOL_MAX: usize = 64;
/// How long accept pauses after running out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// The longest the housekeeping timer sleeps; it wakes sooner for an
/// inspection or tarpit deadline (see `Worker::on_tick`).
const TICK: Duration = Duration::from_secs(1);
/// The shortest: deadlines closer than this are served a little late rather
/// than spinning the timer.
const TICK_MIN: Duration = Duration::from_millis(5);
/// Buffer group id of the worker's provided-buffer ring.
const BUF_GROUP: u16 = 0;

struct ListenSocket {
    /// The listener's stable id (see `Listener::id`).
    id: u32,
    socket: Option<Socket>,
    /// Removed by a reload: close once the accept is cancelled.
    closing: bool,
    /// A multishot accept is in flight.
    armed: bool,
    /// Waiting for the back-off timer after an fd-exhaustion error.
    backing_off: bool,
}

pub struct Worker<R: Reactor> {
    id: usize,
    /// The engine: an io_uring, or the epoll engine's completion queue.
    ring: R,
    pipes: PipePool,
    shared: Arc<Shared>,
    slots: Vec<Option<Slot>>,
    gens: Vec<u32>,
    free: Vec<u32>,
    live: usize,
    /// Connections held in the tarpit, and the most this worker may hold: a
    /// quarter of its share of the connection budget (at least 16; 1024
    /// without a budget).
    tarpitted: usize,
    tarpit_cap: usize,
    listeners: Vec<ListenSocket>,
    wake: OwnedFd,
    /// Listener changes from the control thread (reload), read on wake-up.
    commands: Receiver<Command>,
    now: Instant,
    completions: Vec<Completion>,
    /// Splice pumps that stopped after their step budget and must continue.
    ready: Vec<(u32, u32, Dir)>,
    /// Receives that found no free buffer, to retry once buffers come back.
    starved: Vec<(u32, u32, Dir)>,
    recycled: bool,
    /// What an inspected connection sent, copied out of its receive buffer
    /// so the buffer goes back at once.
    scratch: Vec<u8>,
    draining: bool,
    aborted: bool,
    last_fd_warning: Option<Instant>,
    rng: Rng,
}

impl<R: Reactor> Worker<R> {
    pub fn new(
        id: usize,
        mut ring: R,
        shared: Arc<Shared>,
        sockets: Vec<(u32, Socket)>,
        wake: OwnedFd,
        commands: Receiver<Command>,
    ) -> io::Result<Worker<R>> {
        ring.provide_buffers(BUF_GROUP, BUF_COUNT, BUF_SIZE)?;
        let pipes_max = shared
            .pipes_per_worker
            .load(Ordering::Relaxed)
            .min(PIPE_POOL_MAX);
        shared
            .stats
            .worker(id)
            .pipes_max
            .store(pipes_max as u64, Ordering::Relaxed);
        let budget = shared.conn_budget.load(Ordering::Relaxed);
        let tarpit_cap = if budget == u64::MAX {
            1024
        } else {
            let workers = shared.stats.workers().count() as u64;
            (budget / workers / 4).max(16) as usize
        };
        Ok(Worker {
            id,
            ring,
            pipes: PipePool::new(pipes_max, PIPE_SIZE),
            shared,
            slots: Vec::new(),
            gens: Vec::new(),
            free: Vec::new(),
            live: 0,
            tarpitted: 0,
            tarpit_cap,
            listeners: sockets
                .into_iter()
                .map(|(id, s)| ListenSocket {
                    id,
                    socket: Some(s),
                    closing: false,
                    armed: false,
                    backing_off: false,
                })
                .collect(),
            wake,
            commands,
            now: Instant::now(),
            completions: Vec::with_capacity(1024),
            ready: Vec::new(),
            starved: Vec::new(),
            recycled: false,
            scratch: Vec::new(),
            draining: false,
            aborted: false,
            last_fd_warning: None,
            rng: Rng(0x9E37_79B9_7F4A_7C15 ^ ((id as u64 + 1) << 32) ^ clock::now_ms()),
        })
    }

    /// Hands a finished connection to the access log; drops it (counted) when
    /// the control thread has fallen behind.
    fn log_access(&mut self, record: Record) {
        if self.shared.access_queues[self.id].push(record).is_err() {
            bump(&self.stats().access_log_dropped, 1);
        }
    }

    /// See [`session::warn_resources`].
    fn warn_resources(&mut self, msg: &str, error: &io::Error) {
        session::warn_resources(&mut self.last_fd_warning, self.now, self.id, msg, error);
    }

    fn stats(&self) -> &WorkerStats {
        self.shared.stats.worker(self.id)
    }

    /// Runs until shutdown has drained every connection.
    pub fn run(mut self) -> io::Result<()> {
        for i in 0..self.listeners.len() {
            self.arm_accept(i);
        }
        let first = self.longest_tick();
        self.ring
            .timeout(first, Token::new(Op::Tick, 0, 0).encode());
        self.ring.poll(
            self.wake.as_raw_fd(),
            libc::POLLIN as u32,
            true,
            Token::new(Op::Wake, 0, 0).encode(),
        );
        self.check_shutdown();
        let mut completions = std::mem::take(&mut self.completions);
        loop {
            let busy = !self.ready.is_empty() || (self.recycled && !self.starved.is_empty());
            self.ring.submit_and_wait(busy.then_some(Duration::ZERO))?;
            self.ring.drain_completions(&mut completions);
            self.now = Instant::now();
            for c in completions.drain(..) {
                self.dispatch(c);
            }
            self.run_ready();
            self.retry_starved();
            if self.draining && self.live == 0 && self.listeners.iter().all(|l| l.socket.is_none())
            {
                break;
            }
        }
        // Flush the closes and cancels queued by the last iteration.
        self.ring.submit_and_wait(Some(Duration::ZERO))?;
        Ok(())
    }

    fn dispatch(&mut self, c: Completion) {
        let Some(t) = Token::decode(c.user_data) else {
            return;
        };
        match t.op {
            Op::Accept => {
                if let Some(i) = self.listener_index(t.slot) {
                    self.on_accept(i, c);
                }
            }
            Op::AcceptBackoff => {
                if let Some(i) = self.listener_index(t.slot) {
                    self.listeners[i].backing_off = false;
                    self.arm_accept(i);
                }
            }
            Op::Tick => {
                let next = self.on_tick();
                self.ring.timeout(next, Token::new(Op::Tick, 0, 0).encode());
            }
            Op::Wake => {
                sys::eventfd_clear(&self.wake);
                if !c.more() {
                    self.ring.poll(
                        self.wake.as_raw_fd(),
                        libc::POLLIN as u32,
                        true,
                        Token::new(Op::Wake, 0, 0).encode(),
                    );
                }
                self.run_commands();
                self.check_shutdown();
            }
            _ => self.on_completion(t, c),
        }
    }

    // ---- accept ------------------------------------------------------------

    fn listener_index(&self, id: u32) -> Option<usize> {
        self.listeners.iter().position(|l| l.id == id)
    }

    fn arm_accept(&mut self, i: usize) {
        let l = &mut self.listeners[i];
        if self.draining || l.closing || l.armed || l.backing_off {
            return;
        }
        if let Some(s) = &l.socket {
            l.armed = true;
            let fd = s.as_raw_fd();
            self.ring
                .accept_multi(fd, Token::new(Op::Accept, l.id, 0).encode());
        }
    }

    /// Applies listener changes the control thread sent with a reload.
    fn run_commands(&mut self) {
        while let Ok(cmd) = self.commands.try_recv() {
            match cmd {
                Command::Listen { id, socket } => {
                    self.listeners.push(ListenSocket {
                        id,
                        socket: Some(socket),
                        closing: false,
                        armed: false,
                        backing_off: false,
                    });
                    self.arm_accept(self.listeners.len() - 1);
                }
                Command::Unlisten { id } => {
                    if let Some(i) = self.listener_index(id) {
                        self.stop_listening(i);
                    }
                }
            }
        }
    }

    /// Stops accepting on listener `i`: cancels its accept and closes the
    /// socket once the cancellation completes (at once if none is armed).
    fn stop_listening(&mut self, i: usize) {
        let l = &mut self.listeners[i];
        l.closing = true;
        match (&l.socket, l.armed) {
            (Some(s), true) => {
                let fd = s.as_raw_fd();
                self.ring
                    .cancel_fd(fd, Token::new(Op::Cancel, NO_SLOT, 0).encode());
            }
            _ => {
                self.listeners.remove(i);
            }
        }
    }

    fn on_accept(&mut self, i: usize, mut c: Completion) {
        if !c.more() {
            self.listeners[i].armed = false;
        }
        if let Some(fd) = c.take_accepted() {
            self.accept_conn(i, fd);
        } else if c.result < 0 {
            match -c.result {
                libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM => {
                    bump(&self.stats().accept_resource_errors, 1);
                    self.warn_resources(
                        "accept failed: out of file descriptors or memory; backing off (raise `ulimit -n` / LimitNOFILE)",
                        &io::Error::from_raw_os_error(-c.result),
                    );
                    if !self.listeners[i].armed && !self.listeners[i].backing_off {
                        self.listeners[i].backing_off = true;
                        self.ring.timeout(
                            ACCEPT_BACKOFF,
                            Token::new(Op::AcceptBackoff, self.listeners[i].id, 0).encode(),
                        );
                    }
                }
                _ => {}
            }
        }
        if !self.listeners[i].armed {
            if self.listeners[i].closing {
                // Cancelled for a reload that removed it: close it now, so the
                // kernel refuses new connections on it.
                self.listeners.remove(i);
            } else if self.draining {
                // Cancelled for shutdown.
                self.listeners[i].socket = None;
            } else {
                self.arm_accept(i);
            }
        }
    }

    fn accept_conn(&mut self, i: usize, fd: OwnedFd) {
        let snapshot = self.shared.snapshot.load_full();
        let id = self.listeners[i].id;
        // A listener a reload just removed may still hand over a connection.
        let Some(li) = snapshot.listeners.iter().position(|l| l.id == id) else {
            return;
        };
        let listener = &snapshot.listeners[li];
        let ls = listener.stats.worker(self.id);
        bump(&ls.accepted, 1);
        bump(&self.stats().accepted, 1);
        if listener.stats.active.fetch_add(1, Ordering::Relaxed) >= listener.max_connections as u64
        {
            listener.stats.active.fetch_sub(1, Ordering::Relaxed);
            bump(&ls.rejected[Reject::MaxConnections.index()], 1);
            bump(
                &self.stats().terminations[Termination::MaxConnections.index()],
                1,
            );
            if self.shared.access_log_on.load(Ordering::Relaxed) {
                let client = SockRef::from(&fd)
                    .peer_addr()
                    .ok()
                    .and_then(|a| a.as_socket());
                let record = Record {
                    end_unix_ms: session::unix_ms(),
                    snapshot: snapshot.clone(),
                    listener: li,
                    pool: listener.l4_pool(),
                    backend: None,
                    client,
                    bytes_client_to_backend: 0,
                    bytes_backend_to_client: 0,
                    duration_us: 0,
                    connect_us: None,
                    termination: Termination::MaxConnections,
                    http: None,
                };
                self.log_access(record);
            }
            return;
        }
        let budget = self.shared.conn_budget.load(Ordering::Relaxed);
        if self.shared.open_conns.fetch_add(1, Ordering::Relaxed) >= budget {
            // Near the fd limit: refuse now, while fds are left for the admin
            // API and health probes, rather than fail later without a word.
            self.shared.open_conns.fetch_sub(1, Ordering::Relaxed);
            listener.stats.active.fetch_sub(1, Ordering::Relaxed);
            bump(&ls.rejected[Reject::Resources.index()], 1);
            bump(
                &self.stats().terminations[Termination::Resources.index()],
                1,
            );
            self.warn_resources(
                "connection refused: the fd limit leaves no room for more connections (raise `ulimit -n` / LimitNOFILE)",
                &io::Error::from_raw_os_error(libc::EMFILE),
            );
            return;
        }
        let _ = SockRef::from(&fd).set_tcp_nodelay(true);
        let client = SockRef::from(&fd)
            .peer_addr()
            .ok()
            .and_then(|a| a.as_socket());
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                self.gens.push(0);
                (self.slots.len() - 1) as u32
            }
        };
        self.gens[slot as usize] = self.gens[slot as usize].wrapping_add(1);
        self.slots[slot as usize] = Some(Slot {
            gen: self.gens[slot as usize],
            session: Session::new(snapshot, li, client, self.now),
            res: Resources::new(fd),
        });
        self.live += 1;
        let active = &self.stats().active;
        bump(active, 1);
        self.drive(slot, |s, ctx, io| s.start(ctx, io));
    }

    // ---- connections -------------------------------------------------------

    /// Runs `f` on the session in `slot` with the worker's context and the
    /// session's view of the ring, then frees the slot if that closed it and
    /// nothing is in flight.
    fn drive(&mut self, slot: u32, f: impl FnOnce(&mut Session, &mut Ctx, &mut ReactorIo<R>)) {
        let Worker {
            id,
            ring,
            pipes,
            shared,
            slots,
            now,
            ready,
            starved,
            recycled,
            rng,
            tarpitted,
            tarpit_cap,
            last_fd_warning,
            ..
        } = self;
        let Some(Some(s)) = slots.get_mut(slot as usize) else {
            return;
        };
        let mut io = ReactorIo {
            ring,
            pipes,
            stats: shared.stats.worker(*id),
            ready,
            starved,
            recycled,
            res: &mut s.res,
            slot,
            gen: s.gen,
        };
        let mut ctx = Ctx {
            shared,
            worker: *id,
            now: *now,
            rng,
            tarpitted,
            tarpit_cap: *tarpit_cap,
            last_fd_warning,
        };
        f(&mut s.session, &mut ctx, &mut io);
        self.maybe_free(slot);
    }

    /// A completion for a connection: stale ones (a freed-and-reused slot)
    /// are dropped; a closing connection only counts it down.
    fn on_completion(&mut self, t: Token, c: Completion) {
        let Some(Some(s)) = self.slots.get_mut(t.slot as usize) else {
            return;
        };
        if s.gen & GEN_MASK != t.gen {
            return;
        }
        s.res.inflight -= 1;
        if s.session.phase == Phase::Closing {
            if let Some(b) = c.buffer() {
                self.ring.recycle(b);
                self.recycled = true;
            }
            self.maybe_free(t.slot);
            return;
        }
        let result = c.result;
        match t.op {
            Op::Connect => {
                let result = if result == 0 { Ok(()) } else { Err(-result) };
                self.drive(t.slot, |s, ctx, io| s.on_connected(result, ctx, io));
            }
            Op::Recv(d) if result > 0 => {
                let buf = c.buffer().expect("receive completion names its buffer");
                if s.session.phase == Phase::Inspecting {
                    // The parsers get a copy and the buffer goes back at once.
                    let mut data = std::mem::take(&mut self.scratch);
                    data.clear();
                    data.extend_from_slice(self.ring.buffer(buf, 0, result as u32));
                    self.ring.recycle(buf);
                    self.recycled = true;
                    self.drive(t.slot, |s, ctx, io| s.on_inspect_data(&data, ctx, io));
                    self.scratch = data;
                } else {
                    s.res.held[d] = Some(buf);
                    self.drive(t.slot, |s, ctx, io| {
                        s.on_received(d, result as u32, ctx, io)
                    });
                }
            }
            Op::Recv(d) if result == 0 => {
                self.drive(t.slot, |s, ctx, io| s.on_received(d, 0, ctx, io));
            }
            Op::Recv(d) => {
                self.drive(t.slot, |s, ctx, io| s.on_recv_error(d, -result, ctx, io));
            }
            Op::Send(d) => {
                let result = if result < 0 {
                    Err(-result)
                } else {
                    Ok(result as u32)
                };
                self.drive(t.slot, |s, ctx, io| s.on_sent(d, result, ctx, io));
            }
            Op::Throttle(d) => {
                self.drive(t.slot, |s, ctx, io| s.on_throttle_elapsed(d, ctx, io));
            }
            Op::PollOut(d) => {
                self.drive(t.slot, |s, ctx, io| s.on_writable(d, result >= 0, ctx, io));
            }
            Op::PollIn(d) => {
                self.drive(t.slot, |s, ctx, io| s.on_ready(d, result >= 0, ctx, io));
            }
            _ => {}
        }
    }

    fn live_slot(&self, slot: u32, gen: u32) -> Option<&Slot> {
        self.slots
            .get(slot as usize)?
            .as_ref()
            .filter(|s| s.gen == gen)
    }

    fn run_ready(&mut self) {
        let ready = std::mem::take(&mut self.ready);
        for (slot, gen, d) in ready {
            if self.live_slot(slot, gen).is_some() {
                self.drive(slot, |s, ctx, io| s.on_pump(d, ctx, io));
            }
        }
    }

    fn retry_starved(&mut self) {
        if !self.recycled || self.starved.is_empty() {
            self.recycled = false;
            return;
        }
        self.recycled = false;
        let starved = std::mem::take(&mut self.starved);
        for (slot, gen, d) in starved {
            // Relaying, or reading a PROXY header / ClientHello: may receive.
            let reading = self
                .live_slot(slot, gen)
                .is_some_and(|s| matches!(s.session.phase, Phase::Relaying | Phase::Inspecting));
            if reading {
                self.drive(slot, |_, _, io| session::Io::recv(io, d, false));
            }
        }
    }

    /// Frees a closed connection once nothing is in flight: gives its
    /// buffers and pipes back, lets the session count how it ended, and
    /// closes its sockets.
    fn maybe_free(&mut self, slot: u32) {
        let closed = self.slots[slot as usize]
            .as_ref()
            .is_some_and(|s| s.session.phase == Phase::Closing && s.res.inflight == 0);
        if !closed {
            return;
        }
        let Slot {
            session, mut res, ..
        } = self.slots[slot as usize]
            .take()
            .expect("live connection slot");
        self.free.push(slot);
        self.live -= 1;
        for (d, held) in res.held.iter_mut().enumerate() {
            if let Some(b) = held.take() {
                self.ring.recycle(b);
                self.recycled = true;
            }
            if let Some(p) = res.pipes[d].take() {
                if session.dirs[d].pipe_bytes > 0 {
                    self.pipes.discard(p);
                } else {
                    self.pipes.give(p);
                }
            }
        }
        self.stats()
            .pipes_in_use
            .store(self.pipes.in_use() as u64, Ordering::Relaxed);
        let mut ctx = Ctx {
            shared: &self.shared,
            worker: self.id,
            now: self.now,
            rng: &mut self.rng,
            tarpitted: &mut self.tarpitted,
            tarpit_cap: self.tarpit_cap,
            last_fd_warning: &mut self.last_fd_warning,
        };
        if let Some(record) = session.finish(&mut ctx) {
            self.log_access(record);
        }
        // Dropping `res` closes both sockets.
    }

    // ---- housekeeping ------------------------------------------------------

    /// Closes what has outstayed its time and returns how long the timer
    /// should sleep before the next look.
    ///
    /// WHY not a fixed 1 s tick: a 1 s PROXY-header or ClientHello timeout
    /// then fired anywhere up to 2 s. The next tick is due at the earliest
    /// pending inspection or tarpit deadline, and never later than the
    /// shortest inspection timeout of any listener, so a connection accepted
    /// after the timer was armed is still seen before its deadline. Idle
    /// timeouts (minutes, usually) keep the one-second grain.
    fn on_tick(&mut self) -> Duration {
        self.check_shutdown();
        let now = self.now;
        let mut next = self.longest_tick();
        for slot in 0..self.slots.len() as u32 {
            self.drive(slot, |s, ctx, io| s.on_tick(ctx, io));
            let deadline = self.slots[slot as usize]
                .as_ref()
                .and_then(|s| s.session.deadline());
            if let Some(at) = deadline {
                next = next.min(at.saturating_duration_since(now));
            }
        }
        next.max(TICK_MIN)
    }

    /// The longest the timer may sleep and still see a connection accepted
    /// after it was armed before that connection's inspection deadline.
    fn longest_tick(&self) -> Duration {
        self.shared
            .snapshot
            .load()
            .listeners
            .iter()
            .flat_map(|l| {
                [
                    l.settings.tls_inspect_timeout,
                    l.settings.proxy_header_timeout,
                ]
            })
            .fold(TICK, Duration::min)
            .max(TICK_MIN)
    }

    fn check_shutdown(&mut self) {
        if self.shared.draining.load(Ordering::Acquire) && !self.draining {
            self.draining = true;
            for i in 0..self.listeners.len() {
                let l = &mut self.listeners[i];
                match (&l.socket, l.armed) {
                    (Some(s), true) => {
                        let fd = s.as_raw_fd();
                        self.ring
                            .cancel_fd(fd, Token::new(Op::Cancel, NO_SLOT, 0).encode());
                    }
                    _ => l.socket = None,
                }
            }
        }
        if self.shared.abort.load(Ordering::Acquire) && !self.aborted {
            self.aborted = true;
            for slot in 0..self.slots.len() as u32 {
                self.drive(slot, |s, ctx, io| s.shut_down(ctx, io));
            }
        }
    }
}
