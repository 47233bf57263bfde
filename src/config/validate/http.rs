//! The `mode: http` part of a listener: TLS termination (`tls`), timeouts,
//! request limits, `forwarded`, `routes` and `redirect_https`. The keys a
//! listener has in either mode are read by `listener`.

use super::fields::Fields;
use super::route;
use super::tls::StoreNames;
use super::PoolNames;
use crate::config::bounds;
use crate::config::check::{self, HttpRoutes};
use crate::config::model::{
    HttpListener, HttpRoute, HttpTimeouts, ListenerTls, RequestLimits, TlsVersion, DEFAULT_ALPN,
    DEFAULT_HTTP_TIMEOUTS, DEFAULT_REQUEST_LIMITS,
};
use crate::config::raw::{RawHttpRoute, RawListener, RawListenerTls};
use crate::config::value::count::Count;
use crate::config::value::http::{alpn, min_version, path_prefix, TunnelIdle};
use crate::config::value::size::Size;
use crate::config::value::{cidr, duration, sni};

/// The HTTP side of listener `l`; `None` when something in it was bad
/// (and reported).
pub(super) fn http(
    l: &RawListener,
    f: &mut Fields,
    pools: &PoolNames,
    stores: &StoreNames,
) -> Option<Box<HttpListener>> {
    let redirect_https = f.opt(
        "redirect_https",
        &l.redirect_https,
        Count::<u16>::new(bounds::PORT),
    );
    if let Some(Some(port)) = redirect_https {
        // A redirecting listener proxies nothing: what would only be
        // ignored is refused, as require_sni without routes is.
        let needless = [
            ("tls", l.tls.is_some()),
            ("pool", l.pool.is_some()),
            ("routes", l.routes.is_some()),
        ];
        for (key, written) in needless {
            if written {
                f.report(key, check::redirect_alone(key, port));
            }
        }
    }
    let tls = match &l.tls {
        None => Some(None),
        Some(raw) => listener_tls(raw, f.section("tls"), stores).map(Some),
    };

    let d = &DEFAULT_HTTP_TIMEOUTS;
    let timeouts = match &l.timeouts {
        None => Some(d.clone()),
        Some(t) => {
            let mut f = f.section("timeouts");
            let handshake = f.or("handshake", &t.handshake, d.handshake, duration::POSITIVE);
            let request_header = f.or(
                "request_header",
                &t.request_header,
                d.request_header,
                duration::POSITIVE,
            );
            let idle = f.or("idle", &t.idle, d.idle, duration::POSITIVE);
            // WHY: 0 is "never" here (a WebSocket may idle for days), as
            // the model's `None`.
            let tunnel_idle = f.or("tunnel_idle", &t.tunnel_idle, d.tunnel_idle, TunnelIdle);
            let backend_response = f.or(
                "backend_response",
                &t.backend_response,
                d.backend_response,
                duration::POSITIVE,
            );
            (|| {
                Some(HttpTimeouts {
                    handshake: handshake?,
                    request_header: request_header?,
                    idle: idle?,
                    tunnel_idle: tunnel_idle?,
                    backend_response: backend_response?,
                })
            })()
        }
    };

    let d = &DEFAULT_REQUEST_LIMITS;
    let request_limits = match &l.request_limits {
        None => Some(d.clone()),
        Some(r) => {
            let mut f = f.section("request_limits");
            let max_header_bytes = f.or(
                "max_header_bytes",
                &r.max_header_bytes,
                d.max_header_bytes as u64,
                Size {
                    range: bounds::MAX_HEADER_BYTES,
                },
            );
            let max_body = f.or(
                "max_body",
                &r.max_body,
                d.max_body,
                Size {
                    range: bounds::MAX_BODY,
                },
            );
            let h2_max_streams = f.or(
                "h2_max_streams",
                &r.h2_max_streams,
                d.h2_max_streams,
                Count::new(bounds::H2_MAX_STREAMS),
            );
            (|| {
                Some(RequestLimits {
                    // At most 1MiB (bounds), so it fits any usize.
                    max_header_bytes: usize::try_from(max_header_bytes?).ok()?,
                    max_body: max_body?,
                    h2_max_streams: h2_max_streams?,
                })
            })()
        }
    };

    let trusted_proxies = match &l.forwarded {
        None => Some(Vec::new()),
        Some(forwarded) => f.section("forwarded").or(
            "trusted_proxies",
            &forwarded.trusted_proxies,
            Vec::new(),
            cidr::LIST,
        ),
    };

    let routes = match &l.routes {
        None => Some(Vec::new()),
        Some(routes) => http_routes(routes, f, pools),
    };

    Some(Box::new(HttpListener {
        tls: tls?,
        redirect_https: redirect_https?,
        timeouts: timeouts?,
        request_limits: request_limits?,
        trusted_proxies: trusted_proxies?,
        routes: routes?,
    }))
}

fn listener_tls(t: &RawListenerTls, mut f: Fields, stores: &StoreNames) -> Option<ListenerTls> {
    let store = f.need(
        "store",
        &t.store,
        "add store: <name of a store under tls:>, e.g. store: main",
        stores,
    );
    let default_alpn = DEFAULT_ALPN.iter().map(|p| (*p).to_owned()).collect();
    let alpn = f.or("alpn", &t.alpn, default_alpn, alpn);
    let min_version = f.or("min_version", &t.min_version, TlsVersion::V1_2, min_version);
    Some(ListenerTls {
        store: store?,
        alpn: alpn?,
        min_version: min_version?,
    })
}

/// The listener's `routes:`, each read whole, then checked against the ones
/// before it (see [`HttpRoutes`]).
fn http_routes(
    routes: &[Option<RawHttpRoute>],
    f: &mut Fields,
    pools: &PoolNames,
) -> Option<Vec<HttpRoute>> {
    let mut earlier = HttpRoutes::default();
    let mut list = Vec::with_capacity(routes.len());
    for (i, route) in routes.iter().enumerate() {
        let Some(route) = route else {
            list.push(None);
            continue;
        };
        let mut r = f.item("routes", i);
        let (host, prefix) = match &route.conditions {
            None => (Some(None), Some(None)),
            Some(m) => {
                let mut mf = r.section("match");
                let host = mf.opt("host", &m.host, sni::host);
                let prefix = mf.opt("path_prefix", &m.path_prefix, path_prefix);
                (host, prefix)
            }
        };
        let pool = r.need(
            "pool",
            &route.pool,
            "add pool: <name of a pool>, where requests this route matches go",
            pools,
        );
        if let (Some(host), Some(prefix)) = (&host, &prefix) {
            let at = r.at().clone();
            let first = earlier.first(host.as_ref(), prefix.as_deref(), &at);
            r.here(first);
        }
        let sticky = match &route.sticky {
            None => Some(None),
            Some(s) => route::sticky(s, r.section("sticky")).map(Some),
        };
        let rate_limits = match &route.rate_limit {
            None => Some(Vec::new()),
            Some(limits) => route::rate_limits(limits, &mut r),
        };
        list.push((|| {
            Some(HttpRoute {
                host: host?,
                path_prefix: prefix?,
                pool: pool?,
                sticky: sticky?,
                rate_limits: rate_limits?,
            })
        })());
    }
    list.into_iter().collect()
}
