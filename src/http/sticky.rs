//! Sticky sessions on the request path: finds spliced's cookie among a
//! request's `Cookie` headers, names the backend it pins (through the
//! route's [`StickyRoute`] ids, so a forged, stale or tampered value pins
//! nothing), strips it before the request is forwarded (the backend never
//! sees it, as HAProxy's `cookie ... indirect`), and sets it on a response
//! whenever the request was balanced anew. Every other cookie is forwarded
//! as the client sent it. Must never allocate for a request that does not
//! carry the cookie, nor decide eligibility itself: that stays `balance`'s.

use hyper::header::{HeaderMap, HeaderValue, COOKIE, SET_COOKIE};

use crate::balance::sticky::decode;
use crate::snapshot::StickyRoute;

/// The backend (index in the route's pool) the request's cookie pins, if
/// any; the cookie is removed from `headers` either way.
pub(super) fn pinned(sticky: &StickyRoute, headers: &mut HeaderMap) -> Option<usize> {
    let name = sticky.cookie.as_bytes();
    let carries = headers
        .get_all(COOKIE)
        .iter()
        .any(|v| pairs(v.as_bytes()).any(|(n, _)| n == name));
    if !carries {
        return None;
    }
    let mut pinned = None;
    let mut kept: Vec<HeaderValue> = Vec::new();
    for value in headers.get_all(COOKIE) {
        let (ours, others) =
            pairs(value.as_bytes()).fold(
                (0, 0),
                |(o, t), (n, _)| {
                    if n == name {
                        (o + 1, t)
                    } else {
                        (o, t + 1)
                    }
                },
            );
        if ours == 0 {
            // Not touched: a clone shares the received bytes.
            kept.push(value.clone());
            continue;
        }
        let mut rest: Vec<u8> = Vec::new();
        for (n, v) in pairs(value.as_bytes()) {
            if n == name {
                if pinned.is_none() {
                    pinned = decode(v).and_then(|id| sticky.ids.find(&id));
                }
                continue;
            }
            if !rest.is_empty() {
                rest.extend_from_slice(b"; ");
            }
            rest.extend_from_slice(n);
            rest.push(b'=');
            rest.extend_from_slice(v);
        }
        if others > 0 {
            if let Ok(v) = HeaderValue::from_bytes(&rest) {
                kept.push(v);
            }
        }
    }
    headers.remove(COOKIE);
    for v in kept {
        headers.append(COOKIE, v);
    }
    pinned
}

/// Sets the cookie on a response from backend `served` unless the request
/// was already pinned to it.
pub(super) fn reissue(
    sticky: &StickyRoute,
    pinned: Option<usize>,
    served: usize,
    headers: &mut HeaderMap,
) {
    if pinned == Some(served) {
        return;
    }
    if let Some(v) = sticky.set_cookie.get(served) {
        headers.append(SET_COOKIE, v.clone());
    }
}

/// The `name=value` pairs of one `Cookie` header (RFC 6265 §4.2: joined by
/// `; `; spaces around each pair are tolerated), without empty pieces. A
/// piece without `=` is a name with an empty value.
fn pairs(header: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    header
        .split(|&b| b == b';')
        .map(|p| p.trim_ascii())
        .filter(|p| !p.is_empty())
        .map(|p| match p.iter().position(|&b| b == b'=') {
            Some(at) => (p[..at].trim_ascii(), p[at + 1..].trim_ascii()),
            None => (p, &p[p.len()..]),
        })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::balance::sticky::{encode, StickyIds};
    use crate::balance::Backend;

    fn route() -> StickyRoute {
        let backends: Vec<Arc<Backend>> = ["127.0.0.1:1", "127.0.0.1:2"]
            .iter()
            .map(|a| Arc::new(Backend::for_test(a, 1)))
            .collect();
        let ids = StickyIds::new(b"0123456789abcdef", "web", &backends);
        let set_cookie = (0..2)
            .map(|i| {
                HeaderValue::from_str(&format!("S={}", encode(ids.id_of(i).unwrap()))).unwrap()
            })
            .collect();
        StickyRoute {
            cookie: "S".into(),
            ids,
            set_cookie,
        }
    }

    fn cookies(h: &HeaderMap) -> Vec<&str> {
        h.get_all(COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }

    #[test]
    fn the_cookie_pins_its_backend_and_is_stripped_others_kept() {
        let r = route();
        let id = encode(r.ids.id_of(1).unwrap());
        let mut h = HeaderMap::new();
        h.append(
            COOKIE,
            HeaderValue::from_str(&format!("a=1; S={id};b=2")).unwrap(),
        );
        h.append(COOKIE, HeaderValue::from_static("c=3"));
        assert_eq!(pinned(&r, &mut h), Some(1));
        assert_eq!(cookies(&h), ["a=1; b=2", "c=3"]);
    }

    #[test]
    fn a_tampered_or_foreign_value_pins_nothing() {
        let r = route();
        let mut id = encode(r.ids.id_of(0).unwrap());
        id.replace_range(0..1, if id.starts_with('0') { "1" } else { "0" });
        for value in [id.as_str(), "127.0.0.1:1", "", "zz"] {
            let mut h = HeaderMap::new();
            h.append(
                COOKIE,
                HeaderValue::from_str(&format!("S={value}")).unwrap(),
            );
            assert_eq!(pinned(&r, &mut h), None, "{value}");
            assert!(cookies(&h).is_empty(), "only spliced's cookie: header gone");
        }
    }

    #[test]
    fn requests_without_the_cookie_are_left_alone() {
        let r = route();
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("SS=1; xS=2"));
        assert_eq!(pinned(&r, &mut h), None);
        assert_eq!(cookies(&h), ["SS=1; xS=2"]);
    }

    #[test]
    fn the_cookie_is_set_only_when_balanced_anew() {
        let r = route();
        let mut h = HeaderMap::new();
        reissue(&r, Some(1), 1, &mut h);
        assert!(h.get(SET_COOKIE).is_none());
        reissue(&r, Some(1), 0, &mut h);
        reissue(&r, None, 0, &mut h);
        assert_eq!(h.get_all(SET_COOKIE).iter().count(), 2);
        assert_eq!(h.get(SET_COOKIE), Some(&r.set_cookie[0]));
    }
}
