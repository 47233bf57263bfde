//! The systemd units (`conf/systemd/`): `systemd-analyze verify` accepts
//! them, with the binary path pointed at this build; spliced speaks the
//! notify protocol `Type=notify` relies on (READY=1 once it serves,
//! RELOADING=1 then READY=1 around a SIGHUP reload, STOPPING=1 when it starts
//! draining); and it serves a listening socket systemd passes it.

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
    let socket = dir.join("spliced.socket");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/conf/systemd/spliced.socket"),
        &socket,
    )
    .unwrap();
    let mut command = Command::new(analyze);
    command.arg("verify").arg(&socket).arg(&path);
    let out = run_command(command, "", Duration::from_secs(30));
    let _ = std::fs::remove_dir_all(dir);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stderr.trim().is_empty(), "warnings: {}", out.stderr);
}

/// Guards the unit's hardening against being loosened unnoticed:
/// `systemd-analyze security` rates its sandbox (0 = locked down, 10 =
/// none) at 2.0 or better; it was 1.5 when written (the ambient
/// CAP_NET_BIND_SERVICE, network access and @resources are what remains).
#[test]
fn the_unit_is_sandboxed_to_a_low_exposure_score() {
    let Some(analyze) = peer_tool("systemd-analyze") else {
        return;
    };
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/conf/systemd/spliced.service"
    ))
    .unwrap();
    let dir = temp_dir();
    let path = dir.join("spliced.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/spliced", BIN)).unwrap();
    let mut command = Command::new(analyze);
    // --threshold is on the 0-100 scale behind the 0-10 score it prints.
    command
        .args(["security", "--offline=true", "--threshold=20", "--no-pager"])
        .arg(&path);
    let out = run_command(command, "", Duration::from_secs(30));
    let _ = std::fs::remove_dir_all(dir);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
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

#[test]
fn a_listening_socket_passed_by_systemd_is_served_by_the_listener_it_is_named_for() {
    let Some(activate) = peer_tool("systemd-socket-activate") else {
        return;
    };
    let backend = Backend::named("b");
    // systemd-socket-activate binds the address, then starts spliced on the
    // first connection with the socket as fd 3 (LISTEN_FDS, LISTEN_FDNAMES).
    let addr = refused_addr();
    let listen = format!("--listen={addr}");
    let activate = activate.to_string_lossy().into_owned();
    let first = std::thread::spawn(move || {
        // The first client, which makes systemd-socket-activate start spliced.
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if let Ok(s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                s.set_read_timeout(Some(WAIT)).unwrap();
                return ask_on(s);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no listener at {addr}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let lb = Spliced::start_with(
        &[&activate, &listen, "--fdname=lb"],
        &simple_config(&[backend.addr], ""),
    );
    assert_eq!(lb.addr("lb"), addr, "the listener took the passed socket");
    assert!(
        lb.log_text()
            .contains("using the listening socket systemd passed"),
        "{}",
        lb.log_text()
    );
    assert_eq!(
        first.join().unwrap(),
        "b",
        "the connection that started it is served"
    );
    for _ in 0..4 {
        assert_eq!(ask(addr), "b");
    }
}
