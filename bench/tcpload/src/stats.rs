//! Counters, latency histograms and the JSON they are reported as.
//!
//! Every mode ends by printing exactly one JSON object on stdout for
//! bench.py to parse. The values are only numbers and fixed keys, so a tiny
//! writer here does the job without pulling in serde.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, Result};
use hdrhistogram::Histogram;

use crate::sys::ErrorKind;

/// Largest latency the histograms track: one hour in microseconds. Larger
/// values saturate to it.
const MAX_US: u64 = 3_600_000_000;

/// Latency histogram in microseconds, 3 significant figures.
pub struct Latency(Histogram<u64>);

impl Latency {
    pub fn new() -> Result<Self> {
        let h = Histogram::new_with_bounds(1, MAX_US, 3).context("creating latency histogram")?;
        Ok(Latency(h))
    }

    pub fn record(&mut self, d: Duration) {
        let us = d.as_micros().min(MAX_US as u128) as u64;
        self.0.saturating_record(us.max(1));
    }

    pub fn merge(&mut self, other: &Latency) -> Result<()> {
        self.0.add(&other.0).context("merging latency histograms")
    }

    /// `{"p50":..,"p90":..,"p99":..,"p999":..,"max":..,"mean":..}`, all in
    /// microseconds; zeros when nothing was recorded.
    pub fn json(&self) -> String {
        let h = &self.0;
        if h.is_empty() {
            return r#"{"p50":0,"p90":0,"p99":0,"p999":0,"max":0,"mean":0}"#.to_string();
        }
        format!(
            r#"{{"p50":{},"p90":{},"p99":{},"p999":{},"max":{},"mean":{:.1}}}"#,
            h.value_at_quantile(0.50),
            h.value_at_quantile(0.90),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max(),
            h.mean()
        )
    }
}

/// Failed connections or round trips, by [`ErrorKind`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Errors {
    pub connect: u64,
    pub timeout: u64,
    pub reset: u64,
    pub short: u64,
}

impl Errors {
    pub fn count(&mut self, kind: ErrorKind) {
        match kind {
            ErrorKind::Connect => self.connect += 1,
            ErrorKind::Timeout => self.timeout += 1,
            ErrorKind::Reset => self.reset += 1,
            ErrorKind::Short => self.short += 1,
        }
    }

    pub fn merge(&mut self, o: &Errors) {
        self.connect += o.connect;
        self.timeout += o.timeout;
        self.reset += o.reset;
        self.short += o.short;
    }

    pub fn total(&self) -> u64 {
        self.connect + self.timeout + self.reset + self.short
    }

    pub fn json(&self) -> String {
        format!(
            r#"{{"connect":{},"timeout":{},"reset":{},"short":{}}}"#,
            self.connect, self.timeout, self.reset, self.short
        )
    }
}

/// The figures of several load threads merged: their errors and latencies
/// together, and the run's length (its longest thread's), in seconds.
pub struct Totals {
    pub errors: Errors,
    pub lat: Latency,
    pub secs: f64,
}

impl Totals {
    pub fn new() -> Result<Self> {
        Ok(Totals {
            errors: Errors::default(),
            lat: Latency::new()?,
            secs: 0.0,
        })
    }

    /// Adds one thread's figures.
    pub fn add(&mut self, errors: &Errors, lat: &Latency, elapsed: Duration) -> Result<()> {
        self.errors.merge(errors);
        self.lat.merge(lat)?;
        self.secs = self.secs.max(elapsed.as_secs_f64());
        Ok(())
    }
}

/// Builds a flat JSON object from already-encoded values.
#[derive(Default)]
pub struct JsonObject(String);

impl JsonObject {
    pub fn new() -> Self {
        JsonObject(String::from("{"))
    }

    fn key(&mut self, k: &str) {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        // Keys are fixed identifiers in this program; no escaping needed.
        let _ = write!(self.0, "\"{k}\":");
    }

    pub fn str(mut self, k: &str, v: &str) -> Self {
        self.key(k);
        self.0.push('"');
        for c in v.chars() {
            match c {
                '"' => self.0.push_str("\\\""),
                '\\' => self.0.push_str("\\\\"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(self.0, "\\u{:04x}", c as u32);
                }
                c => self.0.push(c),
            }
        }
        self.0.push('"');
        self
    }

    pub fn int(mut self, k: &str, v: u64) -> Self {
        self.key(k);
        let _ = write!(self.0, "{v}");
        self
    }

    pub fn float(mut self, k: &str, v: f64) -> Self {
        self.key(k);
        if v.is_finite() {
            let _ = write!(self.0, "{v:.3}");
        } else {
            self.0.push('0');
        }
        self
    }

    /// `v` must already be valid JSON.
    pub fn raw(mut self, k: &str, v: &str) -> Self {
        self.key(k);
        self.0.push_str(v);
        self
    }

    pub fn finish(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

/// Prints one line on stdout and flushes it, so a parent reading our
/// stdout line by line sees it at once.
pub fn emit(line: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").context("writing to stdout")?;
    out.flush().context("flushing stdout")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_object_shapes() {
        let j = JsonObject::new()
            .str("mode", "a\"b")
            .int("n", 3)
            .float("r", 1.5)
            .raw("e", &Errors::default().json())
            .finish();
        assert_eq!(
            j,
            r#"{"mode":"a\"b","n":3,"r":1.500,"e":{"connect":0,"timeout":0,"reset":0,"short":0}}"#
        );
    }

    #[test]
    fn latency_percentiles() {
        let mut l = Latency::new().unwrap();
        assert!(l.json().contains("\"p50\":0"));
        for us in 1..=1000u64 {
            l.record(Duration::from_micros(us));
        }
        let mut other = Latency::new().unwrap();
        other.record(Duration::from_secs(2));
        l.merge(&other).unwrap();
        assert_eq!(l.0.len(), 1001);
        // 1001 values: the median is the 501st; 3 significant figures.
        assert_eq!(l.0.value_at_quantile(0.5), 501);
        assert!(l.0.max().abs_diff(2_000_000) <= 2_000, "{}", l.json());
        assert!(
            l.json().starts_with(r#"{"p50":501,"p90":901,"#),
            "{}",
            l.json()
        );
    }
}
