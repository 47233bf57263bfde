//! Who a limit applies to: the [`ClientKey`] of a client address, and the
//! [`Scope`] (usually one listener) a key is counted in. Owns the address
//! normalisation (IPv4-mapped IPv6 is IPv4, IPv6 is grouped by prefix) and the
//! fixed-seed hash. Must never use a randomly keyed hasher (every worker must
//! compute the same key for the same client) and never return the reserved
//! values 0 (an empty table slot) or `u64::MAX` (a slot being claimed).

use std::net::IpAddr;

/// Seeds of the client-key hash. Any fixed values do; they only have to agree
/// between the workers of one process (the table is not shared with anyone else).
const SEEDS: [u64; 4] = [
    0x6c69_6d69_7473_0001, // "limits" 1
    0x6c69_6d69_7473_0002,
    0x6c69_6d69_7473_0003,
    0x6c69_6d69_7473_0004,
];

static HASHER: ahash::RandomState =
    ahash::RandomState::with_seeds(SEEDS[0], SEEDS[1], SEEDS[2], SEEDS[3]);

/// Key value of a never-used table slot.
pub(super) const EMPTY: u64 = 0;
/// Key value of a slot while one worker (re)initialises it for a new client.
pub(super) const CLAIMING: u64 = u64::MAX;

/// The namespace a client is counted in. Limits are per listener in the
/// config, so the data plane should count each listener's clients apart
/// ([`Scope::listener`]); otherwise one client's connections to two listeners
/// with different rates would spend one shared bucket at two prices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Scope(u64);

impl Scope {
    /// One namespace for the whole process: a client's budget is shared by
    /// every listener that uses it.
    pub const GLOBAL: Scope = Scope(0);

    /// The namespace of the listener with this name. Derived from the name,
    /// not the listener's index, so a reload that adds or removes other
    /// listeners keeps this one's counts. Compute it once per snapshot, not
    /// per connection.
    pub fn listener(name: &str) -> Scope {
        Scope(HASHER.hash_one(("listener", name)))
    }

    /// The namespace of one `rate_limit:` entry of an HTTP route: the
    /// listener's name, the route's position and pool, and the limit's key
    /// as written, so a reload that keeps them keeps the buckets, and two
    /// limits never spend one bucket at two prices.
    pub fn route_limit(listener: &str, route: usize, pool: &str, key: &str) -> Scope {
        Scope(HASHER.hash_one(("route_limit", listener, route as u64, pool, key)))
    }
}

/// A client, as the limits see it: its address (IPv6 reduced to a prefix) in
/// one [`Scope`], hashed to a non-zero `u64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(u64);

impl ClientKey {
    /// The key of `ip` in [`Scope::GLOBAL`]. IPv4 clients are keyed by the
    /// address, IPv4-mapped IPv6 (`::ffff:a.b.c.d`, a v4 client on a `[::]`
    /// listener) by the IPv4 address it carries, other IPv6 clients by the
    /// first `ipv6_prefix` bits (clamped to 128), so one host cannot dodge a
    /// limit by rotating through the addresses of its /64.
    pub fn new(ip: IpAddr, ipv6_prefix: u8) -> ClientKey {
        ClientKey::in_scope(Scope::GLOBAL, ip, ipv6_prefix)
    }

    /// The key of `ip` counted in `scope` (see [`ClientKey::new`]).
    pub fn in_scope(scope: Scope, ip: IpAddr, ipv6_prefix: u8) -> ClientKey {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        let h = match ip {
            IpAddr::V4(v4) => HASHER.hash_one((scope.0, 4u8, u32::from(v4))),
            IpAddr::V6(v6) => {
                let prefix = ipv6_prefix.min(128);
                let mask = match prefix {
                    0 => 0,
                    p => u128::MAX << (128 - u32::from(p)),
                };
                // The prefix length is hashed too: a /56 bucket is not the /64
                // bucket that happens to share its first bits.
                HASHER.hash_one((scope.0, 6u8, prefix, u128::from(v6) & mask))
            }
        };
        ClientKey::from_hash(h)
    }

    /// The key of a request header's value (an API key, a tenant) in
    /// `scope`. Never equal to an address's key but by a 64-bit collision.
    pub fn of_value(scope: Scope, value: &[u8]) -> ClientKey {
        ClientKey::from_hash(HASHER.hash_one((scope.0, "value", value)))
    }

    /// Folds a hash onto the usable key space (never EMPTY or CLAIMING).
    pub(super) fn from_hash(h: u64) -> ClientKey {
        ClientKey(match h {
            EMPTY => 1,
            CLAIMING => CLAIMING - 1,
            h => h,
        })
    }

    /// The hashed value (never 0 or `u64::MAX`).
    pub fn get(self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v6(s: &str) -> IpAddr {
        IpAddr::V6(s.parse::<Ipv6Addr>().unwrap())
    }

    #[test]
    fn ipv4_is_keyed_by_address() {
        let a = ClientKey::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 64);
        let b = ClientKey::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 64);
        assert_ne!(a, b);
        assert_eq!(
            a,
            ClientKey::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 48)
        );
    }

    #[test]
    fn v4_mapped_is_the_ipv4_client() {
        let v4 = ClientKey::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)), 64);
        assert_eq!(ClientKey::new(v6("::ffff:192.0.2.7"), 64), v4);
        assert_eq!(ClientKey::new(v6("::ffff:192.0.2.7"), 128), v4);
    }

    #[test]
    fn ipv6_grouped_by_prefix() {
        let a = ClientKey::new(v6("2001:db8:1:2::1"), 64);
        let b = ClientKey::new(v6("2001:db8:1:2:ffff:ffff:ffff:fffe"), 64);
        let other = ClientKey::new(v6("2001:db8:1:3::1"), 64);
        assert_eq!(a, b);
        assert_ne!(a, other);
        // A /48 grouping puts both /64s together, but is not the /64 bucket.
        let a48 = ClientKey::new(v6("2001:db8:1:2::1"), 48);
        assert_eq!(a48, ClientKey::new(v6("2001:db8:1:3::1"), 48));
        assert_ne!(a48, a);
        // /128 is per address; out-of-range prefixes clamp to 128.
        assert_ne!(
            ClientKey::new(v6("2001:db8::1"), 128),
            ClientKey::new(v6("2001:db8::2"), 128)
        );
        assert_eq!(
            ClientKey::new(v6("2001:db8::1"), 200),
            ClientKey::new(v6("2001:db8::1"), 128)
        );
        // /0: every IPv6 client is one.
        assert_eq!(
            ClientKey::new(v6("2001:db8::1"), 0),
            ClientKey::new(v6("fe80::1"), 0)
        );
    }

    #[test]
    fn scopes_count_apart_and_are_stable() {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let web = Scope::listener("web");
        assert_eq!(web, Scope::listener("web"));
        assert_ne!(web, Scope::listener("db"));
        assert_ne!(
            ClientKey::in_scope(web, ip, 64),
            ClientKey::in_scope(Scope::listener("db"), ip, 64)
        );
        assert_eq!(
            ClientKey::in_scope(Scope::GLOBAL, ip, 64),
            ClientKey::new(ip, 64)
        );
    }

    #[test]
    fn values_are_keyed_apart_per_scope() {
        let a = Scope::route_limit("web", 0, "api", "header:X-API-Key");
        let b = Scope::route_limit("web", 1, "api", "header:X-API-Key");
        assert_eq!(a, Scope::route_limit("web", 0, "api", "header:X-API-Key"));
        assert_ne!(a, b);
        assert_eq!(ClientKey::of_value(a, b"k1"), ClientKey::of_value(a, b"k1"));
        assert_ne!(ClientKey::of_value(a, b"k1"), ClientKey::of_value(a, b"k2"));
        assert_ne!(ClientKey::of_value(a, b"k1"), ClientKey::of_value(b, b"k1"));
    }

    #[test]
    fn reserved_values_never_escape() {
        assert_eq!(ClientKey::from_hash(EMPTY).get(), 1);
        assert_eq!(ClientKey::from_hash(CLAIMING).get(), CLAIMING - 1);
        assert_eq!(ClientKey::from_hash(42).get(), 42);
    }
}
