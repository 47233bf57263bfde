//! A real HTTP backend for the HTTP-mode tests: hyper serving HTTP/1.1 and
//! h2c (prior knowledge) on 127.0.0.1:0 from its own thread. Each answer
//! describes the request it got (`backend: NAME`, the request line, every
//! header), so tests can see what spliced forwarded; it counts requests and
//! TCP connections. Paths: `/delay/MS` answers after MS milliseconds,
//! `/status/CODE` answers with CODE, `/bytes/N` returns N bytes.

#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};

pub struct HttpBackend {
    pub addr: SocketAddr,
    name: &'static str,
    pub requests: Arc<AtomicU64>,
    pub connections: Arc<AtomicU64>,
    /// Requests seen per HTTP version ("HTTP/1.1", "HTTP/2.0").
    pub h2_requests: Arc<AtomicU64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl HttpBackend {
    pub fn start(name: &'static str) -> HttpBackend {
        HttpBackend::start_with(name, None)
    }

    /// The same backend behind TLS (its certificate and ALPN from `tls`).
    pub fn start_tls(name: &'static str, tls: Arc<rustls::ServerConfig>) -> HttpBackend {
        HttpBackend::start_with(name, Some(tls))
    }

    fn start_with(name: &'static str, tls: Option<Arc<rustls::ServerConfig>>) -> HttpBackend {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let requests = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicU64::new(0));
        let h2_requests = Arc::new(AtomicU64::new(0));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let (r, c, h2) = (requests.clone(), connections.clone(), h2_requests.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                loop {
                    let (stream, _) = tokio::select! {
                        _ = &mut stopped => return,
                        accepted = listener.accept() => match accepted {
                            Ok(a) => a,
                            Err(_) => continue,
                        },
                    };
                    c.fetch_add(1, Ordering::Relaxed);
                    let (r, h2) = (r.clone(), h2.clone());
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            answer(name, r.clone(), h2.clone(), req)
                        });
                        let builder =
                            hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                        match tls {
                            None => {
                                let _ = builder
                                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                                    .await;
                            }
                            Some(tls) => {
                                let Ok(stream) =
                                    tokio_rustls::TlsAcceptor::from(tls).accept(stream).await
                                else {
                                    return;
                                };
                                let _ = builder
                                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                                    .await;
                            }
                        }
                    });
                }
            });
        });
        HttpBackend {
            addr,
            name,
            requests,
            connections,
            h2_requests,
            stop: Some(stop),
        }
    }

    /// The name it answers with (`backend: NAME`, `x-backend`).
    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }
}

impl Drop for HttpBackend {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn answer(
    name: &'static str,
    requests: Arc<AtomicU64>,
    h2_requests: Arc<AtomicU64>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    requests.fetch_add(1, Ordering::Relaxed);
    if req.version() == hyper::Version::HTTP_2 {
        h2_requests.fetch_add(1, Ordering::Relaxed);
    }
    let mut text = format!(
        "backend: {name}\n{} {} {:?}\n",
        req.method(),
        req.uri(),
        req.version()
    );
    for (k, v) in req.headers() {
        text.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("?")));
    }
    let path = req.uri().path().to_owned();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    text.push_str(&format!("body-bytes: {}\n", body.len()));
    let mut status = 200;
    let mut out = Bytes::from(text);
    if let Some(ms) = path.strip_prefix("/delay/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
    } else if let Some(code) = path.strip_prefix("/status/") {
        status = code.parse().unwrap_or(500);
    } else if let Some(n) = path.strip_prefix("/bytes/") {
        out = Bytes::from(vec![b'x'; n.parse().unwrap_or(0)]);
    }
    let mut resp = Response::new(Full::new(out));
    *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    resp.headers_mut()
        .insert("x-backend", hyper::header::HeaderValue::from_static(name));
    // A hop-by-hop header the proxy must not pass on.
    resp.headers_mut().insert(
        "keep-alive",
        hyper::header::HeaderValue::from_static("timeout=5"),
    );
    Ok(resp)
}
