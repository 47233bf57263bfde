//! The store a listener's `ServerConfig` resolves certificates from, swappable
//! while it runs: the current [`CertStore`] sits behind an `ArcSwap`, so a
//! handshake reads it without a lock and a reload replaces it whole for new
//! handshakes only (a connection keeps the `CertifiedKey` it was given). Also
//! the cheap "did the files change?" probe a file watch polls. Never reads a
//! socket; reloads run on the control thread.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::store::{CertInfo, CertStore};
use super::TlsError;
use crate::config::model::TlsStoreConfig;

/// What a successful reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    /// The store's certificates now.
    pub certs: Vec<CertInfo>,
    /// Whether the set of served certificates (by fingerprint) or their
    /// names changed; `false`: the files were rewritten with the same content.
    pub changed: bool,
}

/// A file's identity and version: a rewrite changes mtime or size, a rename
/// over it or a symlink swap changes the device or inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    mtime_sec: i64,
    mtime_nsec: i64,
    size: u64,
}

/// One configured path as last seen: where it resolved to, and the stamp of
/// that target (`None` when it could not be resolved or stat'ed).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    path: PathBuf,
    target: Option<(PathBuf, Stamp)>,
}

fn see(path: &Path) -> Seen {
    // Canonicalize each time: with Kubernetes' `cert.pem -> ..data/cert.pem`,
    // `..data -> ..2026_12_04_xx`, the swap changes where the path leads.
    let target = std::fs::canonicalize(path).ok().and_then(|real| {
        let m = std::fs::metadata(&real).ok()?;
        let stamp = Stamp {
            dev: m.dev(),
            ino: m.ino(),
            mtime_sec: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
            size: m.size(),
        };
        Some((real, stamp))
    });
    Seen {
        path: path.to_owned(),
        target,
    }
}

fn see_all(cfg: &TlsStoreConfig) -> Vec<Seen> {
    let mut paths: Vec<&Path> = Vec::new();
    for f in &cfg.certs {
        for p in [f.cert.as_path(), f.key.as_path()] {
            if !paths.contains(&p) {
                paths.push(p);
            }
        }
    }
    paths.into_iter().map(see).collect()
}

/// A certificate store that can be reloaded under running listeners; the
/// `rustls::ServerConfig` of every listener using it holds it as resolver.
pub struct ReloadableStore {
    current: ArcSwap<CertStore>,
    /// The files as they were when last read (by the load or the latest
    /// reload attempt, failed or not), for [`ReloadableStore::files_changed`].
    seen: Mutex<Vec<Seen>>,
}

impl std::fmt::Debug for ReloadableStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadableStore")
            .field("store", &self.current.load().name())
            .finish_non_exhaustive()
    }
}

impl ReloadableStore {
    /// Loads the store (logging its notes, as [`CertStore::load`]).
    pub fn load(cfg: &TlsStoreConfig) -> Result<Arc<ReloadableStore>, TlsError> {
        // Stamp before reading: a change in between is then seen as a change
        // (one extra reload) rather than missed.
        let seen = see_all(cfg);
        let store = CertStore::load(cfg)?;
        Ok(Arc::new(ReloadableStore {
            current: ArcSwap::from_pointee(store),
            seen: Mutex::new(seen),
        }))
    }

    /// Re-reads the store's files (and takes `cfg`'s changes) and swaps the
    /// result in for new handshakes; on error nothing changes. The
    /// self-signed certificate is kept while its names stay the same.
    pub fn reload(&self, cfg: &TlsStoreConfig) -> Result<ReloadReport, TlsError> {
        self.prepare(cfg).map(Staged::commit)
    }

    /// The first half of [`ReloadableStore::reload`]: reads the files (and
    /// takes `cfg`'s changes) without serving them yet, so a config reload
    /// can read every store before it swaps any. Dropping the result
    /// changes nothing.
    pub fn prepare(&self, cfg: &TlsStoreConfig) -> Result<Staged<'_>, TlsError> {
        let seen = see_all(cfg);
        // WHY: recorded even when the load fails, so a watch polling
        // files_changed reports a broken file once, not on every poll, and
        // fires again when the file is fixed.
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = seen;
        let old = self.current.load_full();
        let (store, notes) = CertStore::load_quiet(cfg, Some(&old))?;
        for note in &notes {
            note.log(&cfg.name);
        }
        Ok(Staged {
            target: self,
            old,
            store,
        })
    }

    /// Whether any cert or key file now resolves to a different file, or the
    /// file it resolves to has a different device, inode, mtime or size,
    /// since it was last read. Cheap (a canonicalize and a stat per file):
    /// meant to be polled every second or so.
    pub fn files_changed(&self) -> bool {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.iter().any(|s| see(&s.path) != *s)
    }

    /// The store now serving new handshakes.
    pub fn current(&self) -> Arc<CertStore> {
        self.current.load_full()
    }

    /// The current store's certificates (for metrics and the admin API).
    pub fn certs(&self) -> Vec<CertInfo> {
        self.current.load().certs()
    }

    /// Whether a handshake with this SNI would get a certificate; a listener
    /// that peeks the ClientHello (`rustls::server::Acceptor`, tokio-rustls'
    /// `LazyConfigAcceptor`) answers `false` with
    /// [`super::UNRECOGNIZED_NAME_ALERT`] instead of continuing.
    pub fn accepts(&self, sni: Option<&str>) -> bool {
        self.current.load().accepts(sni)
    }
}

/// A store's files read by [`ReloadableStore::prepare`], not serving yet.
pub struct Staged<'a> {
    target: &'a ReloadableStore,
    old: Arc<CertStore>,
    store: CertStore,
}

impl Staged<'_> {
    /// Serves the staged certificates for new handshakes from now on.
    pub fn commit(self) -> ReloadReport {
        let certs = self.store.certs();
        let changed = certs != self.old.certs();
        self.target.current.store(Arc::new(self.store));
        ReloadReport { certs, changed }
    }
}

impl ResolvesServerCert for ReloadableStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // rustls answers `None` with a fatal access_denied alert.
        self.current.load().resolve(hello.server_name())
    }
}
