//! One item of `listeners:`: its mode, address, pool, timeouts, SNI routes,
//! PROXY protocol and client lists; the `mode: http` part has a file of its
//! own (`http`). A key of one mode only is refused in the other, by name.

use serde_yaml::Value;

use std::time::Duration;

use super::fields::Fields;
use super::http::http;
use super::limits::limits;
use super::tls::StoreNames;
use super::PoolNames;
use crate::config::bounds;
use crate::config::check::{self, Addresses, Names, SniRoutes};
use crate::config::model::{
    Cidr, ListenerConfig, ProxyProtocolAccept, ProxyProtocolSend, SniRoute, DEFAULT_BACKLOG,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_PROXY_HEADER_TIMEOUT, DEFAULT_RETRIES, DEFAULT_TLS_INSPECT_TIMEOUT,
};
use crate::config::raw::{RawListener, RawSniRoute};
use crate::config::value::address::Listen;
use crate::config::value::count::Count;
use crate::config::value::http::{Mode, MODE};
use crate::config::value::proxy::{ACCEPT, SEND};
use crate::config::value::text::Name;
use crate::config::value::word::Flag;
use crate::config::value::{cidr, duration, sni, Bad};

pub(super) fn listener(
    l: &RawListener,
    mut f: Fields,
    (pools, stores): (&PoolNames, &StoreNames),
    (names, addresses): &mut (Names, Addresses),
) -> Option<ListenerConfig> {
    let mode = f.or("mode", &l.mode, Mode::Tcp, MODE);
    let name = f.need("name", &l.name, &Name("web").missing(), Name("web"));
    if let Some(name) = &name {
        let first = names.first("listener", name, f.at());
        f.keep("name", first);
    }
    let listen = f.need(
        "listen",
        &l.listen,
        "add listen: 0.0.0.0:8080",
        Listen("0.0.0.0:8080"),
    );
    if let Some(listen) = listen {
        let first = addresses.first(listen, f.at(), name.as_deref());
        f.keep("listen", first);
    }
    let pool = match mode {
        Some(Mode::Tcp) => f
            .need("pool", &l.pool, "add pool: <name of a pool>", pools)
            .map(Some),
        // Optional (no route matched: 404), or with `mode` itself bad
        // (reported) not worth a word.
        _ => f.opt("pool", &l.pool, pools),
    };
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

    let (passthrough, http) = match mode {
        Some(Mode::Tcp) => {
            for (key, written) in http_keys(l) {
                if written {
                    f.report(key, check::http_only(key));
                }
            }
            (passthrough(l, &mut f, pools), Some(None))
        }
        Some(Mode::Http) => {
            for (key, written) in passthrough_keys(l) {
                if written {
                    f.report(key, check::tcp_only(key));
                }
            }
            let http = http(l, &mut f, pools, stores).map(Some);
            (Some(Passthrough::default()), http)
        }
        None => (None, None),
    };

    // Traffic control.
    let allow = f.or("allow", &l.allow, Vec::new(), cidr::LIST);
    let deny = f.or("deny", &l.deny, Vec::new(), cidr::LIST);
    let limits = match &l.limits {
        None => Some(None),
        Some(raw) => limits(raw, f.section("limits")).map(Some),
    };

    let Passthrough {
        sni_routes,
        require_sni,
        tls_inspect_timeout,
        proxy_protocol,
        accept_proxy_protocol,
        trusted_proxies,
        proxy_header_timeout,
    } = passthrough?;
    Some(ListenerConfig {
        name: name?,
        listen: listen?,
        pool: pool?,
        connect_timeout: connect_timeout?,
        idle_timeout: idle_timeout?,
        retries: retries?,
        max_connections: max_connections?,
        backlog: backlog?,
        sni_routes,
        require_sni,
        tls_inspect_timeout,
        proxy_protocol,
        accept_proxy_protocol,
        trusted_proxies,
        proxy_header_timeout,
        allow: allow?,
        deny: deny?,
        limits: limits?,
        http: http?,
    })
}

/// The `mode: http` keys of `l`, each with whether it is written.
fn http_keys(l: &RawListener) -> [(&'static str, bool); 6] {
    [
        ("tls", l.tls.is_some()),
        ("timeouts", l.timeouts.is_some()),
        ("request_limits", l.request_limits.is_some()),
        ("forwarded", l.forwarded.is_some()),
        ("routes", l.routes.is_some()),
        ("redirect_https", l.redirect_https.is_some()),
    ]
}

/// The passthrough (`mode: tcp`) keys of `l`, each with whether it is written.
fn passthrough_keys(l: &RawListener) -> [(&'static str, bool); 7] {
    [
        ("sni", l.sni.is_some()),
        ("require_sni", l.require_sni.is_some()),
        ("tls_inspect_timeout", l.tls_inspect_timeout.is_some()),
        ("proxy_protocol", l.proxy_protocol.is_some()),
        ("accept_proxy_protocol", l.accept_proxy_protocol.is_some()),
        ("trusted_proxies", l.trusted_proxies.is_some()),
        ("proxy_header_timeout", l.proxy_header_timeout.is_some()),
    ]
}

/// A `mode: tcp` listener's TLS passthrough and PROXY protocol settings
/// (for `mode: http`, all at their defaults).
struct Passthrough {
    sni_routes: Vec<SniRoute>,
    require_sni: bool,
    tls_inspect_timeout: Duration,
    proxy_protocol: ProxyProtocolSend,
    accept_proxy_protocol: ProxyProtocolAccept,
    trusted_proxies: Vec<Cidr>,
    proxy_header_timeout: Duration,
}

impl Default for Passthrough {
    fn default() -> Self {
        Passthrough {
            sni_routes: Vec::new(),
            require_sni: false,
            tls_inspect_timeout: DEFAULT_TLS_INSPECT_TIMEOUT,
            proxy_protocol: ProxyProtocolSend::Off,
            accept_proxy_protocol: ProxyProtocolAccept::Off,
            trusted_proxies: Vec::new(),
            proxy_header_timeout: DEFAULT_PROXY_HEADER_TIMEOUT,
        }
    }
}

fn passthrough(l: &RawListener, f: &mut Fields, pools: &PoolNames) -> Option<Passthrough> {
    // TLS passthrough.
    let sni_routes = match &l.sni {
        None => Some(Vec::new()),
        Some(routes) => sni_routes(routes, f, pools),
    };
    let require_sni = f
        .or("require_sni", &l.require_sni, false, Flag)
        .and_then(|require| {
            // Counted before reading: a route already reported as malformed is
            // still a route, so the fix is there and not here.
            let routes = l.sni.as_ref().map_or(0, Vec::len);
            f.keep("require_sni", check::require_sni(require, routes))
                .map(|()| require)
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
            let rule = check::trusted_proxies(trusted.is_empty(), written, accept_proxy_protocol);
            f.keep("trusted_proxies", rule).map(|()| trusted)
        });
    let proxy_header_timeout = f.or(
        "proxy_header_timeout",
        &l.proxy_header_timeout,
        DEFAULT_PROXY_HEADER_TIMEOUT,
        duration::POSITIVE,
    );

    Some(Passthrough {
        sni_routes: sni_routes?,
        require_sni: require_sni?,
        tls_inspect_timeout: tls_inspect_timeout?,
        proxy_protocol: proxy_protocol?,
        accept_proxy_protocol: accept_proxy_protocol?,
        trusted_proxies: trusted_proxies?,
        proxy_header_timeout: proxy_header_timeout?,
    })
}

/// The listener's `sni:` routes: each one read whole, then checked against
/// the ones before it (see [`SniRoutes`]).
fn sni_routes(
    routes: &[Option<RawSniRoute>],
    f: &mut Fields,
    pools: &PoolNames,
) -> Option<Vec<SniRoute>> {
    let mut earlier = SniRoutes::default();
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
                let first = earlier.first(&pattern, alpn, &text, &r.path("match"));
                r.keep("match", first).map(|()| pattern)
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

/// A `pool:` reads as the pool it names.
impl crate::config::value::Kind for &PoolNames {
    type Out = crate::config::model::PoolId;

    fn read(&self, value: &Value) -> Result<Self::Out, Bad> {
        let wanted = crate::config::value::text::string(value, "the name of a pool")?;
        self.find(wanted)
    }
}
