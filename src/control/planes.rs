//! The data planes, driven as one: the L4 plane (io_uring or epoll) for `mode: tcp`
//! listeners and the HTTP plane for `mode: http` ones. The HTTP plane's
//! workers start only when there is an HTTP listener (at start-up, or when a
//! reload adds the first one), so an L4-only balancer runs no extra threads.
//! Every worker thread reports its end, so the control thread knows when the
//! last one is gone however many were started.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use socket2::Socket;
use tokio::sync::mpsc::UnboundedSender;

use crate::config::Config;
use crate::dataplane;
use crate::log;
use crate::plane::{Plane, Shared, WorkerSockets};

/// Worker threads still running, and the control thread's wake-up when one
/// ends.
#[derive(Clone)]
pub(super) struct Exits {
    running: Arc<AtomicUsize>,
    tx: UnboundedSender<()>,
}

impl Exits {
    pub(super) fn new(tx: UnboundedSender<()>) -> Exits {
        Exits {
            running: Arc::new(AtomicUsize::new(0)),
            tx,
        }
    }

    pub(super) fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    /// Counts `n` threads about to start; returns what each runs as it ends.
    fn starting(&self, n: usize) -> impl Fn() + Send + Sync + 'static {
        self.running.fetch_add(n, Ordering::AcqRel);
        let (running, tx) = (self.running.clone(), self.tx.clone());
        move || {
            running.fetch_sub(1, Ordering::AcqRel);
            let _ = tx.send(());
        }
    }
}

pub(super) struct Planes {
    l4: Box<dyn Plane>,
    http: Mutex<Option<Box<dyn Plane>>>,
    shared: Arc<Shared>,
    workers: usize,
    exits: Exits,
}

impl Planes {
    /// Starts the L4 workers, and the HTTP workers if any listener needs them.
    pub(super) fn start(
        shared: &Arc<Shared>,
        engine: dataplane::Engine,
        workers: usize,
        l4_sockets: Vec<WorkerSockets>,
        http_sockets: Vec<WorkerSockets>,
        exits: Exits,
    ) -> anyhow::Result<Planes> {
        let l4 = dataplane::start(engine, shared, l4_sockets, exits.starting(workers))
            .context("cannot start worker threads")?;
        let planes = Planes {
            l4: Box::new(l4),
            http: Mutex::new(None),
            shared: shared.clone(),
            workers,
            exits,
        };
        if http_sockets.iter().any(|s| !s.is_empty()) {
            let http = planes
                .start_http(http_sockets)
                .context("cannot start the HTTP worker threads")?;
            *planes.http() = Some(http);
        }
        Ok(planes)
    }

    fn http(&self) -> std::sync::MutexGuard<'_, Option<Box<dyn Plane>>> {
        self.http.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn start_http(&self, sockets: Vec<WorkerSockets>) -> io::Result<Box<dyn Plane>> {
        let on_exit = self.exits.starting(sockets.len());
        let plane = crate::http::start(&self.shared, sockets, self.workers, on_exit)?;
        Ok(Box::new(plane))
    }
}
/// Each worker's listening sockets, split into the `mode: tcp` ones (the
/// L4 plane's) and the `mode: http` ones.
pub(super) fn split_by_mode(
    config: &Config,
    sockets: Vec<WorkerSockets>,
) -> (Vec<WorkerSockets>, Vec<WorkerSockets>) {
    let http_ids: Vec<u32> = config
        .listeners
        .iter()
        .enumerate()
        .filter(|(_, l)| l.http.is_some())
        .map(|(i, _)| i as u32)
        .collect();
    sockets
        .into_iter()
        .map(|socks| {
            socks
                .into_iter()
                .partition(|(id, _)| !http_ids.contains(id))
        })
        .unzip()
}

impl Plane for Planes {
    fn engine(&self) -> &'static str {
        self.l4.engine()
    }

    fn listen(&self, id: u32, sockets: Vec<Socket>) {
        // The snapshot naming the new listener is published before this call.
        let snapshot = self.shared.snapshot.load();
        let http = snapshot
            .listeners
            .iter()
            .any(|l| l.id == id && l.settings.http.is_some());
        if !http {
            return self.l4.listen(id, sockets);
        }
        let mut running = self.http();
        if running.is_none() {
            match self.start_http((0..self.workers).map(|_| Vec::new()).collect()) {
                Ok(plane) => *running = Some(plane),
                Err(e) => {
                    log::error(
                        "cannot start the HTTP worker threads; the new listener does not accept",
                        &[("error", &e)],
                    );
                    return;
                }
            }
        }
        if let Some(plane) = running.as_ref() {
            plane.listen(id, sockets);
        }
    }

    fn unlisten(&self, id: u32) {
        self.l4.unlisten(id);
        if let Some(plane) = self.http().as_ref() {
            plane.unlisten(id);
        }
    }

    fn wake(&self) {
        self.l4.wake();
        if let Some(plane) = self.http().as_ref() {
            plane.wake();
        }
    }

    fn join(self: Box<Self>) {
        let http = self.http().take();
        self.l4.join();
        if let Some(plane) = http {
            plane.join();
        }
    }
}
