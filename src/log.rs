//! Structured logging to stderr, as text (`ts level msg key=value ...`) or one
//! JSON object per line. Deliberately tiny: the data plane logs only rare
//! events (errors, throttled warnings), never per connection.

use std::fmt::{Display, Write as _};
use std::io::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Level {
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);
static FORMAT: AtomicU8 = AtomicU8::new(0);

pub fn init(level: Level, format: Format) {
    LEVEL.store(level as u8, Ordering::Relaxed);
    FORMAT.store(matches!(format, Format::Json) as u8, Ordering::Relaxed);
}

pub fn enabled(level: Level) -> bool {
    level as u8 <= LEVEL.load(Ordering::Relaxed)
}

pub type Field<'a> = (&'a str, &'a dyn Display);

/// Appends `s` as a JSON string literal (quoted and escaped).
pub fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The current time as an RFC 3339 UTC timestamp with milliseconds, without
/// a date library.
fn timestamp() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(d.as_millis() as u64)
}

/// Formats Unix epoch milliseconds as an RFC 3339 UTC timestamp.
pub fn rfc3339(unix_ms: u64) -> String {
    let d = std::time::Duration::from_millis(unix_ms);
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

pub fn emit(level: Level, msg: &str, fields: &[Field<'_>]) {
    if !enabled(level) {
        return;
    }
    let lvl = match level {
        Level::Error => "error",
        Level::Warn => "warn",
        Level::Info => "info",
        Level::Debug => "debug",
    };
    let mut line = String::with_capacity(128);
    if FORMAT.load(Ordering::Relaxed) == 1 {
        line.push_str("{\"ts\":\"");
        line.push_str(&timestamp());
        let _ = write!(line, "\",\"level\":\"{lvl}\",\"msg\":");
        json_str(&mut line, msg);
        for (k, v) in fields {
            line.push(',');
            json_str(&mut line, k);
            line.push(':');
            json_str(&mut line, &v.to_string());
        }
        line.push('}');
    } else {
        let _ = write!(line, "{} {lvl:<5} {msg}", timestamp());
        for (k, v) in fields {
            let v = v.to_string();
            if v.is_empty() || v.contains([' ', '"', '=']) {
                let _ = write!(line, " {k}={v:?}");
            } else {
                let _ = write!(line, " {k}={v}");
            }
        }
    }
    line.push('\n');
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

pub fn error(msg: &str, fields: &[Field<'_>]) {
    emit(Level::Error, msg, fields)
}
pub fn warn(msg: &str, fields: &[Field<'_>]) {
    emit(Level::Warn, msg, fields)
}
pub fn info(msg: &str, fields: &[Field<'_>]) {
    emit(Level::Info, msg, fields)
}
pub fn debug(msg: &str, fields: &[Field<'_>]) {
    emit(Level::Debug, msg, fields)
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamp_is_rfc3339() {
        let ts = super::timestamp();
        assert_eq!(ts.len(), 24, "{ts}");
        assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{ts}");
    }
}
