//! One of the two modules allowed to use `unsafe` (with `crate::sys`): the
//! io_uring ring, the provided-buffer ring and the pipe pool.
//!
//! Everything exported here is safe to call, whatever the caller does: the
//! ring keeps the memory the kernel reads at submit (connect addresses,
//! timeouts) itself, owns its provided buffers (dropped after the ring) and
//! lends a buffer to each send until that send's completion is drained, and
//! hands an accepted fd over owned. The invariants are written next to each
//! `unsafe` block as `// SAFETY:` notes. What is left to the caller is not
//! memory safety: draining the ring before dropping it, so no operation is
//! cut short, which the worker does by counting in-flight operations.
#![allow(unsafe_code)]

mod bufring;
mod pipe;
mod ring;

pub use pipe::{Pipe, PipePool};
pub use ring::{Ring, RESERVED_BITS};
