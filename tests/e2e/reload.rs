//! Configuration reload on SIGHUP: a valid change (here: draining a backend)
//! applies to new connections at once while open ones run on; an invalid file
//! or a change that needs a restart changes nothing and is reported.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};

use crate::harness::*;

fn config(a: SocketAddr, b: SocketAddr, a_extra: &str) -> String {
    format!(
        "workers: 2\nadmin:\n  listen: 127.0.0.1:0\nlisteners:\n  - {{ name: lb, listen: 127.0.0.1:0, pool: p }}\npools:\n  - name: p\n    backends:\n      - {{ address: \"{a}\"{a_extra} }}\n      - {{ address: \"{b}\" }}\n"
    )
}

fn exchange(s: &TcpStream, msg: &str) -> String {
    let mut w = s.try_clone().unwrap();
    writeln!(w, "{msg}").unwrap();
    let mut line = String::new();
    BufReader::new(s.try_clone().unwrap())
        .read_line(&mut line)
        .unwrap();
    line.trim_end().to_string()
}

fn reload(lb: &Spliced, yaml: &str, expect_in_log: &str) {
    let before = lb.log_text().matches(expect_in_log).count();
    std::fs::write(lb.dir.join("spliced.yaml"), yaml).unwrap();
    lb.signal("HUP");
    wait_until(expect_in_log, || {
        lb.log_text().matches(expect_in_log).count() > before
    });
}

#[test]
fn draining_a_backend_by_reload_lets_held_connections_finish_and_sends_new_ones_elsewhere() {
    let a = Backend::named("a");
    let b = Backend::named("b");
    let lb = Spliced::start(&config(a.addr, b.addr, ""));
    // Hold connections on both backends.
    let held: Vec<TcpStream> = (0..4).map(|_| connect(lb.addr("lb"))).collect();
    let owners: Vec<String> = held
        .iter()
        .map(|s| exchange(s, "hi").split(' ').next().unwrap().to_string())
        .collect();
    assert!(owners.contains(&"a".to_string()) && owners.contains(&"b".to_string()));

    reload(
        &lb,
        &config(a.addr, b.addr, ", drain: true"),
        "configuration reloaded",
    );
    for _ in 0..20 {
        let s = connect(lb.addr("lb"));
        assert_eq!(
            exchange(&s, "new"),
            "b new",
            "a drained backend got a new connection"
        );
    }
    // The held connections on the drained backend still work.
    for (s, owner) in held.iter().zip(&owners) {
        assert_eq!(exchange(s, "again"), format!("{owner} again"));
    }
    assert_eq!(
        lb.metric("spliced_config_reloads_total", &[("result", "ok")]),
        1.0
    );
    assert_eq!(
        lb.metric("spliced_backend_up", &[("backend", &a.addr.to_string())]),
        0.0
    );
}

#[test]
fn an_invalid_reload_changes_nothing_and_is_reported() {
    let a = Backend::named("a");
    let b = Backend::named("b");
    let lb = Spliced::start(&config(a.addr, b.addr, ""));
    reload(&lb, "listeners: [oops", "configuration reload failed");
    assert_eq!(
        lb.metric("spliced_config_reloads_total", &[("result", "error")]),
        1.0
    );
    // A change of `workers` needs a restart: refused, with the reason.
    let more_workers = config(a.addr, b.addr, "").replace("workers: 2", "workers: 3");
    reload(&lb, &more_workers, "configuration reload failed");
    assert!(lb.log_text().contains("restart spliced to apply it"));
    assert_eq!(
        lb.metric("spliced_config_reloads_total", &[("result", "error")]),
        2.0
    );
    // Still serving with the old config.
    let mut seen = std::collections::HashSet::new();
    for _ in 0..10 {
        let s = connect(lb.addr("lb"));
        seen.insert(exchange(&s, "x"));
    }
    assert_eq!(seen.len(), 2, "both backends still in rotation: {seen:?}");
}

#[test]
fn a_reload_can_add_move_and_remove_listeners() {
    let a = Backend::named("a");
    let b = Backend::named("b");
    let base = config(a.addr, b.addr, "");
    let lb = Spliced::start(&base);
    let first = lb.addr("lb");
    let held = connect(first);
    assert!(exchange(&held, "x").ends_with(" x"));

    // Add a second listener: it starts serving at once.
    let two = base.replace(
        "pools:",
        "  - { name: extra, listen: 127.0.0.1:0, pool: p }\npools:",
    );
    reload(&lb, &two, "configuration reloaded");
    let line = lb
        .log
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find(|l| l.contains("listening listener=extra"))
        .cloned()
        .expect("the new listener is logged with its address");
    let extra: SocketAddr = field(&line, "addr").unwrap().parse().unwrap();
    assert!(exchange(&connect(extra), "y").ends_with(" y"));

    // Remove the first: new connections are refused there, the held one runs on.
    let only_extra = two.replace("  - { name: lb, listen: 127.0.0.1:0, pool: p }\n", "");
    reload(&lb, &only_extra, "configuration reloaded");
    wait_until("the removed listener refuses connections", || {
        TcpStream::connect_timeout(&first, std::time::Duration::from_secs(1)).is_err()
    });
    assert!(exchange(&held, "still").ends_with(" still"));
    assert!(exchange(&connect(extra), "z").ends_with(" z"));
}

/// A config sending pool `p` to `backend`; listener `lb` is written the same
/// in every version, so a reload keeps its socket.
fn watched_config(backend: SocketAddr) -> String {
    format!(
        "workers: 2\nadmin:\n  listen: 127.0.0.1:0\nlisteners:\n  - {{ name: lb, listen: 127.0.0.1:0, pool: p }}\npools:\n  - name: p\n    backends: [\"{backend}\"]\n"
    )
}

#[test]
fn with_watch_a_renamed_file_and_a_configmap_symlink_swap_are_applied_and_a_bad_one_is_not() {
    let (a, b, c) = (
        Backend::named("a"),
        Backend::named("b"),
        Backend::named("c"),
    );
    // Kubernetes' layout: spliced.yaml -> ..data/spliced.yaml, ..data -> a
    // timestamped directory, swapped whole on update.
    let dir = temp_dir();
    let version = |n: u32, yaml: &str| {
        let v = dir.join(format!("..2026_{n}"));
        std::fs::create_dir(&v).unwrap();
        std::fs::write(v.join("spliced.yaml"), yaml).unwrap();
        v
    };
    let swap_to = |v: &std::path::Path| {
        let tmp = dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(v.file_name().unwrap(), &tmp).unwrap();
        std::fs::rename(&tmp, dir.join("..data")).unwrap();
    };
    let first = version(1, &watched_config(a.addr));
    swap_to(&first);
    let path = dir.join("spliced.yaml");
    std::os::unix::fs::symlink("..data/spliced.yaml", &path).unwrap();
    let lb = Spliced::start_file(&path, &["--watch"]);
    let addr = lb.addr("lb");
    assert_eq!(ask(addr), "a");
    let reloads = |result: &str| lb.metric("spliced_config_reloads_total", &[("result", result)]);

    // A ConfigMap update: the new version appears, then ..data is swapped.
    swap_to(&version(2, &watched_config(b.addr)));
    wait_until("the swapped-in config is applied", || ask(addr) == "b");
    assert_eq!(reloads("ok"), 1.0);

    // A broken version changes nothing and is counted.
    swap_to(&version(3, "listeners: [\n"));
    wait_until("the broken config is refused", || reloads("error") == 1.0);
    assert_eq!(ask(addr), "b");

    // A tool writing a temporary file and renaming it over the path.
    std::fs::remove_file(&path).unwrap();
    let tmp = dir.join("spliced.yaml.tmp");
    std::fs::write(&tmp, watched_config(c.addr)).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    wait_until("the renamed config is applied", || ask(addr) == "c");
    assert_eq!(reloads("ok"), 2.0);
    let _ = std::fs::remove_dir_all(dir);
}
