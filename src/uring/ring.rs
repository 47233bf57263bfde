//! One io_uring per worker: set-up with the flags DESIGN.md §2 measured, typed
//! submission helpers for the operations the data plane uses, and completion
//! draining. Never used from more than one thread (SINGLE_ISSUER).

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use super::bufring::BufRing;
use crate::reactor::{BufId, Completion, Reactor};

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

pub struct Ring {
    // Field order matters: the ring is dropped before the buffer memory it
    // was told about.
    ring: IoUring,
    /// The provided-buffer ring receives land in (see `provide_buffers`).
    bufs: Option<BufRing>,
    /// Connect addresses and timeouts of queued entries, which the kernel
    /// reads when it consumes them.
    kept: SubmitArena,
}

/// The user_data bit that marks an accept, so its completion's result is
/// known to be a new fd that nothing else owns.
const ACCEPT_BIT: u64 = 1 << 63;
/// Where a send's user_data carries the id (+1) of the buffer it reads, so
/// its completion gives the buffer's lease back.
const LEASE_SHIFT: u32 = 48;
const LEASE_MASK: u64 = 0x7fff << LEASE_SHIFT;
/// The user_data bits the ring keeps for itself; callers' user_data must
/// leave them clear (checked on every push).
pub const RESERVED_BITS: u64 = ACCEPT_BIT | LEASE_MASK;

/// What a queued connect or timeout points the kernel at.
#[derive(Clone, Copy)]
struct Kept {
    addr: libc::sockaddr_storage,
    ts: types::Timespec,
}

/// Entries per arena chunk: connects and timers between two submits are few.
const ARENA_CHUNK: usize = 64;

/// Memory the kernel reads while it consumes submission entries (connect
/// addresses, timeouts), kept by the ring itself rather than by its callers:
/// chunks never move once allocated, and slots are reused only once the
/// submission queue is empty. WHY: with the memory held by the caller, a
/// safe `connect` or `timeout` was sound only if the caller kept it alive
/// until the next submit; now nothing a caller does can free it early.
struct SubmitArena {
    chunks: Vec<Box<[Kept; ARENA_CHUNK]>>,
    used: usize,
}

impl SubmitArena {
    fn new() -> SubmitArena {
        SubmitArena {
            chunks: Vec::new(),
            used: 0,
        }
    }

    /// A slot that stays put until [`SubmitArena::reset`].
    fn slot(&mut self) -> &mut Kept {
        let (chunk, index) = (self.used / ARENA_CHUNK, self.used % ARENA_CHUNK);
        if chunk == self.chunks.len() {
            // SAFETY: `Kept` is plain old data (a sockaddr_storage and two
            // integers) for which all-zero bytes are a valid value.
            let zero: Kept = unsafe { std::mem::zeroed() };
            self.chunks.push(Box::new([zero; ARENA_CHUNK]));
        }
        self.used += 1;
        &mut self.chunks[chunk][index]
    }

    fn keep_timespec(&mut self, d: Duration) -> *const types::Timespec {
        let slot = self.slot();
        slot.ts = types::Timespec::new()
            .sec(d.as_secs())
            .nsec(d.subsec_nanos());
        &slot.ts
    }

    fn keep_addr(&mut self, addr: &socket2::SockAddr) -> *const libc::sockaddr {
        let slot = self.slot();
        let len = (addr.len() as usize).min(std::mem::size_of::<libc::sockaddr_storage>());
        // SAFETY: both regions are valid for `len` bytes (a SockAddr's
        // storage holds `len` initialised bytes, at most a sockaddr_storage)
        // and they do not overlap (the slot is ours).
        unsafe {
            std::ptr::copy_nonoverlapping(
                addr.as_ptr().cast::<u8>(),
                (&mut slot.addr as *mut libc::sockaddr_storage).cast::<u8>(),
                len,
            );
        }
        (&slot.addr as *const libc::sockaddr_storage).cast()
    }

    fn reset(&mut self) {
        self.used = 0;
    }
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
        Ok(Ring {
            ring,
            bufs: None,
            kept: SubmitArena::new(),
        })
    }

    /// Checks at start-up that this process may use io_uring as the workers
    /// do: a ring with their flags and a provided-buffer ring (Linux 5.19+).
    pub fn probe() -> Result<(), RingError> {
        let mut ring = Ring::new()?;
        ring.provide_buffers(0, 2, 4096).map_err(RingError::Other)
    }

    pub(super) fn submitter(&self) -> io_uring::Submitter<'_> {
        self.ring.submitter()
    }

    /// Queues entries that must reach the kernel together (a linked chain).
    fn push_all(&mut self, entries: &[squeue::Entry]) {
        loop {
            // SAFETY: every entry built by this module references either no
            // memory, memory in `self.kept` (reused only once the SQ is empty,
            // so after the kernel has read it), or buffer memory owned by a
            // `BufRing` that outlives the operation (see `send_buf`). The
            // entries are copied into the SQ.
            let pushed = unsafe { self.ring.submission().push_multiple(entries) };
            if pushed.is_ok() {
                return;
            }
            // SQ full: hand what is queued to the kernel and try again.
            if let Err(e) = self.ring.submit() {
                if e.raw_os_error() != Some(libc::EBUSY) {
                    panic!("io_uring submit failed with a full SQ: {e}");
                }
            }
            self.submitted();
        }
    }

    /// After an enter: what the kernel consumed it has read, so the kept
    /// memory may be reused once nothing is left in the SQ.
    fn submitted(&mut self) {
        if self.ring.submission().is_empty() {
            self.kept.reset();
        }
    }

    /// `user_data` as given by a caller, which must leave [`RESERVED_BITS`] clear.
    fn caller_data(user_data: u64) -> u64 {
        assert!(
            user_data & RESERVED_BITS == 0,
            "user_data {user_data:#x} uses bits the ring keeps for itself"
        );
        user_data
    }

    fn bufs(&self) -> &BufRing {
        self.bufs
            .as_ref()
            .expect("provide_buffers before receiving")
    }

    fn push(&mut self, entry: squeue::Entry) {
        self.push_all(std::slice::from_ref(&entry));
    }
}

impl Reactor for Ring {
    /// Maps and registers the ring's provided buffers: `count` (a power of
    /// two) buffers of `buf_size` bytes as buffer group `group`.
    fn provide_buffers(&mut self, group: u16, count: u16, buf_size: u32) -> io::Result<()> {
        assert!(count <= 0x7ffe, "buffer ids must fit the lease bits");
        self.bufs = Some(BufRing::new(self, group, count, buf_size)?);
        Ok(())
    }

    /// The bytes `offset..offset+len` of received buffer `id`.
    fn buffer(&self, id: BufId, offset: u32, len: u32) -> &[u8] {
        self.bufs().slice(id, offset, len)
    }

    /// Gives received buffer `id` back (once no send reads it any more).
    fn recycle(&mut self, id: BufId) {
        self.bufs
            .as_mut()
            .expect("provide_buffers before receiving")
            .recycle(id);
    }

    /// Multishot accept on a listening socket; accepted fds are non-blocking
    /// and arrive owned in their completion ([`Completion::take_accepted`]).
    fn accept_multi(&mut self, listen_fd: RawFd, user_data: u64) {
        let e = opcode::AcceptMulti::new(types::Fd(listen_fd))
            .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
            .build()
            .user_data(Self::caller_data(user_data) | ACCEPT_BIT);
        self.push(e);
    }

    /// Connects `fd` to `addr`, bounded by a linked timeout. Two completions
    /// follow: the connect's (`-ECANCELED` when the timeout fired) and the
    /// timeout's. The ring keeps copies of `addr` and `timeout` until the
    /// kernel has read them.
    fn connect(
        &mut self,
        fd: RawFd,
        addr: &socket2::SockAddr,
        timeout: Duration,
        user_data: u64,
        timeout_user_data: u64,
    ) {
        let sockaddr = self.kept.keep_addr(addr);
        let ts = self.kept.keep_timespec(timeout);
        let connect = opcode::Connect::new(types::Fd(fd), sockaddr, addr.len())
            .build()
            .flags(squeue::Flags::IO_LINK)
            .user_data(Self::caller_data(user_data));
        let timeout = opcode::LinkTimeout::new(ts)
            .build()
            .user_data(Self::caller_data(timeout_user_data));
        self.push_all(&[connect, timeout]);
    }

    /// Receives into a buffer the kernel picks from `bufs`.
    ///
    /// `poll_first`: the caller expects no data yet (the last read was short
    /// and its bytes were just forwarded), so the kernel arms its readiness
    /// poll at once instead of first trying a receive that would fail.
    fn recv_provided(&mut self, fd: RawFd, poll_first: bool, user_data: u64) {
        let bufs = self.bufs();
        let ioprio = if poll_first { RECVSEND_POLL_FIRST } else { 0 };
        let e = opcode::Recv::new(types::Fd(fd), std::ptr::null_mut(), bufs.buf_size())
            .buf_group(bufs.group())
            .ioprio(ioprio)
            .build()
            .flags(squeue::Flags::BUFFER_SELECT)
            .user_data(Self::caller_data(user_data));
        self.push(e);
    }

    /// Sends `len` bytes of received buffer `id` starting at `offset`. The
    /// buffer stays lent to the kernel until this send's completion is
    /// drained; giving it back meanwhile only takes effect then.
    fn send_buf(&mut self, fd: RawFd, id: BufId, offset: u32, len: u32, user_data: u64) {
        let user_data = Self::caller_data(user_data) | ((id.0 as u64 + 1) << LEASE_SHIFT);
        let bufs = self.bufs.as_mut().expect("provide_buffers before sending");
        bufs.lend(id);
        let data = bufs.slice(id, offset, len);
        let e = opcode::Send::new(types::Fd(fd), data.as_ptr(), data.len() as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(user_data);
        self.push(e);
    }

    /// One-shot readiness poll (`libc::POLLIN` / `POLLOUT` bits).
    fn poll(&mut self, fd: RawFd, events: u32, multi: bool, user_data: u64) {
        let e = opcode::PollAdd::new(types::Fd(fd), events)
            .multi(multi)
            .build()
            .user_data(Self::caller_data(user_data));
        self.push(e);
    }

    /// A timer that completes once after `after` (the ring keeps the
    /// timespec until the kernel has read it).
    fn timeout(&mut self, after: Duration, user_data: u64) {
        let ts = self.kept.keep_timespec(after);
        let e = opcode::Timeout::new(ts)
            .build()
            .user_data(Self::caller_data(user_data));
        self.push(e);
    }

    /// Cancels every operation in flight on `fd`.
    fn cancel_fd(&mut self, fd: RawFd, user_data: u64) {
        let e = opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fd(fd)).all())
            .build()
            .user_data(Self::caller_data(user_data));
        self.push(e);
    }

    /// Submits what is queued and waits for at least one completion, or until
    /// `max_wait` passes (`Some(ZERO)`: do not sleep, only run deferred work).
    fn submit_and_wait(&mut self, max_wait: Option<Duration>) -> io::Result<()> {
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
        self.submitted();
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
    fn drain_completions(&mut self, out: &mut Vec<Completion>) {
        out.clear();
        let mut cq = self.ring.completion();
        cq.sync();
        for c in &mut cq {
            let user_data = c.user_data();
            if let Some(bufs) = self.bufs.as_mut() {
                if let Some(id) = cqueue::buffer_select(c.flags()) {
                    bufs.received(BufId(id));
                }
                let lease = (user_data & LEASE_MASK) >> LEASE_SHIFT;
                if lease != 0 {
                    bufs.returned(BufId(lease as u16 - 1));
                }
            }
            let accept = user_data & ACCEPT_BIT != 0;
            let accepted = (accept && c.result() >= 0).then(|| {
                // SAFETY: a non-negative result of an accept (marked by
                // ACCEPT_BIT, which only `accept_multi` sets) is a new fd
                // that nothing else owns; it is wrapped exactly once, here.
                unsafe { OwnedFd::from_raw_fd(c.result()) }
            });
            out.push(Completion {
                user_data: user_data & !RESERVED_BITS,
                result: c.result(),
                buffer: cqueue::buffer_select(c.flags()).map(BufId),
                more: cqueue::more(c.flags()),
                accepted,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};

    use crate::reactor::Reactor;
    use std::os::fd::AsRawFd;

    use super::*;

    fn wait_for(ring: &mut Ring, user_data: u64) -> Completion {
        let mut out = Vec::new();
        for _ in 0..100 {
            ring.submit_and_wait(Some(Duration::from_millis(100)))
                .unwrap();
            ring.drain_completions(&mut out);
            if let Some(i) = out.iter().position(|c| c.user_data == user_data) {
                return out.swap_remove(i);
            }
        }
        panic!("no completion for {user_data}");
    }

    #[test]
    fn connect_reads_the_rings_copy_of_the_address_after_the_callers_is_gone() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = listener.local_addr().unwrap();
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        let mut ring = Ring::new().unwrap();
        {
            let addr = socket2::SockAddr::from(target);
            ring.connect(socket.as_raw_fd(), &addr, Duration::from_secs(5), 1, 2);
            // `addr` is dropped here, before anything reaches the kernel.
        }
        assert_eq!(wait_for(&mut ring, 1).result, 0);
        let (peer, _) = listener.accept().unwrap();
        assert_eq!(
            peer.peer_addr().unwrap(),
            socket.local_addr().unwrap().as_socket().unwrap()
        );
    }

    #[test]
    fn an_accepted_socket_is_handed_over_owned_once() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut ring = Ring::new().unwrap();
        ring.accept_multi(listener.as_raw_fd(), 9);
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let mut c = wait_for(&mut ring, 9);
        assert!(c.result >= 0, "accept failed: {}", c.result);
        let fd = c.take_accepted().expect("the new socket");
        assert!(c.take_accepted().is_none(), "handed over twice");
        let accepted = TcpStream::from(fd);
        assert_eq!(accepted.peer_addr().unwrap(), client.local_addr().unwrap());
    }

    #[test]
    #[should_panic(expected = "bits the ring keeps")]
    fn user_data_in_the_rings_bits_is_refused() {
        let mut ring = Ring::new().unwrap();
        ring.timeout(Duration::from_secs(1), ACCEPT_BIT);
    }
}
