//! `tcpload hold`: open many connections, prove each works, keep them idle.
//!
//! The benchmark measures the load balancer's memory per idle connection
//! and tries 100,000 concurrent connections. One process may only have
//! about as many sockets as RLIMIT_NOFILE allows, so callers run several
//! `hold` processes; each one connects in bounded batches (so listen
//! backlogs are not overrun), pings every connection once through the echo
//! path, reports `ready` on stdout, then sits idle until told to stop, and
//! finally checks that a random sample still answers.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::exchange::{self, Exchange, Step};
use crate::sources::RoundRobin;
use crate::stats::{emit, Errors, JsonObject};
use crate::sys::{self, ConnectOpts, Epoll, ErrorKind, Fd};

pub struct HoldArgs {
    pub target: SocketAddr,
    pub conns: usize,
    pub sources: Vec<Ipv4Addr>,
    pub ping: usize,
    pub hold: Option<Duration>,
    pub connect_rate: Option<f64>,
    pub in_flight: usize,
    pub timeout: Duration,
    pub check: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    NotStarted,
    Connecting,
    /// Established; first ping on its way.
    Pinging,
    Held,
    /// Held, and part of the final liveness sample.
    Checking,
    Failed,
    /// Was held, then the peer closed or reset it.
    Dropped,
}

struct Conn {
    fd: Option<Fd>,
    state: State,
    start: Instant,
    ex: Exchange,
}

const STDIN_TOKEN: u64 = u64::MAX;

struct Holder {
    target: SocketAddr,
    ep: Epoll,
    conns: Vec<Conn>,
    errors: Errors,
    held: usize,
    dropped: usize,
    ping: Vec<u8>,
    scratch: Vec<u8>,
    events: Vec<sys::Event>,
    stdin_eof: bool,
    check_ok: usize,
    check_left: usize,
}

pub fn run(args: HoldArgs) -> Result<()> {
    let limit = sys::raise_nofile_limit()?;
    sys::check_fd_budget(args.conns as u64, limit, "hold --conns")?;
    sys::install_stop_handlers()?;
    eprintln!(
        "tcpload hold: {} conns to {} over {} source(s), fd limit {limit}",
        args.conns,
        args.target,
        args.sources.len().max(1)
    );
    let now = Instant::now();
    let mut h = Holder {
        target: args.target,
        ep: Epoll::new()?,
        conns: (0..args.conns)
            .map(|_| Conn {
                fd: None,
                state: State::NotStarted,
                start: now,
                ex: Exchange::default(),
            })
            .collect(),
        errors: Errors::default(),
        held: 0,
        dropped: 0,
        ping: exchange::payload(args.ping),
        scratch: vec![0u8; 64 * 1024],
        events: sys::event_buffer(1024),
        stdin_eof: false,
        check_ok: 0,
        check_left: 0,
    };
    let watching_stdin = match h.ep.add(0, sys::IN, STDIN_TOKEN) {
        Ok(()) => true,
        Err(e) => {
            eprintln!(
                "tcpload hold: stdin cannot be watched ({e}); holding until SIGTERM/SIGINT{}",
                if args.hold.is_some() {
                    " or --hold expiry"
                } else {
                    ""
                }
            );
            false
        }
    };

    let secs = h.connect_phase(&args)?;
    let failed = h.errors.total();
    eprintln!(
        "tcpload hold: {} held, {failed} failed ({}) in {secs:.2}s",
        h.held,
        h.errors.json()
    );
    emit(
        &JsonObject::new()
            .str("event", "ready")
            .int("held", h.held as u64)
            .int("failed", failed)
            .float("secs", secs)
            .raw("errors", &h.errors.json())
            .finish(),
    )?;

    let held_since = Instant::now();
    let hold_until = args.hold.map(|d| held_since + d);
    let released = |h: &Holder| sys::stop_requested() || (watching_stdin && h.stdin_eof);
    while !released(&h) {
        let mut wait = Duration::from_millis(100);
        if let Some(t) = hold_until {
            let now = Instant::now();
            if now >= t {
                break;
            }
            wait = wait.min(t - now);
        }
        h.poll(wait)?;
    }
    let held_secs = held_since.elapsed().as_secs_f64();
    let held_now = h.held;
    eprintln!(
        "tcpload hold: releasing after {held_secs:.1}s; {held_now} still held, {} dropped",
        h.dropped
    );

    let checked = h.liveness_check(args.check, args.timeout)?;
    let alive_ok = h.check_ok;
    eprintln!("tcpload hold: liveness {alive_ok}/{checked}");
    let dropped = h.dropped;
    drop(h); // closes everything
    emit(
        &JsonObject::new()
            .str("event", "done")
            .int("held", held_now as u64)
            .int("dropped", dropped as u64)
            .int("alive_checked", checked as u64)
            .int("alive_ok", alive_ok as u64)
            .float("held_secs", held_secs)
            .finish(),
    )
}

impl Holder {
    /// Connects and pings everything, at most `in_flight` at a time and
    /// paced to `connect_rate` if given. Returns the seconds it took.
    fn connect_phase(&mut self, args: &HoldArgs) -> Result<f64> {
        let begin = Instant::now();
        let mut rr = RoundRobin::new(args.sources.clone(), 0);
        let mut next = 0usize;
        let mut in_flight: Vec<usize> = Vec::new();
        let mut last_log = begin;
        while (next < self.conns.len() || !in_flight.is_empty()) && !sys::stop_requested() {
            let mut allowed = self.conns.len() - next;
            if let Some(r) = args.connect_rate {
                let due = (begin.elapsed().as_secs_f64() * r) as usize + 1;
                allowed = allowed.min(due.saturating_sub(next));
            }
            allowed = allowed.min(args.in_flight.saturating_sub(in_flight.len()));
            for _ in 0..allowed {
                let i = next;
                next += 1;
                if self.start(i, rr.next_addr()) {
                    in_flight.push(i);
                }
            }
            self.poll(Duration::from_millis(if args.connect_rate.is_some() {
                1
            } else {
                10
            }))?;
            let now = Instant::now();
            for &i in &in_flight {
                let c = &mut self.conns[i];
                if matches!(c.state, State::Connecting | State::Pinging)
                    && now - c.start >= args.timeout
                {
                    self.errors.count(ErrorKind::Timeout);
                    c.fd = None;
                    c.state = State::Failed;
                }
            }
            let conns = &self.conns;
            in_flight.retain(|&i| matches!(conns[i].state, State::Connecting | State::Pinging));
            if now - last_log >= Duration::from_secs(2) {
                last_log = now;
                eprintln!(
                    "tcpload hold: {} held, {} failed, {} in flight",
                    self.held,
                    self.errors.total(),
                    in_flight.len()
                );
            }
        }
        Ok(begin.elapsed().as_secs_f64())
    }

    /// Starts connection `i`; false when it failed at once (counted).
    fn start(&mut self, i: usize, source: Option<Ipv4Addr>) -> bool {
        let opts = ConnectOpts {
            source,
            linger0: false,
            nodelay: true,
        };
        let c = &mut self.conns[i];
        c.start = Instant::now();
        let (fd, done) = match sys::start_connect(&self.target, &opts) {
            Ok(x) => x,
            Err(e) => {
                self.errors.count(sys::classify(&e, false));
                c.state = State::Failed;
                return false;
            }
        };
        let interest = sys::IN | sys::OUT | sys::RDHUP | sys::ET;
        if let Err(e) = self.ep.add(fd.raw(), interest, i as u64) {
            eprintln!("tcpload hold: epoll add: {e}");
            self.errors.count(ErrorKind::Connect);
            c.state = State::Failed;
            return false;
        }
        c.fd = Some(fd);
        c.state = State::Connecting;
        if done {
            self.on_event(i, sys::OUT);
        }
        true
    }

    /// Waits up to `wait` for events and handles them.
    fn poll(&mut self, wait: Duration) -> Result<()> {
        let n = self.ep.wait(&mut self.events, wait)?;
        for k in 0..n {
            let (flags, tok) = sys::event_parts(&self.events[k]);
            if tok == STDIN_TOKEN {
                self.on_stdin();
            } else {
                self.on_event(tok as usize, flags);
            }
        }
        Ok(())
    }

    /// Stdin is only a stop signal: its data is discarded, EOF ends the hold.
    fn on_stdin(&mut self) {
        match sys::read_raw(0, &mut self.scratch) {
            Ok(Some(0)) | Err(_) => {
                self.stdin_eof = true;
                // Level-triggered and at EOF for good: stop watching it.
                let _ = self.ep.delete(0);
            }
            Ok(_) => {}
        }
    }

    fn on_event(&mut self, i: usize, flags: u32) {
        let c = &mut self.conns[i];
        let Some(fd) = c.fd.as_ref() else { return };
        match c.state {
            State::Connecting => {
                if flags & (sys::OUT | sys::ERR | sys::HUP) == 0 {
                    return;
                }
                if let Err(kind) = exchange::connect_result(fd) {
                    self.errors.count(kind);
                    c.fd = None;
                    c.state = State::Failed;
                    return;
                }
                c.state = State::Pinging;
                c.ex = Exchange::default();
                self.on_event(i, flags);
            }
            State::Pinging => match c.ex.pump(fd, &self.ping, &mut self.scratch) {
                Ok(Step::Done) => {
                    c.state = State::Held;
                    self.held += 1;
                }
                Ok(Step::Pending) => {}
                Err(kind) => {
                    self.errors.count(kind);
                    c.fd = None;
                    c.state = State::Failed;
                }
            },
            State::Checking => match c.ex.pump(fd, &self.ping, &mut self.scratch) {
                Ok(Step::Done) => {
                    c.state = State::Held;
                    self.check_ok += 1;
                    self.check_left -= 1;
                }
                Ok(Step::Pending) => {}
                Err(_) => {
                    self.check_left -= 1;
                    self.drop_held(i);
                }
            },
            State::Held => {
                if flags & (sys::IN | sys::RDHUP | sys::HUP | sys::ERR) == 0 {
                    return;
                }
                // Nothing is expected on an idle connection: drain and
                // discard anything that comes, and notice EOF or errors.
                loop {
                    match sys::recv(fd, &mut self.scratch) {
                        Ok(Some(0)) | Err(_) => {
                            self.drop_held(i);
                            return;
                        }
                        Ok(Some(_)) => {}
                        Ok(None) => return,
                    }
                }
            }
            State::NotStarted | State::Failed | State::Dropped => {}
        }
    }

    /// A held connection went away (or failed its liveness check).
    fn drop_held(&mut self, i: usize) {
        let c = &mut self.conns[i];
        c.fd = None;
        c.state = State::Dropped;
        self.held -= 1;
        self.dropped += 1;
    }

    /// Sends the ping again on up to `k` random held connections and waits
    /// (up to `timeout`) for the echoes. Returns how many were checked;
    /// `check_ok` says how many answered.
    fn liveness_check(&mut self, k: usize, timeout: Duration) -> Result<usize> {
        let mut held: Vec<usize> = (0..self.conns.len())
            .filter(|&i| self.conns[i].state == State::Held)
            .collect();
        let k = k.min(held.len());
        let mut rng = Rng::seeded();
        for j in 0..k {
            let pick = j + rng.below(held.len() - j);
            held.swap(j, pick);
        }
        self.check_left = k;
        let begin = Instant::now();
        for &i in &held[..k] {
            let c = &mut self.conns[i];
            c.state = State::Checking;
            c.ex = Exchange::default();
            c.start = begin;
            self.on_event(i, sys::OUT);
        }
        while self.check_left > 0 {
            let elapsed = begin.elapsed();
            if elapsed >= timeout {
                eprintln!(
                    "tcpload hold: {} liveness checks timed out",
                    self.check_left
                );
                break;
            }
            self.poll((timeout - elapsed).min(Duration::from_millis(100)))?;
        }
        Ok(k)
    }
}

/// xorshift64*: enough randomness to pick a liveness sample.
struct Rng(u64);

impl Rng {
    fn seeded() -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Rng(t ^ (u64::from(std::process::id()) << 32) | 1)
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n as u64) as usize
    }
}
