//! The whole exposition against a checked-in golden text, and that text
//! against `promtool check metrics`. The fixture config and counter values are
//! fixed, the clock is injected, so the rendering is byte for byte
//! reproducible: any change to a name, label, help text, order or value shows
//! up as a diff here before it reaches a dashboard or an alert.
//!
//! After an intended change, regenerate the golden file with
//! `SPLICED_UPDATE_GOLDEN=1 cargo test --lib metrics::` and review the diff.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::render::render_at;
use crate::config;
use crate::counters::{Histogram, Stats};
use crate::limits::{ClientKey, Limiter};
use crate::snapshot::Snapshot;

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/metrics/exposition.prom"
);

/// Two listeners (one also SNI-routing to the other's pool, so a backend has
/// series for two listeners), a probed pool with a drained and a disabled
/// backend, and an unprobed pool with a backup.
const CONFIG: &str = "\
workers: 2
limits_table_size: 1024
listeners:
  - name: web
    listen: 127.0.0.1:0
    pool: web
    sni:
      - { match: api.example.com, pool: api }
    limits: { per_ip_connections: 100 }
  - { name: api, listen: '[::1]:0', pool: api }
pools:
  - name: web
    backends:
      - 127.0.0.1:9001
      - { address: 127.0.0.1:9002, drain: true }
      - { address: 127.0.0.1:9003, disabled: true }
    health_check: { kind: tcp, interval: 1s }
  - name: api
    backends:
      - '[::1]:9101'
      - { address: '[::1]:9102', backup: true }
";

/// Listener ids as the supervisor would assign them; different modulo
/// `LISTENER_SLOTS`, so each listener has its own per-backend slot.
const LISTENER_IDS: [u32; 2] = [3, 5];
const WORKERS: usize = 2;
/// The injected clock (ms): one backend's ejection runs past it.
const NOW_MS: u64 = 1_000_000;
const RELOADS: super::Reloads = super::Reloads {
    config: (4, 1),
    tls: (0, 0),
};

/// Hands out values no other counter has, in a pattern that survives the
/// summing over workers: worker 0's counters get 1, 2, 3..., worker 1's
/// 1000, 2000, 3000..., and counters of no worker (the control thread's,
/// shared gauges) 1000001, 1000002... Filled in the same order on each
/// worker, a summed sample reads 1001·k (97097: the 97th counter), so a
/// sample rendered from the wrong counter cannot go unnoticed.
struct Distinct {
    next: u64,
    step: u64,
    base: u64,
}

impl Distinct {
    fn worker(w: usize) -> Distinct {
        assert!(w < 2, "the pattern has room for two workers");
        Distinct {
            next: 0,
            step: 1000u64.pow(w as u32),
            base: 0,
        }
    }

    fn shared() -> Distinct {
        Distinct {
            next: 0,
            step: 1,
            base: 1_000_000,
        }
    }

    fn set(&mut self, counter: &AtomicU64) {
        self.next += 1;
        assert!(self.next < 1000, "too many counters for the pattern");
        counter.store(self.base + self.next * self.step, Ordering::Relaxed);
    }

    fn set_all<'a>(&mut self, counters: impl IntoIterator<Item = &'a AtomicU64>) {
        for c in counters {
            self.set(c);
        }
    }
}

fn observe_all<const N: usize>(h: &Histogram<N>, values_us: &[u64]) {
    for &us in values_us {
        h.observe(us);
    }
}

/// The fixture's exposition: the same every run.
fn exposition() -> String {
    let config = config::parse_str(CONFIG).expect("the fixture config is valid");
    let snapshot = Snapshot::build(&config, &LISTENER_IDS, WORKERS, None);
    let stats = Stats::new(WORKERS);
    stats.set_engine("io_uring");

    for w in 0..WORKERS {
        let mut next = Distinct::worker(w);
        let s = stats.worker(w);
        next.set_all([&s.accepted, &s.active]);
        next.set_all(&s.bytes_copied);
        next.set_all(&s.bytes_spliced);
        next.set_all([
            &s.splice_switches,
            &s.pipe_exhausted,
            &s.pipes_in_use,
            &s.pipes_max,
            &s.idle_timeouts,
            &s.accept_resource_errors,
            &s.buffer_exhausted,
            &s.shutdown_closed,
        ]);
        next.set_all(&s.terminations);
        next.set(&s.access_log_dropped);
        // Below the first bound, on a bound, between bounds, above the last.
        observe_all(&s.connect_duration, &[100, 1_000, 30_000, 9_000_000]);
        observe_all(&s.connection_duration, &[2_500, 1_000_000, 100_000_000_000]);

        for l in &snapshot.listeners {
            let s = l.stats.worker(w);
            next.set_all([&s.accepted, &s.fail_open]);
            next.set_all(&s.rejected);
        }
        for b in snapshot.pools.iter().flat_map(|p| &p.backends) {
            let s = b.stats.worker(w);
            next.set_all([
                &s.connections,
                &s.connect_errors_refused,
                &s.connect_errors_timeout,
                &s.connect_errors_other,
            ]);
            next.set_all(&s.bytes);
            for l in &snapshot.listeners {
                let r = &s.by_listener[l.metrics_slot];
                next.set_all([&r.connections, &r.active]);
                next.set_all(&r.bytes);
            }
        }
    }

    let mut next = Distinct::shared();
    for l in &snapshot.listeners {
        next.set(&l.stats.active);
    }
    for b in snapshot.pools.iter().flat_map(|p| &p.backends) {
        let s = &b.stats;
        next.set_all([
            &s.checks_ok,
            &s.checks_failed,
            &s.checks_skipped,
            &s.went_up,
            &s.went_down,
            &s.ejections_total,
        ]);
    }
    // web's first backend is ejected until after now; api's backup is marked
    // down (as probes would), so both health gauges show a 0.
    let web = &snapshot.pools[0];
    web.backends[0]
        .stats
        .ejected_until_ms
        .store(NOW_MS + 5_000, Ordering::Relaxed);
    let api = &snapshot.pools[1];
    api.backends[1].stats.up.store(false, Ordering::Relaxed);

    // A table of one probe window, overfilled by two clients: 8 entries, 2
    // evictions (the salt fixes where each client lands).
    let limiter = Limiter::with_salt(1, 42);
    let limits = config.listeners[0].limits.clone().expect("web has limits");
    for client in 0..10u8 {
        let ip = std::net::IpAddr::from([192, 0, 2, client]);
        let _ = limiter.admit(ClientKey::new(ip, 64), &limits, u64::from(client) + 1);
    }

    render_at(&snapshot, &stats, &limiter, RELOADS, NOW_MS)
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

#[test]
fn every_declared_family_is_rendered_once() {
    let text = exposition();
    let rendered: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let mut declared: Vec<&str> = super::names::ALL.iter().map(|m| m.name).collect();
    let mut sorted = rendered.clone();
    sorted.sort_unstable();
    declared.sort_unstable();
    assert_eq!(sorted, declared, "rendered families: {rendered:?}");
}

#[test]
fn the_exposition_matches_the_golden_text() {
    let rendered = exposition();
    if env_flag("SPLICED_UPDATE_GOLDEN") {
        std::fs::create_dir_all(Path::new(GOLDEN).parent().unwrap()).unwrap();
        std::fs::write(GOLDEN, &rendered).unwrap();
        eprintln!("wrote {GOLDEN}");
        return;
    }
    let golden = std::fs::read_to_string(GOLDEN).unwrap_or_else(|e| {
        panic!("{GOLDEN}: {e}: create it with SPLICED_UPDATE_GOLDEN=1 cargo test --lib metrics::")
    });
    if rendered != golden {
        // WHY not assert_eq!: the whole text twice buries the one line that
        // changed.
        let (line, want, got) = golden
            .lines()
            .map(Some)
            .chain(std::iter::repeat(None))
            .zip(rendered.lines().map(Some).chain(std::iter::repeat(None)))
            .enumerate()
            .find(|(_, (want, got))| want != got)
            .map(|(i, (want, got))| (i + 1, want, got))
            .expect("texts differ only in trailing newlines");
        panic!(
            "the exposition differs from {GOLDEN} at line {line}:\n  golden:   {want:?}\n  rendered: {got:?}\n\
             if the change is intended, regenerate it with SPLICED_UPDATE_GOLDEN=1 cargo test --lib metrics:: and review the diff"
        );
    }
}

/// `name` on PATH; `None` (after printing SKIPPED) when it is missing and
/// SPLICED_REQUIRE_PROMETHEUS is not set, the convention of
/// tests/e2e/prometheus.rs.
fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            !env_flag("SPLICED_REQUIRE_PROMETHEUS"),
            "{name} is not on PATH and SPLICED_REQUIRE_PROMETHEUS is set: run scripts/install-prometheus.sh"
        );
        eprintln!(
            "SKIPPED: {name} not found; run scripts/install-prometheus.sh (Debian's prometheus package) to run this test"
        );
    }
    found
}

#[test]
fn the_golden_exposition_passes_promtool_check_metrics() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition().as_bytes())
        .unwrap();
    // WHY a thread: a wedged promtool fails the test instead of hanging it.
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || done.send(child.wait_with_output()));
    let output = finished
        .recv_timeout(Duration::from_secs(60))
        .expect("promtool check metrics answers within 60 s")
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && said.trim().is_empty(),
        "promtool check metrics ({}) found:\n{said}",
        output.status
    );
}
