//! The dashboard in a real browser: headless Chromium (Debian's package) driven
//! by playwright-core (tests/browser/dashboard.test.mjs) against spliced with
//! real backends and live traffic. The page must load, list every backend, draw
//! the traffic, and drain a backend from a click; this side then checks over
//! the API and with new connections that the drain took effect. An HTTP
//! listener with live requests must show its request count and rate moving,
//! and a certificate 5 days from expiry must be highlighted. Leaves a
//! screenshot at target/dashboard.png.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::*;

const CHROMIUM: &str = "/usr/bin/chromium";
/// Bound on the whole browser run (each of its waits is at most 30 s; it
/// normally takes about 10 s).
const BROWSER_RUN: Duration = Duration::from_secs(120);
const TOKEN: &str = "dashboard-test-token";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Why the browser test cannot run here, if it cannot.
fn missing_browser() -> Option<String> {
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !matches!(node, Ok(s) if s.success()) {
        return Some("node is not installed".into());
    }
    if !Path::new(CHROMIUM).exists() {
        return Some(format!("{CHROMIUM} is not installed"));
    }
    if !root()
        .join("tests/browser/node_modules/playwright-core/package.json")
        .exists()
    {
        return Some("tests/browser has no node_modules/playwright-core".into());
    }
    None
}

/// One request/response on a fresh connection through the balancer: which
/// backend answered.
fn ask(addr: SocketAddr, payload: &str) -> std::io::Result<String> {
    let s = connect(addr);
    let mut w = s.try_clone()?;
    writeln!(w, "{payload}")?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line)?;
    Ok(line.split_whitespace().next().unwrap_or("").to_string())
}

/// Short connections carrying a few KiB each way, plus one slower client that
/// keeps a connection open for a while, until `stop` (or a bound).
fn traffic(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicU64>,
) -> Vec<std::thread::JoinHandle<()>> {
    let deadline = Instant::now() + BROWSER_RUN + WAIT;
    let short = {
        let (stop, served) = (stop.clone(), served.clone());
        std::thread::spawn(move || {
            let payload = "x".repeat(4096);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                if matches!(ask(addr, &payload), Ok(n) if !n.is_empty()) {
                    served.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(15));
            }
        })
    };
    let long = std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            let s = connect(addr);
            let mut w = s.try_clone().unwrap();
            let mut r = BufReader::new(s);
            for _ in 0..20 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let mut line = String::new();
                if writeln!(w, "ping").is_err() || r.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    });
    vec![short, long]
}

/// Plain HTTP/1.1 requests to an HTTP listener, one connection each, every
/// tenth answered 503 by the backend, until `stop` (or a bound).
fn http_traffic(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    let deadline = Instant::now() + BROWSER_RUN + WAIT;
    std::thread::spawn(move || {
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            i += 1;
            let path = if i.is_multiple_of(10) {
                "/status/503"
            } else {
                "/"
            };
            let s = connect(addr);
            let _ = s.set_read_timeout(Some(WAIT));
            let mut w = s.try_clone().unwrap();
            let mut text = String::new();
            let sent = write!(
                w,
                "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
            );
            if sent.is_ok()
                && BufReader::new(s).read_to_string(&mut text).is_ok()
                && text.starts_with("HTTP/1.1 ")
            {
                served.fetch_add(1, Ordering::Relaxed);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}

/// A certificate for `name` that expires in `days` days (from the openssl
/// command line), or `None` where openssl is missing.
fn short_lived_cert(dir: &Path, name: &str, days: u32) -> Option<(PathBuf, PathBuf)> {
    let (cert, key) = (dir.join("soon.pem"), dir.join("soon.key"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args([
            "-nodes",
            "-days",
            &days.to_string(),
            "-subj",
            &format!("/CN={name}"),
        ])
        .args(["-addext", &format!("subjectAltName=DNS:{name}")])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    matches!(status, Ok(s) if s.success()).then_some((cert, key))
}

fn read_to_end(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = r.read_to_string(&mut text);
        text
    })
}

fn backend_json<'a>(api: &'a serde_json::Value, address: &str) -> &'a serde_json::Value {
    api["pools"]
        .as_array()
        .expect("pools array")
        .iter()
        .flat_map(|p| p["backends"].as_array().expect("backends array"))
        .find(|b| b["address"] == address)
        .unwrap_or_else(|| panic!("{address} not in the API answer: {api}"))
}

#[test]
fn dashboard_in_a_real_browser_shows_live_traffic_and_drains_a_backend() {
    if let Some(why) = missing_browser() {
        if std::env::var_os("SPLICED_REQUIRE_BROWSER").is_some() {
            panic!("{why}, and SPLICED_REQUIRE_BROWSER is set: run scripts/install-browser.sh");
        }
        eprintln!("SKIPPED dashboard browser test: {why} (run scripts/install-browser.sh)");
        return;
    }
    let a = Backend::named("a");
    let b = Backend::named("b");
    let c = Backend::named("c");
    let dead = refused_addr();
    let names: HashMap<String, &str> = [(a.addr, "a"), (b.addr, "b"), (c.addr, "c")]
        .iter()
        .map(|(addr, n)| (addr.to_string(), *n))
        .collect();

    let site = crate::http_backend::HttpBackend::start("site");

    let dir = temp_dir();
    let token_file = dir.join("admin.token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    // A certificate 5 days from expiry, which the page must highlight.
    let soon = short_lived_cert(&dir, "soon.example", 5);
    let certs = soon.as_ref().map_or(String::new(), |(c, k)| {
        format!(
            "    certs: [{{ cert: {}, key: {} }}]\n",
            c.display(),
            k.display()
        )
    });
    let config = format!(
        "workers: 2
admin:
  listen: 127.0.0.1:0
  token_file: {token}
tls:
  - name: main
    self_signed: [localhost]
{certs}    default: localhost
listeners:
  - {{ name: web, listen: 127.0.0.1:0, pool: web, retries: 2 }}
  - name: site
    listen: 127.0.0.1:0
    mode: http
    pool: site
    routes:
      - match: {{ path_prefix: /status/ }}
        pool: site
  - {{ name: secure, listen: 127.0.0.1:0, mode: http, tls: {{ store: main }}, pool: site }}
pools:
  - name: site
    backends: [\"{site}\"]
  - name: web
    algorithm: round_robin
    health_check: {{ kind: tcp, interval: 500ms, timeout: 300ms, rise: 2, fall: 2 }}
    backends:
      - {{ address: \"{a}\" }}
      - {{ address: \"{b}\" }}
      - {{ address: \"{c}\" }}
      - {{ address: \"{dead}\", weight: 2 }}
",
        token = token_file.display(),
        a = a.addr,
        b = b.addr,
        c = c.addr,
        site = site.addr,
    );
    let lb = Spliced::start(&config);
    let admin = lb.admin.expect("admin listener");
    let addr = lb.addr("web");

    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let mut threads = traffic(addr, stop.clone(), served.clone());
    let http_served = Arc::new(AtomicU64::new(0));
    threads.push(http_traffic(
        lb.addr("site"),
        stop.clone(),
        http_served.clone(),
    ));
    wait_until("traffic flowing through spliced", || {
        served.load(Ordering::Relaxed) > 20 && http_served.load(Ordering::Relaxed) > 20
    });

    let screenshot = root().join("target/dashboard.png");
    let _ = std::fs::create_dir_all(screenshot.parent().unwrap());
    let _ = std::fs::remove_file(&screenshot);
    let backends = [a.addr, b.addr, c.addr, dead]
        .iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let started = Instant::now();
    let mut node = Command::new("node")
        .arg(root().join("tests/browser/dashboard.test.mjs"))
        .arg(format!("http://{admin}/"))
        .arg(&screenshot)
        .current_dir(root().join("tests/browser"))
        .env("SPLICED_TEST_BACKENDS", &backends)
        .env("SPLICED_TEST_DRAIN", a.addr.to_string())
        .env("SPLICED_TEST_WEIGHT", format!("{}=3", b.addr))
        .env("SPLICED_TEST_TOKEN", TOKEN)
        .env("SPLICED_TEST_HTTP_LISTENER", "site")
        .env(
            "SPLICED_TEST_EXPIRING",
            if soon.is_some() { "soon.example" } else { "" },
        )
        .env("SPLICED_TEST_NOT_EXPIRING", "localhost")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node");
    let out = read_to_end(node.stdout.take().unwrap());
    let err = read_to_end(node.stderr.take().unwrap());
    let status = loop {
        if let Some(status) = node.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > BROWSER_RUN {
            let _ = node.kill();
            let _ = node.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    eprintln!(
        "browser run took {:.1}s:\n{out}{err}",
        started.elapsed().as_secs_f64()
    );
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!(
            "browser test failed ({s}):\n{out}{err}\nspliced log:\n{}",
            lb.log_text()
        ),
        None => panic!("browser test did not finish within {BROWSER_RUN:?}:\n{out}{err}"),
    }
    assert!(
        screenshot.exists(),
        "no screenshot at {}",
        screenshot.display()
    );

    // The click reached spliced: the API says so...
    let (code, body) = http_get(admin, "/api/v1/pools");
    assert_eq!(code, 200, "{body}");
    let api: serde_json::Value = serde_json::from_str(&body).expect("API answers JSON");
    let drained = backend_json(&api, &a.addr.to_string());
    assert_eq!(drained["drain"], true, "{drained}");
    assert_eq!(drained["state"], "draining", "{drained}");
    assert_eq!(backend_json(&api, &b.addr.to_string())["weight"], 3);
    let http = api["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "site")
        .expect("the HTTP listener in the API answer");
    assert_eq!(http["mode"], "http", "{http}");
    assert!(http["requests"]["2xx"].as_u64().unwrap() > 0, "{http}");
    assert!(http["requests"]["5xx"].as_u64().unwrap() > 0, "{http}");

    // ...and new connections avoid the drained backend.
    let mut answered: HashMap<String, u32> = HashMap::new();
    for i in 0..30 {
        let who = ask(addr, &format!("after-drain {i}")).expect("request after drain");
        *answered.entry(who).or_default() += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    assert!(
        !answered.contains_key(names[&a.addr.to_string()]),
        "drained backend still got new connections: {answered:?}"
    );
    assert_eq!(
        answered.values().sum::<u32>(),
        30,
        "every request answered: {answered:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
