//! A route's per-request features from outside: sticky sessions (`sticky:`,
//! driven by curl with a cookie jar, and re-pinned through the admin API and
//! a reload) and rate limits (`rate_limit:`, by header and by address, over
//! both workers, with a raw keep-alive client for the bounded load).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::http::curl;
use crate::http_backend::HttpBackend;

const SECRET: &str = "e2e-sticky-secret-0123456789";

/// `web` routes everything to pool `p` (round robin over `backends`) with
/// `route` lines added to its one route.
fn config(backends: &[&HttpBackend], route: &str) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{}\"", b.addr)).collect();
    format!(
        "workers: 2\nadmin:\n  listen: 127.0.0.1:0\nlisteners:\n  - name: web\n    listen: 127.0.0.1:0\n    mode: http\n    routes:\n      - pool: p\n{route}pools:\n  - name: p\n    algorithm: round_robin\n    backends: [{}]\n",
        list.join(", ")
    )
}

const STICKY: &str = "        sticky: { cookie: SPLICED_ID, secure: false, same_site: lax, secret: \"e2e-sticky-secret-0123456789\" }\n";

/// The `SPLICED_ID` value a response head sets, if any.
fn set_cookie(head: &str) -> Option<String> {
    head.lines()
        .find_map(|l| l.strip_prefix("set-cookie: spliced_id="))
        .map(|v| v.split(';').next().unwrap().trim().to_owned())
}

fn backend_of(head: &str) -> String {
    head.lines()
        .find_map(|l| l.strip_prefix("x-backend: "))
        .unwrap_or("?")
        .trim()
        .to_owned()
}

/// `n` requests in one curl run (one kept-alive connection) reading and
/// writing the cookie `jar`: the backend of each answer.
fn backends_with_jar(web: SocketAddr, jar: &Path, n: usize) -> Vec<String> {
    let curl = peer_tool("curl").expect("curl");
    let jar = jar.to_str().unwrap();
    let out = Command::new(curl)
        .args(["-s", "-S", "--max-time", "60", "-b", jar, "-c", jar])
        .args(["-o", "/dev/null", "-w", "%header{x-backend}\n"])
        .arg(format!("http://{web}/n/[1-{n}]"))
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let got: Vec<String> = text.lines().map(str::to_owned).collect();
    assert_eq!(got.len(), n, "{text}");
    got
}

/// The value the jar holds for `SPLICED_ID`.
fn jar_value(jar: &Path) -> String {
    let text = std::fs::read_to_string(jar).unwrap();
    text.lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() == 7 && f[5] == "SPLICED_ID").then(|| f[6].to_owned())
        })
        .unwrap_or_else(|| panic!("no SPLICED_ID in the jar:\n{text}"))
}

fn backend_path(addr: SocketAddr) -> String {
    format!(
        "/api/v1/pools/p/backends/{}",
        addr.to_string().replace(':', "%3A")
    )
}

/// Guards the sticky contract: the first answer sets an opaque cookie (no
/// address in it), a thousand requests with it reach one backend, and when
/// that backend is drained, then removed, the request is balanced anew and
/// the cookie re-issued for the new backend, which then sticks.
#[test]
fn a_sticky_cookie_pins_one_backend_and_is_reissued_when_that_backend_is_drained_or_removed() {
    let bs = [
        HttpBackend::start("a"),
        HttpBackend::start("b"),
        HttpBackend::start("c"),
    ];
    let lb = Spliced::start(&config(&bs.iter().collect::<Vec<_>>(), STICKY));
    let web = lb.addr("web");
    let admin = lb.admin.unwrap();
    let first = curl(&[&format!("http://{web}/")]);
    assert_eq!(first.status, 200, "{}", first.head);
    let cookie_line = first
        .head
        .lines()
        .find(|l| l.starts_with("set-cookie: spliced_id="))
        .unwrap_or_else(|| panic!("no cookie set: {}", first.head))
        .to_owned();
    assert!(
        cookie_line.ends_with("; path=/; httponly; samesite=lax"),
        "{cookie_line}"
    );
    let id = set_cookie(&first.head).unwrap();
    assert_eq!(id.len(), 32, "{id}");
    for b in &bs {
        let port = b.addr.port().to_string();
        assert!(
            !id.contains(&port) && !id.contains("127"),
            "the cookie names no address: {id}"
        );
    }
    let pinned = backend_of(&first.head);

    let dir = temp_dir();
    let jar = dir.join("jar");
    // Seed the jar with the first cookie as curl would have stored it.
    std::fs::write(
        &jar,
        format!("127.0.0.1\tFALSE\t/\tFALSE\t0\tSPLICED_ID\t{id}\n"),
    )
    .unwrap();
    let seen = backends_with_jar(web, &jar, 1000);
    assert!(
        seen.iter().all(|b| *b == pinned),
        "1000 requests with the cookie stay on {pinned}: {:?}",
        seen.iter().filter(|b| **b != pinned).count()
    );
    assert_eq!(
        jar_value(&jar),
        id,
        "a pinned request is not given a new cookie"
    );

    // Drain the pinned backend: balanced anew, re-pinned, and it sticks.
    let pinned_addr = bs.iter().find(|b| b.name() == pinned).unwrap().addr;
    let (status, body) = http(
        admin,
        "PATCH",
        &backend_path(pinned_addr),
        None,
        r#"{"drain": true}"#,
    );
    assert_eq!(status, 200, "{body}");
    let seen = backends_with_jar(web, &jar, 50);
    let repinned = seen[0].clone();
    assert_ne!(repinned, pinned, "a drained backend is left");
    assert!(seen.iter().all(|b| *b == repinned), "{seen:?}");
    let new_id = jar_value(&jar);
    assert_ne!(new_id, id, "the cookie is re-issued for the new backend");

    // Remove that one: balanced anew to the third.
    let repinned_addr = bs.iter().find(|b| b.name() == repinned).unwrap().addr;
    let (status, body) = http(admin, "DELETE", &backend_path(repinned_addr), None, "");
    assert_eq!(status, 200, "{body}");
    let seen = backends_with_jar(web, &jar, 50);
    let third = bs
        .iter()
        .map(|b| b.name())
        .find(|n| *n != pinned && *n != repinned)
        .unwrap();
    assert!(seen.iter().all(|b| b == third), "{seen:?}");
    assert_ne!(jar_value(&jar), new_id);
}

/// Guards the id's stability: it is a MAC of the pool and backend under a
/// shared secret, so a reload that reorders the backends, and another
/// instance with the same config, send the cookie to the same backend.
#[test]
fn a_sticky_cookie_survives_a_reload_and_works_on_another_instance_sharing_the_secret() {
    let bs = [HttpBackend::start("a"), HttpBackend::start("b")];
    let lb = Spliced::start(&config(&[&bs[0], &bs[1]], STICKY));
    let web = lb.addr("web");
    let first = curl(&[&format!("http://{web}/")]);
    let id = set_cookie(&first.head).expect("cookie set");
    let pinned = backend_of(&first.head);
    let with = |addr: SocketAddr, cookie: &str| {
        curl(&[
            "-H",
            &format!("Cookie: {cookie}"),
            &format!("http://{addr}/"),
        ])
    };
    for _ in 0..4 {
        let got = with(web, &format!("SPLICED_ID={id}"));
        assert_eq!(backend_of(&got.head), pinned);
        assert_eq!(set_cookie(&got.head), None);
    }

    let before = lb.log_count("configuration reloaded");
    std::fs::write(
        lb.dir.join("spliced.yaml"),
        config(&[&bs[1], &bs[0]], STICKY),
    )
    .unwrap();
    lb.signal("HUP");
    wait_until("the reload", || {
        lb.log_count("configuration reloaded") > before
    });
    for _ in 0..4 {
        let got = with(web, &format!("SPLICED_ID={id}"));
        assert_eq!(backend_of(&got.head), pinned, "after a reload");
    }

    let other = Spliced::start(&config(&[&bs[1], &bs[0]], STICKY));
    for _ in 0..4 {
        let got = with(other.addr("web"), &format!("SPLICED_ID={id}"));
        assert_eq!(backend_of(&got.head), pinned, "on another instance");
    }
    drop(other);

    // A different secret makes a different id: the old cookie pins nothing.
    let before = lb.log_count("configuration reloaded");
    let other_secret = STICKY.replace(SECRET, "another-secret-9876543210");
    std::fs::write(
        lb.dir.join("spliced.yaml"),
        config(&[&bs[0], &bs[1]], &other_secret),
    )
    .unwrap();
    lb.signal("HUP");
    wait_until("the reload", || {
        lb.log_count("configuration reloaded") > before
    });
    let got = with(web, &format!("SPLICED_ID={id}"));
    let reissued = set_cookie(&got.head).expect("an unknown id is re-issued");
    assert_ne!(reissued, id);
}

/// Guards the cookie's integrity and privacy: a tampered or made-up value
/// pins nothing (the request is balanced and given a real cookie), the
/// backend never sees spliced's cookie, and the client's other cookies
/// reach it untouched.
#[test]
fn a_tampered_sticky_cookie_is_ignored_and_other_cookies_reach_the_backend() {
    let bs = [HttpBackend::start("a"), HttpBackend::start("b")];
    let lb = Spliced::start(&config(&[&bs[0], &bs[1]], STICKY));
    let web = lb.addr("web");
    let first = curl(&[&format!("http://{web}/")]);
    let id = set_cookie(&first.head).unwrap();
    let pinned = backend_of(&first.head);
    let got = curl(&[
        "-H",
        &format!("Cookie: theme=dark; SPLICED_ID={id}; lang=en"),
        &format!("http://{web}/"),
    ]);
    assert_eq!(backend_of(&got.head), pinned);
    assert!(
        got.body.contains("cookie: theme=dark; lang=en\n"),
        "{}",
        got.body
    );
    assert!(
        !got.body.contains(&id),
        "the backend never sees the id: {}",
        got.body
    );

    // Flip one hex digit: pins nothing, so round robin spreads the requests,
    // and each answer carries a genuine cookie.
    let last = id.chars().last().unwrap();
    let flipped = if last == '0' { '1' } else { '0' };
    let tampered = format!("{}{flipped}", &id[..31]);
    let mut owners = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let got = curl(&[
            "-H",
            &format!("Cookie: SPLICED_ID={tampered}"),
            &format!("http://{web}/"),
        ]);
        owners.insert(backend_of(&got.head));
        let issued = set_cookie(&got.head).expect("re-issued");
        assert_ne!(issued, tampered);
        assert!(!got.body.contains("spliced_id"), "{}", got.body);
    }
    assert_eq!(owners.len(), 2, "a tampered cookie is balanced: {owners:?}");
    for made_up in [bs[0].addr.to_string(), "a".repeat(32), String::new()] {
        let got = curl(&[
            "-H",
            &format!("Cookie: SPLICED_ID={made_up}"),
            &format!("http://{web}/"),
        ]);
        assert_eq!(got.status, 200);
        assert!(set_cookie(&got.head).is_some(), "{made_up}: {}", got.head);
    }
}

/// A kept-alive HTTP/1.1 client that reads answers by Content-Length.
struct Client {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Client {
    fn new(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.set_nodelay(true).unwrap();
        Client {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        }
    }

    /// (status, head lower-cased, body).
    fn get(&mut self, path: &str, headers: &str) -> (u16, String, String) {
        write!(self.w, "GET {path} HTTP/1.1\r\nHost: e2e\r\n{headers}\r\n").unwrap();
        let mut head = String::new();
        loop {
            let mut line = String::new();
            assert!(self.r.read_line(&mut line).unwrap() > 0, "closed: {head}");
            if line == "\r\n" {
                break;
            }
            head.push_str(&line.to_ascii_lowercase());
        }
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap_or_else(|| panic!("no content-length: {head}"))
            .trim()
            .parse()
            .unwrap();
        let mut body = vec![0; len];
        self.r.read_exact(&mut body).unwrap();
        (status, head, String::from_utf8_lossy(&body).into_owned())
    }
}

const LIMITS: &str =
    "        rate_limit:\n          - { key: \"header:X-API-Key\", rate: 1/m, burst: 5 }\n";

/// Guards the burst and the keys: past a key's burst the next request gets
/// 429 with Retry-After and never reaches the backend; another key has its
/// own budget; a request without the header counts by its address; each
/// refusal is counted in `spliced_http_rate_limited_total`.
#[test]
fn past_its_burst_a_key_gets_429_with_retry_after_and_keys_are_independent() {
    let a = HttpBackend::start("a");
    let lb = Spliced::start(&config(&[&a], LIMITS));
    let web = lb.addr("web");
    let mut c = Client::new(web);
    for key in ["k1", "k2"] {
        for i in 0..5 {
            let (status, _, body) = c.get("/", &format!("X-API-Key: {key}\r\n"));
            assert_eq!(status, 200, "{key} request {i}: {body}");
        }
        let (status, head, body) = c.get("/", &format!("X-API-Key: {key}\r\n"));
        assert_eq!(status, 429, "{key}: the 6th is over the burst");
        let retry: u64 = head
            .lines()
            .find_map(|l| l.strip_prefix("retry-after: "))
            .expect("Retry-After")
            .trim()
            .parse()
            .unwrap();
        // One request a minute: the next is due in at most 60 s.
        assert!((1..=60).contains(&retry), "{retry}");
        assert_eq!(body, "429 too many requests\n");
    }
    // No header: the client's address, a budget of its own.
    for _ in 0..5 {
        assert_eq!(c.get("/", "").0, 200);
    }
    assert_eq!(c.get("/", "").0, 429);
    assert_eq!(c.get("/", "X-API-Key: k1\r\n").0, 429, "k1 is still spent");
    assert_eq!(a.requests(), 15, "refused requests never reach the backend");
    let limited = lb.metric(
        "spliced_http_rate_limited_total",
        &[
            ("listener", "web"),
            ("pool", "p"),
            ("key", "header:X-API-Key"),
        ],
    );
    assert_eq!(limited, 4.0);
}

/// Guards the shared budget: clients on both workers hammer one key for a
/// bounded window; what is admitted stays within 5% of rate × time + burst.
#[test]
fn requests_admitted_across_workers_stay_within_five_percent_of_the_configured_rate() {
    const RATE: f64 = 200.0;
    const BURST: f64 = 20.0;
    const WINDOW: Duration = Duration::from_secs(2);
    let a = HttpBackend::start("a");
    let route = "        rate_limit: { key: ip, rate: 200/s, burst: 20 }\n";
    let yaml = config(&[&a], route).replace(
        "      - pool: p\n",
        "      - { match: { path_prefix: /free/ }, pool: p }\n      - pool: p\n",
    );
    let lb = Spliced::start(&yaml);
    let web = lb.addr("web");
    // SO_REUSEPORT spreads connections over both workers by their ports:
    // open clients (each answered once, on an unlimited route) until at
    // least eight are open and both workers have accepted some.
    let mut clients = Vec::new();
    let workers_used = |lb: &Spliced| {
        lb.metrics()
            .iter()
            .filter(|(k, v)| k.starts_with("spliced_worker_accepted_total{") && **v > 0.0)
            .count()
    };
    while clients.len() < 8 || workers_used(&lb) < 2 {
        assert!(clients.len() < 64, "every connection went to one worker");
        let mut c = Client::new(web);
        assert_eq!(c.get("/free/", "").0, 200);
        clients.push(c);
    }
    let warm_up = clients.len() as u64;
    let started = Instant::now();
    let counts: Vec<(u64, u64, Instant)> = std::thread::scope(|s| {
        let handles: Vec<_> = clients
            .into_iter()
            .map(|mut c| {
                s.spawn(move || {
                    let (mut ok, mut limited) = (0u64, 0u64);
                    let mut last = Instant::now();
                    while started.elapsed() < WINDOW {
                        match c.get("/", "").0 {
                            200 => ok += 1,
                            429 => limited += 1,
                            other => panic!("status {other}"),
                        }
                        last = Instant::now();
                    }
                    (ok, limited, last)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let admitted: u64 = counts.iter().map(|c| c.0).sum();
    let refused: u64 = counts.iter().map(|c| c.1).sum();
    let end = counts.iter().map(|c| c.2).max().unwrap();
    let elapsed = end.duration_since(started).as_secs_f64();
    let expected = RATE * elapsed + BURST;
    eprintln!(
        "rate limit: admitted {admitted} (expected {expected:.0} = {RATE}/s x {elapsed:.3} s + {BURST}), refused {refused}, offered {:.0}/s",
        (admitted + refused) as f64 / elapsed
    );
    assert!(
        refused as f64 > admitted as f64,
        "the load must offer well over the rate: {admitted} admitted, {refused} refused"
    );
    let off = (admitted as f64 - expected).abs() / expected;
    assert!(
        off <= 0.05,
        "admitted {admitted}, expected {expected:.0}: {:.1}% off",
        off * 100.0
    );
    assert_eq!(a.requests(), admitted + warm_up);
    let limited = lb.metric(
        "spliced_http_rate_limited_total",
        &[("listener", "web"), ("pool", "p"), ("key", "ip")],
    );
    assert_eq!(limited, refused as f64);
}
