//! The PROXY protocol both ways, with real peers: nginx behind spliced
//! (`listen … proxy_protocol`) must see the test client's own address in v1
//! and v2; a backend that parses the header bytes itself checks v2's TLVs
//! (the SNI as authority) and that the client's bytes follow unchanged; and
//! headers from trusted upstream balancers are stripped, their address used
//! for ip_hash and sent onwards, while untrusted or malformed ones are
//! refused and counted by reason.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::balancing::connect_from;
use crate::harness::*;
use crate::tls::{client_config, client_hello, Verify};

const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
const PP2_TYPE_ALPN: u8 = 0x01;
const PP2_TYPE_AUTHORITY: u8 = 0x02;
const PP2_TYPE_NOOP: u8 = 0x04;

/// The address the test client binds to, so that it differs from spliced's
/// own 127.0.0.1 in anything a backend reports.
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 7);
/// The upstream balancer spliced trusts.
const TRUSTED: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// A source that is not trusted.
const UNTRUSTED: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

// ---- a PROXY header as a backend reads it -------------------------------------------

/// A PROXY header, parsed here independently of spliced's parser.
#[derive(Debug, Clone, PartialEq)]
struct Header {
    version: u8,
    src: SocketAddr,
    dst: SocketAddr,
    /// v2 TLVs in order (type, value).
    tlvs: Vec<(u8, Vec<u8>)>,
}

impl Header {
    fn tlv(&self, kind: u8) -> Option<&[u8]> {
        self.tlvs
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, v)| v.as_slice())
    }
}

fn read_exact_vec(s: &mut impl Read, n: usize) -> io::Result<Vec<u8>> {
    let mut v = vec![0u8; n];
    s.read_exact(&mut v)?;
    Ok(v)
}

/// Reads the PROXY header `first` starts (`first` already read); `None` when
/// `first` cannot start one (the connection carries no header).
fn read_header(first: u8, s: &mut impl Read) -> io::Result<Option<Header>> {
    match first {
        b'P' => {
            let mut line = vec![first];
            while !line.ends_with(b"\r\n") {
                assert!(line.len() <= 107, "v1 line too long: {line:?}");
                line.extend(read_exact_vec(s, 1)?);
            }
            let line = String::from_utf8(line).expect("v1 header is text");
            let f: Vec<&str> = line.trim_end().split(' ').collect();
            assert!(
                f.len() == 6 && f[0] == "PROXY" && (f[1] == "TCP4" || f[1] == "TCP6"),
                "bad v1 header {line:?}"
            );
            let ip = |s: &str| s.parse::<IpAddr>().unwrap_or_else(|_| panic!("{line:?}"));
            let port = |s: &str| s.parse::<u16>().unwrap_or_else(|_| panic!("{line:?}"));
            Ok(Some(Header {
                version: 1,
                src: SocketAddr::new(ip(f[2]), port(f[4])),
                dst: SocketAddr::new(ip(f[3]), port(f[5])),
                tlvs: Vec::new(),
            }))
        }
        b'\r' => {
            let mut head = vec![first];
            head.extend(read_exact_vec(s, 15)?);
            assert_eq!(&head[..12], V2_SIGNATURE, "bad v2 signature");
            assert_eq!(head[12], 0x21, "v2 header is not version 2, PROXY command");
            let len = usize::from(u16::from_be_bytes([head[14], head[15]]));
            let body = read_exact_vec(s, len)?;
            let (src, dst, rest) = match head[13] {
                0x11 => {
                    let ip =
                        |o: usize| Ipv4Addr::new(body[o], body[o + 1], body[o + 2], body[o + 3]);
                    let port = |o: usize| u16::from_be_bytes([body[o], body[o + 1]]);
                    (
                        SocketAddr::new(ip(0).into(), port(8)),
                        SocketAddr::new(ip(4).into(), port(10)),
                        &body[12..],
                    )
                }
                0x21 => {
                    let ip =
                        |o: usize| Ipv6Addr::from(<[u8; 16]>::try_from(&body[o..o + 16]).unwrap());
                    let port = |o: usize| u16::from_be_bytes([body[o], body[o + 1]]);
                    (
                        SocketAddr::new(ip(0).into(), port(32)),
                        SocketAddr::new(ip(16).into(), port(34)),
                        &body[36..],
                    )
                }
                other => panic!("unexpected v2 family/protocol {other:#x}"),
            };
            let mut tlvs = Vec::new();
            let mut rest = rest;
            while !rest.is_empty() {
                assert!(rest.len() >= 3, "truncated TLV");
                let n = usize::from(u16::from_be_bytes([rest[1], rest[2]]));
                tlvs.push((rest[0], rest[3..3 + n].to_vec()));
                rest = &rest[3 + n..];
            }
            Ok(Some(Header {
                version: 2,
                src,
                dst,
                tlvs,
            }))
        }
        _ => Ok(None),
    }
}

/// What one connection brought a [`recorder`]: the PROXY header (if any) and
/// every byte after it.
#[derive(Debug, Clone)]
struct Record {
    header: Option<Header>,
    data: Vec<u8>,
}

/// A backend that records each connection (header and data, until the
/// client's EOF), then answers "recorded <n>\n" with the record's index.
fn recorder() -> (Backend, Arc<Mutex<Vec<Record>>>) {
    let records = Arc::new(Mutex::new(Vec::new()));
    let backend = {
        let records = records.clone();
        Backend::spawn(move |mut s| {
            s.set_read_timeout(Some(WAIT)).unwrap();
            let mut first = [0u8; 1];
            let mut data = Vec::new();
            let header = match s.read(&mut first) {
                Ok(1) => {
                    let h = read_header(first[0], &mut s).expect("read the PROXY header");
                    if h.is_none() {
                        data.push(first[0]);
                    }
                    h
                }
                _ => None,
            };
            let _ = s.read_to_end(&mut data);
            let n = {
                let mut r = records.lock().unwrap();
                r.push(Record { header, data });
                r.len() - 1
            };
            let _ = writeln!(s, "recorded {n}");
            let _ = s.shutdown(Shutdown::Write);
        })
    };
    (backend, records)
}

/// Writes `bytes`, ends the sending side, and returns what came back.
fn send_all(mut s: TcpStream, bytes: &[u8]) -> String {
    s.write_all(bytes).expect("write through spliced");
    s.shutdown(Shutdown::Write).unwrap();
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    reply
}

/// Sends `bytes` and returns the record the recorder kept for it.
fn record_of(s: TcpStream, bytes: &[u8], records: &Arc<Mutex<Vec<Record>>>) -> Record {
    let reply = send_all(s, bytes);
    let n: usize = reply
        .strip_prefix("recorded ")
        .and_then(|r| r.trim().parse().ok())
        .unwrap_or_else(|| panic!("the recorder backend was not reached (got {reply:?})"));
    records.lock().unwrap()[n].clone()
}

/// A v2 PROXY header for TCP over IPv4, with `tlvs`, as an upstream balancer sends it.
fn v2_header(src: SocketAddr, dst: SocketAddr, tlvs: &[(u8, &[u8])]) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src.ip(), dst.ip()) else {
        panic!("IPv4 only");
    };
    let tlv_len: usize = tlvs.iter().map(|(_, v)| 3 + v.len()).sum();
    let mut h = V2_SIGNATURE.to_vec();
    h.extend([0x21, 0x11]);
    h.extend(((12 + tlv_len) as u16).to_be_bytes());
    h.extend(s.octets());
    h.extend(d.octets());
    h.extend(src.port().to_be_bytes());
    h.extend(dst.port().to_be_bytes());
    for (kind, value) in tlvs {
        h.push(*kind);
        h.extend((value.len() as u16).to_be_bytes());
        h.extend_from_slice(value);
    }
    h
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Listener lines → a config of those listeners over pool `p` of `backends`
/// (with `pool_extra` lines), admin on.
fn config(listeners: &[(&str, &str)], backends: &[SocketAddr], pool_extra: &str) -> String {
    let mut s = String::from("workers: 2\nadmin:\n  listen: 127.0.0.1:0\nlisteners:\n");
    for (name, extra) in listeners {
        s.push_str(&format!(
            "  - name: {name}\n    listen: 127.0.0.1:0\n    pool: p\n"
        ));
        // Nested keys keep their own indentation.
        for line in extra.lines().filter(|l| !l.trim().is_empty()) {
            s.push_str(&format!("    {}\n", line.trim_end()));
        }
    }
    s.push_str("pools:\n  - name: p\n");
    for line in pool_extra.lines().filter(|l| !l.trim().is_empty()) {
        s.push_str(&format!("    {}\n", line.trim()));
    }
    s.push_str("    backends:\n");
    for b in backends {
        s.push_str(&format!("      - \"{b}\"\n"));
    }
    s
}

// ---- nginx ------------------------------------------------------------------------------

/// nginx in the foreground, one process, on a free port of 127.0.0.1 that
/// requires a PROXY header (`listen … proxy_protocol`); it answers every
/// request with, and logs, the addresses the header gave.
struct Nginx {
    _proc: Proc,
    addr: SocketAddr,
    access_log: PathBuf,
    dir: PathBuf,
}

/// What the nginx of these tests answers and logs for a request.
const NGINX_FORMAT: &str =
    "$proxy_protocol_addr:$proxy_protocol_port $proxy_protocol_server_addr:$proxy_protocol_server_port $request_uri";

impl Nginx {
    fn start(nginx: &Path) -> Nginx {
        let dir = temp_dir();
        let d = dir.display();
        // A port found free may be taken before nginx binds it: try again then.
        for _attempt in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let conf = format!(
                "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
                 error_log {d}/error.log notice;\nevents {{ worker_connections 64; }}\n\
                 http {{\n  log_format pp '{NGINX_FORMAT}';\n  access_log {d}/access.log pp;\n\
                 client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
                 fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
                 server {{\n    listen 127.0.0.1:{port} proxy_protocol;\n\
                 location / {{ default_type text/plain; return 200 \"{NGINX_FORMAT}\\n\"; }}\n  }}\n}}\n"
            );
            std::fs::write(dir.join("nginx.conf"), conf).unwrap();
            let mut command = Command::new(nginx);
            command
                .arg("-p")
                .arg(&dir)
                .arg("-c")
                .arg(dir.join("nginx.conf"))
                .arg("-e")
                .arg(dir.join("error.log"));
            let mut proc = Proc::spawn("nginx", &mut command, Stdio::null());
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            // Ready once a request with a header is answered, or gone.
            let mut exited = false;
            wait_until("nginx to answer or exit", || {
                exited = proc.child.try_wait().unwrap().is_some();
                exited
                    || nginx_get(
                        addr,
                        b"PROXY TCP4 192.0.2.1 192.0.2.2 1111 2222\r\n",
                        "/ready",
                    )
                    .is_some_and(|r| r.contains("192.0.2.1:1111"))
            });
            if !exited {
                return Nginx {
                    _proc: proc,
                    addr,
                    access_log: dir.join("access.log"),
                    dir,
                };
            }
            let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
            assert!(
                log.contains("Address already in use"),
                "nginx exited:\n{}\n{log}",
                proc.text()
            );
        }
        panic!("nginx found no free port in 5 tries");
    }

    fn access_log(&self) -> String {
        std::fs::read_to_string(&self.access_log).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // The process is killed by `Proc`'s drop, after this.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `GET path` on a new connection to `addr` after `preface`; the response
/// body if the status is 200.
fn nginx_get(addr: SocketAddr, preface: &[u8], path: &str) -> Option<String> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    http_get_on(s, preface, path)
}

fn http_get_on(mut s: TcpStream, preface: &[u8], path: &str) -> Option<String> {
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut req = preface.to_vec();
    req.extend(format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").as_bytes());
    s.write_all(&req).ok()?;
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    let (head, body) = resp.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

// ---- tests -----------------------------------------------------------------------------

#[test]
fn nginx_behind_spliced_sees_the_client_address_in_proxy_v1_and_v2() {
    let Some(nginx_bin) = peer_tool("nginx") else {
        return;
    };
    let nginx = Nginx::start(&nginx_bin);
    // nginx refuses a connection without a header: it really reads them.
    assert_eq!(
        nginx_get(nginx.addr, b"", "/no-header"),
        None,
        "nginx answered a request that had no PROXY header"
    );
    let lb = Spliced::start(&config(
        &[
            ("v1", "proxy_protocol: v1"),
            ("v2", "proxy_protocol: v2"),
            (
                "relay",
                "proxy_protocol: v2\naccept_proxy_protocol: v1\ntrusted_proxies: [127.0.0.2]",
            ),
        ],
        &[nginx.addr],
        "",
    ));

    for listener in ["v1", "v2"] {
        let s = connect_from(CLIENT_IP, lb.addr(listener));
        let client = s.local_addr().unwrap();
        let path = format!("/through-{listener}");
        let body = http_get_on(s, b"", &path)
            .unwrap_or_else(|| panic!("nginx did not answer through {listener}"));
        let want = format!("{client} {} {path}", lb.addr(listener));
        assert_eq!(body.trim(), want, "what nginx got through {listener}");
        wait_until(&format!("nginx's access log line for {listener}"), || {
            nginx.access_log().lines().any(|l| l == want)
        });
    }

    // A trusted balancer's client address goes on to nginx in spliced's header.
    let s = connect_from(TRUSTED, lb.addr("relay"));
    let body = http_get_on(
        s,
        b"PROXY TCP4 203.0.113.9 127.0.0.1 5555 443\r\n",
        "/relayed",
    )
    .expect("nginx did not answer through relay");
    let want = "203.0.113.9:5555 127.0.0.1:443 /relayed";
    assert_eq!(body.trim(), want);
    wait_until("nginx's access log line for relay", || {
        nginx.access_log().lines().any(|l| l == want)
    });
}

#[test]
fn proxy_v2_carries_the_sni_as_authority_and_the_client_hello_follows_unchanged() {
    let (backend, records) = recorder();
    let other = Backend::named("other");
    // Both listeners route the name to the recorder; anything else would go
    // to `other`.
    let listener = |name: &str, extra: &str| {
        format!(
            "  - name: {name}\n    listen: 127.0.0.1:0\n    pool: other\n    proxy_protocol: v2\n{extra}    sni:\n      - match: tlv.example.test\n        pool: p\n"
        )
    };
    let yaml = format!(
        "workers: 2\nadmin:\n  listen: 127.0.0.1:0\nlisteners:\n{}{}pools:\n  - name: p\n    backends: [\"{}\"]\n  - name: other\n    backends: [\"{}\"]\n",
        listener("direct", ""),
        listener(
            "relayed",
            "    accept_proxy_protocol: v1\n    trusted_proxies: [127.0.0.2]\n"
        ),
        backend.addr,
        other.addr,
    );
    let lb = Spliced::start(&yaml);

    // One ALPN protocol offered: spliced knows it for sure and sends it too.
    let (_, hello) = client_hello(
        &client_config(Verify::Any, &[b"h2"], true),
        "tlv.example.test",
    );
    let s = connect_from(CLIENT_IP, lb.addr("direct"));
    let client = s.local_addr().unwrap();
    let r = record_of(s, &hello, &records);
    let h = r.header.expect("a PROXY header before the ClientHello");
    assert_eq!(h.version, 2);
    assert_eq!((h.src, h.dst), (client, lb.addr("direct")));
    assert_eq!(
        h.tlv(PP2_TYPE_AUTHORITY),
        Some(&b"tlv.example.test"[..]),
        "{h:?}"
    );
    assert_eq!(h.tlv(PP2_TYPE_ALPN), Some(&b"h2"[..]), "{h:?}");
    assert!(
        r.data == hello,
        "the backend did not get the ClientHello as sent"
    );

    // Behind a trusted balancer: its client goes onwards, with the SNI.
    let mut sent = b"PROXY TCP4 203.0.113.9 127.0.0.1 5555 443\r\n".to_vec();
    sent.extend_from_slice(&hello);
    let r = record_of(connect_from(TRUSTED, lb.addr("relayed")), &sent, &records);
    let h = r.header.expect("a PROXY header before the ClientHello");
    assert_eq!(h.version, 2);
    assert_eq!(
        (h.src, h.dst),
        (addr("203.0.113.9:5555"), addr("127.0.0.1:443"))
    );
    assert_eq!(
        h.tlv(PP2_TYPE_AUTHORITY),
        Some(&b"tlv.example.test"[..]),
        "{h:?}"
    );
    assert!(
        r.data == hello,
        "the backend did not get the ClientHello as sent"
    );
}

#[test]
fn a_trusted_proxy_header_is_stripped_and_its_client_sent_onwards() {
    let (backend, records) = recorder();
    let trusted = "trusted_proxies: [127.0.0.2]";
    let lb = Spliced::start(&config(
        &[
            ("v1_plain", &format!("accept_proxy_protocol: v1\n{trusted}")),
            (
                "v1_to_v2",
                &format!("accept_proxy_protocol: v1\n{trusted}\nproxy_protocol: v2"),
            ),
            (
                "v2_to_v1",
                &format!("accept_proxy_protocol: v2\n{trusted}\nproxy_protocol: v1"),
            ),
            (
                "any_to_v2",
                &format!("accept_proxy_protocol: any\n{trusted}\nproxy_protocol: v2"),
            ),
        ],
        &[backend.addr],
        "",
    ));
    let v1 = b"PROXY TCP4 203.0.113.9 127.0.0.1 5555 443\r\n";
    let data = b"hello from behind a balancer\n";
    let with = |header: &[u8]| [header, &data[..]].concat();

    // No header onwards: the backend gets exactly the client's data.
    let r = record_of(
        connect_from(TRUSTED, lb.addr("v1_plain")),
        &with(v1),
        &records,
    );
    assert!(
        r.header.is_none(),
        "a header reached the backend: {:?}",
        r.header
    );
    assert_eq!(r.data, data, "{:?}", String::from_utf8_lossy(&r.data));

    // v1 in, v2 out: the address the header carried goes onwards.
    let r = record_of(
        connect_from(TRUSTED, lb.addr("v1_to_v2")),
        &with(v1),
        &records,
    );
    let h = r.header.expect("a v2 header onwards");
    assert_eq!(h.version, 2);
    assert_eq!(
        (h.src, h.dst),
        (addr("203.0.113.9:5555"), addr("127.0.0.1:443"))
    );
    assert_eq!(r.data, data);

    // v2 in (with a TLV the receiver skips), v1 out.
    let v2 = v2_header(
        addr("198.51.100.4:6000"),
        addr("127.0.0.1:443"),
        &[(PP2_TYPE_NOOP, b"padding")],
    );
    let r = record_of(
        connect_from(TRUSTED, lb.addr("v2_to_v1")),
        &with(&v2),
        &records,
    );
    let h = r.header.expect("a v1 header onwards");
    assert_eq!(h.version, 1);
    assert_eq!(
        (h.src, h.dst),
        (addr("198.51.100.4:6000"), addr("127.0.0.1:443"))
    );
    assert_eq!(r.data, data);

    // `any` takes both versions, and IPv6 clients.
    for (header, src, dst) in [
        (v1.to_vec(), "203.0.113.9:5555", "127.0.0.1:443"),
        (v2.clone(), "198.51.100.4:6000", "127.0.0.1:443"),
        (
            b"PROXY TCP6 2001:db8::7 ::1 4000 443\r\n".to_vec(),
            "[2001:db8::7]:4000",
            "[::1]:443",
        ),
    ] {
        let r = record_of(
            connect_from(TRUSTED, lb.addr("any_to_v2")),
            &with(&header),
            &records,
        );
        let h = r.header.expect("a v2 header onwards");
        assert_eq!((h.version, h.src, h.dst), (2, addr(src), addr(dst)));
        assert_eq!(r.data, data);
    }
    // Headers without a client (v1 UNKNOWN, v2 LOCAL: a balancer's own health
    // checks) are accepted, and the real connection's addresses go onwards.
    let local = [&V2_SIGNATURE[..], &[0x20, 0x00, 0x00, 0x00]].concat();
    for header in [b"PROXY UNKNOWN\r\n".to_vec(), local] {
        let s = connect_from(TRUSTED, lb.addr("any_to_v2"));
        let real = s.local_addr().unwrap();
        let r = record_of(s, &with(&header), &records);
        let h = r.header.expect("a v2 header onwards");
        assert_eq!((h.version, h.src, h.dst), (2, real, lb.addr("any_to_v2")));
        assert_eq!(r.data, data);
    }
    assert_eq!(
        lb.metric("spliced_rejected_connections_total", &[]),
        0.0,
        "{}",
        lb.log_text()
    );
}

/// Sends one line through `s` and returns the name of the backend that answered.
fn who(s: TcpStream, preface: &[u8]) -> String {
    let mut w = s.try_clone().unwrap();
    w.write_all(&[preface, b"who\n"].concat()).unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    line.split_whitespace().next().unwrap_or("").to_string()
}

#[test]
fn ip_hash_uses_the_client_address_from_a_trusted_proxy_header() {
    let backends: Vec<Backend> = ["a", "b", "c", "d"]
        .into_iter()
        .map(Backend::named)
        .collect();
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let lb = Spliced::start(&config(
        &[
            ("direct", ""),
            (
                "proxied",
                "accept_proxy_protocol: v1\ntrusted_proxies: [127.0.0.2]",
            ),
        ],
        &addrs,
        "algorithm: ip_hash",
    ));
    let mut chosen = std::collections::HashMap::new();
    for x in 10..34u8 {
        let claimed = Ipv4Addr::new(127, 0, x / 8 + 1, x);
        let header = format!(
            "PROXY TCP4 {claimed} 127.0.0.1 {} 443\r\n",
            40000 + x as u16
        );
        // Every connection really comes from the one balancer.
        let seen: Vec<String> = (0..2)
            .map(|_| who(connect_from(TRUSTED, lb.addr("proxied")), header.as_bytes()))
            .collect();
        assert_eq!(
            seen[0], seen[1],
            "{claimed} moved between backends: {seen:?}"
        );
        // A client really at that address, straight to spliced, hashes the same.
        let direct = who(connect_from(claimed, lb.addr("direct")), b"");
        assert_eq!(
            direct, seen[0],
            "{claimed} behind a PROXY header and {claimed} connecting directly were hashed apart"
        );
        *chosen.entry(seen[0].clone()).or_insert(0) += 1;
    }
    // 24 claimed sources from one real source still spread over the backends.
    assert!(
        chosen.len() >= 3,
        "ip_hash did not use the PROXY address: {chosen:?}"
    );
}

#[test]
fn untrusted_and_malformed_proxy_headers_are_refused_and_counted() {
    let backend = Backend::named("backend");
    let lb = Spliced::start(&config(
        &[(
            "lb",
            "accept_proxy_protocol: v1\ntrusted_proxies: [127.0.0.2]\nproxy_header_timeout: 1s",
        )],
        &[backend.addr],
        "",
    ));
    let target = lb.addr("lb");
    let rejected = |reason: &str| {
        lb.metric(
            "spliced_rejected_connections_total",
            &[("listener", "lb"), ("reason", reason)],
        )
    };
    let valid = b"PROXY TCP4 203.0.113.9 127.0.0.1 5555 443\r\n";

    // A trusted balancer that sends nothing is closed after proxy_header_timeout.
    let silent = std::thread::spawn(move || {
        let mut s = connect_from(TRUSTED, target);
        let start = Instant::now();
        expect_closed(&mut s, "a trusted source that sends nothing");
        start.elapsed()
    });

    // A valid header from a source that is not trusted.
    let mut s = connect_from(UNTRUSTED, target);
    let _ = s.write_all(&[&valid[..], b"who\n"].concat());
    expect_closed(&mut s, "a PROXY header from an untrusted source");
    wait_until("untrusted_proxy counted", || {
        rejected("untrusted_proxy") == 1.0
    });

    // Malformed headers from the trusted source: a bad address, no header
    // at all, and a v2 header where only v1 is accepted.
    let bad: [(&str, Vec<u8>); 3] = [
        (
            "bad address",
            b"PROXY TCP4 203.0.113.999 127.0.0.1 5555 443\r\nwho\n".to_vec(),
        ),
        ("no header", b"who\n".to_vec()),
        (
            "v2 on a v1 listener",
            [
                v2_header(addr("203.0.113.9:5555"), addr("127.0.0.1:443"), &[]),
                b"who\n".to_vec(),
            ]
            .concat(),
        ),
    ];
    for (i, (what, bytes)) in bad.iter().enumerate() {
        let mut s = connect_from(TRUSTED, target);
        let _ = s.write_all(bytes);
        expect_closed(&mut s, what);
        wait_until(&format!("bad_proxy_header counted for {what}"), || {
            rejected("bad_proxy_header") == (i + 1) as f64
        });
    }

    // The valid header from the trusted source gets through.
    assert_eq!(who(connect_from(TRUSTED, target), valid), "backend");

    let waited = silent.join().unwrap();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(6),
        "the silent balancer was closed after {waited:?}, proxy_header_timeout is 1s"
    );
    wait_until("proxy_header_timeout counted", || {
        rejected("proxy_header_timeout") == 1.0
    });
    assert_eq!(rejected("untrusted_proxy"), 1.0);
    assert_eq!(rejected("bad_proxy_header"), 3.0);
    assert_eq!(
        lb.metric("spliced_rejected_connections_total", &[("listener", "lb")]),
        5.0
    );
    assert_eq!(
        backend.accepted.load(Ordering::Relaxed),
        1,
        "a refused client reached the backend"
    );
}

/// Regression test for a balancer's EOF during inspection being ignored.
#[test]
fn a_balancer_that_hangs_up_mid_header_is_closed_at_once_not_after_the_timeout() {
    let backend = Backend::named("backend");
    let accept =
        "accept_proxy_protocol: v1\ntrusted_proxies: [127.0.0.2]\nproxy_header_timeout: 10s";
    let sni =
        format!("{accept}\ntls_inspect_timeout: 10s\nsni:\n  - match: a.example.test\n    pool: p");
    let lb = Spliced::start(&config(
        &[("plain", accept), ("sni", &sni)],
        &[backend.addr],
        "",
    ));
    let header = b"PROXY TCP4 203.0.113.9 127.0.0.1 5555 443\r\n";
    // Half a header on either listener; a whole header (as HAProxy's
    // `check send-proxy` health checks send) before the ClientHello.
    for (listener, what, sent) in [
        ("plain", "half a PROXY header", &header[..20]),
        ("sni", "half a PROXY header", &header[..20]),
        ("sni", "a PROXY header and no ClientHello", &header[..]),
    ] {
        let mut s = connect_from(TRUSTED, lb.addr(listener));
        s.write_all(sent).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let start = Instant::now();
        expect_closed(&mut s, what);
        let waited = start.elapsed();
        assert!(
            waited < Duration::from_secs(5),
            "a balancer that sent {what} to {listener} and hung up was held {waited:?} (timeouts are 10s)"
        );
    }
    for reason in ["proxy_header_timeout", "tls_inspect_timeout"] {
        assert_eq!(
            lb.metric("spliced_rejected_connections_total", &[("reason", reason)]),
            0.0,
            "balancers that hung up were counted as {reason}"
        );
    }
}
