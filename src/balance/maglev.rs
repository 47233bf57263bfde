//! `ip_hash`: Maglev consistent hashing (Eisenbud et al., NSDI 2016), with
//! weights and optional bounded load. Owns the lookup table, built once on the
//! control thread from a fixed-seed hash of each backend's address string, so
//! every worker, every restart and every separate instance agree on where a
//! client goes. Must never use a randomly keyed hasher, and never lock or
//! allocate in `pick`.
//!
//! A client whose backend is ineligible walks on through the table, along a
//! probe sequence of its own, to the first eligible entry: a lost backend's
//! clients spread over all the others in proportion to their weights, while
//! every other client stays where it was.

use std::net::IpAddr;
use std::sync::Arc;

use super::Backend;
use super::{mix64, weight_now, Balancer, PickContext};

/// Seeds of the hashes below. Part of the on-the-wire contract between
/// instances and releases: changing any of them remaps every client.
const SEED_OFFSET: u64 = 0x6d61_676c_6576_0001; // "maglev" 1
const SEED_SKIP: u64 = 0x6d61_676c_6576_0002; // "maglev" 2
const SEED_V4: u64 = 0x6970_7634_0000_0000; // "ipv4"
const SEED_V6: u64 = 0x6970_7636_0000_0000; // "ipv6"
const SEED_STRIDE: u64 = 0x7374_7269_6465_0000; // "stride"

/// FNV-1a 64 (the published offset basis and prime): a fixed, dependency-free
/// byte hash. It mixes weakly on its own, so callers finish with [`mix64`].
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The lookup key of a client address. Stable across processes, restarts and
/// releases; an IPv4-mapped IPv6 address (a v4 client on a `[::]` listener)
/// hashes as the IPv4 address it is.
pub fn hash_key(ip: IpAddr) -> u64 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => mix64(u32::from(v4) as u64 ^ SEED_V4),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            mix64(mix64(bits as u64 ^ SEED_V6) ^ (bits >> 64) as u64)
        }
    }
}

/// Table entries walked past an ineligible (or, with bounded load, an
/// overloaded) backend before falling back to a scan of the backend list.
/// While at least a fifth of the backends qualify, 64 steps all miss with
/// probability 0.8^64 ≈ 6e-7; the bound keeps a pick cheap when almost nothing
/// qualifies.
const WALK_STEPS: usize = 64;

/// Backends up to this many are tracked in a one-word bitmask during the walk,
/// so each is checked once and the walk ends when all have been seen.
const SMALL: usize = 64;

pub struct Maglev {
    /// Backend index of each of the `M` slots (`M` prime); empty when no
    /// backend has weight.
    table: Box<[u32]>,
    /// For pools of at most [`SMALL`] backends, the bit of every backend that
    /// owns at least one slot.
    in_table: u64,
    /// `hash_balance_factor` × 1000 (0 = bounded load off).
    bound_milli: u64,
}

impl Maglev {
    /// Builds the table (control thread). `table_size` should be a prime well
    /// above the number of backends (config validation sees to both); one
    /// that is not prime is rounded up to the next prime, since a permutation
    /// over a composite size may never reach some slots. The table follows
    /// the configured weights; slow start does not reshape it (that would move
    /// clients twice), only the bounded-load check sees the ramped weight.
    pub fn new(
        backends: &[Arc<Backend>],
        table_size: usize,
        hash_balance_factor: Option<f64>,
    ) -> Maglev {
        let members: Vec<(&str, u32)> = backends
            .iter()
            .map(|b| (b.name.as_str(), b.weight))
            .collect();
        let table = populate(&members, next_prime(table_size));
        let in_table = if backends.len() <= SMALL {
            table.iter().fold(0, |m, &i| m | 1u64 << i)
        } else {
            0
        };
        // A factor that is NaN or ≤ 0 turns the bound off (`as` saturates);
        // validation rejects those anyway.
        let bound_milli = hash_balance_factor.map_or(0, |c| (c * 1000.0).round() as u64);
        Maglev {
            table,
            in_table,
            bound_milli,
        }
    }

    /// The backend a key lands on when every backend is eligible.
    #[cfg(test)]
    fn lookup(&self, key: u64) -> Option<usize> {
        let m = self.table.len() as u64;
        (m > 0).then(|| self.table[(key % m) as usize] as usize)
    }
}

/// Fills a table of `m` slots: in each round every backend earns credit equal
/// to its weight and takes one slot (the next free one of its own permutation)
/// per `max_weight` of credit, so the heaviest backend takes one slot a round
/// and the others in proportion — shares match weights to within a slot a
/// backend. Backends of weight 0 take none.
fn populate(members: &[(&str, u32)], m: usize) -> Box<[u32]> {
    const FREE: u32 = u32::MAX;
    let max_weight = members.iter().map(|&(_, w)| w as u64).max().unwrap_or(0);
    if max_weight == 0 {
        return Box::new([]);
    }
    debug_assert!(members.len() < FREE as usize);
    let m64 = m as u64;
    // (position in the permutation, skip, credit) per backend; the
    // permutation of backend i is offset_i + j × skip_i (mod m), a full
    // cycle because m is prime and 0 < skip < m.
    let mut perm: Vec<(u64, u64, u64)> = members
        .iter()
        .map(|&(name, _)| {
            let h = fnv1a(name.as_bytes());
            let offset = mix64(h ^ SEED_OFFSET) % m64;
            let skip = mix64(h ^ SEED_SKIP) % (m64 - 1) + 1;
            (offset, skip, 0)
        })
        .collect();
    let mut table = vec![FREE; m];
    let mut filled = 0;
    loop {
        for (i, &(_, weight)) in members.iter().enumerate() {
            let (pos, skip, credit) = &mut perm[i];
            *credit += weight as u64;
            while *credit >= max_weight {
                *credit -= max_weight;
                // While a slot is free, a full cycle reaches it.
                loop {
                    let slot = *pos as usize;
                    *pos += *skip;
                    if *pos >= m64 {
                        *pos -= m64;
                    }
                    if table[slot] == FREE {
                        table[slot] = i as u32;
                        break;
                    }
                }
                filled += 1;
                if filled == m {
                    return table.into_boxed_slice();
                }
            }
        }
    }
}

fn is_prime(n: usize) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

fn next_prime(n: usize) -> usize {
    (n.max(2)..)
        .find(|&p| is_prime(p))
        .expect("a prime above any usize table size")
}

impl Balancer for Maglev {
    fn pick(
        &self,
        backends: &[Arc<Backend>],
        ctx: &PickContext,
        eligible: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let m = self.table.len();
        if m == 0 {
            return None;
        }
        let key = match ctx.client {
            Some(ip) => hash_key(ip),
            None => ctx.random,
        };
        let start = (key % m as u64) as usize;
        let mut load = Load::new(self.bound_milli);

        // The common case: the key's own backend.
        let first = self.table[start] as usize;
        let first_ok = eligible(first);
        if first_ok && load.under(first, backends, ctx, eligible) {
            return Some(first);
        }

        // Walk on. WHY a per-key stride rather than the next slot: owners of
        // adjacent slots are correlated (both come from arithmetic
        // progressions mod M), and with 10 equal backends stepping to slot + 1
        // gave one survivor 6.3% of a lost backend's clients and another
        // 12.9% (ideal 11.1%). A stride drawn from the key makes each probe an
        // independent draw from the table, so orphans follow the weights.
        // Double hashing over a prime M also never revisits a slot.
        // `seen` (pools of ≤ SMALL backends) makes each backend count once
        // and ends the walk once all have been looked at.
        let small = backends.len() <= SMALL;
        let bit = |i: usize| if small { 1u64 << i } else { 0 };
        let mut seen = bit(first);
        let mut fallback = first_ok.then_some(first);
        let stride = (mix64(key ^ SEED_STRIDE) % (m as u64 - 1).max(1)) as usize + 1;
        let mut slot = start;
        for _ in 1..WALK_STEPS.min(m) {
            if small && seen == self.in_table {
                break;
            }
            // slot, stride < m, so one subtraction wraps.
            slot += stride;
            if slot >= m {
                slot -= m;
            }
            let i = self.table[slot] as usize;
            if seen & bit(i) != 0 {
                continue;
            }
            seen |= bit(i);
            if eligible(i) {
                if load.under(i, backends, ctx, eligible) {
                    return Some(i);
                }
                fallback.get_or_insert(i);
            }
        }
        if fallback.is_some() {
            // Bounded load: every eligible backend walked past is over the
            // bound; the first of them is as good as any.
            return fallback;
        }

        // Almost nothing qualifies: scan the list once, starting after the
        // key's own backend so different keys still land on different
        // survivors. Deterministic, so a key stays put while nothing changes.
        let n = backends.len();
        let mut i = first;
        for _ in 0..n {
            i += 1;
            if i == n {
                i = 0;
            }
            if seen & bit(i) != 0 || backends[i].weight == 0 || !eligible(i) {
                continue;
            }
            if load.under(i, backends, ctx, eligible) {
                return Some(i);
            }
            fallback.get_or_insert(i);
        }
        fallback
    }
}

/// The bounded-load test (Mirrokni et al.; Envoy's and HAProxy's
/// `hash-balance-factor`): backend `i` may take a client while
/// `active_i / weight_i ≤ c × (total active + 1) / total weight` over the
/// eligible backends — with equal weights, `active_i ≤ c × (total + 1) / n`.
/// The totals need a pass over the backends, done at most once a pick and
/// only when a candidate has connections at all.
struct Load {
    bound_milli: u64,
    /// (total active, total weight) of the eligible backends, once computed.
    totals: Option<(u128, u128)>,
}

impl Load {
    fn new(bound_milli: u64) -> Load {
        Load {
            bound_milli,
            totals: None,
        }
    }

    #[inline]
    fn under(
        &mut self,
        i: usize,
        backends: &[Arc<Backend>],
        ctx: &PickContext,
        eligible: &dyn Fn(usize) -> bool,
    ) -> bool {
        if self.bound_milli == 0 {
            return true;
        }
        let active = backends[i].active();
        if active == 0 {
            return true;
        }
        let (total, total_weight) = *self.totals.get_or_insert_with(|| {
            let (mut total, mut weights) = (0u128, 0u128);
            for (j, b) in backends.iter().enumerate() {
                let w = weight_now(b, ctx.now_ms);
                if w > 0 && eligible(j) {
                    total += b.active() as u128;
                    weights += w as u128;
                }
            }
            (total, weights)
        });
        let weight = weight_now(&backends[i], ctx.now_ms) as u128;
        // active / weight ≤ (c_milli / 1000) × (total + 1) / total_weight, cross-multiplied.
        (active as u128)
            .saturating_mul(total_weight)
            .saturating_mul(1000)
            <= (self.bound_milli as u128)
                .saturating_mul(total + 1)
                .saturating_mul(weight)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;

    use super::*;
    use crate::balance::test_support::{
        backends, case, case_up_to, check_contract, check_even_spread_without_one, ctx, set_active,
        Spread,
    };

    const M: usize = 65537;
    const KEYS: u32 = 100_000;

    /// Client `i` of the synthetic population 10.x.y.z.
    fn client(i: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | i))
    }

    fn pick_for(
        mg: &Maglev,
        b: &[Arc<Backend>],
        ip: IpAddr,
        eligible: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let mut c = ctx(0, 0);
        c.client = Some(ip);
        mg.pick(b, &c, eligible)
    }

    #[test]
    fn table_and_key_shares_follow_weights() {
        let weights = [1, 1, 2, 3, 3];
        let b = backends(&weights);
        let mg = Maglev::new(&b, M, None);
        let mut slots = [0usize; 5];
        for &i in mg.table.iter() {
            slots[i as usize] += 1;
        }
        let mut keys = [0usize; 5];
        for k in 0..KEYS {
            keys[pick_for(&mg, &b, client(k), &|_| true).unwrap()] += 1;
        }
        for i in 0..5 {
            let want = weights[i] as f64 / 10.0;
            let table_share = slots[i] as f64 / M as f64;
            let key_share = keys[i] as f64 / KEYS as f64;
            println!(
                "backend {i}: weight share {want:.4}, table {table_share:.4}, keys {key_share:.4}"
            );
            assert!(
                (table_share - want).abs() < 0.01,
                "backend {i}: table share {table_share}, want {want}"
            );
            assert!(
                (key_share - want).abs() < 0.01,
                "backend {i}: key share {key_share}, want {want}"
            );
        }
    }

    #[test]
    fn weight_zero_gets_no_slots() {
        let b = backends(&[2, 0, 1]);
        let mg = Maglev::new(&b, 1021, None);
        assert!(mg.table.iter().all(|&i| i != 1));
        assert_eq!(
            Maglev::new(&backends(&[0, 0]), 1021, None).pick(&b[..2], &ctx(0, 7), &|_| true),
            None
        );
        assert_eq!(
            Maglev::new(&[], 1021, None).pick(&[], &ctx(0, 7), &|_| true),
            None
        );
    }

    #[test]
    fn removing_one_of_ten_moves_about_a_tenth() {
        let all = backends(&[1; 10]);
        // Remove one from the middle, so the survivors' indices shift: compare by name.
        let removed = 3;
        let rest: Vec<Arc<Backend>> = all
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != removed)
            .map(|(_, b)| b.clone())
            .collect();
        let before = Maglev::new(&all, M, None);
        let after = Maglev::new(&rest, M, None);
        let (mut moved, mut on_survivor, mut stayed, mut on_removed) = (0, 0, 0, 0);
        for k in 0..KEYS {
            let key = hash_key(client(k));
            let was = &all[before.lookup(key).unwrap()].name;
            let is = &rest[after.lookup(key).unwrap()].name;
            if was != is {
                moved += 1;
            }
            if *was == all[removed].name {
                on_removed += 1;
            } else {
                on_survivor += 1;
                stayed += (was == is) as u32;
            }
        }
        let moved_share = moved as f64 / KEYS as f64;
        let stay_share = stayed as f64 / on_survivor as f64;
        let removed_share = on_removed as f64 / KEYS as f64;
        println!(
            "maglev, 1 of 10 removed: moved {moved_share:.4} (removed backend held {removed_share:.4}), \
             survivors' keys kept {stay_share:.4}"
        );
        assert!(
            stay_share >= 0.95,
            "only {stay_share} of the survivors' keys stayed"
        );
        assert!(moved_share >= removed_share);
        assert!((0.09..=0.15).contains(&moved_share), "moved {moved_share}");
    }

    #[test]
    fn an_ineligible_backends_keys_spread_and_no_other_key_moves() {
        let b = backends(&[1; 10]);
        let mg = Maglev::new(&b, M, None);
        let mut spread = [0usize; 10];
        for k in 0..KEYS {
            let ip = client(k);
            let home = pick_for(&mg, &b, ip, &|_| true).unwrap();
            let now = pick_for(&mg, &b, ip, &|i| i != 4).unwrap();
            if home == 4 {
                spread[now] += 1;
            } else {
                assert_eq!(now, home, "a key of a healthy backend moved");
            }
        }
        let total: usize = spread.iter().sum();
        let shares: Vec<String> = spread
            .iter()
            .map(|&n| format!("{:.3}", n as f64 / total as f64))
            .collect();
        println!("orphans of backend 4 went to: {shares:?} (ideal 0.111 each)");
        for (i, &n) in spread.iter().enumerate().filter(|&(i, _)| i != 4) {
            let share = n as f64 / total as f64;
            assert!(
                (share - 1.0 / 9.0).abs() < 0.03,
                "backend {i} took {share} of the orphans"
            );
        }
    }

    #[test]
    fn independent_builds_agree() {
        let b = backends(&[1, 3, 2, 1, 5, 1, 1]);
        let again = backends(&[1, 3, 2, 1, 5, 1, 1]);
        assert_eq!(
            Maglev::new(&b, M, None).table,
            Maglev::new(&again, M, None).table
        );
    }

    #[test]
    fn hashes_are_pinned_across_releases() {
        // Other instances and past releases must place clients the same way:
        // these values may only change together with a release note.
        assert_eq!(hash_key(client(1)), 0x37f0_21e2_a5be_52b2);
        assert_eq!(
            hash_key("2001:db8::1".parse().unwrap()),
            0x136a_6683_66de_5845
        );
        let mg = Maglev::new(&backends(&[1, 1, 1]), 1021, None);
        assert_eq!(mg.table[..12], [2, 1, 0, 0, 2, 0, 2, 1, 2, 0, 2, 0]);
        // Where clients go when their own backend is out (the probe sequence).
        let b = backends(&[1; 10]);
        let mg = Maglev::new(&b, 1021, None);
        for (k, home, then) in [(0, 0, 2), (1, 8, 0), (2, 9, 1), (3, 7, 1)] {
            assert_eq!(pick_for(&mg, &b, client(k), &|_| true), Some(home));
            assert_eq!(pick_for(&mg, &b, client(k), &|i| i != home), Some(then));
        }
    }

    #[test]
    fn same_key_same_backend_on_every_worker() {
        let b = backends(&[1, 2, 1, 1]);
        let mg = Maglev::new(&b, M, None);
        for k in 0..1000 {
            let ip = client(k * 7919);
            let home = pick_for(&mg, &b, ip, &|_| true);
            for worker in 0..4 {
                let mut c = ctx(worker, k as u64 * 31 + worker as u64);
                c.client = Some(ip);
                assert_eq!(mg.pick(&b, &c, &|_| true), home);
            }
        }
        // v4-mapped v6 is the v4 client.
        let v4 = Ipv4Addr::new(10, 1, 2, 3);
        assert_eq!(
            hash_key(IpAddr::V4(v4)),
            hash_key(IpAddr::V6(v4.to_ipv6_mapped()))
        );
        assert_ne!(
            hash_key(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            hash_key(IpAddr::V4(Ipv4Addr::LOCALHOST))
        );
    }

    #[test]
    fn without_a_client_the_random_number_is_the_key() {
        let b = backends(&[1, 1, 1]);
        let mg = Maglev::new(&b, M, None);
        assert_eq!(mg.pick(&b, &ctx(0, 12345), &|_| true), mg.lookup(12345));
        let mut seen = [false; 3];
        for r in 0..100 {
            seen[mg.pick(&b, &ctx(0, r), &|_| true).unwrap()] = true;
        }
        assert_eq!(seen, [true; 3]);
    }

    #[test]
    fn bounded_load_spills_an_overloaded_backends_keys() {
        let b = backends(&[1; 5]);
        for (i, x) in b.iter().enumerate() {
            set_active(x, if i == 2 { 1000 } else { 10 });
        }
        let plain = Maglev::new(&b, M, None);
        let bounded = Maglev::new(&b, M, Some(1.25));
        let (mut spilled, mut homed_on_hot) = (0, 0);
        for k in 0..10_000 {
            let ip = client(k);
            let home = pick_for(&plain, &b, ip, &|_| true).unwrap();
            let got = pick_for(&bounded, &b, ip, &|_| true).unwrap();
            if home == 2 {
                homed_on_hot += 1;
                spilled += (got != 2) as u32;
            } else {
                // 10 ≤ 1.25 × 1041 / 5: everyone else is under the bound.
                assert_eq!(got, home);
            }
        }
        assert!(homed_on_hot > 1000);
        assert_eq!(
            spilled, homed_on_hot,
            "the backend over the bound kept clients"
        );

        // With a factor below 1 every backend can be over the bound at once:
        // then the key's own backend (the first eligible one found) wins.
        let two = &b[..2];
        set_active(&two[0], 10);
        set_active(&two[1], 10);
        let plain = Maglev::new(two, 1021, None);
        let tight = Maglev::new(two, 1021, Some(0.5));
        for k in 0..100 {
            assert_eq!(
                pick_for(&tight, two, client(k), &|_| true),
                pick_for(&plain, two, client(k), &|_| true)
            );
        }
    }

    #[test]
    fn bounded_load_keeps_keys_home_while_under_the_bound() {
        let b = backends(&[1, 2, 1]);
        set_active(&b[0], 10);
        set_active(&b[1], 20);
        set_active(&b[2], 10);
        let plain = Maglev::new(&b, M, None);
        let bounded = Maglev::new(&b, M, Some(1.25));
        for k in 0..10_000 {
            let ip = client(k);
            assert_eq!(
                pick_for(&bounded, &b, ip, &|_| true),
                pick_for(&plain, &b, ip, &|_| true)
            );
        }
    }

    #[test]
    fn big_pools_scan_when_the_walk_finds_nothing() {
        // 200 backends (beyond the bitmask), one eligible: the walk usually
        // misses it and the list scan must find it.
        let b = backends(&[1; 200]);
        let mg = Maglev::new(&b, M, None);
        for k in 0..1000 {
            assert_eq!(pick_for(&mg, &b, client(k), &|i| i == 137), Some(137));
        }
        assert_eq!(pick_for(&mg, &b, client(1), &|_| false), None);
    }

    #[test]
    fn composite_table_sizes_are_rounded_up_to_a_prime() {
        let b = backends(&[1, 1]);
        assert_eq!(Maglev::new(&b, 1000, None).table.len(), 1009);
        assert_eq!(Maglev::new(&b, 0, None).table.len(), 2);
        assert!(is_prime(65537) && is_prime(655_373) && !is_prime(65535));
    }

    #[test]
    fn spreads_evenly_without_any_one_backend() {
        // Every pick is a new client, so the shares are the keys'.
        check_even_spread_without_one(|b| Maglev::new(b, M, None), Spread::Statistical);
        check_even_spread_without_one(|b| Maglev::new(b, M, Some(1.25)), Spread::Statistical);
    }

    proptest! {
        #[test]
        fn picks_only_eligible_weighted_backends(
            case in case(),
            size in prop::sample::select(vec![2usize, 3, 7, 13, 101, 1021]),
            factor in prop::option::of(1.0f64..3.0),
        ) {
            let b = backends(&case.weights);
            check_contract(&Maglev::new(&b, size, factor), &b, &case)?;
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn picks_only_eligible_weighted_backends_in_big_pools(case in case_up_to(150),
            factor in prop::option::of(1.0f64..3.0),) {
            let b = backends(&case.weights);
            check_contract(&Maglev::new(&b, 1021, factor), &b, &case)?;
        }
    }
}
