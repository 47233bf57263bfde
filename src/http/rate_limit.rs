//! Per-request rate limits on the request path: the key of each of a
//! route's `rate_limit:` entries (the client's address, or a header's value,
//! falling back to the address or skipping the limit when the header is
//! missing), counted in the process-wide GCRA table of `limits` so that all
//! workers share one budget, and the 429 answered when one is spent. Limits
//! are checked in order and the first refusal answers; a request refused by
//! a later limit has still spent its token in the earlier ones (as Envoy's
//! and HAProxy's chained limits do). Must never lock or allocate for an
//! admitted request, and never let a refused one reach a backend.

use std::net::IpAddr;

use hyper::header::{HeaderValue, RETRY_AFTER};
use hyper::{HeaderMap, Response, StatusCode};

use super::{answer, Body};
use crate::config::MissingKey;
use crate::counters::bump;
use crate::limits::{ClientKey, Limiter};
use crate::snapshot::RouteLimit;

const NS_PER_SEC: u64 = 1_000_000_000;

/// The 429 for a request over one of `limits`, or `None` to go on. Counts
/// the refusal on worker `slot`.
pub(super) fn check(
    limits: &[RouteLimit],
    headers: &HeaderMap,
    client: IpAddr,
    limiter: &Limiter,
    slot: usize,
    now_ns: u64,
) -> Option<Response<Body>> {
    for limit in limits {
        let key = match &limit.header {
            None => ClientKey::in_scope(limit.scope, client, limit.ipv6_prefix),
            Some(name) => match headers.get(name) {
                Some(value) => ClientKey::of_value(limit.scope, value.as_bytes()),
                None if limit.missing == MissingKey::Skip => continue,
                None => ClientKey::in_scope(limit.scope, client, limit.ipv6_prefix),
            },
        };
        if let Err(wait_ns) = limiter.request(key, limit.rate, now_ns) {
            let counter = limit.rejected.worker(slot);
            bump(counter, 1);
            return Some(too_many(wait_ns));
        }
    }
    None
}

/// `429 Too Many Requests` with `Retry-After`: whole seconds, rounded up
/// (RFC 9110 §10.2.3 allows no fractions), at least 1.
fn too_many(wait_ns: u64) -> Response<Body> {
    let mut resp = answer::plain(StatusCode::TOO_MANY_REQUESTS, "too many requests");
    let secs = wait_ns.div_ceil(NS_PER_SEC).max(1);
    resp.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(secs));
    resp
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::counters::RateLimitedStats;
    use crate::limits::{RequestRate, Scope};

    fn limit(header: Option<&str>, missing: MissingKey, rate: f64, burst: u32) -> RouteLimit {
        RouteLimit {
            header: header.map(|h| h.parse().unwrap()),
            missing,
            scope: Scope::route_limit("l", 0, "p", header.unwrap_or("ip")),
            rate: RequestRate::new(rate, burst),
            ipv6_prefix: 64,
            label: header.unwrap_or("ip").into(),
            rejected: Arc::new(RateLimitedStats::new(1)),
        }
    }

    const NOW: u64 = 1_000 * NS_PER_SEC;

    #[test]
    fn past_the_burst_a_429_says_when_to_retry() {
        let limiter = Limiter::with_salt(64, 1);
        let limits = [limit(None, MissingKey::Ip, 0.5, 2)];
        let ip: IpAddr = [10, 0, 0, 1].into();
        let h = HeaderMap::new();
        assert!(check(&limits, &h, ip, &limiter, 0, NOW).is_none());
        assert!(check(&limits, &h, ip, &limiter, 0, NOW).is_none());
        let resp = check(&limits, &h, ip, &limiter, 0, NOW).unwrap();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        // One request per 2 s: the next is 2 s away.
        assert_eq!(resp.headers()[RETRY_AFTER], "2");
        assert_eq!(limits[0].rejected.sum(), 1);
        // Another address has its own bucket.
        assert!(check(&limits, &h, [10, 0, 0, 2].into(), &limiter, 0, NOW).is_none());
    }

    #[test]
    fn header_keys_are_independent_and_a_missing_one_counts_by_address_or_skips() {
        let limiter = Limiter::with_salt(64, 1);
        let ip: IpAddr = [10, 0, 0, 1].into();
        let by_key = [limit(Some("x-api-key"), MissingKey::Ip, 1.0, 1)];
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert("x-api-key", HeaderValue::from_static(v));
            h
        };
        assert!(check(&by_key, &with("a"), ip, &limiter, 0, NOW).is_none());
        assert!(check(&by_key, &with("a"), ip, &limiter, 0, NOW).is_some());
        assert!(check(&by_key, &with("b"), ip, &limiter, 0, NOW).is_none());
        // No header: the address's own bucket, then refused.
        let none = HeaderMap::new();
        assert!(check(&by_key, &none, ip, &limiter, 0, NOW).is_none());
        assert!(check(&by_key, &none, ip, &limiter, 0, NOW).is_some());
        let skipping = [limit(Some("x-api-key"), MissingKey::Skip, 1.0, 1)];
        for _ in 0..5 {
            assert!(check(&skipping, &none, ip, &limiter, 0, NOW).is_none());
        }
        // A retry after is rounded up to whole seconds, at least 1.
        assert_eq!(too_many(1).headers()[RETRY_AFTER], "1");
        assert_eq!(too_many(NS_PER_SEC + 1).headers()[RETRY_AFTER], "2");
    }
}
