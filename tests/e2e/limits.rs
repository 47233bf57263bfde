//! Traffic control over real sockets: clients bound to distinct 127.0.0.x
//! source addresses (and ::1) against per-client connection rates, concurrent
//! connection caps, allow/deny lists, the tarpit, bandwidth throttling, a
//! flood of distinct sources against the bounded table, and a hot reload that
//! keeps the counts. A refused client is one whose connection spliced closes
//! before sending it a byte; the backend must never see it.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::harness::*;

const MIB: usize = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// The backend answered.
    Served,
    /// Closed (or reset) by spliced before any byte came back.
    Refused,
}

fn ip(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

/// Sends "hi" on `s` (to a [`Backend::named`]`("b")` behind spliced) and reads
/// the answer: served when "b hi" comes back, refused when the connection is
/// closed or reset with nothing read. Anything else fails the test.
fn fate(s: &TcpStream) -> Fate {
    // A refused connection may already be reset: the write may fail.
    let _ = (&*s).write_all(b"hi\n");
    let mut line = String::new();
    match BufReader::new(s).read_line(&mut line) {
        Ok(0) => Fate::Refused,
        Ok(_) => {
            assert_eq!(line, "b hi\n", "unexpected answer through spliced");
            Fate::Served
        }
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
            ) =>
        {
            Fate::Refused
        }
        Err(e) => panic!("neither served nor refused: {e}"),
    }
}

/// Opens a connection from `src` and returns it with its fate.
fn try_from(src: IpAddr, addr: SocketAddr) -> (TcpStream, Fate) {
    let s = connect_from_ip(src, addr);
    let f = fate(&s);
    (s, f)
}

fn served(fates: &[Fate]) -> usize {
    fates.iter().filter(|f| **f == Fate::Served).count()
}

fn rejected(lb: &Spliced, listener: &str, reason: &str) -> f64 {
    lb.metric(
        "spliced_rejected_connections_total",
        &[("listener", listener), ("reason", reason)],
    )
}

/// Waits until the rejection counter reaches `want`, then checks it stays
/// there (counters are bumped before the close the client saw, so this is
/// normally immediate).
fn assert_rejected(lb: &Spliced, listener: &str, reason: &str, want: usize) {
    let want = want as f64;
    wait_until(&format!("{listener}/{reason} rejections = {want}"), || {
        rejected(lb, listener, reason) >= want
    });
    assert_eq!(
        rejected(lb, listener, reason),
        want,
        "spliced_rejected_connections_total{{listener={listener},reason={reason}}}"
    );
}

fn accepted(b: &Backend) -> u64 {
    b.accepted.load(Ordering::Relaxed)
}

fn listener_active(lb: &Spliced) -> f64 {
    lb.metric("spliced_listener_active_connections", &[("listener", "lb")])
}

#[test]
fn per_ip_rate_refuses_exactly_the_connections_over_the_burst_and_spares_other_sources() {
    let b = Backend::named("b");
    let lb = Spliced::start(&simple_config(
        &[b.addr],
        "limits: { per_ip_rate: 2/s, per_ip_burst: 5 }",
    ));
    let addr = lb.addr("lb");
    let (hot, calm) = (ip(127, 0, 0, 21), ip(127, 0, 0, 22));

    let start = Instant::now();
    let mut hot_fates = Vec::new();
    let mut calm_fates = Vec::new();
    for i in 0..10 {
        hot_fates.push(try_from(hot, addr).1);
        if i % 2 == 1 {
            calm_fates.push(try_from(calm, addr).1);
        }
    }
    let elapsed = start.elapsed();
    // One token comes back every 500 ms: when the ten took less than that
    // (the usual case) the count is exact; otherwise allow what came back.
    let refills = (elapsed.as_millis() / 500) as usize;
    let hot_served = served(&hot_fates);
    assert!(
        hot_fates[..5].iter().all(|f| *f == Fate::Served),
        "the burst of 5 was not served: {hot_fates:?}"
    );
    assert!(
        (5..=5 + refills).contains(&hot_served),
        "127.0.0.21: {hot_served} of 10 served in {elapsed:?} (burst 5, 2/s): {hot_fates:?}"
    );
    assert_eq!(
        calm_fates,
        vec![Fate::Served; 5],
        "127.0.0.22 was affected by 127.0.0.21's rate"
    );
    let mut refused = 10 - hot_served;
    assert_rejected(&lb, "lb", "rate", refused);
    assert_eq!(
        accepted(&b),
        (hot_served + 5) as u64,
        "the backend saw refused connections"
    );

    // The bucket refills at 2/s: 127.0.0.21 gets in again, but never sooner
    // than 500 ms after its first connection.
    let mut again = None;
    for _ in 0..30 {
        match try_from(hot, addr).1 {
            Fate::Served => {
                again = Some(start.elapsed());
                break;
            }
            Fate::Refused => refused += 1,
        }
        // The property under test is time: poll the refill.
        std::thread::sleep(Duration::from_millis(100));
    }
    let again = again.expect("127.0.0.21 was never served again after 3 s at 2/s");
    assert!(
        again >= Duration::from_millis(500),
        "a 6th connection was admitted {again:?} after the first (2/s, burst 5)"
    );
    assert_rejected(&lb, "lb", "rate", refused);
    assert_eq!(accepted(&b), (hot_served + 6) as u64);
    assert_eq!(rejected(&lb, "lb", "per_ip_connections"), 0.0);
}

#[test]
fn per_ip_connections_caps_concurrent_connections_per_source() {
    let b = Backend::named("b");
    let lb = Spliced::start(&simple_config(
        &[b.addr],
        "limits: { per_ip_connections: 3 }",
    ));
    let addr = lb.addr("lb");
    let (a, other) = (ip(127, 0, 0, 25), ip(127, 0, 0, 26));

    let mut held: Vec<TcpStream> = (0..3)
        .map(|i| {
            let (s, f) = try_from(a, addr);
            assert_eq!(f, Fate::Served, "connection {i} of 3 from {a}");
            s
        })
        .collect();
    assert_eq!(try_from(a, addr).1, Fate::Refused, "a 4th from {a}");
    assert_rejected(&lb, "lb", "per_ip_connections", 1);

    // Another source has its own count.
    let others: Vec<TcpStream> = (0..3)
        .map(|i| {
            let (s, f) = try_from(other, addr);
            assert_eq!(f, Fate::Served, "connection {i} of 3 from {other}");
            s
        })
        .collect();
    assert_eq!(try_from(other, addr).1, Fate::Refused, "a 4th from {other}");
    assert_rejected(&lb, "lb", "per_ip_connections", 2);

    // The held ones still work.
    for s in held.iter().chain(&others) {
        assert_eq!(fate(s), Fate::Served);
    }

    // Closing one frees a place once spliced has closed it too.
    drop(held.pop());
    wait_until("the closed connection is gone from spliced", || {
        listener_active(&lb) == 5.0
    });
    let (s, f) = try_from(a, addr);
    assert_eq!(f, Fate::Served, "{a} after one of its 3 closed");
    held.push(s);
    assert_eq!(try_from(a, addr).1, Fate::Refused, "{a} back at its cap");
    assert_rejected(&lb, "lb", "per_ip_connections", 3);
    assert_eq!(accepted(&b), 7, "the backend saw refused connections");
    assert_eq!(rejected(&lb, "lb", "rate"), 0.0);
}

#[test]
fn deny_and_allow_lists_hold_for_ipv4_and_ipv6() {
    let b = Backend::named("b");
    let yaml = format!(
        "workers: 2
admin:
  listen: 127.0.0.1:0
listeners:
  - {{ name: deny4, listen: 127.0.0.1:0, pool: p, deny: [127.0.0.31/32] }}
  - {{ name: allow4, listen: 127.0.0.1:0, pool: p, allow: [127.0.0.40/30] }}
  - {{ name: both4, listen: 127.0.0.1:0, pool: p, allow: [127.0.0.0/8], deny: [127.0.0.33/32] }}
  - {{ name: deny6, listen: \"[::1]:0\", pool: p, deny: [\"::1/128\"] }}
  - {{ name: allow6, listen: \"[::1]:0\", pool: p, allow: [\"::1/128\"] }}
  - {{ name: other6, listen: \"[::1]:0\", pool: p, allow: [\"2001:db8::/32\"] }}
pools:
  - name: p
    backends: [\"{}\"]
",
        b.addr
    );
    let lb = Spliced::start(&yaml);
    for name in ["deny6", "allow6", "other6"] {
        assert!(lb.addr(name).is_ipv6(), "{name} is on {}", lb.addr(name));
    }
    let v6: IpAddr = "::1".parse().unwrap();
    // (listener, source, expected fate, reason counted when refused)
    let cases: [(&str, IpAddr, Fate, &str); 12] = [
        ("deny4", ip(127, 0, 0, 31), Fate::Refused, "deny"),
        ("deny4", ip(127, 0, 0, 30), Fate::Served, ""),
        ("deny4", ip(127, 0, 0, 32), Fate::Served, ""),
        ("allow4", ip(127, 0, 0, 40), Fate::Served, ""),
        ("allow4", ip(127, 0, 0, 41), Fate::Served, ""),
        ("allow4", ip(127, 0, 0, 43), Fate::Served, ""),
        ("allow4", ip(127, 0, 0, 44), Fate::Refused, "not_allowed"),
        ("allow4", ip(127, 0, 0, 50), Fate::Refused, "not_allowed"),
        ("both4", ip(127, 0, 0, 33), Fate::Refused, "deny"),
        ("deny6", v6, Fate::Refused, "deny"),
        ("allow6", v6, Fate::Served, ""),
        ("other6", v6, Fate::Refused, "not_allowed"),
    ];
    for (listener, src, want, _) in cases {
        // Twice each: a refusal leaves nothing behind.
        for round in 0..2 {
            let got = try_from(src, lb.addr(listener)).1;
            assert_eq!(got, want, "{src} on {listener} (round {round})");
        }
    }
    assert_eq!(
        try_from(ip(127, 0, 0, 34), lb.addr("both4")).1,
        Fate::Served
    );

    for listener in ["deny4", "allow4", "both4", "deny6", "allow6", "other6"] {
        for reason in ["deny", "not_allowed"] {
            let want = 2 * cases
                .iter()
                .filter(|(l, _, f, r)| *l == listener && *f == Fate::Refused && *r == reason)
                .count();
            assert_rejected(&lb, listener, reason, want);
        }
    }
    let served_cases = cases.iter().filter(|c| c.2 == Fate::Served).count();
    assert_eq!(
        accepted(&b),
        (2 * served_cases + 1) as u64,
        "the backend saw refused connections"
    );
}

#[test]
fn tarpit_holds_a_refused_client_unread_then_closes_it_after_the_delay() {
    let b = Backend::named("b");
    let lb = Spliced::start(&simple_config(
        &[b.addr],
        "limits: { per_ip_connections: 1, action: tarpit, tarpit_delay: 2s }",
    ));
    let addr = lb.addr("lb");
    let src = ip(127, 0, 0, 51);
    let (_held, f) = try_from(src, addr);
    assert_eq!(f, Fate::Served);

    let start = Instant::now();
    let mut trapped = connect_from_ip(src, addr);
    // Counted as soon as it is refused, while it is still held.
    assert_rejected(&lb, "lb", "per_ip_connections", 1);
    // Held open: a read blocks (the property under test is time).
    trapped
        .set_read_timeout(Some(Duration::from_millis(1000)))
        .unwrap();
    let mut buf = [0u8; 64];
    match trapped.read(&mut buf) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!(
            "a tarpitted connection should stay open and silent, got {other:?} after {:?}",
            start.elapsed()
        ),
    }
    // Meanwhile another source is served.
    assert_eq!(try_from(ip(127, 0, 0, 52), addr).1, Fate::Served);

    trapped.set_read_timeout(Some(WAIT)).unwrap();
    match trapped.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("expected spliced to close the tarpitted connection, got {other:?}"),
    }
    let held_for = start.elapsed();
    assert!(
        (Duration::from_millis(1500)..Duration::from_secs(5)).contains(&held_for),
        "tarpit_delay 2s held the connection for {held_for:?}"
    );
    assert_eq!(
        accepted(&b),
        2,
        "the tarpitted connection reached the backend"
    );
    assert_rejected(&lb, "lb", "per_ip_connections", 1);
}

/// The tarpit holds at most a quarter of each worker's share of the
/// connection budget; past that, refused clients are closed at once, so a
/// flood cannot fill spliced's fds with held connections.
#[test]
fn a_full_tarpit_closes_refused_clients_at_once() {
    // Under 2000 fds, 2 workers: a budget of 739 connections, so each worker's
    // tarpit holds at most 739 / 2 / 4 = 92.
    let b = Backend::named("b");
    let lb = Spliced::start_with(
        &["prlimit", "--nofile=2000:2000"],
        &simple_config(
            &[b.addr],
            "limits: { per_ip_connections: 1, action: tarpit, tarpit_delay: 60s }",
        ),
    );
    let addr = lb.addr("lb");
    let src = ip(127, 0, 0, 61);
    let (_served, f) = try_from(src, addr);
    assert_eq!(f, Fate::Served);

    let flood = 300;
    let held: Vec<TcpStream> = (0..flood).map(|_| connect_from_ip(src, addr)).collect();
    for s in &held {
        s.set_nonblocking(true).unwrap();
    }
    let closed = |held: &[TcpStream]| {
        held.iter()
            .filter(|s| match (&**s).read(&mut [0u8; 8]) {
                Ok(0) => true,
                Ok(_) => panic!("a refused client got bytes"),
                Err(e) => e.kind() != ErrorKind::WouldBlock,
            })
            .count()
    };
    let cap = 2 * 92;
    wait_until("clients past the tarpit's cap are closed", || {
        closed(&held) >= flood - cap
    });
    assert_rejected(&lb, "lb", "per_ip_connections", flood);
    let open = flood - closed(&held);
    assert!(
        (32..=cap).contains(&open),
        "{open} of {flood} refused clients held in the tarpit (cap {cap})"
    );
    assert_eq!(accepted(&b), 1, "a refused client reached the backend");
}

/// A backend that reads a line "down <seed> <len>" (then sends that stream and
/// closes) or "up" (then reads to EOF and answers "<bytes> <fnv hex>").
fn up_down_backend() -> Backend {
    Backend::spawn(|s| {
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        let mut line = String::new();
        if r.read_line(&mut line).is_err() {
            return;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["down", seed, len] => {
                send_stream(&mut w, seed.parse().unwrap(), len.parse().unwrap());
            }
            ["up"] => {
                let (n, h) = read_all(&mut r);
                let _ = writeln!(w, "{n} {h:016x}");
            }
            _ => panic!("bad request {line:?}"),
        }
        let _ = w.shutdown(Shutdown::Write);
    })
}

/// Downloads `len` bytes of stream `seed` from `src`; returns the time taken.
fn download(src: IpAddr, addr: SocketAddr, seed: u64, len: usize) -> Duration {
    let start = Instant::now();
    let mut s = connect_from_ip(src, addr);
    writeln!(s, "down {seed} {len}").unwrap();
    let got = read_all(&mut s);
    let took = start.elapsed();
    assert_eq!(got, (len, stream_hash(seed, len)), "download from {src}");
    took
}

/// Uploads `len` bytes of stream `seed` from `src`; returns the time until the
/// backend confirmed it had them all.
fn upload(src: IpAddr, addr: SocketAddr, seed: u64, len: usize) -> Duration {
    let start = Instant::now();
    let mut s = connect_from_ip(src, addr);
    writeln!(s, "up").unwrap();
    let sent = send_stream(&mut s, seed, len);
    s.shutdown(Shutdown::Write).unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let took = start.elapsed();
    assert_eq!(
        reply.trim(),
        format!("{len} {sent:016x}"),
        "upload from {src}"
    );
    took
}

#[test]
fn per_ip_bandwidth_shapes_each_direction_of_each_source_apart() {
    let backend = up_down_backend();
    // `lb` limits each client to 1 MB/s each way; `free`, on the same workers,
    // has no limit.
    let lb = Spliced::start(&format!(
        "workers: 2
admin:
  listen: 127.0.0.1:0
listeners:
  - {{ name: lb, listen: 127.0.0.1:0, pool: p, limits: {{ per_ip_bandwidth: 1MB/s }} }}
  - {{ name: free, listen: 127.0.0.1:0, pool: p }}
pools:
  - name: p
    backends: [\"{}\"]
",
        backend.addr
    ));
    let (addr, free) = (lb.addr("lb"), lb.addr("free"));
    let (a, b, c) = (ip(127, 0, 0, 60), ip(127, 0, 0, 61), ip(127, 0, 0, 62));
    let len = 5 * MIB;
    // All at once: `a` downloads and uploads (each direction has its own
    // 1 MB/s), `b` downloads on its own budget (a budget shared between
    // clients would make both take twice as long), `c` goes unthrottled.
    let a_down = std::thread::spawn(move || download(a, addr, 1, len));
    let a_up = std::thread::spawn(move || upload(a, addr, 2, len));
    let b_down = std::thread::spawn(move || download(b, addr, 3, len));
    let c_down = std::thread::spawn(move || download(c, free, 4, len));
    let c_up = std::thread::spawn(move || upload(c, free, 5, len));
    let (c_down, c_up) = (c_down.join().unwrap(), c_up.join().unwrap());
    let (a_down, a_up) = (a_down.join().unwrap(), a_up.join().unwrap());
    let b_down = b_down.join().unwrap();
    // 5 MiB at 1 MB/s after a 100 kB burst: at least 5.14 s.
    let expected = Duration::from_millis(4500)..Duration::from_secs(9);
    for (what, took) in [
        ("127.0.0.60 download", a_down),
        ("127.0.0.60 upload", a_up),
        ("127.0.0.61 download", b_down),
    ] {
        assert!(
            expected.contains(&took),
            "{what} of 5 MiB at 1MB/s took {took:?}"
        );
    }
    // At least 2.6 MB/s, while the throttled ones were running.
    for (what, took) in [("download", c_down), ("upload", c_up)] {
        assert!(
            took < Duration::from_secs(2),
            "an unlimited 5 MiB {what} took {took:?} beside throttled clients"
        );
    }
    eprintln!(
        "bandwidth: throttled {a_down:?} / {a_up:?} / {b_down:?}, unlimited {c_down:?} / {c_up:?}"
    );
}

/// `spliced_limits_table_evictions_total` and `spliced_limits_table_entries`,
/// after checking `spliced_limits_table_capacity` is `capacity`.
fn table_metrics(lb: &Spliced, capacity: usize) -> (f64, f64) {
    let m = lb.metrics();
    let get = |name: &str| {
        *m.get(name)
            .unwrap_or_else(|| panic!("{name} missing from /metrics"))
    };
    assert_eq!(get("spliced_limits_table_capacity"), capacity as f64);
    (
        get("spliced_limits_table_evictions_total"),
        get("spliced_limits_table_entries"),
    )
}

#[test]
fn a_flood_of_distinct_sources_is_admitted_and_the_table_stays_bounded() {
    const SOURCES: usize = 3000;
    const THREADS: usize = 4;
    const TABLE: usize = 1024;
    let b = Backend::named("b");
    let mut lb = Spliced::start(&format!(
        "limits_table_size: {TABLE}\n{}",
        simple_config(&[b.addr], "limits: { per_ip_rate: 1/m, per_ip_burst: 1 }")
    ));
    let addr = lb.addr("lb");
    // 127.200.y.z, z in 1..=250: 3000 distinct sources.
    let sources: Vec<IpAddr> = (0..SOURCES)
        .map(|i| ip(127, 200, (i / 250) as u8, (i % 250 + 1) as u8))
        .collect();
    // Runs one connection from each of `order` over a few threads; returns
    // the sources that were refused.
    let pass = |order: Vec<IpAddr>| -> Vec<IpAddr> {
        let chunks: Vec<Vec<IpAddr>> = order
            .chunks(SOURCES.div_ceil(THREADS))
            .map(<[IpAddr]>::to_vec)
            .collect();
        let threads: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                std::thread::spawn(move || {
                    chunk
                        .into_iter()
                        .filter(|src| try_from(*src, addr).1 == Fate::Refused)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect()
    };

    // Every new source has a full bucket (1 connection).
    let refused = pass(sources.clone());
    assert!(
        refused.is_empty(),
        "{} new sources were refused, e.g. {:?}",
        refused.len(),
        &refused[..refused.len().min(5)]
    );
    assert_eq!(rejected(&lb, "lb", "rate"), 0.0);
    assert!(lb.child.try_wait().unwrap().is_none(), "spliced died");
    // Each source claimed a slot; at most TABLE of those claims found it
    // empty, every other one evicted a live client.
    let (evictions, entries) = table_metrics(&lb, TABLE);
    assert!(
        ((SOURCES - TABLE) as f64..=SOURCES as f64).contains(&evictions),
        "{SOURCES} sources through a table of {TABLE}: {evictions} evictions"
    );
    assert!(
        entries <= TABLE as f64,
        "{entries} entries in a table of {TABLE}"
    );

    // Again, most recent first. A source is refused only if spliced still
    // remembers its first connection (at 1/m its bucket is empty), i.e. its
    // entry survived from the end of the first pass: at most the table's
    // size. A table that grew with the flood would refuse all 3000.
    let refused = pass(sources.iter().rev().copied().collect());
    assert!(
        refused.len() <= TABLE,
        "{} of {SOURCES} sources were still remembered by a table of {TABLE}",
        refused.len()
    );
    // ...and the ones it does remember are still limited.
    assert!(
        !refused.is_empty(),
        "no source was remembered: the rate limit forgot everyone"
    );
    assert_rejected(&lb, "lb", "rate", refused.len());
    assert_eq!(
        accepted(&b),
        (2 * SOURCES - refused.len()) as u64,
        "the backend saw refused connections"
    );
    // Every admitted connection of either pass claimed a slot.
    let claims = 2 * SOURCES - refused.len();
    let (evictions, entries) = table_metrics(&lb, TABLE);
    assert!(
        ((claims - TABLE) as f64..=claims as f64).contains(&evictions),
        "{claims} claims in a table of {TABLE}: {evictions} evictions"
    );
    assert!(
        entries <= TABLE as f64,
        "{entries} entries in a table of {TABLE}"
    );

    // spliced still runs and still limits a fresh source.
    assert!(lb.child.try_wait().unwrap().is_none(), "spliced died");
    let fresh = ip(127, 201, 0, 1);
    assert_eq!(try_from(fresh, addr).1, Fate::Served);
    assert_eq!(try_from(fresh, addr).1, Fate::Refused);
    assert_rejected(&lb, "lb", "rate", refused.len() + 1);
    eprintln!(
        "flood: {} of {SOURCES} sources remembered after the flood (table {TABLE})",
        refused.len()
    );
}

#[test]
fn limits_change_on_hot_reload_without_losing_counts() {
    let b = Backend::named("b");
    let config = |cap: u32, idle: &str| {
        simple_config(
            &[b.addr],
            &format!("idle_timeout: {idle}\nlimits: {{ per_ip_connections: {cap} }}"),
        )
    };
    let lb = Spliced::start(&config(3, "5m"));
    let addr = lb.addr("lb");
    let src = ip(127, 0, 0, 70);
    let reload = |yaml: String| {
        let before = lb.log_count("configuration reloaded");
        std::fs::write(lb.dir.join("spliced.yaml"), yaml).unwrap();
        lb.signal("HUP");
        wait_until("configuration reloaded", || {
            lb.log_count("configuration reloaded") > before
        });
    };

    let mut held: Vec<TcpStream> = (0..3)
        .map(|i| {
            let (s, f) = try_from(src, addr);
            assert_eq!(f, Fate::Served, "connection {i} of 3");
            s
        })
        .collect();
    assert_eq!(try_from(src, addr).1, Fate::Refused);

    // Same cap, another idle_timeout: the 3 held still count.
    reload(config(3, "4m"));
    assert_eq!(
        try_from(src, addr).1,
        Fate::Refused,
        "a reload forgot the 3 open connections"
    );
    // Raising the cap to 4 lets exactly one more in.
    reload(config(4, "4m"));
    let (s, f) = try_from(src, addr);
    assert_eq!(f, Fate::Served, "the raised cap did not apply");
    held.push(s);
    assert_eq!(try_from(src, addr).1, Fate::Refused, "a 5th under cap 4");
    // The connections opened before the reloads still work and still count
    // when they close.
    for s in &held {
        assert_eq!(fate(s), Fate::Served);
    }
    drop(held.remove(0));
    wait_until("the closed connection is gone from spliced", || {
        listener_active(&lb) == 3.0
    });
    let (_s, f) = try_from(src, addr);
    assert_eq!(
        f,
        Fate::Served,
        "closing a pre-reload connection freed nothing"
    );
    assert_eq!(try_from(src, addr).1, Fate::Refused);
    assert_rejected(&lb, "lb", "per_ip_connections", 4);
    assert_eq!(accepted(&b), 5, "the backend saw refused connections");
    assert_eq!(
        lb.metric("spliced_config_reloads_total", &[("result", "ok")]),
        2.0
    );
}
