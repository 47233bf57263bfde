//! Whole numbers in a range: counts, sizes, percentages, weights. A YAML
//! integer or a quoted one (`"8"`, as templating tools write them); never a
//! fraction, and never a number so large it wraps.

use std::marker::PhantomData;
use std::ops::RangeInclusive;

use serde_yaml::Value;

use super::{Bad, Kind};
use crate::config::raw::kind;

/// A whole number in `range`, read into `T` (every value of the range must
/// fit in `T`).
#[derive(Debug, Clone)]
pub(in crate::config) struct Count<T> {
    range: RangeInclusive<u64>,
    out: PhantomData<T>,
}

impl<T> Count<T> {
    pub(in crate::config) fn new(range: RangeInclusive<u64>) -> Self {
        Count {
            range,
            out: PhantomData,
        }
    }
}

impl<T: TryFrom<u64>> Kind for Count<T> {
    type Out = T;

    fn read(&self, value: &Value) -> Result<T, Bad> {
        let (low, high) = (*self.range.start(), *self.range.end());
        match whole_number(value) {
            Ok(n) if n >= i128::from(low) && n <= i128::from(high) => u64::try_from(n)
                .ok()
                .and_then(|n| T::try_from(n).ok())
                .ok_or_else(|| Bad::at(value, "is out of range", range_fix(&self.range))),
            Ok(_) => Err(Bad::at(value, "is out of range", range_fix(&self.range))),
            Err(problem) => Err(Bad::at(
                value,
                problem.unwrap_or_else(|| "is not a whole number".to_owned()),
                range_fix(&self.range),
            )),
        }
    }
}

/// How to write a number in `range`: `use a whole number from 1 to 100`.
/// Also what `check` says about a typed value outside its range.
pub(in crate::config) fn range_fix(range: &RangeInclusive<u64>) -> String {
    let (low, high) = (*range.start(), *range.end());
    if high == u64::from(u32::MAX) && low == 0 {
        "use a whole number, 0 or more".to_owned()
    } else if high == u64::from(u32::MAX) {
        format!("use a whole number of at least {low}")
    } else {
        format!("use a whole number from {low} to {high}")
    }
}

/// Reads a whole number from a YAML integer or a quoted one (`"8"`, which
/// templating tools often produce). `Err(Some(problem))` names a wrong type;
/// `Err(None)` is a scalar that is not a whole number.
pub(in crate::config) fn whole_number(value: &Value) -> Result<i128, Option<String>> {
    match value {
        Value::Number(n) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
            .ok_or(None),
        Value::String(s) => {
            let s = s.trim();
            let digits = s.strip_prefix('-').unwrap_or(s);
            if digits.is_empty() || digits.len() > 30 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(None);
            }
            s.parse::<i128>().map_err(|_| None)
        }
        other => Err(Some(format!("is {}, not a number", kind(other)))),
    }
}

/// Trial division: the sizes checked are at most about a million, so this
/// takes at most ~500 divisions.
pub(in crate::config) fn is_prime(n: i128) -> bool {
    if n < 2 {
        return false;
    }
    if n % 2 == 0 {
        return n == 2;
    }
    let mut d = 3;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 2;
    }
    true
}

/// The smallest prime at least `n`.
pub(in crate::config) fn next_prime(n: i128) -> i128 {
    let mut candidate = n.max(2);
    while !is_prime(candidate) {
        candidate += 1;
    }
    candidate
}

#[cfg(test)]
mod tests {
    use super::super::testing::read;
    use super::*;

    #[test]
    fn counts_take_integers_and_quoted_integers_in_range() {
        let retries = Count::<u32>::new(0..=16);
        assert_eq!(read(&retries, "0"), Ok(0));
        assert_eq!(read(&retries, "'16'"), Ok(16));
        assert_eq!(read(&retries, "' 7 '"), Ok(7));
        assert_eq!(
            read(&retries, "17"),
            Err(r#""17" is out of range: use a whole number from 0 to 16"#.into())
        );
        assert_eq!(
            read(&retries, "'-99999999999999999999'"),
            Err(
                r#""-99999999999999999999" is out of range: use a whole number from 0 to 16"#
                    .into()
            )
        );
        assert_eq!(
            read(&retries, "1.5"),
            Err(r#""1.5" is not a whole number: use a whole number from 0 to 16"#.into())
        );
        assert_eq!(
            read(&retries, "[1]"),
            Err("is a list, not a number: use a whole number from 0 to 16".into())
        );
        assert_eq!(
            read(&retries, "true"),
            Err(r#""true" is true/false, not a number: use a whole number from 0 to 16"#.into())
        );
    }

    #[test]
    fn open_ended_ranges_say_so() {
        assert_eq!(
            range_fix(&(0..=u32::MAX.into())),
            "use a whole number, 0 or more"
        );
        assert_eq!(
            range_fix(&(1..=u32::MAX.into())),
            "use a whole number of at least 1"
        );
        assert_eq!(range_fix(&(1..=128)), "use a whole number from 1 to 128");
        let connections = Count::<u32>::new(1..=u32::MAX.into());
        assert_eq!(read(&connections, "4294967295"), Ok(u32::MAX));
        assert!(read(&connections, "4294967296")
            .unwrap_err()
            .contains("is out of range: use a whole number of at least 1"));
    }

    #[test]
    fn whole_numbers_refuse_fractions_and_odd_text() {
        assert_eq!(whole_number(&Value::from(8)), Ok(8));
        assert_eq!(whole_number(&Value::from("-3")), Ok(-3));
        assert_eq!(whole_number(&Value::from(u64::MAX)), Ok(u64::MAX.into()));
        for odd in ["", "-", "+1", "1e3", "0x10", "1 000", &"9".repeat(31)] {
            assert_eq!(whole_number(&Value::from(odd)), Err(None), "{odd}");
        }
        assert_eq!(whole_number(&Value::from(1.5)), Err(None));
        assert_eq!(
            whole_number(&Value::Null),
            Err(Some("is empty, not a number".into()))
        );
    }

    #[test]
    fn primes_for_maglev_tables() {
        for prime in [2, 3, 1021, 1031, 65537, 65543, 1_000_003] {
            assert!(is_prime(prime), "{prime}");
        }
        for composite in [-7, 0, 1, 4, 1023, 65536, 65541, 1_000_001] {
            assert!(!is_prime(composite), "{composite}");
        }
        assert_eq!(next_prime(1000), 1009);
        assert_eq!(next_prime(1021), 1021);
        assert_eq!(next_prime(65536), 65537);
        assert_eq!(next_prime(999_984), 1_000_003);
    }
}
