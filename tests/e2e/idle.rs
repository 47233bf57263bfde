//! Idle connections cost no threads and no pipes: thousands of connections
//! held open through spliced (a few of them after a bulk download that went
//! through a pipe) leave it with its own threads only (no io-wq worker parked
//! per connection, DESIGN.md §2) and no pipe lent out, and each of them still
//! relays afterwards.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

use crate::harness::*;

const CONNECTIONS: usize = 5000;
const WORKERS: usize = 2;
/// Connections that carry a bulk download before they fall idle.
const BULKY: usize = 20;
const MIB: usize = 1024 * 1024;

/// A backend on one thread: accepts `n` connections and keeps them, then
/// echoes one byte on each, in the order it accepted them, and hands the
/// streams back (so they stay open until the test drops them).
struct HoldingBackend {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    thread: JoinHandle<Result<Vec<TcpStream>, String>>,
}

impl HoldingBackend {
    fn spawn(n: usize) -> HoldingBackend {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        socket.set_reuse_address(true).unwrap();
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        socket.bind(&addr.into()).unwrap();
        // A deep queue: spliced connects faster than one thread accepts.
        socket.listen(4096).unwrap();
        socket.set_nonblocking(true).unwrap();
        let listener: std::net::TcpListener = socket.into();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let thread = std::thread::spawn(move || {
            let mut streams = Vec::with_capacity(n);
            let deadline = Instant::now() + WAIT;
            while streams.len() < n {
                if Instant::now() > deadline {
                    return Err(format!("accepted only {} of {n}", streams.len()));
                }
                match listener.accept() {
                    Ok((s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(WAIT)).unwrap();
                        s.set_write_timeout(Some(WAIT)).unwrap();
                        streams.push(s);
                        count.store(streams.len(), Ordering::SeqCst);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(format!("accept: {e}")),
                }
            }
            for (i, s) in streams.iter_mut().enumerate() {
                let mut b = [0u8; 1];
                s.read_exact(&mut b)
                    .map_err(|e| format!("backend stream {i}: read: {e}"))?;
                s.write_all(&b)
                    .map_err(|e| format!("backend stream {i}: write: {e}"))?;
            }
            Ok(streams)
        });
        HoldingBackend {
            addr,
            accepted,
            thread,
        }
    }
}

#[test]
fn five_thousand_idle_connections_hold_no_threads_and_no_pipes() {
    let limit = raise_fd_limit();
    assert!(
        limit >= (2 * CONNECTIONS + 2000) as u64,
        "this test holds {} sockets; the open-files limit is {limit}",
        2 * CONNECTIONS
    );
    let backend = HoldingBackend::spawn(CONNECTIONS);
    // Sends the requested bulk download, then holds the connection open.
    let bulk = Backend::spawn(|s| {
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        if r.read_line(&mut line).is_err() {
            return;
        }
        let Ok(len) = line.trim().parse::<usize>() else {
            return;
        };
        let mut w = s;
        send_stream(&mut w, len as u64, len);
        let _ = read_all(&mut r);
    });
    let lb = Spliced::start(&format!(
        "workers: {WORKERS}\nadmin:\n  listen: 127.0.0.1:0\nlisteners:\n  - {{ name: lb, listen: 127.0.0.1:0, pool: idle }}\n  - {{ name: bulk, listen: 127.0.0.1:0, pool: bulk }}\npools:\n  - {{ name: idle, backends: [{}] }}\n  - {{ name: bulk, backends: [{}] }}\n",
        backend.addr, bulk.addr
    ));
    let addr = lb.addr("lb");
    let started = Instant::now();

    // Some connections carry a bulk download first (so that direction goes
    // through a pipe), then fall idle too.
    let bulky: Vec<TcpStream> = (0..BULKY)
        .map(|i| {
            let mut s = connect(lb.addr("bulk"));
            let len = MIB + i * 4096;
            writeln!(s, "{len}").unwrap();
            let mut got = vec![0u8; len];
            s.read_exact(&mut got).unwrap();
            let mut h = Fnv::new();
            h.update(&got);
            assert_eq!(h.0, stream_hash(len as u64, len), "bulk download {i}");
            s
        })
        .collect();
    assert!(
        lb.metric("spliced_splice_switches_total", &[]) >= 1.0,
        "no bulk download went through splice"
    );

    let mut clients = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        clients.push(connect(addr));
    }
    wait_until("the backend accepted every connection", || {
        backend.accepted.load(Ordering::SeqCst) == CONNECTIONS
    });
    wait_until("spliced counts every connection as active", || {
        lb.metric("spliced_active_connections", &[]) == (CONNECTIONS + BULKY) as f64
    });

    let most_threads = WORKERS + 1 + 2;
    let threads = lb.threads();
    assert!(
        threads <= most_threads,
        "{threads} threads with {CONNECTIONS} idle connections (at most {most_threads}): \
         something parks a kernel worker per connection"
    );
    assert_eq!(
        lb.metric("spliced_pipes_in_use", &[]),
        0.0,
        "idle connections hold pipes"
    );

    // Every connection still relays: one byte each way on each of them.
    for (i, c) in clients.iter_mut().enumerate() {
        c.write_all(&[(i % 251) as u8]).unwrap();
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let mut b = [0u8; 1];
        c.read_exact(&mut b)
            .unwrap_or_else(|e| panic!("client {i}: no echo: {e}"));
        assert_eq!(b[0], (i % 251) as u8, "client {i} got another's byte");
    }
    let streams = backend
        .thread
        .join()
        .expect("backend thread")
        .unwrap_or_else(|e| panic!("backend: {e}"));

    // Idle again after traffic: still no extra threads, no pipes, all open.
    let threads = lb.threads();
    assert!(
        threads <= most_threads,
        "{threads} threads after one exchange on each connection (at most {most_threads})"
    );
    assert_eq!(lb.metric("spliced_pipes_in_use", &[]), 0.0);
    assert_eq!(
        lb.metric("spliced_active_connections", &[]),
        (CONNECTIONS + BULKY) as f64
    );
    eprintln!(
        "{CONNECTIONS} idle connections: {threads} threads, {:?}",
        started.elapsed()
    );
    drop(clients);
    drop(streams);
    drop(bulky);
}
