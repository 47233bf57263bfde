//! Which pool a request goes to: a listener's routes in order, each matching
//! on the request's host (exact or `*.suffix`) and/or a path prefix; the
//! first match wins, else the listener's own pool (or none: 404).

use crate::config::{HttpRoute, SniPattern};

/// The host a request names, for routing: the URI's authority (HTTP/2,
/// absolute-form) or the `Host` header, without the port, lower case and
/// without a trailing dot.
pub(super) fn request_host<B>(req: &hyper::Request<B>) -> Option<String> {
    let raw = req
        .uri()
        .authority()
        .map(|a| a.host())
        .or_else(|| req.headers().get(hyper::header::HOST)?.to_str().ok())?;
    Some(normalise_host(raw))
}

/// `Example.COM.:8443` → `example.com`; `[::1]:80` → `[::1]`.
fn normalise_host(raw: &str) -> String {
    let host = if raw.starts_with('[') {
        raw.split_inclusive(']').next().unwrap_or(raw)
    } else {
        raw.rsplit_once(':').map_or(raw, |(h, _)| h)
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

fn host_matches(pattern: &SniPattern, host: &str) -> bool {
    match pattern {
        SniPattern::Exact(name) => name == host,
        SniPattern::Suffix(suffix) => host.len() > suffix.len() && host.ends_with(suffix.as_str()),
    }
}

/// The pool index for a request to `host` and `path`: the first route whose
/// every condition matches, else `default`.
#[cfg(test)]
pub(super) fn pick(
    routes: &[HttpRoute],
    default: Option<usize>,
    host: Option<&str>,
    path: &str,
) -> Option<usize> {
    matching(routes, host, path)
        .map(|i| routes[i].pool.0)
        .or(default)
}

/// The index of the first route whose every condition matches a request to
/// `host` and `path`.
pub(super) fn matching(routes: &[HttpRoute], host: Option<&str>, path: &str) -> Option<usize> {
    routes.iter().position(|r| {
        r.host
            .as_ref()
            .is_none_or(|p| host.is_some_and(|h| host_matches(p, h)))
            && r.path_prefix
                .as_deref()
                .is_none_or(|pre| path.starts_with(pre))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PoolId;

    fn route(host: Option<&str>, prefix: Option<&str>, pool: usize) -> HttpRoute {
        HttpRoute {
            host: host.map(|h| match h.strip_prefix('*') {
                Some(s) => SniPattern::Suffix(s.into()),
                None => SniPattern::Exact(h.into()),
            }),
            path_prefix: prefix.map(Into::into),
            pool: PoolId(pool),
            sticky: None,
            rate_limits: Vec::new(),
        }
    }

    #[test]
    fn the_first_matching_route_wins_then_the_default() {
        let routes = [
            route(Some("api.example.com"), Some("/v1/"), 1),
            route(None, Some("/ws/"), 2),
            route(Some("*.example.com"), None, 3),
        ];
        let p = |h: Option<&str>, path| pick(&routes, Some(0), h, path);
        assert_eq!(p(Some("api.example.com"), "/v1/users"), Some(1));
        assert_eq!(p(Some("api.example.com"), "/v2/users"), Some(3));
        assert_eq!(p(Some("api.example.com"), "/ws/chat"), Some(2));
        assert_eq!(p(Some("www.example.com"), "/"), Some(3));
        assert_eq!(p(Some("example.com"), "/"), Some(0));
        assert_eq!(p(None, "/"), Some(0));
        assert_eq!(pick(&routes, None, Some("other.org"), "/"), None);
    }

    #[test]
    fn hosts_are_normalised() {
        assert_eq!(normalise_host("Example.COM.:8443"), "example.com");
        assert_eq!(normalise_host("[::1]:80"), "[::1]");
        assert_eq!(normalise_host("localhost"), "localhost");
    }
}
