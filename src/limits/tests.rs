//! Tests of the limiter's decisions with an injected clock.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use proptest::prelude::*;

use super::table::{count_of, gen_of};
use super::*;
use crate::config::LimitAction;

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000 * MS;
const MIB: usize = 1 << 20;
/// Relay directions (the data plane's `C2B` and `B2C`).
const C2B: usize = 0;
const B2C: usize = 1;

fn limits(rate: Option<f64>, burst: Option<u32>, conns: Option<u32>) -> Limits {
    Limits {
        per_ip_rate: rate,
        per_ip_burst: burst,
        per_ip_connections: conns,
        per_ip_bandwidth: None,
        action: LimitAction::Reject,
        tarpit_delay: Duration::from_secs(10),
        ipv6_prefix: 64,
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn key(s: &str) -> ClientKey {
    ClientKey::new(ip(s), 64)
}

fn cidr(s: &str) -> Cidr {
    let (addr, prefix) = s.split_once('/').unwrap();
    Cidr {
        addr: ip(addr),
        prefix: prefix.parse().unwrap(),
    }
}

fn admitted(v: Verdict) -> Ticket {
    match v {
        Verdict::Admit(t) => t,
        Verdict::Reject(r) => panic!("rejected: {}", r.as_str()),
    }
}

/// Every slot's concurrent count (for leak checks).
fn all_counts(l: &Limiter) -> Vec<u32> {
    (0..l.capacity() as u32)
        .map(|i| count_of(l.table.slot(i).conns.load(Relaxed)))
        .collect()
}

/// Rate 10/s, burst 5: exactly 5 at t=0, then one per 100 ms; another client
/// is untouched.
#[test]
fn rate_admits_burst_then_one_per_interval() {
    let l = Limiter::new(1024);
    let lim = limits(Some(10.0), Some(5), None);
    let (a, b) = (key("192.0.2.1"), key("192.0.2.2"));
    let t0 = 5 * SEC;
    let mut ok = 0;
    for _ in 0..50 {
        match l.admit(a, &lim, t0) {
            Verdict::Admit(t) => {
                ok += 1;
                l.release(t);
            }
            Verdict::Reject(r) => assert_eq!(r, Reject::Rate),
        }
    }
    assert_eq!(ok, 5);
    // Every 10 ms for 2 s, 10 tries each: exactly one per 100 ms.
    let mut per_tick = Vec::new();
    for step in 1..=200u64 {
        let now = t0 + step * 10 * MS;
        let n = (0..10)
            .filter(|_| matches!(l.admit(a, &lim, now), Verdict::Admit(_)))
            .count();
        per_tick.push(n);
    }
    for (i, n) in per_tick.iter().enumerate() {
        let expected = usize::from((i + 1) % 10 == 0);
        assert_eq!(*n, expected, "at {} ms", (i + 1) * 10);
    }
    // The other client still has its whole burst.
    let ok_b = (0..50)
        .filter(|_| matches!(l.admit(b, &lim, t0 + 2 * SEC), Verdict::Admit(_)))
        .count();
    assert_eq!(ok_b, 5);
}

#[test]
fn default_burst_is_the_rate() {
    let l = Limiter::new(1024);
    let lim = limits(Some(3.0), None, None);
    let k = key("198.51.100.1");
    let ok = (0..10)
        .filter(|_| matches!(l.admit(k, &lim, SEC), Verdict::Admit(_)))
        .count();
    assert_eq!(ok, 3);
    // A fractional rate still allows one.
    let lim = limits(Some(0.5), None, None);
    let k = key("198.51.100.2");
    let ok = (0..10)
        .filter(|_| matches!(l.admit(k, &lim, SEC), Verdict::Admit(_)))
        .count();
    assert_eq!(ok, 1);
}

#[test]
fn connection_cap_and_release() {
    let l = Limiter::new(1024);
    let lim = limits(None, None, Some(3));
    let k = key("203.0.113.9");
    let t: Vec<Ticket> = (0..3).map(|_| admitted(l.admit(k, &lim, SEC))).collect();
    assert_eq!(
        l.admit(k, &lim, SEC),
        Verdict::Reject(Reject::PerIpConnections)
    );
    assert_eq!(l.connections(k), 3);
    l.release(t[0]);
    assert_eq!(l.connections(k), 2);
    let again = admitted(l.admit(k, &lim, SEC));
    assert_eq!(
        l.admit(k, &lim, SEC),
        Verdict::Reject(Reject::PerIpConnections)
    );
    for t in [t[1], t[2], again] {
        l.release(t);
    }
    assert_eq!(l.connections(k), 0);
}

#[test]
fn double_release_never_goes_below_zero() {
    let l = Limiter::new(1024);
    let lim = limits(None, None, Some(3));
    let k = key("203.0.113.10");
    let t = admitted(l.admit(k, &lim, SEC));
    l.release(t);
    l.release(t);
    assert_eq!(l.connections(k), 0);
    // The cap is still exactly 3.
    let held: Vec<Ticket> = (0..3).map(|_| admitted(l.admit(k, &lim, SEC))).collect();
    assert!(matches!(l.admit(k, &lim, SEC), Verdict::Reject(_)));
    held.into_iter().for_each(|t| l.release(t));
    assert_eq!(l.connections(k), 0);
}

#[test]
fn refused_connections_hold_nothing() {
    let l = Limiter::new(1024);
    // Rate 2/s burst 4, cap 2.
    let lim = limits(Some(2.0), Some(4), Some(2));
    let k = key("203.0.113.11");
    let a = admitted(l.admit(k, &lim, SEC));
    let _b = admitted(l.admit(k, &lim, SEC));
    // Over the cap (spends the 3rd token), then over the rate.
    assert_eq!(
        l.admit(k, &lim, SEC),
        Verdict::Reject(Reject::PerIpConnections)
    );
    assert_eq!(
        l.admit(k, &lim, SEC),
        Verdict::Reject(Reject::PerIpConnections)
    );
    assert_eq!(l.admit(k, &lim, SEC), Verdict::Reject(Reject::Rate));
    assert_eq!(l.connections(k), 2);
    l.release(a);
    // The rate is checked first: still refused for rate, and holds nothing.
    assert_eq!(l.admit(k, &lim, SEC), Verdict::Reject(Reject::Rate));
    assert_eq!(l.connections(k), 1);
    assert!(matches!(
        l.admit(k, &lim, SEC + 500 * MS),
        Verdict::Admit(_)
    ));
    assert_eq!(l.connections(k), 2);
}

#[test]
fn changed_limits_keep_counts() {
    // A reload passes new limits; the counts stay.
    let l = Limiter::new(1024);
    let k = key("203.0.113.12");
    let wide = limits(None, None, None);
    let t: Vec<Ticket> = (0..3).map(|_| admitted(l.admit(k, &wide, SEC))).collect();
    let narrow = limits(None, None, Some(2));
    assert!(matches!(l.admit(k, &narrow, SEC), Verdict::Reject(_)));
    l.release(t[0]);
    assert!(matches!(l.admit(k, &narrow, SEC), Verdict::Reject(_)));
    l.release(t[1]);
    let u = admitted(l.admit(k, &narrow, SEC));
    l.release(t[2]);
    l.release(u);
    assert_eq!(l.connections(k), 0);
}

#[test]
fn non_positive_rate_admits_nothing() {
    let l = Limiter::new(1024);
    let k = key("203.0.113.13");
    for rate in [0.0, -1.0, f64::NAN] {
        assert_eq!(
            l.admit(k, &limits(Some(rate), None, None), SEC),
            Verdict::Reject(Reject::Rate)
        );
    }
    assert_eq!(l.connections(k), 0);
}

#[test]
fn ipv6_clients_grouped_by_prefix() {
    let l = Limiter::new(1024);
    let lim = limits(Some(1.0), Some(1), None);
    let same_a = key("2001:db8:0:1::1");
    let same_b = key("2001:db8:0:1:abcd::2");
    let other = key("2001:db8:0:2::1");
    assert_eq!(same_a, same_b);
    assert!(matches!(l.admit(same_a, &lim, SEC), Verdict::Admit(_)));
    assert_eq!(l.admit(same_b, &lim, SEC), Verdict::Reject(Reject::Rate));
    assert!(matches!(l.admit(other, &lim, SEC), Verdict::Admit(_)));
    // /128 keys each address on its own.
    let (x, y) = (
        ClientKey::new(ip("2001:db8:0:1::1"), 128),
        ClientKey::new(ip("2001:db8:0:1::2"), 128),
    );
    assert!(matches!(l.admit(x, &lim, SEC), Verdict::Admit(_)));
    assert!(matches!(l.admit(y, &lim, SEC), Verdict::Admit(_)));
}

#[test]
fn listener_scopes_do_not_share_budgets() {
    let l = Limiter::new(1024);
    let lim = limits(Some(1.0), Some(1), None);
    let addr = ip("127.0.0.1");
    let a = ClientKey::in_scope(Scope::listener("a"), addr, 64);
    let b = ClientKey::in_scope(Scope::listener("b"), addr, 64);
    assert!(matches!(l.admit(a, &lim, SEC), Verdict::Admit(_)));
    assert!(matches!(l.admit(b, &lim, SEC), Verdict::Admit(_)));
    assert!(matches!(l.admit(a, &lim, SEC), Verdict::Reject(_)));
}

/// Simulates a relay moving `total` bytes in chunks of at most `chunk`,
/// sleeping whenever told to; returns the simulated time taken.
fn transfer(l: &Limiter, t: Ticket, dir: usize, rate: u64, total: usize, start: u64) -> u64 {
    let chunk = 64 * 1024;
    let (mut now, mut moved) = (start, 0);
    while moved < total {
        let want = (total - moved).min(chunk);
        match l.bandwidth_grant(t, dir, rate, want, now) {
            Grant::Now(n) => {
                assert!(n > 0 && n <= want, "granted {n} of {want}");
                moved += n;
            }
            Grant::After(ns) => {
                assert!(ns > 0);
                now += ns;
            }
        }
    }
    now - start
}

/// 1 MB/s: 5 MiB takes about 5 s of simulated time (within 1% of the exact
/// figure: the transfer less the initial burst, at the rate).
#[test]
fn bandwidth_shapes_to_the_rate() {
    let l = Limiter::new(1024);
    let t = admitted(l.admit(key("192.0.2.50"), &limits(None, None, None), SEC));
    let rate = 1_000_000;
    let total = 5 * MIB;
    let took = transfer(&l, t, C2B, rate, total, SEC);
    let burst = 100_000; // max(64 KiB, rate / 10)
    let exact = (total - burst) as f64 / rate as f64 * 1e9;
    let err = (took as f64 - exact).abs() / exact;
    assert!(err < 0.01, "took {took} ns, expected {exact} ns");
    assert!((5 * SEC..(53 * SEC / 10)).contains(&took), "took {took} ns");
    // The other direction has its own budget, full.
    assert_eq!(
        l.bandwidth_grant(t, B2C, rate, 64 * 1024, SEC + took),
        Grant::Now(64 * 1024)
    );
}

#[test]
fn bandwidth_is_shared_by_a_clients_connections() {
    let l = Limiter::new(1024);
    let lim = limits(None, None, None);
    let k = key("192.0.2.51");
    let (a, b) = (
        admitted(l.admit(k, &lim, SEC)),
        admitted(l.admit(k, &lim, SEC)),
    );
    let rate = 1_000_000;
    // Drain the burst through `a`; `b` must wait.
    assert_eq!(
        l.bandwidth_grant(a, C2B, rate, MIB, SEC),
        Grant::Now(100_000)
    );
    assert!(matches!(
        l.bandwidth_grant(b, C2B, rate, MIB, SEC),
        Grant::After(_)
    ));
    // Unlimited and empty asks are granted as asked.
    assert_eq!(l.bandwidth_grant(b, C2B, 0, MIB, SEC), Grant::Now(MIB));
    assert_eq!(l.bandwidth_grant(b, C2B, rate, 0, SEC), Grant::Now(0));
    // A refund of unsent bytes can be spent again.
    l.bandwidth_refund(a, C2B, rate, 30_000, SEC);
    assert_eq!(
        l.bandwidth_grant(b, C2B, rate, MIB, SEC),
        Grant::Now(30_000)
    );
}

/// Insert a million distinct clients into a 4096-slot table: the table never
/// grows, and every newcomer past the capacity is one counted eviction.
#[test]
fn table_stays_bounded_under_a_flood() {
    let l = Limiter::new(4096);
    let lim = limits(Some(10.0), Some(5), Some(20));
    let mut now = SEC;
    for i in 0..1_000_000u32 {
        let k = ClientKey::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)), 64);
        let t = admitted(l.admit(k, &lim, now));
        if i % 2 == 0 {
            l.release(t);
        }
        now += 1_000; // 1 µs apart: nothing expires.
    }
    assert_eq!(l.capacity(), 4096);
    assert_eq!(l.len_estimate(), 4096);
    assert!(l.live_estimate(now) <= 4096);
    assert_eq!(l.evictions(), 1_000_000 - 4096);
    assert_eq!(
        std::mem::size_of_val(l.table.slot(0)) * l.capacity(),
        256 * 1024
    );
}

#[test]
fn expired_entries_are_reused_not_evicted() {
    let l = Limiter::new(8);
    let lim = limits(Some(1.0), Some(1), Some(1));
    for i in 0..8 {
        let t = admitted(l.admit(key(&format!("192.0.2.{i}")), &lim, SEC));
        l.release(t);
    }
    let later = SEC + IDLE_EXPIRY_NS + 1;
    for i in 0..8 {
        admitted(l.admit(key(&format!("198.51.100.{i}")), &lim, later));
    }
    assert_eq!(l.evictions(), 0);
    assert_eq!(l.len_estimate(), 8);
    assert_eq!(l.live_estimate(later), 8);
}

#[test]
fn stale_ticket_after_eviction_does_not_touch_the_new_owner() {
    let l = Limiter::new(8);
    let lim = limits(None, None, Some(10));
    let a = key("192.0.2.1");
    let old = admitted(l.admit(a, &lim, SEC));
    // Eight more clients, each holding a connection, seen later than `a`:
    // the table (one window of 8) is full, so `a` (least recently seen) goes.
    let mut others = Vec::new();
    for i in 0..8u64 {
        let k = key(&format!("198.51.100.{i}"));
        others.push((k, admitted(l.admit(k, &lim, 2 * SEC + i))));
    }
    assert_eq!(l.connections(a), 0, "a was evicted");
    assert!(l.evictions() >= 1);
    let before = all_counts(&l);
    l.release(old);
    assert_eq!(all_counts(&l), before, "a stale release changes nothing");
    // `a` comes back (evicting someone); the old ticket still does nothing,
    // even if `a` landed in its old slot.
    let new = admitted(l.admit(a, &lim, 3 * SEC));
    assert_eq!(l.connections(a), 1);
    l.release(old);
    assert_eq!(l.connections(a), 1);
    l.release(new);
    assert_eq!(l.connections(a), 0);
    // Bandwidth follows the client even from a stale ticket.
    assert!(matches!(
        l.bandwidth_grant(old, C2B, 1_000_000, 1000, 3 * SEC),
        Grant::Now(1000)
    ));
    for (_, t) in others {
        l.release(t);
    }
    assert!(all_counts(&l).iter().all(|&c| c == 0));
}

#[test]
fn allow_and_deny_lists() {
    let none: [Cidr; 0] = [];
    // Empty lists: everyone.
    assert_eq!(access_allowed(ip("203.0.113.1"), &none, &none), Ok(()));
    // IPv4.
    let allow = [cidr("10.0.0.0/8")];
    let deny = [cidr("10.9.0.0/16"), cidr("192.0.2.0/24")];
    assert_eq!(access_allowed(ip("10.1.2.3"), &allow, &deny), Ok(()));
    assert_eq!(
        access_allowed(ip("10.9.1.1"), &allow, &deny),
        Err(Reject::Deny)
    );
    assert_eq!(
        access_allowed(ip("192.0.2.7"), &none, &deny),
        Err(Reject::Deny)
    );
    assert_eq!(
        access_allowed(ip("11.0.0.1"), &allow, &deny),
        Err(Reject::NotAllowed)
    );
    // IPv6.
    let allow6 = [cidr("::1/128"), cidr("2001:db8::/32")];
    let deny6 = [cidr("2001:db8:bad::/48")];
    assert_eq!(access_allowed(ip("::1"), &allow6, &deny6), Ok(()));
    assert_eq!(
        access_allowed(ip("::2"), &allow6, &deny6),
        Err(Reject::NotAllowed)
    );
    assert_eq!(access_allowed(ip("2001:db8:1::1"), &allow6, &deny6), Ok(()));
    assert_eq!(
        access_allowed(ip("2001:db8:bad::1"), &allow6, &deny6),
        Err(Reject::Deny)
    );
    // An IPv4 client is not in an IPv6-only allow list.
    assert_eq!(
        access_allowed(ip("127.0.0.1"), &allow6, &none),
        Err(Reject::NotAllowed)
    );
    // IPv4-mapped IPv6 clients match IPv4 networks.
    assert_eq!(access_allowed(ip("::ffff:10.1.2.3"), &allow, &deny), Ok(()));
    assert_eq!(
        access_allowed(ip("::ffff:192.0.2.7"), &allow, &deny),
        Err(Reject::Deny)
    );
    assert_eq!(
        access_allowed(ip("::ffff:11.0.0.1"), &allow, &deny),
        Err(Reject::NotAllowed)
    );
}

/// A small xorshift generator: the threads need cheap, reproducible choices.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Threads admit and release on a few shared clients: the cap always holds,
/// and once everything is released, nothing is left counted.
#[test]
fn concurrent_admit_release_never_leaks() {
    let l = Limiter::new(1024);
    let cap = 50;
    let lim = limits(None, None, Some(cap));
    let keys: Vec<ClientKey> = (1..=4).map(|i| key(&format!("192.0.2.{i}"))).collect();
    std::thread::scope(|s| {
        for thread in 0..8u64 {
            let (l, lim, keys) = (&l, &lim, &keys);
            s.spawn(move || {
                let mut rng = 0x9e37_79b9_7f4a_7c15 ^ (thread + 1);
                let mut held: Vec<Ticket> = Vec::new();
                for step in 0..50_000u64 {
                    let r = xorshift(&mut rng);
                    if r.is_multiple_of(2) && held.len() < 30 {
                        let k = keys[(r >> 8) as usize % keys.len()];
                        if let Verdict::Admit(t) = l.admit(k, lim, SEC + step) {
                            held.push(t);
                        }
                        assert!(l.connections(k) <= cap);
                    } else if !held.is_empty() {
                        let i = (r >> 16) as usize % held.len();
                        l.release(held.swap_remove(i));
                    }
                }
                held.into_iter().for_each(|t| l.release(t));
            });
        }
    });
    for k in &keys {
        assert_eq!(l.connections(*k), 0);
    }
    assert_eq!(l.evictions(), 0);
}

/// The same with many more clients than slots, so slots are evicted and
/// reclaimed under the threads' feet: stale tickets must neither leak nor
/// steal counts, so every slot ends at zero.
#[test]
fn concurrent_churn_never_leaks() {
    let l = Limiter::new(8);
    let lim = limits(Some(1e6), Some(1000), Some(1000));
    let keys: Vec<ClientKey> = (0..32).map(|i| key(&format!("198.51.100.{i}"))).collect();
    std::thread::scope(|s| {
        for thread in 0..8u64 {
            let (l, lim, keys) = (&l, &lim, &keys);
            s.spawn(move || {
                let mut rng = 0x2545_f491_4f6c_dd1d ^ (thread + 1);
                let mut held: Vec<Ticket> = Vec::new();
                for step in 0..50_000u64 {
                    let r = xorshift(&mut rng);
                    if r.is_multiple_of(2) && held.len() < 30 {
                        let k = keys[(r >> 8) as usize % keys.len()];
                        if let Verdict::Admit(t) = l.admit(k, lim, SEC + step * 1_000) {
                            held.push(t);
                        }
                    } else if !held.is_empty() {
                        let i = (r >> 16) as usize % held.len();
                        let t = held.swap_remove(i);
                        let _ = l.bandwidth_grant(t, C2B, 1_000_000, 1500, SEC + step * 1_000);
                        l.release(t);
                    }
                }
                held.into_iter().for_each(|t| l.release(t));
            });
        }
    });
    assert!(l.evictions() > 0);
    assert!(
        all_counts(&l).iter().all(|&c| c == 0),
        "{:?}",
        all_counts(&l)
    );
    assert!(l.len_estimate() <= l.capacity());
}

#[derive(Debug, Clone)]
enum Op {
    Admit(usize),
    Release(usize),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..12).prop_map(Op::Admit),
        3 => any::<usize>().prop_map(Op::Release),
        1 => (0u64..3 * IDLE_EXPIRY_NS / 2).prop_map(Op::Advance),
    ]
}

proptest! {
    /// With room for everyone: each client's count is exactly its admitted
    /// minus released connections.
    #[test]
    fn count_is_admitted_minus_released(ops in prop::collection::vec(op(), 1..300)) {
        let l = Limiter::new(4096);
        let lim = limits(Some(20.0), Some(5), Some(4));
        let keys: Vec<ClientKey> = (0..12).map(|i| key(&format!("203.0.113.{i}"))).collect();
        let mut open: Vec<(usize, Ticket)> = Vec::new();
        let mut now = SEC;
        for op in ops {
            match op {
                Op::Admit(k) => {
                    if let Verdict::Admit(t) = l.admit(keys[k], &lim, now) {
                        open.push((k, t));
                    }
                }
                Op::Release(i) if !open.is_empty() => {
                    let (_, t) = open.swap_remove(i % open.len());
                    l.release(t);
                }
                Op::Release(_) => {}
                Op::Advance(ns) => now += ns,
            }
            for (k, key) in keys.iter().enumerate() {
                let expected = open.iter().filter(|(o, _)| *o == k).count() as u32;
                prop_assert_eq!(l.connections(*key), expected);
                prop_assert!(expected <= 4);
            }
        }
        prop_assert_eq!(l.evictions(), 0);
    }

    /// With far more clients than slots: every slot's count is exactly the
    /// open tickets issued in its current generation; older tickets count
    /// nowhere.
    #[test]
    fn counts_match_live_tickets_under_eviction(ops in prop::collection::vec(op(), 1..300)) {
        let l = Limiter::new(8);
        let lim = limits(None, None, Some(3));
        let keys: Vec<ClientKey> = (0..12).map(|i| key(&format!("203.0.113.{i}"))).collect();
        let mut open: Vec<Ticket> = Vec::new();
        let mut now = SEC;
        for op in ops {
            match op {
                Op::Admit(k) => {
                    if let Verdict::Admit(t) = l.admit(keys[k], &lim, now) {
                        open.push(t);
                    }
                }
                Op::Release(i) if !open.is_empty() => {
                    l.release(open.swap_remove(i % open.len()));
                }
                Op::Release(_) => {}
                Op::Advance(ns) => now += ns,
            }
            for slot in 0..l.capacity() as u32 {
                let word = l.table.slot(slot).conns.load(Relaxed);
                let expected = open
                    .iter()
                    .filter(|t| t.slot == slot && t.gen == gen_of(word))
                    .count() as u32;
                prop_assert_eq!(count_of(word), expected);
                prop_assert!(expected <= 3);
            }
        }
    }
}

#[test]
fn requests_get_the_burst_then_the_rate_and_say_when_to_retry() {
    let limiter = Limiter::with_salt(64, 7);
    let scope = Scope::route_limit("web", 0, "api", "header:X-API-Key");
    let a = ClientKey::of_value(scope, b"alice");
    let b = ClientKey::of_value(scope, b"bob");
    let rate = RequestRate::new(10.0, 3);
    let now = 100 * SEC;
    for _ in 0..3 {
        assert_eq!(limiter.request(a, rate, now), Ok(()));
    }
    assert_eq!(limiter.request(a, rate, now), Err(100 * MS));
    // Another key has its own bucket.
    assert_eq!(limiter.request(b, rate, now), Ok(()));
    assert_eq!(limiter.request(a, rate, now + 100 * MS), Ok(()));
    assert!(limiter.request(a, rate, now + 100 * MS).is_err());
}

#[test]
fn requests_admitted_by_many_threads_stay_at_rate_times_time_plus_burst() {
    let limiter = Limiter::with_salt(64, 7);
    let key = ClientKey::of_value(Scope::route_limit("l", 0, "p", "ip"), b"k");
    let rate = RequestRate::new(100.0, 20);
    let admitted = std::sync::atomic::AtomicU64::new(0);
    let start = 10 * SEC;
    // Four threads each offer 4000 requests over 2 simulated seconds.
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let (limiter, admitted) = (&limiter, &admitted);
            s.spawn(move || {
                for i in 0..4000u64 {
                    let now = start + (i * 2 * SEC) / 4000 + t;
                    if limiter.request(key, rate, now).is_ok() {
                        admitted.fetch_add(1, Relaxed);
                    }
                }
            });
        }
    });
    let n = admitted.load(Relaxed);
    assert!(
        (219..=221).contains(&n),
        "admitted {n}, expected 100/s × 2 s + 20"
    );
}
