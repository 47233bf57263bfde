//! The admin HTTP listener on the control thread: dashboard, REST API,
//! liveness/readiness and Prometheus metrics. hyper speaks HTTP/1.1 (keep-alive,
//! chunked bodies, 400 for a malformed request, 431 for an oversized head);
//! this module bounds what a client may cost: the head and then the whole
//! request must arrive within `REQUEST_DEADLINE`, the body is capped at
//! `MAX_BODY` (413), the answer must be taken within `RESPONSE_DEADLINE`
//! (`conn`), and at most `MAX_ADMIN_CONNECTIONS` are served at once, so slow
//! or idle clients cannot pile up. It turns hyper's request into the
//! router's [`Request`] and the router's [`Response`] back into hyper's; the
//! routes and the browser defences live in `api` and `guard`.
//!
//! It must never block the runtime or touch a worker's state; changes go
//! through the snapshot, and slow work (parsing a config, DNS) runs on a
//! blocking thread (see `reload::off_thread`).

mod api;
mod conn;
mod guard;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Body, Bytes};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::http::request::Parts;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::StatusCode;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};

use super::State;
use crate::log;
use conn::{AdminIo, RequestStart};

pub use api::route;

/// Largest request head (request line and headers) accepted; hyper answers
/// 431 beyond it. Browsers send about 1 KiB; 16 KiB is the same budget as
/// the hand-written server this replaced.
const MAX_HEAD: usize = 16 * 1024;
/// Largest request body accepted (a posted config).
const MAX_BODY: usize = 1024 * 1024;
/// The whole request (head and body) must arrive within this, counted from
/// its first byte; slowloris clients are cut off here, not per read. It also
/// bounds how long a kept-alive connection may sit idle (hyper's head timer
/// runs from the moment it waits for the next request).
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// The answer must be taken by the client within this.
const RESPONSE_DEADLINE: Duration = Duration::from_secs(10);
/// Admin connections served at once; more are answered 503 at once and
/// closed. Far above what a dashboard, a scraper and an operator need, far
/// below the fd reserve (`dataplane::FD_RESERVE`) the admin API lives in.
pub const MAX_ADMIN_CONNECTIONS: usize = 64;

/// One request as the router sees it: hyper's parse, body read in full.
#[derive(Debug, Default)]
pub struct Request {
    pub method: String,
    /// The path without the query string.
    pub path: String,
    pub query: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    pub host: Option<String>,
    pub origin: Option<String>,
    pub sec_fetch_site: Option<String>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into().into_bytes(),
        }
    }

    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
        body.push(b'\n');
        Response {
            status,
            content_type: "application/json",
            body,
        }
    }

    pub fn error(status: u16, msg: impl std::fmt::Display) -> Response {
        Response::json(status, &serde_json::json!({ "error": msg.to_string() }))
    }
}

impl Request {
    /// The router's view of a request hyper has parsed.
    fn from_parts(parts: &Parts, body: Vec<u8>) -> Request {
        let text = |name: HeaderName| {
            parts
                .headers
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        Request {
            method: parts.method.as_str().to_string(),
            path: parts.uri.path().to_string(),
            query: parts.uri.query().unwrap_or("").to_string(),
            authorization: text(header::AUTHORIZATION),
            // RFC 9112 §3.2.2: a request target in absolute form names the
            // host, and `Host` is then to be ignored. The guard must judge
            // the name the request is really for.
            host: parts
                .uri
                .authority()
                .map(|a| a.to_string())
                .or_else(|| text(header::HOST)),
            origin: text(header::ORIGIN),
            sec_fetch_site: text(HeaderName::from_static("sec-fetch-site")),
            content_type: text(header::CONTENT_TYPE),
            body,
        }
    }
}

impl Response {
    /// hyper's answer; `close` ends the connection after it (used when the
    /// rest of the request was not read, so the next bytes are not a request).
    fn into_hyper(self, close: bool) -> hyper::Response<Full<Bytes>> {
        let mut out = hyper::Response::new(Full::new(Bytes::from(self.body)));
        *out.status_mut() =
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let headers = out.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if close {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        out
    }
}

/// Reads a request body of at most `MAX_BODY` bytes that must be complete by
/// `deadline`, or says why not (413, 408, 400).
async fn read_body<B>(body: B, deadline: Instant) -> Result<Vec<u8>, Response>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let too_large = || Response::error(413, format!("request body larger than {MAX_BODY} bytes"));
    // A declared Content-Length over the cap is refused before a byte of
    // the body is read (and before hyper sends `100 Continue`).
    if body.size_hint().lower() > MAX_BODY as u64 {
        return Err(too_large());
    }
    let collect = Limited::new(body, MAX_BODY).collect();
    match tokio::time::timeout_at(deadline.into(), collect).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes().to_vec()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(e)) => Err(Response::error(
            400,
            format!("the request body could not be read: {e}"),
        )),
        Err(_) => Err(Response::error(
            408,
            format!("the request did not arrive within {REQUEST_DEADLINE:?}"),
        )),
    }
}

/// One request on a connection: its body within what is left of the
/// request's deadline, then the router.
async fn answer(
    state: &Arc<State>,
    start: &RequestStart,
    req: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<Full<Bytes>> {
    // Every request's first byte is read through `AdminIo`, which marks it;
    // `now` is only the fallback for bytes hyper had read with the previous
    // request (a pipelining client), which can only make the deadline later.
    let deadline = start.get().unwrap_or_else(Instant::now) + REQUEST_DEADLINE;
    let (parts, body) = req.into_parts();
    let body = match read_body(body, deadline).await {
        Ok(body) => body,
        Err(refusal) => return refusal.into_hyper(true),
    };
    start.clear();
    route(state, &Request::from_parts(&parts, body))
        .await
        .into_hyper(false)
}

/// Serves one admin connection, request after request, until the client
/// closes it, asks to, goes idle past the deadline or misbehaves.
async fn serve_connection(state: Arc<State>, stream: TcpStream) {
    let io = AdminIo::new(stream, RESPONSE_DEADLINE);
    let start = io.request_start();
    let service = service_fn(move |req| {
        let (state, start) = (state.clone(), start.clone());
        async move { Ok::<_, Infallible>(answer(&state, &start, req).await) }
    });
    // Errors here are the client's (gone, reset, too slow, malformed, which
    // hyper has answered where it could): nothing for the operator's log.
    let _ = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(REQUEST_DEADLINE)
        .max_header_size(MAX_HEAD)
        // WHY: a client that shuts its side after sending (`nc -N`, shell
        // scripts) still gets its answer, and a change once received is
        // carried through rather than cancelled halfway by a hang-up, as
        // the hand-written server did.
        .half_close(true)
        .serve_connection(TokioIo::new(io), service)
        .await;
}

/// The answer when `MAX_ADMIN_CONNECTIONS` are being served.
// WHY written out rather than through hyper: hyper answers only after it has
// read a request, and this answer must not wait on the client at all.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 50\r\nConnection: close\r\nRetry-After: 1\r\n\r\n{\"error\": \"too many admin connections, try again\"}";

/// Binds the admin listener; the caller reports the bound address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves admin requests until the runtime stops.
pub async fn serve(state: Arc<State>, listener: TcpListener) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_ADMIN_CONNECTIONS));
    let mut last_warning: Option<Instant> = None;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    // Full: say so without waiting on this client at all.
                    let _ = stream.try_write(BUSY);
                    continue;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    serve_connection(state, stream).await;
                    drop(slot);
                });
            }
            Err(e) => {
                // Out of fds this repeats every back-off: say it every 10 s.
                if last_warning.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
                    log::warn("admin accept failed", &[("error", &e)]);
                    last_warning = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// `spliced health`: one `GET /health` to the admin API at `addr` (an
/// unspecified address such as 0.0.0.0 is asked on loopback), `Ok` on 200.
/// The client side of a container HEALTHCHECK, so an image needs no curl;
/// blocking and bounded by `timeout` for the connect and for each read and
/// write, since it runs alone in its own short-lived process.
pub fn probe_health(addr: SocketAddr, timeout: Duration) -> std::io::Result<()> {
    use std::io::{Error, Read, Write};
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let host = match addr {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    };
    write!(
        s,
        "GET /health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    // The status line is all we need; "HTTP/1.1 200 " is 13 bytes.
    let mut head = [0u8; 64];
    let mut n = 0;
    while n < 13 {
        match s.read(&mut head[n..])? {
            0 => break,
            read => n += read,
        }
    }
    let line = String::from_utf8_lossy(&head[..n]);
    let status = line.split(' ').nth(1).unwrap_or("");
    if status == "200" {
        Ok(())
    } else {
        let first = line.lines().next().unwrap_or("").trim();
        Err(Error::other(format!("/health answered {first:?}, not 200")))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use hyper::body::Frame;

    use super::*;

    /// A body that arrives in `chunks` with no declared length (as chunked
    /// encoding does, unless `declared` is set, as Content-Length does), then
    /// ends, or waits for ever if `stalls`.
    struct Chunks {
        chunks: VecDeque<Bytes>,
        stalls: bool,
        declared: Option<u64>,
    }

    impl Chunks {
        fn new(sizes: &[usize], stalls: bool) -> Chunks {
            Chunks {
                chunks: sizes.iter().map(|&n| Bytes::from(vec![b'x'; n])).collect(),
                stalls,
                declared: None,
            }
        }
    }

    impl Body for Chunks {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            let this = self.get_mut();
            match this.chunks.pop_front() {
                Some(chunk) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
                None if this.stalls => Poll::Pending,
                None => Poll::Ready(None),
            }
        }

        fn size_hint(&self) -> hyper::body::SizeHint {
            self.declared
                .map_or_else(Default::default, hyper::body::SizeHint::with_exact)
        }
    }

    fn later() -> Instant {
        Instant::now() + REQUEST_DEADLINE
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_read_whole() {
        let body = read_body(Chunks::new(&[3, MAX_BODY - 4, 1], false), later()).await;
        assert_eq!(body.ok().map(|b| b.len()), Some(MAX_BODY));
    }

    #[tokio::test]
    async fn a_declared_length_over_the_limit_is_refused_before_reading() {
        // Nothing of it arrives and the deadline has passed: only a refusal
        // made from the declared length alone answers 413.
        let declared = Chunks {
            declared: Some(MAX_BODY as u64 + 1),
            ..Chunks::new(&[], true)
        };
        let refusal = read_body(declared, Instant::now()).await.unwrap_err();
        assert_eq!(refusal.status, 413);
    }

    #[tokio::test]
    async fn a_streamed_body_that_grows_past_the_limit_is_refused() {
        let chunks = Chunks::new(&[64 * 1024; 17], true);
        let refusal = read_body(chunks, later()).await.unwrap_err();
        assert_eq!(refusal.status, 413);
        assert!(
            String::from_utf8_lossy(&refusal.body).contains(&MAX_BODY.to_string()),
            "the refusal names the limit"
        );
    }

    #[tokio::test]
    async fn a_body_that_stops_arriving_is_answered_408_at_the_deadline() {
        let refusal = read_body(Chunks::new(&[10], true), Instant::now())
            .await
            .unwrap_err();
        assert_eq!(refusal.status, 408);
    }

    #[test]
    fn the_router_sees_the_parsed_head() {
        let (parts, ()) = hyper::Request::builder()
            .method("PATCH")
            .uri("/api/v1/pools/p/backends/127.0.0.1%3A80?x=1")
            .header("host", "127.0.0.1:9090")
            .header("origin", "http://127.0.0.1:9090")
            .header("Sec-Fetch-Site", "same-origin")
            .header("content-type", "application/json")
            .header("authorization", "Bearer t")
            .body(())
            .unwrap()
            .into_parts();
        let req = Request::from_parts(&parts, b"{}".to_vec());
        assert_eq!(req.method, "PATCH");
        assert_eq!(req.path, "/api/v1/pools/p/backends/127.0.0.1%3A80");
        assert_eq!(req.query, "x=1");
        assert_eq!(req.host.as_deref(), Some("127.0.0.1:9090"));
        assert_eq!(req.origin.as_deref(), Some("http://127.0.0.1:9090"));
        assert_eq!(req.sec_fetch_site.as_deref(), Some("same-origin"));
        assert_eq!(req.content_type.as_deref(), Some("application/json"));
        assert_eq!(req.authorization.as_deref(), Some("Bearer t"));
        assert_eq!(req.body, b"{}");
    }

    #[test]
    fn an_absolute_form_target_names_the_host_over_the_host_header() {
        let (parts, ()) = hyper::Request::builder()
            .uri("http://rebind.example:9090/api/v1/pools")
            .header("host", "127.0.0.1:9090")
            .body(())
            .unwrap()
            .into_parts();
        let req = Request::from_parts(&parts, Vec::new());
        assert_eq!(req.host.as_deref(), Some("rebind.example:9090"));
        assert_eq!(req.path, "/api/v1/pools");
    }

    #[test]
    fn answers_are_never_cached_and_refusals_close_the_connection() {
        let ok = Response::text(200, "ok\n").into_hyper(false);
        assert_eq!(ok.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(
            ok.headers()[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        assert!(ok.headers().get(header::CONNECTION).is_none());
        let refused = Response::error(413, "too big").into_hyper(true);
        assert_eq!(refused.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(refused.headers()[header::CONNECTION], "close");
    }

    #[test]
    fn the_busy_answer_declares_its_own_length() {
        let text = std::str::from_utf8(BUSY).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}\r\n", body.len())));
        serde_json::from_str::<serde_json::Value>(body).unwrap();
    }
}
