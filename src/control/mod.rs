//! The control thread: everything slow or blocking. It binds the listeners,
//! publishes the snapshot, starts the workers, serves the admin API, runs the
//! health checks, reloads the config, and turns signals into a graceful
//! shutdown (SIGTERM/SIGINT: stop accepting, let open connections finish until
//! `shutdown_timeout`, then close them; a second signal exits at once). It is
//! the only writer of the snapshot and never runs on a worker's thread.

pub mod admin;
pub mod certs;
pub mod events;
pub mod health;
mod notify;
mod planes;
pub mod reload;
mod watch;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};

use crate::config::Config;
use crate::dataplane;
use crate::log;
use crate::plane::{self, Plane, Shared};
use crate::snapshot::Snapshot;
use crate::sys;
use events::EventLog;

/// A listener as bound: its stable id and the address the kernel gave it.
#[derive(Debug, Clone)]
pub struct BoundListener {
    pub id: u32,
    pub name: String,
    pub addr: SocketAddr,
}

/// The control thread's mutable state, behind one lock held only briefly and
/// never across an await.
pub struct Inner {
    pub config: Config,
    /// Parallel to `config.listeners`.
    pub listeners: Vec<BoundListener>,
    pub next_listener_id: u32,
    /// The admin token (from `admin.token_file`), if mutating calls need one.
    pub token: Option<String>,
    /// The running data plane (`None` before it starts).
    pub plane: Option<Box<dyn Plane>>,
}

/// State shared by the control thread's tasks (signals, admin API, health).
pub struct State {
    pub shared: Arc<Shared>,
    /// Every listener is bound and the first snapshot is published.
    pub ready: AtomicBool,
    pub reloads_ok: AtomicU64,
    pub reloads_error: AtomicU64,
    /// Certificate store reloads (config reloads and the file watch).
    pub tls_reloads: certs::ReloadCounts,
    pub started: Instant,
    /// The config file SIGHUP and `POST /api/v1/reload` re-read (`None`: built in).
    pub path: Option<PathBuf>,
    /// The demo's listener and load generator, when running `spliced demo`.
    pub demo: Option<(SocketAddr, LoadGenerator)>,
    pub events: EventLog,
    /// Every worker has ended: background threads (health) stop too.
    pub stopped: AtomicBool,
    /// The admin API's bound address (its port when configured as 0), so a
    /// backend pointing at it is refused like one pointing at a listener.
    pub admin_bound: std::sync::OnceLock<SocketAddr>,
    inner: Mutex<Inner>,
}

impl State {
    pub fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wake_workers(&self) {
        if let Some(plane) = &self.inner().plane {
            plane.wake();
        }
    }
}

/// What engine the L4 plane would run on here (for `spliced check`).
pub fn describe_dataplane(wanted: crate::config::Dataplane) -> String {
    dataplane::describe(wanted)
}

/// Reads the admin token file: its contents without surrounding whitespace.
pub fn read_token(config: &Config) -> anyhow::Result<Option<String>> {
    let Some(path) = config.admin.as_ref().and_then(|a| a.token_file.as_ref()) else {
        return Ok(None);
    };
    let token = std::fs::read_to_string(path)
        .with_context(|| format!("admin.token_file: cannot read {}", path.display()))?
        .trim()
        .to_string();
    anyhow::ensure!(
        !token.is_empty(),
        "admin.token_file: {} is empty",
        path.display()
    );
    Ok(Some(token))
}

/// What `run` reports once it is listening (for the demo's banner).
#[derive(Debug, Clone)]
pub struct Bound {
    pub listeners: Vec<(String, SocketAddr)>,
    pub admin: Option<SocketAddr>,
}

/// How `run` was started.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The config file (re-read on SIGHUP); `None` for a built-in config.
    pub path: Option<PathBuf>,
    /// Running the demo: the admin API may generate load with this against
    /// the first listener (the demo plugs it in; control does not know it).
    pub load_generator: Option<LoadGenerator>,
    /// Generate load from the start for this long.
    pub demo_load: Option<std::time::Duration>,
    /// Re-read the config file when it changes, as on SIGHUP.
    pub watch_config: bool,
    /// The engine from the command line (`--dataplane`), over the file's
    /// `dataplane:`.
    pub dataplane: Option<crate::config::Dataplane>,
}

/// Sends client traffic to a listener for a while: the demo's load generator,
/// handed in by `main` so the control plane does not depend on the demo.
pub type LoadGenerator = fn(
    SocketAddr,
    std::time::Duration,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Asks a running spliced to shut down gracefully, as SIGTERM does: stop
/// accepting, let open connections finish until `shutdown_timeout`. For
/// embedding spliced and running it in-process in tests.
#[derive(Debug, Clone, Default)]
pub struct Shutdown(Arc<tokio::sync::Notify>);

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Starts the graceful shutdown (a request before start-up is kept).
    pub fn request(&self) {
        self.0.notify_one();
    }
}

/// Runs spliced with `config` until a graceful shutdown completes (SIGTERM,
/// SIGINT). `on_ready` runs once every listener is bound.
pub fn run(
    config: Config,
    options: RunOptions,
    on_ready: impl FnOnce(&Bound),
) -> anyhow::Result<()> {
    run_with(config, options, Shutdown::new(), on_ready)
}

/// As [`run`], also shutting down when `shutdown` is requested.
pub fn run_with(
    config: Config,
    options: RunOptions,
    shutdown: Shutdown,
    on_ready: impl FnOnce(&Bound),
) -> anyhow::Result<()> {
    sys::ignore_sigpipe();
    let engine = dataplane::choose(options.dataplane.unwrap_or(config.dataplane))?;
    let (soft, hard) = sys::raise_nofile_limit();
    let workers = config.workers;
    let token = read_token(&config)?;
    let ids: Vec<u32> = (0..config.listeners.len() as u32).collect();
    let slots = plane::counter_slots(workers);
    let mut snapshot = Snapshot::build(&config, &ids, slots, None);
    certs::prepare(None, &config)
        .map_err(|e| anyhow::anyhow!("tls: {e}"))?
        .commit(&mut snapshot);
    let (sockets, addrs) = plane::bind_listeners(&config.listeners, &ids, workers)?;
    let shared = Arc::new(Shared::new(snapshot, slots, config.limits_table_size));
    let budget = dataplane::fd_budget(soft, workers, config.listeners.len());
    shared
        .conn_budget
        .store(budget.connections, Ordering::Relaxed);
    shared
        .pipes_per_worker
        .store(budget.pipes_per_worker, Ordering::Relaxed);
    let listeners: Vec<BoundListener> = config
        .listeners
        .iter()
        .zip(&ids)
        .zip(&addrs)
        .map(|((l, &id), &addr)| BoundListener {
            id,
            name: l.name.clone(),
            addr,
        })
        .collect();
    let mut shutdown_timeout = config.shutdown_timeout;
    let admin_listen = config.admin.as_ref().map(|a| a.listen);
    let state = Arc::new(State {
        shared: shared.clone(),
        ready: AtomicBool::new(false),
        reloads_ok: AtomicU64::new(0),
        reloads_error: AtomicU64::new(0),
        tls_reloads: certs::ReloadCounts::default(),
        started: Instant::now(),
        path: options.path.clone(),
        demo: options
            .load_generator
            .and_then(|generate| Some((addrs.first().copied()?, generate))),
        events: EventLog::default(),
        stopped: AtomicBool::new(false),
        admin_bound: std::sync::OnceLock::new(),
        inner: Mutex::new(Inner {
            config,
            listeners: listeners.clone(),
            next_listener_id: ids.len() as u32,
            token,
            plane: None,
        }),
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the control thread's runtime")?;
    rt.block_on(async move {
        // Before anything is announced: a signal that arrives as soon as we say
        // we are up must find its handler, not the default action.
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sighup = signal(SignalKind::hangup())?;

        let admin = match admin_listen {
            Some(listen) => {
                let listener = admin::bind(listen).await.with_context(|| {
                    format!("admin: cannot listen on {listen} (change admin.listen)")
                })?;
                let addr = listener.local_addr()?;
                let _ = state.admin_bound.set(addr);
                tokio::spawn(admin::serve(state.clone(), listener));
                Some(addr)
            }
            None => None,
        };
        // Health probes run on their own thread and runtime: a slow admin
        // request, config check or access-log write on this thread must not
        // delay marking a dead backend down.
        let health = health::start(state.clone()).context("cannot start the health-check thread")?;
        shared
            .access_log_on
            .store(state.inner().config.access_log.is_some(), Ordering::Relaxed);
        let writer = state.clone();
        tokio::spawn(async move {
            let wanted = || {
                (
                    writer.inner().config.access_log.clone(),
                    writer.reloads_ok.load(Ordering::Relaxed),
                )
            };
            crate::accesslog::run(crate::accesslog::Source {
                wanted: &wanted,
                on: &writer.shared.access_log_on,
                queues: &writer.shared.access_queues,
            })
            .await
        });

        let (exit_tx, mut exit_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let (l4_sockets, http_sockets) = planes::split_by_mode(&state.inner().config, sockets);
        let exits = planes::Exits::new(exit_tx);
        let planes = planes::Planes::start(
            &shared,
            engine,
            workers,
            l4_sockets,
            http_sockets,
            exits.clone(),
        )?;
        let engine = planes.engine();
        state.inner().plane = Some(Box::new(planes));

        for l in &listeners {
            log::info("listening", &[("listener", &l.name), ("addr", &l.addr)]);
        }
        for warning in state.inner().config.warnings() {
            log::warn(&warning, &[]);
        }
        if let Some(addr) = admin {
            log::info("admin listening", &[("addr", &addr)]);
            if !addr.ip().is_loopback() && state.inner().token.is_none() {
                log::warn(
                    "the admin API is reachable from other machines WITHOUT a token (admin.allow_unauthenticated): anyone who reaches it can change backends and the config; set admin.token_file",
                    &[("addr", &addr)],
                );
            }
        }
        log::info(
            "spliced started",
            &[
                ("version", &env!("CARGO_PKG_VERSION")),
                ("workers", &workers),
                ("engine", &engine),
                ("tls_provider", &crate::tls::provider_name()),
                ("nofile", &format!("{soft}/{hard}")),
                ("max_connections_by_fds", &budget.connections),
                ("fd_reserve", &budget.reserve),
                ("pipes_per_worker", &budget.pipes_per_worker),
            ],
        );
        state.ready.store(true, Ordering::Release);
        if !state.shared.snapshot.load().tls_stores.is_empty() {
            tokio::spawn(certs::watch(state.clone()));
        }
        if options.watch_config {
            tokio::spawn(watch::watch_config(state.clone()));
        }
        notify::ready(&format!("serving {} listener(s)", listeners.len()));
        if let (Some((addr, generate)), Some(d)) = (state.demo, options.demo_load) {
            tokio::spawn(generate(addr, d));
        }
        on_ready(&Bound {
            listeners: listeners.iter().map(|l| (l.name.clone(), l.addr)).collect(),
            admin,
        });

        let mut deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
        while exits.running() > 0 {
            let drain_deadline = async {
                match deadline.as_mut() {
                    Some(d) => d.as_mut().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = exit_rx.recv() => {
                    // One worker ending (error or drain) drains the others too.
                    if !shared.draining.swap(true, Ordering::AcqRel) {
                        state.wake_workers();
                    }
                }
                _ = sighup.recv() => {
                    match &state.path {
                        Some(_) => {
                            // On its own task: the select loop keeps taking
                            // signals while the file is checked.
                            let state = state.clone();
                            tokio::spawn(async move { reload::reload_file(&state).await });
                        }
                        None => log::warn("SIGHUP ignored: this configuration is built in, there is no file to re-read", &[]),
                    }
                }
                _ = drain_deadline => {
                    log::warn("shutdown timeout reached: closing the remaining connections", &[("shutdown_timeout", &format!("{shutdown_timeout:?}"))]);
                    shared.abort.store(true, Ordering::Release);
                    deadline = None;
                    state.wake_workers();
                }
                by_signal = async { tokio::select! { _ = sigterm.recv() => true, _ = sigint.recv() => true, _ = shutdown.0.notified() => false } } => {
                    if shared.draining.swap(true, Ordering::AcqRel) && deadline.is_some() {
                        if !by_signal {
                            // Asked again in-process: the drain is under way.
                            continue;
                        }
                        log::warn("second signal: exiting now", &[]);
                        std::process::exit(130);
                    }
                    notify::stopping();
                    // The value of the config running now: a reload may have changed it.
                    shutdown_timeout = state.inner().config.shutdown_timeout;
                    log::info("shutting down: no new connections; waiting for open ones", &[("shutdown_timeout", &format!("{shutdown_timeout:?}"))]);
                    deadline = Some(Box::pin(tokio::time::sleep(shutdown_timeout)));
                    state.wake_workers();
                }
            }
        }
        let plane = state.inner().plane.take();
        if let Some(plane) = plane {
            plane.join();
        }
        state.stopped.store(true, Ordering::Release);
        let _ = health.join();
        log::info("spliced stopped", &[]);
        anyhow::Ok(())
    })
}
