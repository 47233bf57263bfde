//! The admin HTTP listener on the control thread: dashboard, REST API,
//! liveness/readiness and Prometheus metrics. A deliberately small HTTP/1.1
//! server (one request per connection, bounded head and body, a deadline for
//! the whole request and for the answer, a cap on connections served at once)
//! so the control plane needs no web framework and slow clients cannot pile
//! up. It must never block the runtime or touch a worker's state; changes go
//! through the snapshot, and slow work (parsing a config, DNS) runs on a
//! blocking thread (see `reload::off_thread`).

mod api;
mod guard;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::State;
use crate::log;

pub use api::route;

/// Largest request head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Largest request body accepted (a posted config).
const MAX_BODY: usize = 1024 * 1024;
/// The whole request (head and body) must arrive within this; slowloris
/// clients are cut off here, not per read.
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// The answer must be taken by the client within this.
const RESPONSE_DEADLINE: Duration = Duration::from_secs(10);
/// Admin connections served at once; more are answered 503 at once and
/// closed. Far above what a dashboard, a scraper and an operator need, far
/// below the fd reserve (`dataplane::FD_RESERVE`) the admin API lives in.
pub const MAX_ADMIN_CONNECTIONS: usize = 64;

/// One parsed request.
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

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        421 => "Misdirected Request",
        422 => "Unprocessable Entity",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

async fn read_request(stream: &mut TcpStream) -> Result<Option<Request>, Response> {
    let mut buf = Vec::with_capacity(1024);
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        if buf.len() >= MAX_HEAD {
            return Err(Response::error(413, "request head too large"));
        }
        let mut chunk = [0u8; 4096];
        let n = match stream.read(&mut chunk).await {
            Ok(n) => n,
            Err(_) => return Ok(None),
        };
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(Response::error(400, "malformed request line"));
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let length: usize = match header(&head, "content-length") {
        Some(v) => v
            .parse()
            .map_err(|_| Response::error(400, "bad Content-Length"))?,
        None => 0,
    };
    if length > MAX_BODY {
        return Err(Response::error(
            413,
            format!("request body larger than {MAX_BODY} bytes"),
        ));
    }
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let mut chunk = vec![0u8; (length - body.len()).min(64 * 1024)];
        let n = match stream.read(&mut chunk).await {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(Response::error(
                    400,
                    "request body shorter than its Content-Length",
                ))
            }
        };
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Ok(Some(Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        authorization: header(&head, "authorization").map(str::to_string),
        host: header(&head, "host").map(str::to_string),
        origin: header(&head, "origin").map(str::to_string),
        sec_fetch_site: header(&head, "sec-fetch-site").map(str::to_string),
        content_type: header(&head, "content-type").map(str::to_string),
        body,
    }))
}

async fn serve_one(state: Arc<State>, mut stream: TcpStream) -> std::io::Result<()> {
    let response = match tokio::time::timeout(REQUEST_DEADLINE, read_request(&mut stream)).await {
        Ok(Ok(Some(req))) => route(&state, &req).await,
        Ok(Ok(None)) => return Ok(()),
        Ok(Err(r)) => r,
        Err(_) => Response::error(
            408,
            format!("the request did not arrive within {REQUEST_DEADLINE:?}"),
        ),
    };
    match tokio::time::timeout(RESPONSE_DEADLINE, write_response(&mut stream, &response)).await {
        Ok(result) => result,
        Err(_) => Ok(()),
    }
}

async fn write_response(stream: &mut TcpStream, response: &Response) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&response.body).await?;
    stream.shutdown().await
}

/// The answer when `MAX_ADMIN_CONNECTIONS` are being served.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 50\r\nConnection: close\r\nRetry-After: 1\r\n\r\n{\"error\": \"too many admin connections, try again\"}";

/// Binds the admin listener; the caller reports the bound address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves admin requests until the runtime stops.
pub async fn serve(state: Arc<State>, listener: TcpListener) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_ADMIN_CONNECTIONS));
    let mut last_warning: Option<std::time::Instant> = None;
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
                    let _ = serve_one(state, stream).await;
                    drop(slot);
                });
            }
            Err(e) => {
                // Out of fds this repeats every back-off: say it every 10 s.
                if last_warning.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
                    log::warn("admin accept failed", &[("error", &e)]);
                    last_warning = Some(std::time::Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
