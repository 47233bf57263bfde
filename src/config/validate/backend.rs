//! The `backends:` of a pool: each entry's address and settings; the rules
//! between entries (no backend twice, not only backups) are `check`'s.

use serde_yaml::Value;

use super::fields::Fields;
use super::Resolve;
use crate::config::bounds;
use crate::config::check::Backends;
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
    let mut seen = Backends::default();
    let mut list = Vec::with_capacity(backends.len());
    for (i, backend) in backends.into_iter().enumerate() {
        let Some(backend) = backend else {
            // Reported already; it might have been the primary.
            seen.backup(None);
            list.push(None);
            continue;
        };
        let entry = entry(backend, f.entry(i), resolve);
        seen.backup(entry.backup);
        let config = entry.config.filter(|backend| {
            let first = seen.first(backend, &entry.address_path);
            first
                .map_err(|bad| bad.record(&entry.address_path, f.errors()))
                .is_ok()
        });
        list.push(config);
    }
    f.here(seen.some_primary());
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
