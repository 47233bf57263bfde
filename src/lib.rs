//! # spliced
//!
//! A Layer-4 TCP load balancer for Linux on io_uring. Thread-per-core workers,
//! each with its own ring and its own SO_REUSEPORT listener sockets, accept
//! connections, pick a backend from an immutable snapshot, and relay bytes both
//! ways: through a provided-buffer ring for small messages, and with `splice(2)`
//! through pooled pipes once a direction carries bulk.
//!
//! ## Architecture
//! ```text
//!   control thread (tokio): config · admin API · metrics · signals
//!        │ publishes Arc<Snapshot> (arc-swap)
//!   client ─► worker N (own io_uring) ─ accept → pick → connect → relay ─► backend
//! ```
//!
//! ## Glossary
//! - **listener**: an address clients connect to, bound once per worker.
//! - **pool**: a named set of backends with a selection algorithm.
//! - **backend**: one upstream `address`, named by it.
//! - **worker**: a data-plane thread with its own ring; a connection stays on it.
//! - **snapshot**: the immutable routing view workers read; replaced whole.
//! - **drain**: stop giving new connections while open ones run on.
//!
//! ## Module map
//! - [`config`]: YAML → validated, typed config (raw → validate → model).
//! - [`control`]: the control thread, snapshot building, admin HTTP.
//! - [`dataplane`]: workers, connections, the relay.
//! - [`uring`]: the only `unsafe` code: rings, buffer rings, pipes, syscalls.
//! - [`balance`]: backend selection algorithms behind one trait.
//! - [`metrics`]: per-worker counters and Prometheus rendering.
//! - [`accesslog`]: one line per finished connection, written off the data path.
#![deny(unsafe_code)]

pub mod accesslog;
pub mod balance;
pub mod clock;
pub mod config;
pub mod control;
pub mod dataplane;
pub mod demo;
pub mod limits;
pub mod log;
pub mod metrics;
pub mod proto;
pub mod uring;
