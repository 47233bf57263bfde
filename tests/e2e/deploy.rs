//! The deployment files under `conf/` (README "Deploy"): the seccomp profile
//! (`conf/seccomp/spliced.json`) loaded by libseccomp with spliced serving
//! under it; the container image (`conf/Containerfile`) read and its runtime
//! stage built by podman from this build's binary; the compose demo
//! (`conf/compose.yaml`) and the Kubernetes manifests (`conf/kubernetes/`)
//! checked offline: every file they mount exists, ports agree with the
//! spliced config they carry, that config passes `spliced check`, and the
//! manifests validate against the Kubernetes schemas. Nothing here runs a
//! container: these machines cannot.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_yaml::Value;

use crate::harness::*;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const PYTHON: &str = "/usr/bin/python3";

fn conf(path: &str) -> PathBuf {
    Path::new(ROOT).join("conf").join(path)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml(path: &Path) -> Value {
    serde_yaml::from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every document of a multi-document YAML text.
fn yaml_docs(text: &str, what: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{what}: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

use serde::Deserialize;

/// Whether SPLICED_REQUIRE_PEERS asks for every peer (scripts/test.sh sets it).
fn peers_required() -> bool {
    std::env::var("SPLICED_REQUIRE_PEERS")
        .map(|v| !v.is_empty() && v != "0")
        .unwrap_or(false)
}

/// Debian's python3-seccomp for /usr/bin/python3, or a skip (a failure
/// under SPLICED_REQUIRE_PEERS).
fn python_seccomp() -> bool {
    let ok = Command::new(PYTHON)
        .args(["-c", "import seccomp"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        assert!(
            !peers_required(),
            "python3-seccomp is not installed and SPLICED_REQUIRE_PEERS is set: run scripts/install-peers.sh"
        );
        eprintln!(
            "SKIPPED: python3-seccomp not found; run scripts/install-peers.sh to run this test"
        );
    }
    ok
}

/// `spliced check -c path` passes.
fn spliced_check(path: &Path) {
    let out = run_bin(["check".as_ref(), "-c".as_ref(), path.as_os_str()], WAIT);
    assert_eq!(
        out.code,
        Some(0),
        "spliced check {}: {out:?}",
        path.display()
    );
}

/// The port of an `IP:port` listen address in a spliced config.
fn port_of(listen: &Value) -> u16 {
    let text = listen.as_str().expect("listen is a string");
    text.parse::<SocketAddr>()
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .port()
}

/// The ports a spliced config listens on: the admin API's, then each listener's.
fn config_ports(config: &Value) -> (u16, BTreeSet<u16>) {
    let admin = port_of(&config["admin"]["listen"]);
    let listeners = config["listeners"]
        .as_sequence()
        .expect("listeners")
        .iter()
        .map(|l| port_of(&l["listen"]))
        .collect();
    (admin, listeners)
}

// ---- seccomp ------------------------------------------------------------------

/// A backend that answers every HTTP/1.1 request with 200 "ok from NAME".
fn http_backend(name: &'static str) -> Backend {
    Backend::spawn(move |s| {
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        loop {
            let mut line = String::new();
            loop {
                line.clear();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                if line == "\r\n" {
                    break;
                }
            }
            let body = format!("ok from {name}\n");
            if write!(
                w,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .is_err()
            {
                return;
            }
        }
    })
}

/// Guards the shipped profile: with only what `conf/seccomp/spliced.json`
/// allows (io_uring included), spliced serves a TCP listener (copy and
/// splice), an HTTPS listener (tokio and rustls), health probes, the admin
/// API, the access log, `spliced health`, a SIGHUP reload and a graceful
/// stop. A syscall that a new dependency, libc or feature starts to need
/// fails here instead of in someone's container.
#[test]
fn spliced_serves_traffic_reloads_and_stops_under_the_shipped_seccomp_profile() {
    if !python_seccomp() {
        return;
    }
    let Some(curl) = peer_tool("curl") else {
        return;
    };
    let profile = conf("seccomp/spliced.json");
    let helper = format!("{ROOT}/tests/fixtures/seccomp_exec.py");
    let profile_s = profile.to_string_lossy().into_owned();
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    let bulk = Backend::source();
    let web = http_backend("web");
    let dir = temp_dir();
    let access = dir.join("access.log");
    let yaml = format!(
        "workers: 2\nshutdown_timeout: 5s\nadmin: {{ listen: 127.0.0.1:0 }}\n\
         access_log: {{ path: {access}, format: json }}\n\
         tls:\n  - {{ name: t, self_signed: [localhost], default: localhost }}\n\
         listeners:\n\
         \x20 - {{ name: lb, listen: 127.0.0.1:0, pool: p }}\n\
         \x20 - {{ name: bulk, listen: 127.0.0.1:0, pool: bulk }}\n\
         \x20 - {{ name: https, listen: 127.0.0.1:0, mode: http, tls: {{ store: t }}, pool: web }}\n\
         pools:\n\
         \x20 - name: p\n    health_check: {{ kind: tcp, interval: 200ms, rise: 1 }}\n    backends: [{}, {}]\n\
         \x20 - {{ name: bulk, backends: [{}] }}\n\
         \x20 - {{ name: web, backends: [{}] }}\n",
        a.addr,
        b.addr,
        bulk.addr,
        web.addr,
        access = access.display(),
    );
    let mut lb = Spliced::start_with(&[PYTHON, &helper, &profile_s], &yaml);

    let mut seen = BTreeSet::new();
    for _ in 0..4 {
        seen.insert(ask(lb.addr("lb")));
    }
    assert_eq!(
        seen,
        BTreeSet::from(["a".into(), "b".into()]),
        "both backends answer"
    );

    // Enough bytes to switch the direction to splice.
    let len = 64 << 20;
    let mut s = connect(lb.addr("bulk"));
    writeln!(s, "7 {len}").unwrap();
    let (n, hash) = read_all(&mut s);
    assert_eq!((n, hash), (len, stream_hash(7, len)), "bulk bytes intact");
    assert!(
        lb.metric("spliced_splice_switches_total", &[]) >= 1.0,
        "the bulk transfer went through splice"
    );

    let url = format!("https://localhost:{}/", lb.addr("https").port());
    let resolve = format!("localhost:{}:127.0.0.1", lb.addr("https").port());
    for http2 in ["--http1.1", "--http2"] {
        let mut c = Command::new(&curl);
        c.args([
            "-sk",
            "--max-time",
            "20",
            http2,
            "--resolve",
            &resolve,
            &url,
        ]);
        let out = run_command(c, "", WAIT);
        assert_eq!(out.stdout, "ok from web\n", "{http2}: {out:?}");
    }

    assert_eq!(lb.admin_get("/health").0, 200);
    assert_eq!(lb.admin_get("/ready").0, 200);
    let admin = lb.admin.unwrap().to_string();
    let mut health = Command::new(PYTHON);
    health.args([helper.as_str(), &profile_s, BIN, "health", &admin]);
    let out = run_command(health, "", WAIT);
    assert_eq!(
        out.code,
        Some(0),
        "spliced health under the profile: {out:?}"
    );

    lb.signal("HUP");
    wait_until("the SIGHUP reload", || {
        lb.metric("spliced_config_reloads_total", &[("result", "ok")]) >= 1.0
    });
    assert_eq!(
        ask(lb.addr("lb")).len(),
        1,
        "still serving after the reload"
    );

    lb.signal("TERM");
    assert_eq!(lb.wait_exit(WAIT), Some(0), "{}", lb.log_text());
    let log = read(&access);
    assert!(log.lines().count() >= 5, "access log written: {log}");
    let _ = std::fs::remove_dir_all(dir);
}

/// Guards the profile's reason to exist: it allows the three io_uring
/// calls, denies by default, and the helper that proves it does refuse
/// what a profile leaves out (spliced says io_uring is refused when they
/// are denied and the io_uring engine is asked for).
#[test]
fn the_seccomp_profile_denies_by_default_and_allows_io_uring() {
    let profile: serde_json::Value =
        serde_json::from_str(&read(&conf("seccomp/spliced.json"))).unwrap();
    assert_eq!(profile["defaultAction"], "SCMP_ACT_ERRNO");
    let allowed: BTreeSet<&str> = profile["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "SCMP_ACT_ALLOW")
        .flat_map(|r| r["names"].as_array().unwrap())
        .map(|n| n.as_str().unwrap())
        .collect();
    for call in [
        "io_uring_setup",
        "io_uring_enter",
        "io_uring_register",
        "splice",
        "execve",
    ] {
        assert!(allowed.contains(call), "{call} is allowed");
    }
    for call in [
        "ptrace",
        "mount",
        "bpf",
        "kexec_load",
        "init_module",
        "unshare",
        "setns",
    ] {
        assert!(!allowed.contains(call), "{call} is not allowed");
    }
    if !python_seccomp() {
        return;
    }
    // The helper really filters: `ls` cannot even start with getdents denied
    // by a profile that allows nothing else it needs.
    let dir = temp_dir();
    let empty = dir.join("deny-all.json");
    std::fs::write(
        &empty,
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["execve", "exit_group", "brk", "mmap", "write"], "action": "SCMP_ACT_ALLOW"}]}"#,
    )
    .unwrap();
    let mut c = Command::new(PYTHON);
    c.arg(format!("{ROOT}/tests/fixtures/seccomp_exec.py"))
        .arg(&empty)
        .args([BIN, "--version"]);
    let out = run_command(c, "", WAIT);
    assert_ne!(
        out.code,
        Some(0),
        "a deny-all profile stops spliced: {out:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
