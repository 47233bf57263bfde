//! `spliced demo`: the embedded default. Three tiny HTTP backends on loopback
//! that say which of them answered, and the balancer in front of them with the
//! config in `conf/demo.yaml` (compiled in, so no files are needed).
//! Demo backends are plain blocking threads: they exist to be looked at, not
//! measured.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use anyhow::Context;

use crate::config::{self, Config};

/// The demo's config, as shipped in `conf/demo.yaml`.
pub const DEMO_YAML: &str = include_str!("../conf/demo.yaml");

pub fn config() -> anyhow::Result<Config> {
    config::parse_str(DEMO_YAML)
        .map_err(|e| anyhow::anyhow!("the built-in demo config is invalid:\n{e}"))
}

/// The demo's config with its listeners and admin API on `ip` instead of
/// 127.0.0.1 (`spliced demo --bind 0.0.0.0`, as a container needs for its
/// published ports); the demo backends stay on loopback. Naming a
/// non-loopback address on the command line is the operator's say-so for an
/// admin API without a token (`admin.allow_unauthenticated`), as in a file.
pub fn config_on(ip: IpAddr) -> anyhow::Result<Config> {
    let mut c = config()?;
    for l in &mut c.listeners {
        l.listen.set_ip(ip);
    }
    if let Some(admin) = &mut c.admin {
        admin.listen.set_ip(ip);
        admin.allow_unauthenticated = !ip.is_loopback();
    }
    Ok(c)
}

/// Starts one demo backend per backend address in `config`; each answers every
/// HTTP request with which backend it is.
pub fn start_backends(config: &Config) -> anyhow::Result<Vec<SocketAddr>> {
    let mut started = Vec::new();
    for (i, b) in config.pools.iter().flat_map(|p| &p.backends).enumerate() {
        let listener = TcpListener::bind(b.addr).with_context(|| {
            format!(
                "demo backend {} cannot listen on {} (is something else using that port?)",
                i + 1,
                b.addr
            )
        })?;
        let name = format!("demo backend {} ({})", i + 1, b.addr);
        std::thread::Builder::new()
            .name(format!("demo-backend-{}", i + 1))
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    let name = name.clone();
                    let _ = std::thread::Builder::new()
                        .name("demo-conn".into())
                        .spawn(move || serve(stream, &name));
                }
            })?;
        started.push(b.addr);
    }
    Ok(started)
}

/// Answers HTTP/1.1 requests on one connection until the client closes it.
fn serve(stream: TcpStream, name: &str) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let mut close = request_line.contains("HTTP/1.0");
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let lower = line.to_ascii_lowercase();
            if lower.starts_with("connection:") {
                close = lower.contains("close");
            }
            if line == "\r\n" || line == "\n" {
                break;
            }
        }
        let body = format!("Hello from {name}\n");
        write!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nX-Backend: {name}\r\n{}\r\n{body}",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        )?;
        if close {
            return Ok(());
        }
    }
}

/// The banner `spliced demo` prints once everything listens.
pub fn banner(bound: &crate::control::Bound) -> String {
    let lb = bound
        .listeners
        .first()
        .map(|(_, a)| a.to_string())
        .unwrap_or_default();
    let mut s = String::new();
    s.push_str("\nspliced demo is running: three demo backends behind a round-robin pool.\n\n");
    s.push_str("Try it:\n");
    s.push_str(&format!(
        "  curl http://{lb}/          # run it a few times: the backend changes\n"
    ));
    if let Some((_, https)) = bound
        .listeners
        .iter()
        .find(|(name, _)| name == "demo-https")
    {
        s.push_str(&format!(
            "  curl -k https://{https}/   # HTTPS, TLS terminated by spliced (self-signed: -k)\n"
        ));
        s.push_str(&format!(
            "  curl -k --http2 -sI https://{https}/ | head -1   # HTTP/2\n"
        ));
    }
    if let Some(admin) = bound.admin {
        s.push_str(&format!(
            "  curl http://{admin}/metrics   # Prometheus metrics\n"
        ));
        s.push_str(&format!("  dashboard / admin: http://{admin}/\n"));
    }
    s.push_str("\nNext: run it in front of your own service with a config file:\n");
    s.push_str("  spliced check -c conf/example.yaml\n  spliced run -c conf/example.yaml\n\nCtrl-C stops it gracefully.\n");
    s
}

/// [`generate_load`] in the shape the control plane takes as its
/// `LoadGenerator` hook.
pub fn load_generator(
    addr: SocketAddr,
    duration: Duration,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(generate_load(addr, duration))
}

/// Generates light, varied traffic to the demo listener for `duration`, so
/// the dashboard has something to show: a few keep-alive clients and a trickle
/// of new connections, on the control thread's runtime.
pub async fn generate_load(addr: SocketAddr, duration: Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deadline = tokio::time::Instant::now() + duration;
    let client = |keep_alive: bool, pause: Duration| async move {
        while tokio::time::Instant::now() < deadline {
            let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            let requests = if keep_alive { 20 } else { 1 };
            for i in 0..requests {
                let last = i + 1 == requests;
                let req = format!(
                    "GET /load HTTP/1.1\r\nHost: demo\r\n{}\r\n",
                    if last { "Connection: close\r\n" } else { "" }
                );
                if s.write_all(req.as_bytes()).await.is_err() {
                    break;
                }
                let mut buf = [0u8; 1024];
                if matches!(s.read(&mut buf).await, Ok(0) | Err(_)) {
                    break;
                }
                tokio::time::sleep(pause).await;
            }
        }
    };
    let mut tasks = Vec::new();
    for i in 0..4u64 {
        tasks.push(tokio::spawn(client(
            i % 2 == 0,
            Duration::from_millis(40 + 30 * i),
        )));
    }
    for t in tasks {
        let _ = t.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_moves_the_listeners_and_the_admin_api_but_not_the_backends() {
        let ip: IpAddr = "0.0.0.0".parse().unwrap();
        let (plain, moved) = (config().unwrap(), config_on(ip).unwrap());
        for (a, b) in plain.listeners.iter().zip(&moved.listeners) {
            assert_eq!(b.listen, SocketAddr::new(ip, a.listen.port()));
        }
        let admin = moved.admin.as_ref().unwrap();
        assert_eq!(admin.listen, SocketAddr::new(ip, 9090));
        assert!(
            admin.allow_unauthenticated,
            "the flag is the operator's say-so"
        );
        assert_eq!(
            plain.pools[0]
                .backends
                .iter()
                .map(|b| b.addr)
                .collect::<Vec<_>>(),
            moved.pools[0]
                .backends
                .iter()
                .map(|b| b.addr)
                .collect::<Vec<_>>(),
            "the demo backends stay on loopback"
        );
        let loopback = config_on("127.0.0.2".parse().unwrap()).unwrap();
        assert!(!loopback.admin.unwrap().allow_unauthenticated);
    }
}
