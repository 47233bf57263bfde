//! The reader every section is written with: one line per key, naming the
//! key, its raw value, its default (or what to add when it is required) and
//! its [`Kind`]. A bad value is recorded at its YAML path and read as `None`,
//! so a section reads every key before giving up and the file's problems are
//! all reported in one run.
//!
//! `None` from a read always means "already reported": a section that sees
//! one gives up on its own value without a word of its own.

use std::time::Duration;

use serde_yaml::Value;

use crate::config::error::{Collector, YamlPath};
use crate::config::raw::scalar_text;
use crate::config::value::{duration, Bad, Kind};

/// The keys of one mapping in the file (the top level, a listener, a
/// `limits:` section...), at `path`.
pub(super) struct Fields<'e> {
    path: YamlPath,
    errors: &'e mut Collector,
}

impl<'e> Fields<'e> {
    pub(super) fn new(path: YamlPath, errors: &'e mut Collector) -> Self {
        Fields { path, errors }
    }

    /// The section's own path.
    pub(super) fn at(&self) -> &YamlPath {
        &self.path
    }

    /// The path of `key` in this section.
    pub(super) fn path(&self, key: &str) -> YamlPath {
        self.path.key(key)
    }

    /// The mapping under `key`, as a section of its own.
    pub(super) fn section(&mut self, key: &str) -> Fields<'_> {
        Fields::new(self.path.key(key), self.errors)
    }

    /// The `index`th item of the list under `key`.
    pub(super) fn item(&mut self, key: &str, index: usize) -> Fields<'_> {
        Fields::new(self.path.key(key).index(index), self.errors)
    }

    /// The `index`th item of this section, which is a list.
    pub(super) fn entry(&mut self, index: usize) -> Fields<'_> {
        Fields::new(self.path.index(index), self.errors)
    }

    /// Where rules over several keys record what they find.
    pub(super) fn errors(&mut self) -> &mut Collector {
        self.errors
    }

    /// `key`, or `default` when the file leaves it out.
    pub(super) fn or<K: Kind>(
        &mut self,
        key: &str,
        raw: &Option<Value>,
        default: K::Out,
        kind: K,
    ) -> Option<K::Out> {
        match raw {
            None => Some(default),
            Some(value) => {
                let read = kind.read_or(value, &default);
                self.keep(key, read)
            }
        }
    }

    /// `key` when the file sets it: `Some(None)` when it does not.
    pub(super) fn opt<K: Kind>(
        &mut self,
        key: &str,
        raw: &Option<Value>,
        kind: K,
    ) -> Option<Option<K::Out>> {
        match raw {
            None => Some(None),
            Some(value) => {
                let read = kind.read(value);
                self.keep(key, read).map(Some)
            }
        }
    }

    /// `key`, which the file must set; `add` says how (`add listen: 0.0.0.0:8080`).
    pub(super) fn need<K: Kind>(
        &mut self,
        key: &str,
        raw: &Option<Value>,
        add: &str,
        kind: K,
    ) -> Option<K::Out> {
        match raw {
            None => {
                self.errors
                    .push(&self.path.key(key), None, "is missing", add);
                None
            }
            Some(value) => {
                let read = kind.read(value);
                self.keep(key, read)
            }
        }
    }

    /// A duration `key` that must fit `other`, another duration of the
    /// section (`None` when that was bad, and reported): left out, its
    /// `default` is fitted to `other` with `fit`; written, `rule` holds it to
    /// `other`.
    ///
    /// WHY: a default that follows the setting it depends on spares a file
    /// that sets only `interval: 500ms` an error about a key it never wrote.
    pub(super) fn fitted(
        &mut self,
        key: &str,
        raw: &Option<Value>,
        default: Duration,
        (other, fit): (Option<Duration>, fn(Duration, Duration) -> Duration),
        rule: fn(Duration, Duration, Option<&str>) -> Result<(), Bad>,
    ) -> Option<Duration> {
        let value = self.or(key, raw, default, duration::POSITIVE)?;
        match (other, raw) {
            (Some(other), None) => Some(fit(value, other)),
            (Some(other), Some(written)) => {
                let shown = scalar_text(written);
                self.keep(key, rule(value, other, shown.as_deref()))
                    .map(|()| value)
            }
            (None, _) => Some(value),
        }
    }

    /// The value of `read`, or `None` with its problem recorded at `key`.
    pub(super) fn keep<T>(&mut self, key: &str, read: Result<T, Bad>) -> Option<T> {
        read.map_err(|bad| bad.record(&self.path.key(key), self.errors))
            .ok()
    }

    /// The value of `read`, or `None` with its problem recorded at this
    /// section's own path (a list item that is a bare value).
    pub(super) fn here<T>(&mut self, read: Result<T, Bad>) -> Option<T> {
        read.map_err(|bad| bad.record(&self.path, self.errors)).ok()
    }

    /// Records `bad` at `key`.
    pub(super) fn report(&mut self, key: &str, bad: Bad) {
        bad.record(&self.path.key(key), self.errors);
    }
}

/// A list the file must have and must not leave empty (`listeners:`,
/// `pools:`, a pool's `backends:`); `add` says what to add.
pub(super) fn non_empty<T>(
    list: Option<Vec<T>>,
    path: &YamlPath,
    add: &str,
    errors: &mut Collector,
) -> Option<Vec<T>> {
    match list {
        None => {
            errors.push(path, None, "is missing", add);
            None
        }
        Some(list) if list.is_empty() => {
            errors.push(path, None, "is empty", add);
            None
        }
        Some(list) => Some(list),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::value::count::Count;

    fn yaml(text: &str) -> Option<Value> {
        Some(serde_yaml::from_str(text).unwrap())
    }

    #[test]
    fn each_read_records_its_problem_at_the_keys_path() {
        let mut errors = Collector::default();
        let root = YamlPath::root().key("listeners").index(0);
        let mut f = Fields::new(root, &mut errors);
        let retries = Count::<u32>::new(0..=16);
        assert_eq!(f.or("retries", &None, 2, retries.clone()), Some(2));
        assert_eq!(f.or("retries", &yaml("3"), 2, retries.clone()), Some(3));
        assert_eq!(f.opt("backlog", &None, retries.clone()), Some(None));
        assert_eq!(f.opt("backlog", &yaml("40"), retries.clone()), None);
        assert_eq!(f.need("name", &None, "add name: web", retries), None);
        let shown = errors.finish().to_string();
        assert_eq!(
            shown,
            "listeners[0].backlog: \"40\" is out of range: use a whole number from 0 to 16\n\
             listeners[0].name: is missing: add name: web"
        );
    }

    #[test]
    fn a_missing_or_empty_list_says_what_to_add() {
        let mut errors = Collector::default();
        let path = YamlPath::root().key("pools");
        assert_eq!(
            non_empty(Some(vec![1]), &path, "add one", &mut errors),
            Some(vec![1])
        );
        assert_eq!(
            non_empty::<u8>(Some(vec![]), &path, "add one", &mut errors),
            None
        );
        assert_eq!(errors.finish().to_string(), "pools: is empty: add one");
    }
}
