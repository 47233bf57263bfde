//! Who may use the admin API from a browser. A web page the operator happens
//! to have open can send requests to `127.0.0.1:9090` too: a "simple"
//! cross-site POST (a form, or `fetch` with `text/plain`) needs no CORS
//! preflight, and DNS rebinding lets a page on a name that suddenly resolves
//! to 127.0.0.1 read answers as if it were same-origin. Without a token that
//! would let any page add its own backend (traffic hijack) or replace the
//! config. These checks close both doors while curl, Prometheus, Kubernetes
//! probes and the dashboard (same origin) keep working:
//!
//! - every request must name this API in `Host`: an IP literal (a rebinding
//!   page cannot make its browser send one), `localhost`, or a name listed in
//!   `admin.allowed_hosts`;
//! - a mutation must not come from another origin (`Origin` differing from
//!   `Host`, `Origin: null`, or `Sec-Fetch-Site` other than `same-origin` /
//!   `none`);
//! - a mutation with a body must say it is JSON (YAML for a config), which a
//!   cross-site form or simple request cannot.
//!
//! Pure functions over the request's headers; no I/O.

use std::net::IpAddr;

use super::Request;

/// Why a request was refused, for the 4xx body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
}

fn refuse(status: u16, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
    }
}

/// The host part of a `Host` header or of an origin's authority
/// (`name:port`, `[v6]:port`, `v4:port`), lowercased, without the port.
fn host_part(authority: &str) -> String {
    let authority = authority.trim();
    let host = if let Some(rest) = authority.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Checks the `Host` header against the names this API answers to.
pub fn check_host(host: Option<&str>, allowed: &[String]) -> Result<(), Refusal> {
    // HTTP/1.0 clients may omit Host; browsers never do.
    let Some(host) = host else { return Ok(()) };
    let name = host_part(host);
    if name.parse::<IpAddr>().is_ok()
        || name == "localhost"
        || allowed.iter().any(|a| a.eq_ignore_ascii_case(&name))
    {
        return Ok(());
    }
    Err(refuse(
        421,
        format!(
            "Host {host:?} does not name this admin API: use its IP address or localhost, \
             or add {name:?} to admin.allowed_hosts"
        ),
    ))
}

/// The media types a mutation's body may be sent as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Json,
    /// A config: YAML, or JSON (a subset of YAML).
    Yaml,
}

impl BodyKind {
    fn accepts(self, media_type: &str) -> bool {
        let json = media_type == "application/json" || media_type.ends_with("+json");
        match self {
            BodyKind::Json => json,
            BodyKind::Yaml => {
                json || matches!(
                    media_type,
                    "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml"
                )
            }
        }
    }

    fn example(self) -> &'static str {
        match self {
            BodyKind::Json => "Content-Type: application/json",
            BodyKind::Yaml => "Content-Type: application/yaml",
        }
    }
}

/// Checks that a mutation comes from this API's own origin (or from no
/// browser at all) and that its body is of `kind`.
pub fn check_mutation(req: &Request, kind: BodyKind) -> Result<(), Refusal> {
    if let Some(site) = req.sec_fetch_site.as_deref() {
        let site = site.trim().to_ascii_lowercase();
        if site != "same-origin" && site != "none" {
            return Err(refuse(
                403,
                format!("cross-site request refused (Sec-Fetch-Site: {site}): change the admin API from its own dashboard, curl or a script"),
            ));
        }
    }
    if let Some(origin) = req.origin.as_deref() {
        let same = origin
            .split_once("://")
            .map(|(_, authority)| authority.trim_end_matches('/'))
            .zip(req.host.as_deref())
            .is_some_and(|(authority, host)| authority.eq_ignore_ascii_case(host.trim()));
        if !same {
            return Err(refuse(
                403,
                format!("cross-origin request refused (Origin: {origin}): change the admin API from its own dashboard, curl or a script"),
            ));
        }
    }
    let media_type = req.content_type.as_deref().map(|c| {
        c.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    });
    match media_type {
        Some(m) if kind.accepts(&m) => Ok(()),
        // A call without a body (DELETE, POST /reload) may omit the type;
        // one that has a body, or claims a form type, may not.
        None if req.body.is_empty() => Ok(()),
        Some(m) => Err(refuse(
            415,
            format!(
                "Content-Type {m:?} is not accepted here: send {}",
                kind.example()
            ),
        )),
        None => Err(refuse(
            415,
            format!("a request body needs {}", kind.example()),
        )),
    }
}

/// The scheme and credentials of an `Authorization` header, if it is a bearer
/// token (the scheme is case-insensitive, RFC 9110 §11.1).
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(char::is_whitespace)?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(host: &str, headers: &[(&str, &str)], body: &str) -> Request {
        let mut r = Request {
            method: "POST".into(),
            path: "/api/v1/pools/web/backends".into(),
            host: Some(host.into()),
            body: body.as_bytes().to_vec(),
            ..Request::default()
        };
        for &(k, v) in headers {
            match k {
                "origin" => r.origin = Some(v.into()),
                "sec-fetch-site" => r.sec_fetch_site = Some(v.into()),
                "content-type" => r.content_type = Some(v.into()),
                _ => unreachable!(),
            }
        }
        r
    }

    #[test]
    fn host_must_name_this_api() {
        let none: &[String] = &[];
        for ok in [
            "127.0.0.1:9090",
            "[::1]:9090",
            "10.1.2.3",
            "localhost:9090",
            "LOCALHOST",
        ] {
            assert_eq!(check_host(Some(ok), none), Ok(()), "{ok}");
        }
        assert_eq!(check_host(None, none), Ok(()));
        let refused = check_host(Some("attacker.example:9090"), none).unwrap_err();
        assert_eq!(refused.status, 421);
        assert!(refused.message.contains("admin.allowed_hosts"));
        let allowed = ["spliced.internal".to_string()];
        assert_eq!(check_host(Some("Spliced.Internal:9090"), &allowed), Ok(()));
        assert!(check_host(Some("localhost.attacker.example"), &allowed).is_err());
    }

    #[test]
    fn simple_cross_site_posts_are_refused() {
        let body = r#"{"address":"203.0.113.9:80"}"#;
        // A form post: text/plain, foreign origin.
        let form = request(
            "127.0.0.1:9090",
            &[
                ("origin", "http://attacker.example"),
                ("sec-fetch-site", "cross-site"),
                ("content-type", "text/plain"),
            ],
            body,
        );
        assert_eq!(
            check_mutation(&form, BodyKind::Json).unwrap_err().status,
            403
        );
        // Older browsers without Sec-Fetch-*: Origin alone decides.
        let old = request(
            "127.0.0.1:9090",
            &[("origin", "null"), ("content-type", "application/json")],
            body,
        );
        assert_eq!(
            check_mutation(&old, BodyKind::Json).unwrap_err().status,
            403
        );
        // Same origin but a simple content type (no preflight): refused.
        let plain = request("127.0.0.1:9090", &[("content-type", "text/plain")], body);
        assert_eq!(
            check_mutation(&plain, BodyKind::Json).unwrap_err().status,
            415
        );
        let untyped = request("127.0.0.1:9090", &[], body);
        assert_eq!(
            check_mutation(&untyped, BodyKind::Json).unwrap_err().status,
            415
        );
    }

    #[test]
    fn the_dashboard_and_scripts_pass() {
        let body = r#"{"weight":2}"#;
        let dashboard = request(
            "127.0.0.1:9090",
            &[
                ("origin", "http://127.0.0.1:9090"),
                ("sec-fetch-site", "same-origin"),
                ("content-type", "application/json"),
            ],
            body,
        );
        assert_eq!(check_mutation(&dashboard, BodyKind::Json), Ok(()));
        let curl = request(
            "127.0.0.1:9090",
            &[("content-type", "application/json; charset=utf-8")],
            body,
        );
        assert_eq!(check_mutation(&curl, BodyKind::Json), Ok(()));
        let yaml = request(
            "127.0.0.1:9090",
            &[("content-type", "application/yaml")],
            "a: 1",
        );
        assert_eq!(check_mutation(&yaml, BodyKind::Yaml), Ok(()));
        assert!(check_mutation(&yaml, BodyKind::Json).is_err());
        let reload = request("127.0.0.1:9090", &[], "");
        assert_eq!(check_mutation(&reload, BodyKind::Json), Ok(()));
        let form_reload = request(
            "127.0.0.1:9090",
            &[("content-type", "application/x-www-form-urlencoded")],
            "",
        );
        assert!(check_mutation(&form_reload, BodyKind::Json).is_err());
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER   abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer "), None);
    }
}
