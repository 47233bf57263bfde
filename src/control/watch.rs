//! Re-reading the config file when it changes (`spliced run --watch`), for
//! where sending SIGHUP is awkward: a Kubernetes ConfigMap volume (the file
//! is a symlink through `..data`, swapped to a new directory on update), or
//! a tool that replaces the file by rename. A change is applied exactly as a
//! SIGHUP would: a bad file changes nothing and is logged and counted.
//!
//! WHY polling rather than inotify: a ConfigMap update swaps a symlink two
//! levels up, which an inotify watch on the file never sees; comparing what
//! the path resolves to (device, inode, size, modification time) twice a
//! second catches renames, symlink swaps and edits in place alike, for one
//! `stat` per poll.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::{reload, State};

/// How often the file is looked at.
const POLL: Duration = Duration::from_millis(500);

/// What the path resolves to now; `None` while it cannot be read (between
/// the steps of a swap).
fn fingerprint(path: &Path) -> Option<(u64, u64, u64, i64, i64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.dev(), m.ino(), m.len(), m.mtime(), m.mtime_nsec()))
}

/// Watches `state.path` until the runtime stops. A change is applied once
/// the file has held still for one poll, so a writer that is not done yet
/// is not read half-way.
pub async fn watch_config(state: Arc<State>) {
    let Some(path) = state.path.clone() else {
        return;
    };
    let mut applied = fingerprint(&path);
    let mut seen = applied;
    loop {
        tokio::time::sleep(POLL).await;
        let now = fingerprint(&path);
        if now.is_some() && now != applied && now == seen {
            applied = now;
            let _ = reload::reload_file(&state).await;
        }
        seen = now;
    }
}
