//! The per-client state table shared by every worker: a fixed array of
//! cache-line slots, found by open addressing over a short probe window and
//! claimed, reused and evicted by compare-and-swap. Owns the slot layout and
//! the rules for who may touch a slot's counters. Must never lock, allocate
//! after construction, or grow: a flood of distinct sources recycles slots
//! (counted in `evictions`) instead.
//!
//! ## Slot lifecycle
//! `key` is `EMPTY` (never used), `CLAIMING` (one worker is resetting it for a
//! new client; everyone else skips it) or a client's key. To take a slot a
//! worker CASes the key it saw to `CLAIMING`, resets the counters, bumps the
//! slot's generation and publishes the new key with a release store, so a
//! worker that finds the key (acquire load) sees the fresh counters.
//!
//! ## Generations
//! The concurrent count lives in one word with a 32-bit generation (`gen <<
//! 32 | count`). Tickets carry the generation they counted in; a release only
//! decrements when the generation still matches, so a connection whose slot
//! was recycled (even for the same client again) never touches the new
//! tenancy's count. 2³² recyclings of one slot during one connection would be
//! needed to confuse them.

use std::sync::atomic::{
    AtomicU64, AtomicUsize,
    Ordering::{Acquire, Relaxed, Release},
};

use super::key::{ClientKey, CLAIMING, EMPTY};

/// Slots scanned per lookup. With least-recently-seen eviction inside the
/// window the table behaves as an 8-way set-associative cache; CPU caches
/// find 8 ways close to fully associative, and 8 slots are 8 cache lines, a
/// few hundred nanoseconds on a miss.
pub const PROBE_WINDOW: usize = 8;

/// A slot idle this long (and holding no state that matters, see
/// `Slot::is_expired`) is free for another client. 60 s: long enough that a
/// client reconnecting every few seconds keeps its slot, short enough that
/// yesterday's scanners don't crowd today's clients.
pub const IDLE_EXPIRY_NS: u64 = 60_000_000_000;

/// Largest capacity: slot indices travel in a `u32`.
const MAX_CAPACITY: usize = 1 << 31;

/// How often a lookup retries after losing a race for a slot. Each lost race
/// means another worker made progress, so this is only reached under a flood
/// aimed at one probe window; the caller then goes on without a slot.
const CLAIM_ATTEMPTS: usize = 8;

const COUNT_MASK: u64 = u32::MAX as u64;

/// One client's state. 48 bytes of atomics, padded to a 64-byte cache line
/// so that two clients' slots never share a line between workers.
#[derive(Default)]
#[repr(align(64))]
pub(super) struct Slot {
    /// The client's key, or EMPTY / CLAIMING.
    pub key: AtomicU64,
    /// When the client was last admitted or moved bytes (monotonic ns).
    pub last_seen_ns: AtomicU64,
    /// Theoretical arrival time of the next connection (see `gcra`).
    pub conn_tat: AtomicU64,
    /// `generation << 32 | concurrent connections`.
    pub conns: AtomicU64,
    /// Bandwidth TATs, indexed by relay direction.
    pub bw_tat: [AtomicU64; 2],
}

const _: () = assert!(std::mem::size_of::<Slot>() == 64);

/// Generation of a `conns` word.
pub(super) fn gen_of(word: u64) -> u32 {
    (word >> 32) as u32
}

/// Connection count of a `conns` word.
pub(super) fn count_of(word: u64) -> u32 {
    (word & COUNT_MASK) as u32
}

impl Slot {
    /// Whether this slot can go to another client without losing anything:
    /// idle for [`IDLE_EXPIRY_NS`], no open connection counted, and every
    /// bucket full again (a TAT in the future is a debt the client still owes).
    fn is_expired(&self, now_ns: u64) -> bool {
        now_ns.saturating_sub(self.last_seen_ns.load(Relaxed)) > IDLE_EXPIRY_NS
            && count_of(self.conns.load(Relaxed)) == 0
            && self.conn_tat.load(Relaxed) <= now_ns
            && self.bw_tat.iter().all(|t| t.load(Relaxed) <= now_ns)
    }
}

/// The splitmix64 finaliser (Steele, Lea & Flood 2014): a bijection whose
/// output bits each depend on every input bit.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The fixed-capacity table.
pub(super) struct Table {
    slots: Box<[Slot]>,
    mask: usize,
    /// Secret per-process salt of slot positions (see `window`).
    salt: u64,
    /// Live slots taken from their client before they expired.
    evictions: AtomicU64,
    /// Slots ever taken out of EMPTY (they never go back).
    occupied: AtomicUsize,
}

impl Table {
    /// A table of `capacity` rounded up to a power of two, at least one probe
    /// window, at most 2³¹, placing keys by `salt`. All memory is allocated
    /// here, zeroed, once.
    pub fn new(capacity: usize, salt: u64) -> Table {
        let capacity = capacity
            .clamp(PROBE_WINDOW, MAX_CAPACITY)
            .next_power_of_two();
        let slots: Box<[Slot]> = (0..capacity).map(|_| Slot::default()).collect();
        Table {
            slots,
            mask: capacity - 1,
            salt,
            evictions: AtomicU64::new(0),
            occupied: AtomicUsize::new(0),
        }
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    pub fn evictions(&self) -> u64 {
        self.evictions.load(Relaxed)
    }

    pub fn occupied(&self) -> usize {
        self.occupied.load(Relaxed)
    }

    pub fn slot(&self, index: u32) -> &Slot {
        &self.slots[index as usize]
    }

    /// Slots holding a client that has not expired at `now_ns` (a scan: for
    /// metrics scrapes, not the data path).
    pub fn live(&self, now_ns: u64) -> usize {
        self.slots
            .iter()
            .filter(|s| {
                let k = s.key.load(Relaxed);
                k != EMPTY && k != CLAIMING && !s.is_expired(now_ns)
            })
            .count()
    }

    /// The probe window of `key`. WHY salted, when client keys are a fixed
    /// hash (STYLE 4): anyone can compute a key, so with unsalted positions an
    /// attacker could pick a few sources (IPv6 /64s of its own /48) that share
    /// one window and evict its own entry at will, resetting its counts. The
    /// salt keeps positions unpredictable; nothing outside the process ever
    /// sees a position, so nothing needs them to agree across processes.
    fn window(&self, key: ClientKey) -> impl Iterator<Item = usize> + '_ {
        let start = mix64(key.get() ^ self.salt) as usize & self.mask;
        (0..PROBE_WINDOW).map(move |i| (start + i) & self.mask)
    }

    /// The slot holding `key`, if any (first in window order: if two workers
    /// inserted the same new client at the same instant, everyone settles on
    /// the first copy and the other expires).
    pub fn find(&self, key: ClientKey) -> Option<u32> {
        self.window(key)
            .find(|&i| self.slots[i].key.load(Acquire) == key.get())
            .map(|i| i as u32)
    }

    /// The slot of `key`, claiming one if the client has none; marks it seen
    /// at `now_ns`. `None` only when every claim attempt lost a race.
    pub fn find_or_claim(&self, key: ClientKey, now_ns: u64) -> Option<u32> {
        for _ in 0..CLAIM_ATTEMPTS {
            if let Some(index) = self.find(key) {
                self.touch(index, now_ns);
                return Some(index);
            }
            if let Some(found) = self.try_claim(key, now_ns) {
                return Some(found);
            }
        }
        None
    }

    /// Records activity, so that an active client is the last one evicted.
    pub fn touch(&self, index: u32, now_ns: u64) {
        let seen = &self.slot(index).last_seen_ns;
        // WHY fetch_max: workers' clocks are read at slightly different
        // moments; last-seen must not go back in time.
        if seen.load(Relaxed) < now_ns {
            seen.fetch_max(now_ns, Relaxed);
        }
    }

    /// One attempt to take a slot of `key`'s window for it: an empty one,
    /// else an expired one, else the least recently seen live one, preferring
    /// slots with no open connections (evicting those loses only rate history,
    /// while evicting a slot with connections forgets its concurrent count).
    fn try_claim(&self, key: ClientKey, now_ns: u64) -> Option<u32> {
        let mut victim: Option<(usize, u64)> = None;
        // (has connections, last seen): the smallest is evicted first.
        let mut victim_rank = (true, u64::MAX);
        let mut chosen: Option<(usize, u64, bool)> = None; // (index, seen key, live)
        for i in self.window(key) {
            let slot = &self.slots[i];
            let k = slot.key.load(Relaxed);
            if k == EMPTY {
                chosen = Some((i, k, false));
                break;
            }
            if k == CLAIMING {
                continue;
            }
            if slot.is_expired(now_ns) {
                if chosen.is_none() {
                    chosen = Some((i, k, false));
                }
                continue;
            }
            let rank = (
                count_of(slot.conns.load(Relaxed)) > 0,
                slot.last_seen_ns.load(Relaxed),
            );
            if victim.is_none() || rank < victim_rank {
                victim = Some((i, k));
                victim_rank = rank;
            }
        }
        let (index, seen, live) = chosen.or(victim.map(|(i, k)| (i, k, true)))?;
        let slot = &self.slots[index];
        slot.key
            .compare_exchange(seen, CLAIMING, Acquire, Relaxed)
            .ok()?;
        // Only this worker writes the slot now; anyone still holding its old
        // key fails their key or generation checks from here on.
        slot.conns
            .fetch_update(Release, Relaxed, |w| {
                Some(u64::from(gen_of(w).wrapping_add(1)) << 32)
            })
            .ok();
        slot.conn_tat.store(0, Relaxed);
        for t in &slot.bw_tat {
            t.store(0, Relaxed);
        }
        slot.last_seen_ns.store(now_ns, Relaxed);
        slot.key.store(key.get(), Release);
        if seen == EMPTY {
            self.occupied.fetch_add(1, Relaxed);
        }
        if live {
            self.evictions.fetch_add(1, Relaxed);
        }
        Some(index as u32)
    }

    /// Counts one more connection of `key` in slot `index` if the slot still
    /// holds `key` and `admit(count)` agrees. Returns the generation counted
    /// in, `Err(Some(count))` when `admit` refused, `Err(None)` when the slot
    /// no longer holds `key` (look it up again).
    pub fn increment(
        &self,
        index: u32,
        key: ClientKey,
        admit: impl Fn(u32) -> bool,
    ) -> Result<u32, Option<u32>> {
        let slot = self.slot(index);
        let mut word = slot.conns.load(Acquire);
        loop {
            // The key is checked after the word is read: if the word came
            // from a re-initialisation, that claim's CAS on the key happened
            // before, so this load cannot still see `key` (unless the same
            // client was put back, which makes the word its own again).
            if slot.key.load(Acquire) != key.get() {
                return Err(None);
            }
            let count = count_of(word);
            if !admit(count) || count == u32::MAX {
                return Err(Some(count));
            }
            match slot
                .conns
                .compare_exchange_weak(word, word + 1, Acquire, Acquire)
            {
                Ok(_) => return Ok(gen_of(word)),
                Err(seen) => word = seen,
            }
        }
    }

    /// Uncounts one connection counted in generation `gen` of slot `index`;
    /// does nothing if the slot has been recycled since, or its count is
    /// already zero.
    pub fn decrement(&self, index: u32, gen: u32) {
        let Some(slot) = self.slots.get(index as usize) else {
            return;
        };
        let _ = slot.conns.fetch_update(Relaxed, Relaxed, |w| {
            (gen_of(w) == gen && count_of(w) > 0).then(|| w - 1)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn key(n: u64) -> ClientKey {
        ClientKey::from_hash(n)
    }

    #[test]
    fn slot_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Slot>(), 64);
        assert_eq!(std::mem::align_of::<Slot>(), 64);
    }

    #[test]
    fn capacity_rounds_up_to_a_power_of_two() {
        assert_eq!(Table::new(0, 0).capacity(), PROBE_WINDOW);
        assert_eq!(Table::new(1000, 0).capacity(), 1024);
        assert_eq!(Table::new(65536, 0).capacity(), 65536);
    }

    #[test]
    fn same_key_same_slot() {
        let t = Table::new(64, 0);
        let a = t.find_or_claim(key(5), SEC).unwrap();
        assert_eq!(t.find_or_claim(key(5), 2 * SEC), Some(a));
        assert_eq!(t.find(key(5)), Some(a));
        assert_eq!(t.find(key(6)), None);
        assert_eq!(t.occupied(), 1);
    }

    #[test]
    fn a_full_window_evicts_the_least_recently_seen_idle_slot() {
        // Capacity 8: the window is the whole table.
        let t = Table::new(8, 0);
        for k in 1..=8 {
            t.find_or_claim(key(k * 8), k * SEC).unwrap();
        }
        // The oldest (key 8) has a connection: the next oldest idle one goes.
        let held = t.find(key(8)).unwrap();
        t.increment(held, key(8), |_| true).unwrap();
        t.find_or_claim(key(9 * 8), 10 * SEC).unwrap();
        assert_eq!(t.evictions(), 1);
        assert!(t.find(key(8)).is_some());
        assert!(t.find(key(16)).is_none());
        assert_eq!(t.occupied(), 8);
    }

    #[test]
    fn recycled_slot_ignores_old_generation() {
        let t = Table::new(8, 0);
        let a = t.find_or_claim(key(1), SEC).unwrap();
        let gen = t.increment(a, key(1), |_| true).unwrap();
        // Seven busier clients fill the table; the eighth evicts key 1, the
        // least recently seen of eight slots that all hold a connection.
        for n in 2..=9 {
            let i = t.find_or_claim(key(n), SEC + n).unwrap();
            t.increment(i, key(n), |_| true).unwrap();
        }
        assert_eq!(t.find(key(1)), None);
        assert_eq!(t.evictions(), 1);
        assert_eq!(t.slot(a).key.load(Relaxed), 9);
        // The old ticket's release leaves the new owner's count alone.
        t.decrement(a, gen);
        assert_eq!(count_of(t.slot(a).conns.load(Relaxed)), 1);
        // ...and so does an increment that still thinks the slot is key 1's.
        assert_eq!(t.increment(a, key(1), |_| true), Err(None));
    }

    #[test]
    fn expired_slots_are_reused_without_eviction() {
        let t = Table::new(8, 0);
        for n in 1..=8 {
            t.find_or_claim(key(n), SEC).unwrap();
        }
        // Not yet idle long enough: a newcomer evicts.
        t.find_or_claim(key(9), 2 * SEC).unwrap();
        assert_eq!(t.evictions(), 1);
        // Long idle, nothing owed: reused, not counted as an eviction.
        let later = 2 * SEC + IDLE_EXPIRY_NS + 1;
        assert_eq!(t.live(later), 0);
        for n in 10..=17 {
            t.find_or_claim(key(n), later).unwrap();
        }
        assert_eq!(t.evictions(), 1);
        assert_eq!(t.live(later), 8);
        assert_eq!(t.occupied(), 8);
    }

    #[test]
    fn a_slot_with_connections_or_debt_does_not_expire() {
        let t = Table::new(8, 0);
        let a = t.find_or_claim(key(1), SEC).unwrap();
        t.increment(a, key(1), |_| true).unwrap();
        let b = t.find_or_claim(key(2), SEC).unwrap();
        t.slot(b).conn_tat.store(SEC + 10 * IDLE_EXPIRY_NS, Relaxed);
        let later = SEC + 2 * IDLE_EXPIRY_NS;
        assert!(!t.slot(a).is_expired(later));
        assert!(!t.slot(b).is_expired(later));
        assert_eq!(t.live(later), 2);
    }
}
