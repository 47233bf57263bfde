//! One request through the proxy: the listener's refusals (redirect,
//! ambiguous framing, oversize bodies), the route to a pool, the backend
//! from the pool's balancer (health, drain, backups, slow start as for L4
//! connections), the send on a pooled or new connection, and the response
//! back with its hop-by-hop headers removed. A request goes to another
//! backend only while it provably has not been sent: the connect failed, or
//! a pooled connection turned out closed before the request was written.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http_body_util::{BodyExt, Limited};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri, Version};

use super::deadline::Activity;
use super::headers::{self, Forwarded};
use super::logged::{self, Draft, Served};
use super::upstream::{self, Sender};
use super::worker::Worker;
use super::{answer, rate_limit, route, sticky, tunnel, Body};
use crate::balance::{self, Backend, Choice, PickContext};
use crate::clock;
use crate::config::{HttpListener, UpstreamProtocol};
use crate::counters::{bump, code_class, unbump, BACKEND_TO_CLIENT, CLIENT_TO_BACKEND};
use crate::session::MAX_ATTEMPTS;
use crate::snapshot::{Listener, Pool, Snapshot, UpstreamTls};

/// What every request on one client connection shares.
pub(super) struct ConnInfo {
    pub listener_id: u32,
    pub client: SocketAddr,
    pub local: Option<SocketAddr>,
    pub tls: Option<TlsInfo>,
    /// Requests in flight, for the connection's idle and header timers.
    pub activity: Arc<Activity>,
}

/// The negotiated TLS session of a client connection.
pub(super) struct TlsInfo {
    pub sni: Option<String>,
    pub alpn: Option<String>,
    pub version: Option<&'static str>,
}

/// hyper's service entry point: never fails; every problem is an answer.
pub(super) async fn handle(
    worker: Rc<Worker>,
    conn: Rc<ConnInfo>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let snapshot = worker.shared.snapshot.load_full();
    let Some(listener) = snapshot.listeners.iter().find(|l| l.id == conn.listener_id) else {
        return Ok(answer::plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "listener removed",
        ));
    };
    let Some(http) = listener.settings.http.as_deref() else {
        return Ok(answer::plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "listener changed mode",
        ));
    };
    let request = Pending {
        worker: &worker,
        conn: &conn,
        snapshot: &snapshot,
        listener,
        http,
    };
    let busy = conn.activity.begin();
    let draft = worker
        .shared
        .access_log_on
        .load(Ordering::Relaxed)
        .then(|| {
            let host = route::request_host(&req);
            Draft::new(&snapshot, listener.index, &conn, &req, host.as_deref())
        });
    let mut served = Served::default();
    let resp = match request.refusal(&req) {
        Some(resp) => resp,
        None => request.proxy(req, &mut served).await,
    };
    Ok(logged::wrap(
        resp,
        draft,
        served,
        worker.shared.clone(),
        worker.slot,
        busy,
    ))
}

/// A request being handled, with the views it was started with.
struct Pending<'a> {
    worker: &'a Rc<Worker>,
    conn: &'a ConnInfo,
    snapshot: &'a Arc<Snapshot>,
    listener: &'a Listener,
    http: &'a HttpListener,
}

impl Pending<'_> {
    /// An answer made before any pool is involved (redirect, refused
    /// framing, too large), counted on the listener.
    fn refusal(&self, req: &Request<Incoming>) -> Option<Response<Body>> {
        let resp = if let Some(port) = self.http.redirect_https {
            let host = route::request_host(req).unwrap_or_else(|| {
                self.conn
                    .local
                    .map_or_else(|| "localhost".into(), |a| a.ip().to_string())
            });
            let port = if port == 443 {
                String::new()
            } else {
                format!(":{port}")
            };
            let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
            answer::redirect(&format!("https://{host}{port}{path}"))
        } else if let Err(why) = headers::check_framing(req) {
            answer::plain(StatusCode::BAD_REQUEST, why)
        } else if content_length(req).is_some_and(|n| n > self.http.request_limits.max_body) {
            answer::plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
        } else {
            return None;
        };
        self.count_local(resp.status());
        Some(resp)
    }

    fn count_local(&self, status: StatusCode) {
        let ls = self.listener.stats.worker(self.worker.slot);
        bump(&ls.http_local[code_class(status.as_u16())], 1);
    }

    /// Routes the request and sends it to a backend of its pool.
    async fn proxy(&self, mut req: Request<Incoming>, served: &mut Served) -> Response<Body> {
        let started = Instant::now();
        let host = route::request_host(&req);
        let route_at = route::matching(&self.http.routes, host.as_deref(), req.uri().path());
        let routed = route_at
            .map(|i| self.http.routes[i].pool.0)
            .or(self.listener.pool);
        let Some(pool_index) = routed else {
            self.count_local(StatusCode::NOT_FOUND);
            return answer::plain(StatusCode::NOT_FOUND, "no route for this request");
        };
        let pool = &self.snapshot.pools[pool_index];
        served.pool = Some(pool_index);
        // The route's sticky cookie and rate limits (`sticky`, `rate_limit`).
        let features = route_at.and_then(|i| self.listener.routes.get(i));
        if let Some(limits) = features.map(|f| &f.limits[..]).filter(|l| !l.is_empty()) {
            let refused = rate_limit::check(
                limits,
                req.headers(),
                self.conn.client.ip(),
                &self.worker.shared.limiter,
                self.worker.slot,
                clock::now_ns(),
            );
            if let Some(resp) = refused {
                self.count_local(StatusCode::TOO_MANY_REQUESTS);
                return resp;
            }
        }
        let sticky = features.and_then(|f| f.sticky.as_ref());
        let pinned = sticky.and_then(|s| sticky::pinned(s, req.headers_mut()));
        let upgrade = headers::wants_upgrade(&req);
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let protocol = if upgrade {
            UpstreamProtocol::Http1
        } else {
            pool.protocol
        };
        let request_bytes = content_length(&req).unwrap_or(0);
        let mut req = self.rewrite(req, host.as_deref(), protocol, upgrade);

        let mut tried = [0u32; MAX_ATTEMPTS];
        let mut attempts = 0usize;
        let max_attempts = (self.listener.retries as usize + 1).min(MAX_ATTEMPTS);
        let mut failed_connect = false;
        while attempts < max_attempts {
            let pick = PickContext {
                client: Some(self.conn.client.ip()),
                worker: self.worker.slot,
                now_ms: clock::now_ms(),
                random: self.worker.random(),
            };
            let seen = &tried[..attempts];
            // A pinned backend is taken while it is eligible (up, in
            // service, not ejected, not full); else the pool balances anew.
            let stuck = pinned.filter(|&i| {
                attempts == 0
                    && pool
                        .backends
                        .get(i)
                        .is_some_and(|b| b.eligible(pick.now_ms))
            });
            let choice = match stuck {
                Some(i) => Choice::Backend(i),
                None => balance::choose(
                    &pool.backends,
                    &pool.primary,
                    &pool.backup,
                    &pool.policy,
                    &pick,
                    &|i| seen.contains(&(i as u32)),
                ),
            };
            let index = match choice {
                Choice::Backend(i) | Choice::FailOpen(i) => i,
                Choice::AllFull => {
                    self.count_local(StatusCode::SERVICE_UNAVAILABLE);
                    return answer::plain(StatusCode::SERVICE_UNAVAILABLE, "every backend is full");
                }
                Choice::NoneLeft if failed_connect => {
                    self.count_local(StatusCode::BAD_GATEWAY);
                    return answer::plain(StatusCode::BAD_GATEWAY, "no backend could be reached");
                }
                Choice::NoneLeft => {
                    self.count_local(StatusCode::SERVICE_UNAVAILABLE);
                    return answer::plain(StatusCode::SERVICE_UNAVAILABLE, "no backend available");
                }
            };
            tried[attempts] = index as u32;
            attempts += 1;
            let backend = &pool.backends[index];
            let flight = InFlight::start(self.worker, backend, self.listener.metrics_slot);
            if attempts == 1 {
                // The body's length as declared (a chunked body counts 0).
                flight.bytes(CLIENT_TO_BACKEND, request_bytes);
            }
            let sender = match self
                .sender(backend, protocol, pool.upstream_tls.as_ref(), upgrade)
                .await
            {
                Ok(sender) => sender,
                Err(e) => {
                    crate::log::debug(
                        "cannot reach a backend; trying another",
                        &[("backend", &backend.addr), ("error", &e)],
                    );
                    failed_connect = true;
                    self.connect_failed(pool, index, e.errno());
                    continue;
                }
            };
            served.backend = Some(index);
            match self
                .send(
                    sender,
                    req,
                    (
                        backend.addr,
                        protocol,
                        pool.upstream_tls.as_ref().map_or(0, |t| t.id),
                    ),
                    upgrade,
                )
                .await
            {
                Sent::Response(mut resp) => {
                    let status = resp.status();
                    served.response_us = Some(started.elapsed().as_micros() as u64);
                    flight.observe(status, started);
                    let backend_upgrade = (status == StatusCode::SWITCHING_PROTOCOLS)
                        .then(|| hyper::upgrade::on(&mut resp));
                    headers::strip_hop_by_hop(resp.headers_mut(), backend_upgrade.is_some());
                    if let Some(sticky) = sticky {
                        sticky::reissue(sticky, pinned, index, resp.headers_mut());
                    }
                    if let (Some(client), Some(backend)) = (client_upgrade, backend_upgrade) {
                        self.conn.activity.upgraded();
                        let idle = self.http.timeouts.tunnel_idle;
                        tokio::task::spawn_local(async move {
                            let _flight = flight;
                            tunnel::relay(client, backend, idle).await;
                        });
                        return resp.map(|b| b.map_err(Into::into).boxed_unsync());
                    }
                    return resp.map(|body| {
                        Tracked {
                            inner: body.map_err(Into::into).boxed_unsync(),
                            flight,
                        }
                        .boxed_unsync()
                    });
                }
                Sent::Unsent(back) => {
                    // A pooled connection closed under us before the request
                    // was written: safe to try again.
                    req = back;
                    continue;
                }
                Sent::Failed(status, why) => {
                    flight.observe(status, started);
                    return answer::plain(status, why);
                }
            }
        }
        self.count_local(StatusCode::BAD_GATEWAY);
        answer::plain(StatusCode::BAD_GATEWAY, "no backend could be reached")
    }

    /// The request as the backend gets it: hop-by-hop headers removed,
    /// forwarding headers added, the URI and version the upstream protocol
    /// needs, the body bounded by `max_body`.
    fn rewrite(
        &self,
        req: Request<Incoming>,
        host: Option<&str>,
        protocol: UpstreamProtocol,
        upgrade: bool,
    ) -> Request<Body> {
        let (mut parts, body) = req.into_parts();
        // The host as the client wrote it (with its port), for Host and
        // X-Forwarded-Host.
        let authority = parts
            .uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                parts
                    .headers
                    .get(header::HOST)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            });
        headers::strip_hop_by_hop(&mut parts.headers, upgrade);
        let trusted = self
            .http
            .trusted_proxies
            .iter()
            .any(|c| c.contains(self.conn.client.ip()));
        headers::add_forwarded(
            &mut parts.headers,
            &Forwarded {
                client: self.conn.client.ip(),
                trusted,
                proto: if self.conn.tls.is_some() {
                    "https"
                } else {
                    "http"
                },
                host: authority.as_deref().or(host),
                request_id: self.worker.random(),
            },
        );
        let path = parts
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
        match protocol {
            UpstreamProtocol::Http1 => {
                parts.version = Version::HTTP_11;
                if let Ok(uri) = path.parse::<Uri>() {
                    parts.uri = uri;
                }
                if !parts.headers.contains_key(header::HOST) {
                    // HTTP/2 gives :authority; an HTTP/1.0 client may give
                    // nothing, and an HTTP/1.1 backend needs a Host: then
                    // the address the client reached.
                    let host = authority
                        .clone()
                        .or_else(|| self.conn.local.map(|a| a.to_string()));
                    if let Some(v) = host.and_then(|a| HeaderValue::from_str(&a).ok()) {
                        parts.headers.insert(header::HOST, v);
                    }
                }
            }
            UpstreamProtocol::H2c | UpstreamProtocol::H2 => {
                parts.version = Version::HTTP_2;
                let scheme = if protocol == UpstreamProtocol::H2 {
                    "https"
                } else {
                    "http"
                };
                let authority = authority.unwrap_or_else(|| "localhost".into());
                if let Ok(uri) = format!("{scheme}://{authority}{path}").parse::<Uri>() {
                    parts.uri = uri;
                }
                parts.headers.remove(header::HOST);
            }
        }
        let limit = usize::try_from(self.http.request_limits.max_body).unwrap_or(usize::MAX);
        let body = Limited::new(body, limit).boxed_unsync();
        Request::from_parts(parts, body)
    }

    /// A connection to `backend` ready for one request: pooled, or new
    /// (always new for an upgrade, which then owns it).
    async fn sender(
        &self,
        backend: &Backend,
        protocol: UpstreamProtocol,
        tls: Option<&UpstreamTls>,
        upgrade: bool,
    ) -> Result<Sender, upstream::ConnectError> {
        let upstreams = &self.worker.upstreams;
        let key = (backend.addr, protocol, tls.map_or(0, |t| t.id));
        let h2 = protocol != UpstreamProtocol::Http1;
        if !upgrade {
            if let Some(sender) = upstreams.checkout(key) {
                return Ok(sender);
            }
        }
        let mut opening = None;
        if h2 {
            // One HTTP/2 connection per backend per worker: wait for one
            // being opened rather than opening another.
            match upstreams.h2_wait_or_open(key) {
                Some(wait) => {
                    wait.notified().await;
                    if let Some(sender) = upstreams.checkout(key) {
                        return Ok(sender);
                    }
                }
                // Wakes the waiters however this ends, even if the request
                // is dropped while connecting.
                None => opening = Some(upstream::Opening::new(upstreams, key)),
            }
        }
        // Boxed: the connect (TCP, TLS, HTTP handshake) is most of a
        // request's future by size (~6.7 KB) but rare on pooled
        // connections; inline, every request's task would be allocated
        // and moved at that size.
        let connected = Box::pin(upstream::connect(
            backend,
            protocol,
            tls,
            self.listener.connect_timeout,
            upgrade,
            self.worker.slot,
        ))
        .await;
        if let (Ok(Sender::H2(s)), Some(_)) = (&connected, &opening) {
            upstreams.checkin(key, Sender::H2(s.clone()));
        }
        drop(opening);
        if connected.is_ok() {
            let failures = &backend.stats.consecutive_failures;
            if failures.load(Ordering::Relaxed) != 0 {
                failures.store(0, Ordering::Relaxed);
            }
        }
        connected
    }

    /// Counts a failed connect against the backend (passive health: enough
    /// in a row eject it, as for L4 connections).
    fn connect_failed(&self, pool: &Pool, i: usize, errno: i32) {
        let b = &pool.backends[i];
        let w = b.stats.worker(self.worker.slot);
        match errno {
            libc::ECONNREFUSED => bump(&w.connect_errors_refused, 1),
            libc::ETIMEDOUT => bump(&w.connect_errors_timeout, 1),
            _ => bump(&w.connect_errors_other, 1),
        }
        let failures = b.stats.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if pool.eject_after > 0 && failures >= pool.eject_after {
            pool.eject(i, clock::now_ms());
        }
    }

    /// Sends the request and waits for the response headers within
    /// `backend_response`.
    async fn send(
        &self,
        sender: Sender,
        req: Request<Body>,
        key: upstream::Key,
        upgrade: bool,
    ) -> Sent {
        let wait = self.http.timeouts.backend_response;
        let upstreams = &self.worker.upstreams;
        let result = match sender {
            Sender::H1(mut s) => {
                if s.ready().await.is_err() {
                    return Sent::Unsent(req);
                }
                let sent = s.try_send_request(req);
                if !upgrade {
                    upstreams.checkin(key, Sender::H1(s));
                }
                tokio::time::timeout(wait, sent).await
            }
            Sender::H2(mut s) => {
                if s.ready().await.is_err() {
                    return Sent::Unsent(req);
                }
                let sent = s.try_send_request(req);
                upstreams.checkin(key, Sender::H2(s));
                tokio::time::timeout(wait, sent).await
            }
        };
        match result {
            Err(_) => Sent::Failed(
                StatusCode::GATEWAY_TIMEOUT,
                "the backend did not answer in time",
            ),
            Ok(Ok(resp)) => Sent::Response(resp),
            Ok(Err(mut e)) => match e.take_message() {
                Some(req) => Sent::Unsent(req),
                None => {
                    let too_large = std::error::Error::source(e.error())
                        .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
                    if too_large {
                        Sent::Failed(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
                    } else {
                        Sent::Failed(StatusCode::BAD_GATEWAY, "the backend connection failed")
                    }
                }
            },
        }
    }
}

/// How a send ended.
enum Sent {
    Response(Response<Incoming>),
    /// Not written at all: the request comes back for another try.
    Unsent(Request<Body>),
    /// Failed after (part of) it was sent: answered, never retried.
    Failed(StatusCode, &'static str),
}

fn content_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A request in flight to a backend: counted in its `active` gauge (which
/// least-connections balancing reads) until the response has been passed
/// on whole, or the attempt failed.
struct InFlight {
    backend: Arc<Backend>,
    /// The worker's counter slot, and the listener's in the backend's.
    worker: usize,
    slot: usize,
}

impl InFlight {
    fn start(worker: &Rc<Worker>, backend: &Arc<Backend>, slot: usize) -> InFlight {
        backend.stats.active.fetch_add(1, Ordering::Relaxed);
        let w = backend.stats.worker(worker.slot);
        bump(&w.connections, 1);
        let route = &w.by_listener[slot];
        bump(&route.connections, 1);
        bump(&route.active, 1);
        InFlight {
            backend: backend.clone(),
            worker: worker.slot,
            slot,
        }
    }

    /// Counts bytes of a request or response body (`dir`: a
    /// `counters::CLIENT_TO_BACKEND`-style index) to this backend.
    fn bytes(&self, dir: usize, n: u64) {
        let w = self.backend.stats.worker(self.worker);
        bump(&w.bytes[dir], n);
        bump(&w.by_listener[self.slot].bytes[dir], n);
    }

    /// Counts the response status and the time to its headers.
    fn observe(&self, status: StatusCode, started: Instant) {
        let route = &self.backend.stats.worker(self.worker).by_listener[self.slot];
        bump(&route.http_responses[code_class(status.as_u16())], 1);
        route
            .http_duration
            .observe(started.elapsed().as_micros() as u64);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.backend.stats.active.fetch_sub(1, Ordering::Relaxed);
        let route = &self.backend.stats.worker(self.worker).by_listener[self.slot];
        unbump(&route.active, 1);
    }
}

/// A response body that keeps its request counted in flight until it ends.
struct Tracked {
    inner: Body,
    flight: InFlight,
}

impl hyper::body::Body for Tracked {
    type Data = hyper::body::Bytes;
    type Error = super::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.flight.bytes(BACKEND_TO_CLIENT, data.len() as u64);
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn future_size<A, B, C, Fut, F: FnOnce(A, B, C) -> Fut>(_: &F) -> usize {
        std::mem::size_of::<Fut>()
    }

    /// A request's future is allocated and moved whole: the rare parts
    /// (a new backend connection) are boxed to keep it small. It was
    /// ~9 KB with the connect inline.
    #[test]
    fn a_requests_future_stays_small() {
        let size = future_size(&handle);
        assert!(size < 4096, "proxy::handle's future is {size} bytes");
    }
}
