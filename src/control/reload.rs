//! Configuration reload (SIGHUP): validate → diff → publish. The new config is
//! checked whole first; an invalid one changes nothing and is reported. Pools
//! and backends are replaced by publishing a new snapshot (health, ejection
//! state and counters carry over for backends that stay); listener sockets
//! belong to the workers, so a change to the listeners themselves is refused
//! for now with a message saying a restart applies it.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::snapshot::Snapshot;
use super::State;
use crate::config::{self, Config};
use crate::log;

/// Why a reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("invalid configuration:\n{0}")]
    Invalid(#[from] config::ConfigErrors),
    #[error("{0} (restart spliced to apply it); nothing was changed")]
    NeedsRestart(String),
}

/// What about `new` cannot be applied to a running process, if anything.
pub fn restart_needed(old: &Config, new: &Config) -> Option<String> {
    if old.workers != new.workers {
        return Some(format!(
            "`workers` changed from {} to {}",
            old.workers, new.workers
        ));
    }
    if old.admin != new.admin {
        return Some("the `admin` section changed".to_string());
    }
    let names = |c: &Config| {
        c.listeners
            .iter()
            .map(|l| l.name.clone())
            .collect::<Vec<_>>()
    };
    if names(old) != names(new) {
        return Some(format!(
            "listeners were added, removed or reordered ({:?} → {:?})",
            names(old),
            names(new)
        ));
    }
    for (o, n) in old.listeners.iter().zip(&new.listeners) {
        if o.listen != n.listen || o.backlog != n.backlog {
            return Some(format!(
                "listener {:?} changed its `listen` or `backlog`",
                o.name
            ));
        }
    }
    None
}

/// Applies `new` in place of `current`, or explains why not.
pub fn apply(state: &State, current: &mut Config, new: Config) -> Result<(), ReloadError> {
    if let Some(why) = restart_needed(current, &new) {
        return Err(ReloadError::NeedsRestart(why));
    }
    let shared = &state.shared;
    let old = shared.snapshot.load_full();
    let next = Snapshot::build(&new, new.workers, Some(&old));
    shared.snapshot.store(Arc::new(next));
    *current = new;
    Ok(())
}

/// Re-reads `path` and applies it; logs and counts the outcome.
pub fn reload_file(state: &State, current: &mut Config, path: &Path) -> Result<(), ReloadError> {
    let result = config::load_file(path)
        .map_err(ReloadError::from)
        .and_then(|new| apply(state, current, new));
    match &result {
        Ok(()) => {
            state.reloads_ok.fetch_add(1, Ordering::Relaxed);
            log::info("configuration reloaded", &[("file", &path.display())]);
        }
        Err(e) => {
            state.reloads_error.fetch_add(1, Ordering::Relaxed);
            log::error(
                "configuration reload failed; the running configuration is unchanged",
                &[("file", &path.display()), ("error", e)],
            );
        }
    }
    result
}
