//! One proxied connection's life, without I/O: admission (access lists,
//! per-client limits, the tarpit), inspection (PROXY header, TLS ClientHello),
//! connect attempts with retries and passive health, both relay directions
//! (copy for small messages, splice for bulk, half-close, bandwidth limits),
//! timeouts, and one [`Session::finish`] that makes the connection's counter
//! updates and its access-log record. A data plane engine owns the sockets,
//! buffers and pipes, tells the session what happened (`on_*` calls) and does
//! what the session asks through the [`Io`] trait.
//!
//! WHY a driver trait rather than a returned list of actions: the relay makes
//! inline `splice(2)` and `send(2)` calls whose results decide the next step
//! at once; a trait call returns that result where the decision is made, costs
//! nothing per chunk (monomorphised, no queue), and is as easy to script in a
//! test. The io_uring worker implements [`Io`] over its ring; an epoll engine
//! implements it over readiness; the unit tests implement it with a script.

mod inspect;
mod relay;
#[cfg(test)]
mod tests;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::accesslog::Record;
use crate::balance::{self, Backend, Choice, PickContext};
use crate::clock;
use crate::counters::{bump, unbump, WorkerStats};
use crate::limits::Ticket;
use crate::outcome::{Reject, Termination};
use crate::plane::Shared;
use crate::snapshot::{Listener, Snapshot};

#[cfg(test)]
use relay::SHORT_BURSTS_TO_COPY;
pub use relay::{Direction, Mode};

/// A relay direction: `C2B` moves client bytes to the backend, `B2C` back.
pub type Dir = usize;
pub const C2B: Dir = 0;
pub const B2C: Dir = 1;

/// Most backends one client may try: the first plus `retries` (validated ≤ 16).
pub const MAX_ATTEMPTS: usize = 17;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Refused by a limit with `action: tarpit`: held, unread, until `tarpit_until`.
    Tarpit,
    /// Reading a PROXY header and/or a TLS ClientHello before choosing a pool.
    Inspecting,
    Connecting,
    Relaying,
    /// Waiting for in-flight operations to finish before the engine frees it.
    Closing,
}

/// What a data plane engine does for a session. Every call concerns the one
/// connection the engine handed to the session's `on_*` method.
pub trait Io {
    /// Arms a receive on the source of `dir` into a buffer the engine owns;
    /// `poll_first`: nothing is expected yet (the last read was short).
    fn recv(&mut self, dir: Dir, poll_first: bool);
    /// Sends `len` bytes at `offset` of the buffer `dir` last received into.
    fn send(&mut self, dir: Dir, offset: u32, len: u32);
    /// The buffer `dir` last received into is no longer needed.
    fn release_buffer(&mut self, dir: Dir);
    /// Arms the receive of `dir` again once a buffer is free (none was).
    fn recv_when_buffers_free(&mut self, dir: Dir);
    /// Opens a socket to `backend` and starts connecting, bounded by the
    /// listener's `connect_timeout`; an error means no socket could be made.
    fn connect(&mut self, backend: &Backend, listener: &Listener) -> io::Result<()>;
    /// Closes the backend socket of a failed connect attempt.
    fn drop_backend(&mut self);
    /// Writes to the backend at once, without waiting (the preface).
    fn write_backend_now(&mut self, data: &[u8]) -> io::Result<usize>;
    /// The local address the client connected to.
    fn local_addr(&self) -> Option<SocketAddr>;
    /// Waits until the source of `dir` is readable (`on_readable`).
    fn wait_readable(&mut self, dir: Dir);
    /// Waits until the destination of `dir` is writable (`on_writable`).
    fn wait_writable(&mut self, dir: Dir);
    /// Gives `dir` a pipe from the engine's pool; `false` when none is free.
    fn take_pipe(&mut self, dir: Dir) -> bool;
    /// Gives `dir`'s empty pipe back to the pool.
    fn give_pipe(&mut self, dir: Dir);
    /// `splice(2)` from the source of `dir` into its pipe, up to its capacity.
    fn splice_in(&mut self, dir: Dir) -> io::Result<usize>;
    /// `splice(2)` from `dir`'s pipe to its destination, up to `len` bytes.
    fn splice_out(&mut self, dir: Dir, len: usize) -> io::Result<usize>;
    /// `SHUT_WR` on the destination of `dir` (its FIN is passed on).
    fn shut_write(&mut self, dir: Dir);
    /// Calls `on_throttle_elapsed(dir)` after `ns` nanoseconds.
    fn throttle(&mut self, dir: Dir, ns: u64);
    /// Calls `on_pump(dir)` after other connections had their turn.
    fn pump_later(&mut self, dir: Dir);
    /// Cancels whatever is in flight; the engine calls [`Session::finish`]
    /// once the last completion is in.
    fn cancel_all(&mut self);
}

/// The size of the engine's receive buffers, which decides what a "full"
/// read (the bulk signal) is.
pub const RECV_BUFFER: u32 = 32 * 1024;

/// xorshift64: a worker's private source of randomness for selection.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The worker-wide state a session reads and updates: shared state and
/// counters, the worker's clock reading, randomness and tarpit accounting.
pub struct Ctx<'a> {
    pub shared: &'a Shared,
    pub worker: usize,
    pub now: Instant,
    pub rng: &'a mut Rng,
    /// Connections this worker holds in the tarpit, and the most it may.
    pub tarpitted: &'a mut usize,
    pub tarpit_cap: usize,
    /// When this worker last warned about running out of fds or memory.
    pub last_fd_warning: &'a mut Option<Instant>,
}

impl Ctx<'_> {
    pub fn stats(&self) -> &WorkerStats {
        self.shared.stats.worker(self.worker)
    }

    /// See [`warn_resources`].
    pub fn warn_resources(&mut self, msg: &str, error: &io::Error) {
        warn_resources(self.last_fd_warning, self.now, self.worker, msg, error);
    }
}

/// Logs running out of fds or memory at most once a second per worker (the
/// condition repeats for every connection while it lasts); `last` is when
/// this worker last did.
pub fn warn_resources(
    last: &mut Option<Instant>,
    now: Instant,
    worker: usize,
    msg: &str,
    error: &io::Error,
) {
    if last.is_none_or(|t| now - t >= Duration::from_secs(1)) {
        *last = Some(now);
        crate::log::warn(msg, &[("worker", &worker), ("error", error)]);
    }
}

pub struct Session {
    pub phase: Phase,
    /// The client's address (from the socket; later from a PROXY header).
    pub client_addr: Option<SocketAddr>,
    /// The routing view this connection started with.
    pub snapshot: Arc<Snapshot>,
    pub listener: usize,
    /// The pool chosen for it: the listener's, or an SNI route's.
    pub pool: usize,
    /// What was read while inspecting (bounded by the parsers' limits).
    pub peek: Vec<u8>,
    /// Bytes to send to the backend before relaying: a PROXY header, then
    /// whatever the client sent while it was inspected.
    preface: Vec<u8>,
    preface_sent: usize,
    /// How many bytes at the end of `preface` came from the client.
    preface_client: usize,
    /// An accepted PROXY header has been read (or none is expected).
    pub proxy_done: bool,
    /// The destination an accepted PROXY header named.
    original_dst: Option<SocketAddr>,
    /// SNI and ALPN the client offered (TLS passthrough listeners).
    pub sni: Option<String>,
    pub alpn: Vec<String>,
    /// Index in the pool of the backend being connected to or relayed to.
    pub backend_index: Option<usize>,
    tried: [u32; MAX_ATTEMPTS],
    pub attempts: usize,
    /// Some attempt went to a backend picked ignoring health (fail-open);
    /// counted once per connection, however many attempts it takes.
    failed_open: bool,
    pub dirs: [Direction; 2],
    pub last_active: Instant,
    pub accepted_at: Instant,
    /// When the current connect attempt started.
    connect_started: Instant,
    /// How long the successful connect took.
    pub connect_us: Option<u64>,
    /// Why it ended: the first cause recorded wins.
    pub termination: Option<Termination>,
    /// Counted against its client's per-IP limits until it closes.
    pub ticket: Option<Ticket>,
    /// When a tarpitted connection is closed.
    pub tarpit_until: Option<Instant>,
}

impl Session {
    /// A connection accepted on `snapshot.listeners[listener]` from `client`.
    /// The engine has counted it against the listener's `max_connections`
    /// and the fd budget; [`Session::finish`] gives both back.
    pub fn new(
        snapshot: Arc<Snapshot>,
        listener: usize,
        client: Option<SocketAddr>,
        now: Instant,
    ) -> Session {
        let pool = snapshot.listeners[listener].l4_pool();
        Session {
            phase: Phase::Connecting,
            client_addr: client,
            snapshot,
            listener,
            pool,
            peek: Vec::new(),
            preface: Vec::new(),
            preface_sent: 0,
            preface_client: 0,
            proxy_done: false,
            original_dst: None,
            sni: None,
            alpn: Vec::new(),
            backend_index: None,
            tried: [0; MAX_ATTEMPTS],
            attempts: 0,
            failed_open: false,
            dirs: [Direction::new(), Direction::new()],
            last_active: now,
            accepted_at: now,
            connect_started: now,
            connect_us: None,
            termination: None,
            ticket: None,
            tarpit_until: None,
        }
    }

    /// Records why the connection ends, unless a cause is already known.
    pub fn ends_because(&mut self, why: Termination) {
        self.termination.get_or_insert(why);
    }

    pub fn has_tried(&self, index: usize) -> bool {
        self.tried[..self.attempts].contains(&(index as u32))
    }

    pub fn both_done(&self) -> bool {
        self.dirs[C2B].done && self.dirs[B2C].done
    }

    fn listener(&self) -> &Listener {
        &self.snapshot.listeners[self.listener]
    }

    /// Closes the connection at once (error, timeout, refusal): cancels what
    /// is in flight; the engine frees it when the last completion is in.
    pub fn abort(&mut self, io: &mut impl Io) {
        if self.phase == Phase::Closing {
            return;
        }
        self.phase = Phase::Closing;
        io.cancel_all();
    }

    /// Turns a client away before any backend is involved, counting why.
    pub fn reject(&mut self, reason: Reject, ctx: &mut Ctx, io: &mut impl Io) {
        bump(
            &self.listener().stats.worker(ctx.worker).rejected[reason.index()],
            1,
        );
        self.ends_because(Termination::Rejected);
        self.abort(io);
    }

    // ---- connect -----------------------------------------------------------

    /// Picks a backend not tried yet and starts connecting to it; closes the
    /// client when none is left.
    pub fn connect_next(&mut self, ctx: &mut Ctx, io: &mut impl Io) {
        let snapshot = &*self.snapshot;
        let listener = &snapshot.listeners[self.listener];
        let pool = &snapshot.pools[self.pool];
        let first = self.attempts == 0;
        let pick = PickContext {
            client: self.client_addr.map(|a| a.ip()),
            worker: ctx.worker,
            now_ms: clock::now_ms(),
            random: ctx.rng.next_u64(),
        };
        let choice = if self.attempts > listener.retries as usize {
            Choice::NoneLeft
        } else {
            balance::choose(
                &pool.backends,
                &pool.primary,
                &pool.backup,
                &pool.policy,
                &pick,
                &|i| self.has_tried(i),
            )
        };
        let ls = listener.stats.worker(ctx.worker);
        let index = match choice {
            Choice::Backend(i) => i,
            Choice::FailOpen(i) => {
                // A connection, not an attempt: retries fail open again.
                if !std::mem::replace(&mut self.failed_open, true) {
                    bump(&ls.fail_open, 1);
                }
                i
            }
            Choice::AllFull | Choice::NoneLeft => {
                let (reject, why) = if matches!(choice, Choice::AllFull) {
                    (Reject::BackendsFull, Termination::BackendsFull)
                } else {
                    (Reject::NoBackend, Termination::NoBackend)
                };
                let why = if first {
                    bump(&ls.rejected[reject.index()], 1);
                    why
                } else {
                    Termination::ConnectFailed
                };
                self.ends_because(why);
                self.abort(io);
                return;
            }
        };
        let backend = &pool.backends[index];
        if let Err(e) = io.connect(backend, listener) {
            // Our own shortage, not the backend's fault: count it on the listener.
            bump(&ls.rejected[Reject::Resources.index()], 1);
            self.ends_because(Termination::Resources);
            ctx.warn_resources(
                "cannot create a backend socket: out of file descriptors or memory (raise `ulimit -n` / LimitNOFILE)",
                &e,
            );
            self.abort(io);
            return;
        }
        backend.stats.active.fetch_add(1, Ordering::Relaxed);
        let stats = backend.stats.worker(ctx.worker);
        bump(&stats.connections, 1);
        let route = &stats.by_listener[listener.metrics_slot];
        bump(&route.connections, 1);
        bump(&route.active, 1);
        self.tried[self.attempts] = index as u32;
        self.attempts += 1;
        self.backend_index = Some(index);
        self.connect_started = ctx.now;
    }

    /// The connect attempt ended: `Ok` connected, `Err(errno)` failed.
    pub fn on_connected(&mut self, result: Result<(), i32>, ctx: &mut Ctx, io: &mut impl Io) {
        let now = ctx.now;
        if result.is_ok() {
            if let Some(i) = self.backend_index {
                let failures = &self.snapshot.pools[self.pool].backends[i]
                    .stats
                    .consecutive_failures;
                // Read first: the common case writes nothing to the shared line.
                if failures.load(Ordering::Relaxed) != 0 {
                    failures.store(0, Ordering::Relaxed);
                }
            }
            self.phase = Phase::Relaying;
            self.last_active = now;
            let connect_us = now
                .saturating_duration_since(self.connect_started)
                .as_micros() as u64;
            self.connect_us = Some(connect_us);
            ctx.stats().connect_duration.observe(connect_us);
            self.begin_relay(ctx, io);
            return;
        }
        let errno = result.err().unwrap_or(0);
        // Failed: count it against the backend, release it, try the next one.
        let snapshot = &*self.snapshot;
        let pool = &snapshot.pools[self.pool];
        if let Some(i) = self.backend_index.take() {
            let b = &pool.backends[i];
            b.stats.active.fetch_sub(1, Ordering::Relaxed);
            let w = b.stats.worker(ctx.worker);
            let route = snapshot.listeners[self.listener].metrics_slot;
            unbump(&w.by_listener[route].active, 1);
            match errno {
                libc::ECONNREFUSED => bump(&w.connect_errors_refused, 1),
                libc::ECANCELED | libc::ETIMEDOUT => bump(&w.connect_errors_timeout, 1),
                _ => bump(&w.connect_errors_other, 1),
            }
            let failures = b.stats.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
            if pool.eject_after > 0 && failures >= pool.eject_after {
                pool.eject(i, clock::now_ms());
            }
        }
        io.drop_backend();
        self.connect_next(ctx, io);
    }

    // ---- time --------------------------------------------------------------

    /// When this session next needs [`Session::on_tick`] for an inspection or
    /// tarpit deadline (idle timeouts are checked on every tick).
    pub fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Tarpit => self.tarpit_until,
            Phase::Inspecting => {
                let settings = &self.listener().settings;
                let limit = if self.proxy_done {
                    settings.tls_inspect_timeout
                } else {
                    settings.proxy_header_timeout
                };
                Some(self.accepted_at + limit)
            }
            _ => None,
        }
    }

    /// Closes the connection if it has outstayed its time: idle while
    /// relaying, inspection too slow, or its tarpit delay over.
    pub fn on_tick(&mut self, ctx: &mut Ctx, io: &mut impl Io) {
        let now = ctx.now;
        match self.phase {
            Phase::Relaying
                if now.duration_since(self.last_active) >= self.listener().idle_timeout =>
            {
                bump(&ctx.stats().idle_timeouts, 1);
                self.ends_because(Termination::IdleTimeout);
                self.abort(io);
            }
            Phase::Tarpit | Phase::Inspecting if self.deadline().is_some_and(|d| now >= d) => {
                if self.phase == Phase::Tarpit {
                    self.abort(io);
                } else {
                    self.inspect_timeout(ctx, io);
                }
            }
            _ => {}
        }
    }

    /// The shutdown deadline passed: closes the connection, counted.
    pub fn shut_down(&mut self, ctx: &mut Ctx, io: &mut impl Io) {
        if self.phase == Phase::Closing {
            return;
        }
        bump(&ctx.stats().shutdown_closed, 1);
        self.ends_because(Termination::Shutdown);
        self.abort(io);
    }

    // ---- the end -----------------------------------------------------------

    /// The engine has freed the connection (nothing in flight, sockets
    /// closed): gives back what it held, counts how it ended, and returns
    /// its access-log record when the access log is on.
    pub fn finish(mut self, ctx: &mut Ctx) -> Option<Record> {
        if self.tarpit_until.is_some() {
            *ctx.tarpitted -= 1;
        }
        let stats = ctx.stats();
        stats
            .active
            .store(stats.active.load(Ordering::Relaxed) - 1, Ordering::Relaxed);
        let listener = &self.snapshot.listeners[self.listener];
        listener.stats.active.fetch_sub(1, Ordering::Relaxed);
        ctx.shared.open_conns.fetch_sub(1, Ordering::Relaxed);
        if let Some(i) = self.backend_index {
            let b = &self.snapshot.pools[self.pool].backends[i];
            b.stats.active.fetch_sub(1, Ordering::Relaxed);
            unbump(
                &b.stats.worker(ctx.worker).by_listener[listener.metrics_slot].active,
                1,
            );
        }
        if let Some(ticket) = self.ticket.take() {
            ctx.shared.limiter.release(ticket);
        }
        let termination = self.termination.unwrap_or(Termination::ClientClosed);
        let duration_us = ctx
            .now
            .saturating_duration_since(self.accepted_at)
            .as_micros() as u64;
        stats.connection_duration.observe(duration_us);
        bump(&stats.terminations[termination.index()], 1);
        if !ctx.shared.access_log_on.load(Ordering::Relaxed) {
            return None;
        }
        Some(Record {
            end_unix_ms: unix_ms(),
            listener: self.listener,
            pool: self.pool,
            backend: self.backend_index,
            client: self.client_addr,
            bytes_client_to_backend: self.dirs[C2B].bytes,
            bytes_backend_to_client: self.dirs[B2C].bytes,
            duration_us,
            connect_us: self.connect_us,
            termination,
            snapshot: self.snapshot,
            http: None,
        })
    }
}

pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
