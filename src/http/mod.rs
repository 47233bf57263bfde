//! The HTTP plane: `mode: http` listeners, which terminate TLS (rustls) and
//! proxy HTTP/1.1, HTTP/2 and WebSocket requests to pools, on one
//! current-thread tokio runtime per core (pinned like the L4 workers, each
//! with its own SO_REUSEPORT socket per listener). It reads the same
//! arc-swapped snapshot as the L4 plane — pools, balancers, health, drain,
//! limits — and writes its own per-worker counter slots.
//!
//! WHY tokio and hyper rather than the io_uring relay: an HTTP proxy's work
//! is parsing, header rewriting and connection reuse, which hyper and h2 do
//! well and which we must not write by hand; the runtime is current-thread so
//! nothing is shared between cores but the snapshot and atomics, and it runs
//! where io_uring is refused (default container seccomp profiles).
//!
//! Files: `worker` (threads, runtimes, accept loops, drain), `conn` (one
//! client connection: admission, TLS, hyper), `deadline` (its idle and
//! request-head timers), `proxy` (one request: route,
//! backend, retries), `route`, `headers` (forwarding headers, hop-by-hop,
//! smuggling checks), `upstream` (per-core backend connection pools),
//! `sticky` (a route's session cookie), `rate_limit` (a route's
//! per-request limits), `tunnel` (upgraded connections), `answer`
//! (responses spliced makes),
//! `logged` (the per-request access-log line).

mod answer;
mod conn;
mod deadline;
mod headers;
mod logged;
mod proxy;
mod rate_limit;
mod route;
mod sticky;
mod tunnel;
mod upstream;
mod worker;

use std::io;
use std::sync::Arc;

use hyper::body::Bytes;
use socket2::Socket;

use crate::plane::{Plane, Shared, WorkerSockets};

/// Errors carried by bodies in both directions.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type of every request and response the plane passes on.
pub(crate) type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// Runs hyper's background tasks (HTTP/2 streams, client connections) on
/// the worker's own thread: the runtime is current-thread and the proxy's
/// state is per worker (`Rc`), so nothing needs to be `Send`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct LocalExec;

impl<F> hyper::rt::Executor<F> for LocalExec
where
    F: std::future::Future + 'static,
{
    fn execute(&self, fut: F) {
        tokio::task::spawn_local(fut);
    }
}

/// The running HTTP plane.
pub struct HttpPlane {
    workers: Vec<worker::Handle>,
}

/// Starts one HTTP worker per entry of `sockets` (the `mode: http`
/// listeners' sockets, per worker), pinned to the allowed CPUs in turn; the
/// worker writes counter slot `slot_base + its index`. `on_exit` runs on
/// each worker thread as it ends.
pub fn start(
    shared: &Arc<Shared>,
    sockets: Vec<WorkerSockets>,
    slot_base: usize,
    on_exit: impl Fn() + Send + Sync + 'static,
) -> io::Result<HttpPlane> {
    let on_exit = Arc::new(on_exit);
    let workers = sockets
        .into_iter()
        .enumerate()
        .map(|(i, socks)| worker::spawn(shared.clone(), i, slot_base + i, socks, on_exit.clone()))
        .collect::<io::Result<Vec<_>>>()?;
    Ok(HttpPlane { workers })
}

impl Plane for HttpPlane {
    fn engine(&self) -> &'static str {
        "tokio"
    }

    fn listen(&self, id: u32, sockets: Vec<Socket>) {
        for (w, socket) in self.workers.iter().zip(sockets) {
            w.send(worker::Command::Listen { id, socket });
        }
    }

    fn unlisten(&self, id: u32) {
        for w in &self.workers {
            w.send(worker::Command::Unlisten { id });
        }
    }

    fn wake(&self) {
        self.workers.iter().for_each(worker::Handle::wake);
    }

    fn join(self: Box<Self>) {
        for w in self.workers {
            w.join();
        }
    }
}
