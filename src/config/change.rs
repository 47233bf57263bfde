//! What differs between two valid configs, so a reload touches only what
//! changed (STYLE.md rule 6): listeners, pools and backends added, removed or
//! changed, and which top-level settings changed — those a running process
//! can take at once, and those that need a restart.
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
//! 4. stops accepting on [`Change::Removed`] listeners and on the old sockets
//!    of rebound ones (their connections run on), and applies the live
//!    settings: the next shutdown uses the new `shutdown_timeout`, the access
//!    log is reopened when [`Setting::AccessLog`] changed, the admin token is
//!    re-read when [`Setting::AdminAccess`] changed.
//!
//! Every struct of the model is taken apart field by field below (no `..`),
//! so a field added to the model does not compile until this file says how
//! it changes.

use super::model::{
    AdminConfig, BackendConfig, Config, ListenerConfig, PoolConfig, PoolId, SniRoute,
};

/// Everything that differs between an old and a new config. Items that are
/// the same in both are not listed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChangeSet {
    /// Top-level settings that differ, in the order of [`Setting::ALL`].
    pub settings: Vec<Setting>,
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
    /// Its address or backlog changed: it needs a new socket. Otherwise its
    /// socket stays and only the settings in `fields` change.
    pub rebind: bool,
    /// The config keys that differ (`listen`, `connect_timeout`, `sni`...),
    /// in the order the model has them.
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
    pub const ALL: [Setting; 6] = [
        Setting::Workers,
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
            Setting::Workers | Setting::AdminListen | Setting::LimitsTableSize => true,
            Setting::AdminAccess | Setting::ShutdownTimeout | Setting::AccessLog => false,
        }
    }

    fn differs(self, old: &Config, new: &Config) -> bool {
        let listen = |c: &Config| c.admin.as_ref().map(|a| a.listen);
        match self {
            Setting::Workers => old.workers != new.workers,
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
    let AdminConfig {
        listen: _,
        token_file,
        allowed_hosts,
        allow_unauthenticated,
    } = admin;
    (token_file, allowed_hosts, allow_unauthenticated)
}

impl ChangeSet {
    /// What changes when `new` replaces `old`. Both should have passed
    /// [`Config::check`]; names are unique in each.
    pub fn between(old: &Config, new: &Config) -> ChangeSet {
        let Config {
            workers: _,
            admin: _,
            shutdown_timeout: _,
            access_log: _,
            limits_table_size: _,
            listeners,
            pools,
        } = new;
        let settings = Setting::ALL
            .into_iter()
            .filter(|s| s.differs(old, new))
            .collect();
        let listeners = by_name(&old.listeners, listeners, |l| &l.name)
            .into_iter()
            .filter_map(|pair| pair.diff(|o, n| listener_diff(old, o, new, n)))
            .collect();
        let pools = by_name(&old.pools, pools, |p| &p.name)
            .into_iter()
            .filter_map(|pair| pair.diff(|o, n| pool_diff(&old.pools[o], &pools[n])))
            .collect();
        ChangeSet {
            settings,
            listeners,
            pools,
        }
    }

    /// Whether the two configs are the same in every way reload cares about.
    pub fn is_empty(&self) -> bool {
        self.settings.is_empty() && self.listeners.is_empty() && self.pools.is_empty()
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

fn listener_diff(old: &Config, o: usize, new: &Config, n: usize) -> Option<ListenerDiff> {
    let before = &old.listeners[o];
    let ListenerConfig {
        name: _,
        listen,
        pool,
        connect_timeout,
        idle_timeout,
        retries,
        max_connections,
        backlog,
        sni_routes,
        require_sni,
        tls_inspect_timeout,
        proxy_protocol,
        accept_proxy_protocol,
        trusted_proxies,
        proxy_header_timeout,
        allow,
        deny,
        limits,
    } = &new.listeners[n];
    let fields = keys(&[
        ("listen", before.listen != *listen),
        ("pool", pool_name(old, before.pool) != pool_name(new, *pool)),
        (
            "connect_timeout",
            before.connect_timeout != *connect_timeout,
        ),
        ("idle_timeout", before.idle_timeout != *idle_timeout),
        ("retries", before.retries != *retries),
        (
            "max_connections",
            before.max_connections != *max_connections,
        ),
        ("backlog", before.backlog != *backlog),
        (
            "sni",
            routes(old, &before.sni_routes) != routes(new, sni_routes),
        ),
        ("require_sni", before.require_sni != *require_sni),
        (
            "tls_inspect_timeout",
            before.tls_inspect_timeout != *tls_inspect_timeout,
        ),
        ("proxy_protocol", before.proxy_protocol != *proxy_protocol),
        (
            "accept_proxy_protocol",
            before.accept_proxy_protocol != *accept_proxy_protocol,
        ),
        (
            "trusted_proxies",
            before.trusted_proxies != *trusted_proxies,
        ),
        (
            "proxy_header_timeout",
            before.proxy_header_timeout != *proxy_header_timeout,
        ),
        ("allow", before.allow != *allow),
        ("deny", before.deny != *deny),
        ("limits", before.limits != *limits),
    ]);
    (!fields.is_empty()).then(|| ListenerDiff {
        // WHY: SO_REUSEPORT sockets are bound with their backlog, so a new
        // backlog needs new sockets just as a new address does.
        rebind: fields.iter().any(|f| matches!(*f, "listen" | "backlog")),
        fields,
    })
}

fn pool_diff(before: &PoolConfig, after: &PoolConfig) -> Option<PoolDiff> {
    let PoolConfig {
        name: _,
        algorithm,
        backends,
        health_check,
        eject_after,
        ejection_time,
        max_ejection_time,
        max_ejection_percent,
        on_all_down,
        slow_start,
        hash_balance_factor,
        hash_table_size,
    } = after;
    let fields = keys(&[
        ("algorithm", before.algorithm != *algorithm),
        ("health_check", before.health_check != *health_check),
        ("eject_after", before.eject_after != *eject_after),
        ("ejection_time", before.ejection_time != *ejection_time),
        (
            "max_ejection_time",
            before.max_ejection_time != *max_ejection_time,
        ),
        (
            "max_ejection_percent",
            before.max_ejection_percent != *max_ejection_percent,
        ),
        ("on_all_down", before.on_all_down != *on_all_down),
        ("slow_start", before.slow_start != *slow_start),
        (
            "hash_balance_factor",
            before.hash_balance_factor != *hash_balance_factor,
        ),
        (
            "hash_table_size",
            before.hash_table_size != *hash_table_size,
        ),
    ]);
    let pairs = backend_pairs(&before.backends, backends);
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
        .filter_map(|pair| pair.diff(|o, n| backend_diff(&before.backends[o], &backends[n])))
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

fn backend_diff(before: &BackendConfig, after: &BackendConfig) -> Option<BackendDiff> {
    let BackendConfig {
        name,
        addr,
        weight,
        backup,
        max_connections,
        drain,
        disabled,
    } = after;
    let fields = keys(&[
        ("name", before.name != *name),
        ("address", before.addr != *addr),
        ("weight", before.weight != *weight),
        ("backup", before.backup != *backup),
        (
            "max_connections",
            before.max_connections != *max_connections,
        ),
        ("drain", before.drain != *drain),
        ("disabled", before.disabled != *disabled),
    ]);
    (!fields.is_empty()).then_some(BackendDiff { fields })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_str;

    const BASE: &str = "\
workers: 2
listeners:
  - { name: web, listen: 127.0.0.1:8080, pool: web }
  - name: tls
    listen: 127.0.0.1:8443
    pool: api
    sni: [{ match: api.example.com, pool: api }]
pools:
  - name: web
    backends: [127.0.0.1:9001, 127.0.0.1:9002, { address: 127.0.0.1:9003, weight: 2 }]
  - { name: api, backends: [127.0.0.1:9101] }
";

    /// The changes from BASE to BASE with each `(from, to)` replaced.
    fn changes(edits: &[(&str, &str)]) -> ChangeSet {
        let mut yaml = BASE.to_owned();
        for (from, to) in edits {
            assert!(yaml.contains(from), "{from:?} is not in the config");
            yaml = yaml.replacen(from, to, 1);
        }
        let old = parse_str(BASE).unwrap();
        let new = parse_str(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        ChangeSet::between(&old, &new)
    }

    fn listener(rebind: bool, fields: &[&'static str]) -> ListenerDiff {
        ListenerDiff {
            rebind,
            fields: fields.to_vec(),
        }
    }

    fn backend(fields: &[&'static str]) -> BackendDiff {
        BackendDiff {
            fields: fields.to_vec(),
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
        let set = changes(&[(
            "pools:\n",
            "  - { name: more, listen: 127.0.0.1:8081, pool: web }\npools:\n",
        )]);
        assert_eq!(set.listeners, [Change::Added(2)]);
        assert!(set.pools.is_empty() && set.settings.is_empty());
    }

    #[test]
    fn a_new_address_or_backlog_needs_a_new_socket() {
        let set = changes(&[("127.0.0.1:8080", "127.0.0.1:8090")]);
        assert_eq!(
            set.listeners,
            [Change::Changed {
                old: 0,
                new: 0,
                diff: listener(true, &["listen"]),
            }]
        );
        let set = changes(&[("pool: web }", "pool: web, backlog: 100 }")]);
        assert_eq!(
            set.listeners,
            [Change::Changed {
                old: 0,
                new: 0,
                diff: listener(true, &["backlog"]),
            }]
        );
    }

    #[test]
    fn other_listener_settings_change_without_a_new_socket() {
        let set = changes(&[(
            "pool: web }",
            "pool: web, connect_timeout: 1s, allow: [10.0.0.0/8], limits: { per_ip_connections: 5 } }",
        )]);
        assert_eq!(
            set.listeners,
            [Change::Changed {
                old: 0,
                new: 0,
                diff: listener(false, &["connect_timeout", "allow", "limits"]),
            }]
        );
        let set = changes(&[
            ("pool: web }", "pool: api }"),
            ("pool: api }]", "pool: web }]"),
        ]);
        assert_eq!(
            set.listeners,
            [
                Change::Changed {
                    old: 0,
                    new: 0,
                    diff: listener(false, &["pool"]),
                },
                Change::Changed {
                    old: 1,
                    new: 1,
                    diff: listener(false, &["sni"]),
                },
            ]
        );
    }

    #[test]
    fn pools_listed_in_another_order_change_nothing() {
        // The listeners' pool indices all shift; the pools they name do not.
        let reordered = "\
workers: 2
listeners:
  - { name: web, listen: 127.0.0.1:8080, pool: web }
  - name: tls
    listen: 127.0.0.1:8443
    pool: api
    sni: [{ match: api.example.com, pool: api }]
pools:
  - { name: api, backends: [127.0.0.1:9101] }
  - name: web
    backends: [127.0.0.1:9001, 127.0.0.1:9002, { address: 127.0.0.1:9003, weight: 2 }]
";
        let old = parse_str(BASE).unwrap();
        let new = parse_str(reordered).unwrap();
        assert_ne!(old.listeners[0].pool, new.listeners[0].pool);
        assert_eq!(ChangeSet::between(&old, &new), ChangeSet::default());
    }

    #[test]
    fn pools_are_added_removed_and_changed_by_name() {
        let set = changes(&[
            ("name: api, backends", "name: api2, backends"),
            ("pool: api\n", "pool: api2\n"),
            ("pool: api }]", "pool: api2 }]"),
        ]);
        assert_eq!(set.pools, [Change::Added(1), Change::Removed(1)]);
        let set = changes(&[(
            "name: api, backends: [127.0.0.1:9101]",
            "name: api, algorithm: ip_hash, backends: [127.0.0.1:9101], health_check: { kind: tcp }",
        )]);
        assert_eq!(
            set.pools,
            [Change::Changed {
                old: 1,
                new: 1,
                diff: PoolDiff {
                    fields: vec!["algorithm", "health_check"],
                    ..PoolDiff::default()
                },
            }]
        );
    }

    #[test]
    fn backends_are_added_removed_and_changed_by_address() {
        let set = changes(&[(
            "127.0.0.1:9001, 127.0.0.1:9002, { address: 127.0.0.1:9003, weight: 2 }",
            "127.0.0.1:9001, { address: 127.0.0.1:9003, weight: 5, drain: true }, 127.0.0.1:9004",
        )]);
        let [Change::Changed {
            old: 0,
            new: 0,
            diff,
        }] = &set.pools[..]
        else {
            panic!("{set:?}");
        };
        assert_eq!(
            diff.backends,
            [
                Change::Changed {
                    old: 2,
                    new: 1,
                    diff: backend(&["weight", "drain"]),
                },
                Change::Added(2),
                Change::Removed(1),
            ]
        );
        assert!(diff.fields.is_empty() && !diff.reordered);
    }

    #[test]
    fn a_backend_keeps_its_identity_by_address_then_by_name() {
        // Same address written another way: the same backend, renamed.
        let set = changes(&[("127.0.0.1:9001,", "'127.0.0.1:9001 ',")]);
        assert!(set.is_empty(), "trimmed names are equal: {set:?}");
        let set = changes(&[("127.0.0.1:9001,", "'[::ffff:127.0.0.1]:9001',")]);
        let Change::Changed { diff, .. } = &set.pools[0] else {
            panic!("{set:?}");
        };
        assert_eq!(
            diff.backends,
            [Change::Added(0), Change::Removed(0)],
            "a different address under a different name is another backend"
        );
        // The same name at a new address (DNS moved it): changed, "address".
        let old = parse_str(BASE).unwrap();
        let mut new = old.clone();
        new.pools[1].backends[0].addr = "127.0.0.2:9101".parse().unwrap();
        let set = ChangeSet::between(&old, &new);
        let Change::Changed { diff, .. } = &set.pools[0] else {
            panic!("{set:?}");
        };
        assert_eq!(
            diff.backends,
            [Change::Changed {
                old: 0,
                new: 0,
                diff: backend(&["address"]),
            }]
        );
        // The same address under a new name: changed, "name".
        let mut new = old.clone();
        new.pools[1].backends[0].name = "api.internal:9101".into();
        let set = ChangeSet::between(&old, &new);
        let Change::Changed { diff, .. } = &set.pools[0] else {
            panic!("{set:?}");
        };
        assert_eq!(
            diff.backends[0],
            Change::Changed {
                old: 0,
                new: 0,
                diff: backend(&["name"])
            }
        );
    }

    #[test]
    fn backends_listed_in_another_order_are_only_reordered() {
        let set = changes(&[(
            "127.0.0.1:9001, 127.0.0.1:9002,",
            "127.0.0.1:9002, 127.0.0.1:9001,",
        )]);
        assert_eq!(
            set.pools,
            [Change::Changed {
                old: 0,
                new: 0,
                diff: PoolDiff {
                    reordered: true,
                    ..PoolDiff::default()
                },
            }]
        );
    }

    #[test]
    fn workers_limits_table_and_admin_listen_need_a_restart() {
        let set = changes(&[(
            "workers: 2",
            "workers: 3\nlimits_table_size: 2048\nadmin: { listen: 127.0.0.1:9090 }",
        )]);
        assert_eq!(
            set.settings,
            [
                Setting::Workers,
                Setting::AdminListen,
                Setting::LimitsTableSize
            ]
        );
        assert_eq!(set.needs_restart(), set.settings);
        assert!(set.listeners.is_empty() && set.pools.is_empty());
    }

    #[test]
    fn shutdown_timeout_access_log_and_admin_access_apply_live() {
        let with_admin = |extra: &str| {
            let old = parse_str(&format!("admin: {{ listen: 127.0.0.1:9090 }}\n{BASE}")).unwrap();
            let new = parse_str(&format!("admin: {{ listen: 127.0.0.1:9090{extra} }}\nshutdown_timeout: 5s\naccess_log: {{ path: stderr }}\n{BASE}")).unwrap();
            ChangeSet::between(&old, &new)
        };
        let set = with_admin(", token_file: /etc/spliced/token");
        assert_eq!(
            set.settings,
            [
                Setting::AdminAccess,
                Setting::ShutdownTimeout,
                Setting::AccessLog
            ]
        );
        assert!(set.needs_restart().is_empty());
        assert_eq!(
            with_admin("").settings,
            [Setting::ShutdownTimeout, Setting::AccessLog]
        );
        for setting in Setting::ALL {
            assert!(!setting.key().is_empty());
        }
    }
}
