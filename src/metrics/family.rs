//! The Prometheus text exposition, written one family at a time: `# HELP`
//! and `# TYPE` once, then the family's samples, each given as label values
//! in the order its [`Metric`] declares the keys (checked at compile time by
//! the array length). Escaping and number formatting happen here and nowhere
//! else, so every family is well formed the same way.
//!
//! It knows nothing of spliced's counters or snapshot: `render` decides what
//! to say, this decides how it is spelt. It must never be handed a label
//! value that comes from traffic (see `names`).

use std::fmt::{Display, Write};

use super::names::{Kind, Metric};

/// A text exposition being written.
pub struct Exposition {
    out: String,
}

impl Exposition {
    pub fn new() -> Exposition {
        // WHY 8 KiB: a small config's whole exposition, so a scrape usually
        // allocates once; larger ones grow as a String does.
        Exposition {
            out: String::with_capacity(8192),
        }
    }

    /// Starts a counter or gauge family: writes its `# HELP` and `# TYPE`.
    /// A family that then gets no sample keeps its header: the metric exists,
    /// with nothing to count yet.
    pub fn family<const L: usize>(&mut self, metric: &Metric<L>) -> Family<'_, L> {
        assert!(
            metric.kind != Kind::Histogram,
            "{} is a histogram: start it with Exposition::histogram",
            metric.name
        );
        self.header(metric);
        Family {
            out: &mut self.out,
            name: metric.name,
            labels: metric.labels,
        }
    }

    /// Starts a histogram family: writes its `# HELP` and `# TYPE`.
    pub fn histogram<const L: usize>(&mut self, metric: &Metric<L>) -> HistogramFamily<'_, L> {
        assert!(
            metric.kind == Kind::Histogram,
            "{} is not a histogram: start it with Exposition::family",
            metric.name
        );
        self.header(metric);
        HistogramFamily {
            out: &mut self.out,
            name: metric.name,
            labels: metric.labels,
        }
    }

    pub fn finish(self) -> String {
        self.out
    }

    fn header<const L: usize>(&mut self, metric: &Metric<L>) {
        self.out.push_str("# HELP ");
        self.out.push_str(metric.name);
        self.out.push(' ');
        escape(&mut self.out, metric.help, false);
        self.out.push_str("\n# TYPE ");
        self.out.push_str(metric.name);
        self.out.push(' ');
        self.out.push_str(metric.kind.as_str());
        self.out.push('\n');
    }
}

/// The samples of one counter or gauge family.
pub struct Family<'a, const L: usize> {
    out: &'a mut String,
    name: &'static str,
    labels: [&'static str; L],
}

impl<const L: usize> Family<'_, L> {
    /// One sample: `values[i]` is the value of the family's `labels[i]`.
    pub fn sample(&mut self, values: [&str; L], value: impl Display) {
        self.out.push_str(self.name);
        label_set(self.out, &self.labels, &values, None);
        put(self.out, format_args!(" {value}\n"));
    }
}

/// The series of one histogram family.
pub struct HistogramFamily<'a, const L: usize> {
    out: &'a mut String,
    name: &'static str,
    labels: [&'static str; L],
}

impl<const L: usize> HistogramFamily<'_, L> {
    /// One histogram: `buckets` gives each finite upper bound (in the
    /// family's unit) with the observations in that bucket alone, lowest
    /// first; they are written cumulative, followed by `le="+Inf"` (which is
    /// `count`), `_sum` and `_count`.
    pub fn series(
        &mut self,
        values: [&str; L],
        buckets: impl IntoIterator<Item = (f64, u64)>,
        sum: f64,
        count: u64,
    ) {
        let mut cumulative = 0;
        for (bound, n) in buckets {
            cumulative += n;
            self.bucket(&values, bound, cumulative);
        }
        self.bucket(&values, f64::INFINITY, count);
        self.suffixed("_sum", &values, sum);
        self.suffixed("_count", &values, count);
    }

    fn bucket(&mut self, values: &[&str; L], bound: f64, cumulative: u64) {
        self.out.push_str(self.name);
        self.out.push_str("_bucket");
        label_set(self.out, &self.labels, values, Some(bound));
        put(self.out, format_args!(" {cumulative}\n"));
    }

    fn suffixed(&mut self, suffix: &str, values: &[&str; L], value: impl Display) {
        self.out.push_str(self.name);
        self.out.push_str(suffix);
        label_set(self.out, &self.labels, values, None);
        put(self.out, format_args!(" {value}\n"));
    }
}

/// `{key="value",...}`, with a histogram bucket's `le` last; nothing at all
/// for a sample without labels.
fn label_set(out: &mut String, keys: &[&str], values: &[&str], le: Option<f64>) {
    if keys.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    for (i, (key, value)) in keys.iter().zip(values).enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(key);
        out.push_str("=\"");
        escape(out, value, true);
        out.push('"');
    }
    if let Some(bound) = le {
        if !keys.is_empty() {
            out.push(',');
        }
        if bound == f64::INFINITY {
            out.push_str("le=\"+Inf\"");
        } else {
            put(out, format_args!("le=\"{bound}\""));
        }
    }
    out.push('}');
}

/// Escapes per the text format: backslash and newline always, the double
/// quote inside a label value (a help text keeps it as is).
fn escape(out: &mut String, text: &str, label_value: bool) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if label_value => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

fn put(out: &mut String, args: std::fmt::Arguments<'_>) {
    // WHY ignore the result: String's fmt::Write never fails.
    let _ = out.write_fmt(args);
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: Metric<0> = Metric {
        name: "t_plain",
        kind: Kind::Gauge,
        help: "A gauge.",
        labels: [],
    };
    const LABELLED: Metric<2> = Metric {
        name: "t_things_total",
        kind: Kind::Counter,
        help: "Things, by \"kind\"\nand a \\ path.",
        labels: ["kind", "path"],
    };
    const TIMES: Metric<1> = Metric {
        name: "t_seconds",
        kind: Kind::Histogram,
        help: "Times.",
        labels: ["op"],
    };
    const ALL_TIMES: Metric<0> = Metric {
        name: "t_seconds",
        kind: Kind::Histogram,
        help: "Times.",
        labels: [],
    };

    #[test]
    fn a_family_writes_its_header_once_then_each_sample_with_values_in_declared_order() {
        let mut e = Exposition::new();
        e.family(&PLAIN).sample([], 7);
        let mut f = e.family(&LABELLED);
        f.sample(["a", "/x"], 1);
        f.sample(["b", "/y"], 2u8);
        assert_eq!(
            e.finish(),
            "# HELP t_plain A gauge.\n\
             # TYPE t_plain gauge\n\
             t_plain 7\n\
             # HELP t_things_total Things, by \"kind\"\\nand a \\\\ path.\n\
             # TYPE t_things_total counter\n\
             t_things_total{kind=\"a\",path=\"/x\"} 1\n\
             t_things_total{kind=\"b\",path=\"/y\"} 2\n"
        );
    }

    #[test]
    fn label_values_escape_backslash_quote_and_newline() {
        let mut e = Exposition::new();
        e.family(&LABELLED)
            .sample(["q\"uote", "back\\slash\nnewline"], 0);
        let text = e.finish();
        assert_eq!(
            text.lines().nth(2),
            Some(r#"t_things_total{kind="q\"uote",path="back\\slash\nnewline"} 0"#)
        );
    }

    #[test]
    fn a_family_without_samples_keeps_its_header() {
        let mut e = Exposition::new();
        e.family(&LABELLED);
        assert_eq!(e.finish().lines().count(), 2);
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_with_inf_sum_and_count() {
        let mut e = Exposition::new();
        e.histogram(&TIMES)
            .series(["read"], [(0.0005, 2), (1.0, 0), (2.5, 3)], 4.25, 6);
        let text = e.finish();
        let samples: Vec<&str> = text.lines().skip(2).collect();
        assert_eq!(
            samples,
            [
                r#"t_seconds_bucket{op="read",le="0.0005"} 2"#,
                r#"t_seconds_bucket{op="read",le="1"} 2"#,
                r#"t_seconds_bucket{op="read",le="2.5"} 5"#,
                r#"t_seconds_bucket{op="read",le="+Inf"} 6"#,
                r#"t_seconds_sum{op="read"} 4.25"#,
                r#"t_seconds_count{op="read"} 6"#,
            ]
        );
    }

    #[test]
    fn an_unlabelled_histogram_has_only_le_on_its_buckets() {
        let mut e = Exposition::new();
        e.histogram(&ALL_TIMES).series([], [(1.0, 1)], 0.5, 1);
        let text = e.finish();
        assert!(text.contains("\nt_seconds_bucket{le=\"1\"} 1\n"), "{text}");
        assert!(
            text.contains("\nt_seconds_sum 0.5\nt_seconds_count 1\n"),
            "{text}"
        );
    }

    #[test]
    #[should_panic(expected = "is a histogram")]
    fn a_histogram_cannot_be_written_as_plain_samples() {
        Exposition::new().family(&TIMES);
    }

    #[test]
    #[should_panic(expected = "is not a histogram")]
    fn a_counter_cannot_be_written_as_a_histogram() {
        Exposition::new().histogram(&LABELLED);
    }
}
