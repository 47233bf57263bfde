//! The `backends:` of a pool: each entry's address and settings.

// WHY: moved here whole from validate.rs; each section gets its own imports
// when its reads move to the field reader.
#[allow(unused_imports)]
use super::*;

/// The entries of a pool's `backends:`: each one read whole (every bad field
/// reported, not just the first), then checked against the others.
pub(super) fn backend_list(
    backends: Vec<Option<RawBackend>>,
    path: &YamlPath,
    resolve: Resolve,
    errors: &mut Collector,
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
        let entry = backend_entry(backend, &path.index(i), resolve, errors);
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
            errors.push(
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
        errors.push(
            path,
            None,
            "has only backup backends",
            "make at least one a primary (leave out backup: true): backups only take traffic when no primary is up",
        );
    }
    list.into_iter().collect()
}

/// One item of `backends:`, with where its address was written (for errors
/// about it) and whether it is a backup, known even when another field is bad.
pub(super) struct BackendEntry {
    config: Option<BackendConfig>,
    address_path: YamlPath,
    backup: Option<bool>,
}

pub(super) fn backend_entry(
    backend: RawBackend,
    path: &YamlPath,
    resolve: Resolve,
    errors: &mut Collector,
) -> BackendEntry {
    let entry = match backend {
        RawBackend::Short(text) => {
            let address = backend_address(&Value::String(text), path, resolve, errors);
            return BackendEntry {
                config: address.map(|(name, addr)| BackendConfig::new(name, addr)),
                address_path: path.clone(),
                backup: Some(false),
            };
        }
        RawBackend::Full(entry) => entry,
    };
    let address_path = path.key("address");
    let address = required(
        entry.address.as_ref(),
        &address_path,
        "add address: host:port, e.g. address: 127.0.0.1:9001",
        errors,
    )
    .and_then(|value| backend_address(value, &address_path, resolve, errors));
    let weight = integer(
        entry.weight.as_ref(),
        &path.key("weight"),
        DEFAULT_WEIGHT.into(),
        0..=MAX_WEIGHT.into(),
        errors,
    );
    let backup = boolean(entry.backup.as_ref(), &path.key("backup"), false, errors);
    let max_connections = integer(
        entry.max_connections.as_ref(),
        &path.key("max_connections"),
        0,
        0..=u32::MAX.into(),
        errors,
    );
    let drain = boolean(entry.drain.as_ref(), &path.key("drain"), false, errors);
    let disabled = boolean(
        entry.disabled.as_ref(),
        &path.key("disabled"),
        false,
        errors,
    );
    let config = (|| {
        let (name, addr) = address?;
        Some(BackendConfig {
            name,
            addr,
            // The ranges checked above fit in u32.
            weight: u32::try_from(weight?).ok()?,
            backup: backup?,
            max_connections: u32::try_from(max_connections?).ok()?,
            drain: drain?,
            disabled: disabled?,
        })
    })();
    BackendEntry {
        config,
        address_path,
        backup,
    }
}
