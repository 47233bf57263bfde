//! The immutable routing view workers read: listeners → pools → backends, with
//! each pool's prepared selector. Built whole on the control thread and
//! published through `arc-swap`; a worker loads it once per new connection and
//! never waits for the control thread. Counters hang off it in `Arc`s keyed by
//! name so they survive a rebuild.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyper::header::{HeaderName, HeaderValue};

use crate::balance::sticky::{self, StickyIds};
use crate::balance::{Backend, Policy, Tier};
use crate::config::{
    Config, HealthCheck, ListenerConfig, MissingKey, ProxyProtocolAccept, RateLimitKey, SniPattern,
    SniRoute, Sticky, UpstreamProtocol, DEFAULT_IPV6_PREFIX,
};
use crate::counters::{BackendStats, ListenerStats, RateLimitedStats, LISTENER_SLOTS};
use crate::limits::{RequestRate, Scope};
use crate::tls::ReloadableStore;

pub struct Snapshot {
    pub listeners: Vec<Arc<Listener>>,
    pub pools: Vec<Pool>,
    /// The certificate stores (parallel to `Config::tls`), attached by the
    /// control thread after the build.
    pub tls_stores: Vec<Arc<ReloadableStore>>,
}

pub struct Listener {
    pub name: String,
    /// Stable across reloads while the listener keeps its address: workers
    /// tag their sockets and accepts with it.
    pub id: u32,
    /// Index in `Snapshot::listeners` (and of the worker's socket for it).
    pub index: usize,
    /// The default pool (always set on `mode: tcp` listeners; see
    /// [`Listener::l4_pool`]); for `mode: http`, where unrouted requests go.
    pub pool: Option<usize>,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub retries: u32,
    pub max_connections: u32,
    pub stats: Arc<ListenerStats>,
    /// Everything else the data path needs (SNI routes, PROXY protocol,
    /// access lists, limits), as configured.
    pub settings: ListenerConfig,
    /// Where this listener's per-client limits are counted.
    pub limit_scope: Scope,
    /// Its slot in the per-backend, per-listener counters (stable: from the id).
    pub metrics_slot: usize,
    /// `mode: http` with `tls:`: the rustls configuration handshakes use
    /// (its certificate resolver follows certificate reloads).
    pub server_config: Option<Arc<rustls::ServerConfig>>,
    /// The store it resolves from, asked before the handshake whether the
    /// client's SNI has a certificate at all.
    pub tls_store: Option<Arc<ReloadableStore>>,
    /// `mode: http`: what each route (parallel to `settings.http.routes`)
    /// needs per request beyond its match and pool.
    pub routes: Vec<RouteState>,
}

/// A route's sticky cookie and rate limits, prepared for the data path.
#[derive(Default)]
pub struct RouteState {
    pub sticky: Option<StickyRoute>,
    pub limits: Vec<RouteLimit>,
}

/// A route's `sticky:` over its pool's backends.
pub struct StickyRoute {
    pub cookie: String,
    pub ids: StickyIds,
    /// The `Set-Cookie` value pinning each backend (by index in the pool).
    pub set_cookie: Vec<HeaderValue>,
}

impl StickyRoute {
    fn new(s: &Sticky, pool: &Pool) -> StickyRoute {
        let key = match &s.secret {
            Some(secret) => secret.0.as_bytes().to_vec(),
            None => sticky::derived_key(&s.cookie),
        };
        let ids = StickyIds::new(&key, &pool.name, &pool.backends);
        let set_cookie = (0..pool.backends.len())
            .map(|i| {
                let id = ids.id_of(i).map(sticky::encode).unwrap_or_default();
                let mut text = format!("{}={id}; Path=/", s.cookie);
                if let Some(ttl) = s.ttl {
                    text.push_str(&format!("; Max-Age={}", ttl.as_secs().max(1)));
                }
                if s.secure {
                    text.push_str("; Secure");
                }
                if s.http_only {
                    text.push_str("; HttpOnly");
                }
                if let Some(same_site) = s.same_site {
                    text.push_str("; SameSite=");
                    text.push_str(same_site.attribute());
                }
                // Validation keeps the name a token and the id is hex.
                HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static(""))
            })
            .collect();
        StickyRoute {
            cookie: s.cookie.clone(),
            ids,
            set_cookie,
        }
    }
}

/// One `rate_limit:` entry of a route.
pub struct RouteLimit {
    /// `None`: the client's address; else this request header's value.
    pub header: Option<HeaderName>,
    pub missing: MissingKey,
    pub scope: Scope,
    pub rate: RequestRate,
    /// IPv6 clients are keyed by this prefix (the listener's `limits.ipv6_prefix`).
    pub ipv6_prefix: u8,
    /// The `key` label, as written.
    pub label: String,
    pub rejected: Arc<RateLimitedStats>,
}

pub struct Pool {
    pub name: String,
    pub backends: Vec<Arc<Backend>>,
    pub primary: Tier,
    pub backup: Tier,
    pub policy: Policy,
    /// Passive ejection settings.
    pub eject_after: u32,
    pub ejection_time_ms: u64,
    pub max_ejection_time_ms: u64,
    pub max_ejection_percent: u8,
    /// Active probes, run by the control thread's health supervisor.
    pub health_check: Option<HealthCheck>,
    /// HTTP listeners: how requests reach the backends.
    pub protocol: UpstreamProtocol,
    /// HTTP listeners: TLS to the backends (attached by the control thread
    /// after the build, like the listeners' certificates).
    pub upstream_tls: Option<UpstreamTls>,
}

/// How a pool's backends are spoken to over TLS.
pub struct UpstreamTls {
    pub config: Arc<rustls::ClientConfig>,
    /// The name sent as SNI and verified; `None`: each backend's host.
    pub sni: Option<String>,
    /// Tells apart connections made with different TLS settings (never 0,
    /// which is plaintext) in the per-core pools; stable across reloads.
    pub id: u64,
}

impl Snapshot {
    /// Builds the view of `config`, reusing the counters of listeners and
    /// backends that `previous` already had (same name; same pool and address).
    /// `listener_ids[i]` is the id of `config.listeners[i]`.
    pub fn build(
        config: &Config,
        listener_ids: &[u32],
        workers: usize,
        previous: Option<&Snapshot>,
    ) -> Snapshot {
        let pools: Vec<Pool> = config
            .pools
            .iter()
            .map(|p| {
                let backends: Vec<Arc<Backend>> = p
                    .backends
                    .iter()
                    .map(|b| {
                        let known = previous
                            .and_then(|s| s.pools.iter().find(|old| old.name == p.name))
                            .and_then(|old| old.backends.iter().find(|ob| ob.addr == b.addr))
                            .map(|ob| ob.stats.clone());
                        let stats = known.unwrap_or_else(|| {
                            let stats = BackendStats::new(workers);
                            // WHY only while running: at start-up every
                            // backend is trusted so spliced is ready at once;
                            // one added later gets no traffic before a probe
                            // has seen it answer.
                            if previous.is_some() && p.health_check.is_some() {
                                stats.up.store(false, Ordering::Relaxed);
                                stats.unprobed.store(true, Ordering::Relaxed);
                            }
                            Arc::new(stats)
                        });
                        Arc::new(Backend::new(b, p.slow_start, stats))
                    })
                    .collect();
                let (backup, primary): (Vec<usize>, Vec<usize>) =
                    (0..backends.len()).partition(|&i| backends[i].backup);
                Pool {
                    name: p.name.clone(),
                    primary: Tier::new(p, &backends, primary, workers),
                    backup: Tier::new(p, &backends, backup, workers),
                    policy: Policy {
                        on_all_down: p.on_all_down,
                    },
                    eject_after: p.eject_after,
                    ejection_time_ms: p.ejection_time.as_millis() as u64,
                    max_ejection_time_ms: p.max_ejection_time.as_millis() as u64,
                    max_ejection_percent: p.max_ejection_percent,
                    health_check: p.health_check.clone(),
                    protocol: p.protocol,
                    upstream_tls: None,
                    backends,
                }
            })
            .collect();
        let listeners = config
            .listeners
            .iter()
            .enumerate()
            .map(|(index, l)| {
                let stats = previous
                    .and_then(|s| s.listeners.iter().find(|old| old.name == l.name))
                    .map(|old| old.stats.clone())
                    .unwrap_or_else(|| Arc::new(ListenerStats::new(workers)));
                let mut listener = Listener::new(l, listener_ids[index], index, stats);
                listener.routes = route_states(l, &pools, workers, previous);
                Arc::new(listener)
            })
            .collect();
        Snapshot {
            listeners,
            pools,
            tls_stores: Vec::new(),
        }
    }
}

impl Listener {
    fn new(l: &ListenerConfig, id: u32, index: usize, stats: Arc<ListenerStats>) -> Listener {
        Listener {
            name: l.name.clone(),
            id,
            index,
            pool: l.pool.map(|p| p.0),
            connect_timeout: l.connect_timeout,
            idle_timeout: l.idle_timeout,
            retries: l.retries,
            max_connections: l.max_connections,
            stats,
            settings: l.clone(),
            limit_scope: Scope::listener(&l.name),
            metrics_slot: id as usize % LISTENER_SLOTS,
            server_config: None,
            tls_store: None,
            routes: Vec::new(),
        }
    }
}

/// The prepared state of `l`'s HTTP routes, reusing the 429 counters that
/// `previous` had for the same `{listener, pool, key}`.
fn route_states(
    l: &ListenerConfig,
    pools: &[Pool],
    workers: usize,
    previous: Option<&Snapshot>,
) -> Vec<RouteState> {
    let Some(http) = &l.http else {
        return Vec::new();
    };
    let ipv6_prefix = l
        .limits
        .as_ref()
        .map_or(DEFAULT_IPV6_PREFIX, |lim| lim.ipv6_prefix);
    // (pool, key label) → counter: those of the previous snapshot's
    // listener of this name first, then any made below, so that limits with
    // the same labels share one series.
    let mut counters: Vec<(String, String, Arc<RateLimitedStats>)> = previous
        .and_then(|s| {
            let old = s.listeners.iter().find(|old| old.name == l.name)?;
            let routes = &old.settings.http.as_ref()?.routes;
            Some(
                routes
                    .iter()
                    .zip(&old.routes)
                    .flat_map(|(route, state)| {
                        let pool = s.pools.get(route.pool.0).map_or("", |p| p.name.as_str());
                        state
                            .limits
                            .iter()
                            .map(move |r| (pool.to_owned(), r.label.clone(), r.rejected.clone()))
                    })
                    .collect(),
            )
        })
        .unwrap_or_default();
    let mut counter = |pool: &str, label: &str| {
        if let Some((_, _, c)) = counters.iter().find(|(p, k, _)| p == pool && k == label) {
            return c.clone();
        }
        let c = Arc::new(RateLimitedStats::new(workers));
        counters.push((pool.to_owned(), label.to_owned(), c.clone()));
        c
    };
    http.routes
        .iter()
        .enumerate()
        .map(|(i, route)| {
            let pool = &pools[route.pool.0];
            RouteState {
                sticky: route.sticky.as_ref().map(|s| StickyRoute::new(s, pool)),
                limits: route
                    .rate_limits
                    .iter()
                    .map(|limit| {
                        let label = limit.key.label();
                        RouteLimit {
                            header: match &limit.key {
                                RateLimitKey::Ip => None,
                                RateLimitKey::Header(name) => {
                                    HeaderName::from_bytes(name.as_bytes()).ok()
                                }
                            },
                            missing: limit.missing,
                            scope: Scope::route_limit(&l.name, i, &pool.name, &label),
                            rate: RequestRate::new(limit.rate, limit.burst),
                            ipv6_prefix,
                            rejected: counter(&pool.name, &label),
                            label,
                        }
                    })
                    .collect(),
            }
        })
        .collect()
}

impl Pool {
    /// Passive health: takes backend `i` out of rotation for a backoff that doubles
    /// with every ejection up to the pool's cap, unless that would eject more than
    /// `max_ejection_percent` of the pool. Workers may race here; the worst case is
    /// one extra ejection, which the control thread logs like any other.
    pub fn eject(&self, i: usize, now_ms: u64) {
        let b = &self.backends[i];
        if b.ejected(now_ms) {
            return;
        }
        let ejected = self.backends.iter().filter(|x| x.ejected(now_ms)).count();
        if (ejected + 1) * 100 > self.max_ejection_percent as usize * self.backends.len() {
            return;
        }
        let n = b.stats.ejections.fetch_add(1, Ordering::Relaxed).min(30);
        let length = self
            .ejection_time_ms
            .saturating_mul(1u64 << n)
            .min(self.max_ejection_time_ms.max(self.ejection_time_ms));
        b.stats
            .ejected_until_ms
            .store(now_ms + length, Ordering::Relaxed);
        b.stats.consecutive_failures.store(0, Ordering::Relaxed);
        b.stats.ejections_total.fetch_add(1, Ordering::Relaxed);
    }
}

impl Listener {
    /// The pool of a `mode: tcp` listener. Validation refuses a tcp listener
    /// without one, so the fallback is never taken.
    pub fn l4_pool(&self) -> usize {
        self.pool.unwrap_or(0)
    }

    /// Every pool this listener sends traffic to: its default pool, then its
    /// SNI (or HTTP) routes' pools, each once, in that order (as the metrics
    /// and the API count them).
    pub fn pools(&self) -> Vec<usize> {
        let sni = self.settings.sni_routes.iter().map(|r| r.pool.0);
        let http = self
            .settings
            .http
            .iter()
            .flat_map(|h| h.routes.iter().map(|r| r.pool.0));
        let mut pools: Vec<usize> = Vec::new();
        for p in self.pool.into_iter().chain(sni).chain(http) {
            if !pools.contains(&p) {
                pools.push(p);
            }
        }
        pools
    }

    /// Whether new connections must be read before a backend is chosen (a
    /// PROXY header to accept, or a ClientHello to route by).
    pub fn inspects(&self) -> bool {
        self.settings.accept_proxy_protocol != ProxyProtocolAccept::Off
            || !self.settings.sni_routes.is_empty()
    }

    /// The pool for a client that asked for `sni` (normalised: lower case,
    /// no trailing dot) offering `alpn`: exact names first, then the longest
    /// matching `*.suffix`; a route with an `alpn` list also needs one of its
    /// protocols offered. No match: the listener's default pool.
    pub fn route(&self, sni: Option<&str>, alpn: &[String]) -> usize {
        let Some(sni) = sni else {
            return self.l4_pool();
        };
        let alpn_ok = |r: &SniRoute| r.alpn.is_empty() || r.alpn.iter().any(|p| alpn.contains(p));
        let routes = &self.settings.sni_routes;
        if let Some(r) = routes
            .iter()
            .find(|r| matches!(&r.pattern, SniPattern::Exact(name) if name == sni) && alpn_ok(r))
        {
            return r.pool.0;
        }
        routes
            .iter()
            .filter_map(|r| match &r.pattern {
                SniPattern::Suffix(suffix)
                    if sni.len() > suffix.len() && sni.ends_with(suffix.as_str()) && alpn_ok(r) =>
                {
                    Some((suffix.len(), r.pool.0))
                }
                _ => None,
            })
            // The first of equally long matches wins, as for exact names.
            .rev()
            .max_by_key(|(len, _)| *len)
            .map_or(self.l4_pool(), |(_, pool)| pool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, PoolId};

    fn listener(routes: &[(&str, usize, &[&str])]) -> Listener {
        let yaml = "listeners: [{ name: l, listen: 127.0.0.1:0, pool: d }]\npools: [{ name: d, backends: [127.0.0.1:1] }]\n";
        let mut l = config::parse_str(yaml).unwrap().listeners.remove(0);
        l.sni_routes = routes
            .iter()
            .map(|(m, pool, alpn)| SniRoute {
                pattern: match m.strip_prefix('*') {
                    Some(suffix) => SniPattern::Suffix(suffix.to_string()),
                    None => SniPattern::Exact(m.to_string()),
                },
                alpn: alpn.iter().map(|a| a.to_string()).collect(),
                pool: PoolId(*pool),
            })
            .collect();
        Listener::new(&l, 0, 0, Arc::new(ListenerStats::new(1)))
    }

    fn http_config(route_keys: &str) -> Config {
        let yaml = format!(
            "listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    mode: http\n    routes:\n      - {{ match: {{ path_prefix: /a/ }}, pool: p{route_keys} }}\n      - {{ pool: p{route_keys} }}\npools:\n  - {{ name: p, backends: [127.0.0.1:1, 127.0.0.1:2] }}\n"
        );
        config::parse_str(&yaml).unwrap()
    }

    #[test]
    fn route_limits_with_the_same_labels_share_a_counter_that_survives_a_rebuild() {
        let keys = ", rate_limit: [{ key: ip, rate: 1/s }, { key: \"header:X-Key\", rate: 1/s }]";
        let first = Snapshot::build(&http_config(keys), &[1], 1, None);
        let routes = &first.listeners[0].routes;
        assert_eq!(routes.len(), 2);
        let (a, b) = (&routes[0].limits, &routes[1].limits);
        assert!(Arc::ptr_eq(&a[0].rejected, &b[0].rejected), "one ip series");
        assert!(!Arc::ptr_eq(&a[0].rejected, &a[1].rejected));
        assert_ne!(a[0].scope, b[0].scope, "but each route its own buckets");
        assert_eq!(a[1].header.as_ref().map(|h| h.as_str()), Some("x-key"));
        let faster = keys.replace("rate: 1/s", "rate: 5/s");
        let second = Snapshot::build(&http_config(&faster), &[1], 1, Some(&first));
        let again = &second.listeners[0].routes[0].limits;
        assert!(Arc::ptr_eq(&again[0].rejected, &a[0].rejected));
        assert_eq!(again[0].scope, a[0].scope, "a new rate keeps the buckets");
        assert_ne!(again[0].rate, a[0].rate, "and applies");
    }

    #[test]
    fn sticky_routes_set_cookies_that_name_no_address() {
        let first = Snapshot::build(
            &http_config(", sticky: { cookie: SRV, ttl: 1h, secure: true, same_site: strict }"),
            &[1],
            1,
            None,
        );
        let sticky = first.listeners[0].routes[0].sticky.as_ref().unwrap();
        assert_eq!(sticky.set_cookie.len(), 2);
        let cookie = sticky.set_cookie[0].to_str().unwrap();
        let id = crate::balance::sticky::encode(sticky.ids.id_of(0).unwrap());
        assert_eq!(
            cookie,
            format!("SRV={id}; Path=/; Max-Age=3600; Secure; HttpOnly; SameSite=Strict")
        );
        assert!(!cookie.contains("127.0.0.1"));
        assert!(first.listeners[0]
            .routes
            .iter()
            .all(|r| r.limits.is_empty()));
    }

    #[test]
    fn exact_beats_wildcard_and_longest_suffix_wins() {
        let l = listener(&[
            ("*.example.com", 1, &[]),
            ("api.example.com", 2, &[]),
            ("*.eu.example.com", 3, &[]),
        ]);
        assert_eq!(l.route(Some("api.example.com"), &[]), 2);
        assert_eq!(l.route(Some("www.example.com"), &[]), 1);
        assert_eq!(l.route(Some("a.eu.example.com"), &[]), 3);
        assert_eq!(
            l.route(Some("example.com"), &[]),
            0,
            "a wildcard needs a label before the suffix"
        );
        assert_eq!(l.route(Some("other.org"), &[]), 0);
        assert_eq!(l.route(None, &[]), 0);
    }

    #[test]
    fn alpn_narrows_a_route() {
        let l = listener(&[("app.example.com", 1, &["h2"]), ("app.example.com", 2, &[])]);
        assert_eq!(
            l.route(Some("app.example.com"), &["h2".into(), "http/1.1".into()]),
            1
        );
        assert_eq!(l.route(Some("app.example.com"), &["http/1.1".into()]), 2);
    }
}
