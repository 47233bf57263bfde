//! The systemd unit (`conf/systemd/spliced.service`): `systemd-analyze
//! verify` accepts it, with its binary path pointed at this build, and
//! spliced speaks the notify protocol its `Type=notify` relies on: READY=1
//! once it serves, RELOADING=1 then READY=1 around a SIGHUP reload, and
//! STOPPING=1 when it starts draining.

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::Duration;

use crate::harness::*;

#[test]
fn the_unit_file_verifies() {
    let Some(analyze) = peer_tool("systemd-analyze") else {
        return;
    };
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/conf/systemd/spliced.service"
    ))
    .unwrap();
    assert!(
        unit.contains("/usr/local/bin/spliced"),
        "the unit names the installed binary"
    );
    let dir = temp_dir();
    let path = dir.join("spliced.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/spliced", BIN)).unwrap();
    let mut command = Command::new(analyze);
    command.arg("verify").arg(&path);
    let out = run_command(command, "", Duration::from_secs(30));
    let _ = std::fs::remove_dir_all(dir);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stderr.trim().is_empty(), "warnings: {}", out.stderr);
}

/// The next notification spliced sends.
fn next_state(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = socket
        .recv(&mut buf)
        .expect("a notification within the timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn spliced_tells_systemd_when_it_is_ready_reloading_and_stopping() {
    let dir = temp_dir();
    let socket_path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(WAIT)).unwrap();
    let backend = Backend::named("b");
    let env = format!("NOTIFY_SOCKET={}", socket_path.display());
    let mut lb = Spliced::start_with(&["env", &env], &simple_config(&[backend.addr], ""));

    let ready = next_state(&socket);
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    assert_eq!(ask(lb.addr("lb")), "b", "READY=1 means it serves");

    lb.signal("HUP");
    let reloading = next_state(&socket);
    assert!(
        reloading.lines().any(|l| l == "RELOADING=1"),
        "{reloading:?}"
    );
    assert!(
        reloading.lines().any(|l| l.starts_with("MONOTONIC_USEC=")),
        "{reloading:?}"
    );
    let reloaded = next_state(&socket);
    assert!(reloaded.lines().any(|l| l == "READY=1"), "{reloaded:?}");

    lb.signal("TERM");
    let stopping = next_state(&socket);
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping:?}");
    assert_eq!(lb.wait_exit(WAIT), Some(0));
    let _ = std::fs::remove_dir_all(dir);
}
