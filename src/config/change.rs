//! What differs between two valid configs, so a reload touches only what
//! changed (STYLE.md rule 6): certificate stores, listeners, pools and
//! backends added, removed or changed, and which top-level settings changed —
//! those a running process can take at once, and those that need a restart.
//!
//! Pure and total: no I/O, no clock, and nothing here decides whether a
//! change is *allowed* (that is [`Config::check_with`] and reload's business).
//!
//! # How reload is meant to use it
//!
//! `control::reload::apply` holds the running config and is handed a new one
//! that passed `check_with`. It computes `ChangeSet::between(&running, &new)`
//! and then:
//!
//! 1. if [`ChangeSet::needs_restart`] names any setting, refuses the reload
//!    with those keys (what `restart_needed` does today), changing nothing;
//! 2. binds every [`Change::Added`] listener and every [`Change::Changed`]
//!    one whose [`ListenerDiff::rebind`] is set, all before publishing, so a
//!    failed bind changes nothing; a changed listener without `rebind` and
//!    every listener the set does not mention keep their sockets (match them
//!    by name);
//! 3. publishes one new snapshot. Pool and backend changes need nothing more:
//!    `Snapshot::build` carries health and counters over for a backend of
//!    the same pool name and address, which is exactly a backend that is
//!    unchanged or [`Change::Changed`] without `"address"` in its fields; an
//!    `"address"` change is a new backend under an old name and starts afresh;
//!    A [`Change`] in [`ChangeSet::tls`] never needs a restart: the TLS
//!    module loads the changed stores (before publishing, so a bad file
//!    changes nothing) and the listeners naming them take the new
//!    certificates for new handshakes. Certificate files rewritten in place
//!    look unchanged here (the paths are the same): reload should load every
//!    store's files anew whatever this says;
//! 4. stops accepting on [`Change::Removed`] listeners and on the old sockets
//!    of rebound ones (their connections run on), and applies the live
//!    settings: the next shutdown uses the new `shutdown_timeout`, the access
//!    log is reopened when [`Setting::AccessLog`] changed, the admin token is
//!    re-read when [`Setting::AdminAccess`] changed.
//!
//! Every field of the model is compared by name below; a unit test builds
//! each model struct with every field changed (a struct literal, so a field
//! added to the model does not compile there) and holds this file to listing
//! them all.

use super::model::{
    AdminConfig, BackendConfig, Config, HttpListener, HttpRoute, PoolConfig, PoolId, SniRoute,
    TlsStoreConfig,
};

/// Everything that differs between an old and a new config. Items that are
/// the same in both are not listed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChangeSet {
    /// Top-level settings that differ, in the order of [`Setting::ALL`].
    pub settings: Vec<Setting>,
    /// Certificate stores (`tls:`), matched by name: indices into the old
    /// and new `Config::tls`. Never needs a restart.
    pub tls: Vec<Change<StoreDiff>>,
    /// Listeners, matched by name: indices into the old and new
    /// `Config::listeners`.
    pub listeners: Vec<Change<ListenerDiff>>,
    /// Pools, matched by name: indices into the old and new `Config::pools`.
    pub pools: Vec<Change<PoolDiff>>,
}

/// One item that is only in the new config, only in the old, or in both and
/// different. Indices point into the config each side comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change<D> {
    /// Only in the new config: its index there.
    Added(usize),
    /// Only in the old config: its index there.
    Removed(usize),
    /// In both, and different in what `diff` says.
    Changed { old: usize, new: usize, diff: D },
}

/// How a listener with the same name differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerDiff {
    /// Its address, backlog or mode changed: it needs a new socket.
    /// Otherwise its socket stays and only the settings in `fields` change.
    pub rebind: bool,
    /// The config keys that differ (`listen`, `connect_timeout`, `sni`...),
    /// in the order the model has them. The `mode: http` keys (`tls`,
    /// `timeouts`, `request_limits`, `forwarded`, `routes`,
    /// `redirect_https`) are compared when both sides are HTTP listeners; a
    /// listener that changes mode lists `mode` instead.
    pub fields: Vec<&'static str>,
}

/// How a certificate store with the same name differs: the keys that
/// changed (`certs`, `self_signed`, `default`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreDiff {
    pub fields: Vec<&'static str>,
}

/// How a pool with the same name differs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PoolDiff {
    /// Pool-level keys that differ (`algorithm`, `health_check`...).
    pub fields: Vec<&'static str>,
    /// Backends matched by address, then by name: indices into the old and
    /// new pool's `backends`.
    pub backends: Vec<Change<BackendDiff>>,
    /// The backends that stay are listed in another order.
    pub reordered: bool,
}

/// How a backend that stays differs: the keys that changed (`weight`,
/// `drain`...; `address` when the name stayed and the address moved, `name`
/// when the address stayed and is written another way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendDiff {
    pub fields: Vec<&'static str>,
}

/// A top-level setting that changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Setting {
    /// `workers`: threads are started once. Needs a restart.
    Workers,
    /// `dataplane`: the engine is chosen once. Needs a restart.
    Dataplane,
    /// `admin.listen`, or the `admin:` section added or removed: the admin
    /// socket is bound once. Needs a restart.
    AdminListen,
    /// `admin.token_file`, `allowed_hosts`, `allow_unauthenticated`: live.
    AdminAccess,
    /// `shutdown_timeout`: live, read when a shutdown starts.
    ShutdownTimeout,
    /// `access_log`: live, the log is reopened.
    AccessLog,
    /// `limits_table_size`: the table is allocated once and shared by every
    /// worker; swapping it would drop every client's state. Needs a restart.
    LimitsTableSize,
}

impl Setting {
    /// Every setting, in the order a config file lists them.
    pub const ALL: [Setting; 7] = [
        Setting::Workers,
        Setting::Dataplane,
        Setting::AdminListen,
        Setting::AdminAccess,
        Setting::ShutdownTimeout,
        Setting::AccessLog,
        Setting::LimitsTableSize,
    ];

    /// The key as a config file writes it.
    pub fn key(self) -> &'static str {
        match self {
            Setting::Workers => "workers",
            Setting::Dataplane => "dataplane",
            Setting::AdminListen => "admin.listen",
            Setting::AdminAccess => {
                "admin.token_file, admin.allowed_hosts, admin.allow_unauthenticated"
            }
            Setting::ShutdownTimeout => "shutdown_timeout",
            Setting::AccessLog => "access_log",
            Setting::LimitsTableSize => "limits_table_size",
        }
    }

    /// Whether a running process cannot take this change.
    pub fn needs_restart(self) -> bool {
        match self {
            Setting::Workers
            | Setting::Dataplane
            | Setting::AdminListen
            | Setting::LimitsTableSize => true,
            Setting::AdminAccess | Setting::ShutdownTimeout | Setting::AccessLog => false,
        }
    }

    fn differs(self, old: &Config, new: &Config) -> bool {
        let listen = |c: &Config| c.admin.as_ref().map(|a| a.listen);
        match self {
            Setting::Workers => old.workers != new.workers,
            Setting::Dataplane => old.dataplane != new.dataplane,
            Setting::AdminListen => listen(old) != listen(new),
            Setting::AdminAccess => match (&old.admin, &new.admin) {
                (Some(old), Some(new)) => admin_access(old) != admin_access(new),
                // Added or removed: that is an `admin.listen` change.
                _ => false,
            },
            Setting::ShutdownTimeout => old.shutdown_timeout != new.shutdown_timeout,
            Setting::AccessLog => old.access_log != new.access_log,
            Setting::LimitsTableSize => old.limits_table_size != new.limits_table_size,
        }
    }
}

/// The admin settings a running API takes at once.
fn admin_access(admin: &AdminConfig) -> impl PartialEq + '_ {
    (
        &admin.token_file,
        &admin.allowed_hosts,
        admin.allow_unauthenticated,
    )
}

impl ChangeSet {
    /// What changes when `new` replaces `old`. Both should have passed
    /// [`Config::check`]; names are unique in each.
    pub fn between(old: &Config, new: &Config) -> ChangeSet {
        let settings = Setting::ALL
            .into_iter()
            .filter(|s| s.differs(old, new))
            .collect();
        let tls = by_name(&old.tls, &new.tls, |s| &s.name)
            .into_iter()
            .filter_map(|pair| pair.diff(|o, n| store_diff(&old.tls[o], &new.tls[n])))
            .collect();
        let listeners = by_name(&old.listeners, &new.listeners, |l| &l.name)
            .into_iter()
            .filter_map(|pair| pair.diff(|o, n| listener_diff(old, o, new, n)))
            .collect();
        let pools = by_name(&old.pools, &new.pools, |p| &p.name)
            .into_iter()
            .filter_map(|pair| pair.diff(|o, n| pool_diff(&old.pools[o], &new.pools[n])))
            .collect();
        ChangeSet {
            settings,
            tls,
            listeners,
            pools,
        }
    }

    /// Whether the two configs are the same in every way reload cares about.
    pub fn is_empty(&self) -> bool {
        self.settings.is_empty()
            && self.tls.is_empty()
            && self.listeners.is_empty()
            && self.pools.is_empty()
    }

    /// The changed settings a running process cannot take.
    pub fn needs_restart(&self) -> Vec<Setting> {
        self.settings
            .iter()
            .copied()
            .filter(|s| s.needs_restart())
            .collect()
    }
}

/// Two lists paired up: each item of `new` with the old one of its key.
enum Pair {
    Both(usize, usize),
    Added(usize),
    Removed(usize),
}

impl Pair {
    /// The change, if any: `diff` says how two matched items differ (`None`:
    /// they do not).
    fn diff<D>(self, diff: impl FnOnce(usize, usize) -> Option<D>) -> Option<Change<D>> {
        match self {
            Pair::Added(new) => Some(Change::Added(new)),
            Pair::Removed(old) => Some(Change::Removed(old)),
            Pair::Both(old, new) => diff(old, new).map(|diff| Change::Changed { old, new, diff }),
        }
    }
}

/// Pairs `old` and `new` items by the key `of` gives: matches and added ones
/// in the new list's order, then removed ones in the old list's order.
fn by_name<T>(old: &[T], new: &[T], of: impl Fn(&T) -> &String) -> Vec<Pair> {
    let mut matched = vec![false; old.len()];
    let mut pairs: Vec<Pair> = new
        .iter()
        .enumerate()
        .map(
            |(n, item)| match old.iter().position(|o| of(o) == of(item)) {
                Some(o) => {
                    matched[o] = true;
                    Pair::Both(o, n)
                }
                None => Pair::Added(n),
            },
        )
        .collect();
    pairs.extend((0..old.len()).filter(|&o| !matched[o]).map(Pair::Removed));
    pairs
}

/// The keys of `differs` that are true, in order.
fn keys(differs: &[(&'static str, bool)]) -> Vec<&'static str> {
    differs
        .iter()
        .filter(|(_, differs)| *differs)
        .map(|(key, _)| *key)
        .collect()
}

/// The name of pool `id` of `config`: pools are referred to by index inside a
/// config, and indices shift when pools are added or reordered.
fn pool_name(config: &Config, id: PoolId) -> Option<&str> {
    config.pools.get(id.0).map(|p| p.name.as_str())
}

/// A listener's SNI routes with their pools by name, to compare across configs.
fn routes<'a>(config: &'a Config, routes: &'a [SniRoute]) -> Vec<impl PartialEq + 'a> {
    routes
        .iter()
        .map(|route| {
            let SniRoute {
                pattern,
                alpn,
                pool,
            } = route;
            (pattern, alpn, pool_name(config, *pool))
        })
        .collect()
}

/// An HTTP listener's routes with their pools by name.
fn http_routes<'a>(config: &'a Config, routes: &'a [HttpRoute]) -> Vec<impl PartialEq + 'a> {
    routes
        .iter()
        .map(|route| {
            let HttpRoute {
                host,
                path_prefix,
                pool,
                sticky,
                rate_limits,
            } = route;
            (
                host,
                path_prefix,
                pool_name(config, *pool),
                sticky,
                rate_limits,
            )
        })
        .collect()
}

/// An HTTP listener's TLS settings with the store by name.
fn listener_tls<'a>(config: &'a Config, http: &'a HttpListener) -> Option<impl PartialEq + 'a> {
    http.tls.as_ref().map(|tls| {
        let store = config.tls.get(tls.store).map(|s| s.name.as_str());
        (store, &tls.alpn, tls.min_version)
    })
}

/// The `mode: http` keys that differ between two HTTP listeners.
fn http_diff(old: &Config, a: &HttpListener, new: &Config, b: &HttpListener) -> Vec<&'static str> {
    keys(&[
        ("tls", listener_tls(old, a) != listener_tls(new, b)),
        ("timeouts", a.timeouts != b.timeouts),
        ("request_limits", a.request_limits != b.request_limits),
        ("forwarded", a.trusted_proxies != b.trusted_proxies),
        (
            "routes",
            http_routes(old, &a.routes) != http_routes(new, &b.routes),
        ),
        ("redirect_https", a.redirect_https != b.redirect_https),
    ])
}

fn listener_diff(old: &Config, o: usize, new: &Config, n: usize) -> Option<ListenerDiff> {
    let (a, b) = (&old.listeners[o], &new.listeners[n]);
    let http = match (a.http.as_deref(), b.http.as_deref()) {
        (Some(x), Some(y)) => http_diff(old, x, new, y),
        _ => Vec::new(),
    };
    let mut fields = keys(&[
        ("listen", a.listen != b.listen),
        ("mode", a.http.is_some() != b.http.is_some()),
        (
            "pool",
            a.pool.and_then(|p| pool_name(old, p)) != b.pool.and_then(|p| pool_name(new, p)),
        ),
        ("connect_timeout", a.connect_timeout != b.connect_timeout),
        ("idle_timeout", a.idle_timeout != b.idle_timeout),
        ("retries", a.retries != b.retries),
        ("max_connections", a.max_connections != b.max_connections),
        ("backlog", a.backlog != b.backlog),
        (
            "sni",
            routes(old, &a.sni_routes) != routes(new, &b.sni_routes),
        ),
        ("require_sni", a.require_sni != b.require_sni),
        (
            "tls_inspect_timeout",
            a.tls_inspect_timeout != b.tls_inspect_timeout,
        ),
        ("proxy_protocol", a.proxy_protocol != b.proxy_protocol),
        (
            "accept_proxy_protocol",
            a.accept_proxy_protocol != b.accept_proxy_protocol,
        ),
        ("trusted_proxies", a.trusted_proxies != b.trusted_proxies),
        (
            "proxy_header_timeout",
            a.proxy_header_timeout != b.proxy_header_timeout,
        ),
        ("allow", a.allow != b.allow),
        ("deny", a.deny != b.deny),
        ("limits", a.limits != b.limits),
    ]);
    fields.extend(http);
    (!fields.is_empty()).then(|| ListenerDiff {
        // WHY: SO_REUSEPORT sockets are bound with their backlog, so a new
        // backlog needs new sockets just as a new address does; and tcp
        // listeners are served by the io_uring workers while http ones are
        // served by the HTTP plane, each owning its sockets.
        rebind: fields
            .iter()
            .any(|f| matches!(*f, "listen" | "backlog" | "mode")),
        fields,
    })
}

fn store_diff(a: &TlsStoreConfig, b: &TlsStoreConfig) -> Option<StoreDiff> {
    let fields = keys(&[
        ("certs", a.certs != b.certs),
        ("self_signed", a.self_signed != b.self_signed),
        ("default", a.default != b.default),
    ]);
    (!fields.is_empty()).then_some(StoreDiff { fields })
}

fn pool_diff(a: &PoolConfig, b: &PoolConfig) -> Option<PoolDiff> {
    let fields = keys(&[
        ("algorithm", a.algorithm != b.algorithm),
        ("health_check", a.health_check != b.health_check),
        ("eject_after", a.eject_after != b.eject_after),
        ("ejection_time", a.ejection_time != b.ejection_time),
        (
            "max_ejection_time",
            a.max_ejection_time != b.max_ejection_time,
        ),
        (
            "max_ejection_percent",
            a.max_ejection_percent != b.max_ejection_percent,
        ),
        ("on_all_down", a.on_all_down != b.on_all_down),
        ("slow_start", a.slow_start != b.slow_start),
        (
            "hash_balance_factor",
            a.hash_balance_factor != b.hash_balance_factor,
        ),
        ("hash_table_size", a.hash_table_size != b.hash_table_size),
        ("protocol", a.protocol != b.protocol),
        ("backend_tls", a.backend_tls != b.backend_tls),
    ]);
    let pairs = backend_pairs(&a.backends, &b.backends);
    // The old positions of the backends that stay, in their new order.
    let kept: Vec<usize> = pairs
        .iter()
        .filter_map(|pair| match pair {
            Pair::Both(o, _) => Some(*o),
            _ => None,
        })
        .collect();
    let reordered = kept.windows(2).any(|w| w[0] > w[1]);
    let backends: Vec<Change<BackendDiff>> = pairs
        .into_iter()
        .filter_map(|pair| pair.diff(|o, n| backend_diff(&a.backends[o], &b.backends[n])))
        .collect();
    let diff = PoolDiff {
        fields,
        backends,
        reordered,
    };
    (diff != PoolDiff::default()).then_some(diff)
}

/// Backends paired by address first (health and counters follow the
/// address, see `Snapshot::build`), then by name among the rest (the same
/// backend whose name now resolves elsewhere).
fn backend_pairs(old: &[BackendConfig], new: &[BackendConfig]) -> Vec<Pair> {
    let mut matched = vec![false; old.len()];
    let mut take = |found: Option<usize>| {
        let o = found?;
        matched[o] = true;
        Some(o)
    };
    let by_addr: Vec<Option<usize>> = new
        .iter()
        .map(|b| take(old.iter().position(|o| o.addr == b.addr)))
        .collect();
    let mut pairs: Vec<Pair> = Vec::with_capacity(new.len());
    for (n, b) in new.iter().enumerate() {
        let o = by_addr[n].or_else(|| {
            let free = |o: &usize| !matched[*o] && old[*o].name == b.name;
            let o = (0..old.len()).find(free)?;
            matched[o] = true;
            Some(o)
        });
        pairs.push(match o {
            Some(o) => Pair::Both(o, n),
            None => Pair::Added(n),
        });
    }
    pairs.extend((0..old.len()).filter(|&o| !matched[o]).map(Pair::Removed));
    pairs
}

fn backend_diff(a: &BackendConfig, b: &BackendConfig) -> Option<BackendDiff> {
    let fields = keys(&[
        ("name", a.name != b.name),
        ("address", a.addr != b.addr),
        ("weight", a.weight != b.weight),
        ("backup", a.backup != b.backup),
        ("max_connections", a.max_connections != b.max_connections),
        ("drain", a.drain != b.drain),
        ("disabled", a.disabled != b.disabled),
    ]);
    (!fields.is_empty()).then_some(BackendDiff { fields })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::model::*;
    use crate::config::{parse_str, TEST_CONFIG};

    /// The changes from TEST_CONFIG to TEST_CONFIG with each `(from, to)` replaced.
    fn changes(edits: &[(&str, &str)]) -> ChangeSet {
        let mut yaml = TEST_CONFIG.to_owned();
        for (from, to) in edits {
            assert!(yaml.contains(from), "{from:?} is not in the config");
            yaml = yaml.replacen(from, to, 1);
        }
        let old = parse_str(TEST_CONFIG).unwrap();
        let new = parse_str(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        ChangeSet::between(&old, &new)
    }

    fn changed<D>(old: usize, new: usize, diff: D) -> Change<D> {
        Change::Changed { old, new, diff }
    }

    fn listener(rebind: bool, fields: &[&'static str]) -> ListenerDiff {
        let fields = fields.to_vec();
        ListenerDiff { rebind, fields }
    }

    fn backend(fields: &[&'static str]) -> BackendDiff {
        let fields = fields.to_vec();
        BackendDiff { fields }
    }

    /// The diff of the only pool that changed.
    fn pool_diff_of(set: &ChangeSet) -> &PoolDiff {
        match &set.pools[..] {
            [Change::Changed { diff, .. }] => diff,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_same_config_changes_nothing() {
        let set = changes(&[]);
        assert!(set.is_empty(), "{set:?}");
        assert_eq!(set, ChangeSet::default());
    }

    #[test]
    fn listeners_are_added_and_removed_by_name() {
        let set = changes(&[("name: tls", "name: tls2")]);
        assert_eq!(set.listeners, [Change::Added(1), Change::Removed(1)]);
        let more = "  - { name: more, listen: 127.0.0.1:8081, pool: web }\npools:\n";
        let set = changes(&[("pools:\n", more)]);
        assert_eq!(set.listeners, [Change::Added(2)]);
        assert!(set.pools.is_empty() && set.settings.is_empty());
    }

    #[test]
    fn a_new_address_or_backlog_needs_a_new_socket() {
        let set = changes(&[("127.0.0.1:8080", "127.0.0.1:8090")]);
        assert_eq!(set.listeners, [changed(0, 0, listener(true, &["listen"]))]);
        let set = changes(&[("pool: web }", "pool: web, backlog: 100 }")]);
        assert_eq!(set.listeners, [changed(0, 0, listener(true, &["backlog"]))]);
    }

    #[test]
    fn other_listener_settings_change_without_a_new_socket() {
        let set = changes(&[(
            "pool: web }",
            "pool: web, connect_timeout: 1s, allow: [10.0.0.0/8], limits: { per_ip_connections: 5 } }",
        )]);
        let fields = ["connect_timeout", "allow", "limits"];
        assert_eq!(set.listeners, [changed(0, 0, listener(false, &fields))]);
        // Pointed at another pool, directly and through an SNI route.
        let set = changes(&[
            ("pool: web }", "pool: api }"),
            ("pool: api }]", "pool: web }]"),
        ]);
        assert_eq!(
            set.listeners,
            [
                changed(0, 0, listener(false, &["pool"])),
                changed(1, 1, listener(false, &["sni"])),
            ]
        );
    }

    #[test]
    fn pools_listed_in_another_order_change_nothing() {
        let web = "  - name: web\n    backends: [127.0.0.1:9001, 127.0.0.1:9002, { address: 127.0.0.1:9003, weight: 2 }]\n";
        let reordered = format!("{}{web}", TEST_CONFIG.replacen(web, "", 1));
        let old = parse_str(TEST_CONFIG).unwrap();
        let new = parse_str(&reordered).unwrap();
        // Every pool index the listeners hold shifts; the pools they name do not.
        assert_ne!(old.listeners[0].pool, new.listeners[0].pool);
        assert_eq!(ChangeSet::between(&old, &new), ChangeSet::default());
    }

    #[test]
    fn pools_are_added_removed_and_changed_by_name() {
        let set = changes(&[
            ("  - name: api\n", "  - name: api2\n"),
            ("pool: api\n", "pool: api2\n"),
            ("pool: api }]", "pool: api2 }]"),
        ]);
        assert_eq!(set.pools, [Change::Added(1), Change::Removed(1)]);
        let set = changes(&[(
            "    algorithm: ip_hash\n",
            "    algorithm: p2c\n    health_check: { kind: tcp }\n",
        )]);
        let diff = PoolDiff {
            fields: vec!["algorithm", "health_check"],
            ..PoolDiff::default()
        };
        assert_eq!(set.pools, [changed(1, 1, diff)]);
    }

    #[test]
    fn backends_are_added_removed_and_changed_by_address() {
        let set = changes(&[(
            "127.0.0.1:9001, 127.0.0.1:9002, { address: 127.0.0.1:9003, weight: 2 }",
            "127.0.0.1:9001, { address: 127.0.0.1:9003, weight: 5, drain: true }, 127.0.0.1:9004",
        )]);
        let diff = pool_diff_of(&set);
        assert_eq!(
            diff.backends,
            [
                changed(2, 1, backend(&["weight", "drain"])),
                Change::Added(2),
                Change::Removed(1),
            ]
        );
        assert!(diff.fields.is_empty() && !diff.reordered);
    }

    #[test]
    fn a_backend_keeps_its_identity_by_address_then_by_name() {
        // The same text with spaces: the same backend.
        assert!(changes(&[("127.0.0.1:9001,", "'127.0.0.1:9001 ',")]).is_empty());
        // Another address under another name: another backend.
        let set = changes(&[("127.0.0.1:9001,", "'[::ffff:127.0.0.1]:9001',")]);
        let removed_and_added = [Change::Added(0), Change::Removed(0)];
        assert_eq!(pool_diff_of(&set).backends, removed_and_added);
        // The same name at a new address (DNS moved it): changed, "address".
        let old = parse_str(TEST_CONFIG).unwrap();
        let mut new = old.clone();
        new.pools[1].backends[0].addr = "127.0.0.2:9101".parse().unwrap();
        let set = ChangeSet::between(&old, &new);
        assert_eq!(
            pool_diff_of(&set).backends,
            [changed(0, 0, backend(&["address"]))]
        );
        // The same address under a new name: changed, "name".
        let mut new = old.clone();
        new.pools[1].backends[0].name = "api.internal:9101".into();
        let set = ChangeSet::between(&old, &new);
        assert_eq!(
            pool_diff_of(&set).backends,
            [changed(0, 0, backend(&["name"]))]
        );
    }

    #[test]
    fn backends_listed_in_another_order_are_only_reordered() {
        let set = changes(&[(
            "127.0.0.1:9001, 127.0.0.1:9002,",
            "127.0.0.1:9002, 127.0.0.1:9001,",
        )]);
        let diff = PoolDiff {
            reordered: true,
            ..PoolDiff::default()
        };
        assert_eq!(set.pools, [changed(0, 0, diff)]);
    }

    #[test]
    fn workers_limits_table_and_admin_listen_need_a_restart() {
        let set = changes(&[
            (
                "workers: 2",
                "workers: 3\ndataplane: epoll\nlimits_table_size: 2048",
            ),
            ("listen: 127.0.0.1:9090", "listen: 127.0.0.1:9091"),
        ]);
        let restart = [
            Setting::Workers,
            Setting::Dataplane,
            Setting::AdminListen,
            Setting::LimitsTableSize,
        ];
        assert_eq!(set.settings, restart);
        assert_eq!(set.needs_restart(), restart);
        assert!(set.listeners.is_empty() && set.pools.is_empty());
        // Removing the admin API is an admin.listen change too.
        let set = changes(&[("admin: { listen: 127.0.0.1:9090 }\n", "")]);
        assert_eq!(set.settings, [Setting::AdminListen]);
    }

    #[test]
    fn shutdown_timeout_access_log_and_admin_access_apply_live() {
        let live = "shutdown_timeout: 5s\naccess_log: { path: stderr }\n";
        let admin = "admin: { listen: 127.0.0.1:9090 }\n";
        let token = "admin: { listen: 127.0.0.1:9090, token_file: /etc/spliced/token }\n";
        let set = changes(&[(admin, &format!("{token}{live}"))]);
        let all = [
            Setting::AdminAccess,
            Setting::ShutdownTimeout,
            Setting::AccessLog,
        ];
        assert_eq!(set.settings, all);
        assert!(set.needs_restart().is_empty());
        let set = changes(&[(admin, &format!("{admin}{live}"))]);
        assert_eq!(set.settings, [Setting::ShutdownTimeout, Setting::AccessLog]);
    }

    /// TEST_CONFIG with a store and two HTTP listeners, and `(from, to)`
    /// replaced in the second.
    const HTTP: &str = "\
tls:
  - { name: main, self_signed: [localhost] }
  - { name: other, self_signed: [other.localhost] }
listeners:
  - name: https
    listen: 127.0.0.1:8443
    mode: http
    tls: { store: main }
    routes: [{ match: { path_prefix: /api/ }, pool: api }]
  - { name: http, listen: 127.0.0.1:8080, mode: http, redirect_https: 8443 }
pools:
  - { name: web, backends: [127.0.0.1:9001] }
  - { name: api, backends: [127.0.0.1:9002] }
";

    fn http_changes(edits: &[(&str, &str)]) -> ChangeSet {
        let mut yaml = HTTP.to_owned();
        for (from, to) in edits {
            assert!(yaml.contains(from), "{from:?} is not in the config");
            yaml = yaml.replacen(from, to, 1);
        }
        let old = parse_str(HTTP).unwrap();
        let new = parse_str(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        ChangeSet::between(&old, &new)
    }

    #[test]
    fn http_settings_are_listener_changes() {
        assert!(http_changes(&[]).is_empty());
        let set = http_changes(&[
            (
                "tls: { store: main }",
                "tls: { store: other, min_version: '1.3' }\n    timeouts: { idle: 5s }",
            ),
            (
                "pool: api }]",
                "pool: web }]\n    forwarded: { trusted_proxies: [10.0.0.0/8] }",
            ),
            ("redirect_https: 8443", "redirect_https: 443"),
        ]);
        assert_eq!(
            set.listeners,
            [
                changed(
                    0,
                    0,
                    listener(false, &["tls", "timeouts", "forwarded", "routes"])
                ),
                changed(1, 1, listener(false, &["redirect_https"])),
            ]
        );
        assert!(set.tls.is_empty() && set.pools.is_empty());
        // Stores listed in another order: the listener names the same store.
        let set = http_changes(&[
            ("  - { name: main, self_signed: [localhost] }\n", ""),
            (
                "self_signed: [other.localhost] }\n",
                "self_signed: [other.localhost] }\n  - { name: main, self_signed: [localhost] }\n",
            ),
        ]);
        assert!(set.is_empty(), "{set:?}");
    }

    #[test]
    fn a_listener_that_changes_mode_needs_a_new_socket() {
        let set = http_changes(&[(
            "{ name: http, listen: 127.0.0.1:8080, mode: http, redirect_https: 8443 }",
            "{ name: http, listen: 127.0.0.1:8080, pool: web }",
        )]);
        assert_eq!(
            set.listeners,
            [changed(1, 1, listener(true, &["mode", "pool"]))]
        );
    }

    #[test]
    fn stores_are_added_removed_and_changed_by_name_without_a_restart() {
        let set = http_changes(&[(
            "{ name: other, self_signed: [other.localhost] }",
            "{ name: other, self_signed: [a.localhost], default: a.localhost }",
        )]);
        let diff = StoreDiff {
            fields: vec!["self_signed", "default"],
        };
        assert_eq!(set.tls, [changed(1, 1, diff)]);
        assert!(set.needs_restart().is_empty() && set.listeners.is_empty());
        let set = http_changes(&[("name: other,", "name: third,")]);
        assert_eq!(set.tls, [Change::Added(1), Change::Removed(1)]);
    }

    #[test]
    fn pool_protocol_and_backend_tls_are_pool_changes() {
        let set = http_changes(&[(
            "{ name: api, backends: [127.0.0.1:9002] }",
            "{ name: api, protocol: h2, backend_tls: { verify: false }, backends: [127.0.0.1:9002] }",
        )]);
        let diff = PoolDiff {
            fields: vec!["protocol", "backend_tls"],
            ..PoolDiff::default()
        };
        assert_eq!(set.pools, [changed(1, 1, diff)]);
    }

    /// Each model struct rebuilt with every field changed. The struct literals
    /// name every field, so a field added to the model stops this compiling
    /// until it is added here, and then to the comparisons above.
    #[test]
    fn every_field_of_the_model_is_compared() {
        let old = parse_str(TEST_CONFIG).unwrap();
        let a = &old.listeners[1];
        let l = ListenerConfig {
            name: a.name.clone(),
            listen: "127.0.0.1:1".parse().unwrap(),
            pool: Some(PoolId(0)),
            connect_timeout: Duration::from_secs(9),
            idle_timeout: Duration::from_secs(9),
            retries: 9,
            max_connections: 9,
            backlog: 9,
            sni_routes: vec![],
            require_sni: true,
            tls_inspect_timeout: Duration::from_secs(9),
            proxy_protocol: ProxyProtocolSend::V1,
            accept_proxy_protocol: ProxyProtocolAccept::V1,
            trusted_proxies: vec![Cidr {
                addr: [10, 0, 0, 0].into(),
                prefix: 8,
            }],
            proxy_header_timeout: Duration::from_secs(9),
            allow: vec![],
            deny: vec![Cidr {
                addr: [10, 0, 0, 0].into(),
                prefix: 8,
            }],
            limits: Some(Limits {
                per_ip_rate: None,
                per_ip_burst: None,
                per_ip_connections: Some(1),
                per_ip_bandwidth: None,
                action: LimitAction::Reject,
                tarpit_delay: Duration::from_secs(1),
                ipv6_prefix: 64,
            }),
            http: Some(Box::new(HttpListener {
                tls: None,
                redirect_https: None,
                timeouts: DEFAULT_HTTP_TIMEOUTS,
                request_limits: DEFAULT_REQUEST_LIMITS,
                trusted_proxies: vec![],
                routes: vec![],
            })),
        };
        let mut new = old.clone();
        new.listeners[1] = l;
        let diff = listener_diff(&old, 1, &new, 1).unwrap();
        // Every listener key but `name` (the identity) and `allow` (empty in
        // both), with `mode` for `http` (its keys are compared below).
        assert_eq!(diff.fields.len(), 17, "{diff:?}");

        let p = &old.pools[0];
        let pool = PoolConfig {
            name: p.name.clone(),
            algorithm: Algorithm::P2c,
            backends: p.backends.clone(),
            health_check: Some(HealthCheck {
                kind: HealthKind::Tcp {
                    send: None,
                    expect: None,
                },
                interval: Duration::from_secs(1),
                timeout: Duration::from_secs(1),
                rise: 1,
                fall: 1,
            }),
            eject_after: 9,
            ejection_time: Duration::from_secs(9),
            max_ejection_time: Duration::from_secs(99),
            max_ejection_percent: 9,
            on_all_down: OnAllDown::Refuse,
            slow_start: Duration::from_secs(9),
            hash_balance_factor: Some(2.0),
            hash_table_size: 1021,
            protocol: UpstreamProtocol::H2,
            backend_tls: Some(BackendTls {
                sni: None,
                ca_file: None,
                verify: true,
            }),
        };
        assert_eq!(pool_diff(p, &pool).unwrap().fields.len(), 12);

        // Both sides HTTP listeners, every `mode: http` key changed.
        let store = |name: &str| TlsStoreConfig {
            name: name.into(),
            certs: vec![],
            self_signed: vec!["localhost".into()],
            default: None,
        };
        let mut old_http = old.clone();
        old_http.tls = vec![store("a"), store("b")];
        old_http.listeners[1].http = Some(Box::new(HttpListener {
            tls: None,
            redirect_https: None,
            timeouts: DEFAULT_HTTP_TIMEOUTS,
            request_limits: DEFAULT_REQUEST_LIMITS,
            trusted_proxies: vec![],
            routes: vec![],
        }));
        let mut new_http = old_http.clone();
        new_http.listeners[1].http = Some(Box::new(HttpListener {
            tls: Some(ListenerTls {
                store: 1,
                alpn: vec!["h2".into()],
                min_version: TlsVersion::V1_3,
            }),
            redirect_https: Some(8443),
            timeouts: HttpTimeouts {
                handshake: Duration::from_secs(9),
                request_header: Duration::from_secs(9),
                idle: Duration::from_secs(9),
                tunnel_idle: None,
                backend_response: Duration::from_secs(9),
            },
            request_limits: RequestLimits {
                max_header_bytes: 9999,
                max_body: 9,
                h2_max_streams: 9,
            },
            trusted_proxies: vec![Cidr {
                addr: [10, 0, 0, 0].into(),
                prefix: 8,
            }],
            routes: vec![HttpRoute {
                host: Some(SniPattern::Exact("a.example".into())),
                path_prefix: Some("/".into()),
                pool: PoolId(0),
                sticky: None,
                rate_limits: Vec::new(),
            }],
        }));
        let diff = listener_diff(&old_http, 1, &new_http, 1).unwrap();
        assert_eq!(
            diff.fields,
            [
                "tls",
                "timeouts",
                "request_limits",
                "forwarded",
                "routes",
                "redirect_https"
            ]
        );
        assert!(!diff.rebind);
        let s = TlsStoreConfig {
            name: "a".into(),
            certs: vec![CertFiles {
                cert: "/c".into(),
                key: "/k".into(),
            }],
            self_signed: vec![],
            default: Some("localhost".into()),
        };
        assert_eq!(store_diff(&old_http.tls[0], &s).unwrap().fields.len(), 3);

        let b = BackendConfig {
            name: "x:1".into(),
            addr: "10.9.9.9:1".parse().unwrap(),
            weight: 9,
            backup: true,
            max_connections: 9,
            drain: true,
            disabled: true,
        };
        let all = backend_diff(&p.backends[0], &b).unwrap().fields;
        assert_eq!(all.len(), 7, "{all:?}");

        let config = Config {
            workers: 9,
            dataplane: Dataplane::Epoll,
            admin: Some(AdminConfig {
                listen: "127.0.0.1:1".parse().unwrap(),
                token_file: Some("/x".into()),
                allowed_hosts: vec!["x".into()],
                allow_unauthenticated: true,
            }),
            shutdown_timeout: Duration::from_secs(9),
            access_log: Some(AccessLogConfig {
                target: AccessLogTarget::Stderr,
                format: AccessLogFormat::Logfmt,
            }),
            limits_table_size: 9999,
            tls: old.tls.clone(),
            listeners: old.listeners.clone(),
            pools: old.pools.clone(),
        };
        assert_eq!(ChangeSet::between(&old, &config).settings, Setting::ALL);
    }
}
