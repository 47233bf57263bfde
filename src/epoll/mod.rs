//! The epoll engine: the [`Reactor`] interface of an io_uring, offered over
//! readiness, for where io_uring is refused (Docker's and containerd's
//! default seccomp profiles, gVisor, `kernel.io_uring_disabled`). The L4
//! worker, the sans-IO session and everything above them run unchanged on it.
//!
//! How an operation runs: it is tried at once when its fd is known to be
//! ready (a send usually is, so a send is one inline `send(2)`), and
//! otherwise waits for the fd's next edge. Each socket is registered once,
//! edge-triggered for both directions, when it is born (accepted or
//! connecting), so arming an operation never costs an `epoll_ctl`. The
//! readiness an fd was last seen with is kept and cleared only when a call
//! finds it not ready (`EAGAIN`, a short read or write), the way tokio and
//! mio do it. Results are queued and handed out by [`Reactor::drain_completions`],
//! never from inside the call that armed them, so the worker sees the same
//! order of events as with io_uring. Timers (ticks, throttles, connect
//! deadlines) are a heap checked after every wait.
//!
//! WHY emulate completions rather than write a readiness worker: everything
//! that makes the L4 plane correct (admission, slots, drain, the relay's copy
//! and splice paths) then exists once. The cost is a queued completion per
//! operation, a few nanoseconds beside the syscall it wraps.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use crate::reactor::{BufId, Completion, Reactor};
use crate::sys;

/// Events one wait collects at most; the rest wait for the next one.
const EVENTS: usize = 256;
/// Connections one readiness of a listener accepts before other work runs.
const ACCEPT_BATCH: usize = 64;

/// What a socket is registered for: both directions, edge-triggered.
const SOCKET_EVENTS: u32 =
    (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
/// Listening sockets and the wake-up eventfd only ever read.
const READ_EVENTS: u32 = (libc::EPOLLIN | libc::EPOLLET) as u32;

/// An operation waiting for its fd to become readable.
#[derive(Debug, Clone, Copy)]
enum ReadOp {
    Accept { user_data: u64 },
    Recv { user_data: u64 },
    Poll { user_data: u64, multi: bool },
}

/// An operation waiting for its fd to become writable.
#[derive(Debug, Clone, Copy)]
enum WriteOp {
    Send {
        user_data: u64,
        buf: BufId,
        offset: u32,
        len: u32,
    },
    Poll {
        user_data: u64,
    },
    Connect {
        user_data: u64,
        timeout_user_data: u64,
    },
}

/// The engine's view of one fd number.
#[derive(Debug, Default)]
struct FdState {
    /// Bumped at every birth: epoll events carry it, so an event for an
    /// fd closed since (and its number reused) is recognised and dropped.
    gen: u32,
    readable: bool,
    writable: bool,
    /// The peer closed (FIN, RST) or the socket has an error: no further
    /// edge will come, so readiness stays set from now on (the calls
    /// themselves report EOF or the error).
    closed: bool,
    read: Option<ReadOp>,
    write: Option<WriteOp>,
}

/// One receive buffer's lease (as the io_uring buffer ring keeps them).
#[derive(Debug, Clone, Copy, Default)]
struct Lease {
    /// A receive handed it out and it was not given back yet.
    held: bool,
    /// Sends reading it.
    lent: u16,
    /// Given back while lent: free once the last send completes.
    release_pending: bool,
}

/// The receive buffers: one allocation, touched only as buffers are used.
struct BufPool {
    mem: Vec<u8>,
    size: usize,
    free: Vec<u16>,
    leases: Vec<Lease>,
}

impl BufPool {
    fn new(count: u16, size: u32) -> BufPool {
        let size = size as usize;
        BufPool {
            // Zeroed memory of this size comes straight from mmap: pages are
            // only backed once a receive writes them.
            mem: vec![0; count as usize * size],
            size,
            // Popped from the end: buffer 0 first, and the most recently
            // freed (cache-warm) one next.
            free: (0..count).rev().collect(),
            leases: vec![Lease::default(); count as usize],
        }
    }

    fn range(&self, id: BufId) -> std::ops::Range<usize> {
        let start = id.0 as usize * self.size;
        start..start + self.size
    }

    fn put_back(&mut self, id: BufId) {
        self.leases[id.0 as usize] = Lease::default();
        self.free.push(id.0);
    }

    fn returned(&mut self, id: BufId) {
        let lease = &mut self.leases[id.0 as usize];
        lease.lent -= 1;
        if lease.lent == 0 && lease.release_pending {
            self.put_back(id);
        }
    }
}

/// A timer: a plain timeout, or a connect's deadline (ignored when that
/// connect has completed since).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    Plain { user_data: u64 },
    Connect { fd: RawFd, gen: u32 },
}

pub struct Poller {
    epoll: OwnedFd,
    events: Vec<libc::epoll_event>,
    fds: Vec<FdState>,
    /// Completions not yet handed out.
    done: Vec<Completion>,
    /// Fds to try again without waiting for an edge (a listener with more
    /// connections queued than one batch took).
    again: Vec<(RawFd, u32)>,
    /// Deadlines, earliest first; the sequence number keeps equal instants
    /// in arming order.
    timers: BinaryHeap<Reverse<(Instant, u64, TimerKind)>>,
    timer_seq: u64,
    bufs: Option<BufPool>,
}

impl Poller {
    pub fn new() -> io::Result<Poller> {
        Ok(Poller {
            epoll: sys::epoll_create()?,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS],
            fds: Vec::new(),
            done: Vec::with_capacity(1024),
            again: Vec::new(),
            timers: BinaryHeap::new(),
            timer_seq: 0,
            bufs: None,
        })
    }

    fn state(&mut self, fd: RawFd) -> &mut FdState {
        let i = fd as usize;
        if i >= self.fds.len() {
            self.fds.resize_with(i + 1, FdState::default);
        }
        &mut self.fds[i]
    }

    /// A new socket (or one seen for the first time) under `fd`'s number:
    /// forgets whatever an earlier fd of that number left and registers it.
    fn birth(&mut self, fd: RawFd, events: u32, ready: bool) -> io::Result<()> {
        let s = self.state(fd);
        *s = FdState {
            gen: s.gen.wrapping_add(1),
            readable: ready,
            writable: ready,
            closed: false,
            read: None,
            write: None,
        };
        let data = (s.gen as u64) << 32 | fd as u32 as u64;
        match sys::epoll_add(&self.epoll, fd, events, data) {
            // Still registered from an earlier arming (a listener re-armed
            // after a back-off): only the tag changes.
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                sys::epoll_delete(&self.epoll, fd)?;
                sys::epoll_add(&self.epoll, fd, events, data)
            }
            r => r,
        }
    }

    fn post(&mut self, user_data: u64, result: i32) {
        self.done.push(Completion {
            user_data,
            result,
            buffer: None,
            more: false,
            accepted: None,
        });
    }

    fn post_err(&mut self, user_data: u64, e: &io::Error) {
        self.post(user_data, -e.raw_os_error().unwrap_or(libc::EIO));
    }

    fn add_timer(&mut self, after: Duration, kind: TimerKind) {
        self.timer_seq += 1;
        self.timers
            .push(Reverse((Instant::now() + after, self.timer_seq, kind)));
    }

    /// Runs whatever `fd` has waiting that its readiness allows.
    fn progress(&mut self, fd: RawFd) {
        self.progress_read(fd);
        self.progress_write(fd);
    }

    fn progress_read(&mut self, fd: RawFd) {
        let s = self.state(fd);
        let (Some(op), true) = (s.read, s.readable) else {
            return;
        };
        match op {
            ReadOp::Accept { user_data } => self.accept_ready(fd, user_data),
            ReadOp::Recv { user_data } => self.recv_ready(fd, user_data),
            ReadOp::Poll { user_data, multi } => {
                if multi {
                    // The wake-up eventfd: every signal is a new edge.
                    self.state(fd).readable = false;
                    self.done.push(Completion {
                        user_data,
                        result: libc::POLLIN as i32,
                        buffer: None,
                        more: true,
                        accepted: None,
                    });
                    return;
                }
                // Readiness seen earlier may be stale (the session's inline
                // splice drained it): ask the kernel before reporting it.
                match sys::poll_now(fd, libc::POLLIN | libc::POLLRDHUP) {
                    Ok(0) => self.state(fd).readable = false,
                    Ok(revents) => {
                        self.state(fd).read = None;
                        self.post(user_data, revents as i32);
                    }
                    Err(e) => {
                        self.state(fd).read = None;
                        self.post_err(user_data, &e);
                    }
                }
            }
        }
    }

    fn accept_ready(&mut self, fd: RawFd, user_data: u64) {
        for _ in 0..ACCEPT_BATCH {
            match sys::accept(fd) {
                Ok(conn) => {
                    let raw = conn.as_raw_fd();
                    if self.birth(raw, SOCKET_EVENTS, true).is_err() {
                        // Cannot watch it (out of memory): refuse this one.
                        continue;
                    }
                    self.done.push(Completion {
                        user_data,
                        result: raw,
                        buffer: None,
                        more: true,
                        accepted: Some(conn),
                    });
                }
                Err(e) => match e.raw_os_error() {
                    Some(libc::EAGAIN) => {
                        self.state(fd).readable = false;
                        return;
                    }
                    // The client gave up before we took it: next one.
                    Some(libc::ECONNABORTED) | Some(libc::EINTR) | Some(libc::EPROTO) => {}
                    _ => {
                        // The multishot accept ends with the error, as with
                        // io_uring; the worker backs off and re-arms.
                        self.state(fd).read = None;
                        self.post_err(user_data, &e);
                        return;
                    }
                },
            }
        }
        let gen = self.state(fd).gen;
        self.again.push((fd, gen));
    }

    fn recv_ready(&mut self, fd: RawFd, user_data: u64) {
        let Some(bufs) = self.bufs.as_mut() else {
            return;
        };
        let Some(id) = bufs.free.pop().map(BufId) else {
            self.state(fd).read = None;
            self.post(user_data, -libc::ENOBUFS);
            return;
        };
        let range = bufs.range(id);
        let size = bufs.size;
        match sys::recv(fd, &mut bufs.mem[range]) {
            Ok(0) => {
                // EOF: no bytes, so no buffer changes hands.
                bufs.free.push(id.0);
                self.state(fd).read = None;
                self.post(user_data, 0);
            }
            Ok(n) => {
                bufs.leases[id.0 as usize].held = true;
                let s = self.state(fd);
                s.read = None;
                if n < size && !s.closed {
                    // A short read emptied the socket: the next byte (or
                    // FIN) is a new edge. Not after the FIN arrived: that
                    // edge was spent, and the next read returns EOF.
                    s.readable = false;
                }
                self.done.push(Completion {
                    user_data,
                    result: n as i32,
                    buffer: Some(id),
                    more: false,
                    accepted: None,
                });
            }
            Err(e) => {
                bufs.free.push(id.0);
                if e.raw_os_error() == Some(libc::EAGAIN) {
                    self.state(fd).readable = false;
                } else {
                    self.state(fd).read = None;
                    self.post_err(user_data, &e);
                }
            }
        }
    }

    fn progress_write(&mut self, fd: RawFd) {
        let s = self.state(fd);
        let (Some(op), true) = (s.write, s.writable) else {
            return;
        };
        match op {
            WriteOp::Send {
                user_data,
                buf,
                offset,
                len,
            } => {
                let bufs = self.bufs.as_mut().expect("provide_buffers before sending");
                let start = bufs.range(buf).start + offset as usize;
                let result = sys::send(fd, &bufs.mem[start..start + len as usize]);
                match result {
                    Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                        self.state(fd).writable = false;
                    }
                    Ok(n) => {
                        bufs.returned(buf);
                        let s = self.state(fd);
                        s.write = None;
                        if n < len as usize && !s.closed {
                            s.writable = false;
                        }
                        self.post(user_data, n as i32);
                    }
                    Err(e) => {
                        bufs.returned(buf);
                        self.state(fd).write = None;
                        self.post_err(user_data, &e);
                    }
                }
            }
            WriteOp::Poll { user_data } => match sys::poll_now(fd, libc::POLLOUT) {
                Ok(0) => self.state(fd).writable = false,
                Ok(revents) => {
                    self.state(fd).write = None;
                    self.post(user_data, revents as i32);
                }
                Err(e) => {
                    self.state(fd).write = None;
                    self.post_err(user_data, &e);
                }
            },
            WriteOp::Connect {
                user_data,
                timeout_user_data,
            } => {
                self.state(fd).write = None;
                match sys::socket_error(fd) {
                    Ok(0) => self.post(user_data, 0),
                    Ok(errno) => self.post(user_data, -errno),
                    Err(e) => self.post_err(user_data, &e),
                }
                self.post(timeout_user_data, -libc::ECANCELED);
            }
        }
    }

    /// Applies the events of one wait.
    fn handle_events(&mut self, n: usize) {
        for i in 0..n {
            let ev = self.events[i];
            let (bits, data) = (ev.events, ev.u64);
            let fd = (data & 0xffff_ffff) as u32 as RawFd;
            let gen = (data >> 32) as u32;
            let s = self.state(fd);
            if s.gen != gen {
                continue;
            }
            let broken = (libc::EPOLLHUP | libc::EPOLLERR) as u32;
            if bits & (libc::EPOLLRDHUP as u32 | broken) != 0 {
                s.closed = true;
            }
            if bits & (libc::EPOLLIN as u32 | libc::EPOLLRDHUP as u32 | broken) != 0 {
                s.readable = true;
            }
            if bits & (libc::EPOLLOUT as u32 | broken) != 0 {
                s.writable = true;
            }
            self.progress(fd);
        }
    }

    fn run_again(&mut self) {
        let again = std::mem::take(&mut self.again);
        for &(fd, gen) in &again {
            if self.state(fd).gen == gen {
                self.progress(fd);
            }
        }
        // Keep the allocation for next time.
        let mut again = again;
        again.clear();
        if self.again.is_empty() {
            self.again = again;
        }
    }

    fn expire_timers(&mut self, now: Instant) {
        while let Some(Reverse((at, _, kind))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            match kind {
                TimerKind::Plain { user_data } => self.post(user_data, -libc::ETIME),
                TimerKind::Connect { fd, gen } => {
                    let s = self.state(fd);
                    if s.gen != gen {
                        continue;
                    }
                    if let Some(WriteOp::Connect {
                        user_data,
                        timeout_user_data,
                    }) = s.write
                    {
                        s.write = None;
                        self.post(user_data, -libc::ECANCELED);
                        self.post(timeout_user_data, -libc::ETIME);
                    }
                }
            }
        }
    }

    /// How long a wait may sleep: not past the next timer, and not at all
    /// with completions or retries pending.
    fn wait_ms(&self, max_wait: Option<Duration>) -> i32 {
        if !self.done.is_empty() || !self.again.is_empty() {
            return 0;
        }
        let next = self
            .timers
            .peek()
            .map(|Reverse((at, _, _))| at.saturating_duration_since(Instant::now()));
        let wait = match (max_wait, next) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match wait {
            None => -1,
            // Rounded up: waking early would only spin until the timer is due.
            Some(d) => d.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32,
        }
    }
}

impl Reactor for Poller {
    fn provide_buffers(&mut self, _group: u16, count: u16, buf_size: u32) -> io::Result<()> {
        self.bufs = Some(BufPool::new(count, buf_size));
        Ok(())
    }

    fn buffer(&self, id: BufId, offset: u32, len: u32) -> &[u8] {
        let bufs = self
            .bufs
            .as_ref()
            .expect("provide_buffers before receiving");
        let lease = bufs.leases[id.0 as usize];
        assert!(
            lease.held || lease.lent > 0,
            "reading buffer {} that no receive handed over",
            id.0
        );
        let start = bufs.range(id).start + offset as usize;
        &bufs.mem[start..start + len as usize]
    }

    fn recycle(&mut self, id: BufId) {
        let bufs = self
            .bufs
            .as_mut()
            .expect("provide_buffers before receiving");
        let lease = &mut bufs.leases[id.0 as usize];
        assert!(lease.held, "buffer {} given back twice", id.0);
        lease.held = false;
        if lease.lent > 0 {
            lease.release_pending = true;
        } else {
            bufs.put_back(id);
        }
    }

    fn accept_multi(&mut self, listen_fd: RawFd, user_data: u64) {
        if let Err(e) = self.birth(listen_fd, READ_EVENTS, true) {
            return self.post_err(user_data, &e);
        }
        self.state(listen_fd).read = Some(ReadOp::Accept { user_data });
        self.progress_read(listen_fd);
    }

    fn connect(
        &mut self,
        fd: RawFd,
        addr: &socket2::SockAddr,
        timeout: Duration,
        user_data: u64,
        timeout_user_data: u64,
    ) {
        let started = sys::connect(fd, addr);
        let in_progress = match &started {
            Ok(()) => false,
            Err(e) => e.raw_os_error() == Some(libc::EINPROGRESS),
        };
        // Registered after connect(2): an unconnected socket polls as
        // writable, which would read as "connected".
        if let Err(e) = self.birth(fd, SOCKET_EVENTS, false) {
            self.post_err(user_data, &e);
            return self.post(timeout_user_data, -libc::ECANCELED);
        }
        match started {
            Ok(()) => {
                self.state(fd).writable = true;
                self.post(user_data, 0);
                self.post(timeout_user_data, -libc::ECANCELED);
            }
            Err(_) if in_progress => {
                self.state(fd).write = Some(WriteOp::Connect {
                    user_data,
                    timeout_user_data,
                });
                let gen = self.state(fd).gen;
                self.add_timer(timeout, TimerKind::Connect { fd, gen });
            }
            Err(e) => {
                self.post_err(user_data, &e);
                self.post(timeout_user_data, -libc::ECANCELED);
            }
        }
    }

    fn recv_provided(&mut self, fd: RawFd, _poll_first: bool, user_data: u64) {
        let s = self.state(fd);
        if s.read.is_some() {
            // The session arms one read per socket; a second would be lost.
            return self.post(user_data, -libc::EBUSY);
        }
        s.read = Some(ReadOp::Recv { user_data });
        self.progress_read(fd);
    }

    fn send_buf(&mut self, fd: RawFd, id: BufId, offset: u32, len: u32, user_data: u64) {
        let bufs = self.bufs.as_mut().expect("provide_buffers before sending");
        let lease = &mut bufs.leases[id.0 as usize];
        assert!(
            lease.held,
            "sending from buffer {} that no receive handed over",
            id.0
        );
        assert!(offset as usize + len as usize <= bufs.size);
        lease.lent += 1;
        let s = self.state(fd);
        if s.write.is_some() {
            if let Some(b) = self.bufs.as_mut() {
                b.returned(id);
            }
            return self.post(user_data, -libc::EBUSY);
        }
        s.write = Some(WriteOp::Send {
            user_data,
            buf: id,
            offset,
            len,
        });
        self.progress_write(fd);
    }

    fn poll(&mut self, fd: RawFd, events: u32, multi: bool, user_data: u64) {
        if multi {
            // Only the wake-up eventfd is polled this way, once per worker.
            if let Err(e) = self.birth(fd, READ_EVENTS, true) {
                return self.post_err(user_data, &e);
            }
        }
        let s = self.state(fd);
        if events & libc::POLLOUT as u32 != 0 {
            if s.write.is_some() {
                return self.post(user_data, -libc::EBUSY);
            }
            s.write = Some(WriteOp::Poll { user_data });
            self.progress_write(fd);
        } else {
            if s.read.is_some() {
                return self.post(user_data, -libc::EBUSY);
            }
            s.read = Some(ReadOp::Poll { user_data, multi });
            self.progress_read(fd);
        }
    }

    fn timeout(&mut self, after: Duration, user_data: u64) {
        self.add_timer(after, TimerKind::Plain { user_data });
    }

    fn cancel_fd(&mut self, fd: RawFd, user_data: u64) {
        let s = self.state(fd);
        let (read, write) = (s.read.take(), s.write.take());
        let mut cancelled = 0;
        if let Some(op) = read {
            cancelled += 1;
            let user_data = match op {
                ReadOp::Accept { user_data }
                | ReadOp::Recv { user_data }
                | ReadOp::Poll { user_data, .. } => user_data,
            };
            self.post(user_data, -libc::ECANCELED);
        }
        if let Some(op) = write {
            cancelled += 1;
            match op {
                WriteOp::Send { user_data, buf, .. } => {
                    if let Some(b) = self.bufs.as_mut() {
                        b.returned(buf);
                    }
                    self.post(user_data, -libc::ECANCELED);
                }
                WriteOp::Poll { user_data } => self.post(user_data, -libc::ECANCELED),
                WriteOp::Connect {
                    user_data,
                    timeout_user_data,
                } => {
                    self.post(user_data, -libc::ECANCELED);
                    self.post(timeout_user_data, -libc::ECANCELED);
                }
            }
        }
        self.post(
            user_data,
            if cancelled == 0 {
                -libc::ENOENT
            } else {
                cancelled
            },
        );
    }

    fn submit_and_wait(&mut self, max_wait: Option<Duration>) -> io::Result<()> {
        let timeout = self.wait_ms(max_wait);
        let mut events = std::mem::take(&mut self.events);
        let n = sys::epoll_wait(&self.epoll, &mut events, timeout);
        self.events = events;
        let n = n?;
        self.handle_events(n);
        self.run_again();
        self.expire_timers(Instant::now());
        Ok(())
    }

    fn drain_completions(&mut self, out: &mut Vec<Completion>) {
        out.clear();
        std::mem::swap(out, &mut self.done);
    }
}

#[cfg(test)]
mod tests;
