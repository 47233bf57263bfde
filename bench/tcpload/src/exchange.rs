//! The one client-side protocol step every mode shares: send a payload and
//! read the same number of bytes back from an echo server, on a
//! nonblocking socket, resuming where it left off after each readiness
//! event.
//!
//! `rate` (with `--payload`), `echo` and `hold` (ping and liveness check)
//! all do exactly this; keeping it in one place keeps their error
//! classification identical.

use crate::sys::{self, ErrorKind, Fd};

/// Progress of one send-then-read-back exchange.
#[derive(Clone, Copy, Debug, Default)]
pub struct Exchange {
    pub sent: u32,
    pub got: u32,
}

/// What [`Exchange::pump`] achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// All bytes sent and echoed back.
    Done,
    /// The socket would block; call again on the next readiness event.
    Pending,
}

impl Exchange {
    /// Sends what is left of `payload`, then reads echoed bytes until all
    /// `payload.len()` are back or the socket would block. Never reads
    /// beyond the payload, so the next exchange's bytes stay queued.
    /// Suitable for edge-triggered epoll: it stops only on EAGAIN or done.
    pub fn pump(&mut self, fd: &Fd, payload: &[u8], scratch: &mut [u8]) -> Result<Step, ErrorKind> {
        let total = payload.len();
        while (self.sent as usize) < total {
            match sys::send(fd, &payload[self.sent as usize..]) {
                Ok(Some(n)) => self.sent += n as u32,
                Ok(None) => break,
                Err(e) => return Err(sys::classify(&e, true)),
            }
        }
        while (self.got as usize) < (self.sent as usize) {
            let want = (total - self.got as usize).min(scratch.len());
            match sys::recv(fd, &mut scratch[..want]) {
                Ok(Some(0)) => return Err(ErrorKind::Short),
                Ok(Some(n)) => self.got += n as u32,
                Ok(None) => break,
                Err(e) => return Err(sys::classify(&e, true)),
            }
        }
        if self.got as usize >= total {
            Ok(Step::Done)
        } else {
            Ok(Step::Pending)
        }
    }
}

/// Outcome of a nonblocking connect once epoll reports the socket.
pub fn connect_result(fd: &Fd) -> Result<(), ErrorKind> {
    sys::take_error(fd).map_err(|e| sys::classify(&e, false))
}

/// A payload of `n` recognisable bytes.
pub fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + (i % 26) as u8).collect()
}
