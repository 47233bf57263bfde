//! The access log: one line per finished connection with who, where, how much,
//! how long and why it ended, written to a file (JSON or logfmt) off the data
//! path; plus the termination and duration metrics beside it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::Shutdown;

use crate::harness::*;

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn every_finished_connection_gets_one_json_line_with_its_termination() {
    let backend = Backend::named("b");
    let dir = temp_dir();
    let log = dir.join("access.log");
    let config = format!(
        "workers: 2\nadmin:\n  listen: 127.0.0.1:0\naccess_log:\n  path: {}\n  format: json\nlisteners:\n  - {{ name: lb, listen: 127.0.0.1:0, pool: p, max_connections: 1, idle_timeout: 1s }}\npools:\n  - name: p\n    backends: [\"{}\"]\n",
        log.display(),
        backend.addr
    );
    let lb = Spliced::start(&config);

    // 1: a normal exchange, the client closes first.
    let s = connect(lb.addr("lb"));
    let local = s.local_addr().unwrap();
    let mut w = s.try_clone().unwrap();
    writeln!(w, "hello").unwrap();
    let mut line = String::new();
    BufReader::new(s.try_clone().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "b hello\n");
    w.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    let _ = (&s).read_to_end(&mut rest);
    drop(s);
    wait_until("first access log line", || lines(&log).len() == 1);

    // 2: an idle connection (held), and 3: one refused by max_connections: 1.
    let idle = connect(lb.addr("lb"));
    wait_until("idle connection counted", || {
        lb.metric("spliced_listener_active_connections", &[]) == 1.0
    });
    let mut refused = connect(lb.addr("lb"));
    let mut buf = Vec::new();
    let _ = refused.read_to_end(&mut buf);
    let mut idle = idle;
    let _ = idle.read_to_end(&mut buf);
    wait_until("three access log lines", || lines(&log).len() == 3);

    let records: Vec<serde_json::Value> = lines(&log)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let first = &records[0];
    assert_eq!(first["listener"], "lb");
    assert_eq!(first["pool"], "p");
    assert_eq!(first["backend"], backend.addr.to_string());
    assert_eq!(first["client"], local.to_string());
    assert_eq!(first["bytes_client_to_backend"], 6);
    assert_eq!(first["bytes_backend_to_client"], 8);
    assert_eq!(first["termination"], "client_closed");
    assert!(first["connect_ms"].as_f64().unwrap() >= 0.0);
    assert!(first["time"].as_str().unwrap().ends_with('Z'));
    let causes: Vec<&str> = records
        .iter()
        .map(|r| r["termination"].as_str().unwrap())
        .collect();
    assert!(causes.contains(&"max_connections"), "{causes:?}");
    assert!(causes.contains(&"idle_timeout"), "{causes:?}");

    let m = lb.metrics();
    assert_eq!(
        sum_metric(
            &m,
            "spliced_connections_closed_total",
            &[("termination", "client_closed")]
        ),
        1.0
    );
    assert_eq!(
        sum_metric(
            &m,
            "spliced_connections_closed_total",
            &[("termination", "idle_timeout")]
        ),
        1.0
    );
    assert_eq!(
        sum_metric(
            &m,
            "spliced_connections_closed_total",
            &[("termination", "max_connections")]
        ),
        1.0
    );
    assert_eq!(
        sum_metric(&m, "spliced_connect_duration_seconds_count", &[]),
        2.0
    );
    // The refused one never became a proxied connection.
    assert_eq!(
        sum_metric(&m, "spliced_connection_duration_seconds_count", &[]),
        2.0
    );
    assert_eq!(
        sum_metric(
            &m,
            "spliced_connect_duration_seconds_bucket",
            &[("le", "+Inf")]
        ),
        2.0
    );
}

#[test]
fn logfmt_lines_and_a_backend_that_closes_first() {
    let backend = Backend::spawn(|mut s| {
        let _ = s.write_all(b"bye\n");
    });
    let dir = temp_dir();
    let log = dir.join("access.log");
    let config = format!(
        "workers: 1\naccess_log: {{ path: {}, format: logfmt }}\nlisteners:\n  - {{ name: lb, listen: 127.0.0.1:0, pool: p }}\npools:\n  - {{ name: p, backends: [\"{}\"] }}\n",
        log.display(),
        backend.addr
    );
    let lb = Spliced::start(&config);
    let mut s = connect(lb.addr("lb"));
    let mut got = String::new();
    s.read_to_string(&mut got).unwrap();
    assert_eq!(got, "bye\n");
    drop(s);
    wait_until("access log line", || lines(&log).len() == 1);
    let line = &lines(&log)[0];
    assert!(line.starts_with("time="), "{line}");
    assert!(line.contains(" listener=lb "), "{line}");
    assert!(line.contains(" bytes_backend_to_client=4 "), "{line}");
    assert!(line.ends_with(" termination=backend_closed"), "{line}");
}
