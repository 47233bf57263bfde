//! Text values: plain strings, the names of listeners and pools, host names
//! for the admin API's `Host` check, and text that goes into an HTTP request.
//! A YAML number or boolean where text belongs is refused with a hint to
//! quote it, rather than silently turned into text.

use serde_yaml::Value;

use super::{Bad, Kind};

/// `value` as text; `expected` says what belongs there (`a host name, e.g.
/// api.example.com`) for the fix.
pub(in crate::config) fn string<'v>(value: &'v Value, expected: &str) -> Result<&'v str, Bad> {
    match value {
        Value::String(text) => Ok(text),
        other => {
            let fix = match other {
                // `name: 8080` parses as a number; quoting keeps it a string.
                Value::Number(_) | Value::Bool(_) => {
                    format!("write {expected}; quote it if it looks like a number or true/false")
                }
                _ => format!("write {expected}"),
            };
            Err(Bad::not_a(other, "text", fix))
        }
    }
}

/// A listener or pool name: it becomes a metric label and appears in API
/// paths, so it is kept to a charset that needs no escaping anywhere. The
/// `&str` is an example name for the fixes.
pub(in crate::config) struct Name<'a>(pub &'a str);

impl Name<'_> {
    /// The fix for a missing name.
    pub(in crate::config) fn missing(&self) -> String {
        format!("add name: <unique name>, e.g. name: {}", self.0)
    }
}

impl Kind for Name<'_> {
    type Out = String;

    fn read(&self, value: &Value) -> Result<String, Bad> {
        let example = self.0;
        let name = string(value, &format!("a name, e.g. {example}"))?;
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !valid {
            return Err(Bad::new(
                Some(name),
                "is not a valid name",
                format!("use only letters, digits, '_', '.' and '-', e.g. {example}"),
            ));
        }
        Ok(name.to_owned())
    }
}

/// How to fix an `allowed_hosts` list or one of its names.
pub(in crate::config) const HOST_NAMES_FIX: &str =
    "list host names, e.g. [spliced.internal, lb-1.example.com]";

/// A DNS name the admin API may be reached by, as a browser sends it in
/// `Host` (lower case, no trailing dot, no port).
pub(in crate::config) fn host_name(value: &Value) -> Result<String, Bad> {
    let name = string(value, "a host name, e.g. spliced.internal")?;
    let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
    let valid = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if valid {
        Ok(name)
    } else {
        Err(Bad::new(
            Some(&name),
            "is not a host name (letters, digits, '-' and '.', no port)",
            HOST_NAMES_FIX,
        ))
    }
}

/// What in `text` would break an HTTP/1.1 request line or header, if anything.
pub(in crate::config) fn header_breaker(text: &str) -> Option<&'static str> {
    if text.contains(['\r', '\n']) {
        Some("a line break")
    } else if text.chars().any(char::is_whitespace) {
        Some("a space")
    } else if text.chars().any(char::is_control) {
        Some("a control character")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::read;
    use super::*;

    #[test]
    fn numbers_and_booleans_are_not_text_until_quoted() {
        let pool = |v: &Value| string(v, "the name of a pool").map(str::to_owned);
        assert_eq!(read(&pool, "web"), Ok("web".into()));
        assert_eq!(read(&pool, "'8080'"), Ok("8080".into()));
        assert_eq!(
            read(&pool, "8080"),
            Err(r#""8080" is a number, not text: write the name of a pool; quote it if it looks like a number or true/false"#.into())
        );
        assert_eq!(
            read(&pool, "[web]"),
            Err("is a list, not text: write the name of a pool".into())
        );
    }

    #[test]
    fn names_keep_to_a_label_safe_charset() {
        let name = Name("web");
        assert_eq!(read(&name, "api.v2-b_1"), Ok("api.v2-b_1".into()));
        for bad in ["'web frontend'", "'a/b'", "''", "'é'"] {
            assert!(
                read(&name, bad).unwrap_err().ends_with(
                    "is not a valid name: use only letters, digits, '_', '.' and '-', e.g. web"
                ),
                "{bad}"
            );
        }
        assert_eq!(name.missing(), "add name: <unique name>, e.g. name: web");
    }

    #[test]
    fn host_names_are_normalised_as_browsers_send_them() {
        assert_eq!(
            read(&host_name, "LB.example.com."),
            Ok("lb.example.com".into())
        );
        assert_eq!(
            read(&host_name, "'a:80'"),
            Err(r#""a:80" is not a host name (letters, digits, '-' and '.', no port): list host names, e.g. [spliced.internal, lb-1.example.com]"#.into())
        );
    }

    #[test]
    fn request_line_breakers() {
        assert_eq!(header_breaker("/healthz?x=1&y=%20"), None);
        assert_eq!(header_breaker("/a\r\nX-Evil: 1"), Some("a line break"));
        assert_eq!(header_breaker("/a\tb"), Some("a space"));
        assert_eq!(header_breaker("/a\u{7f}"), Some("a control character"));
    }
}
