//! The session driven by a scripted engine: every `Io` call is recorded, the
//! calls that return a result (splice, the preface write, pipes, connect)
//! answer from a script, and the tests play the completions an engine would
//! deliver.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::*;
use crate::config;
use crate::plane::Shared;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Recv(Dir, bool),
    Send(Dir, u32, u32),
    Release(Dir),
    RecvWhenFree(Dir),
    Connect(SocketAddr),
    DropBackend,
    WriteNow(Vec<u8>),
    WaitReadable(Dir),
    WaitWritable(Dir),
    TakePipe(Dir),
    GivePipe(Dir),
    SpliceIn(Dir),
    SpliceOut(Dir, usize),
    ShutWrite(Dir),
    Throttle(Dir),
    PumpLater(Dir),
    CancelAll,
}

/// Records what the session asks for; answers from per-kind scripts
/// (an empty script answers with the default given for each).
#[derive(Default)]
struct Script {
    calls: Vec<Call>,
    splice_in: VecDeque<io::Result<usize>>,
    splice_out: VecDeque<io::Result<usize>>,
    pipes_free: usize,
}

fn would_block() -> io::Error {
    io::Error::from(io::ErrorKind::WouldBlock)
}

impl Script {
    /// The calls since the last look.
    fn take(&mut self) -> Vec<Call> {
        std::mem::take(&mut self.calls)
    }
}

impl Io for Script {
    fn recv(&mut self, dir: Dir, poll_first: bool) {
        self.calls.push(Call::Recv(dir, poll_first));
    }
    fn send(&mut self, dir: Dir, offset: u32, len: u32) {
        self.calls.push(Call::Send(dir, offset, len));
    }
    fn release_buffer(&mut self, dir: Dir) {
        self.calls.push(Call::Release(dir));
    }
    fn recv_when_buffers_free(&mut self, dir: Dir) {
        self.calls.push(Call::RecvWhenFree(dir));
    }
    fn connect(&mut self, backend: &Backend, _listener: &Listener) -> io::Result<()> {
        self.calls.push(Call::Connect(backend.addr));
        Ok(())
    }
    fn drop_backend(&mut self) {
        self.calls.push(Call::DropBackend);
    }
    fn write_backend_now(&mut self, data: &[u8]) -> io::Result<usize> {
        self.calls.push(Call::WriteNow(data.to_vec()));
        Ok(data.len())
    }
    fn local_addr(&self) -> Option<SocketAddr> {
        Some("127.0.0.1:8443".parse().unwrap())
    }
    fn wait_readable(&mut self, dir: Dir) {
        self.calls.push(Call::WaitReadable(dir));
    }
    fn wait_writable(&mut self, dir: Dir) {
        self.calls.push(Call::WaitWritable(dir));
    }
    fn take_pipe(&mut self, dir: Dir) -> bool {
        self.calls.push(Call::TakePipe(dir));
        if self.pipes_free == 0 {
            return false;
        }
        self.pipes_free -= 1;
        true
    }
    fn give_pipe(&mut self, dir: Dir) {
        self.calls.push(Call::GivePipe(dir));
        self.pipes_free += 1;
    }
    fn splice_in(&mut self, dir: Dir) -> io::Result<usize> {
        self.calls.push(Call::SpliceIn(dir));
        self.splice_in
            .pop_front()
            .unwrap_or_else(|| Err(would_block()))
    }
    fn splice_out(&mut self, dir: Dir, len: usize) -> io::Result<usize> {
        self.calls.push(Call::SpliceOut(dir, len));
        self.splice_out.pop_front().unwrap_or(Ok(len))
    }
    fn shut_write(&mut self, dir: Dir) {
        self.calls.push(Call::ShutWrite(dir));
    }
    fn throttle(&mut self, dir: Dir, _ns: u64) {
        self.calls.push(Call::Throttle(dir));
    }
    fn pump_later(&mut self, dir: Dir) {
        self.calls.push(Call::PumpLater(dir));
    }
    fn cancel_all(&mut self) {
        self.calls.push(Call::CancelAll);
    }
}

/// One worker's surroundings for a session: the shared state built from a
/// config, and the worker-local parts of `Ctx`.
struct World {
    shared: Shared,
    rng: Rng,
    tarpitted: usize,
    warned: Option<Instant>,
    now: Instant,
}

impl World {
    fn new(yaml: &str) -> World {
        let config = config::parse_str(yaml).expect("test config is valid");
        let ids: Vec<u32> = (0..config.listeners.len() as u32).collect();
        let snapshot = Snapshot::build(&config, &ids, 1, None);
        let shared = Shared::new(snapshot, 1, 1024);
        shared.access_log_on.store(true, Ordering::Relaxed);
        World {
            shared,
            rng: Rng(0x5eed),
            tarpitted: 0,
            warned: None,
            now: Instant::now(),
        }
    }

    fn ctx(&mut self) -> Ctx<'_> {
        Ctx {
            shared: &self.shared,
            worker: 0,
            now: self.now,
            rng: &mut self.rng,
            tarpitted: &mut self.tarpitted,
            tarpit_cap: 16,
            last_fd_warning: &mut self.warned,
        }
    }

    /// A session accepted on listener 0, as an engine makes one (it counts
    /// the connection against the listener and the fd budget first).
    fn accept(&mut self) -> Session {
        let snapshot = self.shared.snapshot.load_full();
        snapshot.listeners[0]
            .stats
            .active
            .fetch_add(1, Ordering::Relaxed);
        self.shared.open_conns.fetch_add(1, Ordering::Relaxed);
        bump(&self.ctx().stats().active, 1);
        Session::new(
            snapshot,
            0,
            Some("10.1.2.3:40000".parse().unwrap()),
            self.now,
        )
    }

    fn backend(&self, i: usize) -> SocketAddr {
        self.shared.snapshot.load().pools[0].backends[i].addr
    }
}

fn plain(backends: &[&str]) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    format!(
        "listeners:\n  - {{ name: lb, listen: 127.0.0.1:0, pool: p, retries: 2 }}\npools:\n  - {{ name: p, algorithm: round_robin, backends: [{}] }}\n",
        list.join(", ")
    )
}

/// A session connected to backend 0 and relaying, its world and its script,
/// for the relay tests: each step plays one completion and returns what the
/// session asked for in answer.
struct Relay {
    world: World,
    io: Script,
    s: Session,
}

impl Relay {
    fn new(yaml: &str, pipes_free: usize) -> Relay {
        let mut world = World::new(yaml);
        let mut io = Script {
            pipes_free,
            ..Script::default()
        };
        let mut s = world.accept();
        s.start(&mut world.ctx(), &mut io);
        s.on_connected(Ok(()), &mut world.ctx(), &mut io);
        assert_eq!(s.phase, Phase::Relaying);
        io.take();
        Relay { world, io, s }
    }

    fn one_backend() -> Relay {
        Relay::new(&plain(&["127.0.0.1:9001"]), 0)
    }

    fn received(&mut self, dir: Dir, len: u32) -> Vec<Call> {
        self.s
            .on_received(dir, len, &mut self.world.ctx(), &mut self.io);
        self.io.take()
    }

    fn sent(&mut self, dir: Dir, n: u32) -> Vec<Call> {
        self.s
            .on_sent(dir, Ok(n), &mut self.world.ctx(), &mut self.io);
        self.io.take()
    }

    fn ready(&mut self, dir: Dir) -> Vec<Call> {
        self.s
            .on_ready(dir, true, &mut self.world.ctx(), &mut self.io);
        self.io.take()
    }

    fn tick_after(&mut self, wait: Duration) -> Vec<Call> {
        self.world.now += wait;
        self.s.on_tick(&mut self.world.ctx(), &mut self.io);
        self.io.take()
    }
}

#[test]
fn a_partial_client_hello_waits_for_the_rest_then_routes_by_its_name() {
    let mut world = World::new(
        "listeners:\n  - name: tls\n    listen: 127.0.0.1:0\n    pool: other\n    sni:\n      - { match: api.example.com, pool: api }\npools:\n  - { name: other, backends: [\"127.0.0.1:9001\"] }\n  - { name: api, backends: [\"127.0.0.1:9002\"] }\n",
    );
    let mut io = Script::default();
    let mut s = world.accept();
    s.start(&mut world.ctx(), &mut io);
    assert_eq!(s.phase, Phase::Inspecting);
    assert_eq!(io.take(), [Call::Recv(C2B, false)]);

    let hello = crate::proto::sni::test_client_hello("api.example.com");
    let (first, rest) = hello.split_at(hello.len() / 2);
    s.on_inspect_data(first, &mut world.ctx(), &mut io);
    assert_eq!(io.take(), [Call::Recv(C2B, false)], "half a hello reads on");
    assert_eq!(s.phase, Phase::Inspecting);

    s.on_inspect_data(rest, &mut world.ctx(), &mut io);
    let api = world.shared.snapshot.load().pools[1].backends[0].addr;
    assert_eq!(io.take(), [Call::Connect(api)]);
    assert_eq!(s.sni.as_deref(), Some("api.example.com"));

    // Connected: the backend gets the client's exact bytes first.
    s.on_connected(Ok(()), &mut world.ctx(), &mut io);
    assert_eq!(
        io.take(),
        [
            Call::WriteNow(hello.clone()),
            Call::Recv(C2B, false),
            Call::Recv(B2C, false)
        ]
    );
    assert_eq!(s.dirs[C2B].bytes, hello.len() as u64);
}

#[test]
fn a_malformed_client_hello_is_rejected_and_counted() {
    let mut world = World::new(
        "listeners:\n  - name: tls\n    listen: 127.0.0.1:0\n    pool: p\n    sni:\n      - { match: a.example, pool: p }\npools:\n  - { name: p, backends: [\"127.0.0.1:9001\"] }\n",
    );
    let mut io = Script::default();
    let mut s = world.accept();
    s.start(&mut world.ctx(), &mut io);
    io.take();
    // A handshake record whose message is not a ClientHello.
    s.on_inspect_data(&[22, 3, 1, 0, 4, 2, 0, 0, 0], &mut world.ctx(), &mut io);
    assert_eq!(io.take(), [Call::CancelAll]);
    assert_eq!(s.termination, Some(Termination::Rejected));
    let snapshot = world.shared.snapshot.load();
    let rejected = snapshot.listeners[0].stats.worker(0).rejected[Reject::BadClientHello.index()]
        .load(Ordering::Relaxed);
    assert_eq!(rejected, 1);
}

#[test]
fn a_failed_connect_is_counted_and_the_next_backend_tried() {
    let mut world = World::new(&plain(&["127.0.0.1:9001", "127.0.0.1:9002"]));
    let mut io = Script::default();
    let mut s = world.accept();
    s.start(&mut world.ctx(), &mut io);
    let first = match io.take().as_slice() {
        [Call::Connect(a)] => *a,
        other => panic!("{other:?}"),
    };
    s.on_connected(Err(libc::ECONNREFUSED), &mut world.ctx(), &mut io);
    let calls = io.take();
    let second = if first == world.backend(0) {
        world.backend(1)
    } else {
        world.backend(0)
    };
    assert_eq!(calls, [Call::DropBackend, Call::Connect(second)]);
    s.on_connected(Ok(()), &mut world.ctx(), &mut io);
    assert_eq!(io.take(), [Call::Recv(C2B, false), Call::Recv(B2C, false)]);
    assert_eq!(s.attempts, 2);

    let snapshot = world.shared.snapshot.load();
    let failed = snapshot.pools[0]
        .backends
        .iter()
        .find(|b| b.addr == first)
        .unwrap();
    assert_eq!(
        failed
            .stats
            .worker(0)
            .connect_errors_refused
            .load(Ordering::Relaxed),
        1
    );
    assert_eq!(failed.active(), 0, "the failed attempt is not held open");
}

#[test]
fn when_every_backend_refuses_the_connection_ends_as_connect_failed() {
    let mut world = World::new(&plain(&["127.0.0.1:9001", "127.0.0.1:9002"]));
    let mut io = Script::default();
    let mut s = world.accept();
    s.start(&mut world.ctx(), &mut io);
    for _ in 0..2 {
        s.on_connected(Err(libc::ECONNREFUSED), &mut world.ctx(), &mut io);
    }
    let calls = io.take();
    assert_eq!(calls.last(), Some(&Call::CancelAll), "{calls:?}");
    assert_eq!(s.termination, Some(Termination::ConnectFailed));
}

#[test]
fn the_client_closing_first_half_closes_then_the_backend_ends_it() {
    let mut r = Relay::one_backend();
    assert_eq!(r.received(C2B, 0), [Call::ShutWrite(C2B)]);
    assert_ne!(r.s.phase, Phase::Closing, "the backend may still answer");
    // The answer still flows after the client's FIN.
    assert_eq!(r.received(B2C, 5), [Call::Send(B2C, 0, 5)]);
    assert_eq!(r.sent(B2C, 5), [Call::Release(B2C), Call::Recv(B2C, true)]);
    assert_eq!(r.received(B2C, 0), [Call::ShutWrite(B2C), Call::CancelAll]);
    assert_eq!(r.s.termination, Some(Termination::ClientClosed));
}

#[test]
fn the_backend_closing_first_half_closes_then_the_client_ends_it() {
    let mut r = Relay::one_backend();
    assert_eq!(r.received(B2C, 0), [Call::ShutWrite(B2C)]);
    r.received(C2B, 3);
    r.sent(C2B, 3);
    assert_eq!(r.received(C2B, 0), [Call::ShutWrite(C2B), Call::CancelAll]);
    assert_eq!(r.s.termination, Some(Termination::BackendClosed));
}

#[test]
fn a_partial_send_sends_the_rest_before_reading_again() {
    let mut r = Relay::one_backend();
    assert_eq!(r.received(C2B, 1000), [Call::Send(C2B, 0, 1000)]);
    assert_eq!(r.sent(C2B, 400), [Call::Send(C2B, 400, 600)]);
    assert_eq!(
        r.sent(C2B, 600),
        [Call::Release(C2B), Call::Recv(C2B, true)]
    );
    assert_eq!(r.s.dirs[C2B].bytes, 1000);
}

#[test]
fn bulk_switches_to_splice_and_short_bursts_switch_back_to_copy() {
    let mut r = Relay::new(&plain(&["127.0.0.1:9001"]), 1);
    // Two full buffers in a row mark the direction as bulk.
    r.received(B2C, RECV_BUFFER);
    assert_eq!(
        r.sent(B2C, RECV_BUFFER).last(),
        Some(&Call::Recv(B2C, false))
    );
    r.received(B2C, RECV_BUFFER);
    r.io.splice_in.push_back(Ok(64 * 1024));
    assert_eq!(
        r.sent(B2C, RECV_BUFFER),
        [
            Call::Release(B2C),
            Call::TakePipe(B2C),
            Call::SpliceIn(B2C),
            Call::SpliceOut(B2C, 64 * 1024),
            Call::SpliceIn(B2C),
            Call::GivePipe(B2C),
            Call::WaitReadable(B2C),
        ]
    );
    assert_eq!(r.s.dirs[B2C].mode, Mode::Splice);
    assert_eq!(r.io.pipes_free, 1, "a quiet direction holds no pipe");

    // Short bursts: the bulk is over after a few in a row.
    for burst in 1..=SHORT_BURSTS_TO_COPY {
        r.io.splice_in.push_back(Ok(100));
        let calls = r.ready(B2C);
        let next = if burst < SHORT_BURSTS_TO_COPY {
            Call::WaitReadable(B2C)
        } else {
            Call::Recv(B2C, false)
        };
        assert_eq!(calls.last(), Some(&next), "{calls:?}");
    }
    assert_eq!(r.s.dirs[B2C].mode, Mode::Copy);
    assert_eq!(
        r.s.dirs[B2C].bytes,
        2 * RECV_BUFFER as u64 + 64 * 1024 + 100 * SHORT_BURSTS_TO_COPY as u64
    );
}

#[test]
fn without_a_free_pipe_bulk_keeps_copying() {
    let mut r = Relay::one_backend();
    r.received(C2B, RECV_BUFFER);
    r.sent(C2B, RECV_BUFFER);
    r.received(C2B, RECV_BUFFER);
    assert_eq!(
        r.sent(C2B, RECV_BUFFER).last(),
        Some(&Call::Recv(C2B, false))
    );
    assert_eq!(r.s.dirs[C2B].mode, Mode::Copy);
    let exhausted = r.world.ctx().stats().pipe_exhausted.load(Ordering::Relaxed);
    assert_eq!(exhausted, 1);
}

#[test]
fn an_idle_connection_is_closed_on_the_tick_after_its_timeout() {
    let mut r = Relay::new(
        &plain(&["127.0.0.1:9001"]).replace("retries: 2", "idle_timeout: 2s"),
        0,
    );
    assert!(r.tick_after(Duration::from_millis(1900)).is_empty());
    assert_eq!(r.tick_after(Duration::from_millis(200)), [Call::CancelAll]);
    assert_eq!(r.s.termination, Some(Termination::IdleTimeout));
}

#[test]
fn finish_gives_everything_back_and_makes_one_record() {
    let mut r = Relay::one_backend();
    r.received(C2B, 10);
    r.sent(C2B, 10);
    r.received(B2C, 20);
    r.sent(B2C, 20);
    r.received(C2B, 0);
    r.received(B2C, 0);
    assert_eq!(r.s.phase, Phase::Closing);

    let Relay { mut world, s, .. } = r;
    let record = s.finish(&mut world.ctx()).expect("the access log is on");
    assert_eq!(record.bytes_client_to_backend, 10);
    assert_eq!(record.bytes_backend_to_client, 20);
    assert_eq!(record.backend, Some(0));
    assert_eq!(record.termination, Termination::ClientClosed);
    let snapshot = world.shared.snapshot.load();
    assert_eq!(
        snapshot.listeners[0].stats.active.load(Ordering::Relaxed),
        0
    );
    assert_eq!(snapshot.pools[0].backends[0].active(), 0);
    assert_eq!(world.shared.open_conns.load(Ordering::Relaxed), 0);
    let ctx = world.ctx();
    let stats = ctx.stats();
    assert_eq!(stats.active.load(Ordering::Relaxed), 0);
    assert_eq!(
        stats.terminations[Termination::ClientClosed.index()].load(Ordering::Relaxed),
        1
    );
    assert_eq!(stats.bytes_copied[C2B].load(Ordering::Relaxed), 10);
}
