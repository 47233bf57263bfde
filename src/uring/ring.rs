//! One io_uring per worker: set-up with the flags DESIGN.md §2 measured, typed
//! submission helpers for the operations the data plane uses, and completion
//! draining. Never used from more than one thread (SINGLE_ISSUER).

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use super::bufring::{BufId, BufRing};

/// Why a ring could not be created, phrased for the one-line start-up error.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    #[error("io_uring is disabled by the kernel.io_uring_disabled sysctl (value {0}): run `sysctl -w kernel.io_uring_disabled=0` (or 1 and add this user to the io_uring group)")]
    DisabledBySysctl(String),
    #[error("io_uring is not available: the io_uring_setup syscall is blocked (a container seccomp profile or an old kernel without io_uring): allow io_uring_setup/io_uring_enter/io_uring_register in the seccomp profile, or run on Linux 6.1 or newer")]
    NotSupported,
    #[error("io_uring is refused: permission denied ({0}); a seccomp profile or LSM blocks it, or kernel.io_uring_disabled is set: allow io_uring for this process")]
    PermissionDenied(io::Error),
    #[error("io_uring could not lock its ring memory (RLIMIT_MEMLOCK too low, {0}): raise it, e.g. `ulimit -l unlimited` or LimitMEMLOCK=infinity in the systemd unit")]
    MemLock(io::Error),
    #[error("io_uring set-up failed: {0} (spliced needs Linux 6.1 or newer)")]
    Other(io::Error),
}

impl RingError {
    fn classify(e: io::Error) -> RingError {
        let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        match e.raw_os_error() {
            Some(libc::ENOSYS) => RingError::NotSupported,
            Some(libc::EPERM) | Some(libc::EACCES) if !disabled.is_empty() && disabled != "0" => {
                RingError::DisabledBySysctl(disabled)
            }
            Some(libc::EPERM) | Some(libc::EACCES) => RingError::PermissionDenied(e),
            Some(libc::ENOMEM) => RingError::MemLock(e),
            _ => RingError::Other(e),
        }
    }
}

/// One completion, copied out of the completion queue.
#[derive(Debug, Clone, Copy)]
pub struct Completion {
    pub user_data: u64,
    pub result: i32,
    pub flags: u32,
}

impl Completion {
    /// A multishot operation that posted this completion will post more.
    pub fn more(&self) -> bool {
        cqueue::more(self.flags)
    }
    /// The provided buffer a receive landed in, if any.
    pub fn buffer(&self) -> Option<BufId> {
        cqueue::buffer_select(self.flags).map(BufId)
    }
}

pub struct Ring {
    ring: IoUring,
    /// Submitted-but-unreaped is tracked by the kernel; this counts entries
    /// pushed since the last submit, so `submit_and_wait` can skip empty enters.
    queued: usize,
}

/// `IORING_RECVSEND_POLL_FIRST` (Linux 5.19, like provided-buffer rings).
const RECVSEND_POLL_FIRST: u16 = 1;

const SQ_ENTRIES: u32 = 4096;
// WHY 16384: the experiment in research/uring-datapath.md used this size; a
// large CQ keeps bursts of accepts and receives from overflowing.
const CQ_ENTRIES: u32 = 16384;

impl Ring {
    /// Creates a ring with `SINGLE_ISSUER | DEFER_TASKRUN | COOP_TASKRUN |
    /// SUBMIT_ALL` (worth 15–90% req/s in research/uring-datapath.md), falling back
    /// to fewer flags on kernels that refuse them.
    pub fn new() -> Result<Ring, RingError> {
        let full = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_coop_taskrun()
            .setup_submit_all()
            .setup_cqsize(CQ_ENTRIES)
            .build(SQ_ENTRIES);
        let ring = match full {
            Ok(r) => r,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => IoUring::builder()
                .setup_cqsize(CQ_ENTRIES)
                .build(SQ_ENTRIES)
                .map_err(RingError::classify)?,
            Err(e) => return Err(RingError::classify(e)),
        };
        Ok(Ring { ring, queued: 0 })
    }

    /// Checks at start-up that this process may use io_uring at all.
    pub fn probe() -> Result<(), RingError> {
        IoUring::new(8).map(drop).map_err(RingError::classify)
    }

    pub(super) fn submitter(&self) -> io_uring::Submitter<'_> {
        self.ring.submitter()
    }

    /// Queues entries that must reach the kernel together (a linked chain).
    fn push_all(&mut self, entries: &[squeue::Entry]) {
        loop {
            // SAFETY: every entry built by this module references either no memory
            // or memory whose owner outlives the operation (see each builder). The
            // entries are copied into the SQ; the kernel reads referenced memory at
            // submit time or, for buffers, until the completion.
            let pushed = unsafe { self.ring.submission().push_multiple(entries) };
            if pushed.is_ok() {
                self.queued += entries.len();
                return;
            }
            // SQ full: hand what is queued to the kernel and try again.
            if let Err(e) = self.ring.submit() {
                if e.raw_os_error() != Some(libc::EBUSY) {
                    panic!("io_uring submit failed with a full SQ: {e}");
                }
            }
            self.queued = 0;
        }
    }

    fn push(&mut self, entry: squeue::Entry) {
        self.push_all(std::slice::from_ref(&entry));
    }

    /// Multishot accept on a listening socket; accepted fds are non-blocking.
    pub fn accept_multi(&mut self, listen_fd: RawFd, user_data: u64) {
        let e = opcode::AcceptMulti::new(types::Fd(listen_fd))
            .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
            .build()
            .user_data(user_data);
        self.push(e);
    }

    /// Connects `fd` to `addr`, bounded by a linked timeout. Two completions
    /// follow: the connect's (`-ECANCELED` when the timeout fired) and the
    /// timeout's.
    ///
    /// The kernel copies `addr` and `timeout` while the entries are submitted;
    /// both must live until the next `submit_and_wait`, which the caller
    /// guarantees by keeping them in `Arc`s held by the connection.
    pub fn connect(
        &mut self,
        fd: RawFd,
        addr: &socket2::SockAddr,
        timeout: &types::Timespec,
        user_data: u64,
        timeout_user_data: u64,
    ) {
        let connect = opcode::Connect::new(types::Fd(fd), addr.as_ptr().cast(), addr.len())
            .build()
            .flags(squeue::Flags::IO_LINK)
            .user_data(user_data);
        let timeout = opcode::LinkTimeout::new(timeout)
            .build()
            .user_data(timeout_user_data);
        self.push_all(&[connect, timeout]);
    }

    /// Receives into a buffer the kernel picks from `bufs`.
    ///
    /// `poll_first`: the caller expects no data yet (the last read was short
    /// and its bytes were just forwarded), so the kernel arms its readiness
    /// poll at once instead of first trying a receive that would fail.
    pub fn recv_provided(&mut self, fd: RawFd, bufs: &BufRing, poll_first: bool, user_data: u64) {
        let ioprio = if poll_first { RECVSEND_POLL_FIRST } else { 0 };
        let e = opcode::Recv::new(types::Fd(fd), std::ptr::null_mut(), bufs.buf_size())
            .buf_group(bufs.group())
            .ioprio(ioprio)
            .build()
            .flags(squeue::Flags::BUFFER_SELECT)
            .user_data(user_data);
        self.push(e);
    }

    /// Sends `len` bytes of buffer `id` starting at `offset`.
    ///
    /// The buffer memory belongs to `bufs`, which outlives the ring's operations;
    /// the caller must not recycle `id` until this send completes.
    pub fn send_buf(
        &mut self,
        fd: RawFd,
        bufs: &BufRing,
        id: BufId,
        offset: u32,
        len: u32,
        user_data: u64,
    ) {
        let data = bufs.slice(id, offset, len);
        let e = opcode::Send::new(types::Fd(fd), data.as_ptr(), data.len() as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(user_data);
        self.push(e);
    }

    /// One-shot readiness poll (`libc::POLLIN` / `POLLOUT` bits).
    pub fn poll(&mut self, fd: RawFd, events: u32, multi: bool, user_data: u64) {
        let e = opcode::PollAdd::new(types::Fd(fd), events)
            .multi(multi)
            .build()
            .user_data(user_data);
        self.push(e);
    }

    /// A timer that completes once after `ts`. The kernel copies `ts` at submit.
    pub fn timeout(&mut self, ts: &types::Timespec, user_data: u64) {
        let e = opcode::Timeout::new(ts).build().user_data(user_data);
        self.push(e);
    }

    /// Cancels every operation in flight on `fd`.
    pub fn cancel_fd(&mut self, fd: RawFd, user_data: u64) {
        let e = opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fd(fd)).all())
            .build()
            .user_data(user_data);
        self.push(e);
    }

    /// Cancels the operation submitted with `target`.
    pub fn cancel(&mut self, target: u64, user_data: u64) {
        let e = opcode::AsyncCancel::new(target)
            .build()
            .user_data(user_data);
        self.push(e);
    }

    /// Submits what is queued and waits for at least one completion, or until
    /// `max_wait` passes (`Some(ZERO)`: do not sleep, only run deferred work).
    pub fn submit_and_wait(&mut self, max_wait: Option<Duration>) -> io::Result<()> {
        self.queued = 0;
        let res = match max_wait {
            None => self.ring.submit_and_wait(1),
            Some(d) => {
                let ts = types::Timespec::new()
                    .sec(d.as_secs())
                    .nsec(d.subsec_nanos());
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
        };
        match res {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Moves every available completion into `out` (cleared first).
    pub fn drain_completions(&mut self, out: &mut Vec<Completion>) {
        out.clear();
        let mut cq = self.ring.completion();
        cq.sync();
        for c in &mut cq {
            out.push(Completion {
                user_data: c.user_data(),
                result: c.result(),
                flags: c.flags(),
            });
        }
    }

    /// Whether entries are waiting to be submitted.
    pub fn has_queued(&self) -> bool {
        self.queued > 0
    }
}
