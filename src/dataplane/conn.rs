//! The state of one proxied connection: its two sockets, the backend it was
//! sent to, and the two relay directions. Plain data: the worker drives it.
//! A connection owns its fds; dropping it closes them, which the worker does
//! only once no operation naming them is in flight.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Instant;

use socket2::Socket;

use super::token::{Dir, B2C, C2B};
use crate::limits::Ticket;
use crate::outcome::Termination;
use crate::snapshot::Snapshot;
use crate::uring::{BufId, Pipe, Timespec};

/// Most backends one client may try: the first plus `retries` (validated ≤ 16).
pub const MAX_ATTEMPTS: usize = 17;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Refused by a limit with `action: tarpit`: held, unread, until `tarpit_until`.
    Tarpit,
    /// Reading a PROXY header and/or a TLS ClientHello before choosing a pool.
    Inspecting,
    Connecting,
    Relaying,
    /// Waiting for in-flight operations to finish before the slot is freed.
    Closing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Receive into the provided-buffer ring, then send.
    Copy,
    /// Readiness poll, then `splice(2)` through a pooled pipe.
    Splice,
}

/// A received buffer being sent on.
#[derive(Debug, Clone, Copy)]
pub struct Held {
    pub buf: BufId,
    pub len: u32,
    pub sent: u32,
}

/// One relay direction (half-duplex: read, write all of it, read again).
pub struct Direction {
    pub mode: Mode,
    /// Bytes received and not yet fully sent (copy mode).
    pub held: Option<Held>,
    /// The pipe, while it holds bytes (splice mode).
    pub pipe: Option<Pipe>,
    pub pipe_bytes: usize,
    /// Consecutive receives that filled a whole buffer: the bulk signal.
    pub full_reads: u8,
    /// Bytes spliced in since the source last became readable.
    pub burst: usize,
    /// Short bursts in a row while splicing: the end-of-bulk signal.
    pub short_bursts: u8,
    /// The source sent FIN; the destination gets SHUT_WR once drained.
    pub src_eof: bool,
    /// FIN forwarded: this direction is finished.
    pub done: bool,
    /// Bytes delivered to the destination.
    pub bytes: u64,
    /// Bytes granted by the bandwidth limit and not yet written.
    pub granted: usize,
    /// The wait of a throttled direction, kept here so the kernel can read it
    /// at submit (allocated the first time the direction is throttled).
    pub throttle: Option<Box<Timespec>>,
}

/// Consecutive bursts shorter than one buffer that send a spliced direction
/// back to copying.
pub const SHORT_BURSTS_TO_COPY: u8 = 4;

impl Direction {
    /// A spliced direction's source has no more bytes for now: ends the
    /// burst and says which mode to go on in. Several short bursts in a row
    /// (under `full` bytes each) mean the bulk phase is over. One is not
    /// enough: a fast stream often finds its sender briefly behind, and
    /// flip-flopping costs a mode switch each time.
    pub fn source_dry(&mut self, full: usize) -> Mode {
        let burst = std::mem::take(&mut self.burst);
        if burst >= full {
            self.short_bursts = 0;
        } else if burst > 0 {
            self.short_bursts += 1;
            if self.short_bursts >= SHORT_BURSTS_TO_COPY {
                self.short_bursts = 0;
                self.mode = Mode::Copy;
            }
        }
        self.mode
    }

    fn new() -> Direction {
        Direction {
            mode: Mode::Copy,
            held: None,
            pipe: None,
            pipe_bytes: 0,
            full_reads: 0,
            burst: 0,
            short_bursts: 0,
            src_eof: false,
            done: false,
            bytes: 0,
            granted: 0,
            throttle: None,
        }
    }
}

pub struct Conn {
    pub gen: u32,
    pub phase: Phase,
    /// Operations submitted and not yet completed; the slot is freed at zero.
    pub inflight: u32,
    pub client: OwnedFd,
    /// The client's address (from the socket; later from a PROXY header).
    pub client_addr: Option<std::net::SocketAddr>,
    pub backend: Option<Socket>,
    /// The routing view this connection started with.
    pub snapshot: Arc<Snapshot>,
    pub listener: usize,
    /// The pool chosen for it: the listener's, or an SNI route's.
    pub pool: usize,
    /// What was read while inspecting (bounded by the parsers' limits).
    pub peek: Vec<u8>,
    /// Bytes to send to the backend before relaying: a PROXY header, then
    /// whatever the client sent while it was inspected.
    pub preface: Vec<u8>,
    pub preface_sent: usize,
    /// How many bytes at the end of `preface` came from the client.
    pub preface_client: usize,
    /// An accepted PROXY header has been read (or none is expected).
    pub proxy_done: bool,
    /// The destination an accepted PROXY header named.
    pub original_dst: Option<std::net::SocketAddr>,
    /// SNI and ALPN the client offered (TLS passthrough listeners).
    pub sni: Option<String>,
    pub alpn: Vec<String>,
    /// Index in the pool of the backend being connected to or relayed to.
    pub backend_index: Option<usize>,
    pub tried: [u32; MAX_ATTEMPTS],
    pub attempts: usize,
    /// Some attempt went to a backend picked ignoring health (fail-open);
    /// counted once per connection, however many attempts it takes.
    pub failed_open: bool,
    pub dirs: [Direction; 2],
    pub last_active: Instant,
    pub accepted_at: Instant,
    /// When the current connect attempt started.
    pub connect_started: Instant,
    /// How long the successful connect took.
    pub connect_us: Option<u64>,
    /// Why it ended: the first cause recorded wins.
    pub termination: Option<Termination>,
    /// Counted against its client's per-IP limits until it closes.
    pub ticket: Option<Ticket>,
    /// When a tarpitted connection is closed.
    pub tarpit_until: Option<Instant>,
}

impl Conn {
    pub fn new(
        gen: u32,
        client: OwnedFd,
        snapshot: Arc<Snapshot>,
        listener: usize,
        now: Instant,
    ) -> Conn {
        let client_addr = socket2::SockRef::from(&client)
            .peer_addr()
            .ok()
            .and_then(|a| a.as_socket());
        let snapshot_pool = snapshot.listeners[listener].pool;
        Conn {
            client_addr,
            gen,
            phase: Phase::Connecting,
            inflight: 0,
            client,
            backend: None,
            snapshot,
            listener,
            pool: snapshot_pool,
            peek: Vec::new(),
            preface: Vec::new(),
            preface_sent: 0,
            preface_client: 0,
            proxy_done: false,
            original_dst: None,
            sni: None,
            alpn: Vec::new(),
            backend_index: None,
            tried: [0; MAX_ATTEMPTS],
            attempts: 0,
            failed_open: false,
            dirs: [Direction::new(), Direction::new()],
            last_active: now,
            accepted_at: now,
            connect_started: now,
            connect_us: None,
            termination: None,
            ticket: None,
            tarpit_until: None,
        }
    }

    /// Records why the connection ends, unless a cause is already known.
    pub fn ends_because(&mut self, why: Termination) {
        self.termination.get_or_insert(why);
    }

    pub fn client_fd(&self) -> RawFd {
        self.client.as_raw_fd()
    }

    pub fn backend_fd(&self) -> RawFd {
        self.backend.as_ref().map_or(-1, |s| s.as_raw_fd())
    }

    /// (source, destination) fds of a direction.
    pub fn ends(&self, d: Dir) -> (RawFd, RawFd) {
        match d {
            C2B => (self.client_fd(), self.backend_fd()),
            _ => (self.backend_fd(), self.client_fd()),
        }
    }

    pub fn has_tried(&self, index: usize) -> bool {
        self.tried[..self.attempts].contains(&(index as u32))
    }

    pub fn both_done(&self) -> bool {
        self.dirs[C2B].done && self.dirs[B2C].done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: usize = 32 * 1024;

    fn spliced() -> Direction {
        let mut d = Direction::new();
        d.mode = Mode::Splice;
        d
    }

    #[test]
    fn one_short_burst_keeps_splicing() {
        let mut d = spliced();
        d.burst = 100;
        assert_eq!(d.source_dry(FULL), Mode::Splice);
        assert_eq!(d.burst, 0);
    }

    #[test]
    fn short_bursts_in_a_row_go_back_to_copy() {
        let mut d = spliced();
        for _ in 1..SHORT_BURSTS_TO_COPY {
            d.burst = 100;
            assert_eq!(d.source_dry(FULL), Mode::Splice);
        }
        d.burst = 100;
        assert_eq!(d.source_dry(FULL), Mode::Copy);
        assert_eq!(d.short_bursts, 0);
    }

    #[test]
    fn a_full_burst_resets_the_count() {
        let mut d = spliced();
        for _ in 0..10 {
            for _ in 1..SHORT_BURSTS_TO_COPY {
                d.burst = 100;
                assert_eq!(d.source_dry(FULL), Mode::Splice);
            }
            d.burst = FULL;
            assert_eq!(d.source_dry(FULL), Mode::Splice);
        }
    }

    #[test]
    fn an_empty_wakeup_is_not_a_burst() {
        let mut d = spliced();
        for _ in 0..10 {
            d.burst = 0;
            assert_eq!(d.source_dry(FULL), Mode::Splice);
        }
        assert_eq!(d.short_bursts, 0);
    }
}
