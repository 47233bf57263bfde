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
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::Deserialize;
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

/// Guards the profile's reason to exist: it denies by default, allows the
/// three io_uring calls and none of the dangerous ones, and the helper that
/// proves it really refuses what a profile leaves out (so the test above
/// cannot pass by filtering nothing). `seccomp_exec.py --deny` stands for a
/// runtime default profile without io_uring, for the epoll fallback's test.
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
    // The helper really filters: under a profile that allows only a handful
    // of calls (no openat, so no shared library loads), spliced cannot start.
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

// ---- container image ------------------------------------------------------------

/// `conf/Containerfile` as (instruction, arguments) pairs, continuation
/// lines joined and comments dropped.
fn containerfile() -> Vec<(String, String)> {
    let text = read(&conf("Containerfile"));
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && pending.is_empty()) {
            continue;
        }
        if let Some(head) = t.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(t);
        let full = std::mem::take(&mut pending);
        let (op, args) = full.split_once(' ').unwrap_or((&full, ""));
        out.push((op.to_ascii_uppercase(), args.trim().to_string()));
    }
    out
}

/// The runtime stage's value of `op` (the last stage's instructions).
fn runtime_stage(file: &[(String, String)]) -> &[(String, String)] {
    let last_from = file.iter().rposition(|(op, _)| op == "FROM").unwrap();
    &file[last_from..]
}

fn one<'a>(stage: &'a [(String, String)], op: &str) -> &'a str {
    let found: Vec<_> = stage.iter().filter(|(o, _)| o == op).collect();
    assert_eq!(found.len(), 1, "one {op} in the runtime stage: {found:?}");
    &found[0].1
}

/// Guards the image's contract (README "Deploy"): built with the toolchain
/// Cargo.toml names, run from scratch as a non-root user, exposing the
/// demo's ports, a healthcheck through `spliced health` on the demo's admin
/// port, and the config at /etc/spliced/spliced.yaml.
#[test]
fn the_containerfile_builds_with_the_crates_toolchain_and_runs_unprivileged_from_scratch() {
    let file = containerfile();
    let froms: Vec<&str> = file
        .iter()
        .filter(|(op, _)| op == "FROM")
        .map(|(_, a)| a.as_str())
        .collect();
    assert_eq!(froms.len(), 2, "a build and a runtime stage: {froms:?}");
    let cargo = read(&Path::new(ROOT).join("Cargo.toml"));
    let rust_version = cargo
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .unwrap()
        .trim_matches('"');
    assert!(
        froms[0].starts_with(&format!("docker.io/library/rust:{rust_version}-"))
            && froms[0].ends_with(" AS build"),
        "the build stage uses the official Rust image at rust-version {rust_version}: {}",
        froms[0]
    );
    assert_eq!(froms[1], "scratch AS runtime");
    let build_runs: String = file
        .iter()
        .filter(|(op, _)| op == "RUN")
        .map(|(_, a)| a.as_str())
        .collect();
    for script in build_runs
        .split_whitespace()
        .filter(|w| w.starts_with("conf/"))
    {
        assert!(Path::new(ROOT).join(script).is_file(), "{script} exists");
    }
    assert!(build_runs.contains("--locked"), "the build uses Cargo.lock");

    let runtime = runtime_stage(&file);
    let user = one(runtime, "USER");
    let uid = user.split(':').next().unwrap();
    assert!(
        uid.parse::<u32>().is_ok_and(|u| u != 0),
        "a numeric non-root user (so runAsNonRoot can check it): {user}"
    );
    let demo: Value = serde_yaml::from_str(spliced::demo::DEMO_YAML).unwrap();
    let (admin, listeners) = config_ports(&demo);
    let exposed: BTreeSet<u16> = one(runtime, "EXPOSE")
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    let mut want = listeners.clone();
    want.insert(admin);
    assert_eq!(exposed, want, "EXPOSE lists the demo's ports");
    let health = one(runtime, "HEALTHCHECK");
    assert!(
        health.contains(&format!(
            r#"CMD ["/usr/local/bin/spliced", "health", "127.0.0.1:{admin}"]"#
        )),
        "{health}"
    );
    assert_eq!(one(runtime, "ENTRYPOINT"), r#"["/usr/local/bin/spliced"]"#);
    assert!(
        one(runtime, "CMD").contains(r#""-c", "/etc/spliced/spliced.yaml""#),
        "the default command runs /etc/spliced/spliced.yaml"
    );
    let text = read(&conf("Containerfile"));
    assert!(
        text.contains("spliced demo --bind 0.0.0.0"),
        "the one-line demo is documented"
    );
}

/// The image's filesystem as `conf/container/rootfs.sh` lays it out from
/// this build's binary, in `dir/rootfs`.
fn rootfs(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    let mut c = Command::new("sh");
    c.arg(conf("container/rootfs.sh")).arg(BIN).arg(&root);
    let out = run_command(c, "", WAIT);
    assert_eq!(out.code, Some(0), "rootfs.sh: {out:?}");
    root
}

/// Guards what the image holds besides the binary: with nothing but the
/// files rootfs.sh copies (the libraries ldd names, /etc), and as the
/// image's user, spliced checks a config and `spliced health` asks a
/// running spliced, as the HEALTHCHECK does.
#[test]
fn the_image_filesystem_runs_spliced_alone_as_its_user() {
    let dir = temp_dir();
    let root = rootfs(&dir);
    let passwd = read(&root.join("etc/passwd"));
    assert!(passwd.contains("spliced:x:65532:65532:"), "{passwd}");
    // chroot needs root (CI runs as root).
    if running_as_root() {
        std::fs::copy(conf("minimal.yaml"), root.join("etc/spliced/spliced.yaml")).unwrap();
        let chroot = |args: &[&str]| {
            let mut c = Command::new("chroot");
            c.arg("--userspec=65532:65532")
                .arg(&root)
                .arg("/usr/local/bin/spliced")
                .args(args);
            run_command(c, "", WAIT)
        };
        let out = chroot(&["check", "-c", "/etc/spliced/spliced.yaml"]);
        assert_eq!(out.code, Some(0), "spliced check inside the image: {out:?}");
        let backend = Backend::named("b");
        let lb = Spliced::start(&simple_config(&[backend.addr], ""));
        let admin = lb.admin.unwrap().to_string();
        let out = chroot(&["health", &admin]);
        assert_eq!(
            out.code,
            Some(0),
            "spliced health inside the image: {out:?}"
        );
        let out = chroot(&["health", &refused_addr().to_string()]);
        assert_eq!(out.code, Some(1), "nothing listening is unhealthy: {out:?}");
    } else {
        eprintln!("SKIPPED: running the image's filesystem needs chroot, so root");
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Whether this process's real uid is 0 (from /proc, without `unsafe`).
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|u| u.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Guards the runtime stage as a container engine builds it: podman builds
/// it from this build's binary (standing in for the build stage, which
/// needs the network), and the image says what the Containerfile says. A
/// private, throw-away podman store keeps the machine's images untouched.
#[test]
fn podman_builds_the_runtime_stage_from_this_build() {
    let Some(podman) = peer_tool("podman") else {
        return;
    };
    let dir = temp_dir();
    let context = dir.join("context");
    std::fs::create_dir_all(&context).unwrap();
    rootfs(&dir);
    let store = dir.join("store");
    let podman = |args: &[&str]| {
        let mut c = Command::new(&podman);
        c.arg("--root")
            .arg(store.join("root"))
            .arg("--runroot")
            .arg(store.join("run"))
            .args(["--storage-driver", "vfs"])
            .args(args);
        run_command(c, "", Duration::from_secs(300))
    };
    let build_context = format!("build={}", dir.display());
    let containerfile = conf("Containerfile").to_string_lossy().into_owned();
    let out = podman(&[
        "build",
        "--format",
        "docker",
        "--build-context",
        &build_context,
        "--target",
        "runtime",
        "-f",
        &containerfile,
        "-t",
        "localhost/spliced-e2e:test",
        &context.to_string_lossy(),
    ]);
    assert_eq!(out.code, Some(0), "podman build: {out:?}");
    let out = podman(&["image", "inspect", "localhost/spliced-e2e:test"]);
    assert_eq!(out.code, Some(0), "podman image inspect: {out:?}");
    let inspect: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    let config = &inspect[0]["Config"];
    // podman keeps the healthcheck beside the OCI config, not in it.
    assert_eq!(inspect[0]["Healthcheck"]["Test"][2], "health", "{inspect}");
    assert_eq!(config["User"], "65532:65532");
    assert_eq!(config["Entrypoint"][0], "/usr/local/bin/spliced");
    for port in ["8080/tcp", "8443/tcp", "9090/tcp"] {
        assert!(
            config["ExposedPorts"].get(port).is_some(),
            "{port}: {config}"
        );
    }
    let _ = podman(&["rmi", "-f", "localhost/spliced-e2e:test"]);
    let _ = std::fs::remove_dir_all(dir);
}

// ---- compose ----------------------------------------------------------------------

/// `HOST:CONTAINER` or `IP:HOST:CONTAINER` → the container port.
fn container_port(mapping: &Value) -> u16 {
    let text = mapping.as_str().expect("ports as strings");
    text.rsplit(':').next().unwrap().parse().unwrap()
}

/// A bind mount `SRC:DST[:ro]` relative to conf/ → (source path, target).
fn bind_mount(volume: &Value) -> (PathBuf, String) {
    let text = volume.as_str().expect("volumes as strings");
    let mut parts = text.split(':');
    let (src, dst) = (parts.next().unwrap(), parts.next().unwrap());
    assert!(src.starts_with("./"), "a file shipped in conf/: {text}");
    (conf(src), dst.to_string())
}

/// `config` with each `NAME:PORT` backend replaced by a loopback address,
/// since compose's service names resolve only inside compose.
fn loopback_backends(config: &str, names: &[&str]) -> String {
    let mut out = config.to_string();
    for (i, name) in names.iter().enumerate() {
        out = out.replace(&format!("{name}:"), &format!("127.0.0.{}:", i + 2));
    }
    out
}

/// Guards `docker compose up` (which cannot run here): every file it mounts
/// is shipped, spliced publishes exactly the ports its config listens on and
/// reaches the backends on the port they serve, Prometheus scrapes spliced's
/// admin port with the shipped alert rules (promtool checks both), Grafana's
/// provisioning points at the Prometheus service and at the mounted
/// dashboard, and spliced's config passes `spliced check`.
#[test]
fn the_compose_demo_mounts_shipped_files_and_its_ports_agree_with_its_configs() {
    let compose = yaml(&conf("compose.yaml"));
    let services = compose["services"].as_mapping().unwrap();
    let names: Vec<&str> = services.keys().map(|k| k.as_str().unwrap()).collect();
    let backends: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| n.starts_with("backend-"))
        .collect();
    assert_eq!(backends.len(), 3, "three backends: {names:?}");
    for want in ["spliced", "prometheus", "grafana"] {
        assert!(names.contains(&want), "{want} in {names:?}");
    }
    let mut mounts = std::collections::HashMap::new();
    for (name, service) in services {
        for v in service["volumes"].as_sequence().into_iter().flatten() {
            let (src, dst) = bind_mount(v);
            assert!(
                src.exists(),
                "{name:?} mounts {}, which exists",
                src.display()
            );
            mounts.insert(dst, src);
        }
        for dep in service["depends_on"].as_sequence().into_iter().flatten() {
            assert!(
                services.contains_key(dep),
                "{name:?} depends on {dep:?}, a service"
            );
        }
    }

    let spliced = &compose["services"]["spliced"];
    assert_eq!(spliced["build"]["dockerfile"], "conf/Containerfile");
    assert!(conf(spliced["build"]["context"].as_str().unwrap())
        .join("Cargo.toml")
        .is_file());
    for opt in spliced["security_opt"].as_sequence().into_iter().flatten() {
        let profile = opt.as_str().unwrap().strip_prefix("seccomp=").unwrap();
        assert!(conf(profile).is_file(), "{profile} exists");
    }
    let config_path = &mounts["/etc/spliced/spliced.yaml"];
    let config_text = read(config_path);
    let config: Value = serde_yaml::from_str(&config_text).unwrap();
    let (admin, listeners) = config_ports(&config);
    let published: BTreeSet<u16> = spliced["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(container_port)
        .collect();
    let mut want = listeners.clone();
    want.insert(admin);
    assert_eq!(
        published, want,
        "spliced publishes what its config listens on"
    );
    for b in config["pools"][0]["backends"].as_sequence().unwrap() {
        let (host, port) = b.as_str().unwrap().rsplit_once(':').unwrap();
        assert!(
            backends.contains(&host),
            "backend {host} is a compose service"
        );
        let command = compose["services"][host]["command"][2].as_str().unwrap();
        assert!(
            command.contains(&format!("-p {port} ")),
            "{host} serves port {port}: {command}"
        );
    }
    let dir = temp_dir();
    let checked = dir.join("spliced.yaml");
    std::fs::write(&checked, loopback_backends(&config_text, &backends)).unwrap();
    spliced_check(&checked);

    let prometheus_yml = &mounts["/etc/prometheus/prometheus.yml"];
    let prometheus = yaml(prometheus_yml);
    let job = &prometheus["scrape_configs"][0];
    assert_eq!(
        job["job_name"], "spliced",
        "the job name alerts.yml expects"
    );
    assert_eq!(
        job["static_configs"][0]["targets"][0],
        format!("spliced:{admin}").as_str()
    );
    assert!(
        config["admin"]["allowed_hosts"]
            .as_sequence()
            .is_some_and(|h| h.iter().any(|h| h == "spliced")),
        "the admin API answers to the name Prometheus uses"
    );
    assert_eq!(
        read(&mounts["/etc/prometheus/alerts.yml"]),
        read(&conf("prometheus/alerts.yml"))
    );
    if let Some(promtool) = peer_tool("promtool") {
        let p = dir.join("prometheus");
        std::fs::create_dir_all(&p).unwrap();
        std::fs::copy(prometheus_yml, p.join("prometheus.yml")).unwrap();
        std::fs::copy(&mounts["/etc/prometheus/alerts.yml"], p.join("alerts.yml")).unwrap();
        let mut c = Command::new(promtool);
        c.args(["check", "config"]).arg(p.join("prometheus.yml"));
        let out = run_command(c, "", WAIT);
        assert_eq!(out.code, Some(0), "promtool check config: {out:?}");
    }

    let provisioning = &mounts["/etc/grafana/provisioning"];
    let ds = yaml(&provisioning.join("datasources/prometheus.yaml"));
    assert_eq!(ds["datasources"][0]["type"], "prometheus");
    assert_eq!(ds["datasources"][0]["url"], "http://prometheus:9090");
    let providers = yaml(&provisioning.join("dashboards/spliced.yaml"));
    let path = providers["providers"][0]["options"]["path"]
        .as_str()
        .unwrap();
    let dashboard = mounts
        .iter()
        .find(|(dst, _)| Path::new(dst).parent() == Some(Path::new(path)))
        .map(|(_, src)| src)
        .expect("a dashboard mounted in the provider's path");
    let board: serde_json::Value = serde_json::from_str(&read(dashboard)).unwrap();
    assert_eq!(board["uid"], "spliced-overview");
    let _ = std::fs::remove_dir_all(dir);
}

// ---- Kubernetes -------------------------------------------------------------------

/// `kubectl kustomize DIR`, as documents.
fn kustomize(kubectl: &Path, dir: &str) -> (String, Vec<Value>) {
    let mut c = Command::new(kubectl);
    c.arg("kustomize").arg(conf(dir));
    let out = run_command(c, "", WAIT);
    assert_eq!(out.code, Some(0), "kubectl kustomize {dir}: {out:?}");
    let docs = yaml_docs(&out.stdout, dir);
    (out.stdout, docs)
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// Every resource and patch a kustomization names exists beside it.
fn kustomization_files_exist(dir: &str) {
    let k = yaml(&conf(dir).join("kustomization.yaml"));
    let mut files: Vec<&str> = k["resources"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    files.extend(
        k["patches"]
            .as_sequence()
            .into_iter()
            .flatten()
            .map(|p| p["path"].as_str().unwrap()),
    );
    for f in files {
        assert!(conf(dir).join(f).exists(), "{dir}/{f} exists");
    }
}

/// Whether every `key: value` of `selector` is among `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let selector = selector.as_mapping().expect("a selector");
    !selector.is_empty() && selector.iter().all(|(k, v)| &labels[k] == v)
}

/// "30s", "2m" → seconds.
fn seconds(text: &str) -> u64 {
    if let Some(s) = text.strip_suffix('s') {
        s.parse().unwrap()
    } else if let Some(m) = text.strip_suffix('m') {
        m.parse::<u64>().unwrap() * 60
    } else {
        panic!("a duration in s or m: {text}")
    }
}

/// The cross-checks a schema cannot make, on one rendered variant: the
/// workload's selector matches its pods, the Service and PodMonitor select
/// them and name ports they have, the probes ask /ready and /health on the
/// admin port, the config is mounted as a directory (so updates reach it)
/// where `--watch` reads it, its ports are the container's, the grace period
/// covers preStop plus shutdown_timeout, and the config passes `spliced
/// check`.
fn check_variant(docs: &[Value], workload_kind: &str) {
    let workloads = of_kind(docs, workload_kind);
    assert_eq!(workloads.len(), 1, "one {workload_kind}");
    let w = workloads[0];
    let pod = &w["spec"]["template"];
    let labels = &pod["metadata"]["labels"];
    assert!(selects(&w["spec"]["selector"]["matchLabels"], labels));
    let containers = pod["spec"]["containers"].as_sequence().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    let port = |name: &str| -> u16 {
        c["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("a container port named {name}"))["containerPort"]
            .as_u64()
            .unwrap() as u16
    };
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/ready");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/health");
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(
            c[probe]["httpGet"]["port"], "admin",
            "{probe} on the admin port"
        );
    }
    for svc in of_kind(docs, "Service") {
        assert!(
            selects(&svc["spec"]["selector"], labels),
            "the Service selects the pods"
        );
        for p in svc["spec"]["ports"].as_sequence().unwrap() {
            port(p["targetPort"].as_str().expect("named target ports"));
        }
    }
    for pm in of_kind(docs, "PodMonitor") {
        assert!(selects(&pm["spec"]["selector"]["matchLabels"], labels));
        let p = pm["spec"]["podMetricsEndpoints"][0]["port"]
            .as_str()
            .unwrap();
        assert_eq!(p, "admin");
        port(p);
    }

    let args: Vec<&str> = c["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        args.contains(&"--watch"),
        "reloads on ConfigMap change: {args:?}"
    );
    let config_file = Path::new(args[args.iter().position(|a| *a == "-c").unwrap() + 1]);
    let mounts = c["volumeMounts"].as_sequence().unwrap();
    let mount = mounts
        .iter()
        .find(|m| Path::new(m["mountPath"].as_str().unwrap()) == config_file.parent().unwrap())
        .expect("the config's directory is mounted");
    assert!(
        mount["subPath"].is_null(),
        "a subPath mount never sees updates"
    );
    let volume = pod["spec"]["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    let cm_name = &volume["configMap"]["name"];
    let cm = of_kind(docs, "ConfigMap")
        .into_iter()
        .find(|m| &m["metadata"]["name"] == cm_name)
        .expect("the mounted ConfigMap is in the kustomization");
    let key = config_file.file_name().unwrap().to_str().unwrap();
    let config_text = cm["data"][key]
        .as_str()
        .expect("the config is in the ConfigMap");
    let config: Value = serde_yaml::from_str(config_text).unwrap();

    let (admin, listeners) = config_ports(&config);
    assert_eq!(port("admin"), admin, "the admin port is the config's");
    let annotations = &pod["metadata"]["annotations"];
    assert_eq!(
        annotations["prometheus.io/port"],
        admin.to_string().as_str()
    );
    assert_eq!(port("web"), *listeners.iter().next().unwrap());

    let shutdown = seconds(config["shutdown_timeout"].as_str().unwrap());
    let pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .unwrap_or(0);
    let grace = pod["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap();
    assert!(
        grace > pre_stop + shutdown,
        "terminationGracePeriodSeconds {grace} covers preStop {pre_stop}s + shutdown_timeout {shutdown}s"
    );

    // The token the config names comes from a mounted Secret; `spliced
    // check` reads it, so check with a stand-in file at a temp path.
    let token_path = config["admin"]["token_file"].as_str().unwrap();
    let token_dir = Path::new(token_path).parent().unwrap();
    assert!(
        mounts
            .iter()
            .any(|m| Path::new(m["mountPath"].as_str().unwrap()) == token_dir),
        "the token's directory is mounted"
    );
    let dir = temp_dir();
    let token = dir.join("token");
    std::fs::write(&token, "stand-in\n").unwrap();
    let checked = dir.join("spliced.yaml");
    std::fs::write(
        &checked,
        config_text.replace(token_path, &token.to_string_lossy()),
    )
    .unwrap();
    spliced_check(&checked);
    let _ = std::fs::remove_dir_all(dir);
}

/// Guards `kubectl apply -k conf/kubernetes/base` and `.../daemonset`
/// (which cannot run here): both render, validate against the Kubernetes
/// schemas (kubernetes-validate, strict) and pass the cross-checks; the
/// DaemonSet variant replaces the Deployment and runs on the host network.
#[test]
fn the_kubernetes_manifests_render_validate_and_agree_with_the_config() {
    kustomization_files_exist("kubernetes/base");
    kustomization_files_exist("kubernetes/daemonset");
    let Some(kubectl) = peer_tool("kubectl") else {
        return;
    };
    let (base_text, base) = kustomize(&kubectl, "kubernetes/base");
    check_variant(&base, "Deployment");
    let (ds_text, ds) = kustomize(&kubectl, "kubernetes/daemonset");
    assert!(
        of_kind(&ds, "Deployment").is_empty(),
        "the DaemonSet replaces it"
    );
    check_variant(&ds, "DaemonSet");
    let pod = &of_kind(&ds, "DaemonSet")[0]["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["dnsPolicy"], "ClusterFirstWithHostNet");

    let Some(validate) = peer_tool("kubernetes-validate") else {
        return;
    };
    let dir = temp_dir();
    for (name, text) in [("base.yaml", &base_text), ("daemonset.yaml", &ds_text)] {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let mut c = Command::new(&validate);
        c.args(["--strict", "--quiet"]).arg(&path);
        let out = run_command(c, "", Duration::from_secs(120));
        assert_eq!(out.code, Some(0), "kubernetes-validate {name}: {out:?}");
        // The PodMonitor is a CRD, without a schema there; the cross-checks
        // above cover its selector and port.
        let unexpected: Vec<&str> = out
            .stdout
            .lines()
            .chain(out.stderr.lines())
            .filter(|l| !l.contains("Couldn't find schema for kind PodMonitor"))
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert!(
            unexpected.is_empty(),
            "kubernetes-validate {name}: {unexpected:?}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}
