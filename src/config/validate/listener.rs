//! One item of `listeners:`: its address, pool, timeouts, SNI routes, PROXY
//! protocol and client lists.

use serde_yaml::Value;

use super::fields::Fields;
use super::limits::limits;
use super::{PoolNames, Seen};
use crate::config::bounds;
use crate::config::model::{
    ListenerConfig, ProxyProtocolAccept, ProxyProtocolSend, SniPattern, SniRoute, DEFAULT_BACKLOG,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_PROXY_HEADER_TIMEOUT, DEFAULT_RETRIES, DEFAULT_TLS_INSPECT_TIMEOUT,
};
use crate::config::raw::{RawListener, RawSniRoute};
use crate::config::value::address::Listen;
use crate::config::value::count::Count;
use crate::config::value::proxy::{ACCEPT, SEND};
use crate::config::value::text::Name;
use crate::config::value::word::Flag;
use crate::config::value::{cidr, duration, sni, Bad};

pub(super) fn listener(
    l: &RawListener,
    mut f: Fields,
    pools: &PoolNames,
    seen: &mut Seen,
) -> Option<ListenerConfig> {
    let name = f.need("name", &l.name, &Name("web").missing(), Name("web"));
    if let Some(name) = &name {
        let (item, at) = (f.at().clone(), f.path("name"));
        seen.name(name, &item, &at, "listener", f.errors());
    }
    let listen = f.need(
        "listen",
        &l.listen,
        "add listen: 0.0.0.0:8080",
        Listen("0.0.0.0:8080"),
    );
    if let Some(listen) = listen {
        // Port 0 means "any free port": two of those never collide. Otherwise
        // SO_REUSEPORT would let both bind and silently split the traffic.
        if listen.port() != 0 {
            let label = format!("{} ({})", f.at(), name.as_deref().unwrap_or("unnamed"));
            if let Some(first) = seen.addresses.get(&listen) {
                f.report(
                    "listen",
                    Bad::new(
                        Some(&listen.to_string()),
                        format!("is already used by {first}"),
                        "give each listener its own address (port 0 lets the kernel pick one)",
                    ),
                );
            } else {
                seen.addresses.insert(listen, label);
            }
        }
    }
    let pool = f.need("pool", &l.pool, "add pool: <name of a pool>", pools);
    let connect_timeout = f.or(
        "connect_timeout",
        &l.connect_timeout,
        DEFAULT_CONNECT_TIMEOUT,
        duration::POSITIVE,
    );
    let idle_timeout = f.or(
        "idle_timeout",
        &l.idle_timeout,
        DEFAULT_IDLE_TIMEOUT,
        duration::POSITIVE,
    );
    let retries = f.or(
        "retries",
        &l.retries,
        DEFAULT_RETRIES,
        Count::new(bounds::RETRIES),
    );
    let max_connections = f.or(
        "max_connections",
        &l.max_connections,
        DEFAULT_MAX_CONNECTIONS,
        Count::new(bounds::MAX_CONNECTIONS),
    );
    let backlog = f.or(
        "backlog",
        &l.backlog,
        DEFAULT_BACKLOG,
        Count::new(bounds::BACKLOG),
    );

    // TLS passthrough.
    let sni_routes = match &l.sni {
        None => Some(Vec::new()),
        Some(routes) => sni_routes(routes, &mut f, pools),
    };
    let require_sni = f.or("require_sni", &l.require_sni, false, Flag).and_then(|require| {
        // Counted before reading: a route already reported as malformed is
        // still a route, so the fix is there and not here.
        if require && l.sni.as_ref().map_or(0, Vec::len) == 0 {
            f.report(
                "require_sni",
                Bad::new(
                    Some("true"),
                    "needs sni routes, and this listener has none",
                    "add sni: routes, or remove require_sni (without routes the ClientHello is never read)",
                ),
            );
            return None;
        }
        Some(require)
    });
    let tls_inspect_timeout = f.or(
        "tls_inspect_timeout",
        &l.tls_inspect_timeout,
        DEFAULT_TLS_INSPECT_TIMEOUT,
        duration::POSITIVE,
    );

    // PROXY protocol, both ways.
    let proxy_protocol = f.or(
        "proxy_protocol",
        &l.proxy_protocol,
        ProxyProtocolSend::Off,
        SEND,
    );
    let accept_proxy_protocol = f.or(
        "accept_proxy_protocol",
        &l.accept_proxy_protocol,
        ProxyProtocolAccept::Off,
        ACCEPT,
    );
    let trusted_proxies = f
        .or(
            "trusted_proxies",
            &l.trusted_proxies,
            Vec::new(),
            cidr::LIST,
        )
        .and_then(|trusted| {
            let written = l.trusted_proxies.is_some();
            let problem = trusted_proxies(trusted.is_empty(), written, accept_proxy_protocol);
            match problem {
                Some(bad) => {
                    f.report("trusted_proxies", bad);
                    None
                }
                None => Some(trusted),
            }
        });
    let proxy_header_timeout = f.or(
        "proxy_header_timeout",
        &l.proxy_header_timeout,
        DEFAULT_PROXY_HEADER_TIMEOUT,
        duration::POSITIVE,
    );

    // Traffic control.
    let allow = f.or("allow", &l.allow, Vec::new(), cidr::LIST);
    let deny = f.or("deny", &l.deny, Vec::new(), cidr::LIST);
    let limits = match &l.limits {
        None => Some(None),
        Some(raw) => limits(raw, f.section("limits")).map(Some),
    };

    Some(ListenerConfig {
        name: name?,
        listen: listen?,
        pool: pool?,
        connect_timeout: connect_timeout?,
        idle_timeout: idle_timeout?,
        retries: retries?,
        max_connections: max_connections?,
        backlog: backlog?,
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
    f: &mut Fields,
    pools: &PoolNames,
) -> Option<Vec<SniRoute>> {
    // Each readable route so far: its pattern, alpn, and how to name it.
    let mut earlier: Vec<(SniPattern, Vec<String>, String)> = Vec::new();
    let mut list = Vec::with_capacity(routes.len());
    for (i, route) in routes.iter().enumerate() {
        let Some(route) = route else {
            list.push(None);
            continue;
        };
        let mut r = f.item("sni", i);
        let pattern = r.need(
            "match",
            &route.pattern,
            "add match: a host name, e.g. match: api.example.com, or match: \"*.example.com\"",
            sni::pattern,
        );
        let pool = r.need(
            "pool",
            &route.pool,
            "add pool: <name of a pool>, where clients asking for this name go",
            pools,
        );
        let alpn = r.or("alpn", &route.alpn, Vec::new(), sni::ALPN);
        let pattern = match (pattern, &alpn) {
            (Some((text, pattern)), Some(alpn)) => {
                let shadow = earlier
                    .iter()
                    .find(|(p, before, _)| *p == pattern && shadows(before, alpn));
                if let Some((_, before, first)) = shadow {
                    let (problem, fix) = shadowed(first, before, alpn);
                    r.report("match", Bad::new(Some(&text), problem, fix));
                    None
                } else {
                    let shown = format!("{} ({text})", r.path("match"));
                    earlier.push((pattern.clone(), alpn.clone(), shown));
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

/// What is wrong with `trusted_proxies` given `accept_proxy_protocol`
/// (`None` when that is itself wrong, already reported).
fn trusted_proxies(empty: bool, written: bool, accept: Option<ProxyProtocolAccept>) -> Option<Bad> {
    match accept {
        Some(ProxyProtocolAccept::Off) if !empty => Some(Bad::new(
            None,
            "is set, but accept_proxy_protocol is off",
            "set accept_proxy_protocol: v1, v2 or any to read PROXY headers from these sources, or remove trusted_proxies",
        )),
        // WHY: a PROXY header sets the client address that allow/deny,
        // limits and ip_hash trust; accepting it from anyone would let
        // any client claim any address.
        Some(accept) if accept != ProxyProtocolAccept::Off && empty => Some(Bad::new(
            None,
            if written { "is empty" } else { "is missing" },
            format!(
                "accept_proxy_protocol: {} needs the addresses of the balancers in front, e.g. trusted_proxies: [10.0.0.0/8]; only they may send a PROXY header",
                accept.as_str()
            ),
        )),
        _ => None,
    }
}

/// A `pool:` reads as the pool it names.
impl crate::config::value::Kind for &PoolNames {
    type Out = crate::config::model::PoolId;

    fn read(&self, value: &Value) -> Result<Self::Out, Bad> {
        let wanted = crate::config::value::text::string(value, "the name of a pool")?;
        self.find(wanted)
    }
}
