//! The kinds of value a config holds, one small file each: how a YAML value
//! becomes a typed one, and the words used when it cannot. Each kind is a
//! [`Kind`]: a pure function from a [`Value`] to its typed form or a [`Bad`]
//! saying what is wrong with it and how to fix it.
//!
//! A kind never knows *where* its value stands: the section readers in
//! `validate` add the YAML path when they record a [`Bad`], so one kind serves
//! every key of its sort (every timeout is a duration) and is tested alone.
//! No kind may look at another key's value: rules across keys belong in
//! `check`.

pub(super) mod address;
pub(super) mod algorithm;
pub(super) mod cidr;
pub(super) mod count;
pub(super) mod duration;
pub(super) mod http;
pub(super) mod proxy;
pub(super) mod rate;
pub(super) mod size;
pub(super) mod sni;
pub(super) mod status;
pub(super) mod text;
pub(super) mod word;

use std::fmt;

use serde_yaml::Value;

use super::error::{Collector, YamlPath};
use super::raw::{kind, scalar_text};

/// What is wrong with one value.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Bad {
    /// The value itself: the text quoted back (none for a list, a mapping or
    /// a missing value), what is wrong, and how to fix it.
    Value {
        shown: Option<String>,
        problem: String,
        fix: String,
    },
    /// Some items of a list, each at its index; the list itself is fine.
    Items(Vec<(usize, Bad)>),
}

impl Bad {
    /// A problem with `shown` quoted back as written.
    pub(super) fn new(
        shown: Option<&str>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Bad::Value {
            shown: shown.map(str::to_owned),
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    /// A problem with `value`, quoted back as its scalar text.
    pub(super) fn at(value: &Value, problem: impl Into<String>, fix: impl Into<String>) -> Self {
        Bad::new(scalar_text(value).as_deref(), problem, fix)
    }

    /// Records this problem at `path`, each bad item of a list at its index.
    pub(super) fn record(self, path: &YamlPath, errors: &mut Collector) {
        match self {
            Bad::Value {
                shown,
                problem,
                fix,
            } => errors.push(path, shown.as_deref(), problem, fix),
            Bad::Items(items) => {
                for (i, bad) in items {
                    bad.record(&path.index(i), errors);
                }
            }
        }
    }

    /// `value` is of the wrong YAML type: "is a list, not `what`".
    pub(super) fn not_a(value: &Value, what: &str, fix: impl Into<String>) -> Self {
        Bad::at(value, format!("is {}, not {what}", kind(value)), fix)
    }
}

/// As the error would print after its path: `"value" problem: fix`, one item
/// per line for [`Bad::Items`]. For tests and messages built outside a file.
impl fmt::Display for Bad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bad::Value {
                shown,
                problem,
                fix,
            } => {
                if let Some(shown) = shown {
                    write!(f, "{shown:?} ")?;
                }
                f.write_str(problem)?;
                if !fix.is_empty() {
                    write!(f, ": {fix}")?;
                }
                Ok(())
            }
            Bad::Items(items) => {
                for (n, (i, bad)) in items.iter().enumerate() {
                    if n > 0 {
                        f.write_str("\n")?;
                    }
                    write!(f, "[{i}]: {bad}")?;
                }
                Ok(())
            }
        }
    }
}

/// One kind of value: how to read it from YAML.
pub(super) trait Kind {
    type Out;

    /// The typed value, or what is wrong with `value`.
    fn read(&self, value: &Value) -> Result<Self::Out, Bad>;

    /// As [`Kind::read`], for a key that takes `default` when absent; kinds
    /// that quote their default in a fix (`the default is false`) use it.
    fn read_or(&self, value: &Value, _default: &Self::Out) -> Result<Self::Out, Bad> {
        self.read(value)
    }
}

/// Any function from a value is a kind, so a section can compose one in
/// place (`|v| pools.find(text::string(v, "a pool name")?)`).
impl<T, F: Fn(&Value) -> Result<T, Bad>> Kind for F {
    type Out = T;

    fn read(&self, value: &Value) -> Result<T, Bad> {
        self(value)
    }
}

/// A kind that is a plain function, as a type to name in a `const`.
pub(in crate::config) type ReadFn<T> = fn(&Value) -> Result<T, Bad>;

/// A list of `item`s, every bad item reported at its index (not just the
/// first). Absent is empty; `not_a_list` says how to fix a value that is not
/// a list, and `empty` (when an empty list is wrong) how to fix that.
pub(super) struct ListOf<'a, K> {
    pub item: K,
    pub not_a_list: &'a dyn Fn(&Value) -> String,
    pub empty: Option<&'a str>,
}

impl<K: Kind> Kind for ListOf<'_, K> {
    type Out = Vec<K::Out>;

    fn read(&self, value: &Value) -> Result<Vec<K::Out>, Bad> {
        let Value::Sequence(items) = value else {
            return Err(Bad::not_a(value, "a list", (self.not_a_list)(value)));
        };
        if let (true, Some(fix)) = (items.is_empty(), self.empty) {
            return Err(Bad::new(None, "is an empty list", fix));
        }
        items_of(items, &self.item)
    }
}

/// Reads every item of `items`; fails with every bad one.
pub(super) fn items_of<K: Kind>(items: &[Value], item: &K) -> Result<Vec<K::Out>, Bad> {
    let mut good = Vec::with_capacity(items.len());
    let mut bad = Vec::new();
    for (i, value) in items.iter().enumerate() {
        match item.read(value) {
            Ok(value) => good.push(value),
            Err(problem) => bad.push((i, problem)),
        }
    }
    if bad.is_empty() {
        Ok(good)
    } else {
        Err(Bad::Items(bad))
    }
}

/// "a or b", or "one of a, b, c" for longer lists.
pub(super) fn one_of(words: &[&str]) -> String {
    match words {
        [a, b] => format!("{a} or {b}"),
        _ => format!("one of {}", words.join(", ")),
    }
}

#[cfg(test)]
pub(super) mod testing {
    //! Reading a YAML snippet with a kind, for the kinds' own tests.

    use super::*;

    /// `yaml` read as `kind`; the error as it would print after its path.
    pub(in crate::config) fn read<K: Kind>(kind: &K, yaml: &str) -> Result<K::Out, String> {
        let value: Value = serde_yaml::from_str(yaml).expect("test YAML parses");
        kind.read(&value).map_err(|bad| bad.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::testing::read;
    use super::*;

    fn small(value: &Value) -> Result<u8, Bad> {
        match value.as_u64() {
            Some(n) if n < 10 => Ok(n as u8),
            _ => Err(Bad::at(value, "is too big", "use 0 to 9")),
        }
    }

    #[test]
    fn a_bad_value_prints_as_it_would_after_its_path() {
        assert_eq!(read(&small, "3"), Ok(3));
        assert_eq!(
            read(&small, "12"),
            Err(r#""12" is too big: use 0 to 9"#.into())
        );
        let missing = Bad::new(None, "is missing", "add it");
        assert_eq!(missing.to_string(), "is missing: add it");
    }

    #[test]
    fn a_list_reports_every_bad_item_at_its_index() {
        let fix = |_: &Value| "write a list".to_owned();
        let list = ListOf {
            item: small,
            not_a_list: &fix,
            empty: Some("give one"),
        };
        assert_eq!(read(&list, "[1, 2]"), Ok(vec![1, 2]));
        assert_eq!(
            read(&list, "[1, 20, 3, 40]"),
            Err("[1]: \"20\" is too big: use 0 to 9\n[3]: \"40\" is too big: use 0 to 9".into())
        );
        assert_eq!(
            read(&list, "5"),
            Err(r#""5" is a number, not a list: write a list"#.into())
        );
        assert_eq!(read(&list, "[]"), Err("is an empty list: give one".into()));
        let may_be_empty = ListOf {
            item: small,
            not_a_list: &fix,
            empty: None,
        };
        assert_eq!(read(&may_be_empty, "[]"), Ok(vec![]));
    }

    #[test]
    fn choices_read_as_a_sentence() {
        assert_eq!(one_of(&["tcp", "http"]), "tcp or http");
        assert_eq!(one_of(&["off", "v1", "v2"]), "one of off, v1, v2");
    }
}
