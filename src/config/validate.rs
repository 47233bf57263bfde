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
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
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

/// Resolves a backend `host`name with `port` to the one address to use.
pub(super) type Resolve<'a> = &'a dyn Fn(&str, u16) -> io::Result<SocketAddr>;

/// Longest duration accepted anywhere. The data plane adds these to clock
/// readings and `io_uring` timespecs; a year is far beyond any sensible timeout
/// and keeps that arithmetic nowhere near overflow.
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
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
/// Highest `per_ip_rate`, new connections per second: one every microsecond
/// from a single client is no longer a limit on anything a host can accept,
/// and keeps the rate limiter's interval arithmetic well inside nanoseconds.
const MAX_CONNECTION_RATE: f64 = 1_000_000.0;
/// Highest `per_ip_bandwidth`, bytes per second (1000GB/s): far above any NIC,
/// so only a typo reaches it, and token counts stay far from overflow.
const MAX_BANDWIDTH: f64 = 1e12;
/// Longest ALPN protocol name: its length is one byte on the wire (RFC 7301).
const MAX_ALPN_LEN: usize = 255;

/// Checks and converts the whole config. Returns `Some` only when nothing at
/// all was wrong, so a caller never sees a half-valid config.
pub(super) fn validate(raw: RawConfig, resolve: Resolve, errors: &mut Collector) -> Option<Config> {
    let root = YamlPath::root();

    let workers = workers(raw.workers.as_ref(), &root.key("workers"), errors);
    let shutdown_timeout = duration(
        raw.shutdown_timeout.as_ref(),
        &root.key("shutdown_timeout"),
        DEFAULT_SHUTDOWN_TIMEOUT,
        AllowZero::Yes,
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

/// `admin.allowed_hosts`: DNS names the admin API may be reached by (besides
/// its IP addresses and `localhost`), as a browser would send them in `Host`.
fn host_names(
    value: Option<&Value>,
    path: &YamlPath,
    errors: &mut Collector,
) -> Option<Vec<String>> {
    const FIX: &str = "list host names, e.g. [spliced.internal, lb-1.example.com]";
    let items = match value {
        None => return Some(Vec::new()),
        Some(Value::Sequence(items)) => items,
        Some(other) => {
            errors.push(
                path,
                scalar_text(other).as_deref(),
                format!("is {}, not a list", kind(other)),
                FIX,
            );
            return None;
        }
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let path = path.index(i);
            let name = string(item, &path, "a host name, e.g. spliced.internal", errors)?;
            let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
            let valid = !name.is_empty()
                && name.len() <= 253
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if valid {
                Some(name)
            } else {
                errors.push(
                    &path,
                    Some(&name),
                    "is not a host name (letters, digits, '-' and '.', no port)",
                    FIX,
                );
                None
            }
        })
        // Collected in full before combining, so every bad item is reported.
        .collect::<Vec<_>>()
        .into_iter()
        .collect()
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
        AllowZero::No,
        errors,
    );
    let idle_timeout = duration(
        listener.idle_timeout.as_ref(),
        &path.key("idle_timeout"),
        DEFAULT_IDLE_TIMEOUT,
        AllowZero::No,
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
        AllowZero::No,
        errors,
    );

    // PROXY protocol, both ways.
    let proxy_protocol = match &listener.proxy_protocol {
        None => Some(ProxyProtocolSend::Off),
        Some(value) => {
            let names = ProxyProtocolSend::ALL.map(ProxyProtocolSend::as_str);
            proxy_setting(value, &path.key("proxy_protocol"), &names, errors).and_then(|word| {
                ProxyProtocolSend::ALL
                    .into_iter()
                    .find(|p| p.as_str() == word)
            })
        }
    };
    let accept_proxy_protocol = match &listener.accept_proxy_protocol {
        None => Some(ProxyProtocolAccept::Off),
        Some(value) => {
            let names = ProxyProtocolAccept::ALL.map(ProxyProtocolAccept::as_str);
            proxy_setting(value, &path.key("accept_proxy_protocol"), &names, errors).and_then(
                |word| {
                    ProxyProtocolAccept::ALL
                        .into_iter()
                        .find(|p| p.as_str() == word)
                },
            )
        }
    };
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
        AllowZero::No,
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
        .and_then(|value| {
            string(
                value,
                &match_path,
                "a host name, e.g. api.example.com",
                errors,
            )
        })
        .and_then(|text| sni_pattern(text, &match_path, errors).map(|p| (text, p)));
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
                    errors.push(&match_path, Some(text), problem, fix);
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

fn sni_pattern(text: &str, path: &YamlPath, errors: &mut Collector) -> Option<SniPattern> {
    match parse_sni_pattern(text) {
        Ok(pattern) => Some(pattern),
        Err((problem, fix)) => {
            errors.push(path, Some(text), problem, fix);
            None
        }
    }
}

/// `api.example.com` → `Exact("api.example.com")`, `*.Example.com.` →
/// `Suffix(".example.com")`: lower case, without the trailing dot, as the
/// data plane compares the client's name. Fails with (problem, fix).
fn parse_sni_pattern(text: &str) -> Result<SniPattern, (String, String)> {
    const NAME_FIX: &str =
        "write a host name, e.g. api.example.com, or *.example.com for every name under example.com";
    let fail = |problem: &str, fix: &str| Err((problem.to_owned(), fix.to_owned()));
    if text.is_empty() {
        return fail("is empty", NAME_FIX);
    }
    if text.chars().any(char::is_whitespace) {
        return fail(
            "contains a space",
            "write one name per route, e.g. api.example.com, and add a route for each further name",
        );
    }
    let lower = text.to_ascii_lowercase();
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    if name == "*" {
        return fail(
            "matches every name",
            "remove this route: the listener's pool already takes every client no route matches",
        );
    }
    let (wildcard, rest) = match name.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, name),
    };
    if rest.contains('*') {
        return fail(
            "has a * that is not a leading \"*.\"",
            "a wildcard stands for whole labels at the start only: write *.example.com (it matches a.example.com and a.b.example.com, not example.com)",
        );
    }
    if name.len() > 253 {
        return fail(
            "is longer than 253 characters, the most a DNS name can have",
            NAME_FIX,
        );
    }
    if rest.split('.').any(str::is_empty) {
        return fail(
            "has an empty label (a leading dot or two dots in a row)",
            "write the name without the extra dot, e.g. api.example.com, or *.example.com for a wildcard",
        );
    }
    let odd = rest
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')));
    if let Some(c) = odd {
        let fix = match c {
            ':' | '/' if rest.contains("://") => {
                "SNI carries only the host name: leave out the scheme and path, e.g. api.example.com"
            }
            ':' => "SNI carries no port: write the name alone, e.g. api.example.com",
            c if !c.is_ascii() => {
                "write the name in its ASCII (punycode, xn--...) form, which is what clients send"
            }
            _ => "use only letters, digits, '-' and '_' between the dots",
        };
        return Err((
            format!("contains {c:?}, which is not allowed in a host name"),
            fix.to_owned(),
        ));
    }
    if rest.split('.').any(|label| label.len() > 63) {
        return fail(
            "has a label longer than 63 characters, the most DNS allows",
            NAME_FIX,
        );
    }
    if !wildcard && rest.parse::<Ipv4Addr>().is_ok() {
        return fail(
            "is an IP address, which clients never send as SNI (RFC 6066)",
            "route by host name: clients connecting by IP send no SNI and go to the listener's pool",
        );
    }
    Ok(if wildcard {
        SniPattern::Suffix(format!(".{rest}"))
    } else {
        SniPattern::Exact(rest.to_owned())
    })
}

/// A route's `alpn:` list (empty when absent: any client).
fn alpn_list(
    value: Option<&Value>,
    path: &YamlPath,
    errors: &mut Collector,
) -> Option<Vec<String>> {
    const FIX: &str = "list protocol names as clients offer them, e.g. [h2] or [h2, http/1.1]";
    match value {
        None => Some(Vec::new()),
        Some(Value::Sequence(items)) if items.is_empty() => {
            errors.push(
                path,
                None,
                "is an empty list",
                format!("{FIX}, or remove alpn to match clients whatever they offer"),
            );
            None
        }
        Some(Value::Sequence(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let path = path.index(i);
                let name = string(item, &path, "a protocol name, e.g. h2", errors)?;
                let problem = if name.is_empty() {
                    "is empty".to_owned()
                } else if name.len() > MAX_ALPN_LEN {
                    format!("is longer than {MAX_ALPN_LEN} bytes, the most ALPN allows")
                } else {
                    return Some(name.to_owned());
                };
                errors.push(&path, Some(name), problem, FIX);
                None
            })
            // Collected in full before combining, so every bad item is reported.
            .collect::<Vec<_>>()
            .into_iter()
            .collect(),
        Some(other) => {
            let fix = match other {
                Value::String(text) => format!("write a list, e.g. [{text}]"),
                _ => FIX.to_owned(),
            };
            errors.push(
                path,
                scalar_text(other).as_deref(),
                format!("is {}, not a list", kind(other)),
                fix,
            );
            None
        }
    }
}

/// `proxy_protocol` / `accept_proxy_protocol`: one of `allowed`, whose first
/// word is `off`.
fn proxy_setting<'a>(
    value: &Value,
    path: &YamlPath,
    allowed: &[&'a str],
    errors: &mut Collector,
) -> Option<&'a str> {
    let versions = one_of(&allowed[1..]);
    match value {
        // WHY: YAML 1.1 tools (and habits) write `off` as a boolean false;
        // serde_yaml reads a plain `off` as a string. Both mean off.
        Value::Bool(false) => Some(allowed[0]),
        Value::Bool(true) => {
            errors.push(
                path,
                Some("true"),
                "does not say which PROXY protocol version",
                format!("use {versions}"),
            );
            None
        }
        Value::Number(n) if matches!(n.as_u64(), Some(1 | 2)) => {
            errors.push(
                path,
                Some(&n.to_string()),
                "is a number, not a PROXY protocol setting",
                format!("did you mean v{n}? use {}", one_of(allowed)),
            );
            None
        }
        Value::String(text) if !allowed.contains(&text.as_str()) => {
            // `V2`, `Off`: a case slip is worth naming exactly.
            match allowed
                .iter()
                .find(|word| word.eq_ignore_ascii_case(text.trim()))
            {
                Some(word) => {
                    errors.push(
                        path,
                        Some(text),
                        "is not a known PROXY protocol setting",
                        format!("did you mean {word}? use {}", one_of(allowed)),
                    );
                    None
                }
                None => keyword(value, path, allowed, "PROXY protocol setting", errors),
            }
        }
        _ => keyword(value, path, allowed, "PROXY protocol setting", errors),
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

/// A list of IP networks (`allow`, `deny`, `trusted_proxies`); empty when absent.
fn cidr_list(value: Option<&Value>, path: &YamlPath, errors: &mut Collector) -> Option<Vec<Cidr>> {
    match value {
        None => Some(Vec::new()),
        Some(Value::Sequence(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| cidr(item, &path.index(i), errors))
            // Collected in full before combining, so every bad item is reported.
            .collect::<Vec<_>>()
            .into_iter()
            .collect(),
        Some(other) => {
            let fix = match other {
                Value::String(text) => format!("write a list, e.g. [{}]", text.trim()),
                _ => "write a list of addresses or networks, e.g. [10.0.0.0/8, \"::1/128\"]"
                    .to_owned(),
            };
            errors.push(
                path,
                scalar_text(other).as_deref(),
                format!("is {}, not a list", kind(other)),
                fix,
            );
            None
        }
    }
}

/// `10.0.0.0/8`, `"::1/128"`, or a bare address (one host).
fn cidr(value: &Value, path: &YamlPath, errors: &mut Collector) -> Option<Cidr> {
    match value {
        Value::String(text) => match parse_cidr(text) {
            Ok(cidr) => Some(cidr),
            Err((problem, fix)) => {
                errors.push(path, Some(text), problem, fix);
                None
            }
        },
        other => {
            errors.push(
                path,
                scalar_text(other).as_deref(),
                format!("is {}, not an IP address or network", kind(other)),
                CIDR_FIX,
            );
            None
        }
    }
}

const CIDR_FIX: &str =
    "write an address or a network, e.g. 192.0.2.1, 10.0.0.0/8 or \"::1/128\" (quote IPv6)";

/// Parses a network, refusing host bits (`10.0.0.1/8` is more likely a typo
/// for one host than meant as `10.0.0.0/8`). Fails with (problem, fix).
fn parse_cidr(text: &str) -> Result<Cidr, (String, String)> {
    let text = text.trim();
    let (address, prefix) = match text.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (text, None),
    };
    let address = address
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(address);
    let Ok(addr) = address.parse::<IpAddr>() else {
        let problem = format!("is not an IP network ({address:?} is not an IP address)");
        // WHY: names are refused, not resolved: a DNS answer that changes
        // would silently change who may connect.
        let fix = if is_hostname(address) {
            format!("{CIDR_FIX}; host names are not allowed")
        } else {
            CIDR_FIX.to_owned()
        };
        return Err((problem, fix));
    };
    let (max, family, example) = if addr.is_ipv4() {
        (32, 4, "10.0.0.0/8")
    } else {
        (128, 6, "fd00::/8")
    };
    let prefix = match prefix {
        None => max,
        Some(p) if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) => {
            return Err((
                format!("is not an IP network (prefix length {p:?} is not a number)"),
                CIDR_FIX.to_owned(),
            ));
        }
        Some(p) => match p.parse::<u8>() {
            Ok(prefix) if prefix <= max => prefix,
            _ => {
                return Err((
                    format!("has prefix length /{p}, out of range"),
                    format!(
                        "use a prefix length from 0 to {max} for an IPv{family} network, e.g. {example}"
                    ),
                ));
            }
        },
    };
    let network = network_address(addr, prefix);
    if network != addr {
        return Err((
            "has host bits set".to_owned(),
            format!("write the network, {network}/{prefix}, or {addr} alone for that one address"),
        ));
    }
    // WHY: Cidr::contains compares IPv4-mapped clients as IPv4, so a mapped
    // network would never match anyone; name the IPv4 network instead.
    if let IpAddr::V6(v6) = addr {
        if let Some(v4) = v6.to_ipv4_mapped().filter(|_| prefix >= 96) {
            return Err((
                "is an IPv4-mapped IPv6 network, which never matches (IPv4 clients are compared as IPv4)".to_owned(),
                format!("write it as {v4}/{}", prefix - 96),
            ));
        }
    }
    Ok(Cidr {
        addr: network,
        prefix,
    })
}

/// `addr` with every bit after the first `prefix` cleared.
fn network_address(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

fn limits_section(limits: &RawLimits, path: &YamlPath, errors: &mut Collector) -> Option<Limits> {
    let per_ip_rate = match &limits.per_ip_rate {
        None => Some(None),
        Some(value) => connection_rate(value, &path.key("per_ip_rate"), errors).map(Some),
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
        Some(value) => bandwidth(value, &path.key("per_ip_bandwidth"), errors).map(Some),
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
        AllowZero::No,
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

/// `per_ip_rate`: `50/s` or `30/m`, in new connections per second.
fn connection_rate(value: &Value, path: &YamlPath, errors: &mut Collector) -> Option<f64> {
    const FIX: &str = "write new connections per second or per minute, e.g. 50/s or 30/m";
    let text = match value {
        Value::String(text) => text.trim(),
        Value::Number(n) => {
            errors.push(
                path,
                Some(&n.to_string()),
                "is a number without a unit",
                format!("add /s or /m, e.g. {n}/s (per second) or {n}/m (per minute)"),
            );
            return None;
        }
        other => {
            errors.push(
                path,
                scalar_text(other).as_deref(),
                format!("is {}, not a rate", kind(other)),
                FIX,
            );
            return None;
        }
    };
    let (number, unit) = text.split_once('/').unwrap_or((text, ""));
    let number = number.trim();
    let per_second = match unit.trim() {
        "s" => 1.0,
        "m" => 60.0,
        "" if decimal(number).is_some() => {
            errors.push(
                path,
                Some(text),
                "is a number without a unit",
                format!("add /s or /m, e.g. {number}/s (per second) or {number}/m (per minute)"),
            );
            return None;
        }
        unit if !unit.is_empty() && decimal(number).is_some() => {
            errors.push(
                path,
                Some(text),
                format!("has an unknown unit \"/{unit}\""),
                FIX,
            );
            return None;
        }
        _ => {
            errors.push(path, Some(text), "is not a rate", FIX);
            return None;
        }
    };
    let Some(number) = decimal(number) else {
        errors.push(path, Some(text), "is not a rate", FIX);
        return None;
    };
    let rate = number / per_second;
    if rate <= 0.0 {
        errors.push(
            path,
            Some(text),
            "must be more than zero",
            "use e.g. 50/s, or remove per_ip_rate for no rate limit",
        );
        return None;
    }
    if rate > MAX_CONNECTION_RATE {
        errors.push(
            path,
            Some(text),
            "is out of range",
            format!("use at most {MAX_CONNECTION_RATE}/s, or remove per_ip_rate for no rate limit"),
        );
        return None;
    }
    Some(rate)
}

/// Units of `per_ip_bandwidth`, in bytes: SI (powers of 1000) and IEC (1024).
const BANDWIDTH_UNITS: [(&str, u64); 8] = [
    ("B", 1),
    ("KB", 1000),
    ("kB", 1000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
];

/// `per_ip_bandwidth`: `10MB/s`, `512KiB/s`, in bytes per second.
fn bandwidth(value: &Value, path: &YamlPath, errors: &mut Collector) -> Option<u64> {
    const FIX: &str =
        "write bytes per second with a unit, e.g. 10MB/s (units: B, KB, MB, GB, KiB, MiB, GiB)";
    let text = match value {
        Value::String(text) => text.trim(),
        other => {
            let problem = match other {
                Value::Number(_) => "is a number without a unit".to_owned(),
                _ => format!("is {}, not a bandwidth", kind(other)),
            };
            errors.push(path, scalar_text(other).as_deref(), problem, FIX);
            return None;
        }
    };
    let Some(amount) = text.strip_suffix("/s") else {
        errors.push(path, Some(text), "is not a rate per second", FIX);
        return None;
    };
    let split = amount
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(amount.len());
    let (number, unit) = amount.split_at(split);
    let unit = unit.trim();
    let Some(&(_, bytes)) = BANDWIDTH_UNITS.iter().find(|(name, _)| *name == unit) else {
        let (problem, hint) = match BANDWIDTH_UNITS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(unit))
        {
            // `Mb` is megabits elsewhere; limits here are in bytes.
            Some((name, _)) => (
                format!("has an unknown unit {unit:?}"),
                format!("did you mean {name}/s (bytes)? "),
            ),
            None if unit.is_empty() => ("has no unit".to_owned(), String::new()),
            None => (format!("has an unknown unit {unit:?}"), String::new()),
        };
        errors.push(path, Some(text), problem, format!("{hint}{FIX}"));
        return None;
    };
    let Some(number) = decimal(number) else {
        errors.push(path, Some(text), "is not a bandwidth", FIX);
        return None;
    };
    // u64 → f64 is exact for every unit above.
    let per_second = number * bytes as f64;
    if per_second < 1.0 {
        let problem = if number == 0.0 {
            "must be more than zero"
        } else {
            "is less than one byte per second"
        };
        errors.push(
            path,
            Some(text),
            problem,
            "use e.g. 10MB/s, or remove per_ip_bandwidth for no bandwidth limit",
        );
        return None;
    }
    if per_second > MAX_BANDWIDTH {
        errors.push(path, Some(text), "is out of range", "use at most 1000GB/s");
        return None;
    }
    // In 1..=1e12, so the conversion is exact to the byte.
    Some(per_second.round() as u64)
}

/// A plain non-negative decimal (`50`, `0.5`): no sign, exponent, `inf` or
/// `nan`, so what is accepted is exactly what a reader would expect.
fn decimal(text: &str) -> Option<f64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let well_formed = !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.bytes().all(|b| b.is_ascii_digit())
        && !(text.contains('.') && fraction.is_empty());
    well_formed.then(|| text.parse().ok()).flatten()
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
        AllowZero::No,
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
        AllowZero::Yes,
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

fn algorithm(value: Option<&Value>, path: &YamlPath, errors: &mut Collector) -> Option<Algorithm> {
    let Some(value) = value else {
        return Some(Algorithm::RoundRobin);
    };
    let name = string(value, path, "an algorithm name, e.g. round_robin", errors)?;
    if let Some(algorithm) = Algorithm::ALL.iter().find(|a| a.as_str() == name) {
        return Some(*algorithm);
    }
    let names = Algorithm::ALL.map(Algorithm::as_str);
    let alias = ALGORITHM_ALIASES
        .iter()
        .find(|(alias, _)| alias.eq_ignore_ascii_case(name.trim()))
        .map(|(_, algorithm)| algorithm.as_str());
    let hint = match alias.or_else(|| closest(name, &names)) {
        Some(near) => format!("did you mean {near}? "),
        None => String::new(),
    };
    errors.push(
        path,
        Some(name),
        "is not a known algorithm",
        format!("{hint}use {}", one_of(&names)),
    );
    None
}

/// What other balancers call our algorithms, so a config ported from HAProxy,
/// nginx or Envoy is pointed at the right name instead of just refused.
const ALGORITHM_ALIASES: &[(&str, Algorithm)] = &[
    ("roundrobin", Algorithm::RoundRobin),
    ("wrr", Algorithm::WeightedRoundRobin),
    ("leastconn", Algorithm::LeastConnections),
    ("least_conn", Algorithm::LeastConnections),
    ("source", Algorithm::IpHash),
    ("hash", Algorithm::IpHash),
    ("maglev", Algorithm::IpHash),
    ("ring_hash", Algorithm::IpHash),
    ("consistent_hash", Algorithm::IpHash),
    ("power_of_two", Algorithm::P2c),
    ("power_of_two_choices", Algorithm::P2c),
];

/// "a or b", or "one of a, b, c" for longer lists.
fn one_of(words: &[&str]) -> String {
    match words {
        [a, b] => format!("{a} or {b}"),
        _ => format!("one of {}", words.join(", ")),
    }
}

/// A value that must be one of a few fixed words (`kind: tcp`).
fn keyword<'a>(
    value: &Value,
    path: &YamlPath,
    allowed: &[&'a str],
    what: &str,
    errors: &mut Collector,
) -> Option<&'a str> {
    let text = string(value, path, &one_of(allowed), errors)?;
    if let Some(word) = allowed.iter().find(|word| **word == text) {
        return Some(word);
    }
    let hint = match closest(text, allowed) {
        Some(near) => format!("did you mean {near}? "),
        None => String::new(),
    };
    errors.push(
        path,
        Some(text),
        format!("is not a known {what}"),
        format!("{hint}use {}", one_of(allowed)),
    );
    None
}

/// `true` or `false`; also the quoted `"true"`/`"false"` templating tools
/// write, as [`whole_number`] takes `"8"`. YAML 1.1's `yes`/`on` are refused:
/// YAML 1.2 (and serde_yaml) reads them as strings, and guessing here would
/// make spliced disagree with every other 1.2 tool.
fn boolean(
    value: Option<&Value>,
    path: &YamlPath,
    default: bool,
    errors: &mut Collector,
) -> Option<bool> {
    match value {
        None => Some(default),
        Some(Value::Bool(b)) => Some(*b),
        Some(Value::String(s)) if s.trim() == "true" => Some(true),
        Some(Value::String(s)) if s.trim() == "false" => Some(false),
        Some(other) => {
            errors.push(
                path,
                scalar_text(other).as_deref(),
                format!("is {}, not true or false", kind(other)),
                format!("write true or false (the default is {default})"),
            );
            None
        }
    }
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
        AllowZero::No,
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
            AllowZero::No,
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

/// What in `text` would break an HTTP/1.1 request line or header, if anything.
fn header_breaker(text: &str) -> Option<&'static str> {
    if text.contains(['\r', '\n']) {
        Some("a line break")
    } else if text.chars().any(char::is_whitespace) {
        Some("a space")
    } else if text.chars().any(char::is_control) {
        Some("a control character")
    } else {
        None
    }
}

const STATUS_FIX: &str =
    "use a status code from 100 to 599, a range such as 200-399, or a list of them, e.g. [200, 204, \"300-302\"]";

/// `expect_status`: `200`, `"200-399"`, or a list of those.
fn expect_status(
    value: Option<&Value>,
    path: &YamlPath,
    errors: &mut Collector,
) -> Option<Vec<RangeInclusive<u16>>> {
    match value {
        None => Some(vec![DEFAULT_EXPECT_STATUS]),
        Some(Value::Sequence(items)) if items.is_empty() => {
            errors.push(path, None, "is an empty list", STATUS_FIX);
            None
        }
        Some(Value::Sequence(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| status_range(item, &path.index(i), errors))
            // Collected in full before combining, so every bad item is reported.
            .collect::<Vec<_>>()
            .into_iter()
            .collect(),
        Some(value) => status_range(value, path, errors).map(|range| vec![range]),
    }
}

fn status_range(
    value: &Value,
    path: &YamlPath,
    errors: &mut Collector,
) -> Option<RangeInclusive<u16>> {
    let shown = scalar_text(value);
    let mut fail = |problem: String, fix: String| {
        errors.push(path, shown.as_deref(), problem, fix);
        None
    };
    let (low, high) = match value {
        Value::Number(_) => match whole_number(value) {
            Ok(code) => (code, code),
            Err(_) => return fail("is not a status code".to_owned(), STATUS_FIX.to_owned()),
        },
        Value::String(text) => {
            let text = text.trim();
            // "2xx" is how people say it; say how to write it here.
            if let [class @ b'1'..=b'5', b'x' | b'X', b'x' | b'X'] = text.as_bytes() {
                let class = i128::from(class - b'0') * 100;
                return fail(
                    "is not a status code".to_owned(),
                    format!("write the range as \"{class}-{}\"", class + 99),
                );
            }
            let code = |part: &str| {
                let part = part.trim();
                (!part.is_empty() && part.len() <= 3 && part.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| part.parse::<i128>().ok())
                    .flatten()
            };
            let parsed = match text.split_once('-') {
                None => code(text).map(|c| (c, c)),
                Some((low, high)) => code(low).zip(code(high)),
            };
            match parsed {
                Some(parsed) => parsed,
                None => {
                    return fail(
                        "is not a status code or range".to_owned(),
                        STATUS_FIX.to_owned(),
                    )
                }
            }
        }
        other => {
            return fail(
                format!("is {}, not a status code", kind(other)),
                STATUS_FIX.to_owned(),
            )
        }
    };
    let valid = 100..=599;
    if !valid.contains(&low) || !valid.contains(&high) {
        return fail(
            "is out of range (status codes are 100 to 599)".to_owned(),
            STATUS_FIX.to_owned(),
        );
    }
    if low > high {
        return fail(
            "is a backwards range".to_owned(),
            format!("write the lower code first: \"{high}-{low}\""),
        );
    }
    // Both are in 100..=599, so they fit in u16.
    Some(u16::try_from(low).ok()?..=u16::try_from(high).ok()?)
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
        AllowZero::No,
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

/// Trial division: the sizes checked are at most about a million, so this
/// takes at most ~500 divisions.
fn is_prime(n: i128) -> bool {
    if n < 2 {
        return false;
    }
    if n % 2 == 0 {
        return n == 2;
    }
    let mut d = 3;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 2;
    }
    true
}

/// The smallest prime at least `n`.
fn next_prime(n: i128) -> i128 {
    let mut candidate = n.max(2);
    while !is_prime(candidate) {
        candidate += 1;
    }
    candidate
}

/// A listener or pool name: it becomes a metric label and appears in API
/// paths, so it is kept to a charset that needs no escaping anywhere.
fn name(
    value: Option<&Value>,
    path: &YamlPath,
    example: &str,
    errors: &mut Collector,
) -> Option<String> {
    let value = required(
        value,
        path,
        &format!("add name: <unique name>, e.g. name: {example}"),
        errors,
    )?;
    let name = string(value, path, &format!("a name, e.g. {example}"), errors)?;
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !valid {
        errors.push(
            path,
            Some(name),
            "is not a valid name",
            format!("use only letters, digits, '_', '.' and '-', e.g. {example}"),
        );
        return None;
    }
    Some(name.to_owned())
}

/// Whether a zero duration makes sense for a setting.
#[derive(Clone, Copy, PartialEq)]
enum AllowZero {
    Yes,
    No,
}

fn duration(
    value: Option<&Value>,
    path: &YamlPath,
    default: Duration,
    zero: AllowZero,
    errors: &mut Collector,
) -> Option<Duration> {
    let Some(value) = value else {
        return Some(default);
    };
    // A zero default means "off", which makes a poor example of a duration.
    let example = if default.is_zero() {
        "30s".to_owned()
    } else {
        format_duration(default)
    };
    let text = match value {
        Value::String(text) => text.as_str(),
        Value::Number(_) => {
            // A bare number is ambiguous (seconds? milliseconds?), so it is
            // refused even when it is 0 rather than guessed.
            errors.push(
                path,
                scalar_text(value).as_deref(),
                "is a number without a unit",
                format!("add a unit, e.g. {example} (units: ms, s, m, h)"),
            );
            return None;
        }
        other => {
            errors.push(
                path,
                scalar_text(other).as_deref(),
                format!("is {}, not a duration", kind(other)),
                format!("write a number and a unit, e.g. {example}"),
            );
            return None;
        }
    };
    match parse_duration(text) {
        Ok(d) if d.is_zero() && zero == AllowZero::No => {
            errors.push(
                path,
                Some(text),
                "must be longer than zero",
                format!("use e.g. {example}"),
            );
            None
        }
        Ok(d) => Some(d),
        Err(BadDuration::NoUnit) => {
            errors.push(
                path,
                Some(text),
                "is a number without a unit",
                format!("add a unit, e.g. {example} (units: ms, s, m, h)"),
            );
            None
        }
        Err(BadDuration::Malformed) => {
            errors.push(
                path,
                Some(text),
                "is not a duration",
                format!(
                    "write a number and one unit (ms, s, m or h), e.g. 250ms, 1.5s or {example}"
                ),
            );
            None
        }
        Err(BadDuration::TooLong) => {
            errors.push(
                path,
                Some(text),
                "is too long",
                format!("use at most {}", format_duration(MAX_DURATION)),
            );
            None
        }
    }
}

#[derive(Debug, PartialEq)]
enum BadDuration {
    /// `2`, `1.5`: the number is fine, the unit is missing.
    NoUnit,
    Malformed,
    /// Longer than [`MAX_DURATION`].
    TooLong,
}

/// Parses `250ms`, `2s`, `1.5s`, `5m`, `1h`: one non-negative decimal number
/// and one unit. Exact to the nanosecond (no floating point), so `0.1s` is
/// exactly 100ms.
fn parse_duration(text: &str) -> Result<Duration, BadDuration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let well_formed = !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.bytes().all(|b| b.is_ascii_digit())
        && !(number.contains('.') && fraction.is_empty());
    if !well_formed {
        return Err(BadDuration::Malformed);
    }
    let unit_nanos: u128 = match unit {
        "" => return Err(BadDuration::NoUnit),
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60 * 1_000_000_000,
        "h" => 3600 * 1_000_000_000,
        _ => return Err(BadDuration::Malformed),
    };
    let max = MAX_DURATION.as_nanos();
    let whole = whole.trim_start_matches('0');
    // Anything with more digits than this is over a year in any unit; checking
    // the length first keeps the parse below from overflowing.
    if whole.len() > 20 {
        return Err(BadDuration::TooLong);
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| BadDuration::Malformed)?
    };
    // Digits beyond 15 are below a nanosecond even for hours; dropping them
    // keeps `fraction * unit` inside u128.
    let fraction = &fraction[..fraction.len().min(15)];
    let fraction_nanos = if fraction.is_empty() {
        0
    } else {
        let digits: u128 = fraction.parse().map_err(|_| BadDuration::Malformed)?;
        digits * unit_nanos / 10u128.pow(fraction.len() as u32)
    };
    let nanos = whole
        .checked_mul(unit_nanos)
        .and_then(|n| n.checked_add(fraction_nanos))
        .filter(|&n| n <= max)
        .ok_or(BadDuration::TooLong)?;
    Ok(Duration::from_nanos(
        u64::try_from(nanos).map_err(|_| BadDuration::TooLong)?,
    ))
}

/// Writes a duration the way a config would: `2s`, `5m`, `250ms`.
fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 3_600_000 == 0 && ms > 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms % 60_000 == 0 && ms > 0 {
        format!("{}m", ms / 60_000)
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

fn integer(
    value: Option<&Value>,
    path: &YamlPath,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
    errors: &mut Collector,
) -> Option<u64> {
    let Some(value) = value else {
        return Some(default);
    };
    let fix = if *range.end() == u64::from(u32::MAX) && *range.start() == 0 {
        "use a whole number, 0 or more".to_owned()
    } else if *range.end() == u64::from(u32::MAX) {
        format!("use a whole number of at least {}", range.start())
    } else {
        format!(
            "use a whole number from {} to {}",
            range.start(),
            range.end()
        )
    };
    match whole_number(value) {
        Ok(n) if n >= i128::from(*range.start()) && n <= i128::from(*range.end()) => {
            u64::try_from(n).ok()
        }
        Ok(_) => {
            errors.push(path, scalar_text(value).as_deref(), "is out of range", fix);
            None
        }
        Err(problem) => {
            let problem = problem.unwrap_or_else(|| "is not a whole number".to_owned());
            errors.push(path, scalar_text(value).as_deref(), problem, fix);
            None
        }
    }
}

/// Reads a whole number from a YAML integer or a quoted one (`"8"`, which
/// templating tools often produce). `Err(Some(problem))` names a wrong type;
/// `Err(None)` is a scalar that is not a whole number.
fn whole_number(value: &Value) -> Result<i128, Option<String>> {
    match value {
        Value::Number(n) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
            .ok_or(None),
        Value::String(s) => {
            let s = s.trim();
            let digits = s.strip_prefix('-').unwrap_or(s);
            if digits.is_empty() || digits.len() > 30 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(None);
            }
            s.parse::<i128>().map_err(|_| None)
        }
        other => Err(Some(format!("is {}, not a number", kind(other)))),
    }
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

fn string<'a>(
    value: &'a Value,
    path: &YamlPath,
    expected: &str,
    errors: &mut Collector,
) -> Option<&'a str> {
    match value {
        Value::String(text) => Some(text),
        other => {
            let fix = match other {
                // `name: 8080` parses as a number; quoting keeps it a string.
                Value::Number(_) | Value::Bool(_) => {
                    format!("write {expected}; quote it if it looks like a number or true/false")
                }
                _ => format!("write {expected}"),
            };
            errors.push(
                path,
                scalar_text(other).as_deref(),
                format!("is {}, not text", kind(other)),
                fix,
            );
            None
        }
    }
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

/// An address to bind: an IP literal and a port (0 = any free port). Hostnames
/// are refused because a name can resolve to an address this host does not own.
fn listen_address(
    value: &Value,
    path: &YamlPath,
    example: &str,
    errors: &mut Collector,
) -> Option<SocketAddr> {
    let fix = format!(
        "use IP:port, e.g. {example} or [::]:{}",
        example.rsplit(':').next().unwrap_or("8080")
    );
    let Value::String(text) = value else {
        errors.push(
            path,
            scalar_text(value).as_deref(),
            format!("is {}, not an address", kind(value)),
            fix,
        );
        return None;
    };
    match split_address(text.trim()) {
        Ok((Host::Ip(ip), port)) => Some(SocketAddr::new(ip, port)),
        Ok((Host::Name(_), _)) => {
            errors.push(
                path,
                Some(text),
                "is not a valid address (a listen address must be an IP, not a hostname)",
                fix,
            );
            None
        }
        Err(detail) => {
            errors.push(
                path,
                Some(text),
                format!("is not a valid address ({detail})"),
                fix,
            );
            None
        }
    }
}

/// A backend: IP:port or hostname:port, port 1..=65535. Hostnames are
/// resolved now, once; the first address is used. Returns the name as written
/// (trimmed) and the address.
fn backend_address(
    value: &Value,
    path: &YamlPath,
    resolve: Resolve,
    errors: &mut Collector,
) -> Option<(String, SocketAddr)> {
    const FIX: &str = "use host:port, e.g. 127.0.0.1:9001, [::1]:9001 or backend.internal:9001";
    let Value::String(text) = value else {
        errors.push(
            path,
            scalar_text(value).as_deref(),
            format!("is {}, not an address", kind(value)),
            FIX,
        );
        return None;
    };
    let name = text.trim();
    let (host, port) = match split_address(name) {
        Ok(parts) => parts,
        Err(detail) => {
            errors.push(
                path,
                Some(text),
                format!("is not a valid address ({detail})"),
                FIX,
            );
            return None;
        }
    };
    if port == 0 {
        errors.push(
            path,
            Some(text),
            "is not a valid address (port 0 cannot be connected to)",
            "use the port the backend listens on, 1 to 65535",
        );
        return None;
    }
    let addr = match host {
        Host::Ip(ip) => SocketAddr::new(ip, port),
        Host::Name(host) => match resolve(host, port) {
            Ok(addr) => addr,
            Err(e) => {
                errors.push(
                    path,
                    Some(text),
                    format!("could not be resolved ({e})"),
                    "check the hostname and DNS, or use an IP address",
                );
                return None;
            }
        },
    };
    Some((name.to_owned(), addr))
}

enum Host<'a> {
    Ip(IpAddr),
    Name(&'a str),
}

/// Splits `host:port`, saying precisely what is wrong when it is not one.
fn split_address(text: &str) -> Result<(Host<'_>, u16), String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok((Host::Ip(addr.ip()), addr.port()));
    }
    if let Some((scheme, _)) = text.split_once("://") {
        return Err(format!(
            "{scheme}:// is a URL scheme; write host:port, e.g. 10.0.0.5:8080"
        ));
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err("no port".to_owned());
    };
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port {port:?} is not a number"));
    }
    let Ok(port) = port.parse::<u16>() else {
        return Err(format!("port {port} is above 65535"));
    };
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return match inner.parse::<Ipv6Addr>() {
            Ok(ip) => Ok((Host::Ip(IpAddr::V6(ip)), port)),
            Err(_) => Err(format!("{inner:?} is not an IPv6 address")),
        };
    }
    if host.contains(':') {
        return Err("an IPv6 address needs brackets, e.g. [::1]:9001".to_owned());
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        // Unreachable in practice (the whole string would have parsed), kept
        // so an odd form is never misread as a hostname.
        return Ok((Host::Ip(ip), port));
    }
    if is_hostname(host) {
        Ok((Host::Name(host), port))
    } else {
        Err(format!("{host:?} is neither an IP address nor a hostname"))
    }
}

/// RFC 1123-ish: dot-separated labels of letters, digits, '-' (and '_', which
/// internal DNS often has), and a last label that is not all digits so a
/// mistyped IPv4 address (`10.0.0.300`) is never sent to DNS as a name.
fn is_hostname(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    let labels_ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    labels_ok
        && !host
            .rsplit('.')
            .next()
            .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_exactly() {
        let ok = [
            ("250ms", Duration::from_millis(250)),
            ("2s", Duration::from_secs(2)),
            ("1.5s", Duration::from_millis(1500)),
            ("0.1s", Duration::from_millis(100)),
            ("5m", Duration::from_secs(300)),
            ("1h", Duration::from_secs(3600)),
            ("0s", Duration::ZERO),
            ("0.0005ms", Duration::from_nanos(500)),
            ("007s", Duration::from_secs(7)),
            ("8760h", MAX_DURATION),
        ];
        for (text, want) in ok {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn bad_durations_say_why() {
        for text in ["2", "0", "1.5", "0000"] {
            assert_eq!(parse_duration(text), Err(BadDuration::NoUnit), "{text}");
        }
        for text in [
            "", "s", "2 s", "2sec", "-1s", "1.s", ".5s", "1.2.3s", "1m30s", "2S", "+2s", "1e3s",
            "∞s",
        ] {
            assert_eq!(parse_duration(text), Err(BadDuration::Malformed), "{text}");
        }
        for text in [
            "8761h",
            "99999999999999999999999999999999h",
            "1000000000000000000000ms",
        ] {
            assert_eq!(parse_duration(text), Err(BadDuration::TooLong), "{text}");
        }
    }

    #[test]
    fn durations_print_as_written() {
        assert_eq!(format_duration(Duration::from_secs(2)), "2s");
        assert_eq!(format_duration(Duration::from_secs(300)), "5m");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(MAX_DURATION), "8760h");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn primes_for_maglev_tables() {
        for prime in [2, 3, 1021, 1031, 65537, 65543, 1_000_003] {
            assert!(is_prime(prime), "{prime}");
        }
        for composite in [-7, 0, 1, 4, 1023, 65536, 65541, 1_000_001] {
            assert!(!is_prime(composite), "{composite}");
        }
        assert_eq!(next_prime(1000), 1009);
        assert_eq!(next_prime(1021), 1021);
        assert_eq!(next_prime(65536), 65537);
        assert_eq!(next_prime(999_984), 1_000_003);
        // The limits themselves are primes, so the largest suggestion is allowed.
        assert!(is_prime(MIN_HASH_TABLE_SIZE.into()) && is_prime(MAX_HASH_TABLE_SIZE.into()));
        assert!(is_prime(DEFAULT_HASH_TABLE_SIZE.into()));
    }

    #[test]
    fn status_codes_and_ranges() {
        let range = |yaml: &str| {
            let mut errors = Collector::default();
            let value: Value = serde_yaml::from_str(yaml).unwrap();
            let path = YamlPath::root().key("expect_status");
            status_range(&value, &path, &mut errors).ok_or_else(|| errors.finish().to_string())
        };
        assert_eq!(range("200"), Ok(200..=200));
        assert_eq!(range("'404'"), Ok(404..=404));
        assert_eq!(range("200-399"), Ok(200..=399));
        assert_eq!(range("' 300 -302 '"), Ok(300..=302));
        assert_eq!(range("100-599"), Ok(100..=599));
        for bad in [
            "99",
            "600",
            "0200-0399",
            "-200",
            "200-",
            "2-3-4",
            "200.0",
            "ok",
            "~",
            "{a: 1}",
        ] {
            assert!(range(bad).is_err(), "{bad}");
        }
        assert!(range("5XX")
            .unwrap_err()
            .contains(r#"write the range as "500-599""#));
        assert!(range("300-200")
            .unwrap_err()
            .contains("is a backwards range"));
    }

    #[test]
    fn request_line_breakers() {
        assert_eq!(header_breaker("/healthz?x=1&y=%20"), None);
        assert_eq!(header_breaker("/a\r\nX-Evil: 1"), Some("a line break"));
        assert_eq!(header_breaker("/a\tb"), Some("a space"));
        assert_eq!(header_breaker("/a\u{7f}"), Some("a control character"));
    }

    #[test]
    fn addresses_split_with_precise_reasons() {
        let ip = |text: &str| match split_address(text) {
            Ok((Host::Ip(ip), port)) => SocketAddr::new(ip, port),
            _ => panic!("{text} should be an IP address"),
        };
        assert_eq!(ip("0.0.0.0:8080"), "0.0.0.0:8080".parse().unwrap());
        assert_eq!(ip("[::]:0"), "[::]:0".parse().unwrap());
        assert_eq!(ip("[::1]:9001"), "[::1]:9001".parse().unwrap());
        assert!(matches!(
            split_address("db.internal:5432"),
            Ok((Host::Name("db.internal"), 5432))
        ));
        assert!(matches!(
            split_address("localhost:1"),
            Ok((Host::Name("localhost"), 1))
        ));

        let reason = |text: &str| match split_address(text) {
            Err(reason) => reason,
            Ok(_) => panic!("{text} should be refused"),
        };
        assert_eq!(reason("0.0.0.0:99999"), "port 99999 is above 65535");
        assert_eq!(reason("127.0.0.1"), "no port");
        assert_eq!(reason("127.0.0.1:"), "port \"\" is not a number");
        assert_eq!(reason("127.0.0.1:+80"), "port \"+80\" is not a number");
        assert_eq!(reason("127.0.0.1:http"), "port \"http\" is not a number");
        assert!(reason("::1:9001").contains("needs brackets"));
        // Hardening #10b: a URL was answered with the IPv6 bracket hint.
        assert!(reason("http://10.0.0.5:8080").contains("write host:port"));
        assert!(reason("https://api.internal").contains("https:// is a URL scheme"));
        assert!(reason("[1.2.3.4]:80").contains("not an IPv6 address"));
        assert!(reason("10.0.0.300:80").contains("neither an IP address nor a hostname"));
        assert!(reason("bad host:80").contains("neither"));
        assert!(reason("-a.b:80").contains("neither"));
        assert!(reason(":80").contains("neither"));
    }
    #[test]
    fn sni_patterns_are_normalised() {
        let exact = |s: &str| Ok(SniPattern::Exact(s.to_owned()));
        let suffix = |s: &str| Ok(SniPattern::Suffix(s.to_owned()));
        assert_eq!(
            parse_sni_pattern("api.example.com"),
            exact("api.example.com")
        );
        assert_eq!(
            parse_sni_pattern("API.Example.COM."),
            exact("api.example.com")
        );
        assert_eq!(parse_sni_pattern("localhost"), exact("localhost"));
        assert_eq!(
            parse_sni_pattern("xn--bcher-kva.example"),
            exact("xn--bcher-kva.example")
        );
        assert_eq!(parse_sni_pattern("_acme.example"), exact("_acme.example"));
        assert_eq!(parse_sni_pattern("*.example.com"), suffix(".example.com"));
        assert_eq!(parse_sni_pattern("*.Example.com."), suffix(".example.com"));
        assert_eq!(parse_sni_pattern("*.com"), suffix(".com"));
        // 253 characters is the longest name; the wildcard counts too.
        let label = "a".repeat(63);
        let longest = format!("{label}.{label}.{label}.{}", "a".repeat(61));
        assert_eq!(longest.len(), 253);
        assert_eq!(parse_sni_pattern(&longest), exact(&longest));
        assert_eq!(parse_sni_pattern(&format!("{longest}.")), exact(&longest));
    }

    #[test]
    fn bad_sni_patterns_say_why() {
        let problem = |s: &str| parse_sni_pattern(s).unwrap_err().0;
        assert_eq!(problem(""), "is empty");
        assert_eq!(
            problem("."),
            "has an empty label (a leading dot or two dots in a row)"
        );
        for spaced in ["api example.com", " api.example.com", "api.example.com\t"] {
            assert_eq!(problem(spaced), "contains a space", "{spaced:?}");
        }
        for star in [
            "a*.example.com",
            "*example.com",
            "api.*.com",
            "*.*.com",
            "**.com",
            "example.*",
        ] {
            assert_eq!(
                problem(star),
                r#"has a * that is not a leading "*.""#,
                "{star}"
            );
        }
        assert_eq!(problem("*"), "matches every name");
        assert_eq!(problem("*."), "matches every name");
        for empty in [
            ".example.com",
            "api..example.com",
            "example.com..",
            "*..com",
            "*.",
            "*..",
        ] {
            assert!(
                problem(empty).starts_with("has an empty label") || empty == "*.",
                "{empty}: {}",
                problem(empty)
            );
        }
        let long = format!("{}.com", "a".repeat(250));
        assert!(problem(&long).starts_with("is longer than 253"));
        assert!(
            problem(&format!("*.{}", "a.".repeat(125) + "com")).starts_with("is longer than 253")
        );
        assert!(
            problem(&format!("{}.com", "a".repeat(64))).starts_with("has a label longer than 63")
        );
        assert_eq!(
            parse_sni_pattern("api.example.com:443").unwrap_err(),
            (
                "contains ':', which is not allowed in a host name".to_owned(),
                "SNI carries no port: write the name alone, e.g. api.example.com".to_owned()
            )
        );
        assert!(parse_sni_pattern("https://api.example.com")
            .unwrap_err()
            .1
            .contains("leave out the scheme"));
        assert!(parse_sni_pattern("bücher.example")
            .unwrap_err()
            .1
            .contains("punycode"));
        assert!(problem("api/v1.example").starts_with("contains '/'"));
        assert!(problem("10.0.0.1").starts_with("is an IP address"));
        // A wildcard over digits is a name suffix, not an address.
        assert!(parse_sni_pattern("*.0.0.1").is_ok());
    }

    #[test]
    fn cidrs_parse_to_their_network() {
        let cidr = |s: &str| parse_cidr(s).map(|c| c.to_string()).map_err(|e| e.0);
        assert_eq!(cidr("10.0.0.0/8"), Ok("10.0.0.0/8".into()));
        assert_eq!(cidr(" 192.0.2.7 "), Ok("192.0.2.7/32".into()));
        assert_eq!(cidr("0.0.0.0/0"), Ok("0.0.0.0/0".into()));
        assert_eq!(cidr("::1"), Ok("::1/128".into()));
        assert_eq!(cidr("[::1]/128"), Ok("::1/128".into()));
        assert_eq!(cidr("::/0"), Ok("::/0".into()));
        assert_eq!(cidr("2001:DB8::/32"), Ok("2001:db8::/32".into()));
        assert_eq!(cidr("fe80::/10"), Ok("fe80::/10".into()));
        let net = parse_cidr("10.0.0.0/8").unwrap();
        assert!(net.contains("10.255.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
    }

    #[test]
    fn bad_cidrs_say_why() {
        let bad = |s: &str| parse_cidr(s).unwrap_err();
        assert_eq!(
            bad("10.0.0.1/8"),
            (
                "has host bits set".to_owned(),
                "write the network, 10.0.0.0/8, or 10.0.0.1 alone for that one address".to_owned()
            )
        );
        assert!(bad("fe80::1/10")
            .1
            .starts_with("write the network, fe80::/10,"));
        assert!(bad("10.0.0.0/33")
            .0
            .starts_with("has prefix length /33, out of range"));
        assert!(bad("::/129").1.contains("from 0 to 128"));
        assert!(bad("10.0.0.0/999").0.contains("out of range"));
        for odd in [
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.0/8/8",
            "10.0.0.0/ 8",
            "10.0.0.0/x",
        ] {
            assert!(
                bad(odd).0.contains("is not a number"),
                "{odd}: {:?}",
                bad(odd)
            );
        }
        for odd in [
            "",
            "/8",
            "10.0.0",
            "10.0.0.256",
            "010.0.0.1",
            "1.2.3.4.5",
            ":::1",
            "10.0.0.0-10.0.0.9",
        ] {
            assert!(
                bad(odd).0.starts_with("is not an IP network"),
                "{odd}: {:?}",
                bad(odd)
            );
        }
        assert!(bad("lb.internal").1.ends_with("host names are not allowed"));
        assert_eq!(bad("::ffff:10.0.0.0/104").1, "write it as 10.0.0.0/8");
        assert_eq!(bad("::ffff:192.0.2.1").1, "write it as 192.0.2.1/32");
        assert_eq!(
            network_address("10.1.2.3".parse().unwrap(), 0),
            IpAddr::from([0, 0, 0, 0])
        );
        assert_eq!(
            network_address("10.1.2.3".parse().unwrap(), 32),
            IpAddr::from([10, 1, 2, 3])
        );
        assert_eq!(
            network_address("10.1.2.3".parse().unwrap(), 12),
            IpAddr::from([10, 0, 0, 0])
        );
        assert_eq!(
            network_address("2001:db8::1".parse().unwrap(), 16),
            "2001::".parse::<IpAddr>().unwrap()
        );
    }

    fn rate(yaml: &str) -> Result<f64, String> {
        let mut errors = Collector::default();
        let value: Value = serde_yaml::from_str(yaml).unwrap();
        connection_rate(&value, &YamlPath::root().key("per_ip_rate"), &mut errors)
            .ok_or_else(|| errors.finish().to_string())
    }

    fn bytes(yaml: &str) -> Result<u64, String> {
        let mut errors = Collector::default();
        let value: Value = serde_yaml::from_str(yaml).unwrap();
        bandwidth(
            &value,
            &YamlPath::root().key("per_ip_bandwidth"),
            &mut errors,
        )
        .ok_or_else(|| errors.finish().to_string())
    }

    #[test]
    fn connection_rates_are_per_second() {
        assert_eq!(rate("50/s"), Ok(50.0));
        assert_eq!(rate("'2.5/s'"), Ok(2.5));
        assert_eq!(rate("30/m"), Ok(0.5));
        assert_eq!(rate("1/m"), Ok(1.0 / 60.0));
        assert_eq!(rate("' 6 / m '"), Ok(0.1));
        assert_eq!(rate("1000000/s"), Ok(1_000_000.0));
        for (bad, problem) in [
            ("50", "is a number without a unit"),
            ("'50'", "is a number without a unit"),
            ("0/s", "must be more than zero"),
            ("0.0/m", "must be more than zero"),
            ("1000001/s", "is out of range"),
            ("1e3/s", "is not a rate"),
            ("-5/s", "is not a rate"),
            ("inf/s", "is not a rate"),
            ("NaN/s", "is not a rate"),
            ("/s", "is not a rate"),
            ("fast", "is not a rate"),
            ("5/h", r#"has an unknown unit "/h""#),
            ("5/sec", r#"has an unknown unit "/sec""#),
            ("[5]", "is a list, not a rate"),
        ] {
            let shown = rate(bad).unwrap_err();
            assert!(shown.contains(problem), "{bad}: {shown}");
        }
    }

    #[test]
    fn bandwidths_are_bytes_per_second() {
        assert_eq!(bytes("10MB/s"), Ok(10_000_000));
        assert_eq!(bytes("1B/s"), Ok(1));
        assert_eq!(bytes("1.5KB/s"), Ok(1500));
        assert_eq!(bytes("1kB/s"), Ok(1000));
        assert_eq!(bytes("2KiB/s"), Ok(2048));
        assert_eq!(bytes("1MiB/s"), Ok(1 << 20));
        assert_eq!(bytes("1.5GiB/s"), Ok(3 << 29));
        assert_eq!(bytes("'10 MB/s'"), Ok(10_000_000));
        assert_eq!(bytes("1000GB/s"), Ok(1_000_000_000_000));
        for (bad, problem) in [
            ("1000", "is a number without a unit"),
            ("10MB", "is not a rate per second"),
            ("10MB/m", "is not a rate per second"),
            ("10/s", "has no unit"),
            ("10Mb/s", "did you mean MB/s (bytes)?"),
            ("10mib/s", "did you mean MiB/s (bytes)?"),
            ("10TB/s", r#"has an unknown unit "TB""#),
            ("0MB/s", "must be more than zero"),
            ("0.1B/s", "is less than one byte per second"),
            ("1001GB/s", "is out of range"),
            ("1e3B/s", r#"has an unknown unit "e3B""#),
            ("MB/s", "is not a bandwidth"),
            ("1..5MB/s", "is not a bandwidth"),
            ("{a: 1}", "is a mapping, not a bandwidth"),
        ] {
            let shown = bytes(bad).unwrap_err();
            assert!(shown.contains(problem), "{bad}: {shown}");
        }
    }

    #[test]
    fn plain_decimals_only() {
        assert_eq!(decimal("50"), Some(50.0));
        assert_eq!(decimal("0.25"), Some(0.25));
        assert_eq!(decimal("007"), Some(7.0));
        for odd in [
            "", ".5", "5.", "-1", "+1", "1e3", "inf", "NaN", "1.2.3", " 1",
        ] {
            assert_eq!(decimal(odd), None, "{odd}");
        }
    }
}
