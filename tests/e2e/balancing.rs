//! Backend selection over real connections: the distribution of each
//! algorithm, ip_hash stickiness per client address (and agreement between
//! two separate spliced processes), backups, per-backend connection limits.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};

use crate::harness::*;

/// A connection from a chosen loopback source address.
pub fn connect_from(src: Ipv4Addr, addr: SocketAddr) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::new(IpAddr::V4(src), 0).into()).unwrap();
    s.connect_timeout(&addr.into(), WAIT).unwrap();
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

fn pool_config(algorithm: &str, backends: &[(SocketAddr, &str)], pool_extra: &str) -> String {
    let mut s = format!(
        "workers: 2\nadmin:\n  listen: 127.0.0.1:0\nlisteners:\n  - name: lb\n    listen: 127.0.0.1:0\n    pool: p\npools:\n  - name: p\n    algorithm: {algorithm}\n"
    );
    for line in pool_extra.lines().filter(|l| !l.trim().is_empty()) {
        s.push_str(&format!("    {}\n", line.trim_end()));
    }
    s.push_str("    backends:\n");
    for (addr, extra) in backends {
        s.push_str(&format!(
            "      - {{ address: \"{addr}\"{}{extra} }}\n",
            if extra.is_empty() { "" } else { ", " }
        ));
    }
    s
}

fn count(names: impl IntoIterator<Item = String>) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for n in names {
        *m.entry(n).or_default() += 1;
    }
    m
}

#[test]
fn round_robin_spreads_evenly() {
    let (a, b, c) = (
        Backend::named("a"),
        Backend::named("b"),
        Backend::named("c"),
    );
    let lb = Spliced::start(&pool_config(
        "round_robin",
        &[(a.addr, ""), (b.addr, ""), (c.addr, "")],
        "",
    ));
    let counts = count((0..300).map(|_| ask(lb.addr("lb"))));
    for name in ["a", "b", "c"] {
        let n = counts[name];
        assert!(
            (95..=105).contains(&n),
            "round robin gave {name} {n} of 300: {counts:?}"
        );
    }
}

#[test]
fn weighted_round_robin_follows_weights() {
    let (a, b, c) = (
        Backend::named("a"),
        Backend::named("b"),
        Backend::named("c"),
    );
    let lb = Spliced::start(&pool_config(
        "weighted_round_robin",
        &[
            (a.addr, "weight: 1"),
            (b.addr, "weight: 2"),
            (c.addr, "weight: 3"),
        ],
        "",
    ));
    let total = 600;
    let counts = count((0..total).map(|_| ask(lb.addr("lb"))));
    for (name, share) in [("a", 1.0 / 6.0), ("b", 2.0 / 6.0), ("c", 3.0 / 6.0)] {
        let got = counts[name] as f64 / total as f64;
        assert!(
            (got - share).abs() <= 0.03,
            "{name}: {got:.3} vs {share:.3} ({counts:?})"
        );
    }
}

#[test]
fn least_connections_spreads_long_lived_connections() {
    let (a, b, c) = (
        Backend::named("a"),
        Backend::named("b"),
        Backend::named("c"),
    );
    let lb = Spliced::start(&pool_config(
        "least_connections",
        &[(a.addr, ""), (b.addr, ""), (c.addr, "")],
        "",
    ));
    // Each connection stays open, so every pick sees the ones before it.
    let mut held = Vec::new();
    let mut names = Vec::new();
    for _ in 0..30 {
        let s = connect(lb.addr("lb"));
        names.push(ask_on(s.try_clone().unwrap()));
        held.push(s);
    }
    let counts = count(names);
    assert_eq!(
        (counts["a"], counts["b"], counts["c"]),
        (10, 10, 10),
        "{counts:?}"
    );
}

fn sources() -> impl Iterator<Item = Ipv4Addr> {
    (2..=41u8).map(|x| Ipv4Addr::new(127, 0, x / 8 + 1, x))
}

#[test]
fn ip_hash_keeps_each_client_on_one_backend_across_processes() {
    let backends: Vec<Backend> = ["a", "b", "c", "d"]
        .into_iter()
        .map(Backend::named)
        .collect();
    let list: Vec<(SocketAddr, &str)> = backends.iter().map(|b| (b.addr, "")).collect();
    let config = pool_config("ip_hash", &list, "");
    let first = Spliced::start(&config);
    let second = Spliced::start(&config);
    let mut per_source = Vec::new();
    for src in sources() {
        let seen: Vec<String> = (0..3)
            .map(|_| ask_on(connect_from(src, first.addr("lb"))))
            .collect();
        assert!(
            seen.iter().all(|n| *n == seen[0]),
            "{src} moved between backends: {seen:?}"
        );
        let other = ask_on(connect_from(src, second.addr("lb")));
        assert_eq!(
            other, seen[0],
            "the two spliced processes disagree for {src}"
        );
        per_source.push(seen[0].clone());
    }
    // 40 sources over 4 backends: consistent hashing still spreads them.
    let counts = count(per_source);
    assert!(
        counts.len() >= 3,
        "ip_hash put 40 sources on too few backends: {counts:?}"
    );
}

#[test]
fn backups_only_take_traffic_when_no_primary_is_eligible() {
    let primary = Backend::named("primary");
    let backup = Backend::named("backup");
    let dead = refused_addr();
    let lb = Spliced::start(&pool_config(
        "round_robin",
        &[(primary.addr, ""), (backup.addr, "backup: true")],
        "",
    ));
    let counts = count((0..20).map(|_| ask(lb.addr("lb"))));
    assert_eq!(counts.get("primary"), Some(&20), "{counts:?}");
    drop(lb);

    // Primary refuses and is ejected: the backup takes over with no failures.
    let lb = Spliced::start(&pool_config(
        "round_robin",
        &[(dead, ""), (backup.addr, "backup: true")],
        "eject_after: 1",
    ));
    let counts = count((0..20).map(|_| ask(lb.addr("lb"))));
    assert_eq!(counts.get("backup"), Some(&20), "{counts:?}");
    assert!(lb.metric("spliced_ejections_total", &[]) >= 1.0);
}

#[test]
fn a_full_backend_is_skipped_and_when_all_are_full_the_client_is_refused() {
    let a = Backend::named("a");
    let b = Backend::named("b");
    let lb = Spliced::start(&pool_config(
        "round_robin",
        &[
            (a.addr, "max_connections: 2"),
            (b.addr, "max_connections: 2"),
        ],
        "",
    ));
    let mut held = Vec::new();
    let mut names = Vec::new();
    for _ in 0..4 {
        let s = connect(lb.addr("lb"));
        names.push(ask_on(s.try_clone().unwrap()));
        held.push(s);
    }
    let counts = count(names);
    assert_eq!((counts["a"], counts["b"]), (2, 2), "{counts:?}");
    // The fifth is closed without reaching a backend.
    let mut s = connect(lb.addr("lb"));
    let _ = writeln!(s, "who");
    let mut line = String::new();
    let n = BufReader::new(s).read_line(&mut line).unwrap_or(0);
    assert_eq!(
        n, 0,
        "a client beyond every backend's max_connections got {line:?}"
    );
    assert_eq!(
        lb.metric(
            "spliced_rejected_connections_total",
            &[("reason", "backends_full")]
        ),
        1.0
    );
    assert_eq!(
        a.accepted.load(std::sync::atomic::Ordering::Relaxed)
            + b.accepted.load(std::sync::atomic::Ordering::Relaxed),
        4
    );
}

/// Regression: per-backend series were all labelled with the first listener
/// routing to the pool, whichever listener the traffic came through.
#[test]
fn per_backend_counters_are_split_by_the_listener_the_traffic_came_through() {
    let a = Backend::named("a");
    let config = format!(
        "workers: 2\nadmin:\n  listen: 127.0.0.1:0\nlisteners:\n  - {{ name: one, listen: 127.0.0.1:0, pool: p }}\n  - {{ name: two, listen: 127.0.0.1:0, pool: p }}\npools:\n  - {{ name: p, backends: [\"{}\"] }}\n",
        a.addr
    );
    let lb = Spliced::start(&config);
    for _ in 0..2 {
        ask(lb.addr("two"));
    }
    ask(lb.addr("one"));
    let backend = a.addr.to_string();
    wait_until("bytes counted", || {
        lb.metric(
            "spliced_bytes_total",
            &[("listener", "two"), ("direction", "backend_to_client")],
        ) == 12.0
    });
    assert_eq!(
        lb.metric(
            "spliced_connections_total",
            &[("listener", "one"), ("backend", &backend)]
        ),
        1.0
    );
    assert_eq!(
        lb.metric(
            "spliced_connections_total",
            &[("listener", "two"), ("backend", &backend)]
        ),
        2.0
    );
    assert_eq!(
        lb.metric(
            "spliced_bytes_total",
            &[("listener", "one"), ("direction", "client_to_backend")]
        ),
        4.0
    );
}
