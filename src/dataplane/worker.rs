//! One data-plane worker: its own io_uring, its own SO_REUSEPORT socket per
//! listener, a slab of connections, a provided-buffer ring and a pipe pool. It
//! accepts, picks a backend from the current snapshot, connects (bounded by a
//! linked timeout, retrying other backends), hands the connection to the relay,
//! and closes it once nothing is in flight. It never blocks, never takes a lock
//! and never touches the filesystem.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockRef, Socket, Type};

use super::conn::{Conn, Phase};
use super::token::{Op, Token, B2C, C2B};
use super::Command;
use crate::accesslog::Record;
use crate::balance::{self, Choice, PickContext};
use crate::clock;
use crate::counters::{bump, unbump, WorkerStats};
use crate::log;
use crate::outcome::Reject;
use crate::outcome::Termination;
use crate::plane::Shared;
use crate::snapshot::Pool;
use crate::sys;
use crate::uring::{timespec, BufRing, Completion, PipePool, Ring, Timespec};
use std::sync::mpsc::Receiver;

/// Provided buffers per worker and their size. WHY 256 × 32 KiB (8 MiB of
/// address space, touched lazily): research/uring-datapath.md found 64 KiB+
/// buffers best for bulk copy, but bulk moves to splice after two full reads, so
/// copy mostly carries request/response traffic; 32 KiB keeps the resident set
/// small while still letting the two-full-reads signal fire early.
pub const BUF_COUNT: u16 = 256;
pub const BUF_SIZE: u32 = 32 * 1024;
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

pub struct Worker {
    pub(super) id: usize,
    // Field order matters: the ring must be dropped before the buffer memory it
    // was told about.
    pub(super) ring: Ring,
    pub(super) bufs: BufRing,
    pub(super) pipes: PipePool,
    pub(super) shared: Arc<Shared>,
    pub(super) slots: Vec<Option<Conn>>,
    gens: Vec<u32>,
    free: Vec<u32>,
    live: usize,
    /// Connections held in the tarpit (bounded by `tarpit_cap`).
    pub(super) tarpitted: usize,
    listeners: Vec<ListenSocket>,
    wake: OwnedFd,
    /// Listener changes from the control thread (reload), read on wake-up.
    commands: Receiver<Command>,
    tick: Timespec,
    backoff: Timespec,
    pub(super) now: Instant,
    completions: Vec<Completion>,
    /// Splice pumps that stopped after their step budget and must continue.
    pub(super) ready: Vec<(u32, u32, usize)>,
    /// Receives that found no free buffer, to retry once buffers come back.
    pub(super) starved: Vec<(u32, u32, usize)>,
    pub(super) recycled: bool,
    draining: bool,
    aborted: bool,
    last_fd_warning: Option<Instant>,
    rng: Rng,
}

/// xorshift64: the worker's private source of randomness for selection.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

impl Worker {
    pub fn new(
        id: usize,
        shared: Arc<Shared>,
        sockets: Vec<(u32, Socket)>,
        wake: OwnedFd,
        commands: Receiver<Command>,
    ) -> io::Result<Worker> {
        let ring = Ring::new().map_err(io::Error::other)?;
        let bufs = BufRing::new(&ring, BUF_GROUP, BUF_COUNT, BUF_SIZE)?;
        let pipes_max = shared
            .pipes_per_worker
            .load(Ordering::Relaxed)
            .min(PIPE_POOL_MAX);
        shared
            .stats
            .worker(id)
            .pipes_max
            .store(pipes_max as u64, Ordering::Relaxed);
        Ok(Worker {
            id,
            ring,
            bufs,
            pipes: PipePool::new(pipes_max, PIPE_SIZE),
            shared,
            slots: Vec::new(),
            gens: Vec::new(),
            free: Vec::new(),
            live: 0,
            tarpitted: 0,
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
            tick: timespec(TICK),
            backoff: timespec(ACCEPT_BACKOFF),
            now: Instant::now(),
            completions: Vec::with_capacity(1024),
            ready: Vec::new(),
            starved: Vec::new(),
            recycled: false,
            draining: false,
            aborted: false,
            last_fd_warning: None,
            rng: Rng(0x9E37_79B9_7F4A_7C15 ^ ((id as u64 + 1) << 32) ^ clock::now_ms()),
        })
    }

    /// Hands a finished connection to the access log; drops it (counted) when
    /// the control thread has fallen behind.
    pub(super) fn log_access(&mut self, record: Record) {
        if self.shared.access_queues[self.id].push(record).is_err() {
            bump(&self.stats().access_log_dropped, 1);
        }
    }

    /// Logs running out of fds or memory at most once a second per worker: the
    /// condition repeats for every connection while it lasts.
    fn warn_resources(&mut self, msg: &str, error: &io::Error) {
        let now = self.now;
        if self
            .last_fd_warning
            .is_none_or(|t| now - t >= Duration::from_secs(1))
        {
            self.last_fd_warning = Some(now);
            log::warn(msg, &[("worker", &self.id), ("error", error)]);
        }
    }

    pub(super) fn stats(&self) -> &WorkerStats {
        self.shared.stats.worker(self.id)
    }

    /// Runs until shutdown has drained every connection.
    pub fn run(mut self) -> io::Result<()> {
        for i in 0..self.listeners.len() {
            self.arm_accept(i);
        }
        self.tick = timespec(self.longest_tick());
        self.ring
            .timeout(&self.tick, Token::new(Op::Tick, 0, 0).encode());
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
            for c in &completions {
                self.dispatch(*c);
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
                // The kernel copies the timespec when the entry is submitted,
                // before this field can change again at the next tick.
                self.tick = timespec(next);
                self.ring
                    .timeout(&self.tick, Token::new(Op::Tick, 0, 0).encode());
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
            _ => {
                let slot = t.slot as usize;
                let Some(conn) = self.slots.get_mut(slot).and_then(|s| s.as_mut()) else {
                    return;
                };
                if conn.gen & 0xff_ffff != t.gen {
                    return;
                }
                conn.inflight -= 1;
                if conn.phase == Phase::Closing {
                    if let Some(b) = c.buffer() {
                        self.bufs.recycle(b);
                        self.recycled = true;
                    }
                    self.maybe_free(t.slot);
                    return;
                }
                match t.op {
                    Op::Connect => self.on_connect(t.slot, c.result),
                    Op::ConnectTimeout | Op::Cancel => {}
                    Op::Recv(d) => self.on_recv(t.slot, d, c),
                    Op::Send(d) => self.on_send(t.slot, d, c.result),
                    Op::Throttle(d) => self.on_throttle(t.slot, d),
                    Op::PollOut(C2B) if self.preface_pending(t.slot) => {
                        self.flush_preface(t.slot);
                    }
                    Op::PollIn(d) | Op::PollOut(d) => {
                        if c.result < 0 {
                            self.abort(t.slot);
                        } else {
                            self.pump(t.slot, d);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    pub(super) fn conn(&mut self, slot: u32) -> &mut Conn {
        self.slots[slot as usize]
            .as_mut()
            .expect("live connection slot")
    }

    pub(super) fn live_conn(&self, slot: u32, gen: u32) -> Option<&Conn> {
        self.slots
            .get(slot as usize)?
            .as_ref()
            .filter(|c| c.gen == gen)
    }

    pub(super) fn token(&self, op: Op, slot: u32) -> u64 {
        let gen = self.slots[slot as usize].as_ref().map_or(0, |c| c.gen);
        Token::new(op, slot, gen).encode()
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
                    .cancel_fd(fd, Token::new(Op::Cancel, u32::MAX, 0).encode());
            }
            _ => {
                self.listeners.remove(i);
            }
        }
    }

    fn on_accept(&mut self, i: usize, c: Completion) {
        if !c.more() {
            self.listeners[i].armed = false;
        }
        if c.result >= 0 {
            let fd = sys::owned_fd(c.result);
            self.accept_conn(i, fd);
        } else {
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
                            &self.backoff,
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
                    end_unix_ms: unix_ms(),
                    snapshot: snapshot.clone(),
                    listener: li,
                    pool: listener.pool,
                    backend: None,
                    client,
                    bytes_client_to_backend: 0,
                    bytes_backend_to_client: 0,
                    duration_us: 0,
                    connect_us: None,
                    termination: Termination::MaxConnections,
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
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                self.gens.push(0);
                (self.slots.len() - 1) as u32
            }
        };
        self.gens[slot as usize] = self.gens[slot as usize].wrapping_add(1);
        let conn = Conn::new(self.gens[slot as usize], fd, snapshot, li, self.now);
        self.slots[slot as usize] = Some(conn);
        self.live += 1;
        let active = &self.stats().active;
        bump(active, 1);
        self.start(slot);
    }

    // ---- connect -----------------------------------------------------------

    /// Picks a backend not tried yet and starts connecting to it; closes the
    /// client when none is left.
    pub(super) fn connect_next(&mut self, slot: u32) {
        let random = self.rng.next();
        let worker = self.id;
        let conn = self.conn(slot);
        let snapshot = conn.snapshot.clone();
        let listener = &snapshot.listeners[conn.listener];
        let pool = &snapshot.pools[conn.pool];
        let first = conn.attempts == 0;
        let ctx = PickContext {
            client: conn.client_addr.map(|a| a.ip()),
            worker,
            now_ms: clock::now_ms(),
            random,
        };
        let choice = if conn.attempts > listener.retries as usize {
            Choice::NoneLeft
        } else {
            let conn = &*conn;
            balance::choose(
                &pool.backends,
                &pool.primary,
                &pool.backup,
                &pool.policy,
                &ctx,
                &|i| conn.has_tried(i),
            )
        };
        let ls = listener.stats.worker(self.id);
        let index = match choice {
            Choice::Backend(i) => i,
            Choice::FailOpen(i) => {
                // A connection, not an attempt: retries fail open again.
                if !std::mem::replace(&mut self.conn(slot).failed_open, true) {
                    bump(&ls.fail_open, 1);
                }
                i
            }
            Choice::AllFull => {
                let why = if first {
                    bump(&ls.rejected[Reject::BackendsFull.index()], 1);
                    Termination::BackendsFull
                } else {
                    Termination::ConnectFailed
                };
                self.conn(slot).ends_because(why);
                self.abort(slot);
                return;
            }
            Choice::NoneLeft => {
                let why = if first {
                    bump(&ls.rejected[Reject::NoBackend.index()], 1);
                    Termination::NoBackend
                } else {
                    Termination::ConnectFailed
                };
                self.conn(slot).ends_because(why);
                self.abort(slot);
                return;
            }
        };
        let backend = &pool.backends[index];
        let domain = Domain::for_address(backend.addr);
        let socket = match Socket::new(
            domain,
            Type::STREAM.nonblocking().cloexec(),
            Some(Protocol::TCP),
        ) {
            Ok(s) => s,
            Err(e) => {
                // Our own shortage, not the backend's fault: count it on the listener.
                bump(&ls.rejected[Reject::Resources.index()], 1);
                self.conn(slot).ends_because(Termination::Resources);
                self.warn_resources(
                    "cannot create a backend socket: out of file descriptors or memory (raise `ulimit -n` / LimitNOFILE)",
                    &e,
                );
                self.abort(slot);
                return;
            }
        };
        let _ = socket.set_tcp_nodelay(true);
        backend.stats.active.fetch_add(1, Ordering::Relaxed);
        let stats = backend.stats.worker(self.id);
        bump(&stats.connections, 1);
        let route = &stats.by_listener[listener.metrics_slot];
        bump(&route.connections, 1);
        bump(&route.active, 1);
        let fd = socket.as_raw_fd();
        let now = self.now;
        let conn = self.conn(slot);
        conn.tried[conn.attempts] = index as u32;
        conn.attempts += 1;
        conn.backend_index = Some(index);
        conn.backend = Some(socket);
        conn.connect_started = now;
        conn.inflight += 2;
        let (t_connect, t_timeout) = (
            self.token(Op::Connect, slot),
            self.token(Op::ConnectTimeout, slot),
        );
        self.ring.connect(
            fd,
            &backend.sockaddr,
            &listener.connect_timespec,
            t_connect,
            t_timeout,
        );
    }

    fn on_connect(&mut self, slot: u32, result: i32) {
        let id = self.id;
        let now = self.now;
        let conn = self.conn(slot);
        if result == 0 {
            if let Some(i) = conn.backend_index {
                let failures = &conn.snapshot.pools[conn.pool].backends[i]
                    .stats
                    .consecutive_failures;
                // Read first: the common case writes nothing to the shared line.
                if failures.load(Ordering::Relaxed) != 0 {
                    failures.store(0, Ordering::Relaxed);
                }
            }
            conn.phase = Phase::Relaying;
            conn.last_active = now;
            let connect_us = now
                .saturating_duration_since(conn.connect_started)
                .as_micros() as u64;
            conn.connect_us = Some(connect_us);
            self.shared
                .stats
                .worker(id)
                .connect_duration
                .observe(connect_us);
            self.begin_relay(slot);
            return;
        }
        // Failed: count it against the backend, release it, try the next one.
        let snapshot = conn.snapshot.clone();
        let pool = &snapshot.pools[conn.pool];
        if let Some(i) = conn.backend_index.take() {
            let b = &pool.backends[i];
            b.stats.active.fetch_sub(1, Ordering::Relaxed);
            let w = b.stats.worker(id);
            let route = snapshot.listeners[conn.listener].metrics_slot;
            unbump(&w.by_listener[route].active, 1);
            match -result {
                libc::ECONNREFUSED => bump(&w.connect_errors_refused, 1),
                libc::ECANCELED | libc::ETIMEDOUT => bump(&w.connect_errors_timeout, 1),
                _ => bump(&w.connect_errors_other, 1),
            }
            let failures = b.stats.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
            if pool.eject_after > 0 && failures >= pool.eject_after {
                eject(pool, i, clock::now_ms());
            }
        }
        conn.backend = None;
        self.connect_next(slot);
    }

    // ---- close -------------------------------------------------------------

    /// Closes a connection at once (error, timeout, shutdown deadline): cancels
    /// what is in flight and frees the slot when the last completion is in.
    pub(super) fn abort(&mut self, slot: u32) {
        let conn = self.conn(slot);
        if conn.phase == Phase::Closing {
            return;
        }
        conn.phase = Phase::Closing;
        if conn.inflight > 0 {
            let fds = [conn.client_fd(), conn.backend_fd()];
            for fd in fds.into_iter().filter(|&fd| fd >= 0) {
                self.conn(slot).inflight += 1;
                let t = self.token(Op::Cancel, slot);
                self.ring.cancel_fd(fd, t);
            }
        }
        self.maybe_free(slot);
    }

    /// Closes a connection whose both directions finished cleanly.
    pub(super) fn finish(&mut self, slot: u32) {
        self.abort(slot);
    }

    fn maybe_free(&mut self, slot: u32) {
        let conn = self.conn(slot);
        if conn.phase != Phase::Closing || conn.inflight > 0 {
            return;
        }
        let mut conn = self.slots[slot as usize]
            .take()
            .expect("live connection slot");
        self.free.push(slot);
        self.live -= 1;
        if conn.tarpit_until.is_some() {
            self.tarpitted -= 1;
        }
        for dir in conn.dirs.iter_mut() {
            if let Some(h) = dir.held.take() {
                self.bufs.recycle(h.buf);
                self.recycled = true;
            }
            if let Some(p) = dir.pipe.take() {
                if dir.pipe_bytes > 0 {
                    self.pipes.discard(p);
                } else {
                    self.pipes.give(p);
                }
            }
        }
        let stats = self.shared.stats.worker(self.id);
        stats
            .pipes_in_use
            .store(self.pipes.in_use() as u64, Ordering::Relaxed);
        stats
            .active
            .store(stats.active.load(Ordering::Relaxed) - 1, Ordering::Relaxed);
        let listener = &conn.snapshot.listeners[conn.listener];
        listener.stats.active.fetch_sub(1, Ordering::Relaxed);
        self.shared.open_conns.fetch_sub(1, Ordering::Relaxed);
        if let Some(i) = conn.backend_index {
            let b = &conn.snapshot.pools[conn.pool].backends[i];
            b.stats.active.fetch_sub(1, Ordering::Relaxed);
            unbump(
                &b.stats.worker(self.id).by_listener[listener.metrics_slot].active,
                1,
            );
        }
        if let Some(ticket) = conn.ticket.take() {
            self.shared.limiter.release(ticket);
        }
        let termination = conn.termination.unwrap_or(Termination::ClientClosed);
        let duration_us = self
            .now
            .saturating_duration_since(conn.accepted_at)
            .as_micros() as u64;
        stats.connection_duration.observe(duration_us);
        bump(&stats.terminations[termination.index()], 1);
        if self.shared.access_log_on.load(Ordering::Relaxed) {
            let record = Record {
                end_unix_ms: unix_ms(),
                snapshot: conn.snapshot.clone(),
                listener: conn.listener,
                pool: conn.pool,
                backend: conn.backend_index,
                client: conn.client_addr,
                bytes_client_to_backend: conn.dirs[C2B].bytes,
                bytes_backend_to_client: conn.dirs[B2C].bytes,
                duration_us,
                connect_us: conn.connect_us,
                termination,
            };
            self.log_access(record);
        }
        // Dropping `conn` closes both sockets.
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
        let mut idle = Vec::new();
        let mut slow = Vec::new();
        let mut tarpitted = Vec::new();
        for (i, c) in self.slots.iter().enumerate() {
            let Some(c) = c else { continue };
            let listener = &c.snapshot.listeners[c.listener];
            let deadline = match c.phase {
                Phase::Relaying => {
                    if now.duration_since(c.last_active) >= listener.idle_timeout {
                        idle.push(i as u32);
                    }
                    None
                }
                Phase::Tarpit => c.tarpit_until,
                Phase::Inspecting => {
                    let limit = if c.proxy_done {
                        listener.settings.tls_inspect_timeout
                    } else {
                        listener.settings.proxy_header_timeout
                    };
                    Some(c.accepted_at + limit)
                }
                _ => None,
            };
            match deadline {
                Some(at) if now >= at => match c.phase {
                    Phase::Tarpit => tarpitted.push(i as u32),
                    _ => slow.push(i as u32),
                },
                Some(at) => next = next.min(at - now),
                None => {}
            }
        }
        for slot in idle {
            bump(&self.stats().idle_timeouts, 1);
            self.conn(slot).ends_because(Termination::IdleTimeout);
            self.abort(slot);
        }
        for slot in slow {
            self.inspect_timeout(slot);
        }
        for slot in tarpitted {
            self.abort(slot);
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
                            .cancel_fd(fd, Token::new(Op::Cancel, u32::MAX, 0).encode());
                    }
                    _ => l.socket = None,
                }
            }
        }
        if self.shared.abort.load(Ordering::Acquire) && !self.aborted {
            self.aborted = true;
            let open: Vec<u32> = (0..self.slots.len() as u32)
                .filter(|&s| {
                    self.slots[s as usize]
                        .as_ref()
                        .is_some_and(|c| c.phase != Phase::Closing)
                })
                .collect();
            bump(&self.stats().shutdown_closed, open.len() as u64);
            for slot in open {
                self.conn(slot).ends_because(Termination::Shutdown);
                self.abort(slot);
            }
        }
    }
}

/// Passive health: takes backend `i` out of rotation for a backoff that doubles
/// with every ejection up to the pool's cap, unless that would eject more than
/// `max_ejection_percent` of the pool. Workers may race here; the worst case is
/// one extra ejection, which the control thread logs like any other.
fn eject(pool: &Pool, i: usize, now_ms: u64) {
    let b = &pool.backends[i];
    if b.ejected(now_ms) {
        return;
    }
    let ejected = pool.backends.iter().filter(|x| x.ejected(now_ms)).count();
    if (ejected + 1) * 100 > pool.max_ejection_percent as usize * pool.backends.len() {
        return;
    }
    let n = b.stats.ejections.fetch_add(1, Ordering::Relaxed).min(30);
    let length = pool
        .ejection_time_ms
        .saturating_mul(1u64 << n)
        .min(pool.max_ejection_time_ms.max(pool.ejection_time_ms));
    b.stats
        .ejected_until_ms
        .store(now_ms + length, Ordering::Relaxed);
    b.stats.consecutive_failures.store(0, Ordering::Relaxed);
    b.stats.ejections_total.fetch_add(1, Ordering::Relaxed);
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
