//! Moving bytes both ways (DESIGN.md §2). Every direction starts on the copy
//! path: receive into a provided buffer, send it on, receive again. After two
//! receives in a row fill a whole buffer the direction is bulk and switches to
//! splice: a readiness poll, then inline `splice(2)` socket → pipe → socket with
//! a pooled pipe, given back whenever it is empty. A FIN becomes SHUT_WR on the
//! other socket only after every byte read before it is delivered.

use std::io;
use std::sync::atomic::Ordering;

use super::conn::{Held, Mode, Phase};
use super::token::{Dir, Op, C2B};
use super::worker::{Worker, BUF_SIZE};
use crate::clock;
use crate::counters::{bump, WorkerStats};
use crate::limits::Grant;
use crate::outcome::Termination;
use crate::sys;
use crate::uring::{timespec, Completion, Timespec};

/// Consecutive full-buffer receives that mark a direction as bulk
/// (research/uring-datapath.md: "about 2", as HAProxy's splice-auto).
const BULK_FULL_READS: u8 = 2;
/// Which socket of a direction an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Source,
    Destination,
}

/// Splice steps before a pump yields to other connections.
const PUMP_STEPS: usize = 16;

impl Worker {
    pub(super) fn arm_recv(&mut self, slot: u32, d: Dir) {
        self.arm_recv_with(slot, d, false);
    }

    /// `poll_first`: nothing is expected yet (see `Ring::recv_provided`).
    fn arm_recv_with(&mut self, slot: u32, d: Dir, poll_first: bool) {
        let t = self.token(Op::Recv(d), slot);
        let conn = self.conn(slot);
        let (src, _) = conn.ends(d);
        conn.inflight += 1;
        self.ring.recv_provided(src, &self.bufs, poll_first, t);
    }

    fn send_held(&mut self, slot: u32, d: Dir) {
        let h = self.conn(slot).dirs[d].held.expect("held buffer to send");
        let mut len = h.len - h.sent;
        match self.bandwidth(slot, d, len as usize) {
            Some(Ok(granted)) => len = granted as u32,
            Some(Err(wait_ns)) => return self.throttle(slot, d, wait_ns),
            None => {}
        }
        let t = self.token(Op::Send(d), slot);
        let conn = self.conn(slot);
        let (_, dst) = conn.ends(d);
        conn.dirs[d].granted = len as usize;
        conn.inflight += 1;
        self.ring.send_buf(dst, &self.bufs, h.buf, h.sent, len, t);
    }

    /// `Some(Ok(n))`: the client's bandwidth limit lets `n` (≤ `want`) bytes
    /// of direction `d` go now; `Some(Err(ns))`: nothing may go for `ns`;
    /// `None`: the listener has no bandwidth limit.
    fn bandwidth(&mut self, slot: u32, d: Dir, want: usize) -> Option<Result<usize, u64>> {
        let conn = self.slots[slot as usize]
            .as_ref()
            .expect("live connection slot");
        let ticket = conn.ticket?;
        let limits = conn.snapshot.listeners[conn.listener]
            .settings
            .limits
            .as_ref()?;
        let rate = limits.per_ip_bandwidth?;
        match self
            .shared
            .limiter
            .bandwidth_grant(ticket, d, rate, want, clock::now_ns())
        {
            Grant::Now(n) => Some(Ok(n)),
            Grant::After(ns) => Some(Err(ns)),
        }
    }

    /// Gives back bandwidth granted for bytes that were not written.
    fn refund(&mut self, slot: u32, d: Dir, unused: usize) {
        let conn = self.slots[slot as usize]
            .as_ref()
            .expect("live connection slot");
        let (Some(ticket), Some(rate)) = (
            conn.ticket,
            conn.snapshot.listeners[conn.listener]
                .settings
                .limits
                .as_ref()
                .and_then(|l| l.per_ip_bandwidth),
        ) else {
            return;
        };
        self.shared
            .limiter
            .bandwidth_refund(ticket, d, rate, unused, clock::now_ns());
    }

    /// Pauses direction `d` (over its bandwidth budget) for `ns`; the
    /// direction goes on where it stopped when the timer fires.
    fn throttle(&mut self, slot: u32, d: Dir, ns: u64) {
        let t = self.token(Op::Throttle(d), slot);
        let ts = timespec(std::time::Duration::from_nanos(ns.max(1)));
        let conn = self.slots[slot as usize]
            .as_mut()
            .expect("live connection slot");
        let boxed = conn.dirs[d].throttle.get_or_insert_with(|| Box::new(ts));
        **boxed = ts;
        conn.inflight += 1;
        let ts: &Timespec = boxed;
        self.ring.timeout(ts, t);
    }

    /// A throttled direction may go on.
    pub(super) fn on_throttle(&mut self, slot: u32, d: Dir) {
        if self.conn(slot).dirs[d].held.is_some() {
            self.send_held(slot, d);
        } else {
            self.pump(slot, d);
        }
    }

    pub(super) fn on_recv(&mut self, slot: u32, d: Dir, c: Completion) {
        let now = self.now;
        if c.result == 0 && self.conn(slot).phase == Phase::Inspecting {
            // The client hung up before its header or ClientHello was complete:
            // there is nothing to route, so close now rather than at the timeout.
            self.conn(slot).ends_because(Termination::ClientClosed);
            self.abort(slot);
            return;
        }
        if c.result > 0 && self.conn(slot).phase == Phase::Inspecting {
            // Keep what the client sent for the parsers, and the buffer goes back.
            let buf = c.buffer().expect("receive completion names its buffer");
            let len = c.result as u32;
            let data = self.bufs.slice(buf, 0, len);
            let conn = self.slots[slot as usize]
                .as_mut()
                .expect("live connection slot");
            if conn.peek.capacity() == 0 {
                conn.peek.reserve(4096);
            }
            conn.peek.extend_from_slice(data);
            conn.last_active = now;
            self.bufs.recycle(buf);
            self.recycled = true;
            self.on_inspect_data(slot, 0);
            return;
        }
        if c.result > 0 {
            let buf = c.buffer().expect("receive completion names its buffer");
            let conn = self.conn(slot);
            conn.last_active = now;
            let dir = &mut conn.dirs[d];
            let len = c.result as u32;
            dir.full_reads = if len == BUF_SIZE {
                dir.full_reads.saturating_add(1)
            } else {
                0
            };
            dir.held = Some(Held { buf, len, sent: 0 });
            self.send_held(slot, d);
        } else if c.result == 0 {
            self.source_eof(slot, d);
        } else if c.result == -libc::ENOBUFS {
            // Every buffer is in use: wait for one to be recycled.
            bump(&self.stats().buffer_exhausted, 1);
            let gen = self.conn(slot).gen;
            self.starved.push((slot, gen, d));
        } else {
            self.fail(slot, d, End::Source);
        }
    }

    pub(super) fn on_send(&mut self, slot: u32, d: Dir, result: i32) {
        if result < 0 {
            self.fail(slot, d, End::Destination);
            return;
        }
        let now = self.now;
        let conn = self.conn(slot);
        conn.last_active = now;
        let dir = &mut conn.dirs[d];
        let h = dir.held.as_mut().expect("held buffer being sent");
        h.sent += result as u32;
        let unused = std::mem::take(&mut dir.granted).saturating_sub(result as usize);
        if unused > 0 {
            self.refund(slot, d, unused);
        }
        let dir = &mut self.conn(slot).dirs[d];
        let h = dir.held.as_mut().expect("held buffer being sent");
        if h.sent < h.len {
            self.send_held(slot, d);
            return;
        }
        let h = dir.held.take().expect("held buffer being sent");
        dir.bytes += h.len as u64;
        let bulk = dir.full_reads >= BULK_FULL_READS;
        // A short read emptied the socket: in request/response traffic the
        // next bytes come only after the other side answers.
        let drained = dir.full_reads == 0;
        self.bufs.recycle(h.buf);
        self.recycled = true;
        self.count_bytes(slot, d, h.len as u64, Mode::Copy);
        if bulk {
            self.conn(slot).dirs[d].full_reads = 0;
            if let Some(pipe) = self.pipes.take() {
                self.stats()
                    .pipes_in_use
                    .store(self.pipes.in_use() as u64, Ordering::Relaxed);
                bump(&self.stats().splice_switches, 1);
                let dir = &mut self.conn(slot).dirs[d];
                dir.mode = Mode::Splice;
                dir.pipe = Some(pipe);
                dir.burst = 0;
                dir.short_bursts = 0;
                self.pump(slot, d);
                return;
            }
            bump(&self.stats().pipe_exhausted, 1);
        }
        self.arm_recv_with(slot, d, drained);
    }

    pub(super) fn count_bytes(&mut self, slot: u32, d: Dir, n: u64, mode: Mode) {
        let id = self.id;
        let conn = self.slots[slot as usize]
            .as_ref()
            .expect("live connection slot");
        if let Some(i) = conn.backend_index {
            let stats = conn.snapshot.pools[conn.pool].backends[i].stats.worker(id);
            bump(&stats.bytes[d], n);
            let route = conn.snapshot.listeners[conn.listener].metrics_slot;
            bump(&stats.by_listener[route].bytes[d], n);
        }
        let w: &WorkerStats = self.shared.stats.worker(id);
        match mode {
            Mode::Copy => bump(&w.bytes_copied[d], n),
            Mode::Splice => bump(&w.bytes_spliced[d], n),
        }
    }

    /// A socket of direction `d` failed: close the connection, blaming the
    /// side that failed.
    fn fail(&mut self, slot: u32, d: Dir, end: End) {
        let client_side = (d == C2B) == (end == End::Source);
        self.conn(slot).ends_because(if client_side {
            Termination::ClientError
        } else {
            Termination::BackendError
        });
        self.abort(slot);
    }

    /// The source of `d` sent FIN and nothing of it is buffered: pass the FIN on.
    fn source_eof(&mut self, slot: u32, d: Dir) {
        let conn = self.conn(slot);
        // Whoever closed first is why the connection ends.
        conn.ends_because(if d == C2B {
            Termination::ClientClosed
        } else {
            Termination::BackendClosed
        });
        let (_, dst) = conn.ends(d);
        // ENOTCONN (peer already gone) is fine: the FIN has nowhere to go.
        let _ = sys::shutdown(dst, sys::Shut::Write);
        let dir = &mut conn.dirs[d];
        dir.src_eof = true;
        dir.done = true;
        if let Some(p) = dir.pipe.take() {
            self.pipes.give(p);
            self.stats()
                .pipes_in_use
                .store(self.pipes.in_use() as u64, Ordering::Relaxed);
        }
        if self.conn(slot).both_done() {
            self.finish(slot);
        }
    }

    /// Splice mode: moves bytes until the source or destination would block,
    /// the source ends, or the step budget is spent.
    pub(super) fn pump(&mut self, slot: u32, d: Dir) {
        let now = self.now;
        let mut moved_out = 0u64;
        for _ in 0..PUMP_STEPS {
            let conn = self.conn(slot);
            conn.last_active = now;
            let (src, dst) = conn.ends(d);
            let dir = &mut conn.dirs[d];
            if dir.pipe_bytes > 0 {
                let mut want = dir.pipe_bytes;
                match self.bandwidth(slot, d, want) {
                    Some(Ok(granted)) => want = granted,
                    Some(Err(wait_ns)) => {
                        self.count_bytes(slot, d, moved_out, Mode::Splice);
                        return self.throttle(slot, d, wait_ns);
                    }
                    None => {}
                }
                let limited =
                    want < self.conn(slot).dirs[d].pipe_bytes || self.conn(slot).ticket.is_some();
                let dir = &mut self.conn(slot).dirs[d];
                let pipe = dir.pipe.as_ref().expect("pipe holding bytes");
                let result = sys::splice(pipe.read_fd(), dst, want);
                if limited {
                    let unused = match &result {
                        Ok(n) => want - n,
                        Err(_) => want,
                    };
                    if unused > 0 {
                        self.refund(slot, d, unused);
                    }
                }
                let dir = &mut self.conn(slot).dirs[d];
                match result {
                    Ok(n) => {
                        dir.pipe_bytes -= n;
                        dir.bytes += n as u64;
                        moved_out += n as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        let t = self.token(Op::PollOut(d), slot);
                        self.conn(slot).inflight += 1;
                        self.ring.poll(dst, libc::POLLOUT as u32, false, t);
                        self.count_bytes(slot, d, moved_out, Mode::Splice);
                        return;
                    }
                    Err(_) => {
                        self.count_bytes(slot, d, moved_out, Mode::Splice);
                        self.fail(slot, d, End::Destination);
                        return;
                    }
                }
                continue;
            }
            if dir.src_eof {
                break;
            }
            if dir.pipe.is_none() {
                match self.pipes.take() {
                    Some(p) => {
                        self.stats()
                            .pipes_in_use
                            .store(self.pipes.in_use() as u64, Ordering::Relaxed);
                        self.conn(slot).dirs[d].pipe = Some(p);
                    }
                    None => {
                        // No pipe free: carry on by copying.
                        bump(&self.stats().pipe_exhausted, 1);
                        self.conn(slot).dirs[d].mode = Mode::Copy;
                        self.count_bytes(slot, d, moved_out, Mode::Splice);
                        self.arm_recv(slot, d);
                        return;
                    }
                }
            }
            let dir = &mut self.conn(slot).dirs[d];
            let pipe = dir.pipe.as_ref().expect("pipe taken above");
            match sys::splice(src, pipe.write_fd(), pipe.capacity()) {
                Ok(0) => dir.src_eof = true,
                Ok(n) => {
                    dir.pipe_bytes += n;
                    dir.burst += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Drained and the source is quiet: give the pipe back so an
                    // idle connection holds none. Several short bursts in a row
                    // mean the bulk phase is over; go back to copying. (One is
                    // not enough: a fast stream often finds the sender briefly
                    // behind, and flip-flopping costs a switch each time.)
                    let pipe = dir.pipe.take().expect("pipe taken above");
                    let mode = dir.source_dry(BUF_SIZE as usize);
                    self.pipes.give(pipe);
                    self.stats()
                        .pipes_in_use
                        .store(self.pipes.in_use() as u64, Ordering::Relaxed);
                    self.count_bytes(slot, d, moved_out, Mode::Splice);
                    if mode == Mode::Copy {
                        self.arm_recv(slot, d);
                    } else {
                        let t = self.token(Op::PollIn(d), slot);
                        self.conn(slot).inflight += 1;
                        self.ring.poll(src, libc::POLLIN as u32, false, t);
                    }
                    return;
                }
                Err(_) => {
                    self.count_bytes(slot, d, moved_out, Mode::Splice);
                    self.fail(slot, d, End::Source);
                    return;
                }
            }
        }
        self.count_bytes(slot, d, moved_out, Mode::Splice);
        let conn = self.conn(slot);
        let dir = &conn.dirs[d];
        if dir.src_eof && dir.pipe_bytes == 0 {
            self.source_eof(slot, d);
        } else {
            // Budget spent with work left: continue after other connections.
            let gen = conn.gen;
            self.ready.push((slot, gen, d));
        }
    }

    fn still_relaying(&self, slot: u32, gen: u32) -> bool {
        self.live_conn(slot, gen)
            .is_some_and(|c| c.phase == Phase::Relaying)
    }

    /// Relaying, or reading a PROXY header / ClientHello: may arm a receive.
    fn still_reading(&self, slot: u32, gen: u32) -> bool {
        self.live_conn(slot, gen)
            .is_some_and(|c| matches!(c.phase, Phase::Relaying | Phase::Inspecting))
    }

    pub(super) fn run_ready(&mut self) {
        let ready = std::mem::take(&mut self.ready);
        for (slot, gen, d) in ready {
            if self.still_relaying(slot, gen) {
                self.pump(slot, d);
            }
        }
    }

    pub(super) fn retry_starved(&mut self) {
        if !self.recycled || self.starved.is_empty() {
            self.recycled = false;
            return;
        }
        self.recycled = false;
        let starved = std::mem::take(&mut self.starved);
        for (slot, gen, d) in starved {
            if self.still_reading(slot, gen) {
                self.arm_recv(slot, d);
            }
        }
    }
}
