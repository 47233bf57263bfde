//! `tcpload rate`: new-connection rate and per-connection latency.
//!
//! tcpkali is not packaged on Debian, and the benchmark needs connects per
//! second through the load balancer with HdrHistogram percentiles. Each
//! event loop keeps `concurrency` slots busy: connect, optionally push a
//! payload through the echo path, close (optionally with RST), repeat, until
//! the duration ends.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::exchange::{self, Exchange, Step};
use crate::sources::RoundRobin;
use crate::stats::{emit, Errors, JsonObject, Latency, Totals};
use crate::sys::{self, ConnectOpts, Epoll, ErrorKind, Fd};
use crate::threads;

pub struct RateArgs {
    pub target: SocketAddr,
    pub duration: Duration,
    pub concurrency: usize,
    pub sources: Vec<Ipv4Addr>,
    pub payload: usize,
    pub linger0: bool,
    pub timeout: Duration,
    pub threads: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting to (re)start after an immediate failure.
    Idle,
    Connecting,
    /// Established; pushing the payload through the echo path.
    Exchanging,
}

struct Slot {
    fd: Option<Fd>,
    /// Bumped on every new socket so events for a closed one are ignored.
    gen: u32,
    state: State,
    start: Instant,
    ex: Exchange,
}

struct LoopResult {
    ok: u64,
    errors: Errors,
    lat: Latency,
    elapsed: Duration,
}

pub fn run(args: RateArgs) -> Result<()> {
    let limit = sys::raise_nofile_limit()?;
    sys::check_fd_budget(args.concurrency as u64, limit, "rate --concurrency")?;
    sys::install_stop_handlers()?;
    let threads = args.threads.clamp(1, args.concurrency.max(1));
    eprintln!(
        "tcpload rate: to {} for {:.1}s, concurrency {}, payload {}, {} source address(es), {} thread(s)",
        args.target,
        args.duration.as_secs_f64(),
        args.concurrency,
        args.payload,
        args.sources.len().max(1),
        threads
    );
    let args = Arc::new(args);
    let mut ok = 0;
    let mut totals = Totals::new()?;
    for r in threads::run_split(
        "rate",
        &args,
        threads,
        args.concurrency,
        |args, slots, t, barrier| {
            barrier.wait();
            rate_loop(args, slots, t)
        },
    )? {
        ok += r.ok;
        totals.add(&r.errors, &r.lat, r.elapsed)?;
    }
    let Totals { errors, lat, secs } = totals;
    eprintln!(
        "tcpload rate: {ok} connections in {secs:.2}s, {} errors",
        errors.total()
    );
    emit(
        &JsonObject::new()
            .str("mode", "rate")
            .int("connections", ok)
            .raw("errors", &errors.json())
            .float("secs", secs)
            .float("rate", if secs > 0.0 { ok as f64 / secs } else { 0.0 })
            .raw("lat_us", &lat.json())
            .int("concurrency", args.concurrency as u64)
            .int("payload", args.payload as u64)
            .int("threads", threads as u64)
            .finish(),
    )
}

fn token(idx: usize, gen: u32) -> u64 {
    ((gen as u64) << 32) | idx as u64
}

fn rate_loop(args: &RateArgs, nslots: usize, thread: usize) -> Result<LoopResult> {
    let ep = Epoll::new()?;
    let mut rr = RoundRobin::new(args.sources.clone(), thread);
    let payload = exchange::payload(args.payload);
    let mut scratch = vec![0u8; 64 * 1024];
    let mut events = sys::event_buffer(1024);
    let mut res = LoopResult {
        ok: 0,
        errors: Errors::default(),
        lat: Latency::new()?,
        elapsed: Duration::ZERO,
    };
    let begin = Instant::now();
    let deadline = begin + args.duration;
    let mut slots: Vec<Slot> = (0..nslots)
        .map(|_| Slot {
            fd: None,
            gen: 0,
            state: State::Idle,
            start: begin,
            ex: Exchange::default(),
        })
        .collect();
    let mut cx = Ctx {
        ep: &ep,
        args,
        rr: &mut rr,
        payload: &payload,
        scratch: &mut scratch,
        res: &mut res,
    };
    for (i, slot) in slots.iter_mut().enumerate() {
        cx.start(slot, i);
    }
    let mut last_scan = begin;
    loop {
        let now = Instant::now();
        if now >= deadline || sys::stop_requested() {
            break;
        }
        let wait = (deadline - now).min(Duration::from_millis(10));
        let n = ep.wait(&mut events, wait)?;
        for ev in &events[..n] {
            let (flags, tok) = sys::event_parts(ev);
            let idx = (tok & 0xffff_ffff) as usize;
            let slot = &mut slots[idx];
            if slot.gen != (tok >> 32) as u32 || slot.fd.is_none() {
                continue; // event for a socket already closed
            }
            cx.on_event(slot, idx, flags);
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        // Restart slots that failed before reaching epoll, and expire
        // stuck ones; at most every few ms so this O(slots) scan stays cheap.
        if n == 0 || now - last_scan >= Duration::from_millis(5) {
            last_scan = now;
            for (i, slot) in slots.iter_mut().enumerate() {
                match slot.state {
                    State::Idle => cx.start(slot, i),
                    _ if now - slot.start >= args.timeout => {
                        cx.fail(slot, i, ErrorKind::Timeout);
                    }
                    _ => {}
                }
            }
        }
    }
    res.elapsed = begin.elapsed().min(args.duration);
    drop(slots); // abandon in-flight connections
    Ok(res)
}

/// Everything a slot transition needs, bundled to keep signatures short.
struct Ctx<'a> {
    ep: &'a Epoll,
    args: &'a RateArgs,
    rr: &'a mut RoundRobin,
    payload: &'a [u8],
    scratch: &'a mut [u8],
    res: &'a mut LoopResult,
}

impl Ctx<'_> {
    /// Opens a new connection in `slot`. Immediate failures are counted and
    /// leave the slot idle, to be retried on the next scan (not at once, so
    /// a persistent failure cannot spin).
    fn start(&mut self, slot: &mut Slot, idx: usize) {
        slot.fd = None;
        slot.gen = slot.gen.wrapping_add(1);
        slot.ex = Exchange::default();
        slot.state = State::Idle;
        let opts = ConnectOpts {
            source: self.rr.next_addr(),
            linger0: self.args.linger0,
            nodelay: self.args.payload > 0,
        };
        slot.start = Instant::now();
        let (fd, done) = match sys::start_connect(&self.args.target, &opts) {
            Ok(x) => x,
            Err(e) => {
                self.res.errors.count(sys::classify(&e, false));
                return;
            }
        };
        let interest = sys::IN | sys::OUT | sys::RDHUP | sys::ET;
        if self
            .ep
            .add(fd.raw(), interest, token(idx, slot.gen))
            .is_err()
        {
            self.res.errors.count(ErrorKind::Connect);
            return;
        }
        slot.fd = Some(fd);
        slot.state = State::Connecting;
        if done {
            self.on_event(slot, idx, sys::OUT);
        }
    }

    fn on_event(&mut self, slot: &mut Slot, idx: usize, flags: u32) {
        let Some(fd) = slot.fd.as_ref() else { return };
        if slot.state == State::Connecting {
            if flags & (sys::OUT | sys::ERR | sys::HUP) == 0 {
                return;
            }
            if let Err(kind) = exchange::connect_result(fd) {
                self.fail(slot, idx, kind);
                return;
            }
            if self.payload.is_empty() {
                self.succeed(slot, idx);
                return;
            }
            slot.state = State::Exchanging;
        }
        if slot.state == State::Exchanging {
            match slot.ex.pump(fd, self.payload, self.scratch) {
                Ok(Step::Done) => self.succeed(slot, idx),
                Ok(Step::Pending) => {}
                Err(kind) => self.fail(slot, idx, kind),
            }
        }
    }

    fn succeed(&mut self, slot: &mut Slot, idx: usize) {
        self.res.lat.record(slot.start.elapsed());
        self.res.ok += 1;
        self.start(slot, idx);
    }

    /// Counts the failure, closes the socket and starts over. Failures
    /// reach here through epoll or the timeout scan, never synchronously
    /// from `start`, so this cannot spin.
    fn fail(&mut self, slot: &mut Slot, idx: usize, kind: ErrorKind) {
        self.res.errors.count(kind);
        self.start(slot, idx);
    }
}
