//! Rules over more than one value of a config, whoever built it: a file
//! (through `validate`) or an admin API mutation (which edits a running
//! [`Config`] directly). One place for them, so the API cannot accept what
//! the file refuses, and is told so in the same words: names and listen
//! addresses are unique, references name a pool, a pool keeps a primary
//! backend and lists each backend once, SNI routes can all be chosen, PROXY
//! headers are only taken from trusted sources, timeouts fit each other,
//! hash settings go with `ip_hash`, counts stay in their [`bounds`]. Also
//! backends spliced cannot connect to (port 0, the unspecified, broadcast or
//! a multicast address) or that are spliced itself (one of its listeners or
//! its admin API, which would loop every connection back in), and the advice
//! that is not an error ([`Config::warnings`]).
//!
//! Each rule is a small function or tracker over typed facts that answers
//! with a [`Bad`]; the caller says where it stands. `validate` calls them as
//! it reads a file, feeding in what it could read (so a file's problems are
//! reported all at once and in file order, even when a neighbouring value is
//! bad); [`Config::check_with`] calls them over a whole `Config`.
//!
//! Value-level checks (is this a duration, is this port a number) belong to
//! the kinds in `value`, not here. No I/O; the addresses spliced is bound to
//! at run time are passed in.
//!
//! [`bounds`]: super::bounds

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::time::Duration;

use super::bounds::{self, MAX_HASH_TABLE_SIZE, MIN_HASH_TABLE_SIZE};
use super::error::{Collector, ConfigErrors, YamlPath};
use super::model::{
    Algorithm, BackendConfig, Config, HttpListener, ListenerConfig, PoolConfig,
    ProxyProtocolAccept, ProxyProtocolSend, SniPattern, UpstreamProtocol, DEFAULT_HASH_TABLE_SIZE,
    DEFAULT_HTTP_TIMEOUTS, DEFAULT_PROXY_HEADER_TIMEOUT, DEFAULT_TLS_INSPECT_TIMEOUT,
};
use super::raw::{closest, keys_of, RawConfig};
use super::value::count::{is_prime, next_prime, range_fix};
use super::value::duration::format as format_duration;
use super::value::http::{alpn_protocol, path_prefix, ALPN_FIX};
use super::value::size::{format as format_size, Size};
use super::value::Bad;

/// How to fix an empty `listeners:`, `pools:` or `backends:`.
pub(super) const ADD_LISTENER: &str =
    "add at least one listener, e.g. listeners: [{ name: web, listen: 0.0.0.0:8080, pool: web }]";
pub(super) const ADD_POOL: &str =
    "add at least one pool, e.g. pools: [{ name: web, backends: [127.0.0.1:9001] }]";
pub(super) const ADD_BACKEND: &str = "add at least one backend, e.g. backends: [127.0.0.1:9001]";

impl Config {
    /// Checks every rule of this module against the config's own addresses.
    ///
    /// # Errors
    ///
    /// Every broken rule, each with its YAML path (`pools[0].backends[1]`)
    /// and the words a file with the same problem gets.
    pub fn check(&self) -> Result<(), ConfigErrors> {
        self.check_with(&[])
    }

    /// As [`Config::check`], also refusing backends at `bound`: the addresses
    /// the running listeners got (a listener on port 0 has its real one).
    ///
    /// # Errors
    ///
    /// As [`Config::check`].
    pub fn check_with(&self, bound: &[SocketAddr]) -> Result<(), ConfigErrors> {
        let mut errors = Collector::default();
        // Sorted as a file lists its sections in the order raw declares them.
        errors.set_section_order(keys_of::<RawConfig>().iter().copied());
        let root = YamlPath::root();
        let mut report = |path: &YamlPath, rule: Result<(), Bad>| {
            if let Err(bad) = rule {
                bad.record(path, &mut errors);
            }
        };

        report(
            &root.key("limits_table_size"),
            count(self.limits_table_size, &bounds::LIMITS_TABLE_SIZE),
        );
        if let Some(admin) = &self.admin {
            let token = admin.token_file.is_some();
            report(
                &root.key("admin").key("listen"),
                admin_exposed(admin.listen, token, admin.allow_unauthenticated),
            );
            let listeners = self.listeners.iter().enumerate();
            report(
                &root.key("admin").key("listen"),
                admin_port(admin.listen, listeners),
            );
        }

        let stores = root.key("tls");
        let mut names = Names::default();
        for (s, store) in self.tls.iter().enumerate() {
            let at = stores.index(s);
            report(&at.key("name"), names.first("tls store", &store.name, &at));
            report(
                &at,
                store_has_certs(store.certs.len() + store.self_signed.len()),
            );
        }

        let listeners = root.key("listeners");
        if self.listeners.is_empty() {
            report(&listeners, Err(Bad::new(None, "is empty", ADD_LISTENER)));
        }
        let mut names = Names::default();
        let mut addresses = Addresses::default();
        for (i, l) in self.listeners.iter().enumerate() {
            let at = listeners.index(i);
            report(&at.key("name"), names.first("listener", &l.name, &at));
            report(
                &at.key("listen"),
                addresses.first(l.listen, &at, Some(&l.name)),
            );
            match l.pool {
                Some(pool) => report(&at.key("pool"), self.pool_named(pool.0)),
                None if l.http.is_none() => report(
                    &at.key("pool"),
                    Err(Bad::new(None, "is missing", "add pool: <name of a pool>")),
                ),
                None => {}
            }
            self.check_listener(l, &at, &mut report);
        }

        let pools = root.key("pools");
        if self.pools.is_empty() {
            report(&pools, Err(Bad::new(None, "is empty", ADD_POOL)));
        }
        let mut names = Names::default();
        for (p, pool) in self.pools.iter().enumerate() {
            let at = pools.index(p);
            report(&at.key("name"), names.first("pool", &pool.name, &at));
            check_pool(pool, &at, &mut report);
        }

        // Last, so a backend that breaks a rule above is named for that.
        let own: Vec<(SocketAddr, String)> = self
            .listeners
            .iter()
            .map(|l| (l.listen, format!("listener {:?}", l.name)))
            .chain(bound.iter().map(|&a| (a, "listening socket".to_string())))
            .chain(
                self.admin
                    .iter()
                    .map(|a| (a.listen, "admin API".to_string())),
            )
            .filter(|(a, _)| a.port() != 0)
            .collect();
        for (p, pool) in self.pools.iter().enumerate() {
            for (b, backend) in pool.backends.iter().enumerate() {
                report(
                    &pools.index(p).key("backends").index(b),
                    reachable(backend, &own),
                );
            }
        }

        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.finish())
        }
    }

    /// The rules within one listener (at `at`).
    fn check_listener(
        &self,
        l: &ListenerConfig,
        at: &YamlPath,
        report: &mut impl FnMut(&YamlPath, Result<(), Bad>),
    ) {
        report(&at.key("retries"), count(l.retries, &bounds::RETRIES));
        report(
            &at.key("max_connections"),
            count(l.max_connections, &bounds::MAX_CONNECTIONS),
        );
        report(&at.key("backlog"), count(l.backlog, &bounds::BACKLOG));
        // First, so a passthrough key on an HTTP listener is named for that
        // rather than for the passthrough rules below.
        if let Some(http) = &l.http {
            self.check_http(l, http, at, report);
        }
        let mut routes = SniRoutes::default();
        for (r, route) in l.sni_routes.iter().enumerate() {
            let at = at.key("sni").index(r);
            let shown = route.pattern.to_string();
            let at_match = at.key("match");
            report(
                &at_match,
                routes.first(&route.pattern, &route.alpn, &shown, &at_match),
            );
            report(&at.key("pool"), self.pool_named(route.pool.0));
        }
        report(
            &at.key("require_sni"),
            require_sni(l.require_sni, l.sni_routes.len()),
        );
        // A Config does not say whether the list was written: an empty one
        // reads as missing.
        let trusted = trusted_proxies(
            l.trusted_proxies.is_empty(),
            false,
            Some(l.accept_proxy_protocol),
        );
        report(&at.key("trusted_proxies"), trusted);
        if let Some(limits) = &l.limits {
            let at = at.key("limits");
            if let Some(burst) = limits.per_ip_burst {
                let rate = limits.per_ip_rate.is_some();
                report(
                    &at.key("per_ip_burst"),
                    burst_needs_rate(rate, Some(&burst.to_string())),
                );
            }
            for (key, value) in [
                ("per_ip_burst", limits.per_ip_burst),
                ("per_ip_connections", limits.per_ip_connections),
            ] {
                if let Some(value) = value {
                    report(&at.key(key), count(value, &bounds::PER_IP));
                }
            }
            report(
                &at.key("ipv6_prefix"),
                count(limits.ipv6_prefix, &bounds::IPV6_PREFIX),
            );
        }
    }

    /// The rules of a `mode: http` listener (at `at`).
    fn check_http(
        &self,
        l: &ListenerConfig,
        http: &HttpListener,
        at: &YamlPath,
        report: &mut impl FnMut(&YamlPath, Result<(), Bad>),
    ) {
        // A Config does not say what was written: a passthrough setting away
        // from its default counts as set.
        let passthrough = [
            ("sni", !l.sni_routes.is_empty()),
            ("require_sni", l.require_sni),
            (
                "tls_inspect_timeout",
                l.tls_inspect_timeout != DEFAULT_TLS_INSPECT_TIMEOUT,
            ),
            ("proxy_protocol", l.proxy_protocol != ProxyProtocolSend::Off),
            (
                "accept_proxy_protocol",
                l.accept_proxy_protocol != ProxyProtocolAccept::Off,
            ),
            ("trusted_proxies", !l.trusted_proxies.is_empty()),
            (
                "proxy_header_timeout",
                l.proxy_header_timeout != DEFAULT_PROXY_HEADER_TIMEOUT,
            ),
        ];
        for (key, set) in passthrough {
            if set {
                report(&at.key(key), Err(tcp_only(key)));
            }
        }
        if let Some(tls) = &http.tls {
            let at = at.key("tls");
            report(&at.key("store"), self.store_named(tls.store));
            report(&at.key("alpn"), alpn(&tls.alpn));
        }
        if let Some(port) = http.redirect_https {
            report(&at.key("redirect_https"), count(port, &bounds::PORT));
            let needless = [
                ("tls", http.tls.is_some()),
                ("pool", l.pool.is_some()),
                ("routes", !http.routes.is_empty()),
            ];
            for (key, set) in needless {
                if set {
                    report(&at.key(key), Err(redirect_alone(key, port)));
                }
            }
        }
        let t = &http.timeouts;
        let d = &DEFAULT_HTTP_TIMEOUTS;
        for (key, value, default) in [
            ("handshake", t.handshake, d.handshake),
            ("request_header", t.request_header, d.request_header),
            ("idle", t.idle, d.idle),
            ("backend_response", t.backend_response, d.backend_response),
        ] {
            report(&at.key("timeouts").key(key), positive(value, default));
        }
        let limits = &http.request_limits;
        let at_limits = at.key("request_limits");
        report(
            &at_limits.key("max_header_bytes"),
            size(limits.max_header_bytes as u64, &bounds::MAX_HEADER_BYTES),
        );
        report(
            &at_limits.key("max_body"),
            size(limits.max_body, &bounds::MAX_BODY),
        );
        report(
            &at_limits.key("h2_max_streams"),
            count(limits.h2_max_streams, &bounds::H2_MAX_STREAMS),
        );
        let mut routes = HttpRoutes::default();
        for (r, route) in http.routes.iter().enumerate() {
            let at = at.key("routes").index(r);
            if let Some(prefix) = &route.path_prefix {
                let read = path_prefix(&serde_yaml::Value::from(prefix.as_str())).map(|_| ());
                report(&at.key("match").key("path_prefix"), read);
            }
            report(
                &at,
                routes.first(route.host.as_ref(), route.path_prefix.as_deref(), &at),
            );
            report(&at.key("pool"), self.pool_named(route.pool.0));
        }
    }

    /// Whether tls store `index` exists.
    fn store_named(&self, index: usize) -> Result<(), Bad> {
        if index < self.tls.len() {
            return Ok(());
        }
        let mut names: Vec<&str> = self.tls.iter().map(|s| s.name.as_str()).collect();
        names.sort_unstable();
        Err(no_such_store(&format!("#{index}"), &names))
    }

    /// Whether pool `index` exists (a reference in a `Config` is an index;
    /// the file's names are resolved by `validate`).
    fn pool_named(&self, index: usize) -> Result<(), Bad> {
        if index < self.pools.len() {
            return Ok(());
        }
        let mut names: Vec<&str> = self.pools.iter().map(|p| p.name.as_str()).collect();
        names.sort_unstable();
        Err(Bad::new(
            Some(&format!("#{index}")),
            "does not name a pool",
            format!("use one of the pools defined: {}", names.join(", ")),
        ))
    }

    /// Things that are allowed but probably not meant, one line each.
    pub fn warnings(&self) -> Vec<String> {
        self.pools
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.backends.is_empty() && p.backends.iter().all(|b| b.weight == 0))
            .map(|(i, p)| {
                format!(
                    "pools[{i}] ({}): every backend has weight 0, so the pool takes no new connections; give one a weight above 0",
                    p.name
                )
            })
            .collect()
    }
}

/// The rules within one pool (at `at`).
fn check_pool(
    pool: &PoolConfig,
    at: &YamlPath,
    report: &mut impl FnMut(&YamlPath, Result<(), Bad>),
) {
    report(
        &at.key("eject_after"),
        count(pool.eject_after, &bounds::EJECT_AFTER),
    );
    report(
        &at.key("max_ejection_percent"),
        count(pool.max_ejection_percent, &bounds::MAX_EJECTION_PERCENT),
    );
    report(
        &at.key("max_ejection_time"),
        ejection_cap(
            pool.max_ejection_time,
            pool.ejection_time,
            Some(&format_duration(pool.max_ejection_time)),
        ),
    );
    if let Some(check) = &pool.health_check {
        let at = at.key("health_check");
        report(
            &at.key("timeout"),
            probe_fits(
                check.timeout,
                check.interval,
                Some(&format_duration(check.timeout)),
            ),
        );
        report(&at.key("rise"), count(check.rise, &bounds::HEALTH_COUNT));
        report(&at.key("fall"), count(check.fall, &bounds::HEALTH_COUNT));
    }
    let algorithm = (pool.algorithm, pool.algorithm.as_str());
    if let Some(factor) = pool.hash_balance_factor {
        let shown = factor.to_string();
        report(
            &at.key("hash_balance_factor"),
            needs_ip_hash("hash_balance_factor", Some(&shown), algorithm),
        );
    }
    // A Config does not say whether the size was written: only one other
    // than the default counts as set.
    let size = pool.hash_table_size;
    if size != DEFAULT_HASH_TABLE_SIZE {
        report(
            &at.key("hash_table_size"),
            needs_ip_hash("hash_table_size", Some(&size.to_string()), algorithm),
        );
    }
    let hashing = pool.algorithm == Algorithm::IpHash;
    let table = hash_table_size(size.into(), hashing, pool.backends.len())
        .map(|_| ())
        .map_err(|(problem, fix)| Bad::new(Some(&size.to_string()), problem, fix));
    report(&at.key("hash_table_size"), table);

    report(
        &at.key("backend_tls"),
        backend_tls(pool.protocol, pool.backend_tls.is_some()),
    );

    let backends_at = at.key("backends");
    if pool.backends.is_empty() {
        report(&backends_at, Err(Bad::new(None, "is empty", ADD_BACKEND)));
        return;
    }
    let mut backends = Backends::default();
    for (b, backend) in pool.backends.iter().enumerate() {
        let at = backends_at.index(b);
        report(&at.key("weight"), count(backend.weight, &bounds::WEIGHT));
        backends.backup(Some(backend.backup));
        report(&at, backends.first(backend, &at));
    }
    report(&backends_at, backends.some_primary());
}

/// `value` within `range`, in the words a file with that value gets.
fn count<T: TryInto<u64> + Copy + ToString>(
    value: T,
    range: &RangeInclusive<u64>,
) -> Result<(), Bad> {
    match value.try_into() {
        Ok(n) if range.contains(&n) => Ok(()),
        _ => Err(Bad::new(
            Some(&value.to_string()),
            "is out of range",
            range_fix(range),
        )),
    }
}

/// A size of `value` bytes within `range`, in the words a file gets.
fn size(value: u64, range: &RangeInclusive<u64>) -> Result<(), Bad> {
    if range.contains(&value) {
        return Ok(());
    }
    let kind = Size {
        range: range.clone(),
    };
    Err(Bad::new(
        Some(&format_size(value)),
        "is out of range",
        kind.range_fix(),
    ))
}

/// A timeout that must not be zero (`default` is the example).
fn positive(value: Duration, default: Duration) -> Result<(), Bad> {
    if !value.is_zero() {
        return Ok(());
    }
    Err(Bad::new(
        Some("0s"),
        "must be longer than zero",
        format!("use e.g. {}", format_duration(default)),
    ))
}

/// A store (`tls:` item) serves something.
/// `certificates`: how many `certs` and `self_signed` names it has.
pub(super) fn store_has_certs(certificates: usize) -> Result<(), Bad> {
    if certificates > 0 {
        return Ok(());
    }
    Err(Bad::new(
        None,
        "has no certificates",
        "add certs: [{ cert: FILE, key: FILE }] or self_signed: [localhost] (or both)",
    ))
}

/// A `store:` that names no tls store: `wanted` as written, `names` the
/// stores there are (sorted).
pub(super) fn no_such_store(wanted: &str, names: &[&str]) -> Bad {
    let fix = match (closest(wanted, names), names.is_empty()) {
        (Some(near), _) => format!("did you mean {near}? stores defined: {}", names.join(", ")),
        (None, true) => format!(
            "define it under the top-level tls:, e.g. tls: [{{ name: {wanted}, self_signed: [localhost] }}]"
        ),
        (None, false) => format!(
            "use one of the stores defined under tls: {}, or add one named {wanted}",
            names.join(", ")
        ),
    };
    Bad::new(Some(wanted), "does not name a tls store", fix)
}

/// A listener's `tls.alpn`: not empty, only protocols spliced serves, each
/// once.
pub(super) fn alpn(list: &[String]) -> Result<(), Bad> {
    if list.is_empty() {
        return Err(Bad::new(
            None,
            "is an empty list",
            format!("{ALPN_FIX}, or remove alpn"),
        ));
    }
    let unknown: Vec<(usize, Bad)> = list
        .iter()
        .enumerate()
        .filter_map(|(i, p)| alpn_protocol(p).err().map(|bad| (i, bad)))
        .collect();
    if !unknown.is_empty() {
        return Err(Bad::Items(unknown));
    }
    let twice = list
        .iter()
        .enumerate()
        .find(|(i, p)| list[..*i].contains(p));
    match twice {
        Some((_, p)) => Err(Bad::new(
            Some(&list.join(", ")),
            format!("lists {p} twice"),
            "list each protocol once",
        )),
        None => Ok(()),
    }
}

/// A key of passthrough (`mode: tcp`) listeners, set on a `mode: http` one.
pub(super) fn tcp_only(key: &str) -> Bad {
    let (problem, fix) = match key {
        "sni" | "require_sni" | "tls_inspect_timeout" => (
            "is only for mode: tcp (TLS passthrough)",
            "in mode: http, route by host with routes: [{ match: { host: api.example.com }, pool: api }]; or remove mode: http to pass TLS through",
        ),
        "trusted_proxies" => (
            "is for accept_proxy_protocol, which mode: http does not support yet",
            "to keep X-Forwarded-For from proxies in front, write forwarded: { trusted_proxies: [10.0.0.0/8] }",
        ),
        _ => (
            "is not supported in mode: http yet",
            "remove it, or remove mode: http to relay bytes as they are",
        ),
    };
    Bad::new(None, problem, fix)
}

/// A key of `mode: http` listeners, set on a `mode: tcp` one.
pub(super) fn http_only(key: &str) -> Bad {
    Bad::new(
        None,
        "is only for mode: http",
        format!("add mode: http to this listener to terminate TLS and proxy HTTP, or remove {key}"),
    )
}

/// `key` is set on a listener that redirects every request to `https` on
/// `port`, so it would never be used.
pub(super) fn redirect_alone(key: &str, port: u16) -> Bad {
    let fix = match key {
        "tls" => "a redirecting listener speaks plaintext HTTP: remove tls, or remove redirect_https to serve HTTPS here".to_owned(),
        _ => format!("nothing is proxied from here: remove {key}, or remove redirect_https"),
    };
    Bad::new(
        None,
        format!("is set, but redirect_https answers every request with a redirect to port {port}"),
        fix,
    )
}

/// A pool's `backend_tls` (`set` or not) against its `protocol`.
pub(super) fn backend_tls(protocol: UpstreamProtocol, set: bool) -> Result<(), Bad> {
    match (protocol, set) {
        (UpstreamProtocol::H2, false) => Err(Bad::new(
            None,
            "is missing",
            "protocol: h2 is HTTP/2 over TLS: add backend_tls: {} (or with sni, ca_file), or use protocol: h2c for HTTP/2 without TLS",
        )),
        (UpstreamProtocol::H2c, true) => Err(Bad::new(
            None,
            "is set, but protocol: h2c is HTTP/2 without TLS",
            "use protocol: h2 for HTTP/2 over TLS, or remove backend_tls",
        )),
        _ => Ok(()),
    }
}

/// The routes of one HTTP listener so far: the first match wins, so a
/// route that an earlier one matches every request of can never be chosen.
#[derive(Default)]
pub(super) struct HttpRoutes {
    earlier: Vec<(Option<SniPattern>, Option<String>, String)>,
}

impl HttpRoutes {
    /// The route at `at`, matching `host` and `prefix` (`None`: any).
    pub(super) fn first(
        &mut self,
        host: Option<&SniPattern>,
        prefix: Option<&str>,
        at: &YamlPath,
    ) -> Result<(), Bad> {
        let hidden = self.earlier.iter().find(|(h, p, _)| {
            let host_covered = match (h, host) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(SniPattern::Exact(a)), Some(SniPattern::Exact(b))) => a == b,
                (Some(SniPattern::Suffix(s)), Some(SniPattern::Exact(b))) => {
                    b.ends_with(s.as_str())
                }
                (Some(SniPattern::Suffix(s)), Some(SniPattern::Suffix(t))) => {
                    t.ends_with(s.as_str())
                }
                (Some(SniPattern::Exact(_)), Some(SniPattern::Suffix(_))) => false,
            };
            let path_covered = match (p, prefix) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(a), Some(b)) => b.starts_with(a.as_str()),
            };
            host_covered && path_covered
        });
        if let Some((_, _, first)) = hidden {
            return Err(Bad::new(
                None,
                format!("can never be chosen: {first}, listed earlier, matches every request it does"),
                "routes are tried in order and the first match wins: put the more specific route first, or remove this one",
            ));
        }
        let shown = match (host, prefix) {
            (None, None) => "no match: every request".to_owned(),
            (Some(h), None) => format!("host {h}"),
            (None, Some(p)) => format!("path_prefix {p}"),
            (Some(h), Some(p)) => format!("host {h}, path_prefix {p}"),
        };
        self.earlier.push((
            host.cloned(),
            prefix.map(str::to_owned),
            format!("{at} ({shown})"),
        ));
        Ok(())
    }
}

/// Names used so far (of listeners, or of pools), to report a duplicate at
/// its second use.
#[derive(Default)]
pub(super) struct Names {
    first: HashMap<String, String>,
}

impl Names {
    /// `name`, of the `what` at `item`: fine the first time.
    pub(super) fn first(&mut self, what: &str, name: &str, item: &YamlPath) -> Result<(), Bad> {
        if let Some(first) = self.first.get(name) {
            return Err(Bad::new(
                Some(name),
                format!("is already the name of {first}"),
                format!("give each {what} a unique name (it is a metric label)"),
            ));
        }
        self.first.insert(name.to_owned(), item.to_string());
        Ok(())
    }
}

/// Listen addresses used so far.
#[derive(Default)]
pub(super) struct Addresses {
    first: HashMap<SocketAddr, String>,
}

impl Addresses {
    /// The listener at `item` (named `name`, when that could be read) listens
    /// on `listen`: fine unless an earlier one does. Port 0 means "any free
    /// port": two of those never collide. Otherwise SO_REUSEPORT would let
    /// both bind and silently split the traffic.
    pub(super) fn first(
        &mut self,
        listen: SocketAddr,
        item: &YamlPath,
        name: Option<&str>,
    ) -> Result<(), Bad> {
        if listen.port() == 0 {
            return Ok(());
        }
        if let Some(first) = self.first.get(&listen) {
            return Err(Bad::new(
                Some(&listen.to_string()),
                format!("is already used by {first}"),
                "give each listener its own address (port 0 lets the kernel pick one)",
            ));
        }
        let label = format!("{item} ({})", name.unwrap_or("unnamed"));
        self.first.insert(listen, label);
        Ok(())
    }
}

/// The admin API listens on `admin`, which must not be one of the
/// `listeners`' addresses (the first one on it is named).
pub(super) fn admin_port<'a>(
    admin: SocketAddr,
    listeners: impl IntoIterator<Item = (usize, &'a ListenerConfig)>,
) -> Result<(), Bad> {
    if admin.port() == 0 {
        return Ok(());
    }
    match listeners.into_iter().find(|(_, l)| l.listen == admin) {
        Some((i, listener)) => Err(Bad::new(
            Some(&admin.to_string()),
            format!("is already used by listeners[{i}] ({})", listener.name),
            "give the admin API its own port, e.g. 127.0.0.1:9090",
        )),
        None => Ok(()),
    }
}

/// Beyond loopback and without a token, anyone who reaches the admin port can
/// add a backend (hijacking traffic) or replace the config: refuse that
/// unless the operator says so in writing (`allow_unauthenticated`).
pub(super) fn admin_exposed(
    listen: SocketAddr,
    token: bool,
    allow_unauthenticated: bool,
) -> Result<(), Bad> {
    if token || allow_unauthenticated || listen.ip().is_loopback() {
        return Ok(());
    }
    Err(Bad::new(
        Some(&listen.to_string()),
        "is reachable from other machines, and without admin.token_file anyone who reaches it can change backends and the config",
        "set admin.token_file, listen on 127.0.0.1, or set admin.allow_unauthenticated: true if a firewall already guards this port",
    ))
}

/// A `pool:` that names no pool: `wanted` as written, `names` the pools there
/// are (sorted).
pub(super) fn no_such_pool(wanted: &str, names: &[&str]) -> Bad {
    let fix = match (closest(wanted, names), names.is_empty()) {
        (Some(near), _) => format!("did you mean {near}? pools defined: {}", names.join(", ")),
        (None, true) => format!("define a pool named {wanted} under pools:"),
        (None, false) => format!(
            "use one of the pools defined: {}, or add a pool named {wanted}",
            names.join(", ")
        ),
    };
    Bad::new(Some(wanted), "does not name a pool", fix)
}

/// `require_sni` with `routes` SNI routes: without routes the ClientHello is
/// never read, so nothing could be required of it.
pub(super) fn require_sni(require: bool, routes: usize) -> Result<(), Bad> {
    if require && routes == 0 {
        return Err(Bad::new(
            Some("true"),
            "needs sni routes, and this listener has none",
            "add sni: routes, or remove require_sni (without routes the ClientHello is never read)",
        ));
    }
    Ok(())
}

/// `trusted_proxies` (`empty` or not, `written` in the file or not) against
/// `accept_proxy_protocol` (`None` when that is itself wrong, already
/// reported).
pub(super) fn trusted_proxies(
    empty: bool,
    written: bool,
    accept: Option<ProxyProtocolAccept>,
) -> Result<(), Bad> {
    match accept {
        Some(ProxyProtocolAccept::Off) if !empty => Err(Bad::new(
            None,
            "is set, but accept_proxy_protocol is off",
            "set accept_proxy_protocol: v1, v2 or any to read PROXY headers from these sources, or remove trusted_proxies",
        )),
        // WHY: a PROXY header sets the client address that allow/deny,
        // limits and ip_hash trust; accepting it from anyone would let
        // any client claim any address.
        Some(accept) if accept != ProxyProtocolAccept::Off && empty => Err(Bad::new(
            None,
            if written { "is empty" } else { "is missing" },
            format!(
                "accept_proxy_protocol: {} needs the addresses of the balancers in front, e.g. trusted_proxies: [10.0.0.0/8]; only they may send a PROXY header",
                accept.as_str()
            ),
        )),
        _ => Ok(()),
    }
}

/// The SNI routes of one listener so far, each with how to name it.
///
/// Routes for the same name are tried in order, the first whose `alpn` fits
/// winning (so `app.example.com` with `alpn: [h2]` before a plain
/// `app.example.com` splits clients by protocol). A route an earlier one
/// always wins over can never be chosen, and is refused: that includes the
/// same name listed twice.
#[derive(Default)]
pub(super) struct SniRoutes {
    earlier: Vec<(SniPattern, Vec<String>, String)>,
}

impl SniRoutes {
    /// The route at `at` (its `match:`), written `shown`: fine unless an
    /// earlier route always wins over it. Only routes that can be chosen
    /// count as earlier ones.
    pub(super) fn first(
        &mut self,
        pattern: &SniPattern,
        alpn: &[String],
        shown: &str,
        at: &YamlPath,
    ) -> Result<(), Bad> {
        let shadow = self
            .earlier
            .iter()
            .find(|(p, before, _)| p == pattern && shadows(before, alpn));
        if let Some((_, before, first)) = shadow {
            let (problem, fix) = shadowed(first, before, alpn);
            return Err(Bad::new(Some(shown), problem, fix));
        }
        self.earlier
            .push((pattern.clone(), alpn.to_vec(), format!("{at} ({shown})")));
        Ok(())
    }
}

/// Whether an earlier route for the same name with `before` as its alpn list
/// takes every client a later one with `later` could: it takes any protocol,
/// or every protocol the later one names.
fn shadows(before: &[String], later: &[String]) -> bool {
    before.is_empty() || (!later.is_empty() && later.iter().all(|p| before.contains(p)))
}

/// The (problem, fix) for a route that `first` (with alpn `before`) hides.
fn shadowed(first: &str, before: &[String], later: &[String]) -> (String, String) {
    if before.is_empty() && later.is_empty() {
        (
            format!("is the same pattern as {first}"),
            "list each name once per listener (case and a trailing dot make no difference)"
                .to_owned(),
        )
    } else if before.is_empty() {
        (
            format!("can never be chosen: {first}, listed earlier without alpn, takes every client asking for this name"),
            "routes for one name are tried in order: put the route with alpn first".to_owned(),
        )
    } else {
        (
            format!(
                "can never be chosen: {first}, listed earlier, already takes clients offering {}",
                later.join(", ")
            ),
            "remove this route, or list protocols the earlier route does not take".to_owned(),
        )
    }
}

/// A `per_ip_burst` that is set (written `shown`) is a burst above the rate,
/// so it needs `per_ip_rate`.
pub(super) fn burst_needs_rate(rate: bool, shown: Option<&str>) -> Result<(), Bad> {
    if rate {
        return Ok(());
    }
    Err(Bad::new(
        shown,
        "only applies with per_ip_rate",
        "add per_ip_rate, e.g. per_ip_rate: 50/s, or remove per_ip_burst",
    ))
}

/// The backends of one pool so far.
#[derive(Default)]
pub(super) struct Backends {
    by_addr: HashMap<SocketAddr, String>,
    by_name: HashMap<String, String>,
    /// Whether an entry is, or might be, a primary.
    primary: bool,
}

impl Backends {
    /// Counts an entry that is a backup or not; `None` for one that could not
    /// be read, which might have been the primary.
    pub(super) fn backup(&mut self, backup: Option<bool>) {
        self.primary |= backup != Some(true);
    }

    /// The backend whose address stands at `at`: fine unless an earlier one
    /// has its name or address. Listing a backend twice would double its
    /// share silently; weights are the way to do that on purpose.
    pub(super) fn first(&mut self, backend: &BackendConfig, at: &YamlPath) -> Result<(), Bad> {
        let name = backend.name.to_ascii_lowercase();
        let earlier = self
            .by_name
            .get(&name)
            .or_else(|| self.by_addr.get(&backend.addr));
        if let Some(earlier) = earlier {
            return Err(Bad::new(
                Some(&backend.name),
                format!("is the same backend as {earlier}"),
                "list each backend once per pool",
            ));
        }
        self.by_addr.insert(backend.addr, at.to_string());
        self.by_name.insert(name, at.to_string());
        Ok(())
    }

    /// After the last entry: a pool of backups only would never take traffic
    /// while its backups wait for a primary to fail.
    pub(super) fn some_primary(&self) -> Result<(), Bad> {
        if self.primary {
            return Ok(());
        }
        Err(Bad::new(
            None,
            "has only backup backends",
            "make at least one a primary (leave out backup: true): backups only take traffic when no primary is up",
        ))
    }
}

/// A health check's `timeout` (written `shown`) against its `interval`.
pub(super) fn probe_fits(
    timeout: Duration,
    interval: Duration,
    shown: Option<&str>,
) -> Result<(), Bad> {
    if timeout <= interval {
        return Ok(());
    }
    Err(Bad::new(
        shown,
        format!("is longer than interval ({})", format_duration(interval)),
        format!(
            "a probe must end before the next one starts: use at most {}, or raise interval",
            format_duration(interval)
        ),
    ))
}

/// A pool's `max_ejection_time` (written `shown`) against its `ejection_time`.
pub(super) fn ejection_cap(max: Duration, first: Duration, shown: Option<&str>) -> Result<(), Bad> {
    if max >= first {
        return Ok(());
    }
    Err(Bad::new(
        shown,
        format!("is shorter than ejection_time ({})", format_duration(first)),
        format!(
            "it caps how long repeated ejections grow: use at least {}, or lower ejection_time",
            format_duration(first)
        ),
    ))
}

/// A hash setting `key` (written `shown`) on a pool whose algorithm is
/// `algorithm` (and how to describe it: `round_robin, the default`).
pub(super) fn needs_ip_hash(
    key: &str,
    shown: Option<&str>,
    (algorithm, described): (Algorithm, &str),
) -> Result<(), Bad> {
    if algorithm == Algorithm::IpHash {
        return Ok(());
    }
    Err(Bad::new(
        shown,
        format!("only applies to algorithm ip_hash, and this pool uses {described}"),
        format!("set algorithm: ip_hash to keep each client on one backend, or remove {key}"),
    ))
}

/// A Maglev table of `size` entries: a prime in range, and, when the pool
/// hashes, at least 10 × its `backends` (Maglev spreads a backend's share
/// evenly only when the table is much larger than the backend count; the
/// paper uses 100×, 10× is the floor). Fails with (problem, fix).
pub(super) fn hash_table_size(
    size: i128,
    hashing: bool,
    backends: usize,
) -> Result<u32, (String, String)> {
    let needed = if hashing {
        i128::try_from(backends)
            .unwrap_or(i128::MAX)
            .saturating_mul(10)
    } else {
        0
    };
    let in_range =
        (i128::from(MIN_HASH_TABLE_SIZE)..=i128::from(MAX_HASH_TABLE_SIZE)).contains(&size);
    let problem = if !in_range {
        "is out of range".to_owned()
    } else if !is_prime(size) {
        "is not a prime".to_owned()
    } else if size < needed {
        format!("is less than 10 × the pool's {backends} backends")
    } else if let Ok(size) = u32::try_from(size) {
        return Ok(size);
    } else {
        "is out of range".to_owned()
    };
    let wanted = size
        .max(needed)
        .clamp(MIN_HASH_TABLE_SIZE.into(), MAX_HASH_TABLE_SIZE.into());
    let fix = if needed > i128::from(MAX_HASH_TABLE_SIZE) {
        format!(
            "the largest table ({MAX_HASH_TABLE_SIZE}) fits {} backends: split the pool",
            MAX_HASH_TABLE_SIZE / 10
        )
    } else {
        format!(
            "use a prime from {MIN_HASH_TABLE_SIZE} to {MAX_HASH_TABLE_SIZE} and at least 10 × the backends, e.g. {}",
            next_prime(wanted)
        )
    };
    Err((problem, fix))
}

/// Whether spliced can connect to `backend` and reach something other than
/// itself (`own`: its addresses, each with what it is).
fn reachable(backend: &BackendConfig, own: &[(SocketAddr, String)]) -> Result<(), Bad> {
    let problem = unusable(backend.addr).map(str::to_string).or_else(|| {
        own.iter()
            .find(|(a, _)| reaches(backend.addr, *a))
            .map(|(_, what)| {
                format!("is spliced's own {what}: every connection would loop back into spliced")
            })
    });
    match problem {
        Some(problem) => Err(Bad::new(
            Some(&backend.name),
            problem,
            "give the address and port a backend listens on",
        )),
        None => Ok(()),
    }
}

/// Why no connection can be made to `addr`, if that is so.
fn unusable(addr: SocketAddr) -> Option<&'static str> {
    if addr.port() == 0 {
        return Some("has port 0, which cannot be connected to");
    }
    match addr.ip() {
        ip if ip.is_unspecified() => Some("is the unspecified address, not a backend"),
        ip if ip.is_multicast() => Some("is a multicast address; TCP cannot connect to it"),
        IpAddr::V4(ip) if ip.is_broadcast() => {
            Some("is the broadcast address; TCP cannot connect to it")
        }
        _ => None,
    }
}

/// Whether connecting to `backend` reaches a socket of ours bound to `own`.
fn reaches(backend: SocketAddr, own: SocketAddr) -> bool {
    backend.port() == own.port()
        && (backend.ip() == own.ip() || (own.ip().is_unspecified() && backend.ip().is_loopback()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::{PoolId, ProxyProtocolSend};
    use crate::config::{parse_str, TEST_CONFIG as BASE};

    #[test]
    fn backends_that_cannot_be_connected_to_are_named() {
        for (addr, why) in [
            ("127.0.0.1:0", "port 0"),
            ("0.0.0.0:80", "unspecified"),
            ("[::]:80", "unspecified"),
            ("255.255.255.255:80", "broadcast"),
            ("224.0.0.1:80", "multicast"),
            ("[ff02::1]:80", "multicast"),
        ] {
            let problem = unusable(addr.parse().unwrap()).unwrap_or_else(|| panic!("{addr}"));
            assert!(problem.contains(why), "{addr}: {problem}");
        }
        assert_eq!(unusable("10.0.0.1:80".parse().unwrap()), None);
    }

    #[test]
    fn a_backend_that_is_spliced_itself_is_found() {
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert!(reaches("127.0.0.1:8080".parse().unwrap(), any));
        assert!(reaches(
            "127.0.0.1:9090".parse().unwrap(),
            "127.0.0.1:9090".parse().unwrap()
        ));
        assert!(!reaches(
            "127.0.0.2:9090".parse().unwrap(),
            "127.0.0.1:9090".parse().unwrap()
        ));
        assert!(!reaches("127.0.0.1:8081".parse().unwrap(), any));
    }

    fn base() -> Config {
        parse_str(BASE).expect("TEST_CONFIG is valid")
    }

    /// What the file check says about `yaml`.
    fn file_says(yaml: &str) -> String {
        parse_str(yaml)
            .expect_err("the file is refused")
            .to_string()
    }

    /// What `Config::check` says about `config`.
    fn check_says(config: &Config) -> String {
        config
            .check()
            .expect_err("the config is refused")
            .to_string()
    }

    #[test]
    fn a_config_read_from_a_valid_file_passes_every_rule() {
        assert_eq!(base().check(), Ok(()));
    }

    #[test]
    fn removing_the_last_primary_in_code_is_refused_as_the_file_is() {
        let mut config = base();
        config.pools[1].backends.remove(0);
        let said = check_says(&config);
        assert_eq!(
            said,
            "pools[1].backends: has only backup backends: make at least one a primary (leave out backup: true): backups only take traffic when no primary is up"
        );
        assert_eq!(
            said,
            file_says(&BASE.replace("      - 127.0.0.1:9101\n", ""))
        );
    }

    #[test]
    fn a_weight_above_1000_set_in_code_is_refused_as_the_file_is() {
        let mut config = base();
        config.pools[0].backends[1].weight = 1001;
        let said = check_says(&config);
        assert_eq!(
            said,
            r#"pools[0].backends[1].weight: "1001" is out of range: use a whole number from 0 to 1000"#
        );
        let file = BASE.replace(
            "127.0.0.1:9002,",
            "{ address: 127.0.0.1:9002, weight: 1001 },",
        );
        assert_eq!(said, file_says(&file));
    }

    #[test]
    fn a_duplicate_backend_added_in_code_is_refused_as_the_file_is() {
        let mut config = base();
        let again = config.pools[0].backends[0].clone();
        config.pools[0].backends.push(again);
        let said = check_says(&config);
        assert_eq!(
            said,
            r#"pools[0].backends[3]: "127.0.0.1:9001" is the same backend as pools[0].backends[0]: list each backend once per pool"#
        );
        let file = BASE.replace("weight: 2 }]", "weight: 2 }, 127.0.0.1:9001]");
        assert_eq!(said, file_says(&file));
        // The same address under another name is the same backend too.
        let mut config = base();
        config.pools[0].backends[1].addr = config.pools[0].backends[0].addr;
        assert!(check_says(&config).contains("is the same backend as pools[0].backends[0]"));
    }

    #[test]
    fn duplicate_names_and_addresses_set_in_code_are_refused_as_the_file_is() {
        let mut config = base();
        config.listeners[1].name = "web".into();
        config.listeners[1].listen = config.listeners[0].listen;
        config.pools[2].name = "api".into();
        let said = check_says(&config);
        let file = BASE
            .replace("name: tls", "name: web")
            .replace("127.0.0.1:8443", "127.0.0.1:8080")
            .replace("name: spare", "name: api");
        assert_eq!(said, file_says(&file));
        assert_eq!(said.lines().count(), 3, "{said}");
    }

    #[test]
    fn rules_within_a_listener_hold_for_a_config_changed_in_code() {
        let mut config = base();
        config.listeners[0].require_sni = true;
        config.listeners[1].accept_proxy_protocol = ProxyProtocolAccept::V2;
        let route = config.listeners[1].sni_routes[0].clone();
        config.listeners[1].sni_routes.push(route);
        config.listeners[1].retries = 17;
        let said = check_says(&config);
        let lines: Vec<&str> = said.lines().collect();
        assert_eq!(
            lines,
            [
                "listeners[0].require_sni: \"true\" needs sni routes, and this listener has none: add sni: routes, or remove require_sni (without routes the ClientHello is never read)",
                r#"listeners[1].retries: "17" is out of range: use a whole number from 0 to 16"#,
                r#"listeners[1].sni[1].match: "api.example.com" is the same pattern as listeners[1].sni[0].match (api.example.com): list each name once per listener (case and a trailing dot make no difference)"#,
                "listeners[1].trusted_proxies: is missing: accept_proxy_protocol: v2 needs the addresses of the balancers in front, e.g. trusted_proxies: [10.0.0.0/8]; only they may send a PROXY header",
            ]
        );
    }

    #[test]
    fn references_to_a_pool_that_is_gone_are_refused() {
        let mut config = base();
        config.pools.truncate(1);
        let said = check_says(&config);
        assert_eq!(
            said.lines().collect::<Vec<_>>(),
            [
                r##"listeners[1].pool: "#1" does not name a pool: use one of the pools defined: web"##,
                r##"listeners[1].sni[0].pool: "#1" does not name a pool: use one of the pools defined: web"##,
            ]
        );
    }

    #[test]
    fn pool_rules_hold_for_a_config_changed_in_code() {
        let mut config = base();
        // 10 × 6554 backends is more than the default table holds.
        config.pools[1].backends = (0..6554u32)
            .map(|i| {
                let addr = SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 80));
                BackendConfig::new(addr.to_string(), addr)
            })
            .collect();
        config.pools[0].hash_balance_factor = Some(1.5);
        config.pools[2].backends.clear();
        let said = check_says(&config);
        let lines: Vec<&str> = said.lines().collect();
        assert_eq!(
            lines,
            [
                r#"pools[0].hash_balance_factor: "1.5" only applies to algorithm ip_hash, and this pool uses round_robin: set algorithm: ip_hash to keep each client on one backend, or remove hash_balance_factor"#,
                r#"pools[1].hash_table_size: "65537" is less than 10 × the pool's 6554 backends: use a prime from 1021 to 1000003 and at least 10 × the backends, e.g. 65543"#,
                "pools[2].backends: is empty: add at least one backend, e.g. backends: [127.0.0.1:9001]",
            ]
        );
    }

    #[test]
    fn the_admin_api_rules_hold_for_a_config_changed_in_code() {
        let mut config = base();
        config.admin.as_mut().unwrap().listen = config.listeners[0].listen;
        assert_eq!(
            check_says(&config),
            file_says(&BASE.replace("listen: 127.0.0.1:9090", "listen: 127.0.0.1:8080"))
        );
        let mut config = base();
        config.admin.as_mut().unwrap().listen = "0.0.0.0:9090".parse().unwrap();
        assert_eq!(
            check_says(&config),
            file_says(&BASE.replace("listen: 127.0.0.1:9090", "listen: 0.0.0.0:9090"))
        );
    }

    /// TEST_CONFIG with a store and an HTTPS listener in front of it.
    fn http_base() -> String {
        BASE.replace(
            "listeners:\n",
            "tls:\n  - { name: main, self_signed: [localhost] }\nlisteners:\n  - { name: https, listen: 127.0.0.1:8444, mode: http, tls: { store: main }, routes: [{ match: { path_prefix: /a/ }, pool: api }] }\n  - { name: http, listen: 127.0.0.1:8081, mode: http, redirect_https: 8444 }\n",
        )
    }

    #[test]
    fn http_rules_hold_for_a_config_changed_in_code() {
        let base = parse_str(&http_base()).expect("the HTTP base is valid");
        assert_eq!(base.check(), Ok(()));

        // The file's words for the same mistakes, rule by rule.
        let mut config = base.clone();
        config.tls.push(config.tls[0].clone());
        config.tls[0].self_signed.clear();
        let file = http_base().replace(
            "  - { name: main, self_signed: [localhost] }\n",
            "  - { name: main }\n  - { name: main, self_signed: [localhost] }\n",
        );
        assert_eq!(check_says(&config), file_says(&file));

        let mut config = base.clone();
        let http = config.listeners[0].http.as_mut().unwrap();
        http.tls.as_mut().unwrap().alpn = vec!["h2".into(), "h2".into()];
        let file = http_base().replace(
            "tls: { store: main }",
            "tls: { store: main, alpn: [h2, h2] }",
        );
        assert_eq!(check_says(&config), file_says(&file));

        let mut config = base.clone();
        config.listeners[1].http.as_mut().unwrap().tls =
            config.listeners[0].http.as_ref().unwrap().tls.clone();
        config.listeners[1].pool = Some(PoolId(0));
        let file = http_base().replace(
            "redirect_https: 8444 }",
            "redirect_https: 8444, tls: { store: main }, pool: web }",
        );
        assert_eq!(check_says(&config), file_says(&file));

        let mut config = base.clone();
        config.pools[1].protocol = crate::config::model::UpstreamProtocol::H2;
        let file = http_base().replace("  - name: api\n", "  - name: api\n    protocol: h2\n");
        assert_eq!(check_says(&config), file_says(&file));

        let mut config = base.clone();
        config.listeners[0].sni_routes = config.listeners[3].sni_routes.clone();
        config.listeners[0].proxy_protocol = ProxyProtocolSend::V2;
        let file = http_base().replace(
            "tls: { store: main },",
            "tls: { store: main }, sni: [{ match: api.example.com, pool: api }], proxy_protocol: v2,",
        );
        assert_eq!(check_says(&config), file_says(&file));

        let mut config = base.clone();
        let http = config.listeners[0].http.as_mut().unwrap();
        http.routes.push(http.routes[0].clone());
        let file = http_base().replace(
            "routes: [{ match: { path_prefix: /a/ }, pool: api }]",
            "routes: [{ match: { path_prefix: /a/ }, pool: api }, { match: { path_prefix: /a/ }, pool: api }]",
        );
        assert_eq!(check_says(&config), file_says(&file));
    }

    #[test]
    fn http_references_that_are_gone_are_refused() {
        let mut config = parse_str(&http_base()).unwrap();
        config.tls.clear();
        config.pools.truncate(1);
        assert_eq!(
            check_says(&config).lines().collect::<Vec<_>>(),
            [
                r##"listeners[0].tls.store: "#0" does not name a tls store: define it under the top-level tls:, e.g. tls: [{ name: #0, self_signed: [localhost] }]"##,
                r##"listeners[0].routes[0].pool: "#1" does not name a pool: use one of the pools defined: web"##,
                r##"listeners[3].pool: "#1" does not name a pool: use one of the pools defined: web"##,
                r##"listeners[3].sni[0].pool: "#1" does not name a pool: use one of the pools defined: web"##,
            ]
        );
        let mut config = parse_str(&http_base()).unwrap();
        let http = config.listeners[0].http.as_mut().unwrap();
        http.timeouts.idle = Duration::ZERO;
        http.request_limits.max_header_bytes = 10;
        http.routes[0].path_prefix = Some("a/".into());
        assert_eq!(
            check_says(&config).lines().collect::<Vec<_>>(),
            [
                r#"listeners[0].timeouts.idle: "0s" must be longer than zero: use e.g. 1m"#,
                r#"listeners[0].request_limits.max_header_bytes: "10" is out of range: use from 1KiB to 1MiB"#,
                r#"listeners[0].routes[0].match.path_prefix: "a/" does not start with /: write the path as requests carry it, e.g. /a/"#,
            ]
        );
    }

    #[test]
    fn timeouts_that_do_not_fit_each_other_are_refused() {
        assert!(probe_fits(Duration::from_secs(1), Duration::from_secs(1), Some("1s")).is_ok());
        assert_eq!(
            probe_fits(Duration::from_secs(2), Duration::from_secs(1), Some("2s"))
                .unwrap_err()
                .to_string(),
            r#""2s" is longer than interval (1s): a probe must end before the next one starts: use at most 1s, or raise interval"#
        );
        assert_eq!(
            ejection_cap(
                Duration::from_secs(30),
                Duration::from_secs(60),
                Some("30s")
            )
            .unwrap_err()
            .to_string(),
            r#""30s" is shorter than ejection_time (1m): it caps how long repeated ejections grow: use at least 1m, or lower ejection_time"#
        );
    }
}
