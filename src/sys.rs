//! Thin, safe wrappers over the few raw syscalls spliced makes outside io_uring
//! (splice, shutdown, eventfd, CPU affinity, SIGPIPE, the fd limit, and the
//! epoll engine's epoll, accept, connect, recv and poll), so that the second
//! engine needs no `unsafe` of its own. One of the two
//! modules allowed to use `unsafe` (with `crate::uring`). Each returns
//! `io::Result` with the OS error; none of them blocks, because every fd they
//! touch is non-blocking.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Takes ownership of an fd a syscall just returned.
///
/// # Safety
/// `fd` must be open and owned by nothing else (fresh from `pipe2`,
/// `eventfd`…), and wrapped only once.
pub unsafe fn owned_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: the caller guarantees `fd` is open and unowned.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// `splice(2)` with `SPLICE_F_NONBLOCK | SPLICE_F_MOVE` between two fds, one of
/// which must be a pipe. Returns the bytes moved; `Ok(0)` from a socket is EOF.
pub fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: splice takes no user memory; null offsets mean "current position",
    // which is required for sockets and pipes.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// How to shut a socket down.
#[derive(Debug, Clone, Copy)]
pub enum Shut {
    Write,
}

/// `shutdown(2)`; errors such as ENOTCONN are returned for the caller to ignore.
pub fn shutdown(fd: RawFd, how: Shut) -> io::Result<()> {
    let how = match how {
        Shut::Write => libc::SHUT_WR,
    };
    // SAFETY: plain syscall on an fd we own; no memory is passed.
    cvt(unsafe { libc::shutdown(fd, how) }).map(drop)
}

/// A non-blocking eventfd, used by the control thread to wake a worker.
pub fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd returns a new fd or -1; on success we own it.
    let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
    // SAFETY: a successful eventfd returned this new fd, owned by nothing else.
    Ok(unsafe { owned_fd(fd) })
}

/// Adds one to an eventfd counter, waking whoever polls it.
pub fn eventfd_signal(fd: &impl AsRawFd) -> io::Result<()> {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live local u64, as eventfd requires.
    let n = unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    if n < 0 {
        let e = io::Error::last_os_error();
        // A full counter already guarantees a wakeup.
        if e.kind() == io::ErrorKind::WouldBlock {
            return Ok(());
        }
        return Err(e);
    }
    Ok(())
}

/// Resets an eventfd counter after a wakeup.
pub fn eventfd_clear(fd: &impl AsRawFd) {
    let mut v: u64 = 0;
    // SAFETY: reads at most 8 bytes into a live local u64. EAGAIN (already
    // cleared) is fine to ignore.
    unsafe { libc::read(fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
}

/// Pins the calling thread to one CPU. Failure (e.g. a restricted cpuset) is
/// returned for the caller to log; the worker runs unpinned then.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_SET bounds-checks against its size;
    // sched_setaffinity(0, ...) acts on the calling thread only.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        cvt(libc::sched_setaffinity(
            0,
            std::mem::size_of::<libc::cpu_set_t>(),
            &set,
        ))
        .map(drop)
    }
}

/// CPUs this process may run on, in order (honours taskset/cgroup cpusets).
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: sched_getaffinity fills a zeroed plain-data cpu_set_t of the size we pass.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Ignores SIGPIPE for the whole process: a write to a closed peer must be an
/// EPIPE error on that one connection (splice has no MSG_NOSIGNAL), not the end
/// of the balancer.
pub fn ignore_sigpipe() {
    // SAFETY: setting a signal's disposition to SIG_IGN has no memory effects.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// The soft and hard RLIMIT_NOFILE, after trying to raise the soft limit to the hard one.
pub fn raise_nofile_limit() -> (u64, u64) {
    // SAFETY: getrlimit/setrlimit read and write a local plain-data struct.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return (0, 0);
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
        (lim.rlim_cur, lim.rlim_max)
    }
}

/// A non-blocking `send(2)` of `data` (no SIGPIPE); returns the bytes taken.
/// Used for the short preface (PROXY header, peeked bytes) a connection sends
/// before relaying.
pub fn send(fd: RawFd, data: &[u8]) -> io::Result<usize> {
    // SAFETY: `data` is a live slice for the duration of the call; the kernel
    // only reads `data.len()` bytes from it.
    let n = unsafe {
        libc::send(
            fd,
            data.as_ptr().cast(),
            data.len(),
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// A non-blocking `recv(2)` into `buf`; `Ok(0)` is EOF.
pub fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a live, writable slice for the duration of the call;
    // the kernel writes at most `buf.len()` bytes into it.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// `accept4(2)` of one pending connection, non-blocking and close-on-exec.
pub fn accept(listen_fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: null address pointers ask for no peer address; the result is a
    // new fd or -1.
    let fd = cvt(unsafe {
        libc::accept4(
            listen_fd,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    })?;
    // SAFETY: a successful accept4 returned this new fd, owned by nothing else.
    Ok(unsafe { owned_fd(fd) })
}

/// `connect(2)` of a non-blocking socket: `Err` with EINPROGRESS while the
/// handshake runs.
pub fn connect(fd: RawFd, addr: &socket2::SockAddr) -> io::Result<()> {
    // SAFETY: `addr` points at a valid socket address of `addr.len()` bytes
    // that outlives the call.
    cvt(unsafe { libc::connect(fd, addr.as_ptr().cast(), addr.len()) }).map(drop)
}

/// The pending error of a socket (`SO_ERROR`, cleared by reading), 0 if none.
pub fn socket_error(fd: RawFd) -> io::Result<i32> {
    let mut err: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into the local `err`.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok(err)
}

/// Which of `events` (`POLLIN`/`POLLOUT` bits) `fd` has now, without waiting.
pub fn poll_now(fd: RawFd, events: i16) -> io::Result<i16> {
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: poll reads and writes the one local pollfd; timeout 0.
    cvt(unsafe { libc::poll(&mut p, 1, 0) })?;
    Ok(p.revents)
}

/// A new epoll instance (close-on-exec).
pub fn epoll_create() -> io::Result<OwnedFd> {
    // SAFETY: returns a new fd or -1.
    let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
    // SAFETY: a successful epoll_create1 returned this new fd, owned by nothing else.
    Ok(unsafe { owned_fd(fd) })
}

/// Adds `fd` to `epoll` for `events`, tagged with `data`.
pub fn epoll_add(epoll: &impl AsRawFd, fd: RawFd, events: u32, data: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: data };
    // SAFETY: epoll_ctl reads the one local epoll_event.
    cvt(unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) }).map(drop)
}

/// Removes `fd` from `epoll` (closing it does too; this is for fds that
/// stay open).
pub fn epoll_delete(epoll: &impl AsRawFd, fd: RawFd) -> io::Result<()> {
    let mut ev = libc::epoll_event { events: 0, u64: 0 };
    // SAFETY: epoll_ctl ignores the event for EPOLL_CTL_DEL (non-null for
    // old kernels).
    cvt(unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, &mut ev) }).map(drop)
}

/// Waits up to `timeout_ms` (-1: forever) for events, written to the front
/// of `events`; returns how many. EINTR counts as none.
pub fn epoll_wait(
    epoll: &impl AsRawFd,
    events: &mut [libc::epoll_event],
    timeout_ms: i32,
) -> io::Result<usize> {
    let max = events.len().min(i32::MAX as usize) as i32;
    // SAFETY: the kernel writes at most `max` events into `events`, a live
    // mutable slice of at least that many.
    let n = unsafe { libc::epoll_wait(epoll.as_raw_fd(), events.as_mut_ptr(), max, timeout_ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EINTR) {
            return Ok(0);
        }
        return Err(e);
    }
    Ok(n as usize)
}

/// `CLOCK_MONOTONIC` in microseconds, the clock systemd's `MONOTONIC_USEC`
/// uses.
pub fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the local variable.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

/// The first fd systemd passes to a socket-activated service.
const LISTEN_FDS_START: RawFd = 3;

/// The listening sockets systemd passed this process (socket activation:
/// `LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES`), each with its name when
/// the unit gave one; empty when none were passed to *this* process. Takes
/// them once: the variables are removed so a child does not see them.
pub fn take_inherited_listeners() -> Vec<(OwnedFd, Option<String>)> {
    // Not socket-activated: touch the environment no further (removing
    // variables races with other threads reading it, e.g. in-process runs).
    if std::env::var_os("LISTEN_FDS").is_none() {
        return Vec::new();
    }
    let ours = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    let count = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse::<RawFd>().ok())
        .unwrap_or(0);
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .map(|n| n.split(':').map(str::to_owned).collect())
        .unwrap_or_default();
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(var);
    }
    if !ours || count <= 0 {
        return Vec::new();
    }
    (0..count)
        .map(|i| {
            let fd = LISTEN_FDS_START + i;
            // SAFETY: systemd passed fds LISTEN_FDS_START.. to this process
            // (LISTEN_PID is ours) and nothing in it has taken them yet:
            // this runs once, at start, and clears the variables.
            let owned = unsafe { owned_fd(fd) };
            // SAFETY: fcntl on the fd just taken; F_SETFD takes an int.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            let name = names.get(i as usize).filter(|n| !n.is_empty()).cloned();
            (owned, name)
        })
        .collect()
}
