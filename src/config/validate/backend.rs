//! The `backends:` of a pool: each entry's address and settings, and the
//! rules between entries (no backend twice, not only backups).

use std::collections::HashMap;
use std::net::SocketAddr;

use serde_yaml::Value;

use super::fields::Fields;
use super::Resolve;
use crate::config::bounds;
use crate::config::error::YamlPath;
use crate::config::model::{BackendConfig, DEFAULT_WEIGHT};
use crate::config::raw::RawBackend;
use crate::config::value::address::Backend;
use crate::config::value::count::Count;
use crate::config::value::word::Flag;
use crate::config::value::Kind;

/// The entries of a pool's `backends:`: each one read whole (every bad field
/// reported, not just the first), then checked against the others.
pub(super) fn backends(
    backends: Vec<Option<RawBackend>>,
    mut f: Fields,
    resolve: Resolve,
) -> Option<Vec<BackendConfig>> {
    let mut seen: HashMap<SocketAddr, YamlPath> = HashMap::new();
    let mut seen_names: HashMap<String, YamlPath> = HashMap::new();
    // Whether every entry is known to be a backup; an unreadable entry (already
    // reported) might be a primary, so it clears this.
    let mut only_backups = true;
    let mut list = Vec::with_capacity(backends.len());
    for (i, backend) in backends.into_iter().enumerate() {
        let Some(backend) = backend else {
            only_backups = false;
            list.push(None);
            continue;
        };
        let entry = entry(backend, f.entry(i), resolve);
        only_backups &= entry.backup == Some(true);
        let Some(backend) = entry.config else {
            list.push(None);
            continue;
        };
        // Listing a backend twice would double its share silently; weights
        // are the way to do that on purpose.
        let earlier = seen_names
            .get(&backend.name.to_ascii_lowercase())
            .or_else(|| seen.get(&backend.addr));
        if let Some(earlier) = earlier {
            f.errors().push(
                &entry.address_path,
                Some(&backend.name),
                format!("is the same backend as {earlier}"),
                "list each backend once per pool",
            );
            list.push(None);
            continue;
        }
        seen.insert(backend.addr, entry.address_path.clone());
        seen_names.insert(backend.name.to_ascii_lowercase(), entry.address_path);
        list.push(Some(backend));
    }
    if only_backups {
        let at = f.at().clone();
        f.errors().push(
            &at,
            None,
            "has only backup backends",
            "make at least one a primary (leave out backup: true): backups only take traffic when no primary is up",
        );
    }
    list.into_iter().collect()
}

/// One item of `backends:`, with where its address was written (for errors
/// about it) and whether it is a backup, known even when another field is bad.
struct Entry {
    config: Option<BackendConfig>,
    address_path: YamlPath,
    backup: Option<bool>,
}

fn entry(backend: RawBackend, mut f: Fields, resolve: Resolve) -> Entry {
    let entry = match backend {
        RawBackend::Short(text) => {
            let address = f.here(Backend(resolve).read(&Value::String(text)));
            return Entry {
                config: address.map(|(name, addr)| BackendConfig::new(name, addr)),
                address_path: f.at().clone(),
                backup: Some(false),
            };
        }
        RawBackend::Full(entry) => entry,
    };
    let address = f.need(
        "address",
        &entry.address,
        "add address: host:port, e.g. address: 127.0.0.1:9001",
        Backend(resolve),
    );
    let weight = f.or(
        "weight",
        &entry.weight,
        DEFAULT_WEIGHT,
        Count::new(bounds::WEIGHT),
    );
    let backup = f.or("backup", &entry.backup, false, Flag);
    let max_connections = f.or(
        "max_connections",
        &entry.max_connections,
        0,
        Count::new(bounds::BACKEND_MAX_CONNECTIONS),
    );
    let drain = f.or("drain", &entry.drain, false, Flag);
    let disabled = f.or("disabled", &entry.disabled, false, Flag);
    let config = (|| {
        let (name, addr) = address?;
        Some(BackendConfig {
            name,
            addr,
            weight: weight?,
            backup: backup?,
            max_connections: max_connections?,
            drain: drain?,
            disabled: disabled?,
        })
    })();
    Entry {
        config,
        address_path: f.path("address"),
        backup,
    }
}
