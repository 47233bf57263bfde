//! Per-client traffic limits, sans IO: connection rate (GCRA), concurrent
//! connections, bandwidth (a throttle, never a refusal), and allow/deny lists.
//! Owns the decisions and the shared per-client state; the workers own the
//! sockets, timers and metrics. Must never lock, allocate per connection, read
//! a clock (every call takes `now_ns`, monotonic nanoseconds, so tests inject
//! time) or grow past the table's capacity.
//!
//! ## How the worker uses it
//! On accept, before any backend connect: [`access_allowed`] on the client
//! address, then [`Limiter::admit`] with the client's [`ClientKey`] (built in
//! the listener's [`Scope`]). An admitted connection keeps its [`Ticket`] and
//! hands it to [`Limiter::release`] exactly once when it closes, and to
//! [`Limiter::bandwidth_grant`] before forwarding bytes when the listener has
//! `per_ip_bandwidth`.
//!
//! The HTTP plane also counts requests: a route's `rate_limit:` entries each
//! have a [`Scope::route_limit`], a key from the client address or a header
//! value ([`ClientKey::of_value`]) in it, and [`Limiter::request`] per
//! request with the entry's [`RequestRate`]. They share the one table (and
//! its bound) with the per-client connection state.
//!
//! ## Reloads
//! The [`Limiter`] is created once per process and holds no config: every call
//! takes the listener's current [`Limits`]. A reload that changes a rate, a
//! cap or a bandwidth therefore keeps every client's counts and buckets; the
//! new values apply from the next call. (Keys are per listener *name*, see
//! [`Scope::listener`], so renaming a listener starts it afresh.)
//!
//! ## Shared state
//! One table for all workers and listeners (see `table.rs` for the slot
//! layout and lifecycle), bounded by `limits_table_size`. When a probe window
//! is full of live clients the least recently seen one without open
//! connections is evicted (then the least recently seen of all); the evicted
//! client starts afresh, which only ever errs towards admitting. Tickets of an
//! evicted slot do nothing on release. Slot positions are salted per process
//! so nobody can aim sources at one client's probe window.

mod gcra;
mod key;
mod table;

use std::net::IpAddr;

pub use gcra::{gcra_refund, gcra_take, gcra_take_up_to, ByteRate};
pub use key::{ClientKey, Scope};
#[cfg(test)]
use table::IDLE_EXPIRY_NS;

use crate::config::{Cidr, Limits};
use crate::outcome::Reject;
use table::{count_of, Table};

const NS_PER_SEC: f64 = 1e9;

/// Smallest bandwidth burst: two of the relay's 32 KiB receive buffers, so a
/// throttled connection still moves whole buffers.
pub const MIN_BANDWIDTH_BURST: u64 = 64 * 1024;
/// The bandwidth burst is at least 1/this of a second's worth of the rate
/// (100 ms, as the issue suggests): the shaping is steady at any scale a
/// person notices, while a short exchange after a pause goes at full speed.
const BANDWIDTH_BURST_DIVISOR: u64 = 10;
/// A throttled direction waits until at least this much (or all it asked
/// for, if less) can go: half a relay buffer, so a 1 MB/s client wakes about
/// 60 times a second instead of once per packet.
pub const MIN_BANDWIDTH_GRANT: u64 = 16 * 1024;

/// The outcome of [`Limiter::admit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead; keep the ticket until the connection closes.
    Admit(Ticket),
    /// Refuse (close, or tarpit per the listener's `action`), for
    /// [`Reject::Rate`] or [`Reject::PerIpConnections`]. A refused
    /// connection holds nothing: there is no ticket to release.
    Reject(Reject),
}

/// Proof of one counted connection: where it was counted (slot and the slot's
/// generation at the time) and for whom. Give it to [`Limiter::release`]
/// exactly once. A ticket is `Copy` so it can sit in the connection's state,
/// but the limiter cannot tell two releases of one ticket from the releases
/// of two connections of the same client: keep it as `Option<Ticket>` and
/// `take()` it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    slot: u32,
    gen: u32,
    key: u64,
}

/// Times `admit` follows a client whose slot was recycled between its lookup
/// and its count. Each time takes another worker recycling that very slot in
/// those few nanoseconds, i.e. a flood aimed at one window; past this, admit
/// uncounted (fail open, as when no slot can be claimed).
const COUNT_ATTEMPTS: usize = 4;

/// Slot index of a ticket that was not counted anywhere (see `admit`).
const NO_SLOT: u32 = u32::MAX;

impl Ticket {
    /// The client this ticket was issued to.
    pub fn key(&self) -> ClientKey {
        ClientKey::from_hash(self.key)
    }
}

/// How much a direction may forward now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// Forward up to this many bytes (never more than asked, possibly less).
    Now(usize),
    /// Nothing yet: ask again after this many nanoseconds.
    After(u64),
}

/// The per-client state of the whole process, shared by all workers (put it
/// in an `Arc`; every method takes `&self`).
pub struct Limiter {
    table: Table,
}

/// Emission interval and burst tolerance (ns) of a connection rate.
fn connection_rate(rate: f64, burst: Option<u32>) -> (u64, u64) {
    // Saturating float → int casts: an absurdly low rate becomes "one per
    // ~584 years", an infinite one "one per nanosecond".
    let interval = ((NS_PER_SEC / rate).round() as u64).max(1);
    // Default burst: the rate (a second's worth), at least 1, as the config
    // documents.
    let burst = burst.map_or_else(|| (rate.ceil() as u64).max(1), u64::from);
    (interval, interval.saturating_mul(burst))
}

/// A route's per-request rate (`rate_limit:`) as GCRA needs it; compute it
/// once per snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestRate {
    interval_ns: u64,
    tolerance_ns: u64,
}

impl RequestRate {
    /// `rate` requests per second with `burst` at once.
    pub fn new(rate: f64, burst: u32) -> RequestRate {
        let (interval_ns, tolerance_ns) = connection_rate(rate, Some(burst.max(1)));
        RequestRate {
            interval_ns,
            tolerance_ns,
        }
    }
}

/// The bucket shape of a `per_ip_bandwidth`.
fn byte_rate(bytes_per_sec: u64) -> ByteRate {
    ByteRate::new(
        bytes_per_sec,
        MIN_BANDWIDTH_BURST.max(bytes_per_sec / BANDWIDTH_BURST_DIVISOR),
    )
}

impl Limiter {
    /// A limiter with room for `capacity` clients (rounded up to a power of
    /// two). Allocates 64 bytes per slot, once. Slot positions are salted with
    /// a random number (see `table.rs`).
    pub fn new(capacity: usize) -> Limiter {
        use std::hash::BuildHasher;
        let salt = std::hash::RandomState::new().hash_one(capacity);
        Limiter::with_salt(capacity, salt)
    }

    /// [`Limiter::new`] with a chosen salt, for reproducible tests and
    /// benchmarks.
    pub fn with_salt(capacity: usize, salt: u64) -> Limiter {
        Limiter {
            table: Table::new(capacity, salt),
        }
    }

    /// Decides whether a new connection from `key` may proceed under `limits`
    /// at `now_ns`. The rate is checked first and spends a token for every
    /// connection that passes it, even one then refused for the concurrent
    /// cap (a client hammering at its cap is also over its rate, as HAProxy's
    /// `conn_rate` counts attempts). A refused connection never holds a unit
    /// of the concurrent count.
    ///
    /// Connections are counted even without `per_ip_connections`, so that a
    /// reload adding a cap sees the connections already open.
    pub fn admit(&self, key: ClientKey, limits: &Limits, now_ns: u64) -> Verdict {
        let Some(mut index) = self.table.find_or_claim(key, now_ns) else {
            // WHY fail open: every claim lost a race, which takes a flood
            // aimed at this one probe window; refusing would let that flood
            // lock out whoever shares the window.
            return Verdict::Admit(Ticket::uncounted(key));
        };
        if let Some(rate) = limits.per_ip_rate {
            if rate.is_nan() || rate <= 0.0 {
                return Verdict::Reject(Reject::Rate);
            }
            let (interval, tolerance) = connection_rate(rate, limits.per_ip_burst);
            let tat = &self.table.slot(index).conn_tat;
            if gcra_take(tat, now_ns, interval, tolerance, 1).is_err() {
                return Verdict::Reject(Reject::Rate);
            }
        }
        let cap = limits.per_ip_connections;
        // The slot can be recycled between the lookup and the count; then
        // count in the client's new slot (its rate token is already spent).
        for _ in 0..COUNT_ATTEMPTS {
            match self
                .table
                .increment(index, key, |open| cap.is_none_or(|cap| open < cap))
            {
                Ok(gen) => {
                    return Verdict::Admit(Ticket {
                        slot: index,
                        gen,
                        key: key.get(),
                    })
                }
                Err(Some(_)) => return Verdict::Reject(Reject::PerIpConnections),
                Err(None) => match self.table.find_or_claim(key, now_ns) {
                    Some(i) => index = i,
                    None => break,
                },
            }
        }
        Verdict::Admit(Ticket::uncounted(key))
    }

    /// Counts one request of `key` (in a route limit's [`Scope`]) under
    /// `rate` at `now_ns`: `Ok` admits it, `Err(ns)` refuses it and says how
    /// long until one would be admitted. The key's slot in the shared table
    /// holds only this limit's bucket (keys of other scopes hash apart).
    pub fn request(&self, key: ClientKey, rate: RequestRate, now_ns: u64) -> Result<(), u64> {
        let Some(index) = self.table.find_or_claim(key, now_ns) else {
            // WHY fail open: as in `admit`, only a lost race gets here.
            return Ok(());
        };
        let tat = &self.table.slot(index).conn_tat;
        gcra_take(tat, now_ns, rate.interval_ns, rate.tolerance_ns, 1)
    }

    /// Uncounts a closed connection. A ticket whose slot has since gone to
    /// another client (or been recycled for this one) does nothing; the
    /// count never goes below zero.
    pub fn release(&self, ticket: Ticket) {
        if ticket.slot != NO_SLOT {
            self.table.decrement(ticket.slot, ticket.gen);
        }
    }

    /// How many of `want` bytes direction `dir` (0 or 1, the relay's `Dir`)
    /// of the ticket's connection may forward now under `bytes_per_sec` for
    /// the client, shared by all its connections. A throttle, never a
    /// refusal: either `Now(n)` with `0 < n <= want` (`Now(0)` only when
    /// `want` is 0), or `After(ns)` until at least `min(want, 16 KiB)` can go.
    /// `bytes_per_sec == 0` means no limit.
    ///
    /// Charge bytes already in hand (received, or spliced into the pipe), so
    /// that a short read is not paid for; give back anything granted but not
    /// written with [`Limiter::bandwidth_refund`].
    pub fn bandwidth_grant(
        &self,
        ticket: Ticket,
        dir: usize,
        bytes_per_sec: u64,
        want: usize,
        now_ns: u64,
    ) -> Grant {
        if bytes_per_sec == 0 || want == 0 {
            return Grant::Now(want);
        }
        debug_assert!(dir < 2, "relay direction {dir}");
        let Some(index) = self.bandwidth_slot(ticket, now_ns) else {
            // WHY fail open: as in `admit`, only a lost race gets here.
            return Grant::Now(want);
        };
        let tat = &self.table.slot(index).bw_tat[dir & 1];
        let want = u64::try_from(want).unwrap_or(u64::MAX);
        match gcra_take_up_to(
            tat,
            now_ns,
            byte_rate(bytes_per_sec),
            want,
            MIN_BANDWIDTH_GRANT,
        ) {
            Ok(n) => Grant::Now(usize::try_from(n).unwrap_or(usize::MAX)),
            Err(ns) => Grant::After(ns),
        }
    }

    /// Gives back `bytes` of an earlier grant that were not forwarded (a
    /// short write), with the same `dir` and `bytes_per_sec`.
    pub fn bandwidth_refund(
        &self,
        ticket: Ticket,
        dir: usize,
        bytes_per_sec: u64,
        bytes: usize,
        now_ns: u64,
    ) {
        if bytes_per_sec == 0 || bytes == 0 {
            return;
        }
        if let Some(index) = self.bandwidth_slot(ticket, now_ns) {
            let tat = &self.table.slot(index).bw_tat[dir & 1];
            gcra_refund(tat, byte_rate(bytes_per_sec), bytes as u64);
        }
    }

    /// The client's slot for bandwidth: the ticket's while it still holds the
    /// client, else wherever the client is now (a bandwidth budget is the
    /// client's, not the connection's, so it follows an evicted client).
    fn bandwidth_slot(&self, ticket: Ticket, now_ns: u64) -> Option<u32> {
        let index = ticket.slot;
        if index != NO_SLOT
            && (index as usize) < self.table.capacity()
            && self
                .table
                .slot(index)
                .key
                .load(std::sync::atomic::Ordering::Acquire)
                == ticket.key
        {
            self.table.touch(index, now_ns);
            return Some(index);
        }
        self.table.find_or_claim(ticket.key(), now_ns)
    }

    /// Live clients taken from their slot before they expired (a counter, for
    /// metrics).
    pub fn evictions(&self) -> u64 {
        self.table.evictions()
    }

    /// Slots in use, counting expired clients not yet replaced (cheap; a
    /// high-water mark once the table has filled).
    pub fn len_estimate(&self) -> usize {
        self.table.occupied()
    }

    /// Clients not yet expired at `now_ns` (scans the whole table: for metrics
    /// scrapes and the admin API, not the data path).
    pub fn live_estimate(&self, now_ns: u64) -> usize {
        self.table.live(now_ns)
    }

    /// Number of slots (`limits_table_size` rounded up to a power of two).
    pub fn capacity(&self) -> usize {
        self.table.capacity()
    }

    /// Connections currently counted for `key` (0 if it has no slot).
    pub fn connections(&self, key: ClientKey) -> u32 {
        self.table.find(key).map_or(0, |i| {
            let conns = &self.table.slot(i).conns;
            count_of(conns.load(std::sync::atomic::Ordering::Relaxed))
        })
    }
}

impl Ticket {
    /// A ticket for a connection that could not be counted: releasing it does
    /// nothing; bandwidth still finds the client by key.
    fn uncounted(key: ClientKey) -> Ticket {
        Ticket {
            slot: NO_SLOT,
            gen: 0,
            key: key.get(),
        }
    }
}

/// Whether `ip` may connect at all: `deny` is checked first, then `allow`
/// (empty = everyone). The error is why it is refused: [`Reject::Deny`] or
/// [`Reject::NotAllowed`]. IPv4-mapped IPv6 clients match IPv4 networks.
pub fn access_allowed(ip: IpAddr, allow: &[Cidr], deny: &[Cidr]) -> Result<(), Reject> {
    if deny.iter().any(|net| net.contains(ip)) {
        return Err(Reject::Deny);
    }
    if !allow.is_empty() && !allow.iter().any(|net| net.contains(ip)) {
        return Err(Reject::NotAllowed);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
