//! Backend health over real sockets: active TCP and HTTP probes with
//! rise/fall, passive ejection after connect failures, and what happens when
//! every backend is down (fail_open or refuse).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::*;

fn ask(addr: SocketAddr) -> std::io::Result<String> {
    let s = connect(addr);
    let mut w = s.try_clone()?;
    writeln!(w, "who")?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line)?;
    Ok(line.split_whitespace().next().unwrap_or("").to_string())
}

fn healthy(lb: &Spliced, backend: SocketAddr) -> f64 {
    lb.metric(
        "spliced_backend_healthy",
        &[("backend", &backend.to_string())],
    )
}

/// An HTTP backend answering every request with `status`.
fn http_status(status: u16) -> Backend {
    Backend::spawn(move |s| {
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        let mut line = String::new();
        while r.read_line(&mut line).unwrap_or(0) > 0 {
            if line == "\r\n" {
                let _ = write!(
                    w,
                    "HTTP/1.1 {status} X\r\nContent-Length: 3\r\nConnection: close\r\n\r\nhi\n"
                );
                return;
            }
            line.clear();
        }
    })
}

#[test]
fn a_killed_backend_is_marked_down_within_interval_times_fall_and_comes_back_after_rise() {
    let a = Backend::named("a");
    let b = Backend::named("b");
    let victim = Backend::named("victim");
    let victim_addr = victim.addr;
    let config = format!(
        "workers: 2\nadmin:\n  listen: 127.0.0.1:0\nlisteners:\n  - {{ name: lb, listen: 127.0.0.1:0, pool: p, retries: 2 }}\npools:\n  - name: p\n    eject_after: 0\n    health_check: {{ kind: tcp, interval: 300ms, timeout: 200ms, rise: 2, fall: 2 }}\n    backends: [\"{}\", \"{}\", \"{}\"]\n",
        a.addr, b.addr, victim.addr
    );
    let lb = Spliced::start(&config);
    let addr = lb.addr("lb");

    // Steady load from another thread while the victim dies: no client may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let served = Arc::new(AtomicU64::new(0));
    let load = {
        let (stop, failures, served) = (stop.clone(), failures.clone(), served.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + WAIT;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                match ask(addr) {
                    Ok(n) if !n.is_empty() => served.fetch_add(1, Ordering::Relaxed),
                    _ => failures.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };
    wait_until("traffic flowing", || served.load(Ordering::Relaxed) > 50);
    let killed_at = Instant::now();
    drop(victim);
    wait_until("victim marked down", || healthy(&lb, victim_addr) == 0.0);
    let detected = killed_at.elapsed();
    // interval × fall + timeout = 800 ms, plus jitter (±10%) and the 250 ms
    // metric/reconcile granularity.
    assert!(
        detected <= Duration::from_millis(1600),
        "took {detected:?} to notice"
    );
    // Let connects picked just before the verdict finish, then take a reading.
    let before = served.load(Ordering::Relaxed);
    wait_until("traffic after detection", || {
        served.load(Ordering::Relaxed) > before + 20
    });
    let errors_at_detection = lb.metric(
        "spliced_connect_errors_total",
        &[("backend", &victim_addr.to_string())],
    );
    let before = served.load(Ordering::Relaxed);
    wait_until("more traffic after detection", || {
        served.load(Ordering::Relaxed) > before + 100
    });
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    // The load is one connection at a time, so at most one can be inside
    // the victim when it dies: a connection the victim's kernel had already
    // accepted into its listen queue is reset when the listener closes, after
    // spliced connected and forwarded its bytes (no L4 proxy can replay
    // those). Every later client must be sent elsewhere: connects to the
    // dead port are refused and retried, and it is soon marked down.
    assert!(
        failures.load(Ordering::Relaxed) <= 1,
        "{} clients failed while the backend died",
        failures.load(Ordering::Relaxed)
    );
    // Once down, it is no longer even tried.
    assert_eq!(
        lb.metric(
            "spliced_connect_errors_total",
            &[("backend", &victim_addr.to_string())]
        ),
        errors_at_detection
    );

    // It comes back after `rise` good probes.
    let _revived = Backend::spawn_on(&victim_addr.to_string(), |mut s| {
        let _ = writeln!(s, "victim");
    });
    wait_until("victim back up", || healthy(&lb, victim_addr) == 1.0);
    assert!(lb.metric("spliced_health_transitions_total", &[("to", "up")]) >= 1.0);
}

#[test]
fn an_http_probe_marks_a_backend_answering_500_as_down() {
    let ok = http_status(200);
    let broken = http_status(500);
    let config = format!(
        "workers: 1\nadmin:\n  listen: 127.0.0.1:0\nlisteners:\n  - {{ name: lb, listen: 127.0.0.1:0, pool: p }}\npools:\n  - name: p\n    health_check: {{ kind: http, path: /health, interval: 200ms, timeout: 150ms, rise: 1, fall: 1 }}\n    backends: [\"{}\", \"{}\"]\n",
        ok.addr, broken.addr
    );
    let lb = Spliced::start(&config);
    wait_until("500 backend down", || healthy(&lb, broken.addr) == 0.0);
    wait_until("200 backend probed ok", || {
        lb.metric(
            "spliced_health_checks_total",
            &[("backend", &ok.addr.to_string()), ("result", "ok")],
        ) >= 2.0
    });
    assert_eq!(healthy(&lb, ok.addr), 1.0);
    let served_before = broken.accepted.load(Ordering::Relaxed);
    for _ in 0..10 {
        let mut s = connect(lb.addr("lb"));
        write!(s, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    }
    // Only probes reached the broken one.
    let probes = broken.accepted.load(Ordering::Relaxed) - served_before;
    assert!(probes <= 10, "the broken backend got client traffic");
}

fn all_down_config(on_all_down: &str, a: SocketAddr, b: SocketAddr) -> String {
    format!(
        "workers: 1\nadmin:\n  listen: 127.0.0.1:0\nlisteners:\n  - {{ name: lb, listen: 127.0.0.1:0, pool: p }}\npools:\n  - name: p\n    on_all_down: {on_all_down}\n    health_check: {{ kind: http, interval: 200ms, timeout: 150ms, rise: 1, fall: 1 }}\n    backends: [\"{a}\", \"{b}\"]\n"
    )
}

#[test]
fn when_every_backend_is_down_fail_open_still_serves_and_refuse_closes() {
    let (x, y) = (http_status(503), http_status(503));
    let lb = Spliced::start(&all_down_config("fail_open", x.addr, y.addr));
    wait_until("both down", || {
        healthy(&lb, x.addr) == 0.0 && healthy(&lb, y.addr) == 0.0
    });
    let mut s = connect(lb.addr("lb"));
    write!(s, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(
        reply.starts_with("HTTP/1.1 503"),
        "fail_open should still reach a backend: {reply:?}"
    );
    assert_eq!(lb.metric("spliced_fail_open_connections_total", &[]), 1.0);
    drop(lb);

    let lb = Spliced::start(&all_down_config("refuse", x.addr, y.addr));
    wait_until("both down", || {
        healthy(&lb, x.addr) == 0.0 && healthy(&lb, y.addr) == 0.0
    });
    let mut s = connect(lb.addr("lb"));
    let _ = write!(s, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    assert!(
        reply.is_empty(),
        "refuse should close the client: {:?}",
        String::from_utf8_lossy(&reply)
    );
    assert_eq!(
        lb.metric(
            "spliced_rejected_connections_total",
            &[("reason", "no_backend")]
        ),
        1.0
    );
}

#[test]
fn consecutive_connect_failures_eject_a_backend_for_a_while() {
    let dead = refused_addr();
    let good = Backend::named("good");
    let config = format!(
        "workers: 1\nadmin:\n  listen: 127.0.0.1:0\nlisteners:\n  - {{ name: lb, listen: 127.0.0.1:0, pool: p, retries: 1 }}\npools:\n  - name: p\n    eject_after: 3\n    ejection_time: 30s\n    backends: [\"{dead}\", \"{}\"]\n",
        good.addr
    );
    let lb = Spliced::start(&config);
    for _ in 0..30 {
        assert_eq!(ask(lb.addr("lb")).unwrap(), "good");
    }
    let dead_label = dead.to_string();
    assert_eq!(
        lb.metric("spliced_ejections_total", &[("backend", &dead_label)]),
        1.0
    );
    assert_eq!(
        lb.metric("spliced_backend_ejected", &[("backend", &dead_label)]),
        1.0
    );
    // Three failures ejected it; no connect was tried after that.
    assert_eq!(
        lb.metric("spliced_connect_errors_total", &[("backend", &dead_label)]),
        3.0
    );
    wait_until("ejection logged", || {
        lb.log_text().contains("backend ejected")
    });
}
