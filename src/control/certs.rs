//! The certificates of the running configuration: every `tls:` store is
//! loaded at start and read again on every reload — all of them read
//! before any is swapped in, so one broken file changes nothing — and each
//! HTTPS listener's rustls configuration is kept across reloads while its
//! TLS settings stay (its ticket keys and session cache survive). A file
//! watch reloads a store on its own when its files change (including a
//! Kubernetes `..data` symlink swap). Open connections keep the
//! certificate they were given.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;

use super::State;
use crate::config::{Config, ListenerTls, UpstreamProtocol};
use crate::log;
use crate::snapshot::{Snapshot, UpstreamTls};
use crate::tls::{self, ReloadableStore, Staged, TlsError};

/// How often the watch looks at the certificate files.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Certificate reloads by result, for `spliced_tls_reloads_total`.
#[derive(Debug, Default)]
pub struct ReloadCounts {
    pub ok: AtomicU64,
    pub error: AtomicU64,
}

/// A configuration's certificates, read but not yet serving.
pub struct Prepared<'a> {
    staged: Vec<Staged<'a>>,
    stores: Vec<Arc<ReloadableStore>>,
    /// Per listener of the new config: its store and rustls config.
    servers: Vec<Option<(Arc<ReloadableStore>, Arc<ServerConfig>)>>,
    /// Per pool: TLS to its backends.
    upstreams: Vec<Option<UpstreamTls>>,
}

/// Reads every store of `config`: the ones `old` already serves (by name)
/// are read again and staged, new ones loaded; builds each HTTPS listener's
/// rustls configuration (reusing `old`'s while nothing about it changed).
pub fn prepare<'a>(old: Option<&'a Snapshot>, config: &Config) -> Result<Prepared<'a>, TlsError> {
    let mut staged = Vec::new();
    let mut stores = Vec::with_capacity(config.tls.len());
    for cfg in &config.tls {
        let known = old.and_then(|s| s.tls_stores.iter().find(|t| t.current().name() == cfg.name));
        match known {
            Some(store) => {
                staged.push(store.prepare(cfg)?);
                stores.push(store.clone());
            }
            None => stores.push(ReloadableStore::load(cfg)?),
        }
    }
    let mut servers = Vec::with_capacity(config.listeners.len());
    for l in &config.listeners {
        let Some(tls) = l.http.as_ref().and_then(|h| h.tls.as_ref()) else {
            servers.push(None);
            continue;
        };
        let store = stores[tls.store].clone();
        let kept = old
            .and_then(|s| s.listeners.iter().find(|o| o.name == l.name))
            .filter(|o| same_tls(o.settings.http.as_ref().and_then(|h| h.tls.as_ref()), tls))
            .filter(|o| o.tls_store.as_ref().is_some_and(|s| Arc::ptr_eq(s, &store)))
            .and_then(|o| o.server_config.clone());
        let server = match kept {
            Some(server) => server,
            None => tls::server_config(&store, tls)?,
        };
        servers.push(Some((store, server)));
    }
    let mut upstreams = Vec::with_capacity(config.pools.len());
    for p in &config.pools {
        let tls = match &p.backend_tls {
            Some(tls) => {
                let alpn: &[&[u8]] = match p.protocol {
                    UpstreamProtocol::H2 | UpstreamProtocol::H2c => &[b"h2"],
                    UpstreamProtocol::Http1 => &[b"http/1.1"],
                };
                Some(UpstreamTls {
                    config: tls::client_config(tls, alpn)?,
                    sni: tls.sni.clone(),
                    id: {
                        use std::hash::{Hash, Hasher};
                        let mut h = std::collections::hash_map::DefaultHasher::new();
                        (&tls.sni, &tls.ca_file, tls.verify, alpn).hash(&mut h);
                        h.finish() | 1
                    },
                })
            }
            None => None,
        };
        upstreams.push(tls);
    }
    Ok(Prepared {
        staged,
        stores,
        servers,
        upstreams,
    })
}

fn same_tls(old: Option<&ListenerTls>, new: &ListenerTls) -> bool {
    old.is_some_and(|o| o.alpn == new.alpn && o.min_version == new.min_version)
}

impl Prepared<'_> {
    /// Serves the prepared certificates for new handshakes and attaches the
    /// stores and rustls configurations to `snapshot` (just built, not yet
    /// published).
    pub fn commit(self, snapshot: &mut Snapshot) {
        for staged in self.staged {
            let report = staged.commit();
            if report.changed {
                log_certs("certificates reloaded", &report.certs);
            }
        }
        snapshot.tls_stores = self.stores;
        for (pool, tls) in snapshot.pools.iter_mut().zip(self.upstreams) {
            pool.upstream_tls = tls;
        }
        for (listener, server) in snapshot.listeners.iter_mut().zip(self.servers) {
            if let (Some(l), Some((store, server))) = (Arc::get_mut(listener), server) {
                l.tls_store = Some(store);
                l.server_config = Some(server);
            }
        }
    }
}

fn log_certs(msg: &str, certs: &[tls::CertInfo]) {
    for c in certs {
        log::info(
            msg,
            &[
                ("names", &c.names.join(",")),
                (
                    "not_after",
                    &log::rfc3339(c.not_after_unix.max(0) as u64 * 1000),
                ),
                ("sha256", &c.fingerprint_sha256),
                ("source", &c.source),
            ],
        );
    }
}

/// What `spliced check` says about `config`'s certificates: one line per
/// certificate (names, expiry, fingerprint, source), or the first store that
/// cannot be loaded and why. An expired certificate is a warning.
pub fn check(config: &Config) -> Result<Vec<String>, String> {
    let now = crate::session::unix_ms() / 1000;
    let mut lines = Vec::new();
    for store in &config.tls {
        let certs = tls::check(store).map_err(|e| format!("tls {:?}: {e}", store.name))?;
        for c in certs {
            let expiry = log::rfc3339(c.not_after_unix.max(0) as u64 * 1000);
            let days = (c.not_after_unix - now as i64) / 86_400;
            let state = if c.not_after_unix <= now as i64 {
                "warning: EXPIRED".to_owned()
            } else {
                format!("expires in {days} day(s)")
            };
            lines.push(format!(
                "tls {:?}: {} ({}): valid until {expiry}, {state}, sha256 {}",
                store.name,
                c.names.join(", "),
                c.source,
                c.fingerprint_sha256
            ));
        }
    }
    Ok(lines)
}

/// Reloads a store whenever its files change, for as long as spliced runs.
pub async fn watch(state: Arc<State>) {
    let mut tick = tokio::time::interval(WATCH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !state.stopped.load(Ordering::Acquire) {
        tick.tick().await;
        let snapshot = state.shared.snapshot.load_full();
        let changed: Vec<Arc<ReloadableStore>> = snapshot
            .tls_stores
            .iter()
            .filter(|s| s.files_changed())
            .cloned()
            .collect();
        if changed.is_empty() {
            continue;
        }
        let configs = state.inner().config.tls.clone();
        for store in changed {
            let name = store.current().name().to_owned();
            let Some(cfg) = configs.iter().find(|c| c.name == name) else {
                continue;
            };
            match store.reload(cfg) {
                Ok(report) => {
                    state.tls_reloads.ok.fetch_add(1, Ordering::Relaxed);
                    log_certs("certificate files changed; reloaded", &report.certs);
                }
                Err(e) => {
                    state.tls_reloads.error.fetch_add(1, Ordering::Relaxed);
                    log::error(
                        "certificate files changed but cannot be loaded; still serving the previous certificates",
                        &[("store", &name), ("error", &e)],
                    );
                }
            }
        }
    }
}
