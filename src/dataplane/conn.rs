//! What a worker holds for one connection (its two sockets, the
//! receive buffers and pipes its directions hold, the timers the kernel reads
//! at submit, the count of operations in flight), and the session's [`Io`]
//! over the ring: each request of the sans-IO [`Session`] becomes a
//! submission tagged with the connection's slot and generation, or an inline
//! syscall whose result goes straight back.
//!
//! A connection owns its fds; dropping it closes them, which the worker does
//! only once no operation naming them is in flight.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering;

use socket2::{Domain, Protocol, SockRef, Socket, Type};

use super::token::{Op, Token};
use crate::balance::Backend;
use crate::counters::WorkerStats;
use crate::reactor::{BufId, Reactor};
use crate::session::{Dir, Io, Session, C2B};
use crate::snapshot::Listener;
use crate::sys;
use crate::uring::{Pipe, PipePool};

/// A live connection in the worker's slab.
pub struct Slot {
    pub gen: u32,
    pub session: Session,
    pub res: Resources,
}

/// The engine's side of one connection.
pub struct Resources {
    pub client: OwnedFd,
    pub backend: Option<Socket>,
    /// Operations submitted and not yet completed; the slot is freed at zero.
    pub inflight: u32,
    /// The receive buffer each direction is sending on.
    pub held: [Option<BufId>; 2],
    /// The pipe each spliced direction holds.
    pub pipes: [Option<Pipe>; 2],
}

impl Resources {
    pub fn new(client: OwnedFd) -> Resources {
        Resources {
            client,
            backend: None,
            inflight: 0,
            held: [None, None],
            pipes: [None, None],
        }
    }

    pub fn client_fd(&self) -> RawFd {
        self.client.as_raw_fd()
    }

    pub fn backend_fd(&self) -> RawFd {
        self.backend.as_ref().map_or(-1, |s| s.as_raw_fd())
    }

    /// (source, destination) fds of a direction.
    fn ends(&self, d: Dir) -> (RawFd, RawFd) {
        if d == C2B {
            (self.client_fd(), self.backend_fd())
        } else {
            (self.backend_fd(), self.client_fd())
        }
    }
}

/// The session's view of the engine while it handles one event of one
/// connection: the worker's ring, buffers and pipes plus that connection's
/// resources.
pub struct ReactorIo<'a, R: Reactor> {
    pub ring: &'a mut R,
    pub pipes: &'a mut PipePool,
    pub stats: &'a WorkerStats,
    /// Pumps to continue after this round of completions.
    pub ready: &'a mut Vec<(u32, u32, Dir)>,
    /// Receives waiting for a free buffer.
    pub starved: &'a mut Vec<(u32, u32, Dir)>,
    /// A buffer was given back this round (starved receives may go on).
    pub recycled: &'a mut bool,
    pub res: &'a mut Resources,
    pub slot: u32,
    pub gen: u32,
}

impl<R: Reactor> ReactorIo<'_, R> {
    fn token(&self, op: Op) -> u64 {
        Token::new(op, self.slot, self.gen).encode()
    }

    fn pipes_changed(&self) {
        self.stats
            .pipes_in_use
            .store(self.pipes.in_use() as u64, Ordering::Relaxed);
    }

    fn pipe(&self, dir: Dir) -> &Pipe {
        self.res.pipes[dir]
            .as_ref()
            .expect("the session splices only while it holds a pipe")
    }
}

impl<R: Reactor> Io for ReactorIo<'_, R> {
    fn recv(&mut self, dir: Dir, poll_first: bool) {
        let t = self.token(Op::Recv(dir));
        let (src, _) = self.res.ends(dir);
        self.res.inflight += 1;
        self.ring.recv_provided(src, poll_first, t);
    }

    fn send(&mut self, dir: Dir, offset: u32, len: u32) {
        let t = self.token(Op::Send(dir));
        let (_, dst) = self.res.ends(dir);
        let buf = self.res.held[dir].expect("the session sends only a received buffer");
        self.res.inflight += 1;
        self.ring.send_buf(dst, buf, offset, len, t);
    }

    fn release_buffer(&mut self, dir: Dir) {
        if let Some(buf) = self.res.held[dir].take() {
            self.ring.recycle(buf);
            *self.recycled = true;
        }
    }

    fn recv_when_buffers_free(&mut self, dir: Dir) {
        self.starved.push((self.slot, self.gen, dir));
    }

    fn connect(&mut self, backend: &Backend, listener: &Listener) -> io::Result<()> {
        let socket = Socket::new(
            Domain::for_address(backend.addr),
            Type::STREAM.nonblocking().cloexec(),
            Some(Protocol::TCP),
        )?;
        let _ = socket.set_tcp_nodelay(true);
        let fd = socket.as_raw_fd();
        self.res.backend = Some(socket);
        self.res.inflight += 2;
        let (t_connect, t_timeout) = (self.token(Op::Connect), self.token(Op::ConnectTimeout));
        self.ring.connect(
            fd,
            &backend.sockaddr,
            listener.connect_timeout,
            t_connect,
            t_timeout,
        );
        Ok(())
    }

    fn drop_backend(&mut self) {
        self.res.backend = None;
    }

    fn write_backend_now(&mut self, data: &[u8]) -> io::Result<usize> {
        sys::send(self.res.backend_fd(), data)
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        SockRef::from(&self.res.client)
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
    }

    fn wait_readable(&mut self, dir: Dir) {
        let t = self.token(Op::PollIn(dir));
        let (src, _) = self.res.ends(dir);
        self.res.inflight += 1;
        self.ring.poll(src, libc::POLLIN as u32, false, t);
    }

    fn wait_writable(&mut self, dir: Dir) {
        let t = self.token(Op::PollOut(dir));
        let (_, dst) = self.res.ends(dir);
        self.res.inflight += 1;
        self.ring.poll(dst, libc::POLLOUT as u32, false, t);
    }

    fn take_pipe(&mut self, dir: Dir) -> bool {
        let Some(pipe) = self.pipes.take() else {
            return false;
        };
        self.res.pipes[dir] = Some(pipe);
        self.pipes_changed();
        true
    }

    fn give_pipe(&mut self, dir: Dir) {
        if let Some(pipe) = self.res.pipes[dir].take() {
            self.pipes.give(pipe);
            self.pipes_changed();
        }
    }

    fn splice_in(&mut self, dir: Dir) -> io::Result<usize> {
        let (src, _) = self.res.ends(dir);
        let pipe = self.pipe(dir);
        sys::splice(src, pipe.write_fd(), pipe.capacity())
    }

    fn splice_out(&mut self, dir: Dir, len: usize) -> io::Result<usize> {
        let (_, dst) = self.res.ends(dir);
        sys::splice(self.pipe(dir).read_fd(), dst, len)
    }

    fn shut_write(&mut self, dir: Dir) {
        let (_, dst) = self.res.ends(dir);
        // ENOTCONN (peer already gone) is fine: the FIN has nowhere to go.
        let _ = sys::shutdown(dst, sys::Shut::Write);
    }

    fn throttle(&mut self, dir: Dir, ns: u64) {
        let t = self.token(Op::Throttle(dir));
        self.res.inflight += 1;
        self.ring
            .timeout(std::time::Duration::from_nanos(ns.max(1)), t);
    }

    fn pump_later(&mut self, dir: Dir) {
        self.ready.push((self.slot, self.gen, dir));
    }

    fn cancel_all(&mut self) {
        if self.res.inflight == 0 {
            return;
        }
        for fd in [self.res.client_fd(), self.res.backend_fd()] {
            if fd >= 0 {
                self.res.inflight += 1;
                let t = self.token(Op::Cancel);
                self.ring.cancel_fd(fd, t);
            }
        }
    }
}
