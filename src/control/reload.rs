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
use crate::config::{self, Change, ChangeSet, Config, Setting};
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
    #[error("tls: {0}; nothing was changed")]
    Tls(#[from] crate::tls::TlsError),
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

/// The settings of `changes` a running process cannot take, said with
/// their old and new values; `None` when it can take them all.
fn restart_needed(old: &Config, new: &Config, changes: &ChangeSet) -> Option<String> {
    let said: Vec<String> = changes
        .needs_restart()
        .into_iter()
        .map(|setting| match setting {
            Setting::Workers => {
                format!("`workers` changed from {} to {}", old.workers, new.workers)
            }
            // WHY: the table is allocated once and shared by every worker;
            // swapping it under them would drop every client's limit state.
            Setting::LimitsTableSize => format!(
                "`limits_table_size` changed from {} to {}",
                old.limits_table_size, new.limits_table_size
            ),
            other => format!("`{}` changed", other.key()),
        })
        .collect();
    (!said.is_empty()).then(|| said.join(", "))
}

/// Applies `new` in place of the running config, or explains why not: checks
/// it whole, computes what changed ([`ChangeSet::between`]) and executes
/// that: binds added and moved listeners (all before publishing), publishes
/// one snapshot (health and counters carry over for backends that stay),
/// then stops the removed listeners' accepts.
pub fn apply(state: &State, new: Config) -> Result<(), ReloadError> {
    let mut inner = state.inner();
    // The file's rules again, now also against the addresses the listeners
    // really got: an API mutation builds its config without `validate`.
    let own: Vec<_> = inner
        .listeners
        .iter()
        .map(|l| l.addr)
        .chain(state.admin_bound.get().copied())
        .collect();
    new.check_with(&own)?;
    let changes = ChangeSet::between(&inner.config, &new);
    if let Some(why) = restart_needed(&inner.config, &new, &changes) {
        return Err(ReloadError::NeedsRestart(why));
    }
    let token = read_token(&new).map_err(ReloadError::Token)?;
    let workers = new.workers;

    // Listeners: added or moved ones get new sockets, the rest keep theirs.
    let rebound = |n: usize| {
        changes.listeners.iter().any(|c| match c {
            Change::Added(i) => *i == n,
            Change::Changed { new, diff, .. } => *new == n && diff.rebind,
            Change::Removed(_) => false,
        })
    };
    let mut bound = Vec::with_capacity(new.listeners.len());
    let mut added = Vec::new();
    let mut next_id = inner.next_listener_id;
    for (n, l) in new.listeners.iter().enumerate() {
        let kept = (!rebound(n))
            .then(|| inner.listeners.iter().find(|b| b.name == l.name))
            .flatten();
        match kept {
            Some(b) => bound.push(b.clone()),
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
    // Every certificate file is read again (before anything is published:
    // a broken one changes nothing).
    let certs = match super::certs::prepare(Some(&old), &new) {
        Ok(certs) => certs,
        Err(e) => {
            state.tls_reloads.error.fetch_add(1, Ordering::Relaxed);
            return Err(e.into());
        }
    };
    let mut snapshot = Snapshot::build(&new, &ids, plane::counter_slots(workers), Some(&old));
    certs.commit(&mut snapshot);
    if !new.tls.is_empty() {
        state.tls_reloads.ok.fetch_add(1, Ordering::Relaxed);
    }
    state.shared.snapshot.store(Arc::new(snapshot));
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
    log_pool_changes(&inner.config, &new, &changes);
    for warning in new.warnings() {
        log::warn(&warning, &[]);
    }
    inner.next_listener_id = next_id;
    inner.listeners = bound;
    inner.token = token;
    inner.config = new;
    Ok(())
}

/// One line per pool added, removed or changed, naming what changed.
fn log_pool_changes(old: &Config, new: &Config, changes: &ChangeSet) {
    for change in &changes.pools {
        match change {
            Change::Added(n) => log::info("pool added", &[("pool", &new.pools[*n].name)]),
            Change::Removed(o) => log::info("pool removed", &[("pool", &old.pools[*o].name)]),
            Change::Changed { new: n, diff, .. } => {
                let mut what: Vec<&str> = diff.fields.to_vec();
                if !diff.backends.is_empty() {
                    what.push("backends");
                }
                log::info(
                    "pool changed",
                    &[("pool", &new.pools[*n].name), ("changed", &what.join(","))],
                );
            }
        }
    }
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
    super::notify::reloading();
    let new = off_thread(move || config::load_file(&path).map_err(ReloadError::from)).await;
    let result = apply_and_report(state, new, &source);
    super::notify::reloaded(match &result {
        Ok(()) => "configuration reloaded",
        Err(_) => "reload refused; the running configuration is unchanged",
    });
    result
}
