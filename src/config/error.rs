//! What a config error is and how it is shown: every problem found in a config
//! file carries the YAML path where it was found, the offending value, what is
//! wrong and how to fix it, and prints as exactly one line.
//!
//! This module must never decide *whether* something is an error; `raw`,
//! `validate` and `check` do that. It only locates, collects and formats.

use std::collections::HashSet;
use std::fmt;

/// Longest value (in characters) quoted back in an error. A pasted certificate
/// or a fuzzer's megabyte of garbage should not flood the terminal; the path
/// already says where to look.
const MAX_SHOWN_VALUE: usize = 80;

/// One problem in a config, located by its YAML path.
///
/// Displays as one line, `path: "value" problem: fix`, for example
/// `listeners[0].listen: "0.0.0.0:99999" is not a valid address (port 99999 is above 65535): use IP:port, e.g. 0.0.0.0:8080`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where in the file: `listeners[1].connect_timeout`, `(top level)`, a
    /// `line L, column C` for syntax errors, or the file name for read errors.
    pub path: String,
    /// The offending value as written, when there is one (a missing key has none).
    pub value: Option<String>,
    /// What is wrong, phrased to follow the value: `is not a valid address`.
    pub problem: String,
    /// How to fix it: `use IP:port, e.g. 0.0.0.0:8080`.
    pub fix: String,
}

impl ConfigError {
    /// Builds an error, keeping it to one line and a readable length whatever
    /// the input contained.
    pub fn new(
        path: impl Into<String>,
        value: Option<&str>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        ConfigError {
            path: path.into(),
            value: value.map(shorten),
            problem: one_line(problem.into()),
            fix: one_line(fix.into()),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.path)?;
        if let Some(value) = &self.value {
            // Debug quoting escapes newlines and control characters, so a value
            // can never break the one-error-per-line contract.
            write!(f, "{value:?} ")?;
        }
        f.write_str(&self.problem)?;
        if !self.fix.is_empty() {
            write!(f, ": {}", self.fix)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in one config, in the order they were found. Never empty
/// when returned by this module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        ConfigErrors(vec![error])
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// One error per line, no trailing newline.
impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A YAML path being walked: `listeners[1].connect_timeout`. Cheap to extend,
/// immutable once built, so each helper can hand a child path down.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct YamlPath {
    text: String,
    /// How many keys and indices deep the path is.
    depth: usize,
    /// The top-level key (`listeners`) and the item in it (`1`), for putting
    /// errors in file order.
    section: Option<String>,
    item: Option<usize>,
}

impl YamlPath {
    /// The document itself.
    pub(super) fn root() -> Self {
        YamlPath::default()
    }

    /// The value under `key` in the mapping at this path.
    pub(super) fn key(&self, key: &str) -> Self {
        // Keys we did not expect come straight from the file; quote the odd
        // ones so the path stays unambiguous and printable.
        let plain = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        let shown = if plain {
            key.to_owned()
        } else {
            format!("{:?}", shorten(key))
        };
        YamlPath {
            text: if self.depth == 0 {
                shown
            } else {
                format!("{}.{shown}", self.text)
            },
            depth: self.depth + 1,
            section: self.section.clone().or_else(|| Some(key.to_owned())),
            item: self.item,
        }
    }

    /// The `index`th item of the list at this path.
    pub(super) fn index(&self, index: usize) -> Self {
        YamlPath {
            text: format!("{}[{index}]", self.text),
            depth: self.depth + 1,
            section: self.section.clone(),
            item: if self.depth == 1 {
                Some(index)
            } else {
                self.item
            },
        }
    }
}

impl fmt::Display for YamlPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.depth == 0 {
            f.write_str("(top level)")
        } else {
            f.write_str(&self.text)
        }
    }
}

/// Gathers errors while `raw` and `validate` walk the file (or `check` walks a
/// `Config`), so one run reports everything instead of stopping at the first
/// problem.
#[derive(Debug, Default)]
pub(super) struct Collector {
    /// Each error with where it sorts: (section, item) as in [`YamlPath`].
    errors: Vec<(ConfigError, Option<String>, Option<usize>)>,
    paths: HashSet<String>,
    /// Top-level keys in the order the file has them.
    sections: Vec<String>,
}

impl Collector {
    /// Records a problem at `path`. Only the first problem at a path is kept:
    /// once `listeners` is reported as "not a list", also calling it "missing"
    /// would only be noise.
    pub(super) fn push(
        &mut self,
        path: &YamlPath,
        value: Option<&str>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) {
        let shown = path.to_string();
        if self.paths.insert(shown.clone()) {
            let error = ConfigError::new(shown, value, problem, fix);
            self.errors.push((error, path.section.clone(), path.item));
        }
    }

    /// Like [`Collector::push`] for a place that is not a YAML path (the line
    /// and column of a syntax error); it sorts first.
    pub(super) fn push_at(
        &mut self,
        place: String,
        value: Option<&str>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) {
        if self.paths.insert(place.clone()) {
            let error = ConfigError::new(place, value, problem, fix);
            self.errors.push((error, None, None));
        }
    }

    /// Tells the collector the file's top-level keys in file order.
    pub(super) fn set_section_order<'a>(&mut self, keys: impl IntoIterator<Item = &'a str>) {
        self.sections = keys.into_iter().map(str::to_owned).collect();
    }

    pub(super) fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// The errors in file order: by top-level section as the file orders them
    /// (absent sections last), then by list item. The sort is stable, so
    /// within one item errors stay in the order they were found.
    pub(super) fn finish(mut self) -> ConfigErrors {
        let sections = self.sections;
        self.errors.sort_by_key(|(_, section, item)| {
            let section_rank = match section {
                None => 0,
                Some(s) => {
                    1 + sections
                        .iter()
                        .position(|k| k == s)
                        .unwrap_or(sections.len())
                }
            };
            (section_rank, item.map_or(0, |i| i + 1))
        });
        ConfigErrors(self.errors.into_iter().map(|(error, _, _)| error).collect())
    }
}

fn shorten(value: &str) -> String {
    match value.char_indices().nth(MAX_SHOWN_VALUE) {
        Some((cut, _)) => format!("{}...", &value[..cut]),
        None => value.to_owned(),
    }
}

fn one_line(text: String) -> String {
    if text.contains(['\n', '\r']) {
        text.split(['\n', '\r'])
            .filter(|part| !part.trim().is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_in_the_documented_shape() {
        let error = ConfigError::new(
            "listeners[0].listen",
            Some("0.0.0.0:99999"),
            "is not a valid address",
            "use host:port, e.g. 0.0.0.0:8080",
        );
        assert_eq!(
            error.to_string(),
            r#"listeners[0].listen: "0.0.0.0:99999" is not a valid address: use host:port, e.g. 0.0.0.0:8080"#
        );
        let missing = ConfigError::new("pools", None, "is missing", "add a pool");
        assert_eq!(missing.to_string(), "pools: is missing: add a pool");
    }

    #[test]
    fn one_error_per_line_whatever_the_value() {
        let errors = ConfigErrors(vec![
            ConfigError::new("a", Some("x\ny"), "is\nbad", "fix\r\nit"),
            ConfigError::new("b", None, "is missing", "add it"),
        ]);
        let shown = errors.to_string();
        assert_eq!(shown.lines().count(), 2, "{shown}");
        assert_eq!(shown, "a: \"x\\ny\" is bad: fix it\nb: is missing: add it");
    }

    #[test]
    fn long_values_are_shortened() {
        let long = "x".repeat(10_000);
        let error = ConfigError::new("a", Some(&long), "is bad", "fix it");
        assert!(error.to_string().len() < 200);
        // Multi-byte characters must not be cut in half.
        let wide = "é".repeat(200);
        assert!(ConfigError::new("a", Some(&wide), "p", "f")
            .value
            .unwrap()
            .ends_with("é..."));
    }

    #[test]
    fn paths_read_like_the_file() {
        let root = YamlPath::root();
        assert_eq!(root.to_string(), "(top level)");
        let path = root.key("listeners").index(1).key("connect_timeout");
        assert_eq!(path.to_string(), "listeners[1].connect_timeout");
        assert_eq!(
            root.key("pools").index(0).key("odd key").to_string(),
            r#"pools[0]."odd key""#
        );
    }

    #[test]
    fn collector_keeps_the_first_error_per_path() {
        let mut errors = Collector::default();
        let path = YamlPath::root().key("listeners");
        errors.push(&path, None, "is not a list", "fix");
        errors.push(&path, None, "is missing", "fix");
        let errors = errors.finish();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors.0[0].problem, "is not a list");
    }

    #[test]
    fn collector_sorts_by_file_order() {
        let mut errors = Collector::default();
        errors.set_section_order(["workers", "listeners", "pools"]);
        let root = YamlPath::root();
        errors.push(&root.key("pools").index(0).key("name"), None, "p", "f");
        errors.push(&root.key("listeners").index(1).key("x"), None, "p", "f");
        errors.push(
            &root.key("listeners").index(0).key("b").index(3),
            None,
            "p",
            "f",
        );
        errors.push(&root.key("listeners").index(0).key("a"), None, "p", "f");
        errors.push(&root.key("admin"), None, "p", "f");
        errors.push(&root.key("workers"), None, "p", "f");
        errors.push(&root, None, "p", "f");
        let order: Vec<String> = errors.finish().into_iter().map(|e| e.path).collect();
        assert_eq!(
            order,
            [
                "(top level)",
                "workers",
                "listeners[0].b[3]",
                "listeners[0].a",
                "listeners[1].x",
                "pools[0].name",
                "admin",
            ]
        );
    }
}
