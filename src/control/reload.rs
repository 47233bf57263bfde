//! Applying a new configuration to the running process: validate → diff →
//! publish. The new config is checked whole first; an invalid one changes
//! nothing and is reported. Listeners that keep their name and address keep
//! their sockets; added ones are bound (every bind before anything is
//! published, so a failed bind changes nothing) and handed to the workers;
//! removed ones stop accepting while their connections run on. Pools and
//! backends are replaced by publishing a new snapshot; health, ejection state
//! and counters carry over for backends that stay.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::{read_token, BoundListener, State};
use crate::config::{self, Config};
use crate::log;
use crate::plane::{self, BindError};
use crate::snapshot::Snapshot;

/// Why a new configuration was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("invalid configuration:\n{0}")]
    Invalid(#[from] config::ConfigErrors),
    #[error("{0} (restart spliced to apply it); nothing was changed")]
    NeedsRestart(String),
    #[error("{0}; nothing was changed")]
    Bind(#[from] BindError),
    #[error("{0:#}; nothing was changed")]
    Token(anyhow::Error),
    #[error("there is no config file to re-read (the configuration is built in)")]
    NoFile,
    #[error("the config check failed unexpectedly ({0}); nothing was changed")]
    CheckFailed(String),
    #[error("checking the configuration took longer than {0:?} (slow DNS for a backend hostname?); nothing was changed")]
    TooSlow(Duration),
}

/// How long a config check (parse, validate, resolve hostnames) may take
/// before the caller is told so. The check itself cannot be interrupted, but
/// it runs on a blocking thread, so the control thread answers meanwhile.
pub const CHECK_DEADLINE: Duration = Duration::from_secs(15);

/// Runs `check` (parsing, validation, DNS: anything that may take long) on a
/// blocking thread, so `/ready`, `/metrics`, signals and the rest of the
/// admin API keep answering while it runs; gives up waiting after
/// [`CHECK_DEADLINE`].
pub async fn off_thread<T: Send + 'static>(
    check: impl FnOnce() -> Result<T, ReloadError> + Send + 'static,
) -> Result<T, ReloadError> {
    match tokio::time::timeout(CHECK_DEADLINE, tokio::task::spawn_blocking(check)).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => Err(ReloadError::CheckFailed(join.to_string())),
        Err(_) => Err(ReloadError::TooSlow(CHECK_DEADLINE)),
    }
}

/// What about `new` cannot be applied to a running process, if anything.
pub fn restart_needed(old: &Config, new: &Config) -> Option<String> {
    if old.workers != new.workers {
        return Some(format!(
            "`workers` changed from {} to {}",
            old.workers, new.workers
        ));
    }
    if old.admin.as_ref().map(|a| a.listen) != new.admin.as_ref().map(|a| a.listen) {
        return Some("`admin.listen` changed".to_string());
    }
    if old.limits_table_size != new.limits_table_size {
        // WHY: the table is allocated once and shared by every worker;
        // swapping it under them would drop every client's limit state.
        return Some(format!(
            "`limits_table_size` changed from {} to {}",
            old.limits_table_size, new.limits_table_size
        ));
    }
    None
}

/// Applies `new` in place of the running config, or explains why not.
pub fn apply(state: &State, new: Config) -> Result<(), ReloadError> {
    let mut inner = state.inner();
    // The file's rules again, now also against the addresses the listeners
    // really got: an API mutation builds its config without `validate`.
    let bound: Vec<_> = inner
        .listeners
        .iter()
        .map(|l| l.addr)
        .chain(state.admin_bound.get().copied())
        .collect();
    new.check_with(&bound)?;
    if let Some(why) = restart_needed(&inner.config, &new) {
        return Err(ReloadError::NeedsRestart(why));
    }
    let token = read_token(&new).map_err(ReloadError::Token)?;
    let workers = new.workers;

    // Diff listeners: same name, address and backlog = unchanged.
    let mut bound = Vec::with_capacity(new.listeners.len());
    let mut added = Vec::new();
    let mut next_id = inner.next_listener_id;
    for l in &new.listeners {
        let kept = inner
            .config
            .listeners
            .iter()
            .position(|o| o.name == l.name && o.listen == l.listen && o.backlog == l.backlog);
        match kept {
            Some(i) => bound.push(inner.listeners[i].clone()),
            None => {
                let (sockets, addr) = plane::bind_listener(l, workers)?;
                bound.push(BoundListener {
                    id: next_id,
                    name: l.name.clone(),
                    addr,
                });
                added.push((next_id, sockets));
                next_id += 1;
            }
        }
    }
    let removed: Vec<BoundListener> = inner
        .listeners
        .iter()
        .filter(|o| !bound.iter().any(|b| b.id == o.id))
        .cloned()
        .collect();

    // Publish.
    let ids: Vec<u32> = bound.iter().map(|b| b.id).collect();
    let old = state.shared.snapshot.load_full();
    state
        .shared
        .snapshot
        .store(Arc::new(Snapshot::build(&new, &ids, workers, Some(&old))));
    for (id, sockets) in added {
        if let Some(plane) = &inner.plane {
            plane.listen(id, sockets);
        }
        if let Some(b) = bound.iter().find(|b| b.id == id) {
            log::info("listening", &[("listener", &b.name), ("addr", &b.addr)]);
        }
    }
    for r in &removed {
        if let Some(plane) = &inner.plane {
            plane.unlisten(r.id);
        }
        log::info(
            "listener removed; its open connections run on",
            &[("listener", &r.name), ("addr", &r.addr)],
        );
    }
    for warning in new.warnings() {
        log::warn(&warning, &[]);
    }
    inner.next_listener_id = next_id;
    inner.listeners = bound;
    inner.token = token;
    inner.config = new;
    Ok(())
}

/// Applies `new`, counting and logging the outcome as a reload from `source`.
pub fn apply_and_report(
    state: &State,
    new: Result<Config, ReloadError>,
    source: &str,
) -> Result<(), ReloadError> {
    let result = new.and_then(|c| apply(state, c));
    match &result {
        Ok(()) => {
            state.reloads_ok.fetch_add(1, Ordering::Relaxed);
            state.events.push(
                "",
                "",
                "reload",
                format!("configuration reloaded from {source}"),
            );
            log::info("configuration reloaded", &[("source", &source)]);
        }
        Err(e) => {
            state.reloads_error.fetch_add(1, Ordering::Relaxed);
            log::error(
                "configuration reload failed; the running configuration is unchanged",
                &[("source", &source), ("error", e)],
            );
        }
    }
    result
}

/// Re-reads the config file and applies it (SIGHUP, `POST /api/v1/reload`).
/// The file is read and checked off the control thread.
pub async fn reload_file(state: &State) -> Result<(), ReloadError> {
    let Some(path) = state.path.clone() else {
        return Err(ReloadError::NoFile);
    };
    let source = path.display().to_string();
    let new = off_thread(move || config::load_file(&path).map_err(ReloadError::from)).await;
    apply_and_report(state, new, &source)
}
