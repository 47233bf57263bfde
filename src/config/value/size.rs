//! Sizes in bytes: `32KiB`, `10MiB`, `1.5MB`, or a plain whole number of
//! bytes (`65536`). SI units are powers of 1000, IEC ones of 1024, as for
//! bandwidths; a unit is matched exactly (`mb` is refused, not guessed).

use std::ops::RangeInclusive;

use serde_yaml::Value;

use super::count::whole_number;
use super::rate::decimal;
use super::{Bad, Kind};

/// Units of sizes (and of bandwidths, per second), in bytes.
pub(in crate::config) const UNITS: [(&str, u64); 8] = [
    ("B", 1),
    ("KB", 1000),
    ("kB", 1000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
];

/// A size within `range` bytes.
#[derive(Debug, Clone)]
pub(in crate::config) struct Size {
    pub range: RangeInclusive<u64>,
}

impl Size {
    /// How to write a size in range: `use from 1KiB to 1MiB`.
    pub(in crate::config) fn range_fix(&self) -> String {
        format!(
            "use from {} to {}",
            format(*self.range.start()),
            format(*self.range.end())
        )
    }
}

const FIX: &str = "write bytes with a unit, e.g. 32KiB or 10MiB (units: B, KB, MB, GB, KiB, MiB, GiB), or a whole number of bytes";

impl Kind for Size {
    type Out = u64;

    fn read(&self, value: &Value) -> Result<u64, Bad> {
        let bytes = match value {
            Value::Number(_) => match whole_number(value) {
                Ok(n) => n,
                Err(_) => return Err(Bad::at(value, "is not a whole number of bytes", FIX)),
            },
            Value::String(text) => {
                parse(text.trim()).map_err(|(problem, fix)| Bad::new(Some(text), problem, fix))?
            }
            other => return Err(Bad::not_a(other, "a size", FIX)),
        };
        match u64::try_from(bytes) {
            Ok(n) if self.range.contains(&n) => Ok(n),
            _ => Err(Bad::at(value, "is out of range", self.range_fix())),
        }
    }
}

/// `32KiB` → 32768; a bare `65536` is bytes. Fails with (problem, fix).
fn parse(text: &str) -> Result<i128, (String, String)> {
    if let Ok(n) = whole_number(&Value::from(text)) {
        return Ok(n);
    }
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit = unit.trim();
    if unit.is_empty() {
        return Err(("is not a whole number of bytes".to_owned(), FIX.to_owned()));
    }
    let Some(&(_, bytes)) = UNITS.iter().find(|(name, _)| *name == unit) else {
        let hint = match UNITS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(unit))
        {
            Some((name, _)) => format!("did you mean {name}? "),
            None => String::new(),
        };
        let problem = if number.is_empty() {
            "is not a size".to_owned()
        } else {
            format!("has an unknown unit {unit:?}")
        };
        return Err((problem, format!("{hint}{FIX}")));
    };
    let Some(number) = decimal(number) else {
        return Err(("is not a size".to_owned(), FIX.to_owned()));
    };
    // Far above every bound, so rounding here never lets a size through.
    let total = number * bytes as f64;
    if total > 1e18 {
        return Ok(i128::MAX);
    }
    Ok(total.round() as i128)
}

/// As a config would write it: the largest IEC unit that divides it.
pub(in crate::config) fn format(bytes: u64) -> String {
    for (name, unit) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return format!("{}{name}", bytes / unit);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::super::testing::read;
    use super::*;

    #[test]
    fn sizes_take_units_or_plain_bytes() {
        let size = Size {
            range: 0..=u64::from(u32::MAX),
        };
        assert_eq!(read(&size, "32KiB"), Ok(32 * 1024));
        assert_eq!(read(&size, "10MiB"), Ok(10 << 20));
        assert_eq!(read(&size, "1.5MB"), Ok(1_500_000));
        assert_eq!(read(&size, "'2 GiB'"), Ok(2 << 30));
        assert_eq!(read(&size, "65536"), Ok(65536));
        assert_eq!(read(&size, "'100'"), Ok(100));
        assert_eq!(read(&size, "0"), Ok(0));
        assert_eq!(read(&size, "512B"), Ok(512));
    }

    #[test]
    fn bad_sizes_say_why() {
        let size = Size {
            range: 1024..=(1 << 20),
        };
        assert_eq!(
            read(&size, "10mib"),
            Err(r#""10mib" has an unknown unit "mib": did you mean MiB? write bytes with a unit, e.g. 32KiB or 10MiB (units: B, KB, MB, GB, KiB, MiB, GiB), or a whole number of bytes"#.into())
        );
        assert_eq!(
            read(&size, "2MiB"),
            Err(r#""2MiB" is out of range: use from 1KiB to 1MiB"#.into())
        );
        assert_eq!(
            read(&size, "-1"),
            Err(r#""-1" is out of range: use from 1KiB to 1MiB"#.into())
        );
        assert!(read(&size, "1.5")
            .unwrap_err()
            .starts_with(r#""1.5" is not a whole number of bytes"#));
        assert!(read(&size, "lots")
            .unwrap_err()
            .starts_with(r#""lots" is not a size"#));
        assert!(read(&size, "[1]")
            .unwrap_err()
            .starts_with("is a list, not a size"));
        assert_eq!(
            read(&size, "99999999999GiB"),
            Err(r#""99999999999GiB" is out of range: use from 1KiB to 1MiB"#.into())
        );
    }

    #[test]
    fn sizes_format_in_the_largest_unit_that_fits() {
        assert_eq!(format(32 * 1024), "32KiB");
        assert_eq!(format(10 << 20), "10MiB");
        assert_eq!(format(1 << 30), "1GiB");
        assert_eq!(format(1000), "1000");
        assert_eq!(format(0), "0");
    }
}
