//! The control thread: everything slow or blocking. It binds the listeners,
//! publishes the snapshot, starts the workers, serves the admin API, and turns
//! signals into a graceful shutdown (SIGTERM/SIGINT: stop accepting, let open
//! connections finish until `shutdown_timeout`, then close them; a second
//! signal exits at once). It is the only writer of the snapshot and never runs
//! on a worker's thread.

pub mod admin;
pub mod health;
pub mod reload;
pub mod snapshot;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};

use crate::config::Config;
use crate::dataplane::{self, Shared};
use crate::log;
use crate::uring::{sys, Ring};
use snapshot::Snapshot;

/// State the admin API reads.
pub struct State {
    pub shared: Arc<Shared>,
    /// Every listener is bound and the first snapshot is published.
    pub ready: AtomicBool,
    pub reloads_ok: AtomicU64,
    pub reloads_error: AtomicU64,
}

/// What `run` reports once it is listening (for the demo's banner).
#[derive(Debug, Clone)]
pub struct Bound {
    pub listeners: Vec<(String, SocketAddr)>,
    pub admin: Option<SocketAddr>,
}

/// Runs spliced with `config` (read from `path`, which SIGHUP re-reads; `None`
/// for the built-in demo) until a graceful shutdown completes. `on_ready` runs
/// once every listener is bound.
pub fn run(
    mut config: Config,
    path: Option<std::path::PathBuf>,
    on_ready: impl FnOnce(&Bound),
) -> anyhow::Result<()> {
    sys::ignore_sigpipe();
    Ring::probe()?;
    let (soft, hard) = sys::raise_nofile_limit();
    let workers = config.workers;
    let snapshot = Snapshot::build(&config, workers, None);
    let (sockets, addrs) = dataplane::bind_listeners(&config.listeners, workers)?;
    let shared = Arc::new(Shared::new(snapshot, workers));
    let state = Arc::new(State {
        shared: shared.clone(),
        ready: AtomicBool::new(false),
        reloads_ok: AtomicU64::new(1),
        reloads_error: AtomicU64::new(0),
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the control thread's runtime")?;
    rt.block_on(async move {
        let admin = match &config.admin {
            Some(a) => {
                let listener = admin::bind(a.listen).await.with_context(|| {
                    format!("admin: cannot listen on {} (change admin.listen)", a.listen)
                })?;
                let addr = listener.local_addr()?;
                tokio::spawn(admin::serve(state.clone(), listener));
                Some(addr)
            }
            None => None,
        };

        // Before anything is announced: a signal that arrives as soon as we say
        // we are up must find its handler, not the default action.
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sighup = signal(SignalKind::hangup())?;
        tokio::spawn(health::supervise(shared.clone()));

        let (exit_tx, mut exit_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let handles = dataplane::spawn_workers(&shared, sockets, move || {
            let _ = exit_tx.send(());
        })
        .context("cannot start worker threads")?;

        for (l, addr) in config.listeners.iter().zip(&addrs) {
            log::info("listening", &[("listener", &l.name), ("addr", addr)]);
        }
        if let Some(addr) = admin {
            log::info("admin listening", &[("addr", &addr)]);
        }
        log::info(
            "spliced started",
            &[("version", &env!("CARGO_PKG_VERSION")), ("workers", &workers), ("nofile", &format!("{soft}/{hard}"))],
        );
        state.ready.store(true, Ordering::Release);
        on_ready(&Bound {
            listeners: config.listeners.iter().map(|l| l.name.clone()).zip(addrs.iter().copied()).collect(),
            admin,
        });

        let mut alive = handles.len();
        let mut deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
        let wake_all = || handles.iter().for_each(|h| h.wake());
        while alive > 0 {
            let drain_deadline = async {
                match deadline.as_mut() {
                    Some(d) => d.as_mut().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = exit_rx.recv() => {
                    alive -= 1;
                    // One worker ending (error or drain) drains the others too.
                    if !shared.draining.swap(true, Ordering::AcqRel) {
                        wake_all();
                    }
                }
                _ = sighup.recv() => {
                    match &path {
                        Some(p) => {
                            let _ = reload::reload_file(&state, &mut config, p);
                        }
                        None => log::warn("SIGHUP ignored: this configuration is built in, there is no file to re-read", &[]),
                    }
                }
                _ = drain_deadline => {
                    log::warn("shutdown timeout reached: closing the remaining connections", &[("shutdown_timeout", &format!("{:?}", config.shutdown_timeout))]);
                    shared.abort.store(true, Ordering::Release);
                    deadline = None;
                    wake_all();
                }
                _ = async { tokio::select! { _ = sigterm.recv() => {}, _ = sigint.recv() => {} } } => {
                    if shared.draining.swap(true, Ordering::AcqRel) && deadline.is_some() {
                        log::warn("second signal: exiting now", &[]);
                        std::process::exit(130);
                    }
                    log::info("shutting down: no new connections; waiting for open ones", &[("shutdown_timeout", &format!("{:?}", config.shutdown_timeout))]);
                    deadline = Some(Box::pin(tokio::time::sleep(config.shutdown_timeout)));
                    wake_all();
                }
            }
        }
        for h in handles {
            let _ = h.thread.join();
        }
        log::info("spliced stopped", &[]);
        anyhow::Ok(())
    })
}
