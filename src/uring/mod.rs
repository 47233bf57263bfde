//! One of the two modules allowed to use `unsafe` (with `crate::sys`): the
//! io_uring ring, the provided-buffer ring and the pipe pool.
//!
//! Everything exported here is safe to call. The invariants that make it so are
//! written next to each `unsafe` block as `// SAFETY:` notes; the one the callers
//! must keep is DESIGN.md §2's lifetime rule: memory and fds named by an in-flight
//! operation stay alive until its completion arrives, which the worker guarantees
//! by counting in-flight operations per connection and draining the ring before
//! it is dropped.
#![allow(unsafe_code)]

mod bufring;
mod pipe;
mod ring;

pub use bufring::{BufId, BufRing};
pub use io_uring::types::Timespec;
pub use pipe::{Pipe, PipePool};
pub use ring::{Completion, Ring, RingError};

/// Converts a `Duration` into the kernel's timespec for timeout operations.
pub fn timespec(d: std::time::Duration) -> Timespec {
    Timespec::new().sec(d.as_secs()).nsec(d.subsec_nanos())
}
