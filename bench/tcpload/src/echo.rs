//! `tcpload echo`: closed-loop round-trip latency over persistent
//! connections.
//!
//! Measures what the load balancer adds to each request/response on an
//! already-established connection: `conns` connections each send `size`
//! bytes, wait for all of them to come back, and go again at once. All
//! connections are established before the clock starts, so connect cost
//! does not leak into the round-trip figures.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::exchange::{self, Exchange, Step};
use crate::sources::RoundRobin;
use crate::stats::{emit, Errors, JsonObject, Latency, Totals};
use crate::sys::{self, ConnectOpts, Epoll, ErrorKind, Fd};
use crate::threads;

pub struct EchoArgs {
    pub target: SocketAddr,
    pub conns: usize,
    pub size: usize,
    pub duration: Duration,
    pub sources: Vec<Ipv4Addr>,
    pub timeout: Duration,
    pub threads: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Connecting,
    /// Established; in a round trip once the measurement runs.
    Running,
    /// Failed; its socket is closed and it is not replaced.
    Dead,
}

struct Conn {
    fd: Option<Fd>,
    state: State,
    /// When the current connect or round trip began.
    start: Instant,
    ex: Exchange,
}

struct LoopResult {
    established: u64,
    round_trips: u64,
    errors: Errors,
    lat: Latency,
    elapsed: Duration,
}

pub fn run(args: EchoArgs) -> Result<()> {
    let limit = sys::raise_nofile_limit()?;
    sys::check_fd_budget(args.conns as u64, limit, "echo --conns")?;
    sys::install_stop_handlers()?;
    let threads = args.threads.clamp(1, args.conns.max(1));
    eprintln!(
        "tcpload echo: {} conns to {}, {} bytes, {:.1}s, {} thread(s)",
        args.conns,
        args.target,
        args.size,
        args.duration.as_secs_f64(),
        threads
    );
    let args = Arc::new(args);
    let mut established = 0;
    let mut round_trips = 0;
    let mut totals = Totals::new()?;
    for r in threads::run_split("echo", &args, threads, args.conns, echo_loop)? {
        established += r.established;
        round_trips += r.round_trips;
        totals.add(&r.errors, &r.lat, r.elapsed)?;
    }
    let Totals { errors, lat, secs } = totals;
    eprintln!(
        "tcpload echo: {established} connections, {round_trips} round trips in {secs:.2}s, {} errors",
        errors.total()
    );
    emit(
        &JsonObject::new()
            .str("mode", "echo")
            .int("conns", established)
            .int("round_trips", round_trips)
            .float("secs", secs)
            .float(
                "rate",
                if secs > 0.0 {
                    round_trips as f64 / secs
                } else {
                    0.0
                },
            )
            .int("bytes", round_trips * args.size as u64)
            .raw("errors", &errors.json())
            .raw("lat_us", &lat.json())
            .int("size", args.size as u64)
            .int("threads", threads as u64)
            .finish(),
    )
}

fn echo_loop(args: &EchoArgs, n: usize, thread: usize, barrier: &Barrier) -> Result<LoopResult> {
    // Whatever happens while connecting, meet the other threads at the
    // barrier so none of them waits forever.
    let setup = connect_all(args, n, thread);
    barrier.wait();
    let (ep, mut conns, mut res) = setup?;

    let payload = exchange::payload(args.size);
    let mut scratch = vec![0u8; 64 * 1024];
    let mut events = sys::event_buffer(1024);
    let begin = Instant::now();
    let deadline = begin + args.duration;
    for c in conns.iter_mut() {
        if c.state == State::Running {
            c.ex = Exchange::default();
            c.start = Instant::now();
            advance(c, &payload, &mut scratch, &mut res);
        }
    }
    let mut last_scan = begin;
    loop {
        let now = Instant::now();
        if now >= deadline || sys::stop_requested() {
            break;
        }
        let wait = (deadline - now).min(Duration::from_millis(10));
        let k = ep.wait(&mut events, wait)?;
        for ev in &events[..k] {
            let (_, tok) = sys::event_parts(ev);
            let c = &mut conns[tok as usize];
            if c.state == State::Running {
                advance(c, &payload, &mut scratch, &mut res);
            }
        }
        let now = Instant::now();
        if now - last_scan >= Duration::from_millis(5) {
            last_scan = now;
            for c in conns.iter_mut() {
                if c.state == State::Running && now - c.start >= args.timeout {
                    kill(c, ErrorKind::Timeout, &mut res);
                }
            }
        }
    }
    res.elapsed = begin.elapsed().min(args.duration);
    Ok(res)
}

/// Runs round trips on `c` until one would block; each finished one is
/// recorded and the next starts at once (closed loop).
fn advance(c: &mut Conn, payload: &[u8], scratch: &mut [u8], res: &mut LoopResult) {
    loop {
        let Some(fd) = c.fd.as_ref() else { return };
        match c.ex.pump(fd, payload, scratch) {
            Ok(Step::Pending) => return,
            Ok(Step::Done) => {
                let now = Instant::now();
                res.lat.record(now - c.start);
                res.round_trips += 1;
                c.start = now;
                c.ex = Exchange::default();
            }
            Err(kind) => {
                kill(c, kind, res);
                return;
            }
        }
    }
}

fn kill(c: &mut Conn, kind: ErrorKind, res: &mut LoopResult) {
    res.errors.count(kind);
    c.fd = None;
    c.state = State::Dead;
}

/// Opens this loop's `n` connections and waits (up to `--timeout`) until
/// each is established or has failed.
fn connect_all(args: &EchoArgs, n: usize, thread: usize) -> Result<(Epoll, Vec<Conn>, LoopResult)> {
    let ep = Epoll::new()?;
    let mut res = LoopResult {
        established: 0,
        round_trips: 0,
        errors: Errors::default(),
        lat: Latency::new()?,
        elapsed: Duration::ZERO,
    };
    let mut rr = RoundRobin::new(args.sources.clone(), thread);
    let begin = Instant::now();
    let mut conns = Vec::with_capacity(n);
    let mut pending = 0usize;
    for i in 0..n {
        let opts = ConnectOpts {
            source: rr.next_addr(),
            linger0: false,
            nodelay: true,
        };
        let mut c = Conn {
            fd: None,
            state: State::Dead,
            start: Instant::now(),
            ex: Exchange::default(),
        };
        match sys::start_connect(&args.target, &opts) {
            Ok((fd, done)) => {
                let interest = sys::IN | sys::OUT | sys::RDHUP | sys::ET;
                if let Err(e) = ep.add(fd.raw(), interest, i as u64) {
                    res.errors.count(ErrorKind::Connect);
                    eprintln!("tcpload echo: epoll add: {e}");
                } else if done {
                    c.fd = Some(fd);
                    c.state = State::Running;
                    res.established += 1;
                } else {
                    c.fd = Some(fd);
                    c.state = State::Connecting;
                    pending += 1;
                }
            }
            Err(e) => res.errors.count(sys::classify(&e, false)),
        }
        conns.push(c);
    }
    let mut events = sys::event_buffer(1024);
    while pending > 0 && !sys::stop_requested() {
        let elapsed = begin.elapsed();
        if elapsed >= args.timeout {
            for c in conns.iter_mut().filter(|c| c.state == State::Connecting) {
                kill(c, ErrorKind::Timeout, &mut res);
            }
            break;
        }
        let wait = (args.timeout - elapsed).min(Duration::from_millis(100));
        let k = ep.wait(&mut events, wait)?;
        for ev in &events[..k] {
            let (flags, tok) = sys::event_parts(ev);
            let c = &mut conns[tok as usize];
            if c.state != State::Connecting || flags & (sys::OUT | sys::ERR | sys::HUP) == 0 {
                continue;
            }
            pending -= 1;
            let Some(fd) = c.fd.as_ref() else { continue };
            match exchange::connect_result(fd) {
                Ok(()) => {
                    c.state = State::Running;
                    res.established += 1;
                }
                Err(kind) => kill(c, kind, &mut res),
            }
        }
    }
    Ok((ep, conns, res))
}
