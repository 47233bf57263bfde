//! Turns a [`RawConfig`] into the typed [`Config`]: interprets every value
//! (durations, addresses, names, counts), fills in defaults, and checks the
//! cross-references (listener and SNI route → pool, unique names and
//! addresses, SNI routes that could never be chosen). It reports
//! *all* problems, each with its YAML path, the bad value and a fix.
//!
//! It must never read files or stop at the first error, and it does no I/O of
//! its own: resolving backend hostnames goes through the [`Resolve`] function
//! it is given, so tests and the fuzz target never touch DNS.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use serde_yaml::Value;

use super::error::{Collector, YamlPath};
use super::model::{
    AccessLogConfig, AccessLogFormat, AccessLogTarget, AdminConfig, Algorithm, BackendConfig, Cidr,
    Config, HealthCheck, HealthKind, LimitAction, Limits, ListenerConfig, OnAllDown, PoolConfig,
    PoolId, ProxyProtocolAccept, ProxyProtocolSend, SniPattern, SniRoute, DEFAULT_BACKLOG,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_EJECTION_TIME, DEFAULT_EJECT_AFTER, DEFAULT_EXPECT_STATUS,
    DEFAULT_HASH_TABLE_SIZE, DEFAULT_HEALTH_FALL, DEFAULT_HEALTH_INTERVAL, DEFAULT_HEALTH_PATH,
    DEFAULT_HEALTH_RISE, DEFAULT_HEALTH_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_IPV6_PREFIX,
    DEFAULT_LIMITS_TABLE_SIZE, DEFAULT_LIMIT_ACTION, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_EJECTION_PERCENT, DEFAULT_MAX_EJECTION_TIME, DEFAULT_ON_ALL_DOWN,
    DEFAULT_PROXY_HEADER_TIMEOUT, DEFAULT_RETRIES, DEFAULT_SHUTDOWN_TIMEOUT, DEFAULT_SLOW_START,
    DEFAULT_TARPIT_DELAY, DEFAULT_TLS_INSPECT_TIMEOUT, DEFAULT_WEIGHT, MAX_WEIGHT,
};
use super::raw::{
    closest, kind, scalar_text, RawAccessLog, RawAdmin, RawBackend, RawConfig, RawHealthCheck,
    RawLimits, RawListener, RawPool, RawSniRoute,
};
pub(super) use super::value::address::Resolve;
use super::value::address::{Backend, Listen};
use super::value::count::{is_prime, next_prime, whole_number, Count};
use super::value::duration::{format as format_duration, Dur, POSITIVE, ZERO_OK};
use super::value::proxy::ProxySetting;
use super::value::rate::{Bandwidth, ConnectionRate};
use super::value::text::{self, header_breaker, host_name, Name, HOST_NAMES_FIX};
use super::value::word::{Flag, Word};
use super::value::{algorithm, cidr, sni, status, Bad, Kind, ListOf};

/// Upper bound for an explicit `workers: N`: far above any machine we target,
/// low enough to catch a typo such as `workers: 80000` before it spawns threads.
const MAX_WORKERS: u64 = 1024;
/// Upper bound for `retries`: each retry costs a connect timeout, so more than
/// this only delays the client's error.
const MAX_RETRIES: u64 = 16;
/// `listen(2)` backlog limit; the kernel further caps it at `net.core.somaxconn`.
const MAX_BACKLOG: u64 = 65535;

/// Upper bound for `eject_after`: a backend failing a thousand connects in a
/// row is down by any measure; a larger number is a typo.
const MAX_EJECT_AFTER: u64 = 1000;
/// Upper bound for a health check's `rise` and `fall`: at the shortest sane
/// interval, more than 100 probes is minutes of ignoring a change of state.
const MAX_HEALTH_COUNT: u64 = 100;
/// Upper bound for `hash_balance_factor`: by 100× the average load the bound
/// no longer bounds anything.
const MAX_HASH_BALANCE_FACTOR: f64 = 100.0;
/// Maglev table size limits: the smallest prime above 1000 (tables smaller
/// than that spread badly even over a few backends), and the smallest prime
/// above a million (the table is copied per pool and rebuilt on every change,
/// so it is kept to a few megabytes).
const MIN_HASH_TABLE_SIZE: u32 = 1021;
const MAX_HASH_TABLE_SIZE: u32 = 1_000_003;

/// `limits_table_size` bounds. Below ~1000 entries a handful of busy clients
/// would evict each other's counts; ten million entries is already around a
/// gigabyte of state, which only a typo asks for.
const MIN_LIMITS_TABLE_SIZE: u64 = 1024;
const MAX_LIMITS_TABLE_SIZE: u64 = 10_000_000;

/// Checks and converts the whole config. Returns `Some` only when nothing at
/// all was wrong, so a caller never sees a half-valid config.
pub(super) fn validate(raw: RawConfig, resolve: Resolve, errors: &mut Collector) -> Option<Config> {
    let root = YamlPath::root();

    let workers = workers(raw.workers.as_ref(), &root.key("workers"), errors);
    let shutdown_timeout = duration(
        raw.shutdown_timeout.as_ref(),
        &root.key("shutdown_timeout"),
        DEFAULT_SHUTDOWN_TIMEOUT,
        ZERO_OK,
        errors,
    );
    let limits_table_size = integer(
        raw.limits_table_size.as_ref(),
        &root.key("limits_table_size"),
        u64::try_from(DEFAULT_LIMITS_TABLE_SIZE).unwrap_or(u64::MAX),
        MIN_LIMITS_TABLE_SIZE..=MAX_LIMITS_TABLE_SIZE,
        errors,
    );
    let admin = raw
        .admin
        .as_ref()
        .map(|admin| admin_section(admin, &root.key("admin"), errors));
    let access_log = raw
        .access_log
        .as_ref()
        .map(|log| access_log_section(log, &root.key("access_log"), errors));

    // Pool names first, so a listener's `pool:` can be checked in file order.
    let pools_path = root.key("pools");
    let raw_pools = non_empty_list(
        raw.pools,
        &pools_path,
        "add at least one pool, e.g. pools: [{ name: web, backends: [127.0.0.1:9001] }]",
        errors,
    );
    let pool_names = PoolNames::new(raw_pools.as_deref().unwrap_or_default());

    let listeners_path = root.key("listeners");
    let listeners = non_empty_list(
        raw.listeners,
        &listeners_path,
        "add at least one listener, e.g. listeners: [{ name: web, listen: 0.0.0.0:8080, pool: web }]",
        errors,
    )
    .map(|listeners| {
        let mut seen = Seen::default();
        listeners
            .into_iter()
            .enumerate()
            .map(|(i, listener)| {
                let path = listeners_path.index(i);
                listener_section(listener.as_ref()?, &path, &pool_names, &mut seen, errors)
            })
            .collect::<Vec<_>>()
    });

    let pools = raw_pools.map(|pools| {
        let mut seen = Seen::default();
        pools
            .into_iter()
            .enumerate()
            .map(|(i, pool)| pool_section(pool?, &pools_path.index(i), resolve, &mut seen, errors))
            .collect::<Vec<_>>()
    });

    // The admin listener shares the machine's ports with the listeners.
    if let (Some(Some(admin)), Some(listeners)) = (&admin, &listeners) {
        let clash = listeners
            .iter()
            .enumerate()
            .find(|(_, l)| matches!(l, Some(l) if l.listen == admin.listen));
        if let Some((i, Some(listener))) = clash.filter(|_| admin.listen.port() != 0) {
            errors.push(
                &root.key("admin").key("listen"),
                Some(&admin.listen.to_string()),
                format!("is already used by listeners[{i}] ({})", listener.name),
                "give the admin API its own port, e.g. 127.0.0.1:9090",
            );
        }
    }

    if !errors.is_empty() {
        return None;
    }
    Some(Config {
        workers: workers?,
        admin: match admin {
            None => None,
            Some(admin) => Some(admin?),
        },
        shutdown_timeout: shutdown_timeout?,
        // The range checked above fits in usize.
        limits_table_size: usize::try_from(limits_table_size?).ok()?,
        access_log: match access_log {
            None => None,
            Some(log) => Some(log?),
        },
        listeners: listeners?.into_iter().collect::<Option<_>>()?,
        pools: pools?.into_iter().collect::<Option<_>>()?,
    })
}

fn access_log_section(
    log: &RawAccessLog,
    path: &YamlPath,
    errors: &mut Collector,
) -> Option<AccessLogConfig> {
    let target_path = path.key("path");
    let target = required(
        log.path.as_ref(),
        &target_path,
        "add path: stderr, or a file such as /var/log/spliced/access.log",
        errors,
    )
    .and_then(|v| string(v, &target_path, "stderr or a file path", errors))
    .and_then(|text| match text.trim() {
        "" => {
            errors.push(
                &target_path,
                Some(text),
                "is an empty path",
                "write stderr, or a file such as /var/log/spliced/access.log",
            );
            None
        }
        "stderr" => Some(AccessLogTarget::Stderr),
        file => Some(AccessLogTarget::File(PathBuf::from(file))),
    });
    let format = match log.format.as_ref() {
        None => Some(AccessLogFormat::Json),
        Some(value) => {
            let names = AccessLogFormat::ALL.map(AccessLogFormat::as_str);
            keyword(
                value,
                &path.key("format"),
                &names,
                "access log format",
                errors,
            )
            .and_then(|word| {
                AccessLogFormat::ALL
                    .into_iter()
                    .find(|f| f.as_str() == word)
            })
        }
    };
    Some(AccessLogConfig {
        target: target?,
        format: format?,
    })
}

fn admin_section(admin: &RawAdmin, path: &YamlPath, errors: &mut Collector) -> Option<AdminConfig> {
    let listen_path = path.key("listen");
    let listen = required(
        admin.listen.as_ref(),
        &listen_path,
        "add listen: 127.0.0.1:9090",
        errors,
    )
    .and_then(|v| listen_address(v, &listen_path, "127.0.0.1:9090", errors));
    let token_path = path.key("token_file");
    let token_file = match admin.token_file.as_ref() {
        None => Some(None),
        Some(v) => string(
            v,
            &token_path,
            "a file path, e.g. /etc/spliced/admin.token",
            errors,
        )
        .and_then(|text| {
            if text.trim().is_empty() {
                errors.push(
                    &token_path,
                    Some(text),
                    "is an empty path",
                    "give the path of a file holding the token, or remove token_file",
                );
                None
            } else {
                Some(Some(PathBuf::from(text)))
            }
        }),
    };
    let allowed_hosts = host_names(
        admin.allowed_hosts.as_ref(),
        &path.key("allowed_hosts"),
        errors,
    );
    let allow_unauthenticated = boolean(
        admin.allow_unauthenticated.as_ref(),
        &path.key("allow_unauthenticated"),
        false,
        errors,
    );
    // Beyond loopback and without a token, anyone who reaches the port can
    // add a backend (hijacking traffic) or replace the config: refuse that
    // unless the operator says so in writing.
    if let (Some(listen), Some(None), Some(false)) = (listen, &token_file, allow_unauthenticated) {
        if !listen.ip().is_loopback() {
            errors.push(
                &listen_path,
                Some(&listen.to_string()),
                "is reachable from other machines, and without admin.token_file anyone who reaches it can change backends and the config",
                "set admin.token_file, listen on 127.0.0.1, or set admin.allow_unauthenticated: true if a firewall already guards this port",
            );
        }
    }
    Some(AdminConfig {
        listen: listen?,
        token_file: token_file?,
        allowed_hosts: allowed_hosts?,
        allow_unauthenticated: allow_unauthenticated?,
    })
}

fn listener_section(
    listener: &RawListener,
    path: &YamlPath,
    pools: &PoolNames,
    seen: &mut Seen,
    errors: &mut Collector,
) -> Option<ListenerConfig> {
    let name_path = path.key("name");
    let name = name(listener.name.as_ref(), &name_path, "web", errors);
    if let Some(name) = &name {
        seen.name(name, path, &name_path, "listener", errors);
    }

    let listen_path = path.key("listen");
    let listen = required(
        listener.listen.as_ref(),
        &listen_path,
        "add listen: 0.0.0.0:8080",
        errors,
    )
    .and_then(|v| listen_address(v, &listen_path, "0.0.0.0:8080", errors));
    if let Some(listen) = listen {
        // Port 0 means "any free port": two of those never collide. Otherwise
        // SO_REUSEPORT would let both bind and silently split the traffic.
        if listen.port() != 0 {
            let label = format!("{path} ({})", name.as_deref().unwrap_or("unnamed"));
            if let Some(first) = seen.addresses.get(&listen) {
                errors.push(
                    &listen_path,
                    Some(&listen.to_string()),
                    format!("is already used by {first}"),
                    "give each listener its own address (port 0 lets the kernel pick one)",
                );
            } else {
                seen.addresses.insert(listen, label);
            }
        }
    }

    let pool_path = path.key("pool");
    let pool = required(
        listener.pool.as_ref(),
        &pool_path,
        "add pool: <name of a pool>",
        errors,
    )
    .and_then(|v| string(v, &pool_path, "the name of a pool", errors))
    .and_then(|wanted| pools.find(wanted, &pool_path, errors));

    let connect_timeout = duration(
        listener.connect_timeout.as_ref(),
        &path.key("connect_timeout"),
        DEFAULT_CONNECT_TIMEOUT,
        POSITIVE,
        errors,
    );
    let idle_timeout = duration(
        listener.idle_timeout.as_ref(),
        &path.key("idle_timeout"),
        DEFAULT_IDLE_TIMEOUT,
        POSITIVE,
        errors,
    );
    let retries = integer(
        listener.retries.as_ref(),
        &path.key("retries"),
        DEFAULT_RETRIES.into(),
        0..=MAX_RETRIES,
        errors,
    );
    let max_connections = integer(
        listener.max_connections.as_ref(),
        &path.key("max_connections"),
        DEFAULT_MAX_CONNECTIONS.into(),
        1..=u32::MAX.into(),
        errors,
    );
    let backlog = integer(
        listener.backlog.as_ref(),
        &path.key("backlog"),
        DEFAULT_BACKLOG.into(),
        1..=MAX_BACKLOG,
        errors,
    );

    // TLS passthrough.
    let sni_routes = match &listener.sni {
        None => Some(Vec::new()),
        Some(routes) => sni_routes(routes, &path.key("sni"), pools, errors),
    };
    let require_sni_path = path.key("require_sni");
    let require_sni = boolean(
        listener.require_sni.as_ref(),
        &require_sni_path,
        false,
        errors,
    )
    .and_then(|require| {
        // Counted before reading: a route already reported as malformed is
        // still a route, so the fix is there and not here.
        if require && listener.sni.as_ref().map_or(0, Vec::len) == 0 {
            errors.push(
                &require_sni_path,
                Some("true"),
                "needs sni routes, and this listener has none",
                "add sni: routes, or remove require_sni (without routes the ClientHello is never read)",
            );
            return None;
        }
        Some(require)
    });
    let tls_inspect_timeout = duration(
        listener.tls_inspect_timeout.as_ref(),
        &path.key("tls_inspect_timeout"),
        DEFAULT_TLS_INSPECT_TIMEOUT,
        POSITIVE,
        errors,
    );

    // PROXY protocol, both ways.
    let proxy_protocol = read_or(
        ProxySetting {
            all: &ProxyProtocolSend::ALL,
            name: ProxyProtocolSend::as_str,
        },
        listener.proxy_protocol.as_ref(),
        ProxyProtocolSend::Off,
        &path.key("proxy_protocol"),
        errors,
    );
    let accept_proxy_protocol = read_or(
        ProxySetting {
            all: &ProxyProtocolAccept::ALL,
            name: ProxyProtocolAccept::as_str,
        },
        listener.accept_proxy_protocol.as_ref(),
        ProxyProtocolAccept::Off,
        &path.key("accept_proxy_protocol"),
        errors,
    );
    let trusted_path = path.key("trusted_proxies");
    let trusted_proxies = cidr_list(listener.trusted_proxies.as_ref(), &trusted_path, errors)
        .and_then(|trusted| {
            trusted_proxies(
                trusted,
                listener.trusted_proxies.is_some(),
                accept_proxy_protocol,
                &trusted_path,
                errors,
            )
        });
    let proxy_header_timeout = duration(
        listener.proxy_header_timeout.as_ref(),
        &path.key("proxy_header_timeout"),
        DEFAULT_PROXY_HEADER_TIMEOUT,
        POSITIVE,
        errors,
    );

    // Traffic control.
    let allow = cidr_list(listener.allow.as_ref(), &path.key("allow"), errors);
    let deny = cidr_list(listener.deny.as_ref(), &path.key("deny"), errors);
    let limits = match &listener.limits {
        None => Some(None),
        Some(limits) => limits_section(limits, &path.key("limits"), errors).map(Some),
    };

    Some(ListenerConfig {
        name: name?,
        listen: listen?,
        pool: pool?,
        connect_timeout: connect_timeout?,
        idle_timeout: idle_timeout?,
        // The ranges above all fit in u32.
        retries: u32::try_from(retries?).ok()?,
        max_connections: u32::try_from(max_connections?).ok()?,
        backlog: u32::try_from(backlog?).ok()?,
        sni_routes: sni_routes?,
        require_sni: require_sni?,
        tls_inspect_timeout: tls_inspect_timeout?,
        proxy_protocol: proxy_protocol?,
        accept_proxy_protocol: accept_proxy_protocol?,
        trusted_proxies: trusted_proxies?,
        proxy_header_timeout: proxy_header_timeout?,
        allow: allow?,
        deny: deny?,
        limits: limits?,
    })
}

/// The listener's `sni:` routes: each one read whole, then checked against
/// the ones before it.
///
/// Routes for the same name are tried in file order, the first whose `alpn`
/// fits winning (so `app.example.com` with `alpn: [h2]` before a plain
/// `app.example.com` splits clients by protocol). A route an earlier one
/// always wins over can never be chosen, and is reported: that includes the
/// same name listed twice.
fn sni_routes(
    routes: &[Option<RawSniRoute>],
    path: &YamlPath,
    pools: &PoolNames,
    errors: &mut Collector,
) -> Option<Vec<SniRoute>> {
    // Each readable route so far: its pattern, alpn, and how to name it.
    let mut earlier: Vec<(SniPattern, Vec<String>, String)> = Vec::new();
    let mut list = Vec::with_capacity(routes.len());
    for (i, route) in routes.iter().enumerate() {
        let Some(route) = route else {
            list.push(None);
            continue;
        };
        let route_path = path.index(i);
        let match_path = route_path.key("match");
        let pattern = required(
            route.pattern.as_ref(),
            &match_path,
            "add match: a host name, e.g. match: api.example.com, or match: \"*.example.com\"",
            errors,
        )
        .and_then(|value| read(sni::pattern, value, &match_path, errors));
        let pool_path = route_path.key("pool");
        let pool = required(
            route.pool.as_ref(),
            &pool_path,
            "add pool: <name of a pool>, where clients asking for this name go",
            errors,
        )
        .and_then(|v| string(v, &pool_path, "the name of a pool", errors))
        .and_then(|wanted| pools.find(wanted, &pool_path, errors));
        let alpn = alpn_list(route.alpn.as_ref(), &route_path.key("alpn"), errors);
        let pattern = match (pattern, &alpn) {
            (Some((text, pattern)), Some(alpn)) => {
                let shadow = earlier
                    .iter()
                    .find(|(p, before, _)| *p == pattern && shadows(before, alpn));
                if let Some((_, before, first)) = shadow {
                    let (problem, fix) = shadowed(first, before, alpn);
                    errors.push(&match_path, Some(&text), problem, fix);
                    None
                } else {
                    earlier.push((
                        pattern.clone(),
                        alpn.clone(),
                        format!("{match_path} ({text})"),
                    ));
                    Some(pattern)
                }
            }
            (pattern, _) => pattern.map(|(_, pattern)| pattern),
        };
        list.push((|| {
            Some(SniRoute {
                pattern: pattern?,
                alpn: alpn?,
                pool: pool?,
            })
        })());
    }
    list.into_iter().collect()
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

/// Checks `trusted_proxies` against `accept_proxy_protocol` (`None` when that
/// is itself wrong, already reported).
fn trusted_proxies(
    trusted: Vec<Cidr>,
    written: bool,
    accept: Option<ProxyProtocolAccept>,
    path: &YamlPath,
    errors: &mut Collector,
) -> Option<Vec<Cidr>> {
    match accept {
        Some(ProxyProtocolAccept::Off) if !trusted.is_empty() => {
            errors.push(
                path,
                None,
                "is set, but accept_proxy_protocol is off",
                "set accept_proxy_protocol: v1, v2 or any to read PROXY headers from these sources, or remove trusted_proxies",
            );
            None
        }
        Some(accept) if accept != ProxyProtocolAccept::Off && trusted.is_empty() => {
            // WHY: a PROXY header sets the client address that allow/deny,
            // limits and ip_hash trust; accepting it from anyone would let
            // any client claim any address.
            errors.push(
                path,
                None,
                if written { "is empty" } else { "is missing" },
                format!(
                    "accept_proxy_protocol: {} needs the addresses of the balancers in front, e.g. trusted_proxies: [10.0.0.0/8]; only they may send a PROXY header",
                    accept.as_str()
                ),
            );
            None
        }
        _ => Some(trusted),
    }
}

fn limits_section(limits: &RawLimits, path: &YamlPath, errors: &mut Collector) -> Option<Limits> {
    let per_ip_rate = match &limits.per_ip_rate {
        None => Some(None),
        Some(value) => read(ConnectionRate, value, &path.key("per_ip_rate"), errors).map(Some),
    };
    let burst_path = path.key("per_ip_burst");
    let per_ip_burst = match &limits.per_ip_burst {
        None => Some(None),
        Some(value) if limits.per_ip_rate.is_none() => {
            errors.push(
                &burst_path,
                scalar_text(value).as_deref(),
                "only applies with per_ip_rate",
                "add per_ip_rate, e.g. per_ip_rate: 50/s, or remove per_ip_burst",
            );
            None
        }
        Some(value) => integer(Some(value), &burst_path, 1, 1..=u32::MAX.into(), errors)
            .and_then(|n| u32::try_from(n).ok())
            .map(Some),
    };
    let per_ip_connections = match &limits.per_ip_connections {
        None => Some(None),
        Some(value) => integer(
            Some(value),
            &path.key("per_ip_connections"),
            1,
            1..=u32::MAX.into(),
            errors,
        )
        .and_then(|n| u32::try_from(n).ok())
        .map(Some),
    };
    let per_ip_bandwidth = match &limits.per_ip_bandwidth {
        None => Some(None),
        Some(value) => read(Bandwidth, value, &path.key("per_ip_bandwidth"), errors).map(Some),
    };
    let action = match &limits.action {
        None => Some(DEFAULT_LIMIT_ACTION),
        Some(value) => {
            let names = LimitAction::ALL.map(LimitAction::as_str);
            keyword(value, &path.key("action"), &names, "limit action", errors)
                .and_then(|word| LimitAction::ALL.into_iter().find(|a| a.as_str() == word))
        }
    };
    let tarpit_delay = duration(
        limits.tarpit_delay.as_ref(),
        &path.key("tarpit_delay"),
        DEFAULT_TARPIT_DELAY,
        POSITIVE,
        errors,
    );
    let ipv6_prefix = integer(
        limits.ipv6_prefix.as_ref(),
        &path.key("ipv6_prefix"),
        DEFAULT_IPV6_PREFIX.into(),
        1..=128,
        errors,
    );
    Some(Limits {
        per_ip_rate: per_ip_rate?,
        per_ip_burst: per_ip_burst?,
        per_ip_connections: per_ip_connections?,
        per_ip_bandwidth: per_ip_bandwidth?,
        action: action?,
        tarpit_delay: tarpit_delay?,
        // The range checked above fits in u8.
        ipv6_prefix: u8::try_from(ipv6_prefix?).ok()?,
    })
}

fn pool_section(
    pool: RawPool,
    path: &YamlPath,
    resolve: Resolve,
    seen: &mut Seen,
    errors: &mut Collector,
) -> Option<PoolConfig> {
    let name_path = path.key("name");
    let name = name(pool.name.as_ref(), &name_path, "web", errors);
    if let Some(name) = &name {
        seen.name(name, path, &name_path, "pool", errors);
    }

    let algorithm = algorithm(pool.algorithm.as_ref(), &path.key("algorithm"), errors);
    // The algorithm and how errors about hash settings describe it; `None`
    // when the algorithm is itself wrong (already reported).
    let algorithm_shown = algorithm.map(|a| match pool.algorithm {
        None => (a, format!("{a}, the default")),
        Some(_) => (a, a.to_string()),
    });
    let algorithm_shown = algorithm_shown
        .as_ref()
        .map(|(a, shown)| (*a, shown.as_str()));

    let backends_path = path.key("backends");
    let backend_count = pool.backends.as_ref().map_or(0, Vec::len);
    let backends = non_empty_list(
        pool.backends,
        &backends_path,
        "add at least one backend, e.g. backends: [127.0.0.1:9001]",
        errors,
    )
    .map(|backends| backend_list(backends, &backends_path, resolve, errors));

    let health_check = match &pool.health_check {
        None => Some(None),
        Some(check) => health_check(check, &path.key("health_check"), errors).map(Some),
    };

    let eject_after = integer(
        pool.eject_after.as_ref(),
        &path.key("eject_after"),
        DEFAULT_EJECT_AFTER.into(),
        0..=MAX_EJECT_AFTER,
        errors,
    );
    let ejection_time = duration(
        pool.ejection_time.as_ref(),
        &path.key("ejection_time"),
        DEFAULT_EJECTION_TIME,
        POSITIVE,
        errors,
    );
    let max_ejection_time = max_ejection_time(
        pool.max_ejection_time.as_ref(),
        &path.key("max_ejection_time"),
        ejection_time,
        errors,
    );
    let max_ejection_percent = integer(
        pool.max_ejection_percent.as_ref(),
        &path.key("max_ejection_percent"),
        DEFAULT_MAX_EJECTION_PERCENT.into(),
        0..=100,
        errors,
    );
    let on_all_down_path = path.key("on_all_down");
    let on_all_down = match pool.on_all_down.as_ref() {
        None => Some(DEFAULT_ON_ALL_DOWN),
        Some(value) => {
            let names = OnAllDown::ALL.map(OnAllDown::as_str);
            keyword(
                value,
                &on_all_down_path,
                &names,
                "on_all_down setting",
                errors,
            )
            .and_then(|word| OnAllDown::ALL.into_iter().find(|o| o.as_str() == word))
        }
    };
    let slow_start = duration(
        pool.slow_start.as_ref(),
        &path.key("slow_start"),
        DEFAULT_SLOW_START,
        ZERO_OK,
        errors,
    );
    let hash_balance_factor = hash_balance_factor(
        pool.hash_balance_factor.as_ref(),
        &path.key("hash_balance_factor"),
        algorithm_shown,
        errors,
    );
    let hash_table_size = hash_table_size(
        pool.hash_table_size.as_ref(),
        &path.key("hash_table_size"),
        algorithm_shown,
        backend_count,
        errors,
    );

    Some(PoolConfig {
        name: name?,
        algorithm: algorithm?,
        backends: backends??,
        health_check: health_check?,
        // The ranges checked above all fit the field types.
        eject_after: u32::try_from(eject_after?).ok()?,
        ejection_time: ejection_time?,
        max_ejection_time: max_ejection_time?,
        max_ejection_percent: u8::try_from(max_ejection_percent?).ok()?,
        on_all_down: on_all_down?,
        slow_start: slow_start?,
        hash_balance_factor: hash_balance_factor?,
        hash_table_size: hash_table_size?,
    })
}

/// The entries of a pool's `backends:`: each one read whole (every bad field
/// reported, not just the first), then checked against the others.
fn backend_list(
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
struct BackendEntry {
    config: Option<BackendConfig>,
    address_path: YamlPath,
    backup: Option<bool>,
}

fn backend_entry(
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

    fn find(&self, wanted: &str, path: &YamlPath, errors: &mut Collector) -> Option<PoolId> {
        if let Some(&i) = self.by_name.get(wanted) {
            return Some(PoolId(i));
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
        errors.push(path, Some(wanted), "does not name a pool", fix);
        None
    }
}

fn workers(value: Option<&Value>, path: &YamlPath, errors: &mut Collector) -> Option<usize> {
    const FIX: &str = "use auto (one per CPU) or a whole number from 1 to 1024";
    let Some(value) = value else {
        return Some(auto_workers());
    };
    if value.as_str() == Some("auto") {
        return Some(auto_workers());
    }
    match whole_number(value) {
        Ok(n) if (1..=i128::from(MAX_WORKERS)).contains(&n) => usize::try_from(n).ok(),
        Ok(_) => {
            errors.push(path, scalar_text(value).as_deref(), "is out of range", FIX);
            None
        }
        Err(problem) => {
            let problem = problem.unwrap_or_else(|| "is not a worker count".to_owned());
            errors.push(path, scalar_text(value).as_deref(), problem, FIX);
            None
        }
    }
}

/// One worker per CPU the process may run on.
fn auto_workers() -> usize {
    // If the count is unknowable (some sandboxes), one worker still works.
    std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

fn health_check(
    check: &RawHealthCheck,
    path: &YamlPath,
    errors: &mut Collector,
) -> Option<HealthCheck> {
    let kind_path = path.key("kind");
    let kind = required(
        check.kind.as_ref(),
        &kind_path,
        "add kind: tcp (connect, optionally send and expect bytes) or kind: http (GET a path)",
        errors,
    )
    .and_then(|value| {
        keyword(
            value,
            &kind_path,
            &["tcp", "http"],
            "health check kind",
            errors,
        )
    });

    let interval = duration(
        check.interval.as_ref(),
        &path.key("interval"),
        DEFAULT_HEALTH_INTERVAL,
        POSITIVE,
        errors,
    );
    let timeout_path = path.key("timeout");
    let timeout = match check.timeout.as_ref() {
        // WHY: the default shrinks to a shorter interval rather than make a
        // file that only sets `interval: 500ms` fail on a key it never wrote.
        None => Some(interval.map_or(DEFAULT_HEALTH_TIMEOUT, |i| i.min(DEFAULT_HEALTH_TIMEOUT))),
        Some(value) => duration(
            Some(value),
            &timeout_path,
            DEFAULT_HEALTH_TIMEOUT,
            POSITIVE,
            errors,
        )
        .and_then(|timeout| match interval {
            Some(interval) if timeout > interval => {
                errors.push(
                    &timeout_path,
                    scalar_text(value).as_deref(),
                    format!("is longer than interval ({})", format_duration(interval)),
                    format!(
                        "a probe must end before the next one starts: use at most {}, or raise interval",
                        format_duration(interval)
                    ),
                );
                None
            }
            _ => Some(timeout),
        }),
    };
    let rise = integer(
        check.rise.as_ref(),
        &path.key("rise"),
        DEFAULT_HEALTH_RISE.into(),
        1..=MAX_HEALTH_COUNT,
        errors,
    );
    let fall = integer(
        check.fall.as_ref(),
        &path.key("fall"),
        DEFAULT_HEALTH_FALL.into(),
        1..=MAX_HEALTH_COUNT,
        errors,
    );

    let tcp_keys = [("send", &check.send), ("expect", &check.expect)];
    let http_keys = [
        ("path", &check.path),
        ("host", &check.host),
        ("expect_status", &check.expect_status),
    ];
    let kind = match kind {
        // Errors follow the order of the keys above, whichever kind is wrong.
        Some("tcp") => {
            let kind = tcp_check(check, path, errors);
            wrong_kind(&http_keys, "tcp", "http", path, errors);
            kind
        }
        Some("http") => {
            wrong_kind(&tcp_keys, "http", "tcp", path, errors);
            http_check(check, path, errors)
        }
        // The kind is missing or wrong (reported): still check the values of
        // both kinds' keys, so the next run has nothing new to say.
        _ => {
            tcp_check(check, path, errors);
            http_check(check, path, errors);
            None
        }
    };

    Some(HealthCheck {
        kind: kind?,
        interval: interval?,
        timeout: timeout?,
        // The ranges checked above fit in u32.
        rise: u32::try_from(rise?).ok()?,
        fall: u32::try_from(fall?).ok()?,
    })
}

/// Reports each key in `keys` that is set, as belonging to the other kind.
fn wrong_kind(
    keys: &[(&str, &Option<Value>)],
    kind: &str,
    other: &str,
    path: &YamlPath,
    errors: &mut Collector,
) {
    for (key, value) in keys {
        if value.is_some() {
            errors.push(
                &path.key(key),
                None,
                format!("is only for kind: {other}, and this check is kind: {kind}"),
                format!("remove {key}, or change kind to {other}"),
            );
        }
    }
}

fn tcp_check(
    check: &RawHealthCheck,
    path: &YamlPath,
    errors: &mut Collector,
) -> Option<HealthKind> {
    let send = match check.send.as_ref() {
        None => Some(None),
        Some(value) => string(
            value,
            &path.key("send"),
            "the bytes to send, e.g. \"PING\\r\\n\"",
            errors,
        )
        // Sending nothing is the same as not setting `send`.
        .map(|text| (!text.is_empty()).then(|| text.as_bytes().to_vec())),
    };
    let expect_path = path.key("expect");
    let expect = match check.expect.as_ref() {
        None => Some(None),
        Some(value) => string(
            value,
            &expect_path,
            "the bytes the reply must contain, e.g. \"+PONG\"",
            errors,
        )
        .and_then(|text| {
            if text.is_empty() {
                // Every reply contains nothing: the check could never fail.
                errors.push(
                    &expect_path,
                    Some(text),
                    "is empty, so every reply would match",
                    "give the bytes the reply must contain, or remove expect to only check the connect",
                );
                None
            } else {
                Some(Some(text.as_bytes().to_vec()))
            }
        }),
    };
    Some(HealthKind::Tcp {
        send: send?,
        expect: expect?,
    })
}

fn http_check(
    check: &RawHealthCheck,
    path: &YamlPath,
    errors: &mut Collector,
) -> Option<HealthKind> {
    let path_path = path.key("path");
    let http_path = match check.path.as_ref() {
        None => Some(DEFAULT_HEALTH_PATH.to_owned()),
        Some(value) => string(value, &path_path, "a URL path, e.g. /healthz", errors)
            .and_then(|text| {
                if !text.starts_with('/') {
                    errors.push(
                        &path_path,
                        Some(text),
                        "does not start with '/'",
                        "write the path from its leading slash, e.g. /healthz (the host goes in host:)",
                    );
                    None
                } else if let Some(bad) = header_breaker(text) {
                    errors.push(
                        &path_path,
                        Some(text),
                        format!("contains {bad}, which cannot go in a request line"),
                        "percent-encode it, e.g. %20 for a space",
                    );
                    None
                } else {
                    Some(text.to_owned())
                }
            }),
    };
    let host_path = path.key("host");
    let host = match check.host.as_ref() {
        None => Some(None),
        Some(value) => string(value, &host_path, "a host name, e.g. app.internal", errors)
            .and_then(|text| {
                let problem = if text.is_empty() {
                    Some("is empty".to_owned())
                } else {
                    header_breaker(text).map(|bad| format!("contains {bad}"))
                };
                match problem {
                    Some(problem) => {
                        errors.push(
                            &host_path,
                            Some(text),
                            problem,
                            "write the Host header value, e.g. app.internal or app.internal:8080, or remove host to send the backend's address",
                        );
                        None
                    }
                    None => Some(Some(text.to_owned())),
                }
            }),
    };
    let expect_status = expect_status(
        check.expect_status.as_ref(),
        &path.key("expect_status"),
        errors,
    );
    Some(HealthKind::Http {
        path: http_path?,
        host: host?,
        expect_status: expect_status?,
    })
}

/// `max_ejection_time`, which must not be shorter than `ejection_time`.
fn max_ejection_time(
    value: Option<&Value>,
    path: &YamlPath,
    ejection_time: Option<Duration>,
    errors: &mut Collector,
) -> Option<Duration> {
    let Some(value) = value else {
        // WHY: as for a health check's timeout, the default grows to a longer
        // ejection_time rather than fail on a key the file never wrote.
        return Some(ejection_time.map_or(DEFAULT_MAX_EJECTION_TIME, |e| {
            e.max(DEFAULT_MAX_EJECTION_TIME)
        }));
    };
    let max = duration(
        Some(value),
        path,
        DEFAULT_MAX_EJECTION_TIME,
        POSITIVE,
        errors,
    )?;
    match ejection_time {
        Some(first) if max < first => {
            errors.push(
                path,
                scalar_text(value).as_deref(),
                format!("is shorter than ejection_time ({})", format_duration(first)),
                format!(
                    "it caps how long repeated ejections grow: use at least {}, or lower ejection_time",
                    format_duration(first)
                ),
            );
            None
        }
        _ => Some(max),
    }
}

/// The pool's algorithm and how errors describe it (`round_robin, the
/// default`); `None` when the algorithm is itself wrong (already reported).
type PoolAlgorithm<'a> = Option<(Algorithm, &'a str)>;

/// Reports a hash setting on a pool that does not hash, and says whether it did.
fn needs_ip_hash(
    value: &Value,
    path: &YamlPath,
    key: &str,
    algorithm: PoolAlgorithm,
    errors: &mut Collector,
) -> bool {
    match algorithm {
        Some((other, algorithm)) if other != Algorithm::IpHash => {
            errors.push(
                path,
                scalar_text(value).as_deref(),
                format!("only applies to algorithm ip_hash, and this pool uses {algorithm}"),
                format!(
                    "set algorithm: ip_hash to keep each client on one backend, or remove {key}"
                ),
            );
            true
        }
        _ => false,
    }
}

fn hash_balance_factor(
    value: Option<&Value>,
    path: &YamlPath,
    algorithm: PoolAlgorithm,
    errors: &mut Collector,
) -> Option<Option<f64>> {
    const FIX: &str = "use a number above 1 and at most 100, e.g. 1.25 (lower spreads load more evenly, higher moves fewer clients off their backend)";
    let Some(value) = value else {
        return Some(None);
    };
    if needs_ip_hash(value, path, "hash_balance_factor", algorithm, errors) {
        return None;
    }
    let number = match value {
        Value::Number(n) => n.as_f64(),
        // Quoted, as templating tools write numbers.
        Value::String(s) => s.trim().parse::<f64>().ok(),
        other => {
            errors.push(
                path,
                scalar_text(other).as_deref(),
                format!("is {}, not a number", kind(other)),
                FIX,
            );
            return None;
        }
    };
    match number {
        // Written to refuse NaN too: every comparison with it is false.
        Some(factor) if factor > 1.0 && factor <= MAX_HASH_BALANCE_FACTOR => Some(Some(factor)),
        Some(_) => {
            errors.push(path, scalar_text(value).as_deref(), "is out of range", FIX);
            None
        }
        None => {
            errors.push(path, scalar_text(value).as_deref(), "is not a number", FIX);
            None
        }
    }
}

fn hash_table_size(
    value: Option<&Value>,
    path: &YamlPath,
    algorithm: PoolAlgorithm,
    backends: usize,
    errors: &mut Collector,
) -> Option<u32> {
    let size = match value {
        None => i128::from(DEFAULT_HASH_TABLE_SIZE),
        Some(value) => {
            if needs_ip_hash(value, path, "hash_table_size", algorithm, errors) {
                return None;
            }
            match whole_number(value) {
                Ok(size) => size,
                Err(problem) => {
                    let problem = problem.unwrap_or_else(|| "is not a whole number".to_owned());
                    errors.push(
                        path,
                        scalar_text(value).as_deref(),
                        problem,
                        format!(
                            "use a prime from {MIN_HASH_TABLE_SIZE} to {MAX_HASH_TABLE_SIZE}, e.g. {DEFAULT_HASH_TABLE_SIZE}"
                        ),
                    );
                    return None;
                }
            }
        }
    };
    // Maglev spreads a backend's share evenly only when the table is much
    // larger than the backend count (the paper uses 100×; 10× is the floor).
    let hashing = matches!(algorithm, Some((Algorithm::IpHash, _)));
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
    } else {
        return u32::try_from(size).ok();
    };
    let wanted = size
        .max(needed)
        .clamp(MIN_HASH_TABLE_SIZE.into(), MAX_HASH_TABLE_SIZE.into());
    let suggestion = next_prime(wanted);
    let fix = if needed > i128::from(MAX_HASH_TABLE_SIZE) {
        format!(
            "the largest table ({MAX_HASH_TABLE_SIZE}) fits {} backends: split the pool",
            MAX_HASH_TABLE_SIZE / 10
        )
    } else {
        format!(
            "use a prime from {MIN_HASH_TABLE_SIZE} to {MAX_HASH_TABLE_SIZE} and at least 10 × the backends, e.g. {suggestion}"
        )
    };
    let shown = match value {
        Some(value) => scalar_text(value),
        None => Some(DEFAULT_HASH_TABLE_SIZE.to_string()),
    };
    let problem = if value.is_none() {
        format!("(the default) {problem}")
    } else {
        problem
    };
    errors.push(path, shown.as_deref(), problem, fix);
    None
}

fn required<'a>(
    value: Option<&'a Value>,
    path: &YamlPath,
    fix: &str,
    errors: &mut Collector,
) -> Option<&'a Value> {
    if value.is_none() {
        errors.push(path, None, "is missing", fix);
    }
    value
}

fn non_empty_list<T>(
    list: Option<Vec<T>>,
    path: &YamlPath,
    fix: &str,
    errors: &mut Collector,
) -> Option<Vec<T>> {
    match list {
        None => {
            errors.push(path, None, "is missing", fix);
            None
        }
        Some(list) if list.is_empty() => {
            errors.push(path, None, "is empty", fix);
            None
        }
        Some(list) => Some(list),
    }
}

/// Records `bad` at `path`, each bad item of a list at its index.
fn record(path: &YamlPath, bad: Bad, errors: &mut Collector) {
    match bad {
        Bad::Value {
            shown,
            problem,
            fix,
        } => errors.push(path, shown.as_deref(), problem, fix),
        Bad::Items(items) => {
            for (i, bad) in items {
                record(&path.index(i), bad, errors);
            }
        }
    }
}

/// `value` read as `kind`, or `None` with the problem recorded at `path`.
fn read<K: Kind>(
    kind: K,
    value: &Value,
    path: &YamlPath,
    errors: &mut Collector,
) -> Option<K::Out> {
    kind.read(value)
        .map_err(|bad| record(path, bad, errors))
        .ok()
}

/// As [`read`], with `default` when the value is absent.
fn read_or<K: Kind>(
    kind: K,
    value: Option<&Value>,
    default: K::Out,
    path: &YamlPath,
    errors: &mut Collector,
) -> Option<K::Out> {
    match value {
        None => Some(default),
        Some(value) => kind
            .read_or(value, &default)
            .map_err(|bad| record(path, bad, errors))
            .ok(),
    }
}

fn duration(
    value: Option<&Value>,
    path: &YamlPath,
    default: Duration,
    kind: Dur,
    errors: &mut Collector,
) -> Option<Duration> {
    read_or(kind, value, default, path, errors)
}

fn integer(
    value: Option<&Value>,
    path: &YamlPath,
    default: u64,
    range: RangeInclusive<u64>,
    errors: &mut Collector,
) -> Option<u64> {
    read_or(Count::new(range), value, default, path, errors)
}

fn boolean(
    value: Option<&Value>,
    path: &YamlPath,
    default: bool,
    errors: &mut Collector,
) -> Option<bool> {
    read_or(Flag, value, default, path, errors)
}

fn keyword(
    value: &Value,
    path: &YamlPath,
    allowed: &[&'static str],
    what: &str,
    errors: &mut Collector,
) -> Option<&'static str> {
    let word = Word {
        all: allowed,
        name: |w| w,
        what,
    };
    read(word, value, path, errors)
}

fn string<'a>(
    value: &'a Value,
    path: &YamlPath,
    expected: &str,
    errors: &mut Collector,
) -> Option<&'a str> {
    text::string(value, expected)
        .map_err(|bad| record(path, bad, errors))
        .ok()
}

fn name(
    value: Option<&Value>,
    path: &YamlPath,
    example: &str,
    errors: &mut Collector,
) -> Option<String> {
    let name = Name(example);
    let value = required(value, path, &name.missing(), errors)?;
    read(name, value, path, errors)
}

fn listen_address(
    value: &Value,
    path: &YamlPath,
    example: &str,
    errors: &mut Collector,
) -> Option<SocketAddr> {
    read(Listen(example), value, path, errors)
}

fn backend_address(
    value: &Value,
    path: &YamlPath,
    resolve: Resolve,
    errors: &mut Collector,
) -> Option<(String, SocketAddr)> {
    read(Backend(resolve), value, path, errors)
}

fn cidr_list(value: Option<&Value>, path: &YamlPath, errors: &mut Collector) -> Option<Vec<Cidr>> {
    read_or(cidr::LIST, value, Vec::new(), path, errors)
}

fn alpn_list(
    value: Option<&Value>,
    path: &YamlPath,
    errors: &mut Collector,
) -> Option<Vec<String>> {
    read_or(sni::ALPN, value, Vec::new(), path, errors)
}

fn algorithm(value: Option<&Value>, path: &YamlPath, errors: &mut Collector) -> Option<Algorithm> {
    read_or(
        algorithm::algorithm,
        value,
        Algorithm::RoundRobin,
        path,
        errors,
    )
}

fn expect_status(
    value: Option<&Value>,
    path: &YamlPath,
    errors: &mut Collector,
) -> Option<Vec<RangeInclusive<u16>>> {
    read_or(
        status::expect_status,
        value,
        vec![DEFAULT_EXPECT_STATUS],
        path,
        errors,
    )
}

/// `admin.allowed_hosts`: DNS names the admin API may be reached by (besides
/// its IP addresses and `localhost`), as a browser would send them in `Host`.
fn host_names(
    value: Option<&Value>,
    path: &YamlPath,
    errors: &mut Collector,
) -> Option<Vec<String>> {
    let list = ListOf {
        item: host_name,
        not_a_list: &|_| HOST_NAMES_FIX.to_owned(),
        empty: None,
    };
    read_or(list, value, Vec::new(), path, errors)
}
