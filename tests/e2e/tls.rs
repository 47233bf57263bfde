//! TLS passthrough routed by SNI, with real TLS on both sides: backends are
//! rustls servers in this process and an `openssl s_server`, each with its own
//! certificate from a test CA; clients are rustls and `openssl s_client`. A
//! client must complete its handshake with the backend its name (and ALPN)
//! routes to, see that backend's certificate untouched, and exchange data
//! with it; `require_sni` refusals are counted by reason.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, ServerConfig,
    ServerConnection, SignatureScheme, StreamOwned,
};

use crate::harness::*;

// ---- certificates ------------------------------------------------------------------

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A test CA that signs one leaf certificate per backend.
pub struct Pki {
    issuer: Issuer<'static, KeyPair>,
    pub ca_der: CertificateDer<'static>,
    pub ca_pem: String,
}

/// A backend's certificate and key.
pub struct Leaf {
    /// The subject's common name: what `openssl s_client` prints.
    pub cn: String,
    pub der: CertificateDer<'static>,
    pub cert_pem: String,
    pub key_pem: String,
    key_der: Vec<u8>,
}

impl Pki {
    pub fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "spliced e2e test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Pki {
            ca_der: cert.der().clone(),
            ca_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf for `cn` valid for the DNS names `sans`.
    pub fn leaf(&self, cn: &str, sans: &[&str]) -> Leaf {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cn: cn.to_string(),
            der: cert.der().clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
        }
    }
}

impl Leaf {
    pub fn server_config(&self, alpn: &[&[u8]]) -> Arc<ServerConfig> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![self.der.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone())),
            )
            .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// Writes the certificate and key as PEM files into `dir`.
    pub fn write_pem(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{}.crt", self.cn));
        let key = dir.join(format!("{}.key", self.cn));
        std::fs::write(&cert, &self.cert_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        (cert, key)
    }
}

// ---- TLS backends ----------------------------------------------------------------

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame: the server's half of the preface.
pub const H2_SETTINGS: [u8; 9] = [0, 0, 0, 4, 0, 0, 0, 0, 0];

/// A rustls server behind spliced: answers each line with "<name> <line>".
/// When the client negotiated h2 it first expects the HTTP/2 preface and
/// answers it with an empty SETTINGS frame, as an HTTP/2 server would.
pub fn rustls_backend(name: &'static str, config: Arc<ServerConfig>) -> Backend {
    Backend::spawn(move |tcp| {
        tcp.set_read_timeout(Some(WAIT)).unwrap();
        tcp.set_write_timeout(Some(WAIT)).unwrap();
        let Ok(conn) = ServerConnection::new(config.clone()) else {
            return;
        };
        let mut tls = StreamOwned::new(conn, tcp);
        // Reading drives the handshake.
        let mut buf = vec![0u8; 16 * 1024];
        let mut pending = Vec::new();
        let mut h2 = None;
        loop {
            let n = match tls.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            pending.extend_from_slice(&buf[..n]);
            if h2.is_none() {
                h2 = Some(tls.conn.alpn_protocol() == Some(b"h2"));
            }
            if h2 == Some(true) {
                if pending.len() < H2_PREFACE.len() {
                    continue;
                }
                if &pending[..H2_PREFACE.len()] != H2_PREFACE
                    || tls.write_all(&H2_SETTINGS).is_err()
                {
                    return;
                }
                pending.drain(..H2_PREFACE.len());
                h2 = Some(false);
            }
            while let Some(i) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=i).collect();
                let mut reply = format!("{name} ").into_bytes();
                reply.extend_from_slice(&line);
                if tls.write_all(&reply).is_err() {
                    return;
                }
            }
        }
        tls.conn.send_close_notify();
        let _ = tls.flush();
    })
}

/// `openssl s_server` on a free port with `leaf`'s certificate, in `-rev` mode
/// (each line comes back reversed). One connection at a time.
pub struct OpensslServer {
    /// Killed when dropped.
    _proc: Proc,
    pub addr: SocketAddr,
}

impl OpensslServer {
    pub fn start(openssl: &Path, leaf: &Leaf, dir: &Path) -> OpensslServer {
        let (cert, key) = leaf.write_pem(dir);
        let mut command = Command::new(openssl);
        command
            .args(["s_server", "-accept", "127.0.0.1:0", "-rev", "-cert"])
            .arg(&cert)
            .arg("-key")
            .arg(&key);
        let mut proc = Proc::spawn("openssl s_server", &mut command, Stdio::null());
        let text = proc.wait_output("ACCEPT ");
        let addr = text
            .lines()
            .find_map(|l| l.strip_prefix("ACCEPT "))
            .and_then(|a| a.trim().parse().ok())
            .unwrap_or_else(|| panic!("no address in s_server's output:\n{text}"));
        OpensslServer { _proc: proc, addr }
    }
}

// ---- TLS clients -----------------------------------------------------------------

/// Accepts any certificate (the test compares it with the one it expects) but
/// still checks the handshake signatures, so the handshake is a real one.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// How a client checks the server's certificate.
pub enum Verify<'a> {
    /// Full verification against the test CA, host name included.
    Ca(&'a Pki),
    /// Any certificate (for names no certificate is issued for).
    Any,
}

/// A rustls client configuration offering `alpn`, sending SNI when `sni`.
pub fn client_config(verify: Verify, alpn: &[&[u8]], sni: bool) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let mut config = match verify {
        Verify::Ca(pki) => {
            let mut roots = RootCertStore::empty();
            roots.add(pki.ca_der.clone()).unwrap();
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Verify::Any => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider())))
            .with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.enable_sni = sni;
    Arc::new(config)
}

pub type Tls = StreamOwned<ClientConnection, TcpStream>;

/// The first flight of a client for `name`: its ClientHello record(s).
pub fn client_hello(config: &Arc<ClientConfig>, name: &str) -> (ClientConnection, Vec<u8>) {
    let server_name = ServerName::try_from(name.to_string()).unwrap();
    let mut conn = ClientConnection::new(config.clone(), server_name).unwrap();
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).unwrap();
    }
    (conn, hello)
}

/// Connects through `addr`, writes the ClientHello as `writes` cuts it up
/// (pausing between writes), and completes the handshake. Returns the
/// connection and the ClientHello's size.
pub fn tls_connect_with(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    name: &str,
    writes: impl Fn(&[u8]) -> Vec<Vec<u8>>,
) -> io::Result<(Tls, usize)> {
    let (mut conn, hello) = client_hello(config, name);
    let mut sock = connect(addr);
    let chunks = writes(&hello);
    for (i, chunk) in chunks.iter().enumerate() {
        if i > 0 {
            // WHY: the pause is the stimulus, not a synchronisation: it makes
            // the rest of the ClientHello arrive in a later segment, as from a
            // slow client, so spliced must hold the first part and read again.
            std::thread::sleep(Duration::from_millis(100));
        }
        sock.write_all(chunk)?;
    }
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)?;
    }
    Ok((StreamOwned::new(conn, sock), hello.len()))
}

pub fn tls_connect(addr: SocketAddr, config: &Arc<ClientConfig>, name: &str) -> io::Result<Tls> {
    tls_connect_with(addr, config, name, |h| vec![h.to_vec()]).map(|(t, _)| t)
}

/// Sends `line` and returns the line that comes back (without its newline).
pub fn round_trip(tls: &mut Tls, line: &str) -> String {
    tls.write_all(format!("{line}\n").as_bytes())
        .expect("write through the passthrough");
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\n") {
        match tls.read(&mut byte) {
            Ok(1) => got.push(byte[0]),
            Ok(_) => panic!("EOF after {:?}", String::from_utf8_lossy(&got)),
            Err(e) => panic!("read after {:?}: {e}", String::from_utf8_lossy(&got)),
        }
    }
    got.pop();
    String::from_utf8(got).unwrap()
}

/// Ends a client connection with a close_notify.
pub fn close(mut tls: Tls) {
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

// ---- the backends of these tests -------------------------------------------------------

/// A backend as a client should see it: its certificate and how it answers.
#[derive(Clone)]
struct Peer {
    cn: String,
    der: CertificateDer<'static>,
    /// `Some(name)`: a rustls backend answering "<name> <line>"; `None`:
    /// `openssl s_server -rev`, answering the line reversed.
    name: Option<&'static str>,
}

impl Peer {
    fn new(leaf: &Leaf, name: Option<&'static str>) -> Peer {
        Peer {
            cn: leaf.cn.clone(),
            der: leaf.der.clone(),
            name,
        }
    }

    fn reply(&self, line: &str) -> String {
        match self.name {
            Some(name) => format!("{name} {line}"),
            None => line.chars().rev().collect(),
        }
    }
}

/// The leaf certificate a client was shown, checked against `peer`'s.
fn assert_certificate(tls: &Tls, peer: &Peer, what: &str) {
    let certs = tls.conn.peer_certificates().expect("server certificates");
    assert!(
        certs[0] == peer.der,
        "{what}: the client was shown another backend's certificate than {}'s",
        peer.cn
    );
}

/// A rustls client asking for `name` completes the handshake with `peer`,
/// sees its certificate and exchanges a line with it.
fn check_rustls(addr: SocketAddr, config: &Arc<ClientConfig>, name: &str, peer: &Peer) {
    let what = format!("rustls client asking for {name}");
    let mut tls = tls_connect(addr, config, name)
        .unwrap_or_else(|e| panic!("{what}: handshake through spliced failed: {e}"));
    assert_certificate(&tls, peer, &what);
    let line = format!("hello-{name}-{}", peer.cn);
    assert_eq!(round_trip(&mut tls, &line), peer.reply(&line), "{what}");
    close(tls);
}

/// Runs `openssl s_client -connect addr args`, sends `input`, waits for the
/// backend's answer `reply`, then closes its input (s_client ends the TLS
/// session and exits). Returns everything it printed.
fn s_client(openssl: &Path, addr: SocketAddr, args: &[&str], input: &[u8], reply: &str) -> String {
    let mut command = Command::new(openssl);
    command
        .args(["s_client", "-connect", &addr.to_string()])
        .args(args);
    let mut proc = Proc::spawn(
        &format!("openssl s_client {}", args.join(" ")),
        &mut command,
        Stdio::piped(),
    );
    let mut stdin = proc.child.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    proc.wait_output(reply);
    drop(stdin);
    let (code, text) = proc.finish(WAIT);
    assert_eq!(code, Some(0), "s_client {args:?} failed:\n{text}");
    text
}

/// The subject s_client printed, without spaces ("subject=CN=api.example.test").
fn s_client_subject(text: &str) -> String {
    text.lines()
        .find(|l| l.starts_with("subject="))
        .unwrap_or_else(|| panic!("no subject in s_client's output:\n{text}"))
        .replace(' ', "")
}

/// `openssl s_client` with `args` reaches `peer`: same answer, same subject.
fn check_s_client(openssl: &Path, addr: SocketAddr, args: &[&str], peer: &Peer) -> String {
    let line = format!("s-client-{}", args.join("_"));
    let input = format!("{line}\n");
    let text = s_client(openssl, addr, args, input.as_bytes(), &peer.reply(&line));
    assert_eq!(
        s_client_subject(&text),
        format!("subject=CN={}", peer.cn),
        "s_client {args:?} was shown another certificate"
    );
    text
}

/// A listener `tls` with `routes` (match, pool, alpn) over `pools` (name,
/// backend), default pool `default`, plus `extra` listener lines.
fn sni_config(
    routes: &[(&str, &str, &[&str])],
    pools: &[(&str, SocketAddr)],
    extra: &str,
) -> String {
    let mut s = String::from(
        "workers: 2\nadmin:\n  listen: 127.0.0.1:0\nlisteners:\n  - name: tls\n    listen: 127.0.0.1:0\n    pool: default\n",
    );
    for line in extra.lines().filter(|l| !l.trim().is_empty()) {
        s.push_str(&format!("    {}\n", line.trim()));
    }
    s.push_str("    sni:\n");
    for (m, pool, alpn) in routes {
        s.push_str(&format!("      - match: \"{m}\"\n        pool: {pool}\n"));
        if !alpn.is_empty() {
            s.push_str(&format!("        alpn: [{}]\n", alpn.join(", ")));
        }
    }
    s.push_str("pools:\n");
    for (name, addr) in pools {
        s.push_str(&format!("  - name: {name}\n    backends: [\"{addr}\"]\n"));
    }
    s
}

// ---- tests -----------------------------------------------------------------------

#[test]
fn each_name_reaches_its_backend_and_sees_that_backends_certificate() {
    let Some(openssl) = peer_tool("openssl") else {
        return;
    };
    let dir = temp_dir();
    let pki = Pki::new();
    std::fs::write(dir.join("ca.pem"), &pki.ca_pem).unwrap();
    let ca = dir.join("ca.pem");
    let ca = ca.to_str().unwrap();
    let api = pki.leaf(
        "api.example.test",
        &["api.example.test", "special.wild.example.test"],
    );
    let wild = pki.leaf("wild.example.test", &["*.wild.example.test"]);
    let fallback = pki.leaf("default.example.test", &["default.example.test"]);

    // api: rustls in this process; wild: openssl s_server; default: rustls.
    let a = rustls_backend("api", api.server_config(&[]));
    let b = OpensslServer::start(&openssl, &wild, &dir);
    let d = rustls_backend("default", fallback.server_config(&[]));
    let (api, wild, fallback) = (
        Peer::new(&api, Some("api")),
        Peer::new(&wild, None),
        Peer::new(&fallback, Some("default")),
    );
    let lb = Spliced::start(&sni_config(
        &[
            ("api.example.test", "api", &[]),
            ("*.wild.example.test", "wild", &[]),
            // An exact name is preferred to the wildcard that also matches it.
            ("special.wild.example.test", "api", &[]),
        ],
        &[("default", d.addr), ("api", a.addr), ("wild", b.addr)],
        "",
    ));
    let addr = lb.addr("tls");
    let verified = client_config(Verify::Ca(&pki), &[], true);
    let any = client_config(Verify::Any, &[], true);

    // Exact names, verified against the CA (host name included).
    check_rustls(addr, &verified, "api.example.test", &api);
    check_rustls(addr, &verified, "special.wild.example.test", &api);
    check_s_client(
        &openssl,
        addr,
        &[
            "-servername",
            "api.example.test",
            "-CAfile",
            ca,
            "-verify_hostname",
            "api.example.test",
            "-verify_return_error",
        ],
        &api,
    );
    // Names are case-insensitive and a trailing dot is ignored.
    check_s_client(&openssl, addr, &["-servername", "API.Example.TEST."], &api);

    // The wildcard, one and two labels deep: rustls client to openssl server.
    check_rustls(addr, &verified, "x.wild.example.test", &wild);
    check_rustls(addr, &any, "deep.y.wild.example.test", &wild);
    check_s_client(
        &openssl,
        addr,
        &[
            "-servername",
            "z.wild.example.test",
            "-CAfile",
            ca,
            "-verify_hostname",
            "z.wild.example.test",
            "-verify_return_error",
        ],
        &wild,
    );
    // The bare suffix is not under the wildcard.
    check_rustls(addr, &any, "wild.example.test", &fallback);

    // Default pool: a name no route knows, and no SNI at all.
    check_rustls(addr, &any, "unknown.example.org", &fallback);
    check_s_client(&openssl, addr, &["-servername", "nobody.test"], &fallback);
    let no_sni = client_config(Verify::Any, &[], false);
    check_rustls(addr, &no_sni, "api.example.test", &fallback);
    check_s_client(&openssl, addr, &["-noservername"], &fallback);

    // A larger exchange through the passthrough, both ways.
    let mut tls = tls_connect(addr, &verified, "api.example.test").unwrap();
    let big: String = (0..200_000)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    assert_eq!(round_trip(&mut tls, &big), format!("api {big}"));
    close(tls);

    // Nothing refused on the way.
    let rejected = lb.metric("spliced_rejected_connections_total", &[]);
    assert_eq!(rejected, 0.0, "spliced refused clients:\n{}", lb.log_text());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_h2_client_reaches_the_alpn_route_and_negotiates_h2_through_the_passthrough() {
    let pki = Pki::new();
    let h2_leaf = pki.leaf("h2.example.test", &["h2.example.test"]);
    let fallback = pki.leaf(
        "default.example.test",
        &["default.example.test", "h2.example.test"],
    );
    let h = rustls_backend("h2", h2_leaf.server_config(&[b"h2"]));
    let d = rustls_backend("default", fallback.server_config(&[]));
    let (h2_peer, fallback) = (
        Peer::new(&h2_leaf, Some("h2")),
        Peer::new(&fallback, Some("default")),
    );
    let lb = Spliced::start(&sni_config(
        &[("h2.example.test", "h2", &["h2"])],
        &[("default", d.addr), ("h2", h.addr)],
        "",
    ));
    let addr = lb.addr("tls");

    // An HTTP/2 client (h2 offered first, as browsers do): ALPN picks h2 on
    // the backend behind the alpn route, and the HTTP/2 prefaces cross.
    let config = client_config(Verify::Ca(&pki), &[b"h2", b"http/1.1"], true);
    let mut tls = tls_connect(addr, &config, "h2.example.test").expect("h2 handshake");
    assert_certificate(&tls, &h2_peer, "h2 client");
    assert_eq!(
        tls.conn.alpn_protocol(),
        Some(&b"h2"[..]),
        "negotiated protocol"
    );
    tls.write_all(H2_PREFACE).unwrap();
    let mut settings = [0u8; 9];
    tls.read_exact(&mut settings)
        .expect("the server's SETTINGS");
    assert_eq!(settings, H2_SETTINGS);
    assert_eq!(round_trip(&mut tls, "after-preface"), "h2 after-preface");
    close(tls);

    // The same name without h2 offered does not take the alpn route.
    let http1 = client_config(Verify::Ca(&pki), &[b"http/1.1"], true);
    let mut tls = tls_connect(addr, &http1, "h2.example.test").expect("http/1.1 handshake");
    assert_certificate(&tls, &fallback, "http/1.1 client");
    assert_eq!(tls.conn.alpn_protocol(), None);
    assert_eq!(round_trip(&mut tls, "plain"), "default plain");
    close(tls);

    // openssl's client negotiating h2 reaches it too: the backend answers
    // the HTTP/2 preface, then a line.
    if let Some(openssl) = peer_tool("openssl") {
        let args = ["-servername", "h2.example.test", "-alpn", "h2"];
        let input = [H2_PREFACE, b"from-s-client\n"].concat();
        let text = s_client(&openssl, addr, &args, &input, "h2 from-s-client");
        assert_eq!(
            s_client_subject(&text),
            format!("subject=CN={}", h2_peer.cn)
        );
        assert!(
            text.contains("ALPN protocol: h2"),
            "s_client did not negotiate h2:\n{text}"
        );
    }
    assert_eq!(h.accepted.load(std::sync::atomic::Ordering::Relaxed), 2);
}

#[test]
fn large_and_split_client_hellos_are_routed_by_their_sni() {
    let pki = Pki::new();
    let api_leaf = pki.leaf("api.example.test", &["api.example.test"]);
    let fallback = pki.leaf("default.example.test", &["default.example.test"]);
    let a = rustls_backend("api", api_leaf.server_config(&[b"http/1.1"]));
    let d = rustls_backend("default", fallback.server_config(&[]));
    let api = Peer::new(&api_leaf, Some("api"));
    let lb = Spliced::start(&sni_config(
        &[("api.example.test", "api", &[])],
        &[("default", d.addr), ("api", a.addr)],
        "",
    ));
    let addr = lb.addr("tls");

    // Sixty long ALPN protocol names make a ClientHello of about 4 KiB, more
    // than one Ethernet-sized segment; the server's protocol comes last.
    let names: Vec<Vec<u8>> = (0..60)
        .map(|i| format!("x-test-protocol-{i:02}-{}", "p".repeat(40)).into_bytes())
        .chain([b"http/1.1".to_vec()])
        .collect();
    let alpn: Vec<&[u8]> = names.iter().map(|n| n.as_slice()).collect();
    let large = client_config(Verify::Ca(&pki), &alpn, true);
    let (mut tls, size) = tls_connect_with(addr, &large, "api.example.test", |h| vec![h.to_vec()])
        .expect("handshake with a large ClientHello");
    assert!(size > 1500, "the large ClientHello is only {size} bytes");
    assert_certificate(&tls, &api, "large ClientHello");
    assert_eq!(tls.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(round_trip(&mut tls, "large"), "api large");
    close(tls);

    // Larger than one TLS record (2^14 bytes): the ClientHello spans two.
    let names: Vec<Vec<u8>> = (0..300)
        .map(|i| format!("x-test-protocol-{i:03}-{}", "p".repeat(50)).into_bytes())
        .chain([b"http/1.1".to_vec()])
        .collect();
    let alpn: Vec<&[u8]> = names.iter().map(|n| n.as_slice()).collect();
    let huge = client_config(Verify::Ca(&pki), &alpn, true);
    let (mut tls, size) = tls_connect_with(addr, &huge, "api.example.test", |h| vec![h.to_vec()])
        .expect("handshake with a ClientHello over two records");
    assert!(
        size > 16 * 1024 + 5,
        "the huge ClientHello is only {size} bytes"
    );
    assert_certificate(&tls, &api, "ClientHello larger than a record");
    assert_eq!(round_trip(&mut tls, "huge"), "api huge");
    close(tls);

    // The large one again, in three writes.
    let (mut tls, _) = tls_connect_with(addr, &large, "api.example.test", |h| {
        vec![h[..1].to_vec(), h[1..1400].to_vec(), h[1400..].to_vec()]
    })
    .expect("handshake with a large ClientHello in three writes");
    assert_certificate(&tls, &api, "large ClientHello in three writes");
    assert_eq!(round_trip(&mut tls, "large-3"), "api large-3");
    close(tls);

    let config = client_config(Verify::Ca(&pki), &[], true);
    // Two writes split inside the record header, and inside the record body
    // (before the server_name extension has arrived).
    for cut in [3, 60] {
        let (mut tls, _) = tls_connect_with(addr, &config, "api.example.test", |h| {
            vec![h[..cut].to_vec(), h[cut..].to_vec()]
        })
        .unwrap_or_else(|e| panic!("split at {cut}: {e}"));
        assert_certificate(&tls, &api, &format!("ClientHello split at byte {cut}"));
        assert_eq!(round_trip(&mut tls, "split"), "api split");
        close(tls);
    }
    // The ClientHello message fragmented over two TLS records (allowed by
    // RFC 8446 §5.1), the records in two writes.
    let (mut tls, _) = tls_connect_with(addr, &config, "api.example.test", |h| {
        let body = &h[5..];
        let cut = 40;
        let record = |part: &[u8]| {
            let mut r = vec![h[0], h[1], h[2]];
            r.extend_from_slice(&(part.len() as u16).to_be_bytes());
            r.extend_from_slice(part);
            r
        };
        assert_eq!(body.len(), usize::from(u16::from_be_bytes([h[3], h[4]])));
        vec![record(&body[..cut]), record(&body[cut..])]
    })
    .expect("handshake with a ClientHello over two records");
    assert_certificate(&tls, &api, "ClientHello over two records");
    assert_eq!(round_trip(&mut tls, "records"), "api records");
    close(tls);

    assert_eq!(
        d.accepted.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "a ClientHello went to the default pool"
    );
}

#[test]
fn require_sni_refuses_clients_without_a_name_and_counts_why() {
    let pki = Pki::new();
    let leaf = pki.leaf("ok.example.test", &["ok.example.test"]);
    let ok_backend = rustls_backend("ok", leaf.server_config(&[]));
    let fallback_backend = rustls_backend("default", leaf.server_config(&[]));
    let ok = Peer::new(&leaf, Some("ok"));
    let lb = Spliced::start(&sni_config(
        &[("ok.example.test", "ok", &[])],
        &[("default", fallback_backend.addr), ("ok", ok_backend.addr)],
        "require_sni: true\ntls_inspect_timeout: 1s",
    ));
    let addr = lb.addr("tls");
    let rejected = |reason: &str| {
        lb.metric(
            "spliced_rejected_connections_total",
            &[("listener", "tls"), ("reason", reason)],
        )
    };

    // A client that sends nothing is closed after tls_inspect_timeout
    // (checked on a one-second tick); it runs alongside the others.
    let silent = std::thread::spawn(move || {
        let mut s = connect(addr);
        let start = Instant::now();
        expect_closed(&mut s, "a client that sends nothing");
        start.elapsed()
    });

    // So is one that stops halfway through its ClientHello.
    let (_, hello) = client_hello(&client_config(Verify::Any, &[], true), "ok.example.test");
    let stalled = std::thread::spawn(move || {
        let mut s = connect(addr);
        s.write_all(&hello[..hello.len() / 2]).unwrap();
        let start = Instant::now();
        expect_closed(
            &mut s,
            "a client that stops halfway through its ClientHello",
        );
        start.elapsed()
    });

    // Plain text.
    let mut s = connect(addr);
    s.write_all(b"GET / HTTP/1.1\r\nHost: ok.example.test\r\n\r\n")
        .unwrap();
    expect_closed(&mut s, "a plain-text client");
    wait_until("no_sni counted for the plain-text client", || {
        rejected("no_sni") == 1.0
    });

    // TLS without SNI: the handshake cannot complete.
    let no_sni = client_config(Verify::Any, &[], false);
    let Err(err) = tls_connect(addr, &no_sni, "ok.example.test") else {
        panic!("a TLS client without SNI completed its handshake");
    };
    assert!(
        matches!(
            err.kind(),
            io::ErrorKind::UnexpectedEof
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
        ),
        "no-SNI handshake ended with {err:?}, not a closed connection"
    );
    wait_until("no_sni counted for the TLS client without SNI", || {
        rejected("no_sni") == 2.0
    });

    // A handshake record that holds a ClientHello too short to be one.
    let mut s = connect(addr);
    s.write_all(&[
        0x16, 0x03, 0x01, 0x00, 0x08, // handshake record, 8 bytes
        0x01, 0x00, 0x00, 0x04, // ClientHello, 4 bytes
        0xff, 0xff, 0xff, 0xff, // not a version, random, ...
    ])
    .unwrap();
    expect_closed(&mut s, "a malformed ClientHello");
    wait_until("bad_client_hello counted", || {
        rejected("bad_client_hello") == 1.0
    });

    // A client with SNI still gets through.
    check_rustls(
        addr,
        &client_config(Verify::Ca(&pki), &[], true),
        "ok.example.test",
        &ok,
    );

    for (what, waiting) in [("silent", silent), ("stalled", stalled)] {
        let waited = waiting.join().unwrap();
        assert!(
            waited >= Duration::from_millis(900) && waited < Duration::from_secs(6),
            "the {what} client was closed after {waited:?}, tls_inspect_timeout is 1s"
        );
    }
    wait_until("tls_inspect_timeout counted", || {
        rejected("tls_inspect_timeout") == 2.0
    });
    // Each refusal was counted once, under its own reason, and none reached a backend.
    assert_eq!(rejected("no_sni"), 2.0);
    assert_eq!(rejected("bad_client_hello"), 1.0);
    assert_eq!(
        lb.metric("spliced_rejected_connections_total", &[("listener", "tls")]),
        5.0,
        "{:?}",
        lb.metrics()
            .into_iter()
            .filter(|(k, v)| k.starts_with("spliced_rejected") && *v > 0.0)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        fallback_backend
            .accepted
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "a refused client reached the default pool"
    );
    assert_eq!(
        ok_backend
            .accepted
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

/// Regression test for a client's EOF during inspection being ignored.
#[test]
fn a_client_that_hangs_up_mid_client_hello_is_closed_at_once_not_after_the_timeout() {
    let pki = Pki::new();
    let leaf = pki.leaf("ok.example.test", &["ok.example.test"]);
    let backend = rustls_backend("ok", leaf.server_config(&[]));
    let lb = Spliced::start(&sni_config(
        &[("ok.example.test", "p", &[])],
        &[("default", backend.addr), ("p", backend.addr)],
        "tls_inspect_timeout: 10s",
    ));
    let addr = lb.addr("tls");
    let (_, hello) = client_hello(&client_config(Verify::Any, &[], true), "ok.example.test");
    // Nothing at all (a TCP health check), and the first bytes of a ClientHello.
    for (what, sent) in [
        ("no byte", &hello[..0]),
        ("half a ClientHello", &hello[..50]),
    ] {
        let mut s = connect(addr);
        s.write_all(sent).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let start = Instant::now();
        expect_closed(&mut s, what);
        let waited = start.elapsed();
        assert!(
            waited < Duration::from_secs(5),
            "a client that sent {what} and hung up was held {waited:?} (tls_inspect_timeout is 10s)"
        );
    }
    wait_until("no connection left open", || {
        lb.metric(
            "spliced_listener_active_connections",
            &[("listener", "tls")],
        ) == 0.0
    });
    assert_eq!(
        lb.metric(
            "spliced_rejected_connections_total",
            &[("reason", "tls_inspect_timeout")]
        ),
        0.0,
        "clients that hung up were counted as inspection timeouts"
    );
}
