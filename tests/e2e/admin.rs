//! The admin API over real HTTP: the pools view, backend changes that take
//! effect for new connections at once and atomically (a bad request changes
//! nothing), the bearer token, posted configs, and 50 reloads under traffic
//! without a failed connection or a corrupted byte.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::harness::*;

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn ask(addr: SocketAddr) -> String {
    let s = connect(addr);
    let mut w = s.try_clone().unwrap();
    writeln!(w, "who").unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    line.split_whitespace().next().unwrap_or("").to_string()
}

fn config(backends: &[SocketAddr], admin_extra: &str) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    format!(
        "workers: 2\nadmin:\n  listen: 127.0.0.1:0\n{admin_extra}listeners:\n  - {{ name: lb, listen: 127.0.0.1:0, pool: p }}\npools:\n  - name: p\n    backends: [{}]\n",
        list.join(", ")
    )
}

fn backend_json<'a>(pools: &'a serde_json::Value, address: &str) -> &'a serde_json::Value {
    pools["pools"][0]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["address"] == address)
        .unwrap_or_else(|| panic!("no backend {address} in {pools}"))
}

#[test]
fn pools_view_and_backend_changes_take_effect_at_once() {
    let (a, b, c) = (
        Backend::named("a"),
        Backend::named("b"),
        Backend::named("c"),
    );
    let lb = Spliced::start(&config(&[a.addr, b.addr], ""));
    let admin = lb.admin.unwrap();
    for _ in 0..4 {
        ask(lb.addr("lb"));
    }
    let (status, body) = http(admin, "GET", "/api/v1/pools", None, "");
    assert_eq!(status, 200);
    let pools = json(&body);
    assert_eq!(pools["pools"][0]["name"], "p");
    assert_eq!(pools["listeners"][0]["accepted"], 4);
    let ba = backend_json(&pools, &a.addr.to_string());
    assert_eq!(ba["state"], "up");
    assert_eq!(ba["connections"], 2);

    // Drain a: new connections only go to b.
    let a_path = format!(
        "/api/v1/pools/p/backends/{}",
        a.addr.to_string().replace(':', "%3A")
    );
    let (status, body) = http(admin, "PATCH", &a_path, None, r#"{"drain": true}"#);
    assert_eq!(status, 200, "{body}");
    for _ in 0..6 {
        assert_eq!(ask(lb.addr("lb")), "b");
    }
    let pools = json(&http(admin, "GET", "/api/v1/pools", None, "").1);
    assert_eq!(
        backend_json(&pools, &a.addr.to_string())["state"],
        "draining"
    );
    assert!(pools["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["event"] == "drain"));

    // A bad request changes nothing.
    let (status, body) = http(
        admin,
        "PATCH",
        &a_path,
        None,
        r#"{"weight": 5000, "drain": false}"#,
    );
    assert_eq!(status, 422, "{body}");
    assert!(json(&body)["error"].as_str().unwrap().contains("weight"));
    let (status, _) = http(
        admin,
        "PATCH",
        "/api/v1/pools/p/backends/127.0.0.1%3A1",
        None,
        r#"{"drain": true}"#,
    );
    assert_eq!(status, 404);
    let (status, _) = http(admin, "PATCH", &a_path, None, r#"{"drian": true}"#);
    assert_eq!(status, 400);
    for _ in 0..4 {
        assert_eq!(
            ask(lb.addr("lb")),
            "b",
            "a rejected request must not undrain a"
        );
    }

    // Add c, remove b: traffic follows.
    let (status, body) = http(
        admin,
        "POST",
        "/api/v1/pools/p/backends",
        None,
        &format!(r#"{{"address": "{}"}}"#, c.addr),
    );
    assert_eq!(status, 201, "{body}");
    let b_path = format!(
        "/api/v1/pools/p/backends/{}",
        b.addr.to_string().replace(':', "%3A")
    );
    let (status, body) = http(admin, "DELETE", &b_path, None, "");
    assert_eq!(status, 200, "{body}");
    for _ in 0..4 {
        assert_eq!(ask(lb.addr("lb")), "c");
    }
    // Removing the last eligible backends' pool member entirely is refused.
    let (status, _) = http(
        admin,
        "POST",
        "/api/v1/pools/p/backends",
        None,
        &format!(r#"{{"address": "{}"}}"#, c.addr),
    );
    assert_eq!(status, 409, "a duplicate backend is a conflict");
    let (status, _) = http(
        admin,
        "POST",
        "/api/v1/pools/nope/backends",
        None,
        r#"{"address": "127.0.0.1:1"}"#,
    );
    assert_eq!(status, 404);
}

#[test]
fn mutating_calls_need_the_token_when_one_is_configured() {
    let a = Backend::named("a");
    let dir = temp_dir();
    let token_file = dir.join("token");
    std::fs::write(&token_file, "s3cret\n").unwrap();
    let lb = Spliced::start(&config(
        &[a.addr],
        &format!("  token_file: {}\n", token_file.display()),
    ));
    let admin = lb.admin.unwrap();
    let path = format!(
        "/api/v1/pools/p/backends/{}",
        a.addr.to_string().replace(':', "%3A")
    );
    let (status, body) = http(admin, "PATCH", &path, None, r#"{"weight": 2}"#);
    assert_eq!(status, 401, "{body}");
    let (status, _) = http(admin, "PATCH", &path, Some("wrong"), r#"{"weight": 2}"#);
    assert_eq!(status, 401);
    let (status, body) = http(admin, "PATCH", &path, Some("s3cret"), r#"{"weight": 2}"#);
    assert_eq!(status, 200, "{body}");
    // Reading needs no token.
    let (status, body) = http(admin, "GET", "/api/v1/pools", None, "");
    assert_eq!(status, 200);
    assert_eq!(json(&body)["token_required"], true);
    assert_eq!(backend_json(&json(&body), &a.addr.to_string())["weight"], 2);
}

#[test]
fn a_posted_config_is_validated_whole_and_applied_or_refused() {
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    let lb = Spliced::start(&config(&[a.addr], ""));
    let admin = lb.admin.unwrap();
    let (status, body) = http(
        admin,
        "PUT",
        "/api/v1/config",
        None,
        "listeners: []\npools: [{name: p, backends: [nope]}]\nbogus: 1\n",
    );
    assert_eq!(status, 422, "{body}");
    let error = json(&body)["error"].as_str().unwrap().to_string();
    assert!(
        error.contains("bogus") && error.contains("pools[0].backends[0]"),
        "{error}"
    );
    assert_eq!(ask(lb.addr("lb")), "a");

    let (status, body) = http(admin, "PUT", "/api/v1/config", None, &config(&[b.addr], ""));
    assert_eq!(status, 200, "{body}");
    for _ in 0..4 {
        assert_eq!(ask(lb.addr("lb")), "b");
    }
    assert_eq!(
        lb.metric("spliced_config_reloads_total", &[("result", "error")]),
        1.0
    );

    // POST /api/v1/reload re-reads the file (still listing a).
    let (status, body) = http(admin, "POST", "/api/v1/reload", None, "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(ask(lb.addr("lb")), "a");
}

#[test]
fn fifty_reloads_under_traffic_lose_no_connection_and_no_byte() {
    let echo1 = Backend::echo();
    let echo2 = Backend::echo();
    let configs = [
        config(&[echo1.addr, echo2.addr], ""),
        config(&[echo2.addr], ""),
    ];
    let lb = Spliced::start(&configs[0]);
    let addr = lb.addr("lb");
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..4u64)
        .map(|t| {
            let (stop, done) = (stop.clone(), done.clone());
            std::thread::spawn(move || {
                let deadline = std::time::Instant::now() + WAIT;
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
                    let s = connect(addr);
                    let mut w = s.try_clone().unwrap();
                    let seed = t * 1_000_000 + n;
                    let len = 64 * 1024 + (n as usize % 7) * 10_000;
                    let writer = std::thread::spawn(move || {
                        let h = send_stream(&mut w, seed, len);
                        w.shutdown(std::net::Shutdown::Write).unwrap();
                        h
                    });
                    let mut r = s;
                    let got = read_all(&mut r);
                    assert_eq!(
                        got,
                        (len, writer.join().unwrap()),
                        "client {t} connection {n}"
                    );
                    done.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                }
            })
        })
        .collect();
    let admin = lb.admin.unwrap();
    for i in 0..50 {
        std::fs::write(lb.dir.join("spliced.yaml"), &configs[(i + 1) % 2]).unwrap();
        let (status, body) = http(admin, "POST", "/api/v1/reload", None, "");
        assert_eq!(status, 200, "reload {i}: {body}");
        let before = done.load(Ordering::Relaxed);
        wait_until("traffic between reloads", || {
            done.load(Ordering::Relaxed) > before
        });
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("a client saw a failure");
    }
    assert!(done.load(Ordering::Relaxed) >= 50);
    assert_eq!(
        lb.metric("spliced_config_reloads_total", &[("result", "ok")]),
        50.0
    );
    assert_eq!(
        lb.metric("spliced_config_reloads_total", &[("result", "error")]),
        0.0
    );
}
