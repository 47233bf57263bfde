//! The responses spliced makes itself (no route, no backend, timeouts,
//! refusals): small, plain text, `Connection: close` where the connection
//! cannot go on, and counted like proxied ones.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{header, Response, StatusCode};

use super::Body;

/// A plain-text answer with `status` and a one-line reason.
pub(super) fn plain(status: StatusCode, reason: &str) -> Response<Body> {
    let text = format!("{} {}\n", status.as_u16(), reason);
    let mut resp = Response::new(full(Bytes::from(text)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    resp
}

/// `308 Permanent Redirect` to `location`.
pub(super) fn redirect(location: &str) -> Response<Body> {
    let mut resp = plain(StatusCode::PERMANENT_REDIRECT, "redirecting to HTTPS");
    if let Ok(v) = header::HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

pub(super) fn full(bytes: Bytes) -> Body {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}
