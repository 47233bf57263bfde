//! The values of HTTP mode: a listener's `mode`, its TLS `alpn` list and
//! `min_version`, a route's `path_prefix`, a pool's `protocol`, and the file
//! paths of certificates and CAs. Paths are only read as text here: whether
//! the files exist and parse is for the TLS module when it loads them.

use std::path::PathBuf;
use std::time::Duration;

use serde_yaml::Value;

use super::count::whole_number;
use super::duration;
use super::text::{header_breaker, string};
use super::word::Word;
use super::{one_of, Bad, Kind};
use crate::config::model::{SniPattern, TlsVersion, UpstreamProtocol, DEFAULT_ALPN};
use crate::config::raw::closest;

/// How a listener handles its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::config) enum Mode {
    /// Bytes relayed as they are (the default).
    Tcp,
    /// TLS terminated (or plaintext), HTTP/1.1 and HTTP/2 proxied by request.
    Http,
}

impl Mode {
    pub(in crate::config) const ALL: [Mode; 2] = [Mode::Tcp, Mode::Http];

    pub(in crate::config) fn as_str(self) -> &'static str {
        match self {
            Mode::Tcp => "tcp",
            Mode::Http => "http",
        }
    }
}

/// A listener's `mode`.
pub(in crate::config) const MODE: Word<'static, Mode> = Word {
    all: &Mode::ALL,
    name: Mode::as_str,
    what: "listener mode",
};

/// A pool's `protocol`.
pub(in crate::config) const PROTOCOL: Word<'static, UpstreamProtocol> = Word {
    all: &UpstreamProtocol::ALL,
    name: UpstreamProtocol::as_str,
    what: "upstream protocol",
};

/// The protocols an HTTP listener can offer by ALPN.
pub(in crate::config) const ALPN_PROTOCOLS: [&str; 2] = DEFAULT_ALPN;

/// How to fix a listener's `alpn`.
pub(in crate::config) const ALPN_FIX: &str =
    "list h2 and/or http/1.1 in order of preference, e.g. [h2, http/1.1] (the default)";

/// A listener's `tls.alpn`: `h2` and `http/1.1`, each at most once, in order
/// of preference.
pub(in crate::config) fn alpn(value: &Value) -> Result<Vec<String>, Bad> {
    let Value::Sequence(items) = value else {
        let fix = match value {
            Value::String(text) => format!("write a list, e.g. [{text}]"),
            _ => ALPN_FIX.to_owned(),
        };
        return Err(Bad::not_a(value, "a list", fix));
    };
    if items.is_empty() {
        return Err(Bad::new(
            None,
            "is an empty list",
            format!("{ALPN_FIX}, or remove alpn"),
        ));
    }
    let read = super::items_of(items, &|v: &Value| {
        string(v, "h2 or http/1.1").map(str::to_owned)
    })?;
    crate::config::check::alpn(&read).map(|()| read)
}

/// One protocol of an `alpn` list: one spliced serves. Also what
/// `check::alpn` says of one in a config built in code.
pub(in crate::config) fn alpn_protocol(name: &str) -> Result<(), Bad> {
    if ALPN_PROTOCOLS.contains(&name) {
        return Ok(());
    }
    let hint = match closest(name, &ALPN_PROTOCOLS) {
        Some(near) => format!("did you mean {near}? "),
        None if name.eq_ignore_ascii_case("http/1.1") || name == "http1" || name == "h1" => {
            "did you mean http/1.1? ".to_owned()
        }
        None => String::new(),
    };
    Err(Bad::new(
        Some(name),
        "is not a protocol spliced serves",
        format!("{hint}use {}", one_of(&ALPN_PROTOCOLS)),
    ))
}

/// A listener's `tls.min_version`: `"1.2"` or `"1.3"`; YAML reads an
/// unquoted `1.2` as a number, which is taken too.
pub(in crate::config) fn min_version(value: &Value) -> Result<TlsVersion, Bad> {
    const FIX: &str = "use \"1.2\" (the default) or \"1.3\"";
    let text = match value {
        Value::String(text) => text.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        other => return Err(Bad::not_a(other, "a TLS version", FIX)),
    };
    let bare = text
        .strip_prefix("TLSv")
        .or_else(|| text.strip_prefix("TLS"))
        .unwrap_or(&text)
        .trim();
    match TlsVersion::ALL.into_iter().find(|v| v.as_str() == bare) {
        Some(version) if bare == text => Ok(version),
        Some(version) => Err(Bad::new(
            Some(&text),
            "is not a TLS version as spliced writes it",
            format!(
                "write the number alone, min_version: \"{}\"",
                version.as_str()
            ),
        )),
        None => Err(Bad::new(
            Some(&text),
            "is not a TLS version spliced accepts",
            format!("{FIX}; older versions are not offered"),
        )),
    }
}

/// A route's `match.path_prefix`: starts with `/`, fits in a request line.
pub(in crate::config) fn path_prefix(value: &Value) -> Result<String, Bad> {
    let text = string(value, "a path, e.g. /api/")?;
    if !text.starts_with('/') {
        return Err(Bad::new(
            Some(text),
            "does not start with /",
            format!(
                "write the path as requests carry it, e.g. /{}",
                text.trim_start_matches('/')
            ),
        ));
    }
    if let Some(breaker) = header_breaker(text) {
        return Err(Bad::new(
            Some(text),
            format!("contains {breaker}, which no request path has"),
            "percent-encode it as clients send it, e.g. %20 for a space",
        ));
    }
    Ok(text.to_owned())
}

/// A listener's `timeouts.tunnel_idle`: a duration, where `0` (bare, as
/// "never" is commonly written, or `0s`) is never (`None`).
pub(in crate::config) struct TunnelIdle;

impl Kind for TunnelIdle {
    type Out = Option<Duration>;

    fn read(&self, value: &Value) -> Result<Option<Duration>, Bad> {
        self.read_or(value, &None)
    }

    fn read_or(&self, value: &Value, default: &Option<Duration>) -> Result<Option<Duration>, Bad> {
        if whole_number(value) == Ok(0) {
            return Ok(None);
        }
        let example = default.unwrap_or(Duration::from_secs(3600));
        duration::ZERO_OK
            .read_or(value, &example)
            .map(|idle| Some(idle).filter(|idle| !idle.is_zero()))
    }
}

/// A file path (`cert`, `key`, `ca_file`): any text but empty. Not opened
/// here: the TLS module loads it, and says so when it cannot.
pub(in crate::config) struct FilePath<'a>(pub &'a str);

impl Kind for FilePath<'_> {
    type Out = PathBuf;

    fn read(&self, value: &Value) -> Result<PathBuf, Bad> {
        let example = self.0;
        let text = string(value, &format!("a file path, e.g. {example}"))?;
        if text.trim().is_empty() {
            return Err(Bad::new(
                Some(text),
                "is an empty path",
                format!("give the file's path, e.g. {example}"),
            ));
        }
        Ok(PathBuf::from(text))
    }
}

/// A name a certificate is for (`self_signed`, `default`): a host name,
/// `*.example.com`, or an IPv4 address, as written once normalised.
pub(in crate::config) fn cert_name(value: &Value) -> Result<String, Bad> {
    super::sni::host(value).map(|pattern| pattern.to_string())
}

/// A pool's `backend_tls.sni`: one host name (a wildcard cannot be sent).
pub(in crate::config) fn backend_sni(value: &Value) -> Result<String, Bad> {
    match super::sni::pattern(value)? {
        (_, SniPattern::Exact(name)) => Ok(name),
        (text, SniPattern::Suffix(_)) => Err(Bad::new(
            Some(&text),
            "is a wildcard, and a client sends one name",
            "write the name the backends' certificate is for, e.g. api.internal",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::read;
    use super::*;

    #[test]
    fn alpn_takes_h2_and_http11_once_each() {
        assert_eq!(
            read(&alpn, "[h2, http/1.1]"),
            Ok(vec!["h2".into(), "http/1.1".into()])
        );
        assert_eq!(read(&alpn, "[http/1.1]"), Ok(vec!["http/1.1".into()]));
        assert_eq!(
            read(&alpn, "[h2, h3]"),
            Err(r#"[1]: "h3" is not a protocol spliced serves: use h2 or http/1.1"#.into())
        );
        assert_eq!(
            read(&alpn, "[HTTP/1.1]"),
            Err(r#"[0]: "HTTP/1.1" is not a protocol spliced serves: did you mean http/1.1? use h2 or http/1.1"#.into())
        );
        assert_eq!(
            read(&alpn, "h2"),
            Err(r#""h2" is a string, not a list: write a list, e.g. [h2]"#.into())
        );
        assert_eq!(
            read(&alpn, "[]"),
            Err("is an empty list: list h2 and/or http/1.1 in order of preference, e.g. [h2, http/1.1] (the default), or remove alpn".into())
        );
        assert_eq!(
            read(&alpn, "[h2, h2]"),
            Err(r#""h2, h2" lists h2 twice: list each protocol once"#.into())
        );
    }

    #[test]
    fn min_version_is_12_or_13_quoted_or_not() {
        assert_eq!(read(&min_version, "'1.2'"), Ok(TlsVersion::V1_2));
        assert_eq!(read(&min_version, "1.2"), Ok(TlsVersion::V1_2));
        assert_eq!(read(&min_version, "1.3"), Ok(TlsVersion::V1_3));
        assert_eq!(
            read(&min_version, "1.1"),
            Err(r#""1.1" is not a TLS version spliced accepts: use "1.2" (the default) or "1.3"; older versions are not offered"#.into())
        );
        assert_eq!(
            read(&min_version, "TLSv1.3"),
            Err(r#""TLSv1.3" is not a TLS version as spliced writes it: write the number alone, min_version: "1.3""#.into())
        );
        assert!(read(&min_version, "[1.2]")
            .unwrap_err()
            .starts_with("is a list, not a TLS version"));
    }

    #[test]
    fn path_prefixes_start_with_a_slash() {
        assert_eq!(read(&path_prefix, "/v1/"), Ok("/v1/".into()));
        assert_eq!(read(&path_prefix, "/"), Ok("/".into()));
        assert_eq!(
            read(&path_prefix, "v1/"),
            Err(
                r#""v1/" does not start with /: write the path as requests carry it, e.g. /v1/"#
                    .into()
            )
        );
        assert!(read(&path_prefix, "'/a b'")
            .unwrap_err()
            .starts_with(r#""/a b" contains a space"#));
    }

    #[test]
    fn tunnel_idle_zero_is_never() {
        assert_eq!(read(&TunnelIdle, "0"), Ok(None));
        assert_eq!(read(&TunnelIdle, "'0'"), Ok(None));
        assert_eq!(read(&TunnelIdle, "0s"), Ok(None));
        assert_eq!(
            read(&TunnelIdle, "30m"),
            Ok(Some(Duration::from_secs(1800)))
        );
        assert_eq!(
            read(&TunnelIdle, "5"),
            Err(
                r#""5" is a number without a unit: add a unit, e.g. 1h (units: ms, s, m, h)"#
                    .into()
            )
        );
    }

    #[test]
    fn file_paths_are_text_and_not_empty() {
        let cert = FilePath("/etc/spliced/site.pem");
        assert_eq!(read(&cert, "site.pem"), Ok(PathBuf::from("site.pem")));
        assert_eq!(
            read(&cert, "''"),
            Err(r#""" is an empty path: give the file's path, e.g. /etc/spliced/site.pem"#.into())
        );
    }

    #[test]
    fn names_for_certificates_and_backends() {
        assert_eq!(read(&cert_name, "LocalHost"), Ok("localhost".into()));
        assert_eq!(
            read(&cert_name, "'*.Example.com'"),
            Ok("*.example.com".into())
        );
        assert_eq!(read(&cert_name, "127.0.0.1"), Ok("127.0.0.1".into()));
        assert_eq!(
            read(&backend_sni, "API.internal"),
            Ok("api.internal".into())
        );
        assert_eq!(
            read(&backend_sni, "'*.internal'"),
            Err(r#""*.internal" is a wildcard, and a client sends one name: write the name the backends' certificate is for, e.g. api.internal"#.into())
        );
    }

    #[test]
    fn modes_and_protocols_are_words() {
        assert_eq!(read(&MODE, "http"), Ok(Mode::Http));
        assert_eq!(
            read(&MODE, "https"),
            Err(
                r#""https" is not a known listener mode: did you mean http? use tcp or http"#
                    .into()
            )
        );
        assert_eq!(read(&PROTOCOL, "h2c"), Ok(UpstreamProtocol::H2c));
        assert_eq!(
            read(&PROTOCOL, "http2"),
            Err(r#""http2" is not a known upstream protocol: did you mean http1? use one of http1, h2c, h2"#.into())
        );
    }
}
