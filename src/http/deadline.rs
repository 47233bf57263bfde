//! The client-side timers of an HTTP connection that hyper does not keep
//! the way a proxy needs: a kept-alive connection with no request in flight
//! is closed after `idle`; a request head that has started but not finished
//! within `request_header` (slowloris) is answered `408` and the connection
//! closed. Implemented as a wrapper around the client stream that watches
//! the bytes hyper reads and the requests the proxy has in flight; an
//! upgraded connection (WebSocket) leaves it to the tunnel's own timeout.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::counters::{bump, code_class, ListenerStats};

const REQUEST_TIMEOUT: &[u8] = b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 20\r\nconnection: close\r\n\r\n408 request timeout\n";

/// What the proxy tells the connection's timers.
#[derive(Debug, Default)]
pub(super) struct Activity {
    /// Requests between their head arriving and their response ending.
    active: AtomicU32,
    /// The connection switched protocols: no HTTP timers any more.
    upgraded: AtomicBool,
}

impl Activity {
    /// Counts a request in flight until the guard drops.
    pub(super) fn begin(self: &Arc<Self>) -> Busy {
        self.active.fetch_add(1, Ordering::Relaxed);
        Busy(self.clone())
    }

    pub(super) fn upgraded(&self) {
        self.upgraded.store(true, Ordering::Relaxed);
    }
}

/// A request in flight on its connection.
pub(super) struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Nothing in flight, nothing of a next request read, since then.
    Idle(Instant),
    /// Part of a request head read, since then.
    Head(Instant),
    /// A request in flight.
    Busy,
}

/// The client stream, timed.
pub(super) struct Timed<S> {
    inner: S,
    activity: Arc<Activity>,
    request_header: Duration,
    idle: Duration,
    phase: Phase,
    /// HTTP/2 (by its preface): only the idle timer applies.
    h2: Option<bool>,
    timer: Pin<Box<Sleep>>,
    /// Where a 408 is counted.
    stats: Arc<ListenerStats>,
    slot: usize,
}

impl<S> Timed<S> {
    pub(super) fn new(
        inner: S,
        activity: Arc<Activity>,
        (request_header, idle): (Duration, Duration),
        stats: Arc<ListenerStats>,
        slot: usize,
    ) -> Timed<S> {
        let now = Instant::now();
        Timed {
            inner,
            activity,
            request_header,
            idle,
            // The first request's head is due within request_header of the
            // connection (and handshake) being made.
            phase: Phase::Head(now),
            h2: None,
            timer: Box::pin(tokio::time::sleep_until(now + request_header)),
            stats,
            slot,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Timed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.activity.upgraded.load(Ordering::Relaxed) {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        let got = &buf.filled()[before..];
        let now = Instant::now();
        if this.h2.is_none() && !got.is_empty() {
            this.h2 = Some(got.starts_with(b"PRI "));
        }
        let busy = this.activity.active.load(Ordering::Relaxed) > 0;
        this.phase = match this.phase {
            _ if busy => Phase::Busy,
            Phase::Busy => Phase::Idle(now),
            phase => phase,
        };
        if !got.is_empty() && this.h2 != Some(true) {
            if let Phase::Idle(_) = this.phase {
                this.phase = Phase::Head(now);
            }
        }
        if !matches!(polled, Poll::Pending) {
            return polled;
        }
        loop {
            let deadline = match this.phase {
                Phase::Busy => return Poll::Pending,
                Phase::Idle(since) => since + this.idle,
                Phase::Head(since) if this.h2 == Some(true) => since + this.idle,
                Phase::Head(since) => since + this.request_header,
            };
            if Instant::now() >= deadline {
                return match this.phase {
                    Phase::Head(_) if this.h2 != Some(true) => {
                        // Best effort: a client this slow gets one try.
                        let _ = Pin::new(&mut this.inner).poll_write(cx, REQUEST_TIMEOUT);
                        let _ = Pin::new(&mut this.inner).poll_flush(cx);
                        bump(&this.stats.worker(this.slot).http_local[code_class(408)], 1);
                        Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "request head not received within request_header",
                        )))
                    }
                    // Idle: the client gets an end of stream, hyper closes.
                    _ => Poll::Ready(Ok(())),
                };
            }
            if this.timer.deadline() != deadline {
                this.timer.as_mut().reset(deadline);
            }
            // Ready means the deadline passed: looked at again above.
            if this.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Timed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
