//! Header rules of the proxy, both ways: requests whose framing could be
//! read two ways (request smuggling) are refused before any backend sees
//! them; hop-by-hop headers are removed; `X-Forwarded-For`,
//! `X-Forwarded-Proto`, `X-Forwarded-Host` and `X-Request-Id` are set. The
//! parsing itself is hyper's and h2's; this module only decides what passes.

use std::net::IpAddr;

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Version};

pub(super) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(super) static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(super) static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub(super) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Refuses requests a backend could frame differently from us: both
/// `Content-Length` and `Transfer-Encoding`, several `Content-Length`s, or a
/// transfer coding other than a final `chunked`. (hyper already refuses
/// invalid bytes, obs-fold and conflicting lengths it cannot parse.)
pub(super) fn check_framing<B>(req: &Request<B>) -> Result<(), &'static str> {
    let h = req.headers();
    let lengths = h.get_all(header::CONTENT_LENGTH).iter().count();
    let codings = h.get_all(header::TRANSFER_ENCODING).iter().count();
    if lengths > 1 {
        return Err("more than one Content-Length");
    }
    if codings > 0 {
        if lengths > 0 {
            return Err("both Content-Length and Transfer-Encoding");
        }
        let chunked_last = codings == 1
            && h.get(header::TRANSFER_ENCODING)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("chunked"));
        if !chunked_last {
            return Err("a Transfer-Encoding other than chunked");
        }
    }
    Ok(())
}

/// Whether a request asks to switch protocols (HTTP/1.1 `Upgrade`, e.g.
/// WebSocket): then `Connection: upgrade` and `Upgrade` must reach the
/// backend.
pub(super) fn wants_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && connection_tokens(req.headers()).any(|t| t.eq_ignore_ascii_case("upgrade"))
}

fn connection_tokens(h: &HeaderMap) -> impl Iterator<Item = &str> {
    h.get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Removes the headers that describe one hop, not the message: the
/// standard ones and any named by `Connection`. With `upgrade`, the
/// `Connection: upgrade` and `Upgrade` pair stays. `TE: trailers` stays
/// (gRPC needs it to reach the backend).
pub(super) fn strip_hop_by_hop(h: &mut HeaderMap, upgrade: bool) {
    let named: Vec<HeaderName> = connection_tokens(h)
        .filter(|t| !(upgrade && t.eq_ignore_ascii_case("upgrade")))
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    for name in named {
        h.remove(name);
    }
    let te_trailers = h
        .get(header::TE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        });
    for name in [
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::TRANSFER_ENCODING,
        &header::TE,
        &header::PROXY_AUTHENTICATE,
    ] {
        h.remove(name);
    }
    if te_trailers {
        h.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        h.remove(header::CONNECTION);
        h.remove(header::UPGRADE);
    }
}

/// What the backend is told about the client.
pub(super) struct Forwarded<'a> {
    pub client: IpAddr,
    /// The client is a trusted proxy: its `X-Forwarded-For` is kept.
    pub trusted: bool,
    /// "https" or "http".
    pub proto: &'static str,
    /// The host the client asked for, as it wrote it.
    pub host: Option<&'a str>,
    pub request_id: u64,
}

/// Sets the forwarding headers on a request going to a backend.
pub(super) fn add_forwarded(h: &mut HeaderMap, f: &Forwarded) {
    use std::fmt::Write as _;
    let client = match f.client {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    // Up to four headers more: one grow of the map, not one per insert.
    h.reserve(4);
    // The prior hops (from a trusted proxy), then the client; built in one
    // buffer (an address is at most 45 bytes).
    let mut xff = String::with_capacity(48);
    if f.trusted {
        for prior in h.get_all(&X_FORWARDED_FOR).iter() {
            if let Ok(prior) = prior.to_str() {
                xff.push_str(prior);
                xff.push_str(", ");
            }
        }
    }
    let _ = write!(xff, "{client}");
    if let Ok(v) = HeaderValue::from_str(&xff) {
        h.insert(&X_FORWARDED_FOR, v);
    }
    let keep_proto = f.trusted && h.contains_key(&X_FORWARDED_PROTO);
    if !keep_proto {
        h.insert(&X_FORWARDED_PROTO, HeaderValue::from_static(f.proto));
    }
    if !(f.trusted && h.contains_key(&X_FORWARDED_HOST)) {
        if let Some(v) = f.host.and_then(|host| HeaderValue::from_str(host).ok()) {
            h.insert(&X_FORWARDED_HOST, v);
        }
    }
    if !h.contains_key(&X_REQUEST_ID) {
        h.insert(&X_REQUEST_ID, request_id(f.request_id));
    }
}

/// `id` as 16 lower-case hex digits, without a `String` on the way.
fn request_id(id: u64) -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    for (i, d) in digits.iter_mut().enumerate() {
        *d = HEX[(id >> (60 - 4 * i) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&digits).expect("hex digits are a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().uri("/");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        assert!(check_framing(&req(&[("content-length", "5")])).is_ok());
        assert!(check_framing(&req(&[("transfer-encoding", "chunked")])).is_ok());
        assert!(check_framing(&req(&[("content-length", "5"), ("content-length", "5")])).is_err());
        assert!(check_framing(&req(&[
            ("content-length", "5"),
            ("transfer-encoding", "chunked")
        ]))
        .is_err());
        assert!(check_framing(&req(&[("transfer-encoding", "gzip, chunked")])).is_err());
        assert!(check_framing(&req(&[
            ("transfer-encoding", "chunked"),
            ("transfer-encoding", "chunked")
        ]))
        .is_err());
    }

    #[test]
    fn hop_by_hop_headers_go_and_connection_names_too() {
        let mut r = req(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers, deflate"),
            ("upgrade", "websocket"),
            ("x-kept", "1"),
        ]);
        strip_hop_by_hop(r.headers_mut(), false);
        let h = r.headers();
        assert!(h.get("x-secret").is_none() && h.get("keep-alive").is_none());
        assert!(h.get("connection").is_none() && h.get("upgrade").is_none());
        assert_eq!(h.get("te").unwrap(), "trailers");
        assert_eq!(h.get("x-kept").unwrap(), "1");
    }

    #[test]
    fn an_upgrade_keeps_its_connection_and_upgrade_headers() {
        let mut r = req(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(!wants_upgrade(&r) || r.version() == Version::HTTP_11);
        strip_hop_by_hop(r.headers_mut(), true);
        assert_eq!(r.headers().get("connection").unwrap(), "upgrade");
        assert_eq!(r.headers().get("upgrade").unwrap(), "websocket");
    }

    #[test]
    fn x_forwarded_for_is_replaced_unless_trusted() {
        let f = |trusted| Forwarded {
            client: "10.1.2.3".parse().unwrap(),
            trusted,
            proto: "https",
            host: Some("example.com"),
            request_id: 0xabc,
        };
        let mut r = req(&[("x-forwarded-for", "6.6.6.6")]);
        add_forwarded(r.headers_mut(), &f(false));
        assert_eq!(r.headers()["x-forwarded-for"], "10.1.2.3");
        assert_eq!(r.headers()["x-forwarded-proto"], "https");
        assert_eq!(r.headers()["x-forwarded-host"], "example.com");
        assert_eq!(r.headers()["x-request-id"], "0000000000000abc");
        let mut r = req(&[("x-forwarded-for", "1.1.1.1"), ("x-request-id", "mine")]);
        add_forwarded(r.headers_mut(), &f(true));
        assert_eq!(r.headers()["x-forwarded-for"], "1.1.1.1, 10.1.2.3");
        assert_eq!(r.headers()["x-request-id"], "mine");
        let mut r = req(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "2.2.2.2"),
        ]);
        add_forwarded(r.headers_mut(), &f(true));
        assert_eq!(r.headers()["x-forwarded-for"], "1.1.1.1, 2.2.2.2, 10.1.2.3");
    }

    #[test]
    fn request_ids_are_16_hex_digits() {
        assert_eq!(request_id(0), "0000000000000000");
        assert_eq!(request_id(u64::MAX), "ffffffffffffffff");
        assert_eq!(request_id(0x0123_4567_89ab_cdef), "0123456789abcdef");
    }
}
