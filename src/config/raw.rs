//! The config file as written: serde structs that mirror the YAML, and the walk
//! that gets a document into them. This module owns the *shape* of the file —
//! which keys exist where, what is a mapping and what is a list — and reports
//! every unknown key, wrongly-shaped section and syntax error with its path.
//!
//! It must never interpret a value: durations, addresses, names and numbers stay
//! `serde_yaml::Value`s here so `validate` can report a bad one with its path
//! instead of serde giving up at the first surprise.

use serde::de::{self, DeserializeOwned, Visitor};
use serde::Deserialize;
use serde_yaml::{Mapping, Value};

use super::error::{Collector, YamlPath};

/// Declares a section of the file as a serde struct whose fields are all
/// optional (`Option<Value>` unless a type is given): a section's keys are
/// written once, here, and unknown ones are refused by serde with the rest.
macro_rules! raw_section {
    ($(#[$meta:meta])* $name:ident {
        $($(#[$field_meta:meta])* $field:ident $(: $ty:ty)?),* $(,)?
    }) => {
        $(#[$meta])*
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(super) struct $name {
            $($(#[$field_meta])* pub $field: Option<raw_section!(@type $($ty)?)>,)*
        }
    };
    (@type) => { Value };
    (@type $ty:ty) => { $ty };
}

raw_section!(
    /// The whole file. Every field is optional here; `validate` decides what
    /// is required and what the defaults are. `None` items of `listeners` and
    /// `pools` are list entries already reported as malformed; they stay in
    /// place so the indices in later error paths still match the file.
    RawConfig {
        workers, dataplane, shutdown_timeout, admin: RawAdmin, access_log: RawAccessLog,
        limits_table_size, tls: Vec<Option<RawTlsStore>>, listeners: Vec<Option<RawListener>>,
        pools: Vec<Option<RawPool>>,
    }
);

raw_section!(
    /// One certificate store of the top-level `tls:` list; `None` items of
    /// `certs` mark entries already reported.
    RawTlsStore { name, certs: Vec<Option<RawCertFiles>>, self_signed, default }
);

raw_section!(
    /// One item of a store's `certs:`, `- { cert: site.pem, key: site.key }`.
    RawCertFiles { cert, key }
);

raw_section!(RawAdmin {
    listen,
    token_file,
    allowed_hosts,
    allow_unauthenticated
});

raw_section!(RawAccessLog { path, format });

raw_section!(
    /// One listener; `None` items of `sni` mark entries already reported.
    RawListener {
        name, listen, mode, pool, connect_timeout, idle_timeout, retries, max_connections, backlog,
        sni: Vec<Option<RawSniRoute>>, require_sni, tls_inspect_timeout, proxy_protocol,
        accept_proxy_protocol, trusted_proxies, proxy_header_timeout, allow, deny,
        limits: RawLimits, tls: RawListenerTls, timeouts: RawHttpTimeouts,
        request_limits: RawRequestLimits, forwarded: RawForwarded,
        routes: Vec<Option<RawHttpRoute>>, redirect_https,
    }
);

raw_section!(
    /// A `mode: http` listener's `tls:`.
    RawListenerTls { store, alpn, min_version }
);

raw_section!(
    /// A `mode: http` listener's `timeouts:`.
    RawHttpTimeouts { handshake, request_header, idle, tunnel_idle, backend_response }
);

raw_section!(
    /// A `mode: http` listener's `request_limits:`.
    RawRequestLimits { max_header_bytes, max_body, h2_max_streams }
);

raw_section!(
    /// A `mode: http` listener's `forwarded:`.
    RawForwarded { trusted_proxies }
);

raw_section!(
    /// One item of a `mode: http` listener's `routes:`; no `match` is a
    /// catch-all.
    RawHttpRoute {
        #[serde(rename = "match")] conditions: RawRouteMatch, pool, sticky: RawSticky,
        rate_limit: RawRateLimits,
    }
);

raw_section!(
    /// A route's `sticky:`, cookie-based session affinity.
    RawSticky { cookie, ttl, secure, http_only, same_site, secret }
);

/// A route's `rate_limit:`, one limit or a list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawRateLimits {
    /// Boxed: one limit is many times the size of a list.
    One(Box<RawRateLimit>),
    /// `None` items mark entries already reported.
    Many(Vec<Option<RawRateLimit>>),
}

raw_section!(
    /// One per-request rate limit of a route.
    RawRateLimit { key, rate, burst, missing }
);

raw_section!(
    /// A route's `match:`; every condition given must hold.
    RawRouteMatch { host, path_prefix }
);

raw_section!(
    /// One item of a listener's `sni:`, `- { match: api.example.com, pool: api }`.
    RawSniRoute { #[serde(rename = "match")] pattern, pool, alpn }
);

raw_section!(
    /// A listener's `limits:` section.
    RawLimits {
        per_ip_rate, per_ip_burst, per_ip_connections, per_ip_bandwidth, action, tarpit_delay,
        ipv6_prefix,
    }
);

raw_section!(
    /// One pool; `None` items of `backends` mark entries already reported.
    RawPool {
        name, algorithm, backends: Vec<Option<RawBackend>>, health_check: RawHealthCheck,
        eject_after, ejection_time, max_ejection_time, max_ejection_percent, on_all_down,
        slow_start, hash_balance_factor, hash_table_size, protocol, backend_tls: RawBackendTls,
    }
);

raw_section!(
    /// A pool's `backend_tls:`, TLS from spliced to its backends.
    RawBackendTls { sni, ca_file, verify }
);

raw_section!(
    /// A pool's `health_check:`. The keys of both kinds live in one struct:
    /// which of them a kind may use depends on the *value* of `kind`, so
    /// `validate` checks that.
    RawHealthCheck { kind, interval, timeout, rise, fall, send, expect, path, host, expect_status }
);

/// A backend, either `- 127.0.0.1:9001` or `- { address: 127.0.0.1:9001 }`.
#[derive(Debug, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub(super) enum RawBackend {
    Short(String),
    /// Boxed: the long form is many times the size of the short one.
    Full(Box<RawBackendEntry>),
}

raw_section!(
    /// The long form of a backend.
    RawBackendEntry { address, weight, backup, max_connections, drain, disabled }
);

/// Parses a YAML document into [`RawConfig`], recording every syntax and shape
/// problem in `errors`. Returns `None` only when there is nothing to validate
/// (a syntax error, an empty file, a document that is not a mapping); otherwise
/// returns what could be salvaged, with the bad parts removed and reported.
pub(super) fn parse(yaml: &str, errors: &mut Collector) -> Option<RawConfig> {
    if !within_bounds(yaml, errors) {
        return None;
    }
    let mut document: Value = match parse_document(yaml) {
        Ok(document) => document,
        Err(e) => {
            report_yaml_error(&e, yaml, errors);
            return None;
        }
    };
    // Merge keys (`<<: *defaults`) let several listeners share settings; apply
    // them first so a merged-in key is checked like one written in place.
    if let Err(e) = document.apply_merge() {
        report_yaml_error(&e, yaml, errors);
        return None;
    }

    let root = YamlPath::root();
    let document = match document {
        Value::Mapping(mapping) => mapping,
        Value::Null => {
            errors.push(
                &root,
                None,
                "the config is empty",
                "it needs at least listeners: and pools:, see conf/minimal.yaml",
            );
            return None;
        }
        other => {
            errors.push(
                &root,
                scalar_text(&other).as_deref(),
                format!("is {}, not a mapping of keys", kind(&other)),
                "the config must be a YAML mapping with keys such as listeners: and pools:, see conf/minimal.yaml",
            );
            return None;
        }
    };

    // Errors are printed in the order of the file's sections, whichever
    // stage found them.
    errors.set_section_order(document.keys().filter_map(Value::as_str));

    let mut cleaned = Mapping::new();
    for (key, value) in checked_keys(document, &root, keys_of::<RawConfig>(), errors) {
        let path = root.key(&key);
        let value = match key.as_str() {
            "admin" => match value {
                Value::Null => Value::Null,
                value => mapping_at(value, &path, keys_of::<RawAdmin>(), errors)
                    .map_or(Value::Null, Value::Mapping),
            },
            "access_log" => match value {
                Value::Null => Value::Null,
                value => mapping_at(value, &path, keys_of::<RawAccessLog>(), errors)
                    .map_or(Value::Null, Value::Mapping),
            },
            "tls" => list_at(value, &path, "store", errors, tls_store_at),
            "listeners" => list_at(value, &path, "listener", errors, listener_at),
            "pools" => list_at(value, &path, "pool", errors, pool_at),
            _ => value,
        };
        // A section that was reported as malformed is dropped; `validate` then
        // finds it missing, and the collector keeps only the first report.
        if !value.is_null() {
            cleaned.insert(Value::String(key), value);
        }
    }

    match serde_yaml::from_value(Value::Mapping(cleaned)) {
        Ok(raw) => Some(raw),
        Err(e) => {
            // The walk above removes everything serde could object to, so this
            // means the walk and the structs have drifted apart.
            errors.push(
                &root,
                None,
                format!("could not be read ({e})"),
                "this is a bug in spliced's config reader; please report it with the file",
            );
            None
        }
    }
}

fn listener_at(item: Value, path: &YamlPath, errors: &mut Collector) -> Option<Mapping> {
    let mut listener = mapping_item(item, path, "listener", errors)
        .and_then(|item| mapping_at(item, path, keys_of::<RawListener>(), errors))?;
    if let Some(routes) = listener.remove("sni") {
        let routes = list_at(routes, &path.key("sni"), "route", errors, sni_route_at);
        if !routes.is_null() {
            listener.insert(Value::from("sni"), routes);
        }
    }
    // An empty `limits:` is the same as none, as for `admin:`: every limit
    // in it is optional.
    if let Some(limits) = listener.remove("limits").filter(|v| !v.is_null()) {
        if let Some(limits) =
            mapping_at(limits, &path.key("limits"), keys_of::<RawLimits>(), errors)
        {
            listener.insert(Value::from("limits"), Value::Mapping(limits));
        }
    }
    // `mode: http`. An empty `tls:` is reported: plaintext is what leaving
    // it out means, and an empty one more likely lost its keys.
    sub_section(
        &mut listener,
        "tls",
        path,
        keys_of::<RawListenerTls>(),
        false,
        errors,
    );
    let optional = [
        ("timeouts", keys_of::<RawHttpTimeouts>()),
        ("request_limits", keys_of::<RawRequestLimits>()),
        ("forwarded", keys_of::<RawForwarded>()),
    ];
    for (key, allowed) in optional {
        sub_section(&mut listener, key, path, allowed, true, errors);
    }
    if let Some(routes) = listener.remove("routes") {
        let routes = list_at(routes, &path.key("routes"), "route", errors, http_route_at);
        if !routes.is_null() {
            listener.insert(Value::from("routes"), routes);
        }
    }
    Some(listener)
}

/// Shape-checks the mapping under `key` of `parent` (at `path`) against
/// `allowed`, keeping what is known. With `empty_is_none`, an empty value is
/// the same as leaving the key out (every key in it is optional).
fn sub_section(
    parent: &mut Mapping,
    key: &str,
    path: &YamlPath,
    allowed: &[&str],
    empty_is_none: bool,
    errors: &mut Collector,
) {
    let Some(value) = parent.remove(key) else {
        return;
    };
    if value.is_null() && empty_is_none {
        return;
    }
    if let Some(section) = mapping_at(value, &path.key(key), allowed, errors) {
        parent.insert(Value::from(key), Value::Mapping(section));
    }
}

/// Keys DESIGN.md promises that a later version adds: each is refused with
/// `fix` rather than as an unknown key, and removed from `item`.
fn refuse_planned(
    item: &mut Value,
    path: &YamlPath,
    planned: &[(&str, &str)],
    errors: &mut Collector,
) {
    let Value::Mapping(mapping) = item else {
        return;
    };
    for (key, fix) in planned {
        if mapping.remove(*key).is_some() {
            errors.push(&path.key(key), None, "is not supported yet", *fix);
        }
    }
}

/// A list entry that must be a mapping of `allowed` keys (`what`: "route";
/// `example`: how one is written).
fn entry_at(
    item: Value,
    path: &YamlPath,
    allowed: &[&str],
    (what, example): (&str, &str),
    errors: &mut Collector,
) -> Option<Mapping> {
    match item {
        Value::Mapping(_) => mapping_at(item, path, allowed, errors),
        Value::Null => {
            errors.push(
                path,
                None,
                "is an empty list entry",
                format!("give the {what}'s keys after the dash, {example}"),
            );
            None
        }
        other => {
            errors.push(
                path,
                scalar_text(&other).as_deref(),
                format!("is {}, not a {what}", kind(&other)),
                format!(
                    "each {what} is a mapping of {}, {example}",
                    allowed.join(", ")
                ),
            );
            None
        }
    }
}

/// One of a `mode: http` listener's `routes:`; an empty `match:` is the
/// same as none (a catch-all).
fn http_route_at(mut item: Value, path: &YamlPath, errors: &mut Collector) -> Option<Mapping> {
    const PLANNED: [(&str, &str); 2] = [
        (
            "retry",
            "remove it for now; the listener's retries: apply to connect failures",
        ),
        ("cache", "remove it for now; responses are not cached yet"),
    ];
    refuse_planned(&mut item, path, &PLANNED, errors);
    const EXAMPLE: &str =
        "e.g. - { match: { host: api.example.com, path_prefix: /v1/ }, pool: api }";
    let mut route = entry_at(
        item,
        path,
        keys_of::<RawHttpRoute>(),
        ("route", EXAMPLE),
        errors,
    )?;
    sub_section(
        &mut route,
        "match",
        path,
        keys_of::<RawRouteMatch>(),
        true,
        errors,
    );
    // An empty `sticky:` is reported: `cookie` is required.
    sub_section(
        &mut route,
        "sticky",
        path,
        keys_of::<RawSticky>(),
        false,
        errors,
    );
    if let Some(limits) = route.remove("rate_limit") {
        let at = path.key("rate_limit");
        let limits = match limits {
            Value::Sequence(_) => {
                list_at(limits, &at, "rate limit", errors, |item, path, errors| {
                    let example = "e.g. - { key: ip, rate: 20/s, burst: 40 }";
                    entry_at(
                        item,
                        path,
                        keys_of::<RawRateLimit>(),
                        ("rate limit", example),
                        errors,
                    )
                })
            }
            other => mapping_at(other, &at, keys_of::<RawRateLimit>(), errors)
                .map_or(Value::Null, Value::Mapping),
        };
        if !limits.is_null() {
            route.insert(Value::from("rate_limit"), limits);
        }
    }
    Some(route)
}

/// One store of the top-level `tls:`.
fn tls_store_at(mut item: Value, path: &YamlPath, errors: &mut Collector) -> Option<Mapping> {
    const PLANNED: [(&str, &str); 1] = [(
        "acme",
        "remove acme and give the store certs (cert and key files) or self_signed names for now",
    )];
    refuse_planned(&mut item, path, &PLANNED, errors);
    let mut store = mapping_item(item, path, "store", errors)
        .and_then(|item| mapping_at(item, path, keys_of::<RawTlsStore>(), errors))?;
    if let Some(certs) = store.remove("certs") {
        let certs = list_at(
            certs,
            &path.key("certs"),
            "certificate",
            errors,
            |item, path, errors| {
                let example = "e.g. - { cert: /etc/spliced/site.pem, key: /etc/spliced/site.key }";
                entry_at(
                    item,
                    path,
                    keys_of::<RawCertFiles>(),
                    ("certificate", example),
                    errors,
                )
            },
        );
        if !certs.is_null() {
            store.insert(Value::from("certs"), certs);
        }
    }
    Some(store)
}

/// An SNI route is kept when it is a mapping with only known keys; anything
/// else is reported and replaced by null.
fn sni_route_at(item: Value, path: &YamlPath, errors: &mut Collector) -> Option<Mapping> {
    const EXAMPLE: &str = "e.g. - { match: api.example.com, pool: api }";
    match item {
        Value::Mapping(_) => mapping_at(item, path, keys_of::<RawSniRoute>(), errors),
        Value::Null => {
            errors.push(
                path,
                None,
                "is an empty list entry",
                format!("give the route's match and pool after the dash, {EXAMPLE}"),
            );
            None
        }
        other => {
            errors.push(
                path,
                scalar_text(&other).as_deref(),
                format!("is {}, not a route", kind(&other)),
                format!("each route is a mapping of match, pool and optionally alpn, {EXAMPLE}"),
            );
            None
        }
    }
}

fn pool_at(mut item: Value, path: &YamlPath, errors: &mut Collector) -> Option<Mapping> {
    const PLANNED: [(&str, &str); 2] = [
        (
            "discovery",
            "list the pool's backends under backends: for now",
        ),
        (
            "circuit_breaker",
            "remove it for now; eject_after ejects a backend after failed connects",
        ),
    ];
    refuse_planned(&mut item, path, &PLANNED, errors);
    let mut pool = mapping_item(item, path, "pool", errors)
        .and_then(|item| mapping_at(item, path, keys_of::<RawPool>(), errors))?;
    if let Some(backends) = pool.remove("backends") {
        let backends_path = path.key("backends");
        let backends = list_at(backends, &backends_path, "backend", errors, backend_at);
        if !backends.is_null() {
            pool.insert(Value::from("backends"), backends);
        }
    }
    if let Some(check) = pool.remove("health_check") {
        // An empty `health_check:` is reported too: it most likely lost its
        // keys to an indentation slip, and `kind` is required anyway.
        if let Some(check) = mapping_at(
            check,
            &path.key("health_check"),
            keys_of::<RawHealthCheck>(),
            errors,
        ) {
            pool.insert(Value::from("health_check"), Value::Mapping(check));
        }
    }
    sub_section(
        &mut pool,
        "backend_tls",
        path,
        keys_of::<RawBackendTls>(),
        false,
        errors,
    );
    Some(pool)
}

/// A backend item is kept as it is when it is an address string or a mapping
/// with only known keys; anything else is reported and replaced by null.
fn backend_at(item: Value, path: &YamlPath, errors: &mut Collector) -> Option<Value> {
    match item {
        Value::String(address) => Some(Value::String(address)),
        Value::Mapping(entry) => mapping_at(
            Value::Mapping(entry),
            path,
            keys_of::<RawBackendEntry>(),
            errors,
        )
        .map(Value::Mapping),
        Value::Null => {
            errors.push(
                path,
                None,
                "is an empty list entry",
                "write the backend's address after the dash, e.g. - 127.0.0.1:9001",
            );
            None
        }
        other => {
            errors.push(
                path,
                scalar_text(&other).as_deref(),
                format!("is {}, not a backend", kind(&other)),
                "write host:port, e.g. - 127.0.0.1:9001 or - { address: backend.internal:9001 }",
            );
            None
        }
    }
}

/// A list entry that must be a mapping (a listener, a pool).
fn mapping_item(item: Value, path: &YamlPath, what: &str, errors: &mut Collector) -> Option<Value> {
    match item {
        Value::Mapping(_) => Some(item),
        Value::Null => {
            errors.push(
                path,
                None,
                "is an empty list entry",
                format!("give the {what}'s keys after the dash, e.g. - name: web"),
            );
            None
        }
        other => {
            errors.push(
                path,
                scalar_text(&other).as_deref(),
                format!("is {}, not a {what}", kind(&other)),
                format!("each {what} is a mapping of keys, e.g. - name: web"),
            );
            None
        }
    }
}

/// Checks that the value at `path` is a list and runs `item` over each entry.
/// Returns the list with bad entries replaced by null (so indices keep
/// matching the file), or null when the value is absent or not a list.
fn list_at<T: Into<Value>>(
    value: Value,
    path: &YamlPath,
    what: &str,
    errors: &mut Collector,
    mut item: impl FnMut(Value, &YamlPath, &mut Collector) -> Option<T>,
) -> Value {
    match value {
        Value::Sequence(items) => Value::Sequence(
            items
                .into_iter()
                .enumerate()
                .map(|(i, value)| {
                    item(value, &path.index(i), errors).map_or(Value::Null, Into::into)
                })
                .collect(),
        ),
        Value::Null => Value::Null,
        other => {
            errors.push(
                path,
                scalar_text(&other).as_deref(),
                format!("is {}, not a list", kind(&other)),
                format!("start each {what} with \"- \" on its own line under the key"),
            );
            Value::Null
        }
    }
}

/// Checks that the value at `path` is a mapping with only `allowed` keys, and
/// returns it without the keys it reported.
fn mapping_at(
    value: Value,
    path: &YamlPath,
    allowed: &[&str],
    errors: &mut Collector,
) -> Option<Mapping> {
    match value {
        Value::Mapping(mapping) => Some(
            checked_keys(mapping, path, allowed, errors)
                .into_iter()
                .map(|(key, value)| (Value::String(key), value))
                .collect(),
        ),
        other => {
            errors.push(
                path,
                scalar_text(&other).as_deref(),
                format!("is {}, not a mapping", kind(&other)),
                format!(
                    "give its keys indented below it; allowed keys: {}",
                    allowed.join(", ")
                ),
            );
            None
        }
    }
}

/// The entries of `mapping` whose keys are known, in file order. Every other
/// key is reported (all of them, not just the first) and left out.
fn checked_keys(
    mapping: Mapping,
    path: &YamlPath,
    allowed: &[&str],
    errors: &mut Collector,
) -> Vec<(String, Value)> {
    let mut known = Vec::with_capacity(mapping.len());
    for (key, value) in mapping {
        let key = match key {
            Value::String(key) => key,
            other => {
                let shown = scalar_text(&other);
                errors.push(
                    &path.key(shown.as_deref().unwrap_or("?")),
                    shown.as_deref(),
                    format!("is {}, not a key name", kind(&other)),
                    format!("allowed keys here: {}", allowed.join(", ")),
                );
                continue;
            }
        };
        if allowed.contains(&key.as_str()) {
            known.push((key, value));
            continue;
        }
        let hint = match closest(&key, allowed) {
            Some(near) => format!("did you mean {near}? "),
            None => String::new(),
        };
        errors.push(
            &path.key(&key),
            None,
            "is not a known key",
            format!("{hint}allowed keys here: {}", allowed.join(", ")),
        );
    }
    known
}

/// The largest config accepted: far above any real one (10,000 backends
/// take about 400 KB), small enough that parsing it stays quick.
pub(super) const MAX_CONFIG_BYTES: usize = 8 * 1024 * 1024;

/// The deepest `[ ]` / `{ }` nesting accepted. Real configs nest three deep;
/// libyaml's scanner takes time quadratic in this depth before serde's own
/// recursion limit is ever reached (200 KB of `{a: {a: …` took 25 s), so the
/// bound is checked on the text, before the parser sees it.
pub(super) const MAX_FLOW_DEPTH: usize = 32;

/// Refuses a config too large or too deeply nested to parse quickly, naming
/// the line where the nesting goes too deep. Block nesting (indentation) is
/// not a risk: serde_yaml's recursion limit stops it in linear time.
fn within_bounds(yaml: &str, errors: &mut Collector) -> bool {
    if yaml.len() > MAX_CONFIG_BYTES {
        errors.push(
            &YamlPath::root(),
            None,
            format!(
                "is {} bytes, more than the {MAX_CONFIG_BYTES} a config may have",
                yaml.len()
            ),
            "split very long backend lists across pools, or check that the right file was given",
        );
        return false;
    }
    match flow_depth_exceeded(yaml, MAX_FLOW_DEPTH) {
        None => true,
        Some(line) => {
            errors.push_at(
                format!("line {line}"),
                None,
                format!("nests [ ] and {{ }} more than {MAX_FLOW_DEPTH} deep"),
                "write nested sections in block style (one key per line, indented); a config never needs this depth",
            );
            false
        }
    }
}

/// The line (1-based) where flow-collection nesting first exceeds `max`, if
/// it does. Brackets inside quoted scalars and comments do not count; an
/// unbalanced closer never takes the depth below zero. Conservative: it only
/// has to be right about configs that nest a few levels.
fn flow_depth_exceeded(yaml: &str, max: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut line = 1;
    let mut quote: Option<u8> = None;
    let mut previous = b'\n';
    let mut bytes = yaml.bytes();
    while let Some(b) = bytes.next() {
        if b == b'\n' {
            line += 1;
        }
        match quote {
            Some(q) => {
                if b == b'\\' && q == b'"' {
                    if bytes.next() == Some(b'\n') {
                        line += 1;
                    }
                } else if b == q {
                    quote = None;
                }
            }
            None => match b {
                // A quote opens a scalar only where a token may start.
                b'"' | b'\'' if b" \t\n[{,:-".contains(&previous) => quote = Some(b),
                b'#' if previous.is_ascii_whitespace() => {
                    for c in bytes.by_ref() {
                        if c == b'\n' {
                            line += 1;
                            break;
                        }
                    }
                }
                b'[' | b'{' => {
                    depth += 1;
                    if depth > max {
                        return Some(line);
                    }
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
        previous = if b == b'#' && quote.is_none() {
            b'\n'
        } else {
            b
        };
    }
    None
}

fn report_yaml_error(error: &serde_yaml::Error, yaml: &str, errors: &mut Collector) {
    let message = error.to_string();
    match error.location() {
        Some(at) => {
            // libyaml repeats the position in its message; say it once, as the path.
            let message = message.replacen(
                &format!(" at line {} column {}", at.line(), at.column()),
                "",
                1,
            );
            // Two slips the new keys invite get a fix of their own: an
            // unquoted wildcard (`*` starts a YAML alias) and an unquoted IPv6
            // address inside [ ] (its colons end the flow item).
            let line = yaml.lines().nth(at.line().saturating_sub(1)).unwrap_or("");
            let fix = if message.contains("while scanning an alias") {
                "a value starting with * is read as a YAML alias: quote it, e.g. match: \"*.example.com\""
            } else if message.contains("flow node") && line.contains("::") {
                "quote IPv6 addresses inside [ ] and { }, e.g. [10.0.0.0/8, \"::1/128\"]"
            } else {
                "check the indentation, colons and quotes on or just before that line"
            };
            errors.push_at(
                format!("line {}, column {}", at.line(), at.column()),
                None,
                format!("is not valid YAML ({message})"),
                fix,
            );
        }
        None => errors.push(
            &YamlPath::root(),
            None,
            format!("is not valid YAML ({message})"),
            "the config is a single YAML document of keys such as listeners: and pools:",
        ),
    }
}

/// How many integers too big for 64 bits one document may have quoted for it.
const MAX_HUGE_INTEGERS: usize = 64;

/// Parses the document, reading integers too big for 64 bits as strings.
///
/// WHY: serde_yaml refuses the whole document at the first such integer
/// ("invalid type: integer as u128"), which would hide every other problem in
/// the file and name no key. Quoted, the number reaches validation like any
/// other mistyped value and is reported at its YAML path with the rest.
fn parse_document(yaml: &str) -> Result<Value, serde_yaml::Error> {
    let mut text = std::borrow::Cow::Borrowed(yaml);
    for _ in 0..MAX_HUGE_INTEGERS {
        let error = match serde_yaml::from_str(&text) {
            Ok(document) => return Ok(document),
            Err(error) => error,
        };
        let message = error.to_string();
        let huge = message.contains("as u128") || message.contains("as i128");
        match error.location().filter(|_| huge) {
            Some(at) => match quote_scalar_at(&text, at.line(), at.column()) {
                Some(quoted) => text = std::borrow::Cow::Owned(quoted),
                None => return Err(error),
            },
            None => return Err(error),
        }
    }
    serde_yaml::from_str(&text)
}

/// `yaml` with the plain scalar that starts at 1-based `line`, `column`
/// wrapped in double quotes; `None` when no number starts there.
fn quote_scalar_at(yaml: &str, line: usize, column: usize) -> Option<String> {
    let line_start: usize = yaml
        .split_inclusive('\n')
        .take(line.checked_sub(1)?)
        .map(str::len)
        .sum();
    let rest = yaml.get(line_start..)?;
    let start = line_start + rest.char_indices().nth(column.checked_sub(1)?)?.0;
    let len = yaml[start..]
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.')))
        .unwrap_or(yaml.len() - start);
    let number = &yaml[start..start + len];
    if !number.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(format!(
        "{}\"{number}\"{}",
        &yaml[..start],
        &yaml[start + len..]
    ))
}

/// The text of a scalar as it would be quoted back to the user; `None` for
/// null, mappings and lists, which the problem text describes instead.
pub(super) fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Tagged(tagged) => Some(format!("{} ...", tagged.tag)),
        Value::Null | Value::Sequence(_) | Value::Mapping(_) => None,
    }
}

/// "a string", "a list", ... for "is X, not Y" problems.
pub(super) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "empty",
        Value::Bool(_) => "true/false",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// The allowed word nearest to a misspelt one, if it is near enough to be a
/// typo (at most two edits, and fewer than half the letters).
pub(super) fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, _)| *d <= 2 && *d * 2 < word.chars().count().max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Edit distance counting a swap of two neighbouring letters as one edit
/// (optimal string alignment), since `wbe` for `web` is the commonest typo.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // d[i][j]: distance between the first i letters of a and the first j of b.
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// The keys a raw struct accepts, read from its serde derive so the list used
/// for "unknown key" errors can never drift from the struct.
///
/// WHY: serde offers no public field list, so this feeds the type a deserializer
/// that only records the `fields` argument of `deserialize_struct` (the same
/// trick as `serde_aux::serde_introspect`).
pub(super) fn keys_of<T: DeserializeOwned>() -> &'static [&'static str] {
    struct FieldProbe<'a>(&'a mut &'static [&'static str]);

    impl<'de> de::Deserializer<'de> for FieldProbe<'_> {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("field probe only reads struct fields"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("field probe only reads struct fields"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }

    let mut fields: &'static [&'static str] = &[];
    // The probe always errors; the only result we want is what it recorded.
    let _ = T::deserialize(FieldProbe(&mut fields));
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(yaml: &str) -> Vec<String> {
        let mut errors = Collector::default();
        parse(yaml, &mut errors);
        errors.finish().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn deeply_nested_flow_yaml_is_refused_before_parsing() {
        // Regression: 250 KB of `{a: ` froze the control thread for 25 s.
        let bomb = format!("pools: {}{}\n", "{a: ".repeat(50_000), "}".repeat(50_000));
        let started = std::time::Instant::now();
        let errors = errors_of(&bomb);
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("line 1: nests [ ] and { } more than 32 deep"),
            "{errors:?}"
        );
        let lists = format!("a: 1\nb: {}\n", "[".repeat(40));
        assert!(errors_of(&lists)[0].starts_with("line 2: "));
    }

    #[test]
    fn brackets_in_quotes_and_comments_do_not_count_as_nesting() {
        let deep = "[".repeat(40);
        for yaml in [
            format!("a: \"{deep}\"\n"),
            format!("a: '{deep}'\n"),
            format!("a: 1 # {deep}\n"),
            format!("# {deep}\na: \"x\\\"{deep}\"\n"),
        ] {
            assert_eq!(flow_depth_exceeded(&yaml, MAX_FLOW_DEPTH), None, "{yaml}");
        }
        assert_eq!(flow_depth_exceeded("a: [[1], {b: [2]}]\n", 2), Some(1));
        assert_eq!(flow_depth_exceeded("a: [[1], {b: 2}]\n", 2), None);
        // An apostrophe inside a plain scalar does not open a quote.
        assert_eq!(flow_depth_exceeded("a: it's [[[x]]]\n", 2), Some(1));
    }

    #[test]
    fn an_integer_beyond_64_bits_is_read_as_text_and_hides_nothing() {
        // Regression: serde_yaml refused the whole file at such a number, so
        // the unknown key below went unreported and no path was named.
        let yaml = "workerz: 2\npools:\n  - name: a\n    backends: [\"127.0.0.1:1\"]\n    \
                    drain: 99999999999999999999999\n    weight: -99999999999999999999999\n";
        let parsed = parse_document(yaml).expect("parses once the numbers are quoted");
        let pool = &parsed["pools"][0];
        assert_eq!(pool["drain"].as_str(), Some("99999999999999999999999"));
        assert_eq!(pool["weight"].as_str(), Some("-99999999999999999999999"));
        let errors = errors_of(yaml);
        assert!(errors.iter().any(|e| e.contains("workerz")), "{errors:?}");
        assert!(
            !errors
                .iter()
                .any(|e| e.contains("u128") || e.contains("i128")),
            "{errors:?}"
        );
    }

    #[test]
    fn quoting_a_scalar_keeps_the_rest_of_the_text() {
        let yaml = "a: [1, 123456789012345678901234567890]\nb: 2\n";
        assert_eq!(
            quote_scalar_at(yaml, 1, 8).as_deref(),
            Some("a: [1, \"123456789012345678901234567890\"]\nb: 2\n")
        );
        assert_eq!(quote_scalar_at(yaml, 2, 1), None);
        assert_eq!(quote_scalar_at(yaml, 9, 1), None);
    }

    #[test]
    fn an_oversized_config_is_refused() {
        let big = "#".repeat(MAX_CONFIG_BYTES + 1);
        assert!(errors_of(&big)[0].contains("more than the"));
    }

    #[test]
    fn key_lists_come_from_the_structs() {
        assert_eq!(
            keys_of::<RawConfig>(),
            [
                "workers",
                "dataplane",
                "shutdown_timeout",
                "admin",
                "access_log",
                "limits_table_size",
                "tls",
                "listeners",
                "pools"
            ]
        );
        assert_eq!(keys_of::<RawSniRoute>(), ["match", "pool", "alpn"]);
        assert_eq!(
            keys_of::<RawLimits>(),
            [
                "per_ip_rate",
                "per_ip_burst",
                "per_ip_connections",
                "per_ip_bandwidth",
                "action",
                "tarpit_delay",
                "ipv6_prefix"
            ]
        );
        assert_eq!(
            keys_of::<RawAdmin>(),
            [
                "listen",
                "token_file",
                "allowed_hosts",
                "allow_unauthenticated"
            ]
        );
        assert_eq!(
            keys_of::<RawBackendEntry>(),
            [
                "address",
                "weight",
                "backup",
                "max_connections",
                "drain",
                "disabled"
            ]
        );
        assert_eq!(
            keys_of::<RawHealthCheck>(),
            [
                "kind",
                "interval",
                "timeout",
                "rise",
                "fall",
                "send",
                "expect",
                "path",
                "host",
                "expect_status"
            ]
        );
        assert!(keys_of::<RawListener>().contains(&"connect_timeout"));
        assert!(keys_of::<RawPool>().contains(&"backends"));
    }

    #[test]
    fn every_unknown_key_is_reported_with_its_path() {
        let errors = errors_of(
            "wrkers: 2\n\
             listeners:\n  - name: a\n    conect_timeout: 2s\n    colour: red\n\
             pools:\n  - name: p\n    backends:\n      - { adress: 127.0.0.1:1 }\n",
        );
        assert_eq!(errors.len(), 4, "{errors:#?}");
        assert!(errors[0].starts_with("wrkers: is not a known key: did you mean workers?"));
        assert!(errors[1].starts_with(
            "listeners[0].conect_timeout: is not a known key: did you mean connect_timeout?"
        ));
        assert!(errors[2].starts_with(
            "listeners[0].colour: is not a known key: allowed keys here: name, listen"
        ));
        assert!(errors[3]
            .starts_with("pools[0].backends[0].adress: is not a known key: did you mean address?"));
    }

    #[test]
    fn sni_routes_and_limits_are_shape_checked() {
        // The keys that were once "not implemented yet" are plain keys now.
        let errors = errors_of(
            "listeners:\n  - name: a\n    sni: [{ match: a.example, pool: p, alpn: [h2] }]\n    proxy_protocol: v2\n    accept_proxy_protocol: any\n    trusted_proxies: [10.0.0.0/8]\n    limits: { per_ip_rate: 5/s, action: tarpit }\n",
        );
        assert!(errors.is_empty(), "{errors:#?}");
        let errors = errors_of(
            "listeners:\n  - name: a\n    sni:\n      - { macth: a.example, pool: p }\n      - a.example\n      -\n    limits: { per_ip_rates: 5/s }\n  - name: b\n    sni: a.example\n    limits: 5/s\n",
        );
        assert_eq!(
            errors,
            [
                "listeners[0].sni[0].macth: is not a known key: did you mean match? allowed keys here: match, pool, alpn",
                r#"listeners[0].sni[1]: "a.example" is a string, not a route: each route is a mapping of match, pool and optionally alpn, e.g. - { match: api.example.com, pool: api }"#,
                "listeners[0].sni[2]: is an empty list entry: give the route's match and pool after the dash, e.g. - { match: api.example.com, pool: api }",
                "listeners[0].limits.per_ip_rates: is not a known key: did you mean per_ip_rate? allowed keys here: per_ip_rate, per_ip_burst, per_ip_connections, per_ip_bandwidth, action, tarpit_delay, ipv6_prefix",
                r#"listeners[1].sni: "a.example" is a string, not a list: start each route with "- " on its own line under the key"#,
                r#"listeners[1].limits: "5/s" is a string, not a mapping: give its keys indented below it; allowed keys: per_ip_rate, per_ip_burst, per_ip_connections, per_ip_bandwidth, action, tarpit_delay, ipv6_prefix"#,
            ]
        );
        // Bad entries stay as `None` so later indices still match the file,
        // and an empty `limits:` is no limits.
        let mut errors = Collector::default();
        let raw = parse(
            "listeners:\n  - sni: [5, { match: a, pool: b }]\n    limits:\n",
            &mut errors,
        )
        .unwrap();
        let listener = raw.listeners.unwrap().remove(0).unwrap();
        let routes = listener.sni.unwrap();
        assert!(routes[0].is_none());
        assert_eq!(routes[1].as_ref().unwrap().pattern, Some(Value::from("a")));
        assert!(listener.limits.is_none());
    }

    #[test]
    fn implemented_keys_are_no_longer_planned() {
        let errors = errors_of(
            "pools:\n  - name: p\n    health_check: { kind: tcp, path: /x }\n    slow_start: 1s\n    backends:\n      - { address: 127.0.0.1:1, weight: 3, backup: false, drain: true }\n",
        );
        // Whether `path` suits `kind: tcp` is for `validate`, not the shape check.
        assert!(errors.is_empty(), "{errors:#?}");
        let errors = errors_of("pools:\n  - name: p\n    health_check: { knd: tcp }\n");
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(errors[0]
            .starts_with("pools[0].health_check.knd: is not a known key: did you mean kind?"));
        let errors = errors_of("pools:\n  - name: p\n    health_check: tcp\n");
        assert!(errors[0]
            .starts_with(r#"pools[0].health_check: "tcp" is a string, not a mapping: give its keys indented below it; allowed keys: kind,"#));
    }

    /// conf/example.yaml promises every key; a key added to a struct must be
    /// documented there (set, or commented out when it cannot be on at once).
    #[test]
    fn example_config_shows_every_key() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/example.yaml");
        let example = std::fs::read_to_string(&path).unwrap();
        let keys = [
            keys_of::<RawConfig>(),
            keys_of::<RawAdmin>(),
            keys_of::<RawAccessLog>(),
            keys_of::<RawListener>(),
            keys_of::<RawSniRoute>(),
            keys_of::<RawLimits>(),
            keys_of::<RawPool>(),
            keys_of::<RawBackendEntry>(),
            keys_of::<RawHealthCheck>(),
        ];
        for key in keys.concat() {
            let shown = example.lines().any(|line| {
                let line = line.trim_start();
                // Commented-out blocks keep their indentation after the "# ".
                let line = line.strip_prefix("# ").unwrap_or(line).trim_start();
                let line = line.strip_prefix("- ").unwrap_or(line);
                line.starts_with(&format!("{key}:"))
            });
            assert!(shown, "conf/example.yaml does not show {key}");
        }
    }

    #[test]
    fn wrong_shapes_keep_later_indices_right() {
        let mut errors = Collector::default();
        let raw = parse(
            "listeners:\n  - just-a-string\n  -\n  - name: ok\npools: {name: p}\n",
            &mut errors,
        )
        .expect("salvageable");
        let listeners = raw.listeners.expect("listeners kept");
        assert_eq!(listeners.len(), 3);
        assert!(listeners[0].is_none() && listeners[1].is_none() && listeners[2].is_some());
        assert!(raw.pools.is_none());
        let shown = errors.finish().to_string();
        assert!(
            shown.contains(r#"listeners[0]: "just-a-string" is a string, not a listener"#),
            "{shown}"
        );
        assert!(
            shown.contains("listeners[1]: is an empty list entry"),
            "{shown}"
        );
        assert!(shown.contains("pools: is a mapping, not a list"), "{shown}");
    }

    #[test]
    fn syntax_errors_give_line_and_column() {
        let errors = errors_of("listeners:\n  - name: a\n   listen: x\n");
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("line 3, column 4: is not valid YAML"),
            "{errors:?}"
        );
    }

    #[test]
    fn yaml_slips_of_the_new_keys_get_their_own_fix() {
        let errors = errors_of("listeners:\n  - sni:\n      - { match: *.example.com, pool: p }\n");
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("line 3, column 19: is not valid YAML")
                && errors[0].ends_with(
                    r#"a value starting with * is read as a YAML alias: quote it, e.g. match: "*.example.com""#
                ),
            "{errors:?}"
        );
        let errors = errors_of("listeners:\n  - allow: [10.0.0.0/8, ::1/128]\n");
        assert!(
            errors[0].ends_with(
                r#"quote IPv6 addresses inside [ ] and { }, e.g. [10.0.0.0/8, "::1/128"]"#
            ),
            "{errors:?}"
        );
        // Unquoted in block style, it is fine YAML.
        assert!(errors_of("listeners:\n  - allow:\n      - ::1/128\n").is_empty());
    }

    #[test]
    fn odd_documents_are_explained() {
        assert!(errors_of("")[0].contains("the config is empty"));
        assert!(errors_of("# only a comment\n")[0].contains("the config is empty"));
        assert!(errors_of("- a\n- b\n")[0].contains("(top level): is a list, not a mapping"));
        assert!(errors_of("42")[0].contains(r#"(top level): "42" is a number"#));
        assert!(errors_of("a: 1\n---\nb: 2\n")[0].contains("more than one document"));
        assert!(errors_of("1: x\n")[0].contains(r#""1" is a number, not a key name"#));
        assert!(errors_of("admin: 5\n")[0].contains(r#"admin: "5" is a number, not a mapping"#));
    }

    #[test]
    fn merge_keys_are_applied_before_checking() {
        let mut errors = Collector::default();
        let raw = parse(
            "x-defaults: &d { connect_timeout: 1s }\nlisteners:\n  - <<: *d\n    name: a\n",
            &mut errors,
        )
        .unwrap();
        // The anchor's home key is unknown, but the merged listener is fine.
        let shown = errors.finish().to_string();
        assert_eq!(shown.lines().count(), 1, "{shown}");
        assert!(shown.starts_with("x-defaults: is not a known key"));
        let listener = raw.listeners.unwrap().remove(0).unwrap();
        assert_eq!(listener.connect_timeout, Some(Value::from("1s")));
    }

    #[test]
    fn typo_suggestions_are_conservative() {
        assert_eq!(closest("wbe", &["web", "api"]), Some("web"));
        assert_eq!(
            closest("conect_timeout", &["connect_timeout", "idle_timeout"]),
            Some("connect_timeout")
        );
        assert_eq!(closest("pool", &["pools"]), Some("pools"));
        assert_eq!(closest("xyz", &["workers", "pools"]), None);
        assert_eq!(closest("ab", &["a", "pools"]), None);
    }
}
