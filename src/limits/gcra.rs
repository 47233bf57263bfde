//! The generic cell rate algorithm (GCRA, ATM Forum TM 4.0; the "virtual
//! scheduling" form): a token bucket kept as one number, the theoretical
//! arrival time (TAT) of the next unit at the configured rate. Owns the
//! arithmetic of taking units from a bucket stored in an `AtomicU64`, for
//! connection rates (all-or-nothing, [`gcra_take`]) and for bandwidth (as much
//! as there is, [`gcra_take_up_to`]). Pure: the clock is an argument. Must
//! never block, lock or allocate, and never let a unit through above the rate.
//!
//! A bucket is full when `TAT <= now`. Taking `cost` units moves the TAT to
//! `max(TAT, now) + cost × emission_interval`, allowed while the result is no
//! more than `burst_tolerance` ahead of `now`. With `burst_tolerance =
//! burst × emission_interval`, a full bucket lets exactly `burst` units
//! through at once, then one per emission interval.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

const NS_PER_SEC: u128 = 1_000_000_000;

/// Takes `cost` units from the bucket `tat`, or says how long until it could.
///
/// `Err(ns)` leaves the bucket untouched; retrying after `ns` will succeed if
/// nobody else takes from the bucket meanwhile. A `cost` whose
/// `cost × emission_interval_ns` exceeds `burst_tolerance_ns` can never be
/// taken (use [`gcra_take_up_to`] for amounts that may be split). Correct under
/// any number of concurrent callers: the TAT only moves by compare-and-swap.
pub fn gcra_take(
    tat: &AtomicU64,
    now_ns: u64,
    emission_interval_ns: u64,
    burst_tolerance_ns: u64,
    cost: u64,
) -> Result<(), u64> {
    let increment = emission_interval_ns.saturating_mul(cost);
    // WHY Relaxed: the TAT is the whole state of the bucket; no other memory
    // is published through it, and the CAS alone makes the update atomic.
    let mut current = tat.load(Relaxed);
    loop {
        let new_tat = current.max(now_ns).saturating_add(increment);
        let ahead = new_tat - now_ns;
        if ahead > burst_tolerance_ns {
            return Err(ahead - burst_tolerance_ns);
        }
        match tat.compare_exchange_weak(current, new_tat, Relaxed, Relaxed) {
            Ok(_) => return Ok(()),
            Err(seen) => current = seen,
        }
    }
}

/// A byte rate as GCRA needs it: the rate itself (a byte is a fraction of a
/// nanosecond at multi-GB/s, so the emission interval is not rounded to whole
/// nanoseconds) and the burst tolerance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRate {
    bytes_per_sec: u64,
    burst_bytes: u64,
    burst_tolerance_ns: u64,
}

impl ByteRate {
    /// `bytes_per_sec` (at least 1) with a burst of `burst_bytes` (at least 1).
    pub fn new(bytes_per_sec: u64, burst_bytes: u64) -> ByteRate {
        let bytes_per_sec = bytes_per_sec.max(1);
        let burst_bytes = burst_bytes.max(1);
        // Rounded up, so that a full bucket holds at least `burst_bytes`.
        let burst_tolerance_ns = ns_for(burst_bytes, bytes_per_sec);
        ByteRate {
            bytes_per_sec,
            burst_bytes,
            burst_tolerance_ns,
        }
    }
}

/// Nanoseconds `bytes` take at `rate` bytes per second, rounded up (so a
/// rounding error never lets a byte through early), saturating.
fn ns_for(bytes: u64, rate: u64) -> u64 {
    let ns = (u128::from(bytes) * NS_PER_SEC).div_ceil(u128::from(rate));
    u64::try_from(ns).unwrap_or(u64::MAX)
}

/// Whole bytes `ns` nanoseconds are worth at `rate`, rounded down, saturating.
fn bytes_in(ns: u64, rate: u64) -> u64 {
    let bytes = u128::from(ns) * u128::from(rate) / NS_PER_SEC;
    u64::try_from(bytes).unwrap_or(u64::MAX)
}

/// Takes as many bytes as the bucket holds, up to `want`, but not fewer than
/// `min(want, min_grant, burst)`: returns `Ok(granted)` with `granted` in that
/// range, or `Err(ns)`, the time until that minimum will be there. The
/// minimum keeps a throttled connection from waking for a few bytes at a time.
/// `want == 0` is `Ok(0)`.
pub fn gcra_take_up_to(
    tat: &AtomicU64,
    now_ns: u64,
    rate: ByteRate,
    want: u64,
    min_grant: u64,
) -> Result<u64, u64> {
    if want == 0 {
        return Ok(0);
    }
    let least = want.min(min_grant).min(rate.burst_bytes).max(1);
    let least_ns = ns_for(least, rate.bytes_per_sec);
    let mut current = tat.load(Relaxed);
    loop {
        let base = current.max(now_ns);
        // Time already promised to earlier grants.
        let debt = base - now_ns;
        let room = rate.burst_tolerance_ns.saturating_sub(debt);
        if room < least_ns {
            return Err(least_ns - room);
        }
        // room ≥ ns_for(least) ⇒ bytes_in(room) ≥ least, and
        // ns_for(bytes_in(room)) ≤ room: the TAT stays within the tolerance.
        let granted = want.min(bytes_in(room, rate.bytes_per_sec));
        let new_tat = base.saturating_add(ns_for(granted, rate.bytes_per_sec));
        match tat.compare_exchange_weak(current, new_tat, Relaxed, Relaxed) {
            Ok(_) => return Ok(granted),
            Err(seen) => current = seen,
        }
    }
}

/// Gives back `bytes` taken by [`gcra_take_up_to`] but not used (a short
/// write). Never raises the bucket above full: a TAT moved below `now` counts
/// as `now`.
pub fn gcra_refund(tat: &AtomicU64, rate: ByteRate, bytes: u64) {
    // Rounded down: a refund never returns more time than the grant took.
    let back = (u128::from(bytes) * NS_PER_SEC / u128::from(rate.bytes_per_sec)) as u64;
    let _ = tat.fetch_update(Relaxed, Relaxed, |t| Some(t.saturating_sub(back)));
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const SEC: u64 = 1_000 * MS;

    /// Rate 10/s, burst 5: exactly 5 at t=0, then one per 100 ms.
    #[test]
    fn burst_then_one_per_interval() {
        let tat = AtomicU64::new(0);
        let (t, tau) = (100 * MS, 5 * 100 * MS);
        let now = 1_000 * SEC;
        for _ in 0..5 {
            assert_eq!(gcra_take(&tat, now, t, tau, 1), Ok(()));
        }
        assert_eq!(gcra_take(&tat, now, t, tau, 1), Err(100 * MS));
        assert_eq!(gcra_take(&tat, now + 99 * MS, t, tau, 1), Err(MS));
        for k in 1..=20 {
            let at = now + k * 100 * MS;
            assert_eq!(gcra_take(&tat, at, t, tau, 1), Ok(()), "tick {k}");
            assert!(gcra_take(&tat, at, t, tau, 1).is_err(), "tick {k}");
        }
        // Idle for a second refills the whole burst, no more.
        let later = now + 21 * 100 * MS + SEC;
        for _ in 0..5 {
            assert_eq!(gcra_take(&tat, later, t, tau, 1), Ok(()));
        }
        assert!(gcra_take(&tat, later, t, tau, 1).is_err());
    }

    #[test]
    fn retry_after_is_exact() {
        let tat = AtomicU64::new(0);
        let (t, tau) = (7 * MS, 21 * MS);
        let now = SEC;
        while gcra_take(&tat, now, t, tau, 1).is_ok() {}
        let wait = gcra_take(&tat, now, t, tau, 1).unwrap_err();
        assert!(gcra_take(&tat, now + wait - 1, t, tau, 1).is_err());
        assert_eq!(gcra_take(&tat, now + wait, t, tau, 1), Ok(()));
    }

    #[test]
    fn cost_larger_than_burst_is_refused() {
        let tat = AtomicU64::new(0);
        assert!(gcra_take(&tat, SEC, MS, 10 * MS, 11).is_err());
        assert_eq!(tat.load(Relaxed), 0, "a refusal leaves the bucket alone");
        assert_eq!(gcra_take(&tat, SEC, MS, 10 * MS, 10), Ok(()));
    }

    #[test]
    fn byte_grants_never_exceed_want_or_rate() {
        let tat = AtomicU64::new(0);
        let rate = ByteRate::new(1_000_000, 100_000);
        let now = SEC;
        assert_eq!(gcra_take_up_to(&tat, now, rate, 0, 16384), Ok(0));
        assert_eq!(gcra_take_up_to(&tat, now, rate, 10, 16384), Ok(10));
        assert_eq!(gcra_take_up_to(&tat, now, rate, 1 << 20, 16384), Ok(99_990));
        // Empty: the wait is for the minimum grant (16384 B at 1 MB/s).
        assert_eq!(
            gcra_take_up_to(&tat, now, rate, 1 << 20, 16384),
            Err(16_384_000)
        );
        // A small want needs only itself.
        assert_eq!(gcra_take_up_to(&tat, now, rate, 100, 16384), Err(100_000));
        assert_eq!(
            gcra_take_up_to(&tat, now + 100_000, rate, 100, 16384),
            Ok(100)
        );
    }

    #[test]
    fn sub_nanosecond_bytes_keep_their_rate() {
        // 4 GB/s: a quarter nanosecond per byte. One simulated second of
        // 64 KiB grants moves 4 GB plus the burst, within one grant.
        let tat = AtomicU64::new(0);
        let rate = ByteRate::new(4_000_000_000, 400_000_000);
        let (start, mut now, mut moved) = (SEC, SEC, 0u64);
        while now < start + SEC {
            match gcra_take_up_to(&tat, now, rate, 65536, 16384) {
                Ok(n) => moved += n,
                Err(wait) => now += wait,
            }
        }
        let expected = 4_000_000_000 + 400_000_000;
        assert!(moved.abs_diff(expected) <= 65536 * 2, "moved {moved}");
    }

    #[test]
    fn refund_returns_unused_bytes_but_never_overfills() {
        let tat = AtomicU64::new(0);
        let rate = ByteRate::new(1_000_000, 100_000);
        let now = SEC;
        assert_eq!(gcra_take_up_to(&tat, now, rate, 100_000, 1), Ok(100_000));
        gcra_refund(&tat, rate, 40_000);
        assert_eq!(gcra_take_up_to(&tat, now, rate, 1 << 20, 1), Ok(40_000));
        gcra_refund(&tat, rate, 10_000_000);
        assert_eq!(gcra_take_up_to(&tat, now, rate, 1 << 20, 1), Ok(100_000));
    }

    #[test]
    fn concurrent_takers_never_exceed_the_burst() {
        let tat = AtomicU64::new(0);
        let admitted = AtomicU64::new(0);
        let now = SEC;
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        if gcra_take(&tat, now, MS, 1000 * MS, 1).is_ok() {
                            admitted.fetch_add(1, Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(admitted.load(Relaxed), 1000);
    }
}
