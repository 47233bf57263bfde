//! Durations: `250ms`, `2s`, `1.5s`, `5m`, `1h` — one non-negative decimal
//! and one unit, exact to the nanosecond. A bare number is always refused,
//! even `0`: seconds or milliseconds would be a guess.

use std::time::Duration;

use serde_yaml::Value;

use super::{Bad, Kind};

/// Longest duration accepted anywhere. The data plane adds these to clock
/// readings and `io_uring` timespecs; a year is far beyond any sensible timeout
/// and keeps that arithmetic nowhere near overflow.
pub(in crate::config) const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// A duration setting; `allow_zero` says whether zero makes sense for it
/// (`shutdown_timeout: 0s` closes at once; a zero connect timeout never connects).
#[derive(Debug, Clone, Copy)]
pub(in crate::config) struct Dur {
    pub allow_zero: bool,
}

/// A duration that must be longer than zero.
pub(in crate::config) const POSITIVE: Dur = Dur { allow_zero: false };
/// A duration where zero means "at once" or "off".
pub(in crate::config) const ZERO_OK: Dur = Dur { allow_zero: true };

impl Dur {
    /// Reads `value`, quoting `example` in the fixes.
    fn parse(self, value: &Value, example: Duration) -> Result<Duration, Bad> {
        // A zero default means "off", which makes a poor example of a duration.
        let example = if example.is_zero() {
            "30s".to_owned()
        } else {
            format(example)
        };
        let no_unit = || format!("add a unit, e.g. {example} (units: ms, s, m, h)");
        let text = match value {
            Value::String(text) => text.as_str(),
            // A bare number is ambiguous (seconds? milliseconds?), so it is
            // refused even when it is 0 rather than guessed.
            Value::Number(_) => {
                return Err(Bad::at(value, "is a number without a unit", no_unit()))
            }
            other => {
                return Err(Bad::not_a(
                    other,
                    "a duration",
                    format!("write a number and a unit, e.g. {example}"),
                ))
            }
        };
        let fail = |problem: &str, fix: String| Err(Bad::new(Some(text), problem, fix));
        match parse(text) {
            Ok(d) if d.is_zero() && !self.allow_zero => {
                fail("must be longer than zero", format!("use e.g. {example}"))
            }
            Ok(d) => Ok(d),
            Err(Malformed::NoUnit) => fail("is a number without a unit", no_unit()),
            Err(Malformed::Garbled) => fail(
                "is not a duration",
                format!(
                    "write a number and one unit (ms, s, m or h), e.g. 250ms, 1.5s or {example}"
                ),
            ),
            Err(Malformed::TooLong) => fail(
                "is too long",
                format!("use at most {}", format(MAX_DURATION)),
            ),
        }
    }
}

impl Kind for Dur {
    type Out = Duration;

    fn read(&self, value: &Value) -> Result<Duration, Bad> {
        self.parse(value, Duration::ZERO)
    }

    fn read_or(&self, value: &Value, default: &Duration) -> Result<Duration, Bad> {
        self.parse(value, *default)
    }
}

/// Why a text is not a duration.
#[derive(Debug, PartialEq)]
enum Malformed {
    /// `2`, `1.5`: the number is fine, the unit is missing.
    NoUnit,
    Garbled,
    /// Longer than [`MAX_DURATION`].
    TooLong,
}

/// Parses `250ms`, `2s`, `1.5s`, `5m`, `1h`: one non-negative decimal number
/// and one unit. Exact to the nanosecond (no floating point), so `0.1s` is
/// exactly 100ms.
fn parse(text: &str) -> Result<Duration, Malformed> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let well_formed = !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.bytes().all(|b| b.is_ascii_digit())
        && !(number.contains('.') && fraction.is_empty());
    if !well_formed {
        return Err(Malformed::Garbled);
    }
    let unit_nanos: u128 = match unit {
        "" => return Err(Malformed::NoUnit),
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60 * 1_000_000_000,
        "h" => 3600 * 1_000_000_000,
        _ => return Err(Malformed::Garbled),
    };
    let max = MAX_DURATION.as_nanos();
    let whole = whole.trim_start_matches('0');
    // Anything with more digits than this is over a year in any unit; checking
    // the length first keeps the parse below from overflowing.
    if whole.len() > 20 {
        return Err(Malformed::TooLong);
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| Malformed::Garbled)?
    };
    // Digits beyond 15 are below a nanosecond even for hours; dropping them
    // keeps `fraction * unit` inside u128.
    let fraction = &fraction[..fraction.len().min(15)];
    let fraction_nanos = if fraction.is_empty() {
        0
    } else {
        let digits: u128 = fraction.parse().map_err(|_| Malformed::Garbled)?;
        digits * unit_nanos / 10u128.pow(fraction.len() as u32)
    };
    let nanos = whole
        .checked_mul(unit_nanos)
        .and_then(|n| n.checked_add(fraction_nanos))
        .filter(|&n| n <= max)
        .ok_or(Malformed::TooLong)?;
    Ok(Duration::from_nanos(
        u64::try_from(nanos).map_err(|_| Malformed::TooLong)?,
    ))
}

/// Writes a duration the way a config would: `2s`, `5m`, `250ms`.
pub(in crate::config) fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(3_600_000) && ms > 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) && ms > 0 {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::read;
    use super::*;

    #[test]
    fn durations_parse_exactly() {
        let ok = [
            ("250ms", Duration::from_millis(250)),
            ("2s", Duration::from_secs(2)),
            ("1.5s", Duration::from_millis(1500)),
            ("0.1s", Duration::from_millis(100)),
            ("5m", Duration::from_secs(300)),
            ("1h", Duration::from_secs(3600)),
            ("0s", Duration::ZERO),
            ("0.0005ms", Duration::from_nanos(500)),
            ("007s", Duration::from_secs(7)),
            ("8760h", MAX_DURATION),
        ];
        for (text, want) in ok {
            assert_eq!(parse(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn bad_durations_say_why() {
        for text in ["2", "0", "1.5", "0000"] {
            assert_eq!(parse(text), Err(Malformed::NoUnit), "{text}");
        }
        for text in [
            "", "s", "2 s", "2sec", "-1s", "1.s", ".5s", "1.2.3s", "1m30s", "2S", "+2s", "1e3s",
            "∞s",
        ] {
            assert_eq!(parse(text), Err(Malformed::Garbled), "{text}");
        }
        for text in [
            "8761h",
            "99999999999999999999999999999999h",
            "1000000000000000000000ms",
        ] {
            assert_eq!(parse(text), Err(Malformed::TooLong), "{text}");
        }
    }

    #[test]
    fn durations_print_as_written() {
        assert_eq!(format(Duration::from_secs(2)), "2s");
        assert_eq!(format(Duration::from_secs(300)), "5m");
        assert_eq!(format(Duration::from_millis(250)), "250ms");
        assert_eq!(format(MAX_DURATION), "8760h");
        assert_eq!(format(Duration::ZERO), "0s");
    }

    #[test]
    fn fixes_quote_the_default_as_the_example() {
        let with_default = |yaml: &str, default: Duration| {
            let value: Value = serde_yaml::from_str(yaml).unwrap();
            POSITIVE
                .read_or(&value, &default)
                .map_err(|bad| bad.to_string())
        };
        assert_eq!(
            with_default("2", Duration::from_secs(2)),
            Err(
                r#""2" is a number without a unit: add a unit, e.g. 2s (units: ms, s, m, h)"#
                    .into()
            )
        );
        assert_eq!(
            with_default("0ms", Duration::from_millis(250)),
            Err(r#""0ms" must be longer than zero: use e.g. 250ms"#.into())
        );
        // A zero default ("off") is no example; 30s stands in.
        assert_eq!(
            read(&ZERO_OK, "soon"),
            Err(r#""soon" is not a duration: write a number and one unit (ms, s, m or h), e.g. 250ms, 1.5s or 30s"#.into())
        );
        assert_eq!(read(&ZERO_OK, "0s"), Ok(Duration::ZERO));
        assert_eq!(
            read(&POSITIVE, "[1s]"),
            Err("is a list, not a duration: write a number and a unit, e.g. 30s".into())
        );
        assert_eq!(
            read(&POSITIVE, "9000h"),
            Err(r#""9000h" is too long: use at most 8760h"#.into())
        );
    }
}
