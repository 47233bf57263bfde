//! The admin HTTP listener on the control thread: liveness, readiness and
//! Prometheus metrics. A deliberately small HTTP/1.1 server (one request per
//! connection, bounded request size) so the control plane stays free of a web
//! framework; it must never block the runtime or touch a worker's state.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::State;
use crate::log;
use crate::metrics;

/// Largest request head accepted.
const MAX_REQUEST: usize = 16 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Response {
    fn text(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }

    fn json_error(status: u16, msg: &str) -> Response {
        Response {
            status,
            content_type: "application/json",
            body: format!("{{\"error\":{:?}}}\n", msg),
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Routes one request. Pure over the shared state, so it is easy to test.
pub fn route(state: &State, method: &str, path: &str) -> Response {
    let path = path.split('?').next().unwrap_or(path);
    match (method, path) {
        ("GET", "/health") => Response::text(200, "ok\n"),
        ("GET", "/ready") => {
            if state.ready.load(Ordering::Acquire) {
                Response::text(200, "ready\n")
            } else {
                Response::text(503, "starting\n")
            }
        }
        ("GET", "/metrics") => {
            let snapshot = state.shared.snapshot.load();
            let reloads = (
                state.reloads_ok.load(Ordering::Relaxed),
                state.reloads_error.load(Ordering::Relaxed),
            );
            Response {
                status: 200,
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                body: metrics::render(&snapshot, &state.shared.stats, reloads),
            }
        }
        (_, "/health" | "/ready" | "/metrics") => Response::json_error(405, "method not allowed"),
        _ => Response::json_error(404, "no such endpoint"),
    }
}

async fn serve_one(state: Arc<State>, mut stream: TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        if buf.len() >= MAX_REQUEST {
            return write(
                &mut stream,
                Response::json_error(413, "request head too large"),
            )
            .await;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(READ_TIMEOUT, stream.read(&mut chunk))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let response = match (parts.next(), parts.next()) {
        (Some(method), Some(path)) => route(&state, method, path),
        _ => Response::json_error(400, "malformed request line"),
    };
    write(&mut stream, response).await
}

async fn write(stream: &mut TcpStream, r: Response) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(r.body.as_bytes()).await?;
    stream.shutdown().await
}

/// Binds the admin listener; the caller reports the bound address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves admin requests until the runtime stops.
pub async fn serve(state: Arc<State>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let state = state.clone();
                tokio::spawn(async move {
                    let _ = serve_one(state, stream).await;
                });
            }
            Err(e) => {
                log::warn("admin accept failed", &[("error", &e)]);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
