//! Thin, checked wrappers over the Linux syscalls tcpload needs.
//!
//! The load modes drive thousands of nonblocking sockets from one thread per
//! event loop, so they talk to epoll and the socket API directly through
//! `libc` rather than through an async runtime. Everything unsafe lives here;
//! the mode modules only see owned fds, `io::Result`s and small enums.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// fds a process needs besides its sockets: stdio, epoll instances,
/// listeners, whatever the runtime opened. Generous on purpose.
pub const FD_RESERVE: u64 = 32;

/// An owned file descriptor, closed on drop.
#[derive(Debug)]
pub struct Fd(RawFd);

impl Fd {
    pub fn raw(&self) -> RawFd {
        self.0
    }
}

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: we own this descriptor and close it exactly once.
        unsafe {
            libc::close(self.0);
        }
    }
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn cvt_size(ret: libc::ssize_t) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

/// Raises the soft RLIMIT_NOFILE to the hard limit and returns the new
/// soft limit. Unprivileged processes may always do this; raising the hard
/// limit itself needs CAP_SYS_RESOURCE, which we do not assume.
pub fn raise_nofile_limit() -> Result<libc::rlim_t> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) })
        .context("getrlimit(RLIMIT_NOFILE)")?;
    if lim.rlim_cur < lim.rlim_max {
        let want = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: `want` is a valid rlimit.
        cvt(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) }).with_context(|| {
            format!(
                "raising soft RLIMIT_NOFILE from {} to the hard limit {}",
                lim.rlim_cur, lim.rlim_max
            )
        })?;
        lim.rlim_cur = lim.rlim_max;
    }
    Ok(lim.rlim_cur)
}

/// Fails with a message that tells the caller to split the work over
/// processes when `sockets` (plus [`FD_RESERVE`]) will not fit in `limit`.
pub fn check_fd_budget(sockets: u64, limit: u64, what: &str) -> Result<()> {
    let most = limit.saturating_sub(FD_RESERVE);
    if sockets > most {
        bail!(
            "{what}: {sockets} sockets do not fit in this process: RLIMIT_NOFILE is {limit} \
             (hard limit; raising it needs CAP_SYS_RESOURCE) and {FD_RESERVE} fds are kept \
             for stdio and epoll, so at most {most} sockets per process; split the work over \
             several processes"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Signals

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_sig: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(true, Ordering::SeqCst);
}

/// Installs SIGTERM and SIGINT handlers that set a flag which
/// [`stop_requested`] reads. The handlers do not use SA_RESTART, so a
/// blocked `epoll_wait` returns EINTR promptly; event loops also wake on a
/// short timeout so a signal landing just before `epoll_wait` is seen soon.
pub fn install_stop_handlers() -> Result<()> {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: a zeroed sigaction is a valid starting point; the handler
        // is an `extern "C" fn(c_int)` that only touches an atomic.
        unsafe {
            let mut sa: libc::sigaction = mem::zeroed();
            sa.sa_sigaction = on_stop_signal as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = 0;
            cvt(libc::sigaction(sig, &sa, std::ptr::null_mut()))
                .with_context(|| format!("installing handler for signal {sig}"))?;
        }
    }
    Ok(())
}

/// True once SIGTERM or SIGINT has arrived.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

// ---------------------------------------------------------------------------
// epoll

/// One epoll instance. Tokens are caller-chosen `u64`s.
pub struct Epoll {
    fd: Fd,
}

pub const IN: u32 = libc::EPOLLIN as u32;
pub const OUT: u32 = libc::EPOLLOUT as u32;
pub const ERR: u32 = libc::EPOLLERR as u32;
pub const HUP: u32 = libc::EPOLLHUP as u32;
pub const RDHUP: u32 = libc::EPOLLRDHUP as u32;
pub const ET: u32 = libc::EPOLLET as u32;
pub const EXCLUSIVE: u32 = libc::EPOLLEXCLUSIVE as u32;

pub type Event = libc::epoll_event;

/// A zeroed event buffer of `n` entries for [`Epoll::wait`].
pub fn event_buffer(n: usize) -> Vec<Event> {
    vec![libc::epoll_event { events: 0, u64: 0 }; n]
}

/// Reads (events, token) out of a possibly packed `epoll_event`.
pub fn event_parts(ev: &Event) -> (u32, u64) {
    // Copy out by value: the struct is packed on x86_64.
    let events = ev.events;
    let token = ev.u64;
    (events, token)
}

impl Epoll {
    pub fn new() -> Result<Self> {
        // SAFETY: plain syscall.
        let fd =
            cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) }).context("epoll_create1")?;
        Ok(Epoll { fd: Fd(fd) })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` is valid for the duration of the call.
        cvt(unsafe { libc::epoll_ctl(self.fd.raw(), op, fd, &mut ev) }).map(|_| ())
    }

    pub fn add(&self, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, events, token)
    }

    pub fn modify(&self, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, events, token)
    }

    pub fn delete(&self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0)
    }

    /// Waits up to `timeout` and returns how many entries of `buf` are
    /// filled. EINTR (a signal) counts as zero events, not an error.
    pub fn wait(&self, buf: &mut [Event], timeout: Duration) -> Result<usize> {
        let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
        let cap = buf.len().min(i32::MAX as usize) as libc::c_int;
        // SAFETY: `buf` has room for `cap` events.
        let n = unsafe { libc::epoll_wait(self.fd.raw(), buf.as_mut_ptr(), cap, ms) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                return Ok(0);
            }
            return Err(err).context("epoll_wait");
        }
        Ok(n as usize)
    }
}

// ---------------------------------------------------------------------------
// Socket addresses

fn to_sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all-zero is valid.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in, sin) };
            mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in6, sin6) };
            mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn from_sockaddr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: family says this is a sockaddr_in.
            let sin = unsafe { &*(storage as *const _ as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: family says this is a sockaddr_in6.
            let sin6 = unsafe { &*(storage as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                sin6.sin6_addr.s6_addr.into(),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

fn family(addr: &SocketAddr) -> libc::c_int {
    match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    }
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, val: &T) -> io::Result<()> {
    // SAFETY: `val` points at a live T of the size we pass.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            val as *const T as *const libc::c_void,
            mem::size_of::<T>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

fn new_tcp_socket(fam: libc::c_int) -> io::Result<Fd> {
    // SAFETY: plain syscall.
    let fd = cvt(unsafe {
        libc::socket(
            fam,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })?;
    Ok(Fd(fd))
}

/// A nonblocking listening socket with SO_REUSEADDR and the given backlog.
pub fn listen(addr: &SocketAddr, backlog: i32) -> Result<Fd> {
    let fd = new_tcp_socket(family(addr)).context("socket() for listener")?;
    setsockopt(
        fd.raw(),
        libc::SOL_SOCKET,
        libc::SO_REUSEADDR,
        &1 as &libc::c_int,
    )
    .context("setsockopt(SO_REUSEADDR)")?;
    let (sa, len) = to_sockaddr(addr);
    // SAFETY: `sa` holds a valid address of `len` bytes.
    cvt(unsafe { libc::bind(fd.raw(), &sa as *const _ as *const libc::sockaddr, len) })
        .with_context(|| format!("bind {addr}"))?;
    // SAFETY: plain syscall.
    cvt(unsafe { libc::listen(fd.raw(), backlog) }).with_context(|| format!("listen {addr}"))?;
    Ok(fd)
}

/// The address a socket is bound to (to report the port of `:0` listeners).
pub fn local_addr(fd: &Fd) -> Result<SocketAddr> {
    // SAFETY: zeroed storage is valid; the kernel fills at most `len` bytes.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    cvt(unsafe {
        libc::getsockname(
            fd.raw(),
            &mut storage as *mut _ as *mut libc::sockaddr,
            &mut len,
        )
    })
    .context("getsockname")?;
    from_sockaddr(&storage).context("getsockname returned an unknown address family")
}

/// Accepts one connection as a nonblocking socket. `Ok(None)` when the
/// queue is empty.
pub fn accept(listener: &Fd) -> io::Result<Option<Fd>> {
    // SAFETY: null address pointers are allowed.
    let ret = unsafe {
        libc::accept4(
            listener.raw(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    if ret < 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::EAGAIN) => Ok(None),
            // The peer gave up before we accepted: not our problem.
            Some(libc::ECONNABORTED) | Some(libc::EINTR) | Some(libc::EPROTO) => Ok(None),
            _ => Err(err),
        };
    }
    Ok(Some(Fd(ret)))
}

/// How a client socket is set up before `connect`.
#[derive(Clone, Copy, Debug)]
pub struct ConnectOpts {
    /// Bind to this source address (port 0, chosen at connect time).
    pub source: Option<Ipv4Addr>,
    /// Close with SO_LINGER {1, 0}: RST instead of FIN, no TIME_WAIT.
    pub linger0: bool,
    /// TCP_NODELAY, for request/response traffic.
    pub nodelay: bool,
}

/// Creates a nonblocking socket and starts connecting it to `target`.
/// Returns the socket and whether the connect already completed.
/// Errors here are "could not even start" (no fds, no ports, refused).
pub fn start_connect(target: &SocketAddr, opts: &ConnectOpts) -> io::Result<(Fd, bool)> {
    let fd = new_tcp_socket(family(target))?;
    if opts.linger0 {
        let lg = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        setsockopt(fd.raw(), libc::SOL_SOCKET, libc::SO_LINGER, &lg)?;
    }
    if opts.nodelay {
        setsockopt(
            fd.raw(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            &1 as &libc::c_int,
        )?;
    }
    if let Some(src) = opts.source {
        if !target.is_ipv4() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "IPv4 --sources with an IPv6 target",
            ));
        }
        // Without this, bind(port 0) picks a port that must be unique for
        // the source address alone, which caps us at the ephemeral range
        // per source; with it the kernel picks at connect() time using the
        // full 4-tuple.
        setsockopt(
            fd.raw(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            &1 as &libc::c_int,
        )?;
        let (sa, len) = to_sockaddr(&SocketAddr::V4(SocketAddrV4::new(src, 0)));
        // SAFETY: `sa` holds a valid address of `len` bytes.
        cvt(unsafe { libc::bind(fd.raw(), &sa as *const _ as *const libc::sockaddr, len) })?;
    }
    let (sa, len) = to_sockaddr(target);
    // SAFETY: `sa` holds a valid address of `len` bytes.
    let ret = unsafe { libc::connect(fd.raw(), &sa as *const _ as *const libc::sockaddr, len) };
    if ret == 0 {
        return Ok((fd, true));
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EINPROGRESS) {
        Ok((fd, false))
    } else {
        Err(err)
    }
}

/// The pending error on a socket (SO_ERROR), e.g. the outcome of a
/// nonblocking connect. `Ok(())` when there is none.
pub fn take_error(fd: &Fd) -> io::Result<()> {
    let mut val: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `val` and `len` are valid for writing.
    cvt(unsafe {
        libc::getsockopt(
            fd.raw(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            &mut val as *mut _ as *mut libc::c_void,
            &mut len,
        )
    })?;
    if val == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(val))
    }
}

/// Nonblocking send. `Ok(None)` on EAGAIN.
pub fn send(fd: &Fd, buf: &[u8]) -> io::Result<Option<usize>> {
    // SAFETY: `buf` is valid for reading `buf.len()` bytes.
    let ret = unsafe {
        libc::send(
            fd.raw(),
            buf.as_ptr() as *const libc::c_void,
            buf.len(),
            libc::MSG_NOSIGNAL,
        )
    };
    match cvt_size(ret) {
        Ok(n) => Ok(Some(n)),
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::EINTR) => Ok(Some(0)),
        Err(e) => Err(e),
    }
}

/// Nonblocking receive. `Ok(None)` on EAGAIN, `Ok(Some(0))` on EOF.
pub fn recv(fd: &Fd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        // SAFETY: `buf` is valid for writing `buf.len()` bytes.
        let ret = unsafe {
            libc::recv(
                fd.raw(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                0,
            )
        };
        match cvt_size(ret) {
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Disables Nagle, so echoed tails are not held back waiting for an ACK
/// that the peer delays.
pub fn set_nodelay(fd: &Fd) -> io::Result<()> {
    setsockopt(
        fd.raw(),
        libc::IPPROTO_TCP,
        libc::TCP_NODELAY,
        &1 as &libc::c_int,
    )
}

/// Half-closes the write side (sends FIN).
pub fn shutdown_write(fd: &Fd) -> io::Result<()> {
    // SAFETY: plain syscall.
    cvt(unsafe { libc::shutdown(fd.raw(), libc::SHUT_WR) }).map(|_| ())
}

/// Read from a raw fd (stdin, only once epoll says it is readable). Same
/// conventions as [`recv`].
pub fn read_raw(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    // SAFETY: `buf` is valid for writing `buf.len()` bytes.
    let ret = unsafe { libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
    match cvt_size(ret) {
        Ok(n) => Ok(Some(n)),
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::EINTR) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Which bucket of the JSON "errors" object a socket error belongs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Could not establish: refused, unreachable, no ports, no fds.
    Connect,
    /// Our own per-connection deadline passed, or the kernel's (ETIMEDOUT).
    Timeout,
    /// Established, then reset or broken.
    Reset,
    /// The peer closed before echoing everything back.
    Short,
}

/// Classifies an error seen while connecting (`established == false`) or
/// while exchanging data.
pub fn classify(err: &io::Error, established: bool) -> ErrorKind {
    if err.raw_os_error() == Some(libc::ETIMEDOUT) {
        ErrorKind::Timeout
    } else if established {
        // ECONNRESET, EPIPE and friends: the connection broke.
        ErrorKind::Reset
    } else {
        ErrorKind::Connect
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_round_trip() {
        for s in ["127.0.0.1:8080", "[::1]:443", "10.1.2.3:0"] {
            let a: SocketAddr = s.parse().unwrap();
            let (st, _) = to_sockaddr(&a);
            assert_eq!(from_sockaddr(&st), Some(a));
        }
    }

    #[test]
    fn budget_message_says_to_split() {
        let err = check_fd_budget(100_000, 20_000, "hold").unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("split"), "{msg}");
        assert!(msg.contains("19968"), "{msg}");
        check_fd_budget(19_968, 20_000, "hold").unwrap();
    }
}
