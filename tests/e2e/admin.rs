//! The admin API over real HTTP: the pools view, backend changes that take
//! effect for new connections at once and atomically (a bad request changes
//! nothing), the bearer token, posted configs, 50 reloads under traffic
//! without a failed connection or a corrupted byte, and HTTP/1.1 as clients
//! speak it (keep-alive, chunked bodies) with a proper status for a request
//! that is malformed or too large.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::harness::*;

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

/// Reads one response from a kept-alive connection: (status, headers with
/// lowercased names, body of its Content-Length).
fn read_response(r: &mut BufReader<TcpStream>) -> (u16, Vec<(String, String)>, String) {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').expect("a header line");
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![0; length];
    r.read_exact(&mut body).unwrap();
    (status, headers, String::from_utf8(body).unwrap())
}

/// Sends `raw` on a new connection and reads until the server closes it
/// (a reset after the answer is tolerated: the server may close with our
/// unread bytes still queued): (status, whole answer).
fn raw_exchange(admin: SocketAddr, raw: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&admin, WAIT).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(raw).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"));
    (status, answer)
}

/// Guards keep-alive: the dashboard and scrapers reuse one connection, and
/// the hand-written server answered one request per connection.
#[test]
fn two_requests_on_one_kept_alive_connection_are_both_answered() {
    let a = Backend::named("a");
    let lb = Spliced::start(&config(&[a.addr], ""));
    let admin = lb.admin.unwrap();
    let s = TcpStream::connect_timeout(&admin, WAIT).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);

    write!(w, "GET /health HTTP/1.1\r\nHost: {admin}\r\n\r\n").unwrap();
    let (status, headers, body) = read_response(&mut r);
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    assert!(
        !headers
            .iter()
            .any(|(n, v)| n == "connection" && v == "close"),
        "{headers:?}"
    );

    write!(
        w,
        "GET /api/v1/pools HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let (status, _, body) = read_response(&mut r);
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["pools"][0]["name"], "p");
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
    assert!(
        rest.is_empty(),
        "closed after `Connection: close`: {rest:?}"
    );
}

/// Guards chunked request bodies (what a client streaming a config from a
/// pipe sends), which the hand-written server could not read.
#[test]
fn a_chunked_config_is_applied() {
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    let lb = Spliced::start(&config(&[a.addr], ""));
    let admin = lb.admin.unwrap();
    assert_eq!(ask(lb.addr("lb")), "a");
    let yaml = config(&[b.addr], "");
    let mut raw = format!(
        "PUT /api/v1/config HTTP/1.1\r\nHost: {admin}\r\nContent-Type: application/yaml\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    for chunk in yaml.as_bytes().chunks(40) {
        raw.push_str(&format!(
            "{:x}\r\n{}\r\n",
            chunk.len(),
            std::str::from_utf8(chunk).unwrap()
        ));
    }
    raw.push_str("0\r\n\r\n");
    let (status, answer) = raw_exchange(admin, raw.as_bytes());
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("applied"), "{answer}");
    for _ in 0..4 {
        assert_eq!(ask(lb.addr("lb")), "b");
    }
}

/// Guards the body cap: a declared length over it is refused at once,
/// without waiting for (or reading) the body, and the API keeps answering.
#[test]
fn a_body_over_the_limit_is_answered_413() {
    let a = Backend::named("a");
    let lb = Spliced::start(&config(&[a.addr], ""));
    let admin = lb.admin.unwrap();
    // Over the admin API's body cap and the 8 MiB a config may have.
    let declared = 9 * 1024 * 1024;
    let (status, answer) = raw_exchange(
        admin,
        format!(
            "PUT /api/v1/config HTTP/1.1\r\nHost: {admin}\r\nContent-Type: application/yaml\r\nContent-Length: {declared}\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(status, 413, "{answer}");
    assert!(answer.contains("larger than"), "{answer}");
    assert_eq!(http_get(admin, "/ready").0, 200);
    assert_eq!(ask(lb.addr("lb")), "a", "nothing was applied");
}

/// Guards the head cap: a head larger than the server will buffer gets 431,
/// not a silent close.
#[test]
fn an_oversized_header_is_answered_431() {
    let a = Backend::named("a");
    let lb = Spliced::start(&config(&[a.addr], ""));
    let admin = lb.admin.unwrap();
    let big = "x".repeat(64 * 1024);
    let (status, answer) = raw_exchange(
        admin,
        format!("GET /health HTTP/1.1\r\nHost: {admin}\r\nX-Big: {big}\r\n\r\n").as_bytes(),
    );
    assert_eq!(status, 431, "{answer}");
    assert_eq!(http_get(admin, "/health").0, 200);
}

/// Guards malformed requests: a request line that is not HTTP gets 400.
#[test]
fn a_malformed_request_line_is_answered_400() {
    let a = Backend::named("a");
    let lb = Spliced::start(&config(&[a.addr], ""));
    let admin = lb.admin.unwrap();
    for line in [
        "HELLO\r\n\r\n",
        "GET /health HTTP/9.9\r\n\r\n",
        "GET\x01 / HTTP/1.1\r\n\r\n",
    ] {
        let (status, answer) = raw_exchange(admin, line.as_bytes());
        assert_eq!(status, 400, "{line:?}: {answer}");
    }
    assert_eq!(http_get(admin, "/health").0, 200);
}

/// Guards the whole-request deadline past the head: hyper bounds the head
/// only, so a body that stops arriving must be cut off by the admin API.
#[test]
fn a_body_that_stops_arriving_is_answered_408() {
    let a = Backend::named("a");
    let lb = Spliced::start(&config(&[a.addr], ""));
    let admin = lb.admin.unwrap();
    // Ten bytes promised, one sent, the connection held open: only the
    // deadline (10 s) can end this, well within the read timeout (WAIT).
    let (status, answer) = raw_exchange(
        admin,
        format!(
            "POST /api/v1/pools/p/backends HTTP/1.1\r\nHost: {admin}\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n{{"
        )
        .as_bytes(),
    );
    assert_eq!(status, 408, "{answer}");
    assert!(answer.contains("did not arrive within"), "{answer}");
    assert_eq!(http_get(admin, "/ready").0, 200);
}

/// One HTTP/1.1 request on its own connection; the status.
fn http_status(addr: SocketAddr, host: &str, path: &str) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn pools_view_shows_http_listeners_their_requests_and_the_certificates() {
    let web = crate::http_backend::HttpBackend::start("web");
    let lb = Spliced::start(&format!(
        "workers: 2
admin:
  listen: 127.0.0.1:0
tls:
  - {{ name: main, self_signed: [localhost], default: localhost }}
listeners:
  - name: site
    listen: 127.0.0.1:0
    mode: http
    routes:
      - match: {{ path_prefix: /app/ }}
        pool: web
      - match: {{ path_prefix: /status/ }}
        pool: web
  - name: secure
    listen: 127.0.0.1:0
    mode: http
    tls: {{ store: main, alpn: [http/1.1], min_version: \"1.3\" }}
    pool: web
  - {{ name: raw, listen: 127.0.0.1:0, pool: web }}
pools:
  - name: web
    backends: [\"{}\"]
",
        web.addr
    ));
    let admin = lb.admin.unwrap();
    let site = lb.addr("site");
    for _ in 0..3 {
        assert_eq!(http_status(site, "localhost", "/app/x"), 200);
    }
    assert_eq!(http_status(site, "localhost", "/status/503"), 503);
    // No route and no default pool: spliced's own 404.
    assert_eq!(http_status(site, "localhost", "/elsewhere"), 404);
    let url = format!("https://localhost:{}/", lb.addr("secure").port());
    let resolve = format!("localhost:{}:127.0.0.1", lb.addr("secure").port());
    assert_eq!(
        crate::http::curl(&["-k", "--resolve", &resolve, &url]).status,
        200
    );

    let (code, body) = http_get(admin, "/api/v1/pools");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let listener = |name: &str| {
        v["listeners"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == name)
            .unwrap_or_else(|| panic!("no listener {name}: {v}"))
            .clone()
    };
    let (s, t, raw) = (listener("site"), listener("secure"), listener("raw"));
    assert_eq!(raw["mode"], "tcp", "{raw}");
    assert!(raw.get("requests").is_none(), "{raw}");
    assert_eq!(s["mode"], "http", "{s}");
    assert_eq!(s["tls"], serde_json::Value::Null, "{s}");
    assert_eq!(s["routes"][0]["path_prefix"], "/app/", "{s}");
    assert_eq!(s["routes"][0]["pool"], "web", "{s}");
    assert_eq!(s["requests"]["2xx"], 3, "{s}");
    assert_eq!(s["requests"]["5xx"], 1, "{s}");
    assert_eq!(s["requests"]["4xx"], 1, "{s}");
    assert_eq!(s["requests"]["total"], 5, "{s}");
    assert_eq!(s["local_responses"]["4xx"], 1, "{s}");
    assert_eq!(s["latency"]["count"], 4, "{s}");
    assert!(s["latency"]["p99_seconds"].as_f64().unwrap() > 0.0, "{s}");
    assert!(s["latency"]["mean_seconds"].as_f64().unwrap() > 0.0, "{s}");
    assert_eq!(s["tls_handshakes"], serde_json::Value::Null, "{s}");

    assert_eq!(t["tls"]["store"], "main", "{t}");
    assert_eq!(t["tls"]["alpn"], serde_json::json!(["http/1.1"]), "{t}");
    assert_eq!(t["tls"]["min_version"], "1.3", "{t}");
    assert_eq!(t["tls_handshakes"]["ok"], 1, "{t}");
    assert_eq!(t["tls_handshakes"]["failed"], 0, "{t}");
    assert_eq!(t["requests"]["2xx"], 1, "{t}");

    let b = backend_json(&v, &web.addr.to_string());
    assert_eq!(b["http_responses"]["site"]["2xx"], 3, "{b}");
    assert_eq!(b["http_responses"]["site"]["5xx"], 1, "{b}");
    assert_eq!(b["http_responses"]["secure"]["total"], 1, "{b}");

    let store = &v["tls_stores"][0];
    assert_eq!(store["name"], "main", "{v}");
    let cert = &store["certs"][0];
    assert_eq!(cert["names"], serde_json::json!(["localhost"]), "{store}");
    assert_eq!(cert["source"], "self_signed", "{store}");
    assert!(cert["not_after_unix"].as_i64().unwrap() > 0, "{store}");
    let not_after = cert["not_after"].as_str().unwrap();
    assert!(
        not_after.ends_with('Z') && not_after.as_bytes()[10] == b'T',
        "{not_after}"
    );
    assert_eq!(cert["sha256"].as_str().unwrap().len(), 95, "{store}");
}
