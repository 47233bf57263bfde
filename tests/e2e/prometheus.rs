//! The observability contract checked with real Prometheus tooling: the alert
//! rules, their unit tests and the example config pass `promtool`; `/metrics`
//! after real traffic passes `promtool check metrics`, has every name of
//! DESIGN.md §3 and counts exactly what the clients did; the Grafana dashboard
//! and the alerts only use metrics spliced exports; and a real `prometheus`
//! server scrapes spliced and answers queries about it.
//!
//! promtool and prometheus come from Debian's `prometheus` package
//! (`scripts/install-prometheus.sh`). Without them these tests print a SKIPPED
//! line and pass, unless SPLICED_REQUIRE_PROMETHEUS is set (scripts/test.sh
//! sets it), when a missing tool is a failure.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const ALERTS: &str = "conf/prometheus/alerts.yml";
const ALERT_TESTS: &str = "conf/prometheus/alerts.test.yml";
const PROMETHEUS_CONFIG: &str = "conf/prometheus/prometheus.yml";
const DASHBOARD: &str = "conf/grafana/spliced-dashboard.json";

/// The metrics DESIGN.md §3 promises, with their type and exact label names;
/// and its histogram, `spliced_connect_duration_seconds`.
const DESIGN_METRICS: &[(&str, &str, &[&str])] = &[
    (
        "spliced_connections_total",
        "counter",
        &["listener", "pool", "backend"],
    ),
    (
        "spliced_active_connections",
        "gauge",
        &["listener", "pool", "backend"],
    ),
    (
        "spliced_bytes_total",
        "counter",
        &["listener", "pool", "backend", "direction"],
    ),
    ("spliced_backend_up", "gauge", &["pool", "backend"]),
    (
        "spliced_connect_errors_total",
        "counter",
        &["pool", "backend", "reason"],
    ),
    (
        "spliced_health_checks_total",
        "counter",
        &["pool", "backend", "result"],
    ),
    (
        "spliced_rejected_connections_total",
        "counter",
        &["listener", "reason"],
    ),
    ("spliced_config_reloads_total", "counter", &["result"]),
];
const CONNECT_DURATION: &str = "spliced_connect_duration_seconds";

/// Lines of `promtool check metrics` output judged harmless. None so far: any
/// lint finding (naming, units, missing help) fails the test.
const HARMLESS_LINT: &[&str] = &[];

// ---- tools -----------------------------------------------------------------------

/// `name` on PATH; `None` (after printing why the test is skipped) when it is
/// missing and SPLICED_REQUIRE_PROMETHEUS is not set.
fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        let required = std::env::var("SPLICED_REQUIRE_PROMETHEUS")
            .map(|v| !v.is_empty() && v != "0")
            .unwrap_or(false);
        assert!(
            !required,
            "{name} is not on PATH and SPLICED_REQUIRE_PROMETHEUS is set: run scripts/install-prometheus.sh"
        );
        eprintln!(
            "SKIPPED: {name} not found; run scripts/install-prometheus.sh (Debian's prometheus package) to run this test"
        );
    }
    found
}

/// Runs `program args` in the repository root with `stdin`, killing it after
/// `within`; returns (exit code, stdout + stderr).
fn run(program: &Path, args: &[&str], stdin: &str, within: Duration) -> (Option<i32>, String) {
    let mut command = Command::new(program);
    command.args(args).current_dir(REPO);
    let output = run_command(command, stdin, within);
    (output.code, output.stdout + &output.stderr)
}

fn promtool_ok(promtool: &Path, args: &[&str]) -> String {
    let (code, out) = run(promtool, args, "", WAIT);
    assert_eq!(code, Some(0), "promtool {} failed:\n{out}", args.join(" "));
    out
}

// ---- the exposition format -----------------------------------------------------

struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Every sample line of a text exposition, with its labels parsed.
fn samples(body: &str) -> Vec<Sample> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("sample line has a value");
            let value = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}"));
            let Some((name, rest)) = series.split_once('{') else {
                return Sample {
                    name: series.to_string(),
                    labels: BTreeMap::new(),
                    value,
                };
            };
            let mut labels = BTreeMap::new();
            let mut rest = rest.strip_suffix('}').expect("labels end with }");
            while !rest.is_empty() {
                let (key, after) = rest.split_once("=\"").expect("label=\"value\"");
                let mut val = String::new();
                let mut chars = after.char_indices();
                let end = loop {
                    match chars.next().expect("closing quote") {
                        (i, '"') => break i,
                        (_, '\\') => match chars.next().expect("escape").1 {
                            'n' => val.push('\n'),
                            c => val.push(c),
                        },
                        (_, c) => val.push(c),
                    }
                };
                labels.insert(key.to_string(), val);
                rest = after[end + 1..].trim_start_matches(',');
            }
            Sample {
                name: name.to_string(),
                labels,
                value,
            }
        })
        .collect()
}

/// `# TYPE` of every metric family: name → kind.
fn types(body: &str) -> HashMap<String, String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(n, k)| (n.to_string(), k.trim().to_string()))
        .collect()
}

/// Whether `name` (as used in a PromQL expression) is something `types` exports:
/// a family itself, or a histogram's (or summary's) series.
fn exported(types: &HashMap<String, String>, name: &str) -> bool {
    if types.contains_key(name) {
        return true;
    }
    let kind_of = |suffix: &str| {
        name.strip_suffix(suffix)
            .and_then(|base| types.get(base))
            .map(String::as_str)
    };
    kind_of("_bucket") == Some("histogram")
        || matches!(kind_of("_sum"), Some("histogram" | "summary"))
        || matches!(kind_of("_count"), Some("histogram" | "summary"))
}

/// Every `spliced_*` metric name in a PromQL expression (identifiers outside
/// quoted strings).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut names = BTreeSet::new();
    let mut chars = expr.char_indices().peekable();
    let mut quote = None;
    while let Some((i, c)) = chars.next() {
        match (quote, c) {
            (Some(_), '\\') => {
                chars.next();
            }
            (Some(q), _) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'' | '`') => quote = Some(c),
            (None, _) if ident(c) => {
                let mut end = i + c.len_utf8();
                while let Some(&(j, d)) = chars.peek() {
                    if !ident(d) {
                        break;
                    }
                    end = j + d.len_utf8();
                    chars.next();
                }
                if expr[i..end].starts_with("spliced_") {
                    names.insert(expr[i..end].to_string());
                }
            }
            (None, _) => {}
        }
    }
    names
}

// ---- traffic ---------------------------------------------------------------------

/// A backend that greets with "<name>\n", then echoes until EOF and closes.
fn tagged_echo(name: &'static str) -> Backend {
    Backend::spawn(move |mut s| {
        if writeln!(s, "{name}").is_err() {
            return; // a health probe that already hung up
        }
        let Ok(mut r) = s.try_clone() else { return };
        let _ = std::io::copy(&mut r, &mut s);
        let _ = s.shutdown(Shutdown::Write);
    })
}

/// One connection through spliced: sends `len` bytes of stream `seed`, reads
/// the greeting and the echo to EOF and checks them. Returns (backend name,
/// bytes sent, bytes received).
fn exchange(addr: SocketAddr, seed: u64, len: usize) -> (String, u64, u64) {
    let s = connect(addr);
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        send_stream(&mut w, seed, len);
        w.shutdown(Shutdown::Write).unwrap();
    });
    let mut got = Vec::with_capacity(len + 16);
    let mut r = s;
    r.read_to_end(&mut got).expect("read through spliced");
    writer.join().unwrap();
    let nl = got.iter().position(|&b| b == b'\n').expect("greeting line");
    let name = String::from_utf8(got[..nl].to_vec()).unwrap();
    let echoed = &got[nl + 1..];
    assert_eq!(echoed.len(), len, "echo length through backend {name}");
    let mut h = Fnv::new();
    h.update(echoed);
    assert_eq!(h.0, stream_hash(seed, len), "echoed bytes differ ({name})");
    (name, len as u64, got.len() as u64)
}

/// What the clients did, per backend name: (connections, bytes sent, bytes received).
type Done = BTreeMap<String, (u64, u64, u64)>;

/// A spliced over three tagged echo backends, admin enabled, every backend
/// up; with an active TCP health check (probed at least once) if `probes`.
struct Setup {
    lb: Spliced,
    /// (name, address) of each backend.
    backends: Vec<(&'static str, SocketAddr)>,
    _keep: Vec<Backend>,
}

fn setup() -> Setup {
    setup_with(true)
}

fn setup_with(probes: bool) -> Setup {
    let names = ["b0", "b1", "b2"];
    let keep: Vec<Backend> = names.iter().map(|&n| tagged_echo(n)).collect();
    let backends: Vec<_> = names
        .iter()
        .copied()
        .zip(keep.iter().map(|b| b.addr))
        .collect();
    let mut config = String::from(
        "workers: 2\nadmin:\n  listen: 127.0.0.1:0\nlisteners:\n  - { name: lb, listen: 127.0.0.1:0, pool: p }\npools:\n  - name: p\n    algorithm: round_robin\n",
    );
    if probes {
        config.push_str(
            "    health_check: { kind: tcp, interval: 200ms, timeout: 150ms, rise: 1, fall: 3 }\n",
        );
    }
    config.push_str("    backends:\n");
    for (_, a) in &backends {
        config.push_str(&format!("      - {a}\n"));
    }
    let lb = Spliced::start(&config);
    // Up, and probed at least once (a backend may count as up before its first probe).
    wait_until("every backend up and probed", || {
        let m = lb.metrics();
        backends.iter().all(|(_, a)| {
            let b = a.to_string();
            sum_metric(&m, "spliced_backend_up", &[("backend", &b)]) == 1.0
                && (!probes
                    || sum_metric(
                        &m,
                        "spliced_health_checks_total",
                        &[("backend", &b), ("result", "ok")],
                    ) >= 1.0)
        })
    });
    Setup {
        lb,
        backends,
        _keep: keep,
    }
}

/// `small` short connections and `bulk` 4 MiB ones (bulk enough to splice).
fn traffic(addr: SocketAddr, small: usize, bulk: usize) -> Done {
    let mut done = Done::new();
    for i in 0..small + bulk {
        let len = if i < small { 1 + i * 97 } else { 4 << 20 };
        let (name, sent, received) = exchange(addr, i as u64 + 1, len);
        let e = done.entry(name).or_default();
        e.0 += 1;
        e.1 += sent;
        e.2 += received;
    }
    done
}

/// The counters the clients' traffic determines, as spliced reports them.
fn observed(s: &Setup, body: &str) -> BTreeMap<String, u64> {
    let m = parse_metrics(body);
    let get = |name: &str, labels: &[(&str, &str)]| sum_metric(&m, name, labels) as u64;
    let mut o = BTreeMap::new();
    for (name, addr) in &s.backends {
        let b = addr.to_string();
        let b = b.as_str();
        o.insert(
            format!("{name} connections"),
            get(
                "spliced_connections_total",
                &[("backend", b), ("listener", "lb"), ("pool", "p")],
            ),
        );
        o.insert(
            format!("{name} bytes client_to_backend"),
            get(
                "spliced_bytes_total",
                &[("backend", b), ("direction", "client_to_backend")],
            ),
        );
        o.insert(
            format!("{name} bytes backend_to_client"),
            get(
                "spliced_bytes_total",
                &[("backend", b), ("direction", "backend_to_client")],
            ),
        );
        o.insert(
            format!("{name} active"),
            get("spliced_active_connections", &[("backend", b)]),
        );
    }
    for dir in ["client_to_backend", "backend_to_client"] {
        o.insert(
            format!("relay bytes {dir}"),
            get("spliced_relay_bytes_total", &[("direction", dir)]),
        );
    }
    o.insert(
        "listener accepted".into(),
        get("spliced_listener_accepted_total", &[("listener", "lb")]),
    );
    o.insert(
        "workers accepted".into(),
        get("spliced_worker_accepted_total", &[]),
    );
    o.insert(
        "listener active".into(),
        get("spliced_listener_active_connections", &[]),
    );
    o.insert(
        "connect errors".into(),
        get("spliced_connect_errors_total", &[]),
    );
    o.insert(
        "rejected".into(),
        get("spliced_rejected_connections_total", &[]),
    );
    o.insert(
        "reload errors".into(),
        get("spliced_config_reloads_total", &[("result", "error")]),
    );
    o
}

fn expected(s: &Setup, done: &Done) -> BTreeMap<String, u64> {
    let mut e = BTreeMap::new();
    let (mut conns, mut sent, mut received) = (0, 0, 0);
    for (name, _) in &s.backends {
        let (c, up, down) = done.get(*name).copied().unwrap_or_default();
        e.insert(format!("{name} connections"), c);
        e.insert(format!("{name} bytes client_to_backend"), up);
        e.insert(format!("{name} bytes backend_to_client"), down);
        e.insert(format!("{name} active"), 0);
        conns += c;
        sent += up;
        received += down;
    }
    e.insert("relay bytes client_to_backend".into(), sent);
    e.insert("relay bytes backend_to_client".into(), received);
    e.insert("listener accepted".into(), conns);
    e.insert("workers accepted".into(), conns);
    e.insert("listener active".into(), 0);
    e.insert("connect errors".into(), 0);
    e.insert("rejected".into(), 0);
    e.insert("reload errors".into(), 0);
    e
}

/// Polls /metrics (bounded by WAIT) until the counters equal what the clients
/// did (spliced may count a completion a moment after the client saw its
/// bytes); returns that /metrics body.
fn metrics_matching(s: &Setup, done: &Done) -> String {
    let want = expected(s, done);
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = s.lb.admin_get("/metrics");
        assert_eq!(status, 200);
        let got = observed(s, &body);
        if got == want {
            return body;
        }
        if Instant::now() >= deadline {
            assert_eq!(
                got, want,
                "counters never matched the traffic; /metrics:\n{body}"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---- tests -----------------------------------------------------------------------

#[test]
fn promtool_accepts_the_alert_rules_their_unit_tests_and_the_example_config() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let out = promtool_ok(&promtool, &["check", "rules", ALERTS]);
    assert!(out.contains("SUCCESS"), "{out}");
    promtool_ok(&promtool, &["test", "rules", ALERT_TESTS]);
    // prometheus.yml loads alerts.yml relative to itself; check it from the
    // repository root and from elsewhere.
    let out = promtool_ok(&promtool, &["check", "config", PROMETHEUS_CONFIG]);
    assert!(out.contains("1 rule files found"), "{out}");
    let abs = Path::new(REPO).join(PROMETHEUS_CONFIG);
    let (code, out) = run(
        &promtool,
        &["check", "config", abs.to_str().unwrap()],
        "",
        WAIT,
    );
    assert_eq!(code, Some(0), "{out}");
}

#[test]
fn every_alert_has_severity_annotations_and_a_unit_test_that_fires_it() {
    let rules: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(Path::new(REPO).join(ALERTS)).unwrap())
            .unwrap();
    let mut alerts = BTreeSet::new();
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let name = rule["alert"]
                .as_str()
                .expect("only alerting rules")
                .to_string();
            let severity = rule["labels"]["severity"].as_str().unwrap_or("");
            assert!(
                ["critical", "warning", "info"].contains(&severity),
                "{name}: severity {severity:?}"
            );
            for a in ["summary", "description"] {
                assert!(
                    rule["annotations"][a]
                        .as_str()
                        .is_some_and(|s| s.len() > 20),
                    "{name}: no {a} annotation"
                );
            }
            alerts.insert(name);
        }
    }
    for required in [
        "SplicedBackendDown",
        "SplicedPoolAllBackendsDown",
        "SplicedConnectErrorRatioHigh",
        "SplicedConfigReloadFailed",
        "SplicedBackendEjected",
        "SplicedRejectingConnections",
        "SplicedPipePoolExhausted",
        "SplicedAcceptResourceErrors",
        "SplicedHttp5xxRatioHigh",
        "SplicedTlsHandshakeFailuresHigh",
        "SplicedCertificateExpiringSoon",
        "SplicedCertificateExpiryCritical",
    ] {
        assert!(alerts.contains(required), "alerts.yml lacks {required}");
    }
    let tests: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(Path::new(REPO).join(ALERT_TESTS)).unwrap())
            .unwrap();
    let mut fired = BTreeSet::new();
    for t in tests["tests"].as_sequence().expect("tests") {
        for a in t["alert_rule_test"].as_sequence().into_iter().flatten() {
            if a["exp_alerts"].as_sequence().is_some_and(|v| !v.is_empty()) {
                fired.insert(a["alertname"].as_str().unwrap().to_string());
            }
        }
    }
    let untested: Vec<_> = alerts.difference(&fired).collect();
    assert!(
        untested.is_empty(),
        "alerts without a unit test that fires them: {untested:?}"
    );
}

#[test]
fn metrics_after_traffic_count_exactly_what_clients_did_and_pass_promtool() {
    let s = setup();
    let done = traffic(s.lb.addr("lb"), 30, 3);
    assert_eq!(done.values().map(|d| d.0).sum::<u64>(), 33);
    assert_eq!(done.len(), 3, "round robin reached every backend: {done:?}");
    let body = metrics_matching(&s, &done);

    // Every name of DESIGN.md §3, with its type and exactly its labels.
    let types = types(&body);
    let samples = samples(&body);
    for (name, kind, labels) in DESIGN_METRICS {
        assert_eq!(
            types.get(*name).map(String::as_str),
            Some(*kind),
            "# TYPE of {name}"
        );
        assert!(
            body.contains(&format!("# HELP {name} ")),
            "no # HELP for {name}"
        );
        let of: Vec<_> = samples.iter().filter(|x| x.name == *name).collect();
        assert!(!of.is_empty(), "{name} has no samples");
        let want: BTreeSet<&str> = labels.iter().copied().collect();
        for x in of {
            let got: BTreeSet<&str> = x.labels.keys().map(String::as_str).collect();
            assert_eq!(got, want, "labels of {name}");
        }
    }
    // The histogram is checked in depth by its own test below.
    assert_eq!(
        types.get(CONNECT_DURATION).map(String::as_str),
        Some("histogram"),
        "# TYPE of {CONNECT_DURATION}"
    );
    let directions: BTreeSet<_> = samples
        .iter()
        .filter(|x| x.name == "spliced_bytes_total")
        .map(|x| x.labels["direction"].as_str())
        .collect();
    assert_eq!(
        directions,
        BTreeSet::from(["backend_to_client", "client_to_backend"])
    );
    for (name, addr) in &s.backends {
        let ok: f64 = samples
            .iter()
            .filter(|x| x.name == "spliced_health_checks_total")
            .filter(|x| x.labels["backend"] == addr.to_string() && x.labels["result"] == "ok")
            .map(|x| x.value)
            .sum();
        assert!(ok >= 1.0, "no successful health check counted for {name}");
    }
    let up: Vec<f64> = samples
        .iter()
        .filter(|x| x.name == "spliced_backend_up")
        .map(|x| x.value)
        .collect();
    assert_eq!(up, vec![1.0; 3], "spliced_backend_up");

    // The whole exposition passes promtool's parser and linter.
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let (code, out) = run(&promtool, &["check", "metrics"], &body, WAIT);
    let findings: Vec<&str> = out
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !HARMLESS_LINT.iter().any(|h| l.contains(h)))
        .collect();
    // Exit 3 means lint findings only; acceptable when all of them are harmless.
    let lint_only = code == Some(3) && !out.trim().is_empty();
    assert!(
        findings.is_empty() && (code == Some(0) || lint_only),
        "promtool check metrics (exit {code:?}) found:\n{}\n\n/metrics was:\n{body}",
        findings.join("\n")
    );
}

#[test]
fn the_connect_duration_histogram_counts_every_connect() {
    // No health check: only the clients' connects can count.
    let s = setup_with(false);
    let done = traffic(s.lb.addr("lb"), 12, 0);
    let connects: u64 = done.values().map(|d| d.0).sum();
    let body = metrics_matching(&s, &done);
    let kind = types(&body).get(CONNECT_DURATION).cloned();
    assert_eq!(
        kind.as_deref(),
        Some("histogram"),
        "DESIGN.md §3 promises the histogram {CONNECT_DURATION}; /metrics has no `# TYPE {CONNECT_DURATION} histogram`"
    );
    // Its count reaches the number of connects made (polled: it may lag).
    let count = |body: &str| -> f64 {
        samples(body)
            .iter()
            .filter(|x| x.name == format!("{CONNECT_DURATION}_count"))
            .map(|x| x.value)
            .sum()
    };
    let mut body = body;
    wait_until("connect duration count == connects", || {
        body = s.lb.admin_get("/metrics").1;
        count(&body) == connects as f64
    });
    // Buckets (summed over any labels) are cumulative and end in +Inf == count.
    let mut buckets: BTreeMap<String, f64> = BTreeMap::new();
    for x in samples(&body)
        .into_iter()
        .filter(|x| x.name == format!("{CONNECT_DURATION}_bucket"))
    {
        *buckets.entry(x.labels["le"].clone()).or_default() += x.value;
    }
    let mut by_le: Vec<(f64, f64)> = buckets
        .iter()
        .map(|(le, v)| (le.parse::<f64>().expect("le is a number or +Inf"), *v))
        .collect();
    by_le.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(by_le.len() >= 2, "histogram buckets: {by_le:?}");
    assert!(
        by_le.windows(2).all(|w| w[0].1 <= w[1].1),
        "buckets not cumulative: {by_le:?}"
    );
    assert_eq!(by_le.last().unwrap(), &(f64::INFINITY, connects as f64));
    let sum: f64 = samples(&body)
        .iter()
        .filter(|x| x.name == format!("{CONNECT_DURATION}_sum"))
        .map(|x| x.value)
        .sum();
    assert!(
        sum > 0.0 && sum < connects as f64 * 2.0,
        "{CONNECT_DURATION}_sum = {sum} for {connects} loopback connects"
    );
}

/// Every PromQL expression of the dashboard (targets, annotations, variable
/// queries), with Grafana's variables left in.
fn dashboard_exprs(dash: &serde_json::Value) -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("expr" | "definition", serde_json::Value::String(s)) => {
                            out.push(s.clone())
                        }
                        ("query", serde_json::Value::String(s)) if s.contains("spliced_") => {
                            out.push(s.clone())
                        }
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(dash, &mut out);
    out
}

fn load_dashboard() -> serde_json::Value {
    let text = std::fs::read_to_string(Path::new(REPO).join(DASHBOARD)).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{DASHBOARD} is not valid JSON: {e}"))
}

#[test]
fn the_grafana_dashboard_is_laid_out_and_templated() {
    let dash = load_dashboard();
    let vars = dash["templating"]["list"].as_array().expect("templating");
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no ${name} variable"))
    };
    assert_eq!(var("DS_PROMETHEUS")["type"], "datasource");
    assert_eq!(var("DS_PROMETHEUS")["query"], "prometheus");
    for name in ["pool", "backend"] {
        let q = var(name)["definition"].as_str().unwrap();
        assert!(
            q.starts_with("label_values(") && q.ends_with(&format!(", {name})")),
            "${name}: {q}"
        );
    }
    assert!(dash["__inputs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["name"] == "DS_PROMETHEUS"));

    let panels = dash["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut rects = Vec::new();
    let mut titles = BTreeSet::new();
    for p in panels {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "duplicate id: {p}");
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_u64().unwrap(),
            g["y"].as_u64().unwrap(),
            g["w"].as_u64().unwrap(),
            g["h"].as_u64().unwrap(),
        );
        assert!(w > 0 && h > 0 && x + w <= 24, "gridPos of {}", p["title"]);
        for (ox, oy, ow, oh, ot) in &rects {
            let apart = x + w <= *ox || ox + ow <= x || y + h <= *oy || oy + oh <= y;
            assert!(apart, "panels {} and {ot} overlap", p["title"]);
        }
        rects.push((x, y, w, h, p["title"].clone()));
        titles.insert(p["title"].as_str().unwrap().to_lowercase());
        if p["type"] != "row" {
            assert_eq!(
                p["datasource"]["uid"], "${DS_PROMETHEUS}",
                "datasource of {}",
                p["title"]
            );
            let targets = p["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{} has no query", p["title"]);
        }
    }
    for want in [
        "new connections/s per backend",
        "active connections per backend",
        "throughput per backend",
        "backend state",
        "connect errors by reason",
        "rejected connections by reason",
        "copy vs splice",
        "pipes in use vs max",
        "health check results",
        "config reloads",
        "idle timeouts and resource errors",
        "http requests/s by listener and code class",
        "http 5xx ratio",
        "http response time",
        "tls handshakes by result",
        "days to certificate expiry",
    ] {
        assert!(titles.contains(want), "no panel {want:?}: {titles:?}");
    }
}

#[test]
fn the_dashboard_and_the_alerts_use_only_metrics_spliced_exports() {
    let s = setup();
    let done = traffic(s.lb.addr("lb"), 6, 1);
    let body = metrics_matching(&s, &done);
    let types = types(&body);

    let mut used: BTreeMap<String, &str> = BTreeMap::new();
    for e in dashboard_exprs(&load_dashboard()) {
        for n in metric_names(&e) {
            used.insert(n, DASHBOARD);
        }
    }
    let rules: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(Path::new(REPO).join(ALERTS)).unwrap())
            .unwrap();
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            for n in metric_names(rule["expr"].as_str().unwrap()) {
                used.insert(n, ALERTS);
            }
        }
    }
    assert!(used.len() > 10, "found too few metric names: {used:?}");
    let missing: Vec<String> = used
        .iter()
        .filter(|(n, _)| !exported(&types, n))
        .map(|(n, file)| format!("{n} (used in {file})"))
        .collect();
    assert!(
        missing.is_empty(),
        "not in spliced's /metrics: {missing:?}\n/metrics:\n{body}"
    );
}

// ---- a real Prometheus -------------------------------------------------------------

/// A `prometheus` server with its own temp dir; killed on drop.
struct PromServer {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl PromServer {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// Starts prometheus scraping `target` every second with the repository's
    /// alert rules loaded; waits until it is ready.
    fn start(prometheus: &Path, target: SocketAddr) -> PromServer {
        let dir = temp_dir();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: spliced\n    static_configs:\n      - targets: [\"{target}\"]\n",
            Path::new(REPO).join(ALERTS).display()
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        // A free port can be taken between probing and binding: try a few.
        for _ in 0..3 {
            let addr = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap();
            let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
            let mut child = Command::new(prometheus)
                .arg(format!(
                    "--config.file={}",
                    dir.join("prometheus.yml").display()
                ))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("spawn prometheus");
            let deadline = Instant::now() + WAIT;
            while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
                if let Some((200, _)) = http10_get(addr, "/-/ready") {
                    return PromServer { child, addr, dir };
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
            if !log.contains("address already in use") {
                let _ = std::fs::remove_dir_all(&dir);
                panic!("prometheus did not become ready; its log:\n{log}");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        panic!("prometheus could not bind a free port");
    }

    /// GET /api/v1/<path>; the JSON `data` of a successful answer.
    fn api(&self, path: &str) -> Option<serde_json::Value> {
        let (status, body) = http10_get(self.addr, &format!("/api/v1/{path}"))?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        assert!(
            status == 200 && v["status"] == "success",
            "prometheus answered {status} to {path}: {body}"
        );
        Some(v["data"].clone())
    }

    /// An instant query; the `result` vector.
    fn query(&self, promql: &str) -> Vec<serde_json::Value> {
        self.api(&format!("query?query={}", urlencode(promql)))
            .and_then(|d| d["result"].as_array().cloned())
            .unwrap_or_default()
    }
}

impl Drop for PromServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An HTTP/1.0 GET (so the answer is never chunked); `None` if the connection fails.
fn http10_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let status = resp.split_whitespace().nth(1)?.parse().ok()?;
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn value(sample: &serde_json::Value) -> f64 {
    sample["value"][1].as_str().unwrap().parse().unwrap()
}

#[test]
fn a_real_prometheus_scrapes_spliced_and_its_query_api_sees_every_backend_up() {
    let Some(prometheus) = tool("prometheus") else {
        return;
    };
    let started = Instant::now();
    let s = setup();
    let done = traffic(s.lb.addr("lb"), 9, 0);
    metrics_matching(&s, &done);
    let prom = PromServer::start(&prometheus, s.lb.admin.unwrap());

    // spliced_backend_up == 1 for every backend, as Prometheus scraped it.
    let mut last;
    let ok = {
        let deadline = Instant::now() + WAIT;
        loop {
            last = prom.query("spliced_backend_up");
            let up: BTreeMap<String, f64> = last
                .iter()
                .map(|r| {
                    (
                        r["metric"]["backend"].as_str().unwrap().to_string(),
                        value(r),
                    )
                })
                .collect();
            let all = s
                .backends
                .iter()
                .all(|(_, a)| up.get(&a.to_string()) == Some(&1.0));
            if all || Instant::now() >= deadline {
                break all;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    assert!(
        ok,
        "prometheus never saw every backend up: {last:?}\nprometheus log:\n{}",
        prom.log()
    );
    for r in &last {
        assert_eq!(r["metric"]["job"], "spliced");
        assert_eq!(r["metric"]["pool"], "p");
    }

    // The scrape itself is clean, and the stored counters are the clients' ones.
    let targets = prom.api("targets").unwrap();
    let t = &targets["activeTargets"][0];
    assert_eq!(t["health"], "up", "{t}");
    assert_eq!(t["lastError"], "", "{t}");
    let connections: u64 = done.values().map(|d| d.0).sum();
    wait_until("prometheus sum(spliced_connections_total)", || {
        prom.query("sum(spliced_connections_total)")
            .first()
            .is_some_and(|r| value(r) == connections as f64)
    });

    // The repository's alert rules load and evaluate cleanly against real data.
    wait_until("every alert rule evaluated ok", || {
        prom.api("rules").is_some_and(|d| {
            let rules: Vec<_> = d["groups"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|g| g["rules"].as_array().unwrap().clone())
                .collect();
            rules.len() >= 8 && rules.iter().all(|r| r["health"] == "ok")
        })
    });
    // All backends are up: SplicedBackendDown / SplicedPoolAllBackendsDown stay quiet.
    let firing = prom.api("alerts").unwrap();
    let names: Vec<_> = firing["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["labels"]["alertname"].as_str().unwrap().to_string())
        .collect();
    assert!(
        !names.iter().any(|n| n.contains("Down")),
        "alerts pending/firing: {names:?}"
    );

    // Every dashboard query is valid PromQL to this Prometheus.
    for e in dashboard_exprs(&load_dashboard()) {
        if e.starts_with("label_values(") {
            continue; // Grafana's own function, not PromQL
        }
        let promql = e
            .replace("$__rate_interval", "1m")
            .replace("$__range", "5m")
            .replace("$instance", ".*")
            .replace("$pool", ".*")
            .replace("$backend", ".*");
        let (status, body) = http10_get(
            prom.addr,
            &format!("/api/v1/query?query={}", urlencode(&promql)),
        )
        .expect("prometheus answers");
        assert_eq!(status, 200, "dashboard query {promql}: {body}");
    }
    eprintln!(
        "prometheus e2e took {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn the_exposition_parser_of_these_tests_handles_escapes_and_histograms() {
    let body = "# TYPE x_seconds histogram\nx_seconds_bucket{le=\"0.1\"} 1\nx_seconds_bucket{le=\"+Inf\"} 2\nx_seconds_sum 0.5\nx_seconds_count 2\n# TYPE y_total counter\ny_total{a=\"q\\\"uo,te\",b=\"back\\\\slash\"} 7\n";
    let s = samples(body);
    assert_eq!(s.len(), 5);
    assert_eq!(s[1].labels["le"].parse::<f64>().unwrap(), f64::INFINITY);
    assert_eq!(s[4].labels["a"], "q\"uo,te");
    assert_eq!(s[4].labels["b"], "back\\slash");
    assert_eq!(s[4].value, 7.0);
    let t = types(body);
    for n in [
        "x_seconds_bucket",
        "x_seconds_sum",
        "x_seconds_count",
        "y_total",
    ] {
        assert!(exported(&t, n), "{n}");
    }
    assert!(!exported(&t, "y_total_count") && !exported(&t, "x_seconds_max"));
    assert_eq!(
        metric_names("rate(spliced_a_total{x=\"spliced_no\"}[1m]) / my_spliced_b + spliced_c"),
        BTreeSet::from(["spliced_a_total".to_string(), "spliced_c".to_string()])
    );
}
