//! Counters and their Prometheus rendering. Workers write only their own,
//! cache-line-padded counters (a single writer each, so plain load+store, no
//! locked instructions); the control thread sums them at scrape time. Every
//! metric name and help text lives in `names`.

pub mod names;
mod render;
mod stats;

pub use render::render;
pub use stats::{
    bump, unbump, BackendStats, ListenerStats, Reject, Stats, WorkerStats, LISTENER_SLOTS,
};
