//! One item of `listeners:`: its address, pool, timeouts, SNI routes, PROXY
//! protocol and client lists.

// WHY: moved here whole from validate.rs; each section gets its own imports
// when its reads move to the field reader.
use super::limits::limits_section;
#[allow(unused_imports)]
use super::*;

/// Upper bound for `retries`: each retry costs a connect timeout, so more than
/// this only delays the client's error.
pub(super) const MAX_RETRIES: u64 = 16;

/// `listen(2)` backlog limit; the kernel further caps it at `net.core.somaxconn`.
pub(super) const MAX_BACKLOG: u64 = 65535;

pub(super) fn listener_section(
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
pub(super) fn sni_routes(
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
pub(super) fn shadows(before: &[String], later: &[String]) -> bool {
    before.is_empty() || (!later.is_empty() && later.iter().all(|p| before.contains(p)))
}

/// The (problem, fix) for a route that `first` (with alpn `before`) hides.
pub(super) fn shadowed(first: &str, before: &[String], later: &[String]) -> (String, String) {
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
pub(super) fn trusted_proxies(
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
