//! Turns a [`RawConfig`] into the typed [`Config`]: interprets every value
//! (through the kinds in `value`), fills in defaults, and checks the
//! cross-references (listener and SNI route → pool, unique names and
//! addresses, SNI routes that could never be chosen). It reports *all*
//! problems, each with its YAML path, the bad value and a fix.
//!
//! One file per section of the file (`top`, `admin`, `access_log`,
//! `listener`, `limits`, `pool`, `backend`, `health`), each written with the
//! [`Fields`] reader: one line per key. This file only orders them: pool
//! names are gathered first so a listener's `pool:` can be resolved in file
//! order.
//!
//! It must never read files or stop at the first error, and it does no I/O of
//! its own: resolving backend hostnames goes through the [`Resolve`] function
//! it is given, so tests and the fuzz target never touch DNS.

mod access_log;
mod admin;
mod backend;
mod fields;
mod health;
mod limits;
mod listener;
mod pool;
mod top;

use std::collections::HashMap;
use std::net::SocketAddr;

use serde_yaml::Value;

use super::error::{Collector, YamlPath};
use super::model::{Config, PoolId};
use super::raw::{closest, RawConfig, RawPool};
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

    // Pool names first, so a listener's `pool:` can be checked in file order.
    let raw_pools = non_empty(
        raw.pools,
        &root.key("pools"),
        "add at least one pool, e.g. pools: [{ name: web, backends: [127.0.0.1:9001] }]",
        f.errors(),
    );
    let pool_names = PoolNames::new(raw_pools.as_deref().unwrap_or_default());

    let listeners = non_empty(
        raw.listeners,
        &root.key("listeners"),
        "add at least one listener, e.g. listeners: [{ name: web, listen: 0.0.0.0:8080, pool: web }]",
        f.errors(),
    )
    .map(|listeners| {
        let mut seen = Seen::default();
        listeners
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let item = f.item("listeners", i);
                listener::listener(l.as_ref()?, item, &pool_names, &mut seen)
            })
            .collect::<Vec<_>>()
    });

    let pools = raw_pools.map(|pools| {
        let mut seen = Seen::default();
        pools
            .into_iter()
            .enumerate()
            .map(|(i, p)| pool::pool(p?, f.item("pools", i), resolve, &mut seen))
            .collect::<Vec<_>>()
    });

    // The admin listener shares the machine's ports with the listeners.
    if let (Some(Some(admin)), Some(listeners)) = (&admin, &listeners) {
        let clash = listeners
            .iter()
            .enumerate()
            .find(|(_, l)| matches!(l, Some(l) if l.listen == admin.listen));
        if let Some((i, Some(listener))) = clash.filter(|_| admin.listen.port() != 0) {
            f.section("admin").report(
                "listen",
                Bad::new(
                    Some(&admin.listen.to_string()),
                    format!("is already used by listeners[{i}] ({})", listener.name),
                    "give the admin API its own port, e.g. 127.0.0.1:9090",
                ),
            );
        }
    }

    if !f.errors().is_empty() {
        return None;
    }
    Some(Config {
        workers: settings.workers?,
        admin: admin.map(|admin| admin.ok_or(())).transpose().ok()?,
        shutdown_timeout: settings.shutdown_timeout?,
        limits_table_size: settings.limits_table_size?,
        access_log: access_log.map(|log| log.ok_or(())).transpose().ok()?,
        listeners: listeners?.into_iter().collect::<Option<_>>()?,
        pools: pools?.into_iter().collect::<Option<_>>()?,
    })
}

/// Names and addresses already used, to report duplicates at the second use.
#[derive(Default)]
struct Seen {
    names: HashMap<String, String>,
    addresses: HashMap<SocketAddr, String>,
}

impl Seen {
    fn name(
        &mut self,
        name: &str,
        item: &YamlPath,
        name_path: &YamlPath,
        what: &str,
        errors: &mut Collector,
    ) {
        if let Some(first) = self.names.get(name) {
            errors.push(
                name_path,
                Some(name),
                format!("is already the name of {first}"),
                format!("give each {what} a unique name (it is a metric label)"),
            );
        } else {
            self.names.insert(name.to_owned(), item.to_string());
        }
    }
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
        let fix = match (closest(wanted, &names), names.is_empty()) {
            (Some(near), _) => format!("did you mean {near}? pools defined: {}", names.join(", ")),
            (None, true) => format!("define a pool named {wanted} under pools:"),
            (None, false) => format!(
                "use one of the pools defined: {}, or add a pool named {wanted}",
                names.join(", ")
            ),
        };
        Err(Bad::new(Some(wanted), "does not name a pool", fix))
    }
}
