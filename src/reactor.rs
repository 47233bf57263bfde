//! The completion interface an L4 worker drives: operations submitted with a
//! caller's 64-bit tag (`user_data`), results collected later as
//! [`Completion`]s carrying that tag. io_uring is such an interface
//! (`crate::uring::Ring`); the epoll engine (`crate::epoll::Poller`) offers
//! the same one over readiness where io_uring is refused.
//!
//! WHY one interface rather than a second worker: everything above it (the
//! accept loop, admission, slots, timers, drain, the sans-IO session) is the
//! same for both engines, so it is written once, generic over [`Reactor`],
//! and the engines differ only in how an operation reaches the kernel.

use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::time::Duration;

/// A receive buffer's id within the engine's pool, as a completion names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufId(pub u16);

/// One finished operation. An accept's new socket arrives owned
/// (`accepted`): whoever takes it closes it.
#[derive(Debug)]
pub struct Completion {
    pub user_data: u64,
    /// The syscall's result: a count or fd (≥ 0) or a negated errno.
    pub result: i32,
    /// The pool buffer a receive landed in.
    pub buffer: Option<BufId>,
    /// A multishot operation (accept, wake-up poll) that posted this will
    /// post more.
    pub more: bool,
    pub accepted: Option<OwnedFd>,
}

impl Completion {
    /// The socket a successful accept produced (once; `None` after, and for
    /// every other operation).
    pub fn take_accepted(&mut self) -> Option<OwnedFd> {
        self.accepted.take()
    }

    pub fn more(&self) -> bool {
        self.more
    }

    pub fn buffer(&self) -> Option<BufId> {
        self.buffer
    }
}

/// The operations the L4 worker submits. Each posts exactly one completion
/// (`connect` two: the connect's and its timeout's; multishot ones until
/// they post one without `more`), so the worker can count what is in flight
/// and free a connection only when nothing names its fds any more.
pub trait Reactor {
    /// Sets up the receive buffer pool: `count` buffers of `buf_size` bytes.
    fn provide_buffers(&mut self, group: u16, count: u16, buf_size: u32) -> io::Result<()>;
    /// The bytes `offset..offset+len` of received buffer `id`.
    fn buffer(&self, id: BufId, offset: u32, len: u32) -> &[u8];
    /// Gives received buffer `id` back (once no send reads it any more).
    fn recycle(&mut self, id: BufId);
    /// Multishot accept; accepted fds are non-blocking and close-on-exec.
    fn accept_multi(&mut self, listen_fd: RawFd, user_data: u64);
    /// Connects `fd` (a fresh non-blocking socket) to `addr` within
    /// `timeout`: the connect completes with 0, a negated errno, or
    /// `-ECANCELED` when the timeout fired; then the timeout completes.
    fn connect(
        &mut self,
        fd: RawFd,
        addr: &socket2::SockAddr,
        timeout: Duration,
        user_data: u64,
        timeout_user_data: u64,
    );
    /// Receives into a pool buffer (`-ENOBUFS` when none is free);
    /// `poll_first`: no data is expected yet.
    fn recv_provided(&mut self, fd: RawFd, poll_first: bool, user_data: u64);
    /// Sends `len` bytes of buffer `id` from `offset`; the buffer stays
    /// lent until this completes.
    fn send_buf(&mut self, fd: RawFd, id: BufId, offset: u32, len: u32, user_data: u64);
    /// Readiness (`libc::POLLIN` / `POLLOUT` bits); `multi` keeps posting.
    fn poll(&mut self, fd: RawFd, events: u32, multi: bool, user_data: u64);
    /// A timer that completes (`-ETIME`) once after `after`.
    fn timeout(&mut self, after: Duration, user_data: u64);
    /// Cancels every operation in flight on `fd` (each completes with
    /// `-ECANCELED`), then completes itself.
    fn cancel_fd(&mut self, fd: RawFd, user_data: u64);
    /// Submits what is queued and waits for at least one completion, or
    /// until `max_wait` passes (`Some(ZERO)`: do not sleep).
    fn submit_and_wait(&mut self, max_wait: Option<Duration>) -> io::Result<()>;
    /// Moves every available completion into `out` (cleared first).
    fn drain_completions(&mut self, out: &mut Vec<Completion>);
}
