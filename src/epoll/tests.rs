use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;

use super::*;

const BUFS: u16 = 4;
const SIZE: u32 = 4096;

fn poller() -> Poller {
    let mut p = Poller::new().unwrap();
    p.provide_buffers(0, BUFS, SIZE).unwrap();
    p
}

/// Waits (bounded) for the completion tagged `user_data`.
fn wait_for(p: &mut Poller, user_data: u64) -> Completion {
    let mut out = Vec::new();
    for _ in 0..100 {
        p.submit_and_wait(Some(Duration::from_millis(100))).unwrap();
        p.drain_completions(&mut out);
        if let Some(i) = out.iter().position(|c| c.user_data == user_data) {
            let c = out.swap_remove(i);
            // Anything else that completed goes back for later waits.
            p.done.append(&mut out);
            return c;
        }
        p.done.append(&mut out);
    }
    panic!("no completion for {user_data}");
}

/// A connected pair: the accepted end (born in the poller) and the client.
fn accepted(p: &mut Poller) -> (OwnedFd, TcpStream, TcpListener) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    p.accept_multi(listener.as_raw_fd(), 1);
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let mut c = wait_for(p, 1);
    assert!(c.more(), "a multishot accept goes on");
    (c.take_accepted().unwrap(), client, listener)
}

fn free_buffers(p: &Poller) -> usize {
    p.bufs.as_ref().unwrap().free.len()
}

#[test]
fn data_then_eof_arrive_and_eof_holds_no_buffer() {
    let mut p = poller();
    let (conn, mut client, _l) = accepted(&mut p);
    // Bytes and FIN before the first receive: one edge for both.
    client.write_all(b"hello").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    p.recv_provided(conn.as_raw_fd(), false, 2);
    let c = wait_for(&mut p, 2);
    assert_eq!(c.result, 5);
    let id = c.buffer().unwrap();
    assert_eq!(p.buffer(id, 0, 5), b"hello");
    p.recycle(id);
    // The short read must not wait for an edge the FIN already spent.
    p.recv_provided(conn.as_raw_fd(), false, 3);
    let eof = wait_for(&mut p, 3);
    assert_eq!((eof.result, eof.buffer()), (0, None));
    assert_eq!(free_buffers(&p), BUFS as usize, "a buffer leaked");
}

#[test]
fn a_receive_waits_for_data_then_completes() {
    let mut p = poller();
    let (conn, mut client, _l) = accepted(&mut p);
    p.recv_provided(conn.as_raw_fd(), true, 2);
    p.submit_and_wait(Some(Duration::ZERO)).unwrap();
    let mut out = Vec::new();
    p.drain_completions(&mut out);
    assert!(out.iter().all(|c| c.user_data != 2), "nothing to read yet");
    client.write_all(b"late").unwrap();
    let c = wait_for(&mut p, 2);
    assert_eq!(c.result, 4);
    p.recycle(c.buffer().unwrap());
}

#[test]
fn without_free_buffers_a_receive_says_enobufs() {
    let mut p = poller();
    let (conn, mut client, _l) = accepted(&mut p);
    let mut held = Vec::new();
    for i in 0..=BUFS as u64 {
        client.write_all(&[b'x'; 10]).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        p.recv_provided(conn.as_raw_fd(), false, 10 + i);
        let c = wait_for(&mut p, 10 + i);
        if i < BUFS as u64 {
            held.push(c.buffer().unwrap());
        } else {
            assert_eq!(c.result, -libc::ENOBUFS);
        }
    }
    for id in held {
        p.recycle(id);
    }
    assert_eq!(free_buffers(&p), BUFS as usize);
}

#[test]
fn a_send_that_finds_the_socket_full_completes_once_the_peer_reads() {
    let mut p = poller();
    let (conn, mut client, _l) = accepted(&mut p);
    client.write_all(&[7; 100]).unwrap();
    p.recv_provided(conn.as_raw_fd(), false, 2);
    let id = wait_for(&mut p, 2).buffer().unwrap();
    // Fill the socket until a send is left waiting.
    let mut sent = 0usize;
    let mut waiting = None;
    for i in 0..100_000u64 {
        p.send_buf(conn.as_raw_fd(), id, 0, 100, 100 + i);
        p.submit_and_wait(Some(Duration::ZERO)).unwrap();
        let mut out = Vec::new();
        p.drain_completions(&mut out);
        match out.iter().find(|c| c.user_data == 100 + i) {
            Some(c) => sent += c.result as usize,
            None => {
                waiting = Some(100 + i);
                break;
            }
        }
    }
    let waiting = waiting.expect("the socket never filled");
    p.recycle(id); // Given back while lent: free once the send is done.
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0; 1 << 16];
        let mut total = 0;
        while total <= sent {
            total += client.read(&mut buf).unwrap();
        }
    });
    let c = wait_for(&mut p, waiting);
    assert!(c.result > 0, "{}", c.result);
    reader.join().unwrap();
    assert_eq!(free_buffers(&p), BUFS as usize);
}

#[test]
fn connect_reports_success_and_refusal() {
    let mut p = poller();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let ok = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM.nonblocking(),
        None,
    )
    .unwrap();
    let addr = socket2::SockAddr::from(listener.local_addr().unwrap());
    p.connect(ok.as_raw_fd(), &addr, Duration::from_secs(5), 1, 2);
    assert_eq!(wait_for(&mut p, 1).result, 0);
    assert_eq!(wait_for(&mut p, 2).result, -libc::ECANCELED);

    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let refused = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM.nonblocking(),
        None,
    )
    .unwrap();
    let addr = socket2::SockAddr::from(closed);
    p.connect(refused.as_raw_fd(), &addr, Duration::from_secs(5), 3, 4);
    assert_eq!(wait_for(&mut p, 3).result, -libc::ECONNREFUSED);
    assert_eq!(wait_for(&mut p, 4).result, -libc::ECANCELED);
}

#[test]
fn cancel_ends_every_operation_on_the_fd_and_then_itself() {
    let mut p = poller();
    let (conn, _client, listener) = accepted(&mut p);
    p.recv_provided(conn.as_raw_fd(), false, 2);
    p.cancel_fd(conn.as_raw_fd(), 3);
    assert_eq!(wait_for(&mut p, 2).result, -libc::ECANCELED);
    assert_eq!(wait_for(&mut p, 3).result, 1);
    p.cancel_fd(listener.as_raw_fd(), 4);
    let accept = wait_for(&mut p, 1);
    assert_eq!((accept.result, accept.more()), (-libc::ECANCELED, false));
    assert_eq!(wait_for(&mut p, 4).result, 1);
    p.cancel_fd(conn.as_raw_fd(), 5);
    assert_eq!(wait_for(&mut p, 5).result, -libc::ENOENT);
}

#[test]
fn timers_fire_in_deadline_order() {
    let mut p = poller();
    p.timeout(Duration::from_millis(30), 2);
    p.timeout(Duration::from_millis(10), 1);
    let mut seen = Vec::new();
    let mut out = Vec::new();
    while seen.len() < 2 {
        p.submit_and_wait(None).unwrap();
        p.drain_completions(&mut out);
        seen.extend(out.iter().map(|c| (c.user_data, c.result)));
    }
    assert_eq!(seen, [(1, -libc::ETIME), (2, -libc::ETIME)]);
}

#[test]
fn a_readiness_poll_checks_before_trusting_an_old_edge() {
    let mut p = poller();
    let (conn, mut client, _l) = accepted(&mut p);
    // The fd was born "ready"; nothing is there, so the poll must wait.
    p.poll(conn.as_raw_fd(), libc::POLLIN as u32, false, 2);
    p.submit_and_wait(Some(Duration::ZERO)).unwrap();
    let mut out = Vec::new();
    p.drain_completions(&mut out);
    assert!(
        out.iter().all(|c| c.user_data != 2),
        "reported a stale readiness"
    );
    client.write_all(b"x").unwrap();
    let c = wait_for(&mut p, 2);
    assert!(c.result & libc::POLLIN as i32 != 0);
}

#[test]
fn an_event_for_a_closed_fd_whose_number_came_back_is_ignored() {
    let mut p = poller();
    let (conn, _client, _l) = accepted(&mut p);
    let fd = conn.as_raw_fd();
    let old_gen = p.state(fd).gen;
    drop(conn);
    // A new socket under the same number is a new birth.
    let (again, _client2, _l2) = accepted(&mut p);
    if again.as_raw_fd() == fd {
        assert_ne!(p.state(fd).gen, old_gen);
    }
}
