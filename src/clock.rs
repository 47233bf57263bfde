//! A process-wide monotonic clock in milliseconds, cheap to pass around and to
//! store in atomics (ejection deadlines, slow-start origins). Sans-IO code takes
//! `now_ms` as an argument instead of reading this, so tests can inject time.

use std::sync::OnceLock;
use std::time::Instant;

static START: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since the first call in this process (monotonic).
pub fn now_ns() -> u64 {
    let start = *START.get_or_init(Instant::now);
    start.elapsed().as_nanos() as u64 + 1
}

/// Milliseconds since the first call in this process (never 0, so 0 can mean "unset").
pub fn now_ms() -> u64 {
    let start = *START.get_or_init(Instant::now);
    start.elapsed().as_millis() as u64 + 1
}
