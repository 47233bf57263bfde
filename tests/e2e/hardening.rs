//! Regressions from the reliability and security campaign: the admin API
//! against cross-site pages and DNS rebinding, requests that used to stall
//! the control thread, backends the API must refuse, new backends that must
//! earn their traffic, and the settings a reload used to drop.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::harness::*;

/// One raw HTTP/1.1 request with `headers` (each ending in CRLF) and `body`:
/// (status, body).
fn request(addr: SocketAddr, head: &str, headers: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, WAIT).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        s,
        "{head} HTTP/1.1\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {resp:?}"));
    let body = resp
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

/// The addresses of pool `p`'s backends, as the API lists them.
fn backend_addresses(admin: SocketAddr) -> Vec<String> {
    let pools = json(&http_get(admin, "/api/v1/pools").1);
    pools["pools"][0]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["address"].as_str().unwrap().to_owned())
        .collect()
}

fn backend_state(admin: SocketAddr, address: &str) -> String {
    backend_info(admin, address)["state"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_cross_site_page_cannot_add_a_backend_or_read_through_a_rebound_name() {
    let b = Backend::named("b");
    let lb = Spliced::start(&simple_config(&[b.addr], ""));
    let admin = lb.admin.unwrap();
    let path = "POST /api/v1/pools/p/backends";
    let body = r#"{"address": "127.0.0.1:9"}"#;
    let host = format!("Host: {admin}\r\n");

    // A "simple" cross-site request needs no preflight: text/plain, a form.
    for content_type in ["text/plain", "application/x-www-form-urlencoded"] {
        let headers = format!("{host}Content-Type: {content_type}\r\n");
        let (status, answer) = request(admin, path, &headers, body);
        assert_eq!(status, 415, "{content_type}: {answer}");
    }
    // A foreign origin, however the page dresses its request.
    for (header, why) in [
        ("Origin: http://evil.example\r\n", "foreign Origin"),
        ("Origin: null\r\n", "opaque Origin"),
        ("Sec-Fetch-Site: cross-site\r\n", "Sec-Fetch-Site"),
    ] {
        let headers = format!("{host}{header}Content-Type: application/json\r\n");
        let (status, answer) = request(admin, path, &headers, body);
        assert_eq!(status, 403, "{why}: {answer}");
    }
    // DNS rebinding: a page on a name that now resolves to 127.0.0.1 sends
    // its own name as Host, for reads as well as writes.
    let headers = format!("Host: rebind.evil.example:{}\r\n", admin.port());
    let (status, _) = request(admin, "GET /api/v1/pools", &headers, "");
    assert_eq!(status, 421);
    assert_eq!(backend_addresses(admin), [b.addr.to_string()]);

    // The same origin (the dashboard) and tools such as curl still work.
    let headers = format!(
        "Host: localhost:{port}\r\nOrigin: http://localhost:{port}\r\nSec-Fetch-Site: same-origin\r\nContent-Type: application/json\r\n",
        port = admin.port()
    );
    let (status, answer) = request(admin, path, &headers, body);
    assert!(
        status == 200 || status == 201,
        "same origin: {status} {answer}"
    );
    assert_eq!(backend_addresses(admin).len(), 2);
    assert_eq!(http_get(admin, "/ready").0, 200);
}

#[test]
fn the_bearer_scheme_is_accepted_in_any_case() {
    let b = Backend::named("b");
    let dir = temp_dir();
    let token_file = dir.join("token");
    std::fs::write(&token_file, "s3cret\n").unwrap();
    let yaml = simple_config(&[b.addr], "").replace(
        "admin:\n  listen: 127.0.0.1:0\n",
        &format!(
            "admin:\n  listen: 127.0.0.1:0\n  token_file: {}\n",
            token_file.display()
        ),
    );
    let lb = Spliced::start(&yaml);
    let admin = lb.admin.unwrap();
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let headers = format!(
            "Host: {admin}\r\nAuthorization: {scheme} s3cret\r\nContent-Type: application/json\r\n"
        );
        let (status, answer) = request(admin, "POST /api/v1/reload", &headers, "");
        assert_eq!(status, 200, "{scheme}: {answer}");
    }
    let headers = format!("Host: {admin}\r\nAuthorization: bearer wrong\r\n");
    assert_eq!(request(admin, "POST /api/v1/reload", &headers, "").0, 401);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_admin_api_beyond_loopback_without_a_token_is_refused_at_check() {
    let dir = temp_dir();
    let path = dir.join("open.yaml");
    let backend = refused_addr();
    let base = format!(
        "listeners:\n  - {{ name: lb, listen: 127.0.0.1:0, pool: p }}\npools:\n  - {{ name: p, backends: [\"{backend}\"] }}\n"
    );
    std::fs::write(&path, format!("admin:\n  listen: 0.0.0.0:0\n{base}")).unwrap();
    let out = run_bin(
        ["check".as_ref(), "-c".as_ref(), path.as_os_str()],
        Duration::from_secs(10),
    );
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(out.stderr.contains("admin"), "{}", out.stderr);
    assert!(out.stderr.contains("token_file"), "{}", out.stderr);

    // The written waiver makes it a (loud) choice rather than a mistake.
    std::fs::write(
        &path,
        format!("admin:\n  listen: 0.0.0.0:0\n  allow_unauthenticated: true\n{base}"),
    )
    .unwrap();
    let out = run_bin(
        ["check".as_ref(), "-c".as_ref(), path.as_os_str()],
        Duration::from_secs(10),
    );
    assert_eq!(out.code, Some(0), "{out:?}");

    // A token file that is missing is found by check, not at start.
    std::fs::write(
        &path,
        format!(
            "admin:\n  listen: 127.0.0.1:0\n  token_file: {}\n{base}",
            dir.join("absent").display()
        ),
    )
    .unwrap();
    let out = run_bin(
        ["check".as_ref(), "-c".as_ref(), path.as_os_str()],
        Duration::from_secs(10),
    );
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(out.stderr.contains("absent"), "{}", out.stderr);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn deeply_nested_yaml_is_refused_at_once_and_the_admin_api_keeps_answering() {
    let b = Backend::named("b");
    let lb = Spliced::start(&simple_config(&[b.addr], ""));
    let admin = lb.admin.unwrap();
    // 200 KB of `{a: ` parsed for 25 s on the control thread before.
    let bomb = format!("pools: {}{}\n", "{a: ".repeat(40_000), "}".repeat(40_000));
    let headers = format!("Host: {admin}\r\nContent-Type: application/yaml\r\n");
    let started = Instant::now();
    let (status, answer) = request(admin, "PUT /api/v1/config", &headers, &bomb);
    let took = started.elapsed();
    assert_eq!(status, 422, "{answer}");
    assert!(answer.contains("deep"), "{answer}");
    // Not a timing assertion on speed: 25 s is what the bug cost.
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(http_get(admin, "/ready").0, 200);
    assert_eq!(ask(lb.addr("lb")), "b");
}

#[test]
fn admin_connections_are_capped_and_a_slow_request_is_cut_off() {
    let b = Backend::named("b");
    let lb = Spliced::start(&simple_config(&[b.addr], ""));
    let admin = lb.admin.unwrap();
    // 64 clients that start a request and never finish it.
    let mut slow: Vec<TcpStream> = (0..64)
        .map(|_| {
            let mut s = TcpStream::connect_timeout(&admin, WAIT).unwrap();
            write!(s, "GET /ready HTTP/1.1\r\nHost: {admin}\r\n").unwrap();
            s
        })
        .collect();
    // The 65th is told to come back rather than left hanging. The slow
    // ones are accepted in order, so once one more is answered 503 the cap
    // is what answered it.
    wait_until("a connection over the cap is answered 503", || {
        let mut s = TcpStream::connect_timeout(&admin, WAIT).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut resp = String::new();
        let _ = s.read_to_string(&mut resp);
        resp.starts_with("HTTP/1.1 503")
    });
    // Each slow client is cut off by the whole-request deadline (10 s).
    let first = &mut slow[0];
    first
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut resp = String::new();
    let _ = first.read_to_string(&mut resp);
    assert!(
        resp.is_empty() || resp.starts_with("HTTP/1.1 408"),
        "{resp:?}"
    );
    drop(slow);
    wait_until("the admin API answers again", || {
        TcpStream::connect_timeout(&admin, WAIT).is_ok() && http_get(admin, "/ready").0 == 200
    });
}

#[test]
fn ready_says_draining_once_shutdown_begins() {
    let b = Backend::echo();
    let lb = Spliced::start(&format!(
        "shutdown_timeout: 30s\n{}",
        simple_config(&[b.addr], "")
    ));
    let admin = lb.admin.unwrap();
    assert_eq!(http_get(admin, "/ready"), (200, "ready\n".to_owned()));
    // A held connection keeps spliced draining while /ready is asked.
    let mut held = connect(lb.addr("lb"));
    held.write_all(b"x").unwrap();
    let mut one = [0u8; 1];
    held.read_exact(&mut one).unwrap();
    lb.signal("TERM");
    wait_until("/ready reports the drain", || {
        http_get(admin, "/ready") == (503, "draining\n".to_owned())
    });
    drop(held);
}

#[test]
fn the_api_refuses_backends_that_cannot_be_dialled_or_point_at_spliced_itself() {
    let b = Backend::named("b");
    let lb = Spliced::start(&simple_config(&[b.addr], ""));
    let admin = lb.admin.unwrap();
    let own = lb.addr("lb").to_string();
    let admin_text = admin.to_string();
    for address in [
        "0.0.0.0:80",
        "127.0.0.1:0",
        "255.255.255.255:80",
        "224.0.0.1:80",
        own.as_str(),
        admin_text.as_str(),
    ] {
        let body = format!(r#"{{"address": "{address}"}}"#);
        let (status, answer) = http(admin, "POST", "/api/v1/pools/p/backends", None, &body);
        assert_eq!(status, 422, "{address}: {answer}");
    }
    assert_eq!(backend_addresses(admin), [b.addr.to_string()]);
    assert_eq!(ask(lb.addr("lb")), "b");
}

#[test]
fn a_backend_added_to_a_checked_pool_takes_traffic_only_after_a_good_probe() {
    let good = Backend::named("good");
    let dead = refused_addr();
    let lb = Spliced::start(&format!(
        "{}    health_check: {{ kind: tcp, interval: 300ms, timeout: 200ms, rise: 1, fall: 1 }}\n",
        simple_config(&[good.addr], "")
    ));
    let admin = lb.admin.unwrap();
    let addr = lb.addr("lb");
    wait_until("the configured backend is up", || {
        backend_state(admin, &good.addr.to_string()) == "up"
    });

    let body = format!(r#"{{"address": "{dead}"}}"#);
    let (status, answer) = http(admin, "POST", "/api/v1/pools/p/backends", None, &body);
    assert!(status == 200 || status == 201, "{status} {answer}");
    // Straight after the add, before any probe could have failed it.
    assert_eq!(backend_state(admin, &dead.to_string()), "down");
    for _ in 0..20 {
        assert_eq!(ask(addr), "good");
    }
    let tried_dead = lb.metric(
        "spliced_connect_errors_total",
        &[("backend", &dead.to_string())],
    );
    assert_eq!(
        tried_dead, 0.0,
        "connections were sent to the unprobed backend"
    );

    // A live one comes up on its first good probe and takes its share.
    let late = Backend::named("late");
    let body = format!(r#"{{"address": "{}"}}"#, late.addr);
    let (status, _) = http(admin, "POST", "/api/v1/pools/p/backends", None, &body);
    assert!(status == 200 || status == 201);
    wait_until("the new backend is probed up", || {
        backend_state(admin, &late.addr.to_string()) == "up"
    });
    let answers: Vec<String> = (0..10).map(|_| ask(addr)).collect();
    assert!(answers.iter().any(|a| a == "late"), "{answers:?}");
    assert!(late.accepted.load(Ordering::SeqCst) > 0);
}

#[test]
fn a_reload_applies_the_shutdown_timeout_and_refuses_a_new_limits_table_size() {
    let b = Backend::echo();
    let base = simple_config(&[b.addr], "");
    let lb = Spliced::start(&format!("shutdown_timeout: 5m\n{base}"));
    let admin = lb.admin.unwrap();

    let (status, answer) = http(
        admin,
        "PUT",
        "/api/v1/config",
        None,
        &format!("limits_table_size: 1024\n{base}"),
    );
    assert_eq!(status, 409, "{answer}");
    assert!(answer.contains("limits_table_size"), "{answer}");

    let (status, answer) = http(
        admin,
        "PUT",
        "/api/v1/config",
        None,
        &format!("shutdown_timeout: 300ms\n{base}"),
    );
    assert_eq!(status, 200, "{answer}");
    let mut lb = lb;
    let mut held = connect(lb.addr("lb"));
    held.write_all(b"x").unwrap();
    let mut one = [0u8; 1];
    held.read_exact(&mut one).unwrap();
    lb.signal("TERM");
    // With the start-up 5 minutes this would still be draining.
    let code = lb.wait_exit(Duration::from_secs(20));
    assert_eq!(code, Some(0), "log:\n{}", lb.log_text());
}

#[test]
fn fail_open_counts_each_connection_once_however_many_backends_it_tries() {
    let dead: Vec<SocketAddr> = (0..3).map(|_| refused_addr()).collect();
    let lb = Spliced::start(&format!(
        "{}    on_all_down: fail_open\n    health_check: {{ kind: tcp, interval: 200ms, timeout: 100ms, rise: 1, fall: 1 }}\n",
        simple_config(&dead, "retries: 2")
    ));
    let admin = lb.admin.unwrap();
    wait_until("every backend is marked down", || {
        dead.iter()
            .all(|d| backend_state(admin, &d.to_string()) == "down")
    });
    let tries = |lb: &Spliced| -> f64 {
        dead.iter()
            .map(|d| {
                lb.metric(
                    "spliced_connect_errors_total",
                    &[("backend", &d.to_string())],
                )
            })
            .sum()
    };
    let before = tries(&lb);
    for _ in 0..4 {
        let mut s = connect(lb.addr("lb"));
        expect_closed(&mut s, "a connection with every backend refusing");
    }
    wait_until("the connections' attempts are counted", || {
        tries(&lb) - before >= 4.0 * 3.0
    });
    let opened = lb.metric("spliced_fail_open_connections_total", &[("listener", "lb")]);
    assert_eq!(opened, 4.0, "each connection counted once");
}

#[test]
fn a_proxy_header_timeout_fires_on_time_not_at_the_next_second() {
    let b = Backend::named("b");
    let lb = Spliced::start(&simple_config(
        &[b.addr],
        "accept_proxy_protocol: v1\ntrusted_proxies: [127.0.0.0/8]\nproxy_header_timeout: 100ms",
    ));
    let addr = lb.addr("lb");
    // Eight in a row, so a one-second tick (up to 1.1 s) cannot pass by luck.
    for i in 0..8 {
        let mut s = connect(addr);
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 16];
        let _ = s.read(&mut buf);
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(700),
            "connection {i}: a 100ms PROXY header timeout closed after {took:?}"
        );
    }
}

#[test]
fn a_second_instance_on_the_same_address_is_told_it_shares_the_port() {
    let b = Backend::named("b");
    let mut first = Spliced::start(&simple_config(&[b.addr], ""));
    let taken = first.addr("lb");
    let second = Spliced::start(&simple_config(&[b.addr], "").replace(
        "  - name: lb\n    listen: 127.0.0.1:0\n",
        &format!("  - name: lb\n    listen: {taken}\n"),
    ));
    assert_eq!(second.addr("lb"), taken);
    assert_eq!(
        second.log_count("share its connections"),
        1,
        "{}",
        second.log_text()
    );

    // Once the first is gone (even by SIGKILL, whose sockets linger), a
    // restart waits for the port instead of joining the dead sockets.
    drop(second);
    first.signal("KILL");
    let _ = first.wait_exit(Duration::from_secs(10));
    let third = Spliced::start(&simple_config(&[b.addr], "").replace(
        "  - name: lb\n    listen: 127.0.0.1:0\n",
        &format!("  - name: lb\n    listen: {taken}\n"),
    ));
    assert_eq!(
        third.log_count("share its connections"),
        0,
        "{}",
        third.log_text()
    );
    for _ in 0..20 {
        assert_eq!(ask(taken), "b");
    }
}

#[test]
fn check_warns_about_a_pool_whose_weights_are_all_zero() {
    let dir = temp_dir();
    let path = dir.join("zero.yaml");
    std::fs::write(
        &path,
        "listeners:\n  - { name: lb, listen: 127.0.0.1:0, pool: p }\npools:\n  - name: p\n    backends:\n      - { address: \"127.0.0.1:7001\", weight: 0 }\n      - { address: \"127.0.0.1:7002\", weight: 0 }\n",
    )
    .unwrap();
    let out = run_bin(
        ["check".as_ref(), "-c".as_ref(), path.as_os_str()],
        Duration::from_secs(10),
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr
            .contains("warning: pools[0] (p): every backend has weight 0"),
        "{}",
        out.stderr
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn round_robin_spreads_a_disabled_backends_turns_over_the_other_three() {
    let names = ["a", "b", "c", "d"];
    let backends: Vec<Backend> = names.iter().map(|n| Backend::named(n)).collect();
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let lb = Spliced::start(&simple_config(&addrs, ""));
    let admin = lb.admin.unwrap();
    let path = format!("/api/v1/pools/p/backends/{}", addrs[1]);
    let (status, answer) = http(admin, "PATCH", &path, None, r#"{"disabled": true}"#);
    assert_eq!(status, 200, "{answer}");
    let mut counts = std::collections::HashMap::new();
    for _ in 0..300 {
        *counts.entry(ask(lb.addr("lb"))).or_insert(0) += 1;
    }
    // The next backend in the list took all of b's turns: 75/150/75.
    for name in ["a", "c", "d"] {
        assert_eq!(counts.get(name), Some(&100), "{counts:?}");
    }
    assert_eq!(counts.get("b"), None, "{counts:?}");
}

/// The line `spliced check` prints for `yaml` that contains `needle`.
fn check_line(yaml: &str, needle: &str) -> String {
    let dir = temp_dir();
    let path = dir.join("check.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = run_bin(
        ["check".as_ref(), "-c".as_ref(), path.as_os_str()],
        Duration::from_secs(10),
    );
    let _ = std::fs::remove_dir_all(dir);
    assert_ne!(out.code, Some(0), "{out:?}");
    out.stderr
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{}", out.stderr))
        .trim()
        .to_owned()
}

#[test]
fn an_api_change_the_file_would_refuse_is_refused_in_the_files_words() {
    let primary = Backend::named("a");
    let spare = Backend::named("b");
    let lb = Spliced::start(&format!(
        "workers: 2\nadmin:\n  listen: 127.0.0.1:0\nlisteners:\n  - {{ name: lb, listen: 127.0.0.1:0, pool: p }}\npools:\n  - name: p\n    backends:\n      - {{ address: \"{}\" }}\n      - {{ address: \"{}\", backup: true }}\n",
        primary.addr, spare.addr
    ));
    let admin = lb.admin.unwrap();
    let file = |backends: &str| {
        format!(
            "listeners:\n  - {{ name: lb, listen: 127.0.0.1:0, pool: p }}\npools:\n  - name: p\n    backends:\n{backends}"
        )
    };

    // A weight out of range.
    let path = format!("/api/v1/pools/p/backends/{}", primary.addr);
    let (status, answer) = http(admin, "PATCH", &path, None, r#"{"weight": 1001}"#);
    assert_eq!(status, 422, "{answer}");
    let expected = check_line(
        &file(&format!(
            "      - {{ address: \"{}\", weight: 1001 }}\n      - {{ address: \"{}\", backup: true }}\n",
            primary.addr, spare.addr
        )),
        "weight",
    );
    assert!(
        json(&answer)["error"].as_str().unwrap().contains(&expected),
        "API: {answer}\nfile: {expected}"
    );

    // The last primary removed, leaving only the backup.
    let (status, answer) = http(admin, "DELETE", &path, None, "");
    assert_eq!(status, 422, "{answer}");
    let expected = check_line(
        &file(&format!(
            "      - {{ address: \"{}\", backup: true }}\n",
            spare.addr
        )),
        "pools[0]",
    );
    assert!(
        json(&answer)["error"].as_str().unwrap().contains(&expected),
        "API: {answer}\nfile: {expected}"
    );
    // Nothing changed.
    assert_eq!(backend_addresses(admin).len(), 2);
    assert_eq!(ask(lb.addr("lb")), "a");
}
