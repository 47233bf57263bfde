//! The range of every count a config holds, in one place: `validate` reads
//! each key within its range, and `check` holds a [`Config`] changed in code
//! (by the admin API) to the same ranges, with the same words.
//!
//! [`Config`]: super::Config

use std::ops::RangeInclusive;

use super::model::MAX_WEIGHT;

/// `workers: N`: far above any machine we target, low enough to catch a typo
/// such as `workers: 80000` before it spawns threads.
pub(super) const WORKERS: RangeInclusive<u64> = 1..=1024;
/// `limits_table_size`. Below ~1000 entries a handful of busy clients would
/// evict each other's counts; ten million entries is already around a
/// gigabyte of state, which only a typo asks for.
pub(super) const LIMITS_TABLE_SIZE: RangeInclusive<u64> = 1024..=10_000_000;

/// A listener's `retries`: each retry costs a connect timeout, so more than
/// 16 only delays the client's error.
pub(super) const RETRIES: RangeInclusive<u64> = 0..=16;
/// A listener's `max_connections`.
pub(super) const MAX_CONNECTIONS: RangeInclusive<u64> = 1..=u32::MAX as u64;
/// `listen(2)` backlog limit; the kernel further caps it at `net.core.somaxconn`.
pub(super) const BACKLOG: RangeInclusive<u64> = 1..=65535;

/// `limits.per_ip_burst` and `limits.per_ip_connections`.
pub(super) const PER_IP: RangeInclusive<u64> = 1..=u32::MAX as u64;
/// `limits.ipv6_prefix`: a prefix length.
pub(super) const IPV6_PREFIX: RangeInclusive<u64> = 1..=128;

/// A pool's `eject_after`: a backend failing a thousand connects in a row is
/// down by any measure; a larger number is a typo.
pub(super) const EJECT_AFTER: RangeInclusive<u64> = 0..=1000;
/// A pool's `max_ejection_percent`.
pub(super) const MAX_EJECTION_PERCENT: RangeInclusive<u64> = 0..=100;
/// A health check's `rise` and `fall`: at the shortest sane interval, more
/// than 100 probes is minutes of ignoring a change of state.
pub(super) const HEALTH_COUNT: RangeInclusive<u64> = 1..=100;
/// Upper bound for `hash_balance_factor`: by 100× the average load the bound
/// no longer bounds anything.
pub(super) const MAX_HASH_BALANCE_FACTOR: f64 = 100.0;
/// Maglev table size limits: the smallest prime above 1000 (tables smaller
/// than that spread badly even over a few backends), and the smallest prime
/// above a million (the table is copied per pool and rebuilt on every change,
/// so it is kept to a few megabytes).
pub(super) const MIN_HASH_TABLE_SIZE: u32 = 1021;
pub(super) const MAX_HASH_TABLE_SIZE: u32 = 1_000_003;

/// A backend's `weight`.
pub(super) const WEIGHT: RangeInclusive<u64> = 0..=MAX_WEIGHT as u64;
/// A backend's `max_connections` (0 = no limit).
pub(super) const BACKEND_MAX_CONNECTIONS: RangeInclusive<u64> = 0..=u32::MAX as u64;

/// A port to connect or redirect to (`redirect_https`).
pub(super) const PORT: RangeInclusive<u64> = 1..=65535;
/// `request_limits.max_header_bytes`: below 1KiB ordinary browser requests
/// (cookies) no longer fit; above 1MiB a slow client holds that much memory
/// per connection for nothing (nginx's largest default is 32KiB).
pub(super) const MAX_HEADER_BYTES: RangeInclusive<u64> = 1024..=(1 << 20);
/// `request_limits.max_body`: 0 refuses every request body; 1TiB is far
/// above any upload a balancer should pass without a word.
pub(super) const MAX_BODY: RangeInclusive<u64> = 0..=(1 << 40);
/// `request_limits.h2_max_streams`: RFC 9113 advises at least 100; beyond
/// ten thousand one client can pin a worker's memory.
pub(super) const H2_MAX_STREAMS: RangeInclusive<u64> = 1..=10_000;
