//! Which engine the L4 plane runs on: `dataplane: auto` falls back to epoll
//! when io_uring is refused the way default container seccomp profiles refuse
//! it (the shipped profile, conf/seccomp/spliced.json, with
//! io_uring_setup/enter/register answering EPERM), says so in one line, and
//! serves traffic; `dataplane: io_uring` refuses to start there with the
//! reason; `spliced check` says what would run. (The rest of the L4 suite
//! runs once per engine: scripts/test.sh sets SPLICED_TEST_DATAPLANE=epoll.)

use std::process::Command;

use crate::harness::*;

/// The arguments that make `python3` exec a program under the shipped
/// seccomp profile with the three io_uring calls refused (EPERM): what a
/// default Docker or containerd profile allows, roughly.
fn refuse_io_uring() -> Vec<String> {
    let root = env!("CARGO_MANIFEST_DIR");
    vec![
        format!("{root}/tests/fixtures/seccomp_exec.py"),
        format!("{root}/conf/seccomp/spliced.json"),
        "--deny".into(),
        "io_uring_setup,io_uring_enter,io_uring_register".into(),
    ]
}

/// These tests choose the engine themselves; under the harness-wide
/// override (the epoll pass of the suite) they have nothing to add.
fn engine_is_overridden() -> bool {
    let set = test_dataplane().is_some();
    if set {
        eprintln!("SKIPPED: SPLICED_TEST_DATAPLANE chooses the engine for every test");
    }
    set
}

#[test]
fn auto_falls_back_to_epoll_under_a_seccomp_filter_that_refuses_io_uring() {
    if engine_is_overridden() {
        return;
    }
    let Some(python) = python_with("seccomp") else {
        return;
    };
    let wrapper = refuse_io_uring();
    let mut prefix = vec![python.as_str()];
    prefix.extend(wrapper.iter().map(String::as_str));
    let a = Backend::named("a");
    let lb = Spliced::start_with(&prefix, &simple_config(&[a.addr], ""));
    let log = lb.log_text();
    assert_eq!(
        lb.log_count("the L4 data plane runs on epoll instead"),
        1,
        "one line says why; log:\n{log}"
    );
    assert!(log.contains("reason="), "the line gives the reason: {log}");
    assert!(log.contains("engine=epoll"), "{log}");
    for _ in 0..20 {
        assert_eq!(ask(lb.addr("lb")), "a");
    }
    assert_eq!(
        lb.metric("spliced_dataplane_info", &[("engine", "epoll")]),
        1.0
    );
    let (_, pools) = lb.admin_get("/api/v1/pools");
    assert_eq!(json(&pools)["dataplane"], "epoll", "{pools}");
}

#[test]
fn io_uring_required_under_that_filter_refuses_to_start_with_the_reason() {
    if engine_is_overridden() {
        return;
    }
    let Some(python) = python_with("seccomp") else {
        return;
    };
    let dir = temp_dir();
    let path = dir.join("spliced.yaml");
    let a = Backend::named("a");
    std::fs::write(
        &path,
        format!("dataplane: io_uring\n{}", simple_config(&[a.addr], "")),
    )
    .unwrap();
    let out = Command::new(&python)
        .args(refuse_io_uring())
        .args([BIN, "run", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("io_uring is refused"), "{stderr}");
    assert!(!stderr.contains("listening"), "{stderr}");

    // `spliced check` tells ahead of time, and what `auto` would do instead.
    let check = |extra: &[&str]| {
        let out = Command::new(&python)
            .args(refuse_io_uring())
            .args([BIN, "check", "-c"])
            .arg(&path)
            .args(extra)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(
        check(&[]).contains("dataplane: io_uring (dataplane: io_uring), which will NOT start here"),
        "{}",
        check(&[])
    );
    assert!(
        check(&["--dataplane", "auto"])
            .contains("dataplane: epoll (dataplane: auto; io_uring cannot be used here"),
        "{}",
        check(&["--dataplane", "auto"])
    );
}

#[test]
fn epoll_can_be_chosen_where_io_uring_works() {
    if engine_is_overridden() {
        return;
    }
    let a = Backend::named("a");
    let lb = Spliced::start(&format!(
        "dataplane: epoll\n{}",
        simple_config(&[a.addr], "")
    ));
    assert_eq!(ask(lb.addr("lb")), "a");
    assert_eq!(
        lb.metric("spliced_dataplane_info", &[("engine", "epoll")]),
        1.0
    );
    assert_eq!(
        lb.log_count("runs on epoll instead"),
        0,
        "{}",
        lb.log_text()
    );
    let io_uring = Spliced::start(&simple_config(&[a.addr], ""));
    assert_eq!(
        io_uring.metric("spliced_dataplane_info", &[("engine", "io_uring")]),
        1.0
    );
}
