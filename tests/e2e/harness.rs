//! Test harness: starts the real `spliced` binary with a YAML config on
//! 127.0.0.1:0, learns the bound addresses from its log, and provides real
//! loopback backends (echo, sink, source, named HTTP-ish responders) plus a
//! deterministic byte stream to check integrity. Every wait is bounded.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_spliced");
/// Upper bound for any single wait in a test.
pub const WAIT: Duration = Duration::from_secs(30);

/// A running spliced process.
pub struct Spliced {
    pub child: Child,
    pub listeners: HashMap<String, SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub log: Arc<Mutex<Vec<String>>>,
    pub dir: PathBuf,
}

static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

pub fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "spliced-e2e-{}-{}",
        std::process::id(),
        NEXT_DIR.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The L4 engine every spawned spliced is told to use (`--dataplane`), from
/// `SPLICED_TEST_DATAPLANE` (`scripts/test.sh` runs the L4 suite once per
/// engine); unset: the config's choice (`auto`).
pub fn test_dataplane() -> Option<String> {
    std::env::var("SPLICED_TEST_DATAPLANE")
        .ok()
        .filter(|v| !v.is_empty())
}

impl Spliced {
    /// Starts spliced with `yaml` and waits until every listener (and the admin
    /// listener, if configured) has been logged as bound.
    pub fn start(yaml: &str) -> Spliced {
        Spliced::start_with(&[], yaml)
    }

    /// As [`Spliced::start`], with the binary run through a command `prefix`
    /// that ends by exec'ing it (e.g. `["prlimit", "--nofile=64:64"]`), so the
    /// child's pid is spliced's own.
    pub fn start_with(prefix: &[&str], yaml: &str) -> Spliced {
        let dir = temp_dir();
        let path = dir.join("spliced.yaml");
        std::fs::write(&path, yaml).unwrap();
        Spliced::spawn(prefix, &path, &[], dir)
    }

    /// Runs `spliced run -c path EXTRA...` on a config file the test laid
    /// out itself (e.g. behind a symlink), once started as [`Spliced::start`].
    pub fn start_file(path: &std::path::Path, extra: &[&str]) -> Spliced {
        Spliced::spawn(&[], path, extra, temp_dir())
    }

    fn spawn(prefix: &[&str], path: &std::path::Path, extra: &[&str], dir: PathBuf) -> Spliced {
        let mut command = match prefix.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        command.args(["run", "-c"]).arg(path).args(extra);
        if let Some(engine) = test_dataplane() {
            command.args(["--dataplane", &engine]);
        }
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn spliced");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    log.lock().unwrap().push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }
        let mut listeners = HashMap::new();
        let mut admin = None;
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(l) => l,
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "spliced did not start; log:\n{}",
                        log.lock().unwrap().join("\n")
                    );
                }
            };
            if line.contains(" listening listener=") {
                let name = field(&line, "listener").unwrap();
                let addr = field(&line, "addr").unwrap().parse().unwrap();
                listeners.insert(name, addr);
            } else if line.contains("admin listening") {
                admin = Some(field(&line, "addr").unwrap().parse().unwrap());
            } else if line.contains("spliced started") {
                break;
            }
        }
        Spliced {
            child,
            listeners,
            admin,
            log,
            dir,
        }
    }

    pub fn addr(&self, listener: &str) -> SocketAddr {
        self.listeners[listener]
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits for the process to exit (bounded) and returns its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// GET on the admin listener; returns (status, body).
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        http_get(self.admin.expect("admin configured"), path)
    }

    /// Every sample of /metrics as `name{labels}` → value.
    pub fn metrics(&self) -> HashMap<String, f64> {
        let (status, body) = self.admin_get("/metrics");
        assert_eq!(status, 200);
        parse_metrics(&body)
    }

    /// Sum of every sample of `name` whose labels contain all of `labels`.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        sum_metric(&self.metrics(), name, labels)
    }

    /// Whether spliced has installed a handler for signal number `sig`
    /// (`SigCgt` in /proc/PID/status): before that, the signal's default
    /// action applies.
    pub fn catches_signal(&self, sig: i32) -> bool {
        let Ok(s) = std::fs::read_to_string(format!("/proc/{}/status", self.pid())) else {
            return false;
        };
        let mask = s
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            .unwrap_or(0);
        mask & (1 << (sig - 1)) != 0
    }

    /// Log lines (so far) containing `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Waits (bounded by `WAIT`) until a log line contains `needle`.
    pub fn wait_log(&self, needle: &str) {
        wait_until(&format!("log line containing {needle:?}"), || {
            self.log_count(needle) > 0
        });
    }

    /// CPU time (user + system) the spliced process has used so far.
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the whole line (1-based).
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        // SAFETY: sysconf only reads a system constant.
        let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        assert!(per_sec > 0, "sysconf(_SC_CLK_TCK) failed");
        Duration::from_secs_f64(ticks as f64 / per_sec as f64)
    }

    /// Number of threads of the spliced process.
    pub fn threads(&self) -> usize {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for Spliced {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `key=value` (or `key="value"`) from a text log line.
pub fn field(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    let rest = &line[start..];
    if let Some(stripped) = rest.strip_prefix('"') {
        return stripped.split('"').next().map(str::to_string);
    }
    rest.split_whitespace().next().map(str::to_string)
}

pub fn parse_metrics(body: &str) -> HashMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

pub fn sum_metric(m: &HashMap<String, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    m.iter()
        .filter(|(k, _)| {
            let (n, rest) = k.split_once('{').unwrap_or((k.as_str(), ""));
            n == name
                && labels
                    .iter()
                    .all(|(lk, lv)| rest.contains(&format!("{lk}=\"{lv}\"")))
        })
        .map(|(_, v)| *v)
        .sum()
}

pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http(addr, "GET", path, None, "")
}

/// One HTTP/1.1 request with an optional bearer token and body: (status, body).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, WAIT).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, WAIT).expect("connect through spliced");
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_write_timeout(Some(WAIT)).unwrap();
    s
}

// ---- deterministic data ------------------------------------------------------

/// A reproducible pseudo-random byte stream (xorshift64*), so a receiver can
/// check every byte without the sender keeping a copy.
pub struct Stream {
    state: u64,
}

impl Stream {
    pub fn new(seed: u64) -> Stream {
        Stream {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        }
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.state ^= self.state >> 12;
            self.state ^= self.state << 25;
            self.state ^= self.state >> 27;
            let v = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// FNV-1a, 64 bits: a cheap fingerprint of a byte stream.
#[derive(Clone, Copy)]
pub struct Fnv(pub u64);

impl Fnv {
    pub fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    pub fn update(&mut self, data: &[u8]) {
        for &b in data {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x100_0000_01b3);
        }
    }
}

/// Writes `len` bytes of stream `seed` to `w`; returns their fingerprint.
pub fn send_stream(w: &mut impl Write, seed: u64, len: usize) -> u64 {
    let mut s = Stream::new(seed);
    let mut h = Fnv::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len());
        s.fill(&mut buf[..n]);
        h.update(&buf[..n]);
        w.write_all(&buf[..n]).expect("write through spliced");
        left -= n;
    }
    h.0
}

/// Reads until EOF; returns (bytes, fingerprint).
pub fn read_all(r: &mut impl Read) -> (usize, u64) {
    let mut h = Fnv::new();
    let mut total = 0;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return (total, h.0),
            Ok(n) => {
                h.update(&buf[..n]);
                total += n;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("read failed after {total} bytes: {e}"),
        }
    }
}

/// Fingerprint of `len` bytes of stream `seed`.
pub fn stream_hash(seed: u64, len: usize) -> u64 {
    send_stream(&mut std::io::sink(), seed, len)
}

// ---- backends ----------------------------------------------------------------

/// A listening socket with a deep accept queue (std's is 128): tests that open
/// hundreds of connections at once must not see handshakes dropped.
fn listen(addr: SocketAddr) -> TcpListener {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )
    .unwrap();
    socket.set_reuse_address(true).unwrap();
    socket.bind(&addr.into()).unwrap();
    socket.listen(4096).unwrap();
    socket.into()
}

/// A backend on 127.0.0.1:0 that runs `handler` on a thread per connection.
pub struct Backend {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Backend {
    pub fn spawn(handler: impl Fn(TcpStream) + Send + Sync + 'static) -> Backend {
        Self::spawn_on("127.0.0.1:0", handler)
    }

    pub fn spawn_on(addr: &str, handler: impl Fn(TcpStream) + Send + Sync + 'static) -> Backend {
        let listener = listen(addr.parse().unwrap());
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let handler = Arc::new(handler);
        {
            let accepted = accepted.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                for s in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let Ok(s) = s else { continue };
                    accepted.fetch_add(1, Ordering::Relaxed);
                    let h = handler.clone();
                    std::thread::spawn(move || h(s));
                }
            });
        }
        Backend {
            addr,
            accepted,
            stop,
        }
    }

    /// Echoes everything back; on EOF from the client, finishes and closes.
    pub fn echo() -> Backend {
        Backend::spawn(|mut s| {
            let mut r = s.try_clone().unwrap();
            let _ = std::io::copy(&mut r, &mut s);
            let _ = s.shutdown(Shutdown::Write);
        })
    }

    /// Reads everything; on EOF answers "<bytes> <fnv hex>\n" and closes.
    pub fn sink() -> Backend {
        Backend::spawn(|mut s| {
            let (n, h) = read_all(&mut s);
            let _ = writeln!(s, "{n} {h:016x}");
            let _ = s.shutdown(Shutdown::Write);
        })
    }

    /// Reads a line "<seed> <len>\n", sends that stream, closes.
    pub fn source() -> Backend {
        Backend::spawn(|mut s| {
            let mut line = String::new();
            let mut r = BufReader::new(s.try_clone().unwrap());
            if r.read_line(&mut line).is_err() {
                return;
            }
            let mut it = line.split_whitespace().map(|v| v.parse::<u64>().unwrap());
            let (seed, len) = (it.next().unwrap(), it.next().unwrap());
            send_stream(&mut s, seed, len as usize);
            let _ = s.shutdown(Shutdown::Write);
        })
    }

    /// Answers each line it reads with "<name> <line>\n" (request/response).
    pub fn named(name: &'static str) -> Backend {
        Backend::spawn(move |s| {
            let mut w = s.try_clone().unwrap();
            for line in BufReader::new(s).lines().map_while(Result::ok) {
                if writeln!(w, "{name} {line}").is_err() {
                    return;
                }
            }
        })
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Unblock the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

/// A port on 127.0.0.1 where nothing listens (connects are refused).
pub fn refused_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A minimal config: one listener `lb` on 127.0.0.1:0 → pool `p` over `backends`.
pub fn simple_config(backends: &[SocketAddr], extra_listener: &str) -> String {
    let mut s = String::from("workers: 2\nadmin:\n  listen: 127.0.0.1:0\nlisteners:\n  - name: lb\n    listen: 127.0.0.1:0\n    pool: p\n");
    for line in extra_listener.lines().filter(|l| !l.trim().is_empty()) {
        s.push_str("    ");
        s.push_str(line.trim());
        s.push('\n');
    }
    s.push_str("pools:\n  - name: p\n    backends:\n");
    for b in backends {
        s.push_str(&format!("      - address: {b}\n"));
    }
    s
}

/// Waits until `cond` holds, polling (bounded by `WAIT`); panics with `what`.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for: {what}");
}

/// Raises this process's soft limit on open files to its hard limit (tests that
/// hold thousands of sockets need it); returns the soft limit now in force.
pub fn raise_fd_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit only read and write a local plain-data struct.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        assert_eq!(
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim),
            0,
            "getrlimit"
        );
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
        lim.rlim_cur
    }
}

/// What a finished (or killed) command left behind.
#[derive(Debug)]
pub struct Output {
    /// Exit code; `None` when it had to be killed (or died by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the spliced binary with `args`, killing it if it has not exited
/// `within`; returns its exit code and everything it printed.
pub fn run_bin<I, S>(args: I, within: Duration) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut command = Command::new(BIN);
    command.args(args);
    run_command(command, "", within)
}

/// Runs `command` with `stdin` fed to it, killing it if it has not exited
/// `within`; returns its exit code and everything it printed.
pub fn run_command(mut command: Command, stdin: &str, within: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_string();
    // Written from a thread so a child that prints before reading can't deadlock us.
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(stdin.as_bytes());
    });
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = r.read_to_string(&mut text);
            text
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + within;
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = feeder.join();
    Output {
        code,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// A connection to `addr` from the chosen local source address (any address
/// of 127.0.0.0/8, or ::1), with the harness's read and write timeouts.
pub fn connect_from_ip(src: std::net::IpAddr, addr: SocketAddr) -> TcpStream {
    let domain = if src.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let s = socket2::Socket::new(domain, socket2::Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::new(src, 0).into())
        .unwrap_or_else(|e| panic!("bind {src}: {e}"));
    s.connect_timeout(&addr.into(), WAIT)
        .unwrap_or_else(|e| panic!("connect {src} → {addr}: {e}"));
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_write_timeout(Some(WAIT)).unwrap();
    s
}

// ---- peers: external programs (openssl, nginx) ---------------------------------

/// The program `name` (looked up on PATH, then in the sbin directories, where
/// Debian puts nginx); `None`, after printing that the test is skipped, when it
/// is missing and SPLICED_REQUIRE_PEERS is not set. With SPLICED_REQUIRE_PEERS
/// set (scripts/test.sh does), a missing program fails the test instead.
pub fn peer_tool(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from));
    let found = dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file());
    if found.is_none() {
        let required = std::env::var("SPLICED_REQUIRE_PEERS")
            .map(|v| !v.is_empty() && v != "0")
            .unwrap_or(false);
        assert!(
            !required,
            "{name} is not installed and SPLICED_REQUIRE_PEERS is set: run scripts/install-peers.sh"
        );
        eprintln!("SKIPPED: {name} not found; run scripts/install-peers.sh to run this test");
    }
    found
}

/// Debian's Python (not a pyenv shim) when it has `module`; `None`, after
/// printing that the test is skipped, when it lacks it and
/// SPLICED_REQUIRE_PEERS is not set (with it set, the test fails instead).
pub fn python_with(module: &str) -> Option<String> {
    let ok = Command::new("/usr/bin/python3")
        .args(["-c", &format!("import {module}")])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let required =
            std::env::var("SPLICED_REQUIRE_PEERS").is_ok_and(|v| !v.is_empty() && v != "0");
        assert!(
            !required,
            "/usr/bin/python3 lacks {module}: run scripts/install-peers.sh"
        );
        eprintln!("SKIPPED: /usr/bin/python3 lacks {module}");
        return None;
    }
    Some("/usr/bin/python3".into())
}

/// A child process (a peer such as `openssl s_server` or nginx) whose stdout
/// and stderr are collected as they come; killed when dropped.
pub struct Proc {
    pub child: Child,
    pub output: Arc<Mutex<String>>,
    pub what: String,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Proc {
    /// Starts `command` with stdin `stdin` and its output collected.
    pub fn spawn(what: &str, command: &mut Command, stdin: Stdio) -> Proc {
        let mut child = command
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let output = Arc::new(Mutex::new(String::new()));
        let outs: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().unwrap()),
            Box::new(child.stderr.take().unwrap()),
        ];
        let readers = outs
            .into_iter()
            .map(|r| {
                let output = output.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(r).lines().map_while(Result::ok) {
                        let mut o = output.lock().unwrap();
                        o.push_str(&line);
                        o.push('\n');
                    }
                })
            })
            .collect();
        Proc {
            child,
            output,
            what: what.to_string(),
            readers,
        }
    }

    pub fn text(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Once the process has exited: waits (bounded) until everything it
    /// printed has been collected, and returns it.
    fn drained_text(&self) -> String {
        wait_until(&format!("the output of {} to end", self.what), || {
            self.readers.iter().all(|r| r.is_finished())
        });
        self.text()
    }

    /// Waits (bounded by `WAIT`) until the output contains `needle`; panics
    /// with everything it printed if the process exits or time runs out first.
    pub fn wait_output(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        let mut exited = None;
        while exited.is_none() && Instant::now() < deadline {
            let text = self.text();
            if text.contains(needle) {
                return text;
            }
            exited = self.child.try_wait().unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
        let Some(status) = exited else {
            panic!(
                "{} did not print {needle:?} within {WAIT:?}; it printed:\n{}",
                self.what,
                self.text()
            );
        };
        let text = self.drained_text();
        if !text.contains(needle) {
            panic!(
                "{} exited ({status}) without printing {needle:?}; it printed:\n{text}",
                self.what
            );
        }
        text
    }

    /// Waits (bounded by `within`) for it to exit; kills it if it does not.
    /// Returns the exit code (`None` if killed) and everything it printed.
    pub fn finish(mut self, within: Duration) -> (Option<i32>, String) {
        let deadline = Instant::now() + within;
        let code = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status.code();
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        (code, self.drained_text())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- refusals -------------------------------------------------------------------

/// Reads from a connection spliced should close without a backend; panics if
/// any byte arrives or it stays open `WAIT`. A reset counts as closed.
pub fn expect_closed(s: &mut TcpStream, what: &str) {
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 256];
    match s.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!(
            "{what}: expected the connection closed, got {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
            ) => {}
        Err(e) => panic!("{what}: expected the connection closed, got {e}"),
    }
}

/// Sends one line through a new connection and returns the name of the
/// backend that answered (a [`Backend::named`] answers "NAME LINE").
pub fn ask(addr: SocketAddr) -> String {
    ask_on(connect(addr))
}

/// As [`ask`], over a connection already made.
pub fn ask_on(s: TcpStream) -> String {
    let mut w = s.try_clone().unwrap();
    writeln!(w, "who").unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    line.split_whitespace().next().unwrap_or("").to_string()
}

/// `body` as JSON, or a panic that shows it.
pub fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// What `GET /api/v1/pools` says of backend `address` of the first pool.
pub fn backend_info(admin: SocketAddr, address: &str) -> serde_json::Value {
    let pools = json(&http_get(admin, "/api/v1/pools").1);
    pools["pools"][0]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["address"] == address)
        .cloned()
        .unwrap_or_else(|| panic!("no backend {address} in {pools}"))
}
