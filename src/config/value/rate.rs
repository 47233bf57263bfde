//! Rates: new connections per second (`50/s`, `30/m`) and bandwidth in bytes
//! per second (`10MB/s`, `512KiB/s`). The unit is always written: a bare
//! number could be per second or per minute, bits or bytes.

use serde_yaml::Value;

use super::{Bad, Kind};

/// Highest `per_ip_rate` (new connections per second) and `rate_limit.rate`
/// (requests per second): one every microsecond
/// from a single client is no longer a limit on anything a host can accept,
/// and keeps the rate limiter's interval arithmetic well inside nanoseconds.
const MAX_CONNECTION_RATE: f64 = 1_000_000.0;
/// Highest `per_ip_bandwidth`, bytes per second (1000GB/s): far above any NIC,
/// so only a typo reaches it, and token counts stay far from overflow.
const MAX_BANDWIDTH: f64 = 1e12;

/// Units of `per_ip_bandwidth`, the same as a size's.
use super::size::UNITS as BANDWIDTH_UNITS;

/// `per_ip_rate`: `50/s` or `30/m`, in new connections per second.
pub(in crate::config) struct ConnectionRate;

impl Kind for ConnectionRate {
    type Out = f64;

    fn read(&self, value: &Value) -> Result<f64, Bad> {
        per_second(value, "new connections", "per_ip_rate")
    }
}

/// A route's `rate_limit.rate`: `100/s` or `600/m`, in requests per second.
pub(in crate::config) struct RequestRate;

impl Kind for RequestRate {
    type Out = f64;

    fn read(&self, value: &Value) -> Result<f64, Bad> {
        per_second(value, "requests", "rate_limit")
    }
}

/// A count of `what` per second or minute, as a rate per second; `key` is
/// what to remove for no limit, in the fixes.
fn per_second(value: &Value, what: &str, key: &str) -> Result<f64, Bad> {
    let fix = format!("write {what} per second or per minute, e.g. 50/s or 30/m");
    let add_unit = |n: &str| format!("add /s or /m, e.g. {n}/s (per second) or {n}/m (per minute)");
    let text = match value {
        Value::String(text) => text.trim(),
        Value::Number(n) => {
            let n = n.to_string();
            return Err(Bad::new(
                Some(&n),
                "is a number without a unit",
                add_unit(&n),
            ));
        }
        other => return Err(Bad::not_a(other, "a rate", fix)),
    };
    let fail = |problem: &str, fix: &str| Err(Bad::new(Some(text), problem, fix));
    let (number, unit) = text.split_once('/').unwrap_or((text, ""));
    let number = number.trim();
    let per_second = match unit.trim() {
        "s" => 1.0,
        "m" => 60.0,
        "" if decimal(number).is_some() => {
            return fail("is a number without a unit", &add_unit(number));
        }
        unit if !unit.is_empty() && decimal(number).is_some() => {
            return fail(&format!("has an unknown unit \"/{unit}\""), &fix);
        }
        _ => return fail("is not a rate", &fix),
    };
    let Some(number) = decimal(number) else {
        return fail("is not a rate", &fix);
    };
    let rate = number / per_second;
    if rate <= 0.0 {
        return fail(
            "must be more than zero",
            &format!("use e.g. 50/s, or remove {key} for no rate limit"),
        );
    }
    if rate > MAX_CONNECTION_RATE {
        return fail(
            "is out of range",
            &format!("use at most {MAX_CONNECTION_RATE}/s, or remove {key} for no rate limit"),
        );
    }
    Ok(rate)
}

/// `per_ip_bandwidth`: `10MB/s`, `512KiB/s`, in bytes per second.
pub(in crate::config) struct Bandwidth;

impl Kind for Bandwidth {
    type Out = u64;

    fn read(&self, value: &Value) -> Result<u64, Bad> {
        const FIX: &str =
            "write bytes per second with a unit, e.g. 10MB/s (units: B, KB, MB, GB, KiB, MiB, GiB)";
        let text = match value {
            Value::String(text) => text.trim(),
            Value::Number(_) => return Err(Bad::at(value, "is a number without a unit", FIX)),
            other => return Err(Bad::not_a(other, "a bandwidth", FIX)),
        };
        let fail = |problem: &str, fix: &str| Err(Bad::new(Some(text), problem, fix));
        let Some(amount) = text.strip_suffix("/s") else {
            return fail("is not a rate per second", FIX);
        };
        let split = amount
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(amount.len());
        let (number, unit) = amount.split_at(split);
        let unit = unit.trim();
        let Some(&(_, bytes)) = BANDWIDTH_UNITS.iter().find(|(name, _)| *name == unit) else {
            let (problem, hint) = match BANDWIDTH_UNITS
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(unit))
            {
                // `Mb` is megabits elsewhere; limits here are in bytes.
                Some((name, _)) => (
                    format!("has an unknown unit {unit:?}"),
                    format!("did you mean {name}/s (bytes)? "),
                ),
                None if unit.is_empty() => ("has no unit".to_owned(), String::new()),
                None => (format!("has an unknown unit {unit:?}"), String::new()),
            };
            return fail(&problem, &format!("{hint}{FIX}"));
        };
        let Some(number) = decimal(number) else {
            return fail("is not a bandwidth", FIX);
        };
        // u64 → f64 is exact for every unit above.
        let per_second = number * bytes as f64;
        if per_second < 1.0 {
            let problem = if number == 0.0 {
                "must be more than zero"
            } else {
                "is less than one byte per second"
            };
            return fail(
                problem,
                "use e.g. 10MB/s, or remove per_ip_bandwidth for no bandwidth limit",
            );
        }
        if per_second > MAX_BANDWIDTH {
            return fail("is out of range", "use at most 1000GB/s");
        }
        // In 1..=1e12, so the conversion is exact to the byte.
        Ok(per_second.round() as u64)
    }
}

/// A plain non-negative decimal (`50`, `0.5`): no sign, exponent, `inf` or
/// `nan`, so what is accepted is exactly what a reader would expect.
pub(in crate::config) fn decimal(text: &str) -> Option<f64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let well_formed = !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.bytes().all(|b| b.is_ascii_digit())
        && !(text.contains('.') && fraction.is_empty());
    well_formed.then(|| text.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::super::testing::read;
    use super::*;

    #[test]
    fn connection_rates_are_per_second() {
        let rate = |yaml: &str| read(&ConnectionRate, yaml);
        assert_eq!(rate("50/s"), Ok(50.0));
        assert_eq!(rate("'2.5/s'"), Ok(2.5));
        assert_eq!(rate("30/m"), Ok(0.5));
        assert_eq!(rate("1/m"), Ok(1.0 / 60.0));
        assert_eq!(rate("' 6 / m '"), Ok(0.1));
        assert_eq!(rate("1000000/s"), Ok(1_000_000.0));
        for (bad, problem) in [
            ("50", "is a number without a unit"),
            ("'50'", "is a number without a unit"),
            ("0/s", "must be more than zero"),
            ("0.0/m", "must be more than zero"),
            ("1000001/s", "is out of range"),
            ("1e3/s", "is not a rate"),
            ("-5/s", "is not a rate"),
            ("inf/s", "is not a rate"),
            ("NaN/s", "is not a rate"),
            ("/s", "is not a rate"),
            ("fast", "is not a rate"),
            ("5/h", r#"has an unknown unit "/h""#),
            ("5/sec", r#"has an unknown unit "/sec""#),
            ("[5]", "is a list, not a rate"),
        ] {
            let shown = rate(bad).unwrap_err();
            assert!(shown.contains(problem), "{bad}: {shown}");
        }
        assert_eq!(
            rate("50").unwrap_err(),
            r#""50" is a number without a unit: add /s or /m, e.g. 50/s (per second) or 50/m (per minute)"#
        );
    }

    #[test]
    fn request_rates_say_requests() {
        let rate = |yaml: &str| read(&RequestRate, yaml);
        assert_eq!(rate("100/s"), Ok(100.0));
        assert_eq!(rate("600/m"), Ok(10.0));
        assert_eq!(
            rate("fast").unwrap_err(),
            r#""fast" is not a rate: write requests per second or per minute, e.g. 50/s or 30/m"#
        );
        assert!(rate("0/s").unwrap_err().contains("remove rate_limit"));
    }

    #[test]
    fn bandwidths_are_bytes_per_second() {
        let bytes = |yaml: &str| read(&Bandwidth, yaml);
        assert_eq!(bytes("10MB/s"), Ok(10_000_000));
        assert_eq!(bytes("1B/s"), Ok(1));
        assert_eq!(bytes("1.5KB/s"), Ok(1500));
        assert_eq!(bytes("1kB/s"), Ok(1000));
        assert_eq!(bytes("2KiB/s"), Ok(2048));
        assert_eq!(bytes("1MiB/s"), Ok(1 << 20));
        assert_eq!(bytes("1.5GiB/s"), Ok(3 << 29));
        assert_eq!(bytes("'10 MB/s'"), Ok(10_000_000));
        assert_eq!(bytes("1000GB/s"), Ok(1_000_000_000_000));
        for (bad, problem) in [
            ("1000", "is a number without a unit"),
            ("10MB", "is not a rate per second"),
            ("10MB/m", "is not a rate per second"),
            ("10/s", "has no unit"),
            ("10Mb/s", "did you mean MB/s (bytes)?"),
            ("10mib/s", "did you mean MiB/s (bytes)?"),
            ("10TB/s", r#"has an unknown unit "TB""#),
            ("0MB/s", "must be more than zero"),
            ("0.1B/s", "is less than one byte per second"),
            ("1001GB/s", "is out of range"),
            ("1e3B/s", r#"has an unknown unit "e3B""#),
            ("MB/s", "is not a bandwidth"),
            ("1..5MB/s", "is not a bandwidth"),
            ("{a: 1}", "is a mapping, not a bandwidth"),
        ] {
            let shown = bytes(bad).unwrap_err();
            assert!(shown.contains(problem), "{bad}: {shown}");
        }
    }

    #[test]
    fn plain_decimals_only() {
        assert_eq!(decimal("50"), Some(50.0));
        assert_eq!(decimal("0.25"), Some(0.25));
        assert_eq!(decimal("007"), Some(7.0));
        for odd in [
            "", ".5", "5.", "-1", "+1", "1e3", "inf", "NaN", "1.2.3", " 1",
        ] {
            assert_eq!(decimal(odd), None, "{odd}");
        }
    }
}
