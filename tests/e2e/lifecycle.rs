//! A connection's and the process's life: graceful shutdown and its deadline,
//! the second signal, idle and connect timeouts, the per-listener connection
//! cap, running out of file descriptors, and a listen address already taken.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

use crate::harness::*;

const MIB: usize = 1024 * 1024;

/// Polls `cond` every 20 ms until it holds or `within` passes; says which.
fn poll_for(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads until EOF (a reset counts as the end too), bounded by the stream's
/// read timeout; returns how many bytes came before the end.
fn read_to_end_or_reset(s: &mut TcpStream) -> usize {
    let mut total = 0;
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return total,
            Ok(n) => total += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return total,
            Err(e) => panic!("expected the connection to be closed, got: {e}"),
        }
    }
}

/// One line through a `Backend::named` backend: the connection is relaying.
fn exchange(s: &TcpStream, name: &str, msg: &str) {
    let mut w = s.try_clone().unwrap();
    writeln!(w, "{msg}").unwrap();
    let mut line = String::new();
    BufReader::new(s.try_clone().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, format!("{name} {msg}\n"));
}

fn with_shutdown_timeout(timeout: &str, config: String) -> String {
    format!("shutdown_timeout: {timeout}\n{config}")
}

/// Sends SIGTERM once spliced has its handler installed. It must have it by
/// the time it logs "spliced started" (`sigterm_right_after_startup_is_graceful`
/// checks that); waiting here keeps the other shutdown tests about their own
/// subject should that ever regress.
fn sigterm(lb: &Spliced) {
    wait_until("spliced handles SIGTERM", || {
        lb.catches_signal(libc::SIGTERM)
    });
    lb.signal("TERM");
}

// ---- graceful shutdown -------------------------------------------------------

#[test]
fn sigterm_refuses_new_connections_and_lets_a_download_finish() {
    const SEED: u64 = 21;
    const LEN: usize = 32 * MIB;
    const CHUNK: usize = 64 * 1024;
    // The backend sends the first half, then waits at a gate the test opens
    // once spliced is draining, then sends the rest in small paced chunks.
    let at_gate = Arc::new(AtomicBool::new(false));
    let (open_gate, gate) = mpsc::channel::<()>();
    let gate = Mutex::new(gate);
    let reached = at_gate.clone();
    let served = AtomicBool::new(false);
    let backend = Backend::spawn(move |mut s| {
        // Only the download gets the stream; a probe that slipped in before
        // the listener closed is closed at once.
        if served.swap(true, Ordering::SeqCst) {
            return;
        }
        let mut stream = Stream::new(SEED);
        let mut buf = vec![0u8; CHUNK];
        for i in 0..LEN / CHUNK {
            if i == LEN / CHUNK / 2 {
                reached.store(true, Ordering::SeqCst);
                if gate.lock().unwrap().recv_timeout(WAIT).is_err() {
                    return;
                }
            }
            stream.fill(&mut buf);
            if s.write_all(&buf).is_err() {
                return;
            }
            if i > LEN / CHUNK / 2 {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        let _ = s.shutdown(Shutdown::Write);
    });
    let mut lb = Spliced::start(&with_shutdown_timeout(
        "20s",
        simple_config(&[backend.addr], ""),
    ));
    let addr = lb.addr("lb");
    let client = std::thread::spawn(move || {
        let mut s = connect(addr);
        read_all(&mut s)
    });
    wait_until("the backend sent half the download", || {
        at_gate.load(Ordering::SeqCst)
    });

    sigterm(&lb);
    lb.wait_log("shutting down");
    let refused = poll_for(
        Duration::from_secs(10),
        || match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Err(e) => e.kind() == ErrorKind::ConnectionRefused,
            Ok(_) => false,
        },
    );
    assert!(refused, "the listener still accepts after SIGTERM");
    assert!(
        lb.child.try_wait().unwrap().is_none(),
        "spliced exited with a transfer in flight; log:\n{}",
        lb.log_text()
    );

    open_gate.send(()).unwrap();
    let got = client.join().unwrap();
    assert_eq!(got, (LEN, stream_hash(SEED, LEN)), "download damaged");
    let code = lb.wait_exit(WAIT);
    assert_eq!(code, Some(0), "log:\n{}", lb.log_text());
    assert!(lb.log_text().contains("spliced stopped"));
}

#[test]
fn shutdown_timeout_closes_what_is_left_and_exits_zero() {
    let echo = Backend::echo();
    let mut lb = Spliced::start(&with_shutdown_timeout(
        "1s",
        simple_config(&[echo.addr], ""),
    ));
    let mut held = connect(lb.addr("lb"));
    held.write_all(b"x").unwrap();
    let mut b = [0u8; 1];
    held.read_exact(&mut b).unwrap();

    let signalled = Instant::now();
    sigterm(&lb);
    held.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(read_to_end_or_reset(&mut held), 0);
    let code = lb.wait_exit(Duration::from_secs(10));
    let took = signalled.elapsed();
    assert_eq!(code, Some(0), "log:\n{}", lb.log_text());
    assert!(
        took >= Duration::from_millis(900),
        "exited after {took:?}, before the 1s shutdown_timeout"
    );
    assert!(took < Duration::from_secs(5), "exit took {took:?}");
    assert!(
        lb.log_text().contains("shutdown timeout reached"),
        "log:\n{}",
        lb.log_text()
    );
}

#[test]
fn a_second_signal_exits_at_once() {
    let echo = Backend::echo();
    let mut lb = Spliced::start(&with_shutdown_timeout(
        "60s",
        simple_config(&[echo.addr], ""),
    ));
    let mut held = connect(lb.addr("lb"));
    held.write_all(b"x").unwrap();
    let mut b = [0u8; 1];
    held.read_exact(&mut b).unwrap();

    sigterm(&lb);
    // Two signals in quick succession can reach the process as one: wait
    // until the first has been handled.
    lb.wait_log("shutting down");
    assert!(lb.child.try_wait().unwrap().is_none());
    let signalled = Instant::now();
    sigterm(&lb);
    let code = lb.wait_exit(Duration::from_secs(10));
    let took = signalled.elapsed();
    // src/control/mod.rs: "second signal: exiting now" → exit(130).
    assert_eq!(code, Some(130), "log:\n{}", lb.log_text());
    assert!(took < Duration::from_secs(5), "exit took {took:?}");
    assert!(lb.log_text().contains("second signal"));
}

/// Regression: the control thread installed its signal handlers only after
/// logging "spliced started" (and setting /ready), so a SIGTERM sent as soon
/// as spliced said it was up killed it outright about one time in five.
#[test]
fn sigterm_right_after_startup_is_graceful() {
    let echo = Backend::echo();
    let config = simple_config(&[echo.addr], "");
    // The window is short: try enough times that a race would show.
    for attempt in 0..30 {
        let mut lb = Spliced::start(&config);
        // Ready by its own account: "spliced started" is logged.
        lb.signal("TERM");
        let code = lb.wait_exit(WAIT);
        assert_eq!(
            code,
            Some(0),
            "attempt {attempt}: a SIGTERM after `spliced started` was not a graceful \
             shutdown (None = killed by the signal); log:\n{}",
            lb.log_text()
        );
    }
}

// ---- timeouts ----------------------------------------------------------------

#[test]
fn idle_timeout_closes_a_silent_connection_but_not_a_trickling_one() {
    let echo = Backend::echo();
    let lb = Spliced::start(&simple_config(&[echo.addr], "idle_timeout: 1s"));
    let addr = lb.addr("lb");

    let opened = Instant::now();
    let mut silent = connect(addr);
    wait_until("the silent connection reached the backend", || {
        echo.accepted.load(Ordering::SeqCst) == 1
    });

    // Another connection sends a byte every 300 ms for 2 s: never idle 1 s.
    let trickle = std::thread::spawn(move || {
        let mut s = connect(addr);
        let mut b = [0u8; 1];
        for i in 0..8u8 {
            std::thread::sleep(Duration::from_millis(300));
            s.write_all(&[i])
                .unwrap_or_else(|e| panic!("trickle write {i}: {e}"));
            s.read_exact(&mut b)
                .unwrap_or_else(|e| panic!("trickle closed at byte {i}: {e}"));
            assert_eq!(b[0], i);
        }
        s
    });

    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(read_to_end_or_reset(&mut silent), 0);
    let closed_after = opened.elapsed();
    assert!(
        closed_after >= Duration::from_millis(900),
        "closed after {closed_after:?}, before idle_timeout"
    );
    assert!(
        closed_after < Duration::from_secs(4),
        "closed only after {closed_after:?} with idle_timeout: 1s"
    );

    let trickling = trickle.join().unwrap();
    // Its last byte moved just now, so it is not idle yet.
    assert_eq!(lb.metric("spliced_idle_timeouts_total", &[]), 1.0);
    drop(trickling);
}

/// A listener whose accept queue is full, so the kernel drops further SYNs
/// and a connect to it hangs. It lives as long as this value.
struct Blackhole {
    addr: SocketAddr,
    _listener: TcpListener,
    _queued: Vec<TcpStream>,
}

/// A [`Blackhole`], or `None` when connects to a full queue do not hang on
/// this kernel (probed directly with a short connect timeout).
fn blackhole() -> Option<Blackhole> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket.bind(&addr.into()).unwrap();
    socket.listen(0).unwrap();
    let listener: TcpListener = socket.into();
    let addr = listener.local_addr().unwrap();
    let mut queued = Vec::new();
    for _ in 0..8 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(s) => queued.push(s),
            Err(e) if e.kind() == ErrorKind::TimedOut || e.kind() == ErrorKind::WouldBlock => {
                return Some(Blackhole {
                    addr,
                    _listener: listener,
                    _queued: queued,
                });
            }
            Err(e) => {
                eprintln!("blackhole probe failed: {e}");
                return None;
            }
        }
    }
    None
}

#[test]
fn connect_timeout_moves_on_to_the_next_backend() {
    let Some(blackhole) = blackhole() else {
        eprintln!("SKIPPED: connects to a full accept queue do not hang on this kernel");
        return;
    };
    let hole = blackhole.addr;
    let good = Backend::named("good");
    let lb = Spliced::start(&simple_config(
        &[hole, good.addr],
        "connect_timeout: 300ms\nretries: 1",
    ));
    let timeouts = || {
        lb.metric(
            "spliced_connect_errors_total",
            &[("backend", &hole.to_string()), ("reason", "timeout")],
        )
    };
    // Round robin sends one of any two consecutive connections to the hole first.
    for i in 0..4 {
        let started = Instant::now();
        let s = connect(lb.addr("lb"));
        exchange(&s, "good", &format!("hello {i}"));
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(3),
            "connection {i} took {took:?} with connect_timeout: 300ms"
        );
    }
    assert!(timeouts() >= 1.0, "no connect timeout was counted");
    assert_eq!(good.accepted.load(Ordering::SeqCst), 4);
}

// ---- limits ------------------------------------------------------------------

#[test]
fn max_connections_closes_the_one_too_many_at_once() {
    let named = Backend::named("b");
    let lb = Spliced::start(&simple_config(&[named.addr], "max_connections: 3"));
    let addr = lb.addr("lb");
    let mut held: Vec<TcpStream> = (0..3)
        .map(|i| {
            let s = connect(addr);
            exchange(&s, "b", &format!("held {i}"));
            s
        })
        .collect();

    let mut extra = connect(addr);
    extra
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let started = Instant::now();
    assert_eq!(read_to_end_or_reset(&mut extra), 0);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(named.accepted.load(Ordering::SeqCst), 3);
    let rejected = |lb: &Spliced| {
        lb.metric(
            "spliced_rejected_connections_total",
            &[("listener", "lb"), ("reason", "max_connections")],
        )
    };
    assert_eq!(rejected(&lb), 1.0);

    // It is a cap on open connections: closing one makes room.
    drop(held.pop());
    wait_until("the closed connection is released", || {
        lb.metric("spliced_listener_active_connections", &[("listener", "lb")]) == 2.0
    });
    let s = connect(addr);
    exchange(&s, "b", "after");
    assert_eq!(named.accepted.load(Ordering::SeqCst), 4);
    assert_eq!(rejected(&lb), 1.0);
}

/// spliced with its file-descriptor table full: its connection budget spent
/// on relayed connections and its reserve on idle admin connections.
struct OutOfFds {
    lb: Spliced,
    /// The relayed clients, then the ones left waiting in the listen queue
    /// (a client spliced had to drop is in here too).
    held: Vec<TcpStream>,
    /// Idle admin connections holding the reserve.
    _admin: Vec<TcpStream>,
    backend: Backend,
    /// How many connections reached the backend.
    relayed: usize,
}

/// How many descriptor numbers below `limit` process `pid` has in use
/// (inherited descriptors above the limit stay open but take no slot).
fn fds_below(pid: i32, limit: usize) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<usize>().ok())
        .filter(|&fd| fd < limit)
        .count()
}

/// Whether process `pid` has the engine instances of `n` workers open: `n`
/// io_uring instances, or on the epoll engine `n` epoll instances beside the
/// four the control and health threads' tokio runtimes make before any
/// worker starts (counted with `ls -l /proc/PID/fd`).
fn has_rings(pid: i32, n: usize) -> bool {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    let (kind, expected) = match test_dataplane().as_deref() {
        Some("epoll") => ("eventpoll", n + 4),
        _ => ("io_uring", n),
    };
    dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|t| t.to_string_lossy().contains(kind))
        .count()
        == expected
}

/// spliced under `prlimit --nofile=LIMIT:LIMIT`, once start-up is complete:
/// each worker has made its ring (on its own thread) and the control thread
/// its signal pipe, so its descriptors can be counted.
fn start_with_fd_limit(limit: usize, backend: SocketAddr) -> Spliced {
    let lb = Spliced::start_with(
        &["prlimit", &format!("--nofile={limit}:{limit}")],
        &simple_config(&[backend], ""),
    );
    assert!(
        lb.log_text().contains(&format!("nofile={limit}/{limit}")),
        "the limit did not reach spliced; log:\n{}",
        lb.log_text()
    );
    wait_until("spliced has set up its workers and signal handlers", || {
        lb.catches_signal(libc::SIGTERM) && has_rings(lb.pid(), 2)
    });
    lb
}

/// The connection budget spliced logged at start (`max_connections_by_fds`).
fn logged_budget(lb: &Spliced) -> usize {
    let log = lb.log_text();
    log.split("max_connections_by_fds=")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no connection budget logged:\n{log}"))
}

/// Runs spliced under a limit of 80 descriptors and fills its table: relayed
/// connections up to its connection budget, then idle admin connections
/// (the reserve is the control thread's, so only they can reach past it)
/// until exactly `spare` descriptors are left (0: the next accept fails with
/// EMFILE; 1: the next accept succeeds and that client's backend socket
/// fails; one connection of the budget is then left unused). Then connects
/// `queued` more clients, which wait in the listen
/// queue. The admin connections stay well within the admin's request
/// deadline (10 s) for the length of these tests.
fn out_of_fds(spare: usize, queued: usize) -> OutOfFds {
    let backend = Backend::named("b");
    let limit = 80;
    let lb = start_with_fd_limit(limit, backend.addr);
    // With a descriptor to spare, a connection must also be left in the
    // budget, or the queued clients are refused before their backend socket.
    let relayed = logged_budget(&lb) - spare;
    assert!(
        relayed >= 4,
        "a budget of {relayed} connections at {limit} fds"
    );

    let addr = lb.addr("lb");
    let mut held: Vec<TcpStream> = (0..relayed)
        .filter_map(|_| TcpStream::connect_timeout(&addr, WAIT).ok())
        .collect();
    wait_until("the relayed connections reached the backend", || {
        backend.accepted.load(Ordering::SeqCst) as usize >= relayed
    });

    let admin_addr = lb.admin.expect("simple_config has an admin listener");
    let mut admin = Vec::new();
    loop {
        let used = fds_below(lb.pid(), limit);
        assert!(
            used + spare <= limit,
            "{used} of {limit} descriptors in use"
        );
        if used + spare == limit {
            break;
        }
        admin.push(TcpStream::connect_timeout(&admin_addr, WAIT).unwrap());
        wait_until("the admin API accepted the connection", || {
            fds_below(lb.pid(), limit) > used
        });
    }

    held.extend((0..queued).filter_map(|_| TcpStream::connect_timeout(&addr, WAIT).ok()));
    OutOfFds {
        lb,
        held,
        _admin: admin,
        backend,
        relayed,
    }
}

/// How many warnings a rate limit of one per second per worker allows over
/// `elapsed` (2 workers in `simple_config`), with a second of slack.
fn allowed_warnings(elapsed: Duration) -> usize {
    2 * (elapsed.as_secs() as usize + 2)
}

#[test]
fn out_of_file_descriptors_backs_off_quietly_and_recovers() {
    let started = Instant::now();
    let OutOfFds {
        mut lb,
        held,
        backend,
        relayed,
        _admin,
    } = out_of_fds(0, 20);
    let addr = lb.addr("lb");
    lb.wait_log("out of file descriptors");

    let before = lb.cpu_time();
    let window = Instant::now();
    // A measuring window, not a synchronisation: spliced must stay quiet
    // through it while the queued clients wait and accepts keep failing.
    std::thread::sleep(Duration::from_secs(2));
    let cpu = lb.cpu_time() - before;
    let measured = window.elapsed();
    assert!(
        cpu < Duration::from_millis(500),
        "spliced used {cpu:?} of CPU in {measured:?} while out of file descriptors"
    );
    assert!(
        lb.child.try_wait().unwrap().is_none(),
        "spliced died; log:\n{}",
        lb.log_text()
    );
    assert_eq!(
        backend.accepted.load(Ordering::SeqCst) as usize,
        relayed,
        "a connection reached the backend with no descriptor to spare"
    );

    drop(held);
    let mut recovered = false;
    let deadline = Instant::now() + WAIT;
    while !recovered && Instant::now() < deadline {
        let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut w = s.try_clone().unwrap();
        let mut line = String::new();
        if writeln!(w, "again").is_ok()
            && BufReader::new(s).read_line(&mut line).is_ok()
            && line == "b again\n"
        {
            recovered = true;
        } else {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert!(recovered, "no connection works after the held ones closed");

    let errors = lb.metric("spliced_accept_resource_errors_total", &[]);
    assert!(errors > 0.0, "no accept resource error counted");
    let warnings = lb.log_count("out of file descriptors");
    let elapsed = started.elapsed();
    assert!(
        warnings <= allowed_warnings(elapsed),
        "{warnings} 'out of file descriptors' warnings in {elapsed:?}; log:\n{}",
        lb.log_text()
    );
}

/// Regression: when the client's accept took the last descriptor, the
/// backend socket failed with EMFILE and `connect_next` logged a warning for
/// every such client, unthrottled (one per queued client, in a burst).
#[test]
fn fd_exhaustion_at_backend_socket_is_rate_limited_like_accept() {
    let started = Instant::now();
    // One descriptor to spare: every queued client is accepted into it and
    // then finds none for its backend socket.
    let OutOfFds {
        lb, held, _admin, ..
    } = out_of_fds(1, 30);
    // A measuring window: count what fd exhaustion makes spliced log in it.
    std::thread::sleep(Duration::from_secs(2));
    let warnings = lb.log_count("Too many open files");
    let elapsed = started.elapsed();
    drop(held);
    assert!(
        warnings >= 1,
        "no backend socket ran out of descriptors; log:\n{}",
        lb.log_text()
    );
    assert!(
        warnings <= allowed_warnings(elapsed),
        "{warnings} warnings about running out of file descriptors in {elapsed:?}; log:\n{}",
        lb.log_text()
    );
}

#[test]
fn a_listen_address_in_use_is_one_clear_line_and_exit_1() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let backend = refused_addr();
    let dir = temp_dir();
    let path = dir.join("busy.yaml");
    std::fs::write(
        &path,
        format!(
            "workers: 2\nlisteners:\n  - name: busy\n    listen: {addr}\n    pool: p\npools:\n  - name: p\n    backends: [{backend}]\n"
        ),
    )
    .unwrap();
    let started = Instant::now();
    let out = run_bin(
        [std::ffi::OsStr::new("run"), "-c".as_ref(), path.as_os_str()],
        Duration::from_secs(10),
    );
    let took = started.elapsed();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(took < Duration::from_secs(5), "took {took:?} to give up");
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("in use"))
        .collect();
    assert_eq!(lines.len(), 1, "want one line; stderr:\n{}", out.stderr);
    let line = lines[0];
    assert!(
        line.contains("busy"),
        "line does not name the listener: {line}"
    );
    assert!(
        line.contains(&addr.to_string()),
        "line does not name the address: {line}"
    );
    assert!(!out.stderr.contains("listening"), "{}", out.stderr);
    drop(taken);
}

/// Near the fd limit spliced refuses new connections while it still has fds
/// in reserve, so the admin API (readiness, metrics) keeps answering instead
/// of timing out with the data plane; the refusals are counted, the held
/// connections keep working, and new ones work once some close.
#[test]
fn a_connection_budget_under_the_fd_limit_keeps_the_admin_api_reachable() {
    // The clients and the backend live in this process: ~4 fds per connection.
    assert!(raise_fd_limit() >= 4000, "this test needs 4000 fds");
    let backend = Backend::named("b");
    // The classic default: below about 1,044 the reserve once switched
    // itself off and a full table locked the operator out.
    let limit = 1024;
    let lb = start_with_fd_limit(limit, backend.addr);
    let budget = logged_budget(&lb);
    assert!(
        budget > 100 && budget < limit / 2,
        "budget {budget} for a limit of {limit}"
    );

    let addr = lb.addr("lb");
    let extra = 10;
    let mut held: Vec<TcpStream> = (0..budget + extra)
        .filter_map(|_| TcpStream::connect_timeout(&addr, WAIT).ok())
        .collect();
    wait_until("the budgeted connections reached the backend", || {
        backend.accepted.load(Ordering::SeqCst) as usize >= budget
    });
    wait_until("the connections over budget were refused", || {
        lb.metric(
            "spliced_rejected_connections_total",
            &[("listener", "lb"), ("reason", "resources")],
        ) >= extra as f64
    });
    assert_eq!(
        backend.accepted.load(Ordering::SeqCst) as usize,
        budget,
        "more connections than the budget reached the backend"
    );
    let (status, _) = lb.admin_get("/ready");
    assert_eq!(status, 200, "/ready while the connection budget is spent");

    // The first connection (within the budget) still relays.
    let s = held.swap_remove(0);
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut w = s.try_clone().unwrap();
    writeln!(w, "still here").unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    assert_eq!(line, "b still here\n");

    drop(held);
    wait_until("a new connection relays once the held ones closed", || {
        let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
            return false;
        };
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut w = s.try_clone().unwrap();
        let mut line = String::new();
        writeln!(w, "again").is_ok()
            && BufReader::new(s).read_line(&mut line).is_ok()
            && line == "b again\n"
    });
}
