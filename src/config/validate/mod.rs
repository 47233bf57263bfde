//! Turns a [`RawConfig`] into the typed [`Config`]: interprets every value
//! (through the kinds in `value`), fills in defaults, and checks the
//! cross-references (listener and SNI route → pool, unique names and
//! addresses, SNI routes that could never be chosen). It reports *all*
//! problems, each with its YAML path, the bad value and a fix.
//!
//! One file per section of the file (`top`, `admin`, `access_log`, `tls`,
//! `listener` and its `http` part, `limits`, `pool`, `backend`, `health`),
//! each written with the [`Fields`] reader: one line per key. This file only
//! orders them: pool and store names are gathered first so a listener's
//! `pool:` and `tls.store` can be resolved in file order.
//!
//! It must never read files or stop at the first error, and it does no I/O of
//! its own: resolving backend hostnames goes through the [`Resolve`] function
//! it is given, so tests and the fuzz target never touch DNS.

mod access_log;
mod admin;
mod backend;
mod fields;
mod health;
mod http;
mod limits;
mod listener;
mod pool;
mod route;
mod tls;
mod top;

use std::collections::HashMap;

use serde_yaml::Value;

use super::check::{self, Addresses, Names, ADD_LISTENER, ADD_POOL};
use super::error::{Collector, YamlPath};
use super::model::{Config, PoolId};
use super::raw::{RawConfig, RawPool};
pub(super) use super::value::address::Resolve;
use super::value::Bad;
use fields::{non_empty, Fields};

/// Checks and converts the whole config. Returns `Some` only when nothing at
/// all was wrong, so a caller never sees a half-valid config.
pub(super) fn validate(raw: RawConfig, resolve: Resolve, errors: &mut Collector) -> Option<Config> {
    let root = YamlPath::root();
    let mut f = Fields::new(root.clone(), errors);

    let settings = top::settings(&raw, &mut f);
    let admin = raw
        .admin
        .as_ref()
        .map(|raw| admin::admin(raw, f.section("admin")));
    let access_log = raw
        .access_log
        .as_ref()
        .map(|raw| access_log::access_log(raw, f.section("access_log")));

    let stores = tls::stores(raw.tls.as_deref(), &mut f);
    let store_names = tls::StoreNames::new(raw.tls.as_deref().unwrap_or_default());

    // Pool names first, so a listener's `pool:` can be checked in file order.
    let raw_pools = non_empty(raw.pools, &root.key("pools"), ADD_POOL, f.errors());
    let pool_names = PoolNames::new(raw_pools.as_deref().unwrap_or_default());

    let listeners = non_empty(
        raw.listeners,
        &root.key("listeners"),
        ADD_LISTENER,
        f.errors(),
    )
    .map(|listeners| {
        let mut seen = (Names::default(), Addresses::default());
        listeners
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let item = f.item("listeners", i);
                listener::listener(l.as_ref()?, item, (&pool_names, &store_names), &mut seen)
            })
            .collect::<Vec<_>>()
    });

    let pools = raw_pools.map(|pools| {
        let mut seen = Names::default();
        pools
            .into_iter()
            .enumerate()
            .map(|(i, p)| pool::pool(p?, f.item("pools", i), resolve, &mut seen))
            .collect::<Vec<_>>()
    });

    // The admin listener shares the machine's ports with the listeners.
    if let (Some(Some(admin)), Some(listeners)) = (&admin, &listeners) {
        let readable = listeners
            .iter()
            .enumerate()
            .filter_map(|(i, l)| Some((i, l.as_ref()?)));
        let clash = check::admin_port(admin.listen, readable);
        f.section("admin").keep("listen", clash);
    }

    if !f.errors().is_empty() {
        return None;
    }
    Some(Config {
        workers: settings.workers?,
        dataplane: settings.dataplane?,
        admin: admin.map(|admin| admin.ok_or(())).transpose().ok()?,
        shutdown_timeout: settings.shutdown_timeout?,
        limits_table_size: settings.limits_table_size?,
        access_log: access_log.map(|log| log.ok_or(())).transpose().ok()?,
        tls: stores?,
        listeners: listeners?.into_iter().collect::<Option<_>>()?,
        pools: pools?.into_iter().collect::<Option<_>>()?,
    })
}

/// Pool names as written, for resolving and checking listeners' `pool:`.
struct PoolNames {
    /// Name → index in `pools`, which is also the index in [`Config::pools`]
    /// when the config turns out valid.
    by_name: HashMap<String, usize>,
}

impl PoolNames {
    fn new(pools: &[Option<RawPool>]) -> Self {
        let mut by_name = HashMap::new();
        for (i, pool) in pools.iter().enumerate() {
            if let Some(Value::String(name)) = pool.as_ref().and_then(|p| p.name.as_ref()) {
                by_name.entry(name.clone()).or_insert(i);
            }
        }
        PoolNames { by_name }
    }

    fn find(&self, wanted: &str) -> Result<PoolId, Bad> {
        if let Some(&i) = self.by_name.get(wanted) {
            return Ok(PoolId(i));
        }
        // Reported even when some pool entry was unreadable and might have been
        // the one meant: a second, related error beats a hidden one.
        let mut names: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
        names.sort_unstable();
        Err(check::no_such_pool(wanted, &names))
    }
}
