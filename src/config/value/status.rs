//! HTTP status codes a health check accepts: `200`, `"200-399"`, or a list
//! of those. Codes are 100 to 599; "2xx" is answered with how to write it.

use std::ops::RangeInclusive;

use serde_yaml::Value;

use super::count::whole_number;
use super::{items_of, Bad};
use crate::config::raw::{kind, scalar_text};

const STATUS_FIX: &str =
    "use a status code from 100 to 599, a range such as 200-399, or a list of them, e.g. [200, 204, \"300-302\"]";

/// `expect_status`: one code or range, or a list of them.
pub(in crate::config) fn expect_status(value: &Value) -> Result<Vec<RangeInclusive<u16>>, Bad> {
    match value {
        Value::Sequence(items) if items.is_empty() => {
            Err(Bad::new(None, "is an empty list", STATUS_FIX))
        }
        Value::Sequence(items) => items_of(items, &range),
        value => range(value).map(|range| vec![range]),
    }
}

/// One code (`204`) or range (`"200-399"`).
fn range(value: &Value) -> Result<RangeInclusive<u16>, Bad> {
    let shown = scalar_text(value);
    let fail = |problem: &str, fix: &str| Err(Bad::new(shown.as_deref(), problem, fix));
    let (low, high) = match value {
        Value::Number(_) => match whole_number(value) {
            Ok(code) => (code, code),
            Err(_) => return fail("is not a status code", STATUS_FIX),
        },
        Value::String(text) => {
            let text = text.trim();
            // "2xx" is how people say it; say how to write it here.
            if let [class @ b'1'..=b'5', b'x' | b'X', b'x' | b'X'] = text.as_bytes() {
                let class = i128::from(class - b'0') * 100;
                return fail(
                    "is not a status code",
                    &format!("write the range as \"{class}-{}\"", class + 99),
                );
            }
            let code = |part: &str| {
                let part = part.trim();
                (!part.is_empty() && part.len() <= 3 && part.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| part.parse::<i128>().ok())
                    .flatten()
            };
            let parsed = match text.split_once('-') {
                None => code(text).map(|c| (c, c)),
                Some((low, high)) => code(low).zip(code(high)),
            };
            match parsed {
                Some(parsed) => parsed,
                None => return fail("is not a status code or range", STATUS_FIX),
            }
        }
        other => {
            return fail(
                &format!("is {}, not a status code", kind(other)),
                STATUS_FIX,
            )
        }
    };
    let valid = 100..=599;
    if !valid.contains(&low) || !valid.contains(&high) {
        return fail("is out of range (status codes are 100 to 599)", STATUS_FIX);
    }
    if low > high {
        return fail(
            "is a backwards range",
            &format!("write the lower code first: \"{high}-{low}\""),
        );
    }
    // Both are in 100..=599, so they fit in u16.
    match (u16::try_from(low), u16::try_from(high)) {
        (Ok(low), Ok(high)) => Ok(low..=high),
        _ => fail("is out of range (status codes are 100 to 599)", STATUS_FIX),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::read;
    use super::*;

    #[test]
    fn status_codes_and_ranges() {
        let one = |yaml: &str| read(&range, yaml);
        assert_eq!(one("200"), Ok(200..=200));
        assert_eq!(one("'404'"), Ok(404..=404));
        assert_eq!(one("200-399"), Ok(200..=399));
        assert_eq!(one("' 300 -302 '"), Ok(300..=302));
        assert_eq!(one("100-599"), Ok(100..=599));
        for bad in [
            "99",
            "600",
            "0200-0399",
            "-200",
            "200-",
            "2-3-4",
            "200.0",
            "ok",
            "~",
            "{a: 1}",
        ] {
            assert!(one(bad).is_err(), "{bad}");
        }
        assert!(one("5XX")
            .unwrap_err()
            .contains(r#"write the range as "500-599""#));
        assert!(one("300-200").unwrap_err().contains("is a backwards range"));
    }

    #[test]
    fn a_status_list_reports_each_bad_item() {
        assert_eq!(
            read(&expect_status, "[200, 204, '300-302']"),
            Ok(vec![200..=200, 204..=204, 300..=302])
        );
        assert_eq!(read(&expect_status, "'200 - 299'"), Ok(vec![200..=299]));
        assert_eq!(
            read(&expect_status, "[]"),
            Err(format!("is an empty list: {STATUS_FIX}"))
        );
        let shown = read(&expect_status, "[2xx, 200, true]").unwrap_err();
        assert_eq!(shown.lines().count(), 2, "{shown}");
        assert!(shown.starts_with(r#"[0]: "2xx" is not a status code"#));
    }
}
