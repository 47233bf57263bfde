//! The relay: bytes arrive intact both ways, under concurrency and in bulk;
//! half-close is passed on without losing bytes in flight; bulk switches to
//! splice while request/response stays on the buffer ring; failed connects are
//! retried on other backends.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::harness::*;

const MIB: usize = 1024 * 1024;

#[test]
fn echo_integrity_32_concurrent_clients_8_mib_each() {
    let echo = Backend::echo();
    let lb = Spliced::start(&simple_config(&[echo.addr], ""));
    let addr = lb.addr("lb");
    let clients: Vec<_> = (0..32u64)
        .map(|i| {
            std::thread::spawn(move || {
                let s = connect(addr);
                let mut w = s.try_clone().unwrap();
                let writer = std::thread::spawn(move || {
                    let h = send_stream(&mut w, i + 1, 8 * MIB);
                    w.shutdown(Shutdown::Write).unwrap();
                    h
                });
                let mut r = s;
                let got = read_all(&mut r);
                let sent = writer.join().unwrap();
                assert_eq!(got, (8 * MIB, sent), "client {i}: echo differs");
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    assert_eq!(lb.metric("spliced_connections_total", &[]), 32.0);
}

#[test]
fn upload_200_mib_to_a_sink_arrives_intact() {
    let sink = Backend::sink();
    let lb = Spliced::start(&simple_config(&[sink.addr], ""));
    let mut s = connect(lb.addr("lb"));
    let sent = send_stream(&mut s, 7, 200 * MIB);
    s.shutdown(Shutdown::Write).unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert_eq!(reply.trim(), format!("{} {sent:016x}", 200 * MIB));
    let c2b = lb.metric("spliced_bytes_total", &[("direction", "client_to_backend")]);
    assert_eq!(c2b, (200 * MIB) as f64);
}

#[test]
fn download_200_mib_from_a_source_arrives_intact() {
    let source = Backend::source();
    let lb = Spliced::start(&simple_config(&[source.addr], ""));
    let mut s = connect(lb.addr("lb"));
    writeln!(s, "11 {}", 200 * MIB).unwrap();
    let got = read_all(&mut s);
    assert_eq!(got, (200 * MIB, stream_hash(11, 200 * MIB)));
}

#[test]
fn client_half_close_with_bytes_in_flight_loses_nothing() {
    let echo = Backend::echo();
    let lb = Spliced::start(&simple_config(&[echo.addr], ""));
    for round in 0..5u64 {
        let s = connect(lb.addr("lb"));
        let mut w = s.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            let h = send_stream(&mut w, 100 + round, 4 * MIB + 123);
            // FIN right behind the last bytes: most of them are still in flight.
            w.shutdown(Shutdown::Write).unwrap();
            h
        });
        let mut r = s;
        let got = read_all(&mut r);
        assert_eq!(
            got,
            (4 * MIB + 123, writer.join().unwrap()),
            "round {round}"
        );
    }
}

#[test]
fn backend_half_close_keeps_the_other_direction_flowing() {
    let after_fin = Arc::new(AtomicU64::new(0));
    let counter = after_fin.clone();
    // Sends the requested stream, half-closes, then keeps reading what the
    // client still sends.
    let backend = Backend::spawn(move |s| {
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let len: usize = line.trim().parse().unwrap();
        let mut w = s;
        send_stream(&mut w, 5, len);
        w.shutdown(Shutdown::Write).unwrap();
        let (n, _) = read_all(&mut r);
        counter.store(n as u64, Ordering::SeqCst);
    });
    let lb = Spliced::start(&simple_config(&[backend.addr], ""));
    let mut s = connect(lb.addr("lb"));
    writeln!(s, "{}", 3 * MIB).unwrap();
    let got = read_all(&mut s);
    assert_eq!(got, (3 * MIB, stream_hash(5, 3 * MIB)));
    // The backend's FIN reached us; our direction must still be open.
    send_stream(&mut s, 6, 2 * MIB);
    s.shutdown(Shutdown::Write).unwrap();
    wait_until("backend received the bytes sent after its FIN", || {
        after_fin.load(Ordering::SeqCst) == (2 * MIB) as u64
    });
}

#[test]
fn bulk_switches_to_splice_and_request_response_stays_on_copy() {
    let named = Backend::named("b");
    let source = Backend::source();
    let config = format!(
        "workers: 1\nadmin:\n  listen: 127.0.0.1:0\nlisteners:\n  - name: rr\n    listen: 127.0.0.1:0\n    pool: rr\n  - name: bulk\n    listen: 127.0.0.1:0\n    pool: bulk\npools:\n  - name: rr\n    backends: [{}]\n  - name: bulk\n    backends: [{}]\n",
        named.addr, source.addr
    );
    let lb = Spliced::start(&config);

    // Request/response: 200 small exchanges on one connection.
    let s = connect(lb.addr("rr"));
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    let mut sent = 0;
    let mut received = 0;
    for i in 0..200 {
        let req = format!("request {i}\n");
        w.write_all(req.as_bytes()).unwrap();
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert_eq!(line, format!("b request {i}\n"));
        sent += req.len();
        received += line.len();
    }
    drop(w);
    drop(r);
    let copy = |d| {
        lb.metric(
            "spliced_relay_bytes_total",
            &[("mode", "copy"), ("direction", d)],
        )
    };
    let spliced = |d| {
        lb.metric(
            "spliced_relay_bytes_total",
            &[("mode", "splice"), ("direction", d)],
        )
    };
    // The client can read a reply a moment before the worker has processed
    // the completion of the send that carried it: counters catch up.
    wait_until("copy counters to account for every byte", || {
        copy("client_to_backend") == sent as f64 && copy("backend_to_client") == received as f64
    });
    assert_eq!(
        spliced("client_to_backend") + spliced("backend_to_client"),
        0.0
    );
    assert_eq!(lb.metric("spliced_splice_switches_total", &[]), 0.0);

    // Bulk: a 64 MiB download goes through a pipe for most of its bytes.
    let mut s = connect(lb.addr("bulk"));
    writeln!(s, "3 {}", 64 * MIB).unwrap();
    assert_eq!(read_all(&mut s), (64 * MIB, stream_hash(3, 64 * MIB)));
    drop(s);
    assert!(lb.metric("spliced_splice_switches_total", &[]) >= 1.0);
    let b2c_spliced = spliced("backend_to_client");
    assert!(
        b2c_spliced > (32 * MIB) as f64,
        "only {b2c_spliced} of 64 MiB went through splice"
    );
    assert_eq!(
        b2c_spliced + copy("backend_to_client"),
        (64 * MIB + received) as f64,
        "every byte is counted once"
    );
    wait_until("pipes returned to the pool", || {
        lb.metric("spliced_pipes_in_use", &[]) == 0.0
    });
}

#[test]
fn a_refusing_first_backend_costs_no_client_anything() {
    let dead = refused_addr();
    let good = Backend::named("good");
    let lb = Spliced::start(
        &simple_config(&[dead, good.addr], "retries: 2")
            .replace("    backends:", "    eject_after: 0\n    backends:"),
    );
    let addr = lb.addr("lb");
    let threads: Vec<_> = (0..8)
        .map(|t| {
            std::thread::spawn(move || {
                for i in 0..25 {
                    let s = connect(addr);
                    let mut w = s.try_clone().unwrap();
                    writeln!(w, "hello {t} {i}").unwrap();
                    let mut line = String::new();
                    BufReader::new(s).read_line(&mut line).unwrap();
                    assert_eq!(line, format!("good hello {t} {i}\n"));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(good.accepted.load(Ordering::Relaxed), 200);
    let refused = lb.metric("spliced_connect_errors_total", &[("reason", "refused")]);
    assert!(
        refused >= 50.0,
        "round robin sent about half the first tries to the dead backend, saw {refused}"
    );
}

#[test]
fn ipv6_listener_and_backend() {
    let echo = Backend::spawn_on("[::1]:0", |mut s| {
        let mut r = s.try_clone().unwrap();
        let _ = std::io::copy(&mut r, &mut s);
    });
    let config = format!(
        "workers: 1\nlisteners:\n  - name: v6\n    listen: \"[::1]:0\"\n    pool: p\npools:\n  - name: p\n    backends: [\"{}\"]\n",
        echo.addr
    );
    let lb = Spliced::start(&config);
    assert!(lb.addr("v6").is_ipv6());
    let mut s = connect(lb.addr("v6"));
    s.write_all(b"over ipv6").unwrap();
    let mut buf = [0u8; 9];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"over ipv6");
}
