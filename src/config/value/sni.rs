//! What an SNI route matches: a host name pattern (`api.example.com`, or
//! `*.example.com` for every name under it), normalised as the data plane
//! compares the client's name, and the ALPN protocols it may require.

use std::net::Ipv4Addr;

use serde_yaml::Value;

use super::text::string;
use super::{Bad, ListOf, ReadFn};
use crate::config::model::SniPattern;

/// Longest ALPN protocol name: its length is one byte on the wire (RFC 7301).
const MAX_ALPN_LEN: usize = 255;

const ALPN_FIX: &str = "list protocol names as clients offer them, e.g. [h2] or [h2, http/1.1]";

/// A route's `match:`, read as the text written (for messages that quote
/// it) and the pattern.
pub(in crate::config) fn pattern(value: &Value) -> Result<(String, SniPattern), Bad> {
    let text = string(value, "a host name, e.g. api.example.com")?;
    parse(text, Target::Sni)
        .map(|pattern| (text.to_owned(), pattern))
        .map_err(|(problem, fix)| Bad::new(Some(text), problem, fix))
}

/// An HTTP route's `match.host` (or a certificate's name): as [`pattern`],
/// but an IPv4 address is a fine host, and the fixes speak of the `Host`
/// header rather than SNI.
pub(in crate::config) fn host(value: &Value) -> Result<SniPattern, Bad> {
    let text = string(value, "a host name, e.g. api.example.com")?;
    parse(text, Target::Host).map_err(|(problem, fix)| Bad::new(Some(text), problem, fix))
}

/// Which name a pattern is matched against.
#[derive(Clone, Copy, PartialEq)]
enum Target {
    /// The ClientHello's server name.
    Sni,
    /// An HTTP request's host, without its port.
    Host,
}

/// A route's `alpn:` list; absent is any client.
pub(in crate::config) const ALPN: ListOf<'static, ReadFn<String>> = ListOf {
    item: protocol,
    not_a_list: &alpn_not_a_list,
    empty: Some(
        "list protocol names as clients offer them, e.g. [h2] or [h2, http/1.1], or remove alpn to match clients whatever they offer",
    ),
};

fn alpn_not_a_list(value: &Value) -> String {
    match value {
        Value::String(text) => format!("write a list, e.g. [{text}]"),
        _ => ALPN_FIX.to_owned(),
    }
}

fn protocol(value: &Value) -> Result<String, Bad> {
    let name = string(value, "a protocol name, e.g. h2")?;
    let problem = if name.is_empty() {
        "is empty".to_owned()
    } else if name.len() > MAX_ALPN_LEN {
        format!("is longer than {MAX_ALPN_LEN} bytes, the most ALPN allows")
    } else {
        return Ok(name.to_owned());
    };
    Err(Bad::new(Some(name), problem, ALPN_FIX))
}

/// `api.example.com` → `Exact("api.example.com")`, `*.Example.com.` →
/// `Suffix(".example.com")`: lower case, without the trailing dot, as the
/// data plane compares the client's name. Fails with (problem, fix).
fn parse(text: &str, target: Target) -> Result<SniPattern, (String, String)> {
    const NAME_FIX: &str =
        "write a host name, e.g. api.example.com, or *.example.com for every name under example.com";
    let fail = |problem: &str, fix: &str| Err((problem.to_owned(), fix.to_owned()));
    if text.is_empty() {
        return fail("is empty", NAME_FIX);
    }
    if text.chars().any(char::is_whitespace) {
        return fail(
            "contains a space",
            match target {
                Target::Sni => "write one name per route, e.g. api.example.com, and add a route for each further name",
                Target::Host => "write one name, e.g. api.example.com",
            },
        );
    }
    let lower = text.to_ascii_lowercase();
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    if name == "*" {
        return fail(
            "matches every name",
            match target {
                Target::Sni => "remove this route: the listener's pool already takes every client no route matches",
                Target::Host => "leave host out: a route without host takes every host",
            },
        );
    }
    let (wildcard, rest) = match name.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, name),
    };
    if rest.contains('*') {
        return fail(
            "has a * that is not a leading \"*.\"",
            "a wildcard stands for whole labels at the start only: write *.example.com (it matches a.example.com and a.b.example.com, not example.com)",
        );
    }
    if name.len() > 253 {
        return fail(
            "is longer than 253 characters, the most a DNS name can have",
            NAME_FIX,
        );
    }
    if rest.split('.').any(str::is_empty) {
        return fail(
            "has an empty label (a leading dot or two dots in a row)",
            "write the name without the extra dot, e.g. api.example.com, or *.example.com for a wildcard",
        );
    }
    let odd = rest
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')));
    if let Some(c) = odd {
        let fix = match c {
            ':' | '/' if rest.contains("://") => match target {
                Target::Sni => "SNI carries only the host name: leave out the scheme and path, e.g. api.example.com",
                Target::Host => "write the host name alone, without scheme and path (match on the path with path_prefix), e.g. api.example.com",
            },
            ':' => match target {
                Target::Sni => "SNI carries no port: write the name alone, e.g. api.example.com",
                Target::Host => "the host is matched without its port: write the name alone, e.g. api.example.com",
            },
            c if !c.is_ascii() => {
                "write the name in its ASCII (punycode, xn--...) form, which is what clients send"
            }
            _ => "use only letters, digits, '-' and '_' between the dots",
        };
        return Err((
            format!("contains {c:?}, which is not allowed in a host name"),
            fix.to_owned(),
        ));
    }
    if rest.split('.').any(|label| label.len() > 63) {
        return fail(
            "has a label longer than 63 characters, the most DNS allows",
            NAME_FIX,
        );
    }
    if !wildcard && target == Target::Sni && rest.parse::<Ipv4Addr>().is_ok() {
        return fail(
            "is an IP address, which clients never send as SNI (RFC 6066)",
            "route by host name: clients connecting by IP send no SNI and go to the listener's pool",
        );
    }
    Ok(if wildcard {
        SniPattern::Suffix(format!(".{rest}"))
    } else {
        SniPattern::Exact(rest.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::read;
    use super::*;

    #[test]
    fn sni_patterns_are_normalised() {
        let exact = |s: &str| Ok(SniPattern::Exact(s.to_owned()));
        let suffix = |s: &str| Ok(SniPattern::Suffix(s.to_owned()));
        assert_eq!(
            parse("api.example.com", Target::Sni),
            exact("api.example.com")
        );
        assert_eq!(
            parse("API.Example.COM.", Target::Sni),
            exact("api.example.com")
        );
        assert_eq!(parse("localhost", Target::Sni), exact("localhost"));
        assert_eq!(
            parse("xn--bcher-kva.example", Target::Sni),
            exact("xn--bcher-kva.example")
        );
        assert_eq!(parse("_acme.example", Target::Sni), exact("_acme.example"));
        assert_eq!(parse("*.example.com", Target::Sni), suffix(".example.com"));
        assert_eq!(parse("*.Example.com.", Target::Sni), suffix(".example.com"));
        assert_eq!(parse("*.com", Target::Sni), suffix(".com"));
        // 253 characters is the longest name; the wildcard counts too.
        let label = "a".repeat(63);
        let longest = format!("{label}.{label}.{label}.{}", "a".repeat(61));
        assert_eq!(longest.len(), 253);
        assert_eq!(parse(&longest, Target::Sni), exact(&longest));
        assert_eq!(parse(&format!("{longest}."), Target::Sni), exact(&longest));
    }

    #[test]
    fn bad_sni_patterns_say_why() {
        let problem = |s: &str| parse(s, Target::Sni).unwrap_err().0;
        assert_eq!(problem(""), "is empty");
        assert_eq!(
            problem("."),
            "has an empty label (a leading dot or two dots in a row)"
        );
        for spaced in ["api example.com", " api.example.com", "api.example.com\t"] {
            assert_eq!(problem(spaced), "contains a space", "{spaced:?}");
        }
        for star in [
            "a*.example.com",
            "*example.com",
            "api.*.com",
            "*.*.com",
            "**.com",
            "example.*",
        ] {
            assert_eq!(
                problem(star),
                r#"has a * that is not a leading "*.""#,
                "{star}"
            );
        }
        assert_eq!(problem("*"), "matches every name");
        assert_eq!(problem("*."), "matches every name");
        for empty in [
            ".example.com",
            "api..example.com",
            "example.com..",
            "*..com",
            "*.",
            "*..",
        ] {
            assert!(
                problem(empty).starts_with("has an empty label") || empty == "*.",
                "{empty}: {}",
                problem(empty)
            );
        }
        let long = format!("{}.com", "a".repeat(250));
        assert!(problem(&long).starts_with("is longer than 253"));
        assert!(
            problem(&format!("*.{}", "a.".repeat(125) + "com")).starts_with("is longer than 253")
        );
        assert!(
            problem(&format!("{}.com", "a".repeat(64))).starts_with("has a label longer than 63")
        );
        assert_eq!(
            parse("api.example.com:443", Target::Sni).unwrap_err(),
            (
                "contains ':', which is not allowed in a host name".to_owned(),
                "SNI carries no port: write the name alone, e.g. api.example.com".to_owned()
            )
        );
        assert!(parse("https://api.example.com", Target::Sni)
            .unwrap_err()
            .1
            .contains("leave out the scheme"));
        assert!(parse("bücher.example", Target::Sni)
            .unwrap_err()
            .1
            .contains("punycode"));
        assert!(problem("api/v1.example").starts_with("contains '/'"));
        assert!(problem("10.0.0.1").starts_with("is an IP address"));
        // A wildcard over digits is a name suffix, not an address.
        assert!(parse("*.0.0.1", Target::Sni).is_ok());
    }

    #[test]
    fn http_hosts_may_be_addresses_and_speak_of_the_host() {
        assert_eq!(
            parse("10.0.0.1", Target::Host),
            Ok(SniPattern::Exact("10.0.0.1".into()))
        );
        assert_eq!(
            read(&host, "'*.Example.com'"),
            Ok(SniPattern::Suffix(".example.com".into()))
        );
        assert_eq!(
            parse("api.example.com:443", Target::Host).unwrap_err().1,
            "the host is matched without its port: write the name alone, e.g. api.example.com"
        );
        assert!(parse("*", Target::Host)
            .unwrap_err()
            .1
            .starts_with("leave host out"));
    }

    #[test]
    fn a_match_reads_as_written_and_as_its_pattern() {
        assert_eq!(
            read(&pattern, "'*.EXAMPLE.com.'"),
            Ok((
                "*.EXAMPLE.com.".into(),
                SniPattern::Suffix(".example.com".into())
            ))
        );
        assert!(read(&pattern, "8443")
            .unwrap_err()
            .starts_with(r#""8443" is a number, not text: write a host name"#));
    }

    #[test]
    fn alpn_lists_name_protocols_as_clients_offer_them() {
        assert_eq!(
            read(&ALPN, "[h2, http/1.1]"),
            Ok(vec!["h2".into(), "http/1.1".into()])
        );
        assert_eq!(
            read(&ALPN, "h2"),
            Err(r#""h2" is a string, not a list: write a list, e.g. [h2]"#.into())
        );
        assert!(read(&ALPN, "[]")
            .unwrap_err()
            .starts_with("is an empty list: "));
        let long = format!("[{}]", "x".repeat(256));
        assert!(read(&ALPN, &long)
            .unwrap_err()
            .contains("is longer than 255 bytes, the most ALPN allows"));
        assert_eq!(
            read(&ALPN, "[h2, 2]"),
            Err(r#"[1]: "2" is a number, not text: write a protocol name, e.g. h2; quote it if it looks like a number or true/false"#.into())
        );
    }
}
