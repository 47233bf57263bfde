//! spliced run inside the test process through `control::run_with`, as an
//! embedder (or a test that wants no binary) runs it: it serves real
//! connections and a `Shutdown` request drains it like SIGTERM.

use std::io::{BufRead, BufReader, Write};
use std::sync::mpsc;
use std::time::Duration;

use spliced::control::{self, RunOptions, Shutdown};

use crate::harness::*;

#[test]
fn run_with_serves_in_process_and_a_shutdown_request_drains_it() {
    let backend = Backend::named("b");
    let config = spliced::config::parse_str(&simple_config(&[backend.addr], ""))
        .expect("the harness config is valid");
    let shutdown = Shutdown::new();
    let (bound_tx, bound_rx) = mpsc::channel();
    let stopper = shutdown.clone();
    let thread = std::thread::spawn(move || {
        control::run_with(config, RunOptions::default(), stopper, |bound| {
            let _ = bound_tx.send(bound.listeners.clone());
        })
    });
    let listeners = bound_rx
        .recv_timeout(WAIT)
        .expect("spliced came up in-process");
    let addr = listeners.iter().find(|(name, _)| name == "lb").unwrap().1;

    for i in 0..3 {
        let s = connect(addr);
        let mut w = s.try_clone().unwrap();
        writeln!(w, "hello {i}").unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        assert_eq!(line, format!("b hello {i}\n"));
    }

    shutdown.request();
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(thread.join());
    });
    let result = done_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("run_with returned after the shutdown request");
    result
        .expect("the control thread did not panic")
        .expect("run_with ended cleanly");
    assert!(
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err(),
        "the listener still accepts after shutdown"
    );
}
