//! One active health probe against one backend, on the control thread's
//! runtime: a TCP connect, optionally a send/expect exchange, or an HTTP GET
//! whose status must be in the expected ranges. Bounded in time by the caller
//! and in memory here (a reply is read up to `MAX_REPLY` bytes).

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::HealthKind;

const MAX_REPLY: usize = 64 * 1024;

/// Why a probe failed, for logs.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("connect failed: {0}")]
    Connect(std::io::Error),
    #[error("i/o error: {0}")]
    Io(std::io::Error),
    #[error("the reply did not contain the expected bytes")]
    Unexpected,
    #[error("HTTP status {0} is not an expected one")]
    Status(u16),
    #[error("malformed HTTP reply")]
    BadHttp,
    #[error("timed out")]
    Timeout,
    /// spliced itself is short of fds or memory: says nothing of the backend.
    #[error("no probe was possible here ({0}): spliced is out of file descriptors or memory")]
    Local(std::io::Error),
}

impl ProbeError {
    /// True when the failure is ours, not the backend's (EMFILE, ENFILE,
    /// ENOBUFS, ENOMEM): such a probe must not count against its health.
    pub fn is_local(&self) -> bool {
        matches!(self, ProbeError::Local(_))
    }
}

/// Sorts a connect error: our own shortage of resources, or the backend's.
fn connect_error(e: std::io::Error) -> ProbeError {
    match e.raw_os_error() {
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => ProbeError::Local(e),
        _ => ProbeError::Connect(e),
    }
}

/// Runs one probe (no timeout here: the caller wraps it).
pub async fn probe(addr: SocketAddr, kind: &HealthKind) -> Result<(), ProbeError> {
    let mut stream = TcpStream::connect(addr).await.map_err(connect_error)?;
    let _ = stream.set_nodelay(true);
    match kind {
        HealthKind::Tcp { send, expect } => {
            if let Some(data) = send {
                stream.write_all(data).await.map_err(ProbeError::Io)?;
            }
            if let Some(expect) = expect {
                let reply = read_until(&mut stream, |buf| contains(buf, expect)).await?;
                if !contains(&reply, expect) {
                    return Err(ProbeError::Unexpected);
                }
            }
            Ok(())
        }
        HealthKind::Http {
            path,
            host,
            expect_status,
        } => {
            let host = host.clone().unwrap_or_else(|| addr.to_string());
            let request = format!(
                "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: spliced-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n"
            );
            stream
                .write_all(request.as_bytes())
                .await
                .map_err(ProbeError::Io)?;
            let reply = read_until(&mut stream, |buf| buf.windows(2).any(|w| w == b"\r\n")).await?;
            let status = parse_status(&reply).ok_or(ProbeError::BadHttp)?;
            if expect_status.iter().any(|r| r.contains(&status)) {
                Ok(())
            } else {
                Err(ProbeError::Status(status))
            }
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// Reads until `done` says so, EOF, or `MAX_REPLY` bytes.
async fn read_until(
    stream: &mut TcpStream,
    done: impl Fn(&[u8]) -> bool,
) -> Result<Vec<u8>, ProbeError> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 4096];
    while !done(&buf) && buf.len() < MAX_REPLY {
        let n = stream.read(&mut chunk).await.map_err(ProbeError::Io)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(buf)
}

/// The status code of an HTTP/1.x status line.
pub fn parse_status(reply: &[u8]) -> Option<u16> {
    let line = reply.split(|&b| b == b'\r' || b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_lines() {
        assert_eq!(parse_status(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(
            parse_status(b"HTTP/1.0 503 Service Unavailable\r\n\r\n"),
            Some(503)
        );
        assert_eq!(parse_status(b"HTTP/1.1 204\r\n"), Some(204));
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_status(b"HTTP/1.1 20\r\n"), None);
        assert_eq!(parse_status(b""), None);
    }

    #[test]
    fn a_local_fd_shortage_is_not_the_backends_failure() {
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            assert!(connect_error(std::io::Error::from_raw_os_error(errno)).is_local());
        }
        assert!(!connect_error(std::io::Error::from_raw_os_error(libc::ECONNREFUSED)).is_local());
    }

    #[test]
    fn finds_expected_bytes() {
        assert!(contains(b"+PONG\r\n", b"PONG"));
        assert!(!contains(b"-ERR\r\n", b"PONG"));
    }
}
