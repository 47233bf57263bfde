//! The HTTP mode (`mode: http`) from outside: curl over HTTP/1.1, HTTP/2
//! with prior knowledge and (with TLS) ALPN, raw sockets for the refusals,
//! a real hyper backend that reports what it received, h2load for
//! multiplexing, and Python's `websockets` for upgrades.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::http_backend::HttpBackend;

/// What curl got: status, response head (lower-case) and body.
pub struct Got {
    pub status: u16,
    pub head: String,
    pub body: String,
}

/// Runs curl with `args` (`-s -i` added) and splits its answer.
pub fn curl(args: &[&str]) -> Got {
    let curl = peer_tool("curl").expect("curl");
    let out = Command::new(curl)
        .args(["-s", "-S", "-i", "--max-time", "15"])
        .args(args)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "curl {args:?} failed: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The last head (after any 100 Continue).
    let split = text.rfind("\r\n\r\n").map_or(text.len(), |i| i);
    let (head_all, body) = text.split_at(split);
    let head = head_all
        .rsplit("\r\n\r\n")
        .next()
        .unwrap_or(head_all)
        .to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Got {
        status,
        head,
        body: body.trim_start_matches("\r\n\r\n").to_owned(),
    }
}

fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}

/// A config with one plaintext HTTP listener `web` (with `listener` lines
/// added to it) and pools `a` and `b`.
fn config(a: &HttpBackend, b: &HttpBackend, listener: &str, pools: &str) -> String {
    let mut s = String::from(
        "workers: 2\nadmin:\n  listen: 127.0.0.1:0\nlisteners:\n  - name: web\n    listen: 127.0.0.1:0\n    mode: http\n",
    );
    for line in listener.lines().filter(|l| !l.trim().is_empty()) {
        s.push_str("    ");
        s.push_str(line);
        s.push('\n');
    }
    s.push_str(&format!(
        "pools:\n  - name: a\n    backends: [{}]\n{pools}  - name: b\n    backends: [{}]\n",
        a.addr, b.addr
    ));
    s
}

#[test]
fn http1_requests_reach_the_backend_with_forwarding_headers_and_without_hop_by_hop_ones() {
    let a = HttpBackend::start("a");
    let b = HttpBackend::start("b");
    let lb = Spliced::start(&config(&a, &b, "pool: a", ""));
    let web = lb.addr("web");
    let got = curl(&[
        "--http1.1",
        "-H",
        "Host: shop.example.com",
        "-H",
        "X-Forwarded-For: 6.6.6.6",
        "-H",
        "Connection: keep-alive, x-drop-me",
        "-H",
        "X-Drop-Me: secret",
        &url(web, "/cart?x=1"),
    ]);
    assert_eq!(got.status, 200, "{}{}", got.head, got.body);
    let body = &got.body;
    assert!(body.contains("backend: a"), "{body}");
    assert!(body.contains("GET /cart?x=1 HTTP/1.1"), "{body}");
    assert!(
        body.contains("host: shop.example.com\n"),
        "Host preserved: {body}"
    );
    assert!(
        body.contains("x-forwarded-for: 127.0.0.1\n"),
        "an untrusted client's XFF is replaced: {body}"
    );
    assert!(body.contains("x-forwarded-proto: http\n"), "{body}");
    assert!(
        body.contains("x-forwarded-host: shop.example.com\n"),
        "{body}"
    );
    assert!(body.contains("x-request-id: "), "{body}");
    assert!(
        !body.contains("x-drop-me"),
        "a header named by Connection is hop-by-hop: {body}"
    );
    assert!(got.head.contains("x-backend: a"), "{}", got.head);
    assert!(
        !got.head.contains("keep-alive: timeout"),
        "the backend's hop-by-hop Keep-Alive is not passed on: {}",
        got.head
    );
}

#[test]
fn routes_pick_pools_by_host_and_path_and_unrouted_requests_get_404() {
    let a = HttpBackend::start("a");
    let b = HttpBackend::start("b");
    let listener = "routes:\n  - match: { host: api.example.com, path_prefix: /v1/ }\n    pool: b\n  - match: { host: \"*.static.example.com\" }\n    pool: a\n";
    let lb = Spliced::start(&config(&a, &b, listener, ""));
    let web = lb.addr("web");
    let get = |host: &str, path: &str| curl(&["-H", &format!("Host: {host}"), &url(web, path)]);
    assert!(get("api.example.com", "/v1/users")
        .body
        .contains("backend: b"));
    assert!(get("img.static.example.com", "/logo.png")
        .body
        .contains("backend: a"));
    let miss = get("api.example.com", "/v2/users");
    assert_eq!(
        miss.status, 404,
        "no route and no listener pool: {}",
        miss.body
    );
    assert_eq!(get("other.org", "/").status, 404);
    assert_eq!(a.requests() + b.requests(), 2, "404s never reach a backend");
}

#[test]
fn h2c_with_prior_knowledge_and_an_h2c_pool_multiplex_over_one_connection_per_worker() {
    let a = HttpBackend::start("a");
    let b = HttpBackend::start("b");
    let lb = Spliced::start(&config(&a, &b, "pool: a", "    protocol: h2c\n"));
    let web = lb.addr("web");
    let got = curl(&["--http2-prior-knowledge", &url(web, "/hello")]);
    assert_eq!(got.status, 200, "{}", got.head);
    assert!(got.head.starts_with("http/2 200"), "{}", got.head);
    assert!(
        got.body.contains("GET http://") || got.body.contains("GET /hello"),
        "{}",
        got.body
    );
    assert!(
        got.body.contains("HTTP/2.0"),
        "the backend is spoken to in h2: {}",
        got.body
    );
    let Some(h2load) = peer_tool("h2load") else {
        return;
    };
    let out = run_command(
        {
            let mut c = Command::new(h2load);
            c.args(["-n", "2000", "-c", "4", "-m", "10", &url(web, "/")]);
            c
        },
        "",
        WAIT,
    );
    assert!(
        out.stdout.contains("2000 succeeded, 0 failed, 0 errored"),
        "{}",
        out.stdout
    );
    assert!(a.h2_requests.load(std::sync::atomic::Ordering::Relaxed) >= 2000);
    assert!(
        a.connections() <= 2,
        "one h2 connection per worker carries every stream, got {}",
        a.connections()
    );
    let open = lb.metric(
        "spliced_http_upstream_connections",
        &[("pool", "a"), ("state", "open")],
    );
    assert!(
        (1.0..=2.0).contains(&open),
        "open upstream connections: {open}"
    );
}

#[test]
fn http1_backend_connections_are_kept_alive_and_reused() {
    let a = HttpBackend::start("a");
    let b = HttpBackend::start("b");
    let lb = Spliced::start(&config(&a, &b, "pool: a", ""));
    let web = lb.addr("web");
    for _ in 0..20 {
        assert_eq!(curl(&[&url(web, "/")]).status, 200);
    }
    assert_eq!(a.requests(), 20);
    let served = lb.metric(
        "spliced_bytes_total",
        &[
            ("listener", "web"),
            ("pool", "a"),
            ("direction", "backend_to_client"),
        ],
    );
    assert!(
        served >= 20.0 * 100.0,
        "response bytes are counted per backend: {served}"
    );
    assert!(
        a.connections() <= 2,
        "sequential requests reuse a kept-alive backend connection (one per worker at most), got {}",
        a.connections()
    );
}

#[test]
fn a_backend_that_refuses_is_skipped_and_the_request_served_by_another() {
    let a = HttpBackend::start("a");
    let b = HttpBackend::start("b");
    let dead = refused_addr();
    let yaml = format!(
        "workers: 1\nlisteners:\n  - {{ name: web, listen: 127.0.0.1:0, mode: http, pool: p, retries: 2 }}\npools:\n  - name: p\n    algorithm: round_robin\n    backends: [{dead}, {}]\n  - name: unused\n    backends: [{}]\n",
        a.addr, b.addr
    );
    let lb = Spliced::start(&yaml);
    let web = lb.addr("web");
    for _ in 0..6 {
        let got = curl(&[&url(web, "/")]);
        assert_eq!(got.status, 200, "{}", got.body);
        assert!(got.body.contains("backend: a"));
    }
}

/// Sends raw bytes and returns the status line of the answer.
fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = connect(addr);
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(request).unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

#[test]
fn requests_that_could_be_smuggled_or_are_too_large_are_refused_before_any_backend() {
    let a = HttpBackend::start("a");
    let b = HttpBackend::start("b");
    let listener = "pool: a\nrequest_limits: { max_header_bytes: 16KiB, max_body: 1KiB }\n";
    let lb = Spliced::start(&config(&a, &b, listener, ""));
    let web = lb.addr("web");
    let two_cl =
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcd";
    assert!(
        raw(web, two_cl).starts_with("HTTP/1.1 400"),
        "two Content-Lengths"
    );
    let folded = b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  folded\r\n\r\n";
    assert!(raw(web, folded).starts_with("HTTP/1.1 400"), "obs-fold");
    let bad_te = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n";
    assert!(
        raw(web, bad_te).starts_with("HTTP/1.1 400"),
        "a coding before chunked"
    );
    let big_head = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "y".repeat(64 * 1024)
    );
    assert!(
        raw(web, big_head.as_bytes()).starts_with("HTTP/1.1 431"),
        "64 KiB of headers"
    );
    let big_body = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2048\r\n\r\n{}",
        "z".repeat(2048)
    );
    assert!(
        raw(web, big_body.as_bytes()).starts_with("HTTP/1.1 413"),
        "body over max_body"
    );
    assert_eq!(a.requests(), 0, "no refused request reached the backend");
    // Both lengths (RFC 9112 §6.3): Transfer-Encoding wins, the
    // Content-Length is dropped before forwarding, and the connection is
    // closed after the answer, so nothing can hide behind the body.
    let mut s = connect(web);
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains("body-bytes: 4"),
        "read as chunked: {answer}"
    );
    assert!(
        !answer.to_ascii_lowercase().contains("content-length: 40"),
        "{answer}"
    );
    assert!(
        !answer.contains("/smuggled"),
        "the bytes after the body are not a request: {answer}"
    );
    assert_eq!(a.requests(), 1);
    let ok = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nConnection: close\r\n\r\nabcd";
    assert!(raw(web, ok).starts_with("HTTP/1.1 200"));
}

#[test]
fn a_plaintext_listener_can_redirect_to_https() {
    let a = HttpBackend::start("a");
    let b = HttpBackend::start("b");
    let lb = Spliced::start(&config(&a, &b, "redirect_https: 8443", ""));
    let got = curl(&[
        "-H",
        "Host: www.example.com",
        &url(lb.addr("web"), "/login?next=/"),
    ]);
    assert_eq!(got.status, 308);
    assert!(
        got.head
            .contains("location: https://www.example.com:8443/login?next=/"),
        "{}",
        got.head
    );
}

#[test]
fn a_slow_backend_gets_504_and_sigterm_lets_a_request_in_flight_finish() {
    let a = HttpBackend::start("a");
    let b = HttpBackend::start("b");
    let listener = "pool: a\ntimeouts: { backend_response: 500ms }\n";
    let mut lb = Spliced::start(&config(&a, &b, listener, ""));
    let web = lb.addr("web");
    assert_eq!(curl(&[&url(web, "/delay/2000")]).status, 504);
    drop(lb);

    let listener = "pool: a\ntimeouts: { backend_response: 10s }\n";
    lb = Spliced::start(&config(&a, &b, listener, ""));
    let web = lb.addr("web");
    let before = a.requests();
    let slow = std::thread::spawn(move || curl(&[&url(web, "/delay/1500")]));
    wait_until("the slow request reached the backend", || {
        a.requests() > before
    });
    lb.signal("TERM");
    let got = slow.join().unwrap();
    assert_eq!(
        got.status, 200,
        "the request in flight finishes: {}",
        got.body
    );
    assert!(lb.wait_exit(WAIT).is_some());
}

const WS_ECHO_SERVER: &str = r#"
import asyncio, sys, websockets
async def echo(ws, *args):
    async for m in ws:
        await ws.send(m)
async def main():
    async with websockets.serve(echo, "127.0.0.1", 0, max_size=None) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()
asyncio.run(main())
"#;

const WS_CLIENT: &str = r#"
import asyncio, os, sys, time, websockets
async def main():
    url, idle = sys.argv[1], float(sys.argv[2])
    async with websockets.connect(url, max_size=None, ping_interval=None) as ws:
        data = os.urandom(1 << 20)
        await ws.send(data)
        assert await ws.recv() == data, "1 MiB echo"
        await asyncio.sleep(idle)
        try:
            await ws.send(b"after idle")
            got = await asyncio.wait_for(ws.recv(), 5)
            print("alive" if got == b"after idle" else "wrong")
        except Exception as e:
            print("closed", type(e).__name__)
asyncio.run(main())
"#;

#[test]
fn websockets_pass_through_and_idle_under_tunnel_idle_not_the_request_timeouts() {
    let Some(python) = python_with("websockets") else {
        return;
    };
    let mut server = Proc::spawn(
        "websocket echo server",
        Command::new(&python).args(["-c", WS_ECHO_SERVER]),
        std::process::Stdio::null(),
    );
    let port: u16 = server.wait_output("\n").trim().parse().unwrap();
    let yaml = |tunnel_idle: &str| {
        format!(
            "workers: 1\nlisteners:\n  - name: web\n    listen: 127.0.0.1:0\n    mode: http\n    pool: ws\n    timeouts: {{ request_header: 1s, backend_response: 1s, idle: 1s, tunnel_idle: {tunnel_idle} }}\npools:\n  - name: ws\n    backends: [127.0.0.1:{port}]\n"
        )
    };
    let client = |web: SocketAddr, idle: &str| {
        let out = run_command(
            {
                let mut c = Command::new(&python);
                c.args(["-c", WS_CLIENT, &format!("ws://{web}/chat"), idle]);
                c
            },
            "",
            WAIT,
        );
        out.stdout.trim().to_owned()
    };
    // Idle past every request timeout: still up.
    let lb = Spliced::start(&yaml("0"));
    assert_eq!(client(lb.addr("web"), "2.5"), "alive");
    drop(lb);
    // A short tunnel_idle closes it.
    let lb = Spliced::start(&yaml("1s"));
    let started = Instant::now();
    let said = client(lb.addr("web"), "2.5");
    assert!(said.starts_with("closed"), "{said}");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn every_request_gets_one_access_log_line() {
    let a = HttpBackend::start("a");
    let b = HttpBackend::start("b");
    let dir = temp_dir();
    let log = dir.join("access.log");
    let mut yaml = config(
        &a,
        &b,
        "routes:\n  - match: { path_prefix: /shop/ }\n    pool: a\n",
        "",
    );
    yaml.push_str(&format!(
        "access_log: {{ path: {}, format: json }}\n",
        log.display()
    ));
    let lb = Spliced::start(&yaml);
    let web = lb.addr("web");
    for _ in 0..3 {
        assert_eq!(
            curl(&["-H", "Host: shop.test", &url(web, "/shop/cart")]).status,
            200
        );
    }
    assert_eq!(curl(&[&url(web, "/elsewhere")]).status, 404);
    let lines = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(json)
            .collect::<Vec<_>>()
    };
    wait_until("four request lines", || lines().len() >= 4);
    let lines = lines();
    assert_eq!(lines.len(), 4, "one line per request, not per connection");
    let ok = lines
        .iter()
        .filter(|l| l["status"] == 200)
        .collect::<Vec<_>>();
    assert_eq!(ok.len(), 3);
    for l in &ok {
        assert_eq!(l["method"], "GET");
        assert_eq!(l["host"], "shop.test");
        assert_eq!(l["path"], "/shop/cart");
        assert_eq!(l["pool"], "a");
        assert_eq!(l["backend"], a.addr.to_string());
        assert!(l["bytes_backend_to_client"].as_u64().unwrap() > 0, "{l}");
        assert!(l["response_ms"].as_f64().is_some(), "{l}");
    }
    let miss = lines.iter().find(|l| l["status"] == 404).unwrap();
    assert_eq!(miss["pool"], "-", "{miss}");
    assert_eq!(miss["backend"], "-");
}

#[test]
fn a_slow_request_head_gets_408_while_kept_alive_connections_wait_for_idle() {
    let a = HttpBackend::start("a");
    let b = HttpBackend::start("b");
    let listener = "pool: a\ntimeouts: { request_header: 300ms, idle: 3s }\n";
    let lb = Spliced::start(&config(&a, &b, listener, ""));
    let web = lb.addr("web");

    // Slowloris: half a head, then nothing.
    let mut slow = connect(web);
    slow.set_read_timeout(Some(WAIT)).unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    let mut answer = String::new();
    let _ = slow.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert_eq!(a.requests(), 0);

    // A kept-alive connection may wait between requests longer than
    // request_header (the idle timer governs that gap)...
    let mut kept = connect(web);
    kept.set_read_timeout(Some(WAIT)).unwrap();
    let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let read_answer = |s: &mut std::net::TcpStream| {
        let mut buf = vec![0u8; 8192];
        let n = s.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    kept.write_all(request).unwrap();
    assert!(read_answer(&mut kept).starts_with("HTTP/1.1 200"));
    // WHY a sleep: the pause is the stimulus (a client thinking between
    // requests), not a synchronisation.
    std::thread::sleep(Duration::from_millis(800));
    kept.write_all(request).unwrap();
    assert!(read_answer(&mut kept).starts_with("HTTP/1.1 200"));
    // ...and is closed once idle for `idle`.
    let mut rest = Vec::new();
    let _ = kept.read_to_end(&mut rest);
    assert!(rest.is_empty(), "closed without another answer: {rest:?}");
    assert_eq!(
        lb.metric(
            "spliced_http_requests_total",
            &[("listener", "web"), ("pool", ""), ("code_class", "4xx")]
        ),
        1.0,
        "the 408 is counted"
    );
}

#[test]
fn a_reload_can_add_the_first_http_listener_and_an_l4_only_balancer_runs_no_http_threads() {
    let a = HttpBackend::start("a");
    let tcp_only = format!(
        "workers: 2\nlisteners:\n  - {{ name: lb, listen: 127.0.0.1:0, pool: a }}\npools:\n  - name: a\n    backends: [{}]\n",
        a.addr
    );
    let lb = Spliced::start(&tcp_only);
    let l4_threads = lb.threads();
    let with_http = tcp_only.replace(
        "listeners:\n",
        "listeners:\n  - { name: web, listen: 127.0.0.1:0, mode: http, pool: a }\n",
    );
    std::fs::write(lb.dir.join("spliced.yaml"), with_http).unwrap();
    lb.signal("HUP");
    lb.wait_log("listening listener=web");
    let line = lb
        .log_text()
        .lines()
        .find(|l| l.contains("listening listener=web"))
        .unwrap()
        .to_owned();
    let web: SocketAddr = field(&line, "addr").unwrap().parse().unwrap();
    let got = curl(&[&url(web, "/")]);
    assert_eq!(got.status, 200, "{}", got.body);
    assert!(
        lb.threads() >= l4_threads + 2,
        "the HTTP workers start with the first HTTP listener"
    );
}

const GRPC_SERVER: &str = r#"
import grpc, sys
from concurrent import futures
def echo(request, context):
    if request == b"fail":
        context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
    context.set_trailing_metadata((("x-echo-trailer", "kept"),))
    return b"echo:" + request
handler = grpc.method_handlers_generic_handler("test.Echo", {
    "Say": grpc.unary_unary_rpc_method_handler(echo),
})
server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
server.add_generic_rpc_handlers((handler,))
port = server.add_insecure_port("127.0.0.1:0")
server.start()
print(port, flush=True)
server.wait_for_termination()
"#;

const GRPC_CLIENT: &str = r#"
import grpc, sys
channel = grpc.insecure_channel(sys.argv[1])
say = channel.unary_unary("/test.Echo/Say")
reply, call = say.with_call(b"hello", timeout=10)
trailers = dict(call.trailing_metadata())
print("reply", reply.decode(), "trailer", trailers.get("x-echo-trailer"))
try:
    say(b"fail", timeout=10)
    print("no error")
except grpc.RpcError as e:
    print("status", e.code().name, e.details())
"#;

#[test]
fn a_grpc_call_goes_through_end_to_end_with_its_trailers() {
    let Some(python) = python_with("grpc") else {
        return;
    };
    let mut server = Proc::spawn(
        "gRPC server",
        Command::new(&python).args(["-c", GRPC_SERVER]),
        std::process::Stdio::null(),
    );
    let port: u16 = server.wait_output("\n").trim().parse().unwrap();
    let yaml = format!(
        "workers: 1\nlisteners:\n  - {{ name: web, listen: 127.0.0.1:0, mode: http, pool: grpc }}\npools:\n  - name: grpc\n    protocol: h2c\n    backends: [127.0.0.1:{port}]\n"
    );
    let lb = Spliced::start(&yaml);
    let out = run_command(
        {
            let mut c = Command::new(&python);
            c.args(["-c", GRPC_CLIENT, &lb.addr("web").to_string()]);
            c
        },
        "",
        WAIT,
    );
    let said = out.stdout.trim();
    assert!(
        said.contains("reply echo:hello trailer kept"),
        "{said}\n{}",
        out.stderr
    );
    assert!(
        said.contains("status NOT_FOUND no such thing"),
        "an error status travels in the trailers: {said}\n{}",
        out.stderr
    );
}

const RAPID_RESET: &str = r#"
import socket, sys, h2.connection, h2.config, h2.events
host, port = sys.argv[1].rsplit(":", 1)
s = socket.create_connection((host, int(port)), timeout=10)
c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
c.initiate_connection()
s.sendall(c.data_to_send())
headers = [(":method", "GET"), (":path", "/delay/200"), (":scheme", "http"), (":authority", "x")]
sent = 0
try:
    for i in range(5000):
        sid = c.get_next_available_stream_id()
        c.send_headers(sid, headers, end_stream=True)
        c.reset_stream(sid)
        sent += 1
        if i % 100 == 99:
            s.sendall(c.data_to_send())
    s.sendall(c.data_to_send())
except Exception as e:
    pass
code = None
try:
    while True:
        data = s.recv(65536)
        if not data:
            break
        for ev in c.receive_data(data):
            if isinstance(ev, h2.events.ConnectionTerminated):
                code = int(ev.error_code)
        out = c.data_to_send()
        if out:
            s.sendall(out)
except Exception:
    pass
print("goaway", code, "sent", sent)
"#;

#[test]
fn an_http2_rapid_reset_flood_ends_that_connection_and_is_counted() {
    let Some(python) = python_with("h2") else {
        return;
    };
    let a = HttpBackend::start("a");
    let b = HttpBackend::start("b");
    let lb = Spliced::start(&config(&a, &b, "pool: a", ""));
    let web = lb.addr("web");
    let out = run_command(
        {
            let mut c = Command::new(&python);
            c.args(["-c", RAPID_RESET, &web.to_string()]);
            c
        },
        "",
        WAIT,
    );
    assert!(
        out.stdout.contains("goaway 11"),
        "h2 answers the flood with GOAWAY ENHANCE_YOUR_CALM: {}{}",
        out.stdout,
        out.stderr
    );
    wait_until("the flood is counted", || {
        lb.metric("spliced_http2_abuse_closed_total", &[("listener", "web")]) >= 1.0
    });
    assert!(
        a.requests() < 1000,
        "most reset streams never reached the backend: {}",
        a.requests()
    );
    // Everyone else is still served.
    assert_eq!(
        curl(&["--http2-prior-knowledge", &url(web, "/")]).status,
        200
    );
}

#[test]
fn an_http10_request_without_host_reaches_an_http11_backend_with_one() {
    let a = HttpBackend::start("a");
    let b = HttpBackend::start("b");
    let lb = Spliced::start(&config(&a, &b, "pool: a", ""));
    let web = lb.addr("web");
    let mut s = connect(web);
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"GET /old HTTP/1.0\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    assert!(answer.contains(&format!("host: {web}\n")), "{answer}");
}
