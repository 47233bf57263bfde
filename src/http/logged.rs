//! The end of a response: the request stops counting as in flight on its
//! connection (see `deadline`), and the access log of the HTTP mode gets
//! its line: one per request (method, host,
//! path, status, times, backend, bytes, SNI, ALPN, TLS version), written
//! when the response has been passed on whole — or given up — so the byte
//! count and duration are the real ones. Records go through the worker's
//! bounded queue like the L4 plane's; a full queue drops and counts.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use hyper::body::{Body as _, Bytes, Frame, SizeHint};
use hyper::header;

use super::deadline::Busy;
use super::proxy::ConnInfo;
use super::{Body, BoxError};
use crate::accesslog::{HttpRecord, Record};
use crate::counters::bump;
use crate::outcome::Termination;
use crate::plane::Shared;
use crate::session::unix_ms;
use crate::snapshot::Snapshot;

/// A request's log line before its response is done.
pub(super) struct Draft {
    pub snapshot: Arc<Snapshot>,
    pub listener: usize,
    pub started: Instant,
    pub request_bytes: u64,
    pub record: HttpRecord,
    pub client: std::net::SocketAddr,
}

impl Draft {
    /// Starts the line of `req` on a connection described by `conn`.
    pub(super) fn new<B>(
        snapshot: &Arc<Snapshot>,
        listener: usize,
        conn: &ConnInfo,
        req: &hyper::Request<B>,
        host: Option<&str>,
    ) -> Draft {
        let tls = conn.tls.as_ref();
        Draft {
            snapshot: snapshot.clone(),
            listener,
            started: Instant::now(),
            request_bytes: req
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .unwrap_or(0),
            client: conn.client,
            record: HttpRecord {
                method: req.method().as_str().to_owned(),
                host: host.unwrap_or("").to_owned(),
                path: req.uri().path().to_owned(),
                status: 0,
                response_us: None,
                routed: false,
                sni: tls.and_then(|t| t.sni.clone()),
                alpn: tls.and_then(|t| t.alpn.clone()),
                tls_version: tls.and_then(|t| t.version),
            },
        }
    }
}

/// Where the request went, as the proxy saw it.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Served {
    pub pool: Option<usize>,
    pub backend: Option<usize>,
    pub response_us: Option<u64>,
}

/// Wraps a response body so that the request counts as in flight on its
/// connection (`busy`) until the body ends, and its log line (when the
/// access log is on) is written then, or when it is dropped unfinished.
pub(super) fn wrap(
    resp: hyper::Response<Body>,
    draft: Option<Draft>,
    served: Served,
    shared: Arc<Shared>,
    slot: usize,
    busy: Busy,
) -> hyper::Response<Body> {
    let draft = draft.map(|mut draft| {
        draft.record.status = resp.status().as_u16();
        draft.record.response_us = served.response_us;
        draft.record.routed = served.pool.is_some();
        Box::new(draft)
    });
    resp.map(|inner| {
        http_body_util::BodyExt::boxed_unsync(Logged {
            inner,
            draft,
            served,
            bytes: 0,
            ended: false,
            shared,
            slot,
            _busy: busy,
        })
    })
}

struct Logged {
    inner: Body,
    draft: Option<Box<Draft>>,
    served: Served,
    bytes: u64,
    ended: bool,
    shared: Arc<Shared>,
    slot: usize,
    _busy: Busy,
}

impl hyper::body::Body for Logged {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes += data.len() as u64;
                }
            }
            Poll::Ready(None) => self.ended = true,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let Some(draft) = self.draft.take() else {
            return;
        };
        let draft = *draft;
        let ended = self.ended || self.inner.is_end_stream();
        let record = Record {
            end_unix_ms: unix_ms(),
            listener: draft.listener,
            pool: self.served.pool.unwrap_or(usize::MAX),
            backend: self.served.backend,
            client: Some(draft.client),
            bytes_client_to_backend: draft.request_bytes,
            bytes_backend_to_client: self.bytes,
            duration_us: draft.started.elapsed().as_micros() as u64,
            connect_us: None,
            termination: if ended {
                Termination::ClientClosed
            } else {
                Termination::ClientError
            },
            snapshot: draft.snapshot,
            http: Some(Box::new(draft.record)),
        };
        if let Some(queue) = self.shared.access_queues.get(self.slot) {
            if queue.push(record).is_err() {
                bump(&self.shared.stats.worker(self.slot).access_log_dropped, 1);
            }
        }
    }
}
