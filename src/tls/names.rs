//! SNI name matching, pure: how a ClientHello's server name is normalised and
//! which certificate name covers it. Kept apart from loading so the rules
//! (case, trailing dot, one-label wildcards as in X.509 / RFC 6125 §6.4.3) are
//! tested without certificates. Never touches files or rustls.

use std::collections::HashMap;

/// A name as the store compares it: ASCII-lowercased, one trailing dot removed.
pub fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// How a certificate's DNS name serves SNI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// Serves exactly this (normalised) name.
    Exact(String),
    /// `*.suffix`: serves any one label in front of `suffix` (normalised).
    Wildcard(String),
}

/// The pattern a certificate name stands for, or `None` for names that can
/// never match an SNI value: empty, a bare `*`, or a `*` anywhere but as the
/// whole first label (partial wildcards like `a*.example.com` are not honoured,
/// as browsers do not honour them either).
pub fn pattern(cert_name: &str) -> Option<Pattern> {
    let name = normalize(cert_name);
    if let Some(suffix) = name.strip_prefix("*.") {
        if suffix.is_empty() || suffix.contains('*') || suffix.starts_with('.') {
            return None;
        }
        return Some(Pattern::Wildcard(suffix.to_owned()));
    }
    if name.is_empty() || name.contains('*') {
        return None;
    }
    Some(Pattern::Exact(name))
}

/// Names → index of the certificate serving them. The first certificate to
/// claim a name keeps it.
#[derive(Debug, Clone, Default)]
pub struct NameIndex {
    exact: HashMap<String, usize>,
    wildcard: HashMap<String, usize>,
}

impl NameIndex {
    /// Records that certificate `cert` serves `pattern`; `false` when an
    /// earlier certificate already serves it (that one is kept).
    pub fn insert(&mut self, pattern: Pattern, cert: usize) -> bool {
        let map = match &pattern {
            Pattern::Exact(_) => &mut self.exact,
            Pattern::Wildcard(_) => &mut self.wildcard,
        };
        let (Pattern::Exact(key) | Pattern::Wildcard(key)) = pattern;
        match map.entry(key) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(cert);
                true
            }
        }
    }

    /// The certificate for SNI `name`: an exact match, else the wildcard for
    /// its parent domain. A wildcard covers exactly one label, so the parent
    /// is the only wildcard that can match, and it is also the longest.
    pub fn lookup(&self, name: &str) -> Option<usize> {
        let name = normalize(name);
        if let Some(&cert) = self.exact.get(&name) {
            return Some(cert);
        }
        let (label, parent) = name.split_once('.')?;
        if label.is_empty() || parent.is_empty() {
            return None;
        }
        self.wildcard.get(parent).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(names: &[&str]) -> NameIndex {
        let mut idx = NameIndex::default();
        for (i, n) in names.iter().enumerate() {
            idx.insert(pattern(n).unwrap(), i);
        }
        idx
    }

    #[test]
    fn exact_match_ignores_case_and_trailing_dot() {
        let idx = index(&["A.Test", "b.test"]);
        assert_eq!(idx.lookup("a.test"), Some(0));
        assert_eq!(idx.lookup("A.TEST."), Some(0));
        assert_eq!(idx.lookup("b.test"), Some(1));
        assert_eq!(idx.lookup("c.test"), None);
    }

    #[test]
    fn wildcard_covers_exactly_one_label() {
        let idx = index(&["*.example.com"]);
        assert_eq!(idx.lookup("a.example.com"), Some(0));
        assert_eq!(idx.lookup("A.Example.Com."), Some(0));
        assert_eq!(idx.lookup("example.com"), None);
        assert_eq!(idx.lookup("a.b.example.com"), None);
        assert_eq!(idx.lookup(".example.com"), None);
    }

    #[test]
    fn exact_beats_wildcard_and_deeper_wildcard_wins() {
        let idx = index(&["*.example.com", "a.example.com", "*.b.example.com"]);
        assert_eq!(idx.lookup("a.example.com"), Some(1));
        assert_eq!(idx.lookup("c.example.com"), Some(0));
        assert_eq!(idx.lookup("x.b.example.com"), Some(2));
    }

    #[test]
    fn first_claim_keeps_a_name() {
        let mut idx = NameIndex::default();
        assert!(idx.insert(Pattern::Exact("a.test".into()), 0));
        assert!(!idx.insert(Pattern::Exact("a.test".into()), 1));
        assert_eq!(idx.lookup("a.test"), Some(0));
    }

    #[test]
    fn unusable_patterns() {
        for bad in [
            "",
            "*",
            "*.",
            "a*.example.com",
            "*.*.example.com",
            "x.*.com",
        ] {
            assert_eq!(pattern(bad), None, "{bad}");
        }
        assert_eq!(
            pattern("*.Example.com."),
            Some(Pattern::Wildcard("example.com".into()))
        );
    }
}
