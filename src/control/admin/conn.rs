//! The socket under one admin connection, as hyper sees it: a `TcpStream`
//! that notes when a request's first byte arrives (so the whole-request
//! deadline can be measured from it, not from when hyper finished the head)
//! and that gives up on an answer the client does not take within
//! `RESPONSE_DEADLINE`. hyper bounds the head itself (`header_read_timeout`)
//! but has no deadline for the body or for writing, and a stalled client must
//! not keep one of the `MAX_ADMIN_CONNECTIONS` slots for ever.
//!
//! It only times and forwards bytes; it never reads or writes HTTP.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

/// When the request being read began to arrive, shared by the socket (which
/// sets it at the first byte) and the service (which reads it for the body's
/// deadline and clears it once the body is in).
#[derive(Clone, Default)]
pub struct RequestStart(Arc<Mutex<Option<Instant>>>);

impl RequestStart {
    /// The instant the current request's first byte was read, if it was.
    pub fn get(&self) -> Option<Instant> {
        *self.lock()
    }

    /// The request is read: the next byte starts the next one.
    pub fn clear(&self) {
        *self.lock() = None;
    }

    fn mark(&self) {
        self.lock().get_or_insert_with(Instant::now);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        // WHY: the guarded value is a plain `Option<Instant>`, valid whatever
        // a panicking holder was doing, so a poisoned lock is still usable.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An admin connection's socket with the response deadline and the
/// request-start mark.
pub struct AdminIo {
    stream: TcpStream,
    start: RequestStart,
    response_deadline: Duration,
    /// Armed when a write first has to wait, disarmed when hyper's flush of
    /// the answer completes: an answer that is written without waiting costs
    /// no timer.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl AdminIo {
    pub fn new(stream: TcpStream, response_deadline: Duration) -> AdminIo {
        AdminIo {
            stream,
            start: RequestStart::default(),
            response_deadline,
            stalled: None,
        }
    }

    /// The handle the service reads the request's start from.
    pub fn request_start(&self) -> RequestStart {
        self.start.clone()
    }

    /// Passes a pending write through, unless the answer has now waited for
    /// the client longer than the response deadline.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if result.is_ready() {
            return result;
        }
        let deadline = self.response_deadline;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(deadline)));
        if stalled.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client did not take the answer within {deadline:?}"),
            )));
        }
        Poll::Pending
    }
}

impl AsyncRead for AdminIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.stream).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            this.start.mark();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for AdminIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.watch(cx, result)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.watch(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_flush(cx);
        if matches!(result, Poll::Ready(Ok(()))) {
            this.stalled = None;
        }
        this.watch(cx, result)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_shutdown(cx);
        this.watch(cx, result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn pair() -> (AdminIo, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (AdminIo::new(server, Duration::from_secs(10)), client)
    }

    #[tokio::test]
    async fn a_request_starts_at_its_first_byte_and_ends_when_cleared() {
        let (mut io, mut client) = pair().await;
        let start = io.request_start();
        assert_eq!(start.get(), None, "nothing read yet");
        client.write_all(b"GET").await.unwrap();
        let mut buf = [0u8; 3];
        io.read_exact(&mut buf).await.unwrap();
        let first = start.get().expect("marked at the first byte");
        client.write_all(b" / HTTP/1.1").await.unwrap();
        let mut rest = [0u8; 11];
        io.read_exact(&mut rest).await.unwrap();
        assert_eq!(start.get(), Some(first), "later bytes keep the start");
        start.clear();
        assert_eq!(start.get(), None);
        client.write_all(b"GET").await.unwrap();
        io.read_exact(&mut buf).await.unwrap();
        assert!(start.get().is_some(), "the next request starts afresh");
    }

    #[tokio::test]
    async fn an_answer_the_client_never_takes_fails_at_the_response_deadline() {
        let (io, _client) = pair().await;
        let mut io = AdminIo {
            response_deadline: Duration::from_millis(50),
            ..io
        };
        // The client reads nothing: the socket buffers fill, then the write
        // waits until the deadline ends it. Bounded: the buffers of a
        // loopback pair are a few MiB at most.
        let chunk = vec![0u8; 64 * 1024];
        let mut written = 0usize;
        let error = loop {
            match io.write(&chunk).await {
                Ok(n) => written += n,
                Err(e) => break e,
            }
            assert!(written < 1 << 30, "the write never had to wait");
        };
        assert_eq!(error.kind(), io::ErrorKind::TimedOut, "{error}");
    }
}
