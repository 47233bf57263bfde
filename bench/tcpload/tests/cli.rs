//! End-to-end tests of the tcpload binary: each mode against `tcpload
//! serve` on loopback, checking the JSON contract that bench.py relies on.
//!
//! Every wait is bounded: child processes are killed and the test fails if
//! they overrun, and readiness is learnt from the READY / ready lines, never
//! from sleeps.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStderr, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_tcpload");
/// Generous bound for any single child run (the runs themselves are ~1 s).
const LIMIT: Duration = Duration::from_secs(20);

/// A `tcpload serve` child, killed on drop if the test did not stop it.
struct Server {
    child: Option<Child>,
    addr: String,
    /// Keeps the stderr drain thread's pipe alive.
    _stderr: thread::JoinHandle<()>,
}

impl Server {
    fn start() -> Server {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--threads", "2"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tcpload serve");
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let drain = thread::spawn(move || read_ready(stderr, tx));
        let addr = match rx.recv_timeout(LIMIT) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!("tcpload serve printed no READY line in {LIMIT:?}");
            }
        };
        Server {
            child: Some(child),
            addr,
            _stderr: drain,
        }
    }

    /// SIGTERM, then the final JSON.
    fn stop(mut self) -> Value {
        let child = self.child.take().unwrap();
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let out = wait_bounded(child);
        assert!(out.status.success(), "serve exited with {:?}", out.status);
        one_json(&out.stdout)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Sends the address from the READY line, then keeps draining stderr so
/// the server never blocks writing to it.
fn read_ready(stderr: ChildStderr, tx: mpsc::Sender<String>) {
    let mut lines = BufReader::new(stderr).lines();
    for line in lines.by_ref() {
        let Ok(line) = line else { return };
        if let Some(rest) = line.strip_prefix("READY ") {
            let first = rest.split_whitespace().next().unwrap_or("").to_string();
            let _ = tx.send(first);
            break;
        }
    }
    for _ in lines {}
}

/// Waits for `child` to exit, killing it if it takes longer than LIMIT.
fn wait_bounded(child: Child) -> Output {
    let pid = child.id() as libc::pid_t;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(LIMIT) {
        Ok(out) => out.expect("waiting for child"),
        Err(_) => {
            // SAFETY: kill(2) on the pid of a child we have not reaped.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
            panic!("child {pid} ran longer than {LIMIT:?}");
        }
    }
}

fn run(args: &[&str]) -> Output {
    let child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tcpload");
    wait_bounded(child)
}

/// stdout must be exactly one JSON object (one line).
fn one_json(stdout: &[u8]) -> Value {
    let text = String::from_utf8_lossy(stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "expected one JSON line, got {text:?}");
    serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("bad JSON {:?}: {e}", lines[0]))
}

fn errors_total(v: &Value) -> u64 {
    ["connect", "timeout", "reset", "short"]
        .iter()
        .map(|k| {
            v["errors"][*k]
                .as_u64()
                .unwrap_or_else(|| panic!("errors.{k} in {v}"))
        })
        .sum()
}

fn check_latency(v: &Value) {
    for k in ["p50", "p90", "p99", "p999", "max", "mean"] {
        assert!(v["lat_us"][k].is_number(), "lat_us.{k} missing in {v}");
    }
    let p50 = v["lat_us"]["p50"].as_u64().unwrap();
    let max = v["lat_us"]["max"].as_u64().unwrap();
    assert!(p50 > 0 && p50 <= max, "implausible latencies in {v}");
}

#[test]
fn rate_echo_hold_against_serve() {
    let server = Server::start();
    let addr = server.addr.clone();

    let out = run(&[
        "rate",
        "--target",
        &addr,
        "--duration",
        "1",
        "--concurrency",
        "8",
        "--payload",
        "16",
        "--sources",
        "127.0.0.2-127.0.0.20",
    ]);
    assert!(out.status.success(), "rate failed: {out:?}");
    let v = one_json(&out.stdout);
    assert_eq!(v["mode"], "rate");
    assert!(v["connections"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(errors_total(&v), 0, "{v}");
    assert!(v["rate"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["secs"].as_f64().unwrap() > 0.5, "{v}");
    check_latency(&v);

    // Connect-only with RST close.
    let out = run(&[
        "rate",
        "--target",
        &addr,
        "--duration",
        "0.5",
        "--concurrency",
        "4",
        "--linger0",
        "--threads",
        "2",
    ]);
    assert!(out.status.success(), "rate --linger0 failed: {out:?}");
    let v = one_json(&out.stdout);
    assert!(v["connections"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["errors"]["connect"], 0, "{v}");

    let out = run(&[
        "echo",
        "--target",
        &addr,
        "--conns",
        "4",
        "--size",
        "100",
        "--duration",
        "1",
        "--threads",
        "2",
    ]);
    assert!(out.status.success(), "echo failed: {out:?}");
    let v = one_json(&out.stdout);
    assert_eq!(v["mode"], "echo");
    assert_eq!(v["conns"], 4, "{v}");
    let rts = v["round_trips"].as_u64().unwrap();
    assert!(rts > 0, "{v}");
    assert_eq!(v["bytes"].as_u64().unwrap(), rts * 100, "{v}");
    assert_eq!(errors_total(&v), 0, "{v}");
    check_latency(&v);

    // hold: ready line, then stdin EOF releases it.
    let mut child = Command::new(BIN)
        .args([
            "hold",
            "--target",
            &addr,
            "--conns",
            "200",
            "--sources",
            "127.0.0.2,127.0.0.3",
            "--in-flight",
            "64",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn hold");
    let stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let ready = rx.recv_timeout(LIMIT).expect("hold printed no ready line");
    let v: Value = serde_json::from_str(&ready).expect("ready line is JSON");
    assert_eq!(v["event"], "ready", "{v}");
    assert_eq!(v["held"], 200, "{v}");
    assert_eq!(v["failed"], 0, "{v}");
    drop(stdin); // EOF: release
    let done = rx.recv_timeout(LIMIT).expect("hold printed no done line");
    let v: Value = serde_json::from_str(&done).expect("done line is JSON");
    assert_eq!(v["event"], "done", "{v}");
    assert_eq!(v["held"], 200, "{v}");
    assert_eq!(v["dropped"], 0, "{v}");
    assert_eq!(v["alive_checked"], 100, "{v}");
    assert_eq!(v["alive_ok"], 100, "{v}");
    let out = wait_bounded(child);
    assert!(out.status.success(), "hold exited with {:?}", out.status);

    let v = server.stop();
    assert!(v["accepted"].as_u64().unwrap() >= 204, "{v}");
    assert!(v["bytes"].as_u64().unwrap() > 0, "{v}");
    assert!(v["max_open"].as_u64().unwrap() >= 200, "{v}");
}

#[test]
fn serve_echoes_through_half_close() {
    let server = Server::start();
    let mut s = TcpStream::connect(&server.addr).expect("connect to serve");
    s.set_read_timeout(Some(LIMIT)).unwrap();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    // Write from another thread: the echo comes back while we write.
    let mut w = s.try_clone().unwrap();
    let sent = data.clone();
    let writer = thread::spawn(move || {
        w.write_all(&sent).unwrap();
        w.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut back = Vec::new();
    s.read_to_end(&mut back)
        .expect("read echo until the server's FIN");
    writer.join().unwrap();
    assert_eq!(back.len(), data.len());
    assert!(back == data, "echoed bytes differ");
    let v = server.stop();
    assert_eq!(v["bytes"].as_u64().unwrap(), data.len() as u64, "{v}");
}

#[test]
fn hold_refuses_more_sockets_than_the_fd_limit() {
    let out = run(&["hold", "--target", "127.0.0.1:9", "--conns", "10000000"]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("split the work over several processes"),
        "{err}"
    );
}

#[test]
fn hold_with_hold_timer_and_unwatchable_stdin() {
    let server = Server::start();
    let out = run(&[
        "hold",
        "--target",
        &server.addr,
        "--conns",
        "20",
        "--hold",
        "0.2",
        "--check",
        "5",
    ]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["held"], 20);
    assert_eq!(lines[1]["event"], "done");
    assert_eq!(lines[1]["alive_ok"], 5);
    let held = lines[1]["held_secs"].as_f64().unwrap();
    assert!(held >= 0.19, "held only {held}s");
}
