//! Upgraded connections (WebSocket and other HTTP/1.1 `Upgrade`s): once the
//! backend answered 101, bytes are relayed both ways as they come, under
//! the listener's own `tunnel_idle` timeout rather than the request
//! timeouts, so long-lived quiet sockets are not cut. `None` never times out.

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::log;

/// Relays between the client's and the backend's upgraded connections
/// until both sides are done, either side fails, or it idles out.
pub(super) async fn relay(client: OnUpgrade, backend: OnUpgrade, idle: Option<Duration>) {
    let (client, backend) = match tokio::try_join!(client, backend) {
        Ok(both) => both,
        Err(e) => {
            log::debug("upgrade failed", &[("error", &e)]);
            return;
        }
    };
    let last = Rc::new(Cell::new(Instant::now()));
    let mut client = Active::new(TokioIo::new(client), &last);
    let mut backend = Active::new(TokioIo::new(backend), &last);
    let copy = tokio::io::copy_bidirectional(&mut client, &mut backend);
    let Some(idle) = idle else {
        let _ = copy.await;
        return;
    };
    tokio::pin!(copy);
    loop {
        let deadline = last.get() + idle;
        tokio::select! {
            _ = &mut copy => return,
            _ = tokio::time::sleep_until(deadline) => {
                if last.get() + idle <= Instant::now() {
                    return;
                }
            }
        }
    }
}

/// A stream that notes when bytes last moved through it.
struct Active {
    inner: TokioIo<Upgraded>,
    last: Rc<Cell<Instant>>,
}

impl Active {
    fn new(inner: TokioIo<Upgraded>, last: &Rc<Cell<Instant>>) -> Active {
        Active {
            inner,
            last: last.clone(),
        }
    }
}

impl AsyncRead for Active {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.last.set(Instant::now());
        }
        polled
    }
}

impl AsyncWrite for Active {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
