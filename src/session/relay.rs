//! Moving bytes both ways (DESIGN.md §2). Every direction starts on the copy
//! path: receive into an engine buffer, send it on, receive again. After two
//! receives in a row fill a whole buffer the direction is bulk and switches to
//! splice: wait until readable, then inline `splice(2)` socket → pipe → socket
//! through a pooled pipe, given back whenever it is empty. A FIN becomes
//! SHUT_WR on the other socket only after every byte read before it is
//! delivered.

use std::io;

use super::{Ctx, Dir, Io, Phase, Session, C2B, RECV_BUFFER};
use crate::clock;
use crate::counters::bump;
use crate::limits::Grant;
use crate::outcome::Termination;

/// Consecutive full-buffer receives that mark a direction as bulk
/// (research/uring-datapath.md: "about 2", as HAProxy's splice-auto).
const BULK_FULL_READS: u8 = 2;

/// Splice steps before a pump yields to other connections.
const PUMP_STEPS: usize = 16;

/// Consecutive bursts shorter than one buffer that send a spliced direction
/// back to copying.
pub const SHORT_BURSTS_TO_COPY: u8 = 4;

/// Which socket of a direction an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Source,
    Destination,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Receive into an engine buffer, then send.
    Copy,
    /// Wait for readiness, then `splice(2)` through a pooled pipe.
    Splice,
}

/// A received buffer being sent on.
#[derive(Debug, Clone, Copy)]
pub struct Held {
    pub len: u32,
    pub sent: u32,
}

/// One relay direction (half-duplex: read, write all of it, read again).
pub struct Direction {
    pub mode: Mode,
    /// Bytes received and not yet fully sent (copy mode).
    pub held: Option<Held>,
    /// The direction holds one of the engine's pipes.
    pub has_pipe: bool,
    /// Bytes in the pipe (splice mode).
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
}

impl Direction {
    pub(super) fn new() -> Direction {
        Direction {
            mode: Mode::Copy,
            held: None,
            has_pipe: false,
            pipe_bytes: 0,
            full_reads: 0,
            burst: 0,
            short_bursts: 0,
            src_eof: false,
            done: false,
            bytes: 0,
            granted: 0,
        }
    }

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
}

impl Session {
    /// A receive of `dir` completed with `len` bytes (0: the source sent
    /// FIN). While inspecting, the engine calls `on_inspect_data` instead.
    pub fn on_received(&mut self, dir: Dir, len: u32, ctx: &mut Ctx, io: &mut impl Io) {
        if len == 0 {
            if self.phase == Phase::Inspecting {
                self.inspect_eof(io);
            } else {
                self.source_eof(dir, io);
            }
            return;
        }
        self.last_active = ctx.now;
        let d = &mut self.dirs[dir];
        d.full_reads = if len == RECV_BUFFER {
            d.full_reads.saturating_add(1)
        } else {
            0
        };
        d.held = Some(Held { len, sent: 0 });
        self.send_held(dir, ctx, io);
    }

    /// A receive of `dir` failed with `errno`.
    pub fn on_recv_error(&mut self, dir: Dir, errno: i32, ctx: &mut Ctx, io: &mut impl Io) {
        if errno == libc::ENOBUFS {
            // Every buffer is in use: wait for one to be given back.
            bump(&ctx.stats().buffer_exhausted, 1);
            io.recv_when_buffers_free(dir);
        } else {
            self.fail(dir, End::Source, io);
        }
    }

    fn send_held(&mut self, dir: Dir, ctx: &mut Ctx, io: &mut impl Io) {
        let h = self.dirs[dir].held.expect("held buffer to send");
        let mut len = h.len - h.sent;
        match self.bandwidth(dir, len as usize, ctx) {
            Some(Ok(granted)) => len = granted as u32,
            Some(Err(wait_ns)) => return io.throttle(dir, wait_ns),
            None => {}
        }
        self.dirs[dir].granted = len as usize;
        io.send(dir, h.sent, len);
    }

    /// `Some(Ok(n))`: the client's bandwidth limit lets `n` (≤ `want`) bytes
    /// of direction `dir` go now; `Some(Err(ns))`: nothing may go for `ns`;
    /// `None`: the listener has no bandwidth limit.
    fn bandwidth(&self, dir: Dir, want: usize, ctx: &Ctx) -> Option<Result<usize, u64>> {
        let ticket = self.ticket?;
        let limits = self.listener().settings.limits.as_ref()?;
        let rate = limits.per_ip_bandwidth?;
        match ctx
            .shared
            .limiter
            .bandwidth_grant(ticket, dir, rate, want, clock::now_ns())
        {
            Grant::Now(n) => Some(Ok(n)),
            Grant::After(ns) => Some(Err(ns)),
        }
    }

    /// Gives back bandwidth granted for bytes that were not written.
    fn refund(&self, dir: Dir, unused: usize, ctx: &Ctx) {
        let (Some(ticket), Some(rate)) = (
            self.ticket,
            self.listener()
                .settings
                .limits
                .as_ref()
                .and_then(|l| l.per_ip_bandwidth),
        ) else {
            return;
        };
        ctx.shared
            .limiter
            .bandwidth_refund(ticket, dir, rate, unused, clock::now_ns());
    }

    /// A throttled direction may go on where it stopped.
    pub fn on_throttle_elapsed(&mut self, dir: Dir, ctx: &mut Ctx, io: &mut impl Io) {
        if self.dirs[dir].held.is_some() {
            self.send_held(dir, ctx, io);
        } else {
            self.pump(dir, ctx, io);
        }
    }

    /// A send of `dir` completed: `Ok(n)` bytes written, or `Err(errno)`.
    pub fn on_sent(&mut self, dir: Dir, result: Result<u32, i32>, ctx: &mut Ctx, io: &mut impl Io) {
        let Ok(n) = result else {
            self.fail(dir, End::Destination, io);
            return;
        };
        self.last_active = ctx.now;
        let d = &mut self.dirs[dir];
        let h = d.held.as_mut().expect("held buffer being sent");
        h.sent += n;
        let unused = std::mem::take(&mut d.granted).saturating_sub(n as usize);
        if unused > 0 {
            self.refund(dir, unused, ctx);
        }
        let d = &mut self.dirs[dir];
        let h = d.held.expect("held buffer being sent");
        if h.sent < h.len {
            self.send_held(dir, ctx, io);
            return;
        }
        d.held = None;
        d.bytes += h.len as u64;
        let bulk = d.full_reads >= BULK_FULL_READS;
        // A short read emptied the socket: in request/response traffic the
        // next bytes come only after the other side answers.
        let drained = d.full_reads == 0;
        io.release_buffer(dir);
        self.count_bytes(ctx, dir, h.len as u64, Mode::Copy);
        if bulk {
            self.dirs[dir].full_reads = 0;
            if io.take_pipe(dir) {
                bump(&ctx.stats().splice_switches, 1);
                let d = &mut self.dirs[dir];
                d.mode = Mode::Splice;
                d.has_pipe = true;
                d.burst = 0;
                d.short_bursts = 0;
                self.pump(dir, ctx, io);
                return;
            }
            bump(&ctx.stats().pipe_exhausted, 1);
        }
        io.recv(dir, drained);
    }

    /// Counts `n` bytes of `dir` delivered, on the backend and the worker.
    pub(super) fn count_bytes(&self, ctx: &Ctx, dir: Dir, n: u64, mode: Mode) {
        if let Some(i) = self.backend_index {
            let stats = self.snapshot.pools[self.pool].backends[i]
                .stats
                .worker(ctx.worker);
            bump(&stats.bytes[dir], n);
            let route = self.listener().metrics_slot;
            bump(&stats.by_listener[route].bytes[dir], n);
        }
        let w = ctx.stats();
        match mode {
            Mode::Copy => bump(&w.bytes_copied[dir], n),
            Mode::Splice => bump(&w.bytes_spliced[dir], n),
        }
    }

    /// A socket of direction `dir` failed: close the connection, blaming the
    /// side that failed.
    fn fail(&mut self, dir: Dir, end: End, io: &mut impl Io) {
        let client_side = (dir == C2B) == (end == End::Source);
        self.ends_because(if client_side {
            Termination::ClientError
        } else {
            Termination::BackendError
        });
        self.abort(io);
    }

    /// The source of `dir` sent FIN and nothing of it is buffered: pass the FIN on.
    fn source_eof(&mut self, dir: Dir, io: &mut impl Io) {
        // Whoever closed first is why the connection ends.
        self.ends_because(if dir == C2B {
            Termination::ClientClosed
        } else {
            Termination::BackendClosed
        });
        // ENOTCONN (peer already gone) is fine: the FIN has nowhere to go.
        io.shut_write(dir);
        let d = &mut self.dirs[dir];
        d.src_eof = true;
        d.done = true;
        if std::mem::take(&mut d.has_pipe) {
            io.give_pipe(dir);
        }
        if self.both_done() {
            self.abort(io);
        }
    }

    /// The source of `dir` became readable, or its destination writable
    /// (`ok` false: the wait failed).
    pub fn on_ready(&mut self, dir: Dir, ok: bool, ctx: &mut Ctx, io: &mut impl Io) {
        if !ok {
            self.abort(io);
        } else {
            self.pump(dir, ctx, io);
        }
    }

    /// The destination of `dir` became writable: the preface goes on, or the
    /// pump (`ok` false: the wait failed).
    pub fn on_writable(&mut self, dir: Dir, ok: bool, ctx: &mut Ctx, io: &mut impl Io) {
        if dir == C2B && self.preface_pending() {
            self.flush_preface(ctx, io);
        } else {
            self.on_ready(dir, ok, ctx, io);
        }
    }

    /// A pump that spent its step budget continues.
    pub fn on_pump(&mut self, dir: Dir, ctx: &mut Ctx, io: &mut impl Io) {
        if self.phase == Phase::Relaying {
            self.pump(dir, ctx, io);
        }
    }

    /// Splice mode: moves bytes until the source or destination would block,
    /// the source ends, or the step budget is spent.
    fn pump(&mut self, dir: Dir, ctx: &mut Ctx, io: &mut impl Io) {
        self.last_active = ctx.now;
        let mut moved_out = 0u64;
        for _ in 0..PUMP_STEPS {
            if self.dirs[dir].pipe_bytes > 0 {
                let mut want = self.dirs[dir].pipe_bytes;
                match self.bandwidth(dir, want, ctx) {
                    Some(Ok(granted)) => want = granted,
                    Some(Err(wait_ns)) => {
                        self.count_bytes(ctx, dir, moved_out, Mode::Splice);
                        return io.throttle(dir, wait_ns);
                    }
                    None => {}
                }
                let limited = want < self.dirs[dir].pipe_bytes || self.ticket.is_some();
                let result = io.splice_out(dir, want);
                if limited {
                    let unused = match &result {
                        Ok(n) => want - n,
                        Err(_) => want,
                    };
                    if unused > 0 {
                        self.refund(dir, unused, ctx);
                    }
                }
                match result {
                    Ok(n) => {
                        let d = &mut self.dirs[dir];
                        d.pipe_bytes -= n;
                        d.bytes += n as u64;
                        moved_out += n as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        io.wait_writable(dir);
                        self.count_bytes(ctx, dir, moved_out, Mode::Splice);
                        return;
                    }
                    Err(_) => {
                        self.count_bytes(ctx, dir, moved_out, Mode::Splice);
                        self.fail(dir, End::Destination, io);
                        return;
                    }
                }
                continue;
            }
            if self.dirs[dir].src_eof {
                break;
            }
            if !self.dirs[dir].has_pipe {
                if io.take_pipe(dir) {
                    self.dirs[dir].has_pipe = true;
                } else {
                    // No pipe free: carry on by copying.
                    bump(&ctx.stats().pipe_exhausted, 1);
                    self.dirs[dir].mode = Mode::Copy;
                    self.count_bytes(ctx, dir, moved_out, Mode::Splice);
                    io.recv(dir, false);
                    return;
                }
            }
            match io.splice_in(dir) {
                Ok(0) => self.dirs[dir].src_eof = true,
                Ok(n) => {
                    let d = &mut self.dirs[dir];
                    d.pipe_bytes += n;
                    d.burst += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Drained and the source is quiet: give the pipe back so an
                    // idle connection holds none. Several short bursts in a row
                    // mean the bulk phase is over; go back to copying.
                    let d = &mut self.dirs[dir];
                    d.has_pipe = false;
                    let mode = d.source_dry(RECV_BUFFER as usize);
                    io.give_pipe(dir);
                    self.count_bytes(ctx, dir, moved_out, Mode::Splice);
                    if mode == Mode::Copy {
                        io.recv(dir, false);
                    } else {
                        io.wait_readable(dir);
                    }
                    return;
                }
                Err(_) => {
                    self.count_bytes(ctx, dir, moved_out, Mode::Splice);
                    self.fail(dir, End::Source, io);
                    return;
                }
            }
        }
        self.count_bytes(ctx, dir, moved_out, Mode::Splice);
        let d = &self.dirs[dir];
        if d.src_eof && d.pipe_bytes == 0 {
            self.source_eof(dir, io);
        } else {
            // Budget spent with work left: continue after other connections.
            io.pump_later(dir);
        }
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
