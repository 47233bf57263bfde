//! What an autoscaler or a discovery hook uses: the bulk replacement of a
//! pool's backends (`PUT /api/v1/pools/{pool}/backends`), applied at once,
//! with the backends that stay keeping their state; and the pool saturation
//! series it scales on.

use std::io::{Read, Write};
use std::net::SocketAddr;

use crate::harness::*;

fn connections_of(admin: SocketAddr, address: &str) -> u64 {
    backend_info(admin, address)["connections"]
        .as_u64()
        .unwrap()
}

fn set(addresses: &[SocketAddr]) -> String {
    let items: Vec<String> = addresses
        .iter()
        .map(|a| format!(r#"{{"address": "{a}"}}"#))
        .collect();
    format!("[{}]", items.join(", "))
}

#[test]
fn a_pools_backends_are_replaced_at_once_and_the_ones_that_stay_keep_their_counters() {
    let (a, b, c) = (
        Backend::named("a"),
        Backend::named("b"),
        Backend::named("c"),
    );
    let lb = Spliced::start(&simple_config(&[a.addr, b.addr], ""));
    let admin = lb.admin.unwrap();
    let addr = lb.addr("lb");
    for _ in 0..4 {
        ask(addr);
    }
    let b_before = connections_of(admin, &b.addr.to_string());
    assert!(b_before > 0);

    let (status, answer) = http(
        admin,
        "PUT",
        "/api/v1/pools/p/backends",
        None,
        &set(&[b.addr, c.addr]),
    );
    assert_eq!(status, 200, "{answer}");
    let answer = json(&answer);
    assert_eq!(answer["added"], serde_json::json!([c.addr.to_string()]));
    assert_eq!(answer["removed"], serde_json::json!([a.addr.to_string()]));

    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..6 {
        seen.insert(ask(addr));
    }
    assert_eq!(seen, ["b".to_string(), "c".to_string()].into());
    assert!(
        connections_of(admin, &b.addr.to_string()) >= b_before + 3,
        "b kept its counters across the replacement"
    );

    // A set the file would refuse changes nothing.
    let (status, answer) = http(
        admin,
        "PUT",
        "/api/v1/pools/p/backends",
        None,
        &set(&[c.addr, c.addr]),
    );
    assert_eq!(status, 422, "{answer}");
    let (status, answer) = http(admin, "PUT", "/api/v1/pools/p/backends", None, "[]");
    assert_eq!(status, 422, "{answer}");
    let (status, _) = http(admin, "PUT", "/api/v1/pools/nope/backends", None, "[]");
    assert_eq!(status, 404);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..6 {
        seen.insert(ask(addr));
    }
    assert_eq!(seen, ["b".to_string(), "c".to_string()].into());
}

#[test]
fn pool_utilization_is_open_connections_over_the_eligible_backends_capacity() {
    let (a, b) = (Backend::echo(), Backend::echo());
    let yaml = format!(
        "workers: 2\nadmin:\n  listen: 127.0.0.1:0\nlisteners:\n  - {{ name: lb, listen: 127.0.0.1:0, pool: p }}\npools:\n  - name: p\n    backends:\n      - {{ address: \"{}\", max_connections: 2 }}\n      - {{ address: \"{}\", max_connections: 2 }}\n  - name: open\n    backends: [\"{}\"]\n",
        a.addr, b.addr, a.addr
    );
    let lb = Spliced::start(&yaml);
    let gauge = |name: &str, pool: &str| lb.metric(name, &[("pool", pool)]);
    assert_eq!(gauge("spliced_pool_capacity_connections", "p"), 4.0);
    assert_eq!(gauge("spliced_pool_utilization", "p"), 0.0);
    assert_eq!(gauge("spliced_pool_eligible_backends", "p"), 2.0);

    // Two connections held open, each known to have reached a backend.
    let held: Vec<_> = (0..2)
        .map(|_| {
            let mut s = connect(lb.addr("lb"));
            s.write_all(b"x").unwrap();
            let mut one = [0u8; 1];
            s.read_exact(&mut one).unwrap();
            s
        })
        .collect();
    assert_eq!(gauge("spliced_pool_active_connections", "p"), 2.0);
    assert_eq!(gauge("spliced_pool_utilization", "p"), 0.5);

    // A pool with an unlimited backend has no capacity to divide by.
    let text = http_get(lb.admin.unwrap(), "/metrics").1;
    assert!(
        !text.contains("spliced_pool_utilization{pool=\"open\"}"),
        "{text}"
    );
    assert!(
        text.contains("spliced_pool_eligible_backends{pool=\"open\"} 1"),
        "{text}"
    );
    drop(held);
}
