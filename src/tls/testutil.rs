//! Test helpers for the certificate store: certificates made with rcgen and
//! written to a per-test temporary directory, and in-memory handshakes that
//! drive a rustls client and server against each other over byte buffers.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};
use rustls_pki_types::{CertificateDer, ServerName};

use super::client::AnyCertificate;
use super::provider;
use crate::config::model::{CertFiles, TlsStoreConfig};

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("spliced-tls-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A generated certificate: PEMs and the leaf's DER.
pub struct TestCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub key_pkcs8: Vec<u8>,
    pub der: CertificateDer<'static>,
}

pub fn cert_with(
    params: rcgen::CertificateParams,
    alg: &'static rcgen::SignatureAlgorithm,
) -> TestCert {
    let key = rcgen::KeyPair::generate_for(alg).unwrap();
    let cert = params.self_signed(&key).unwrap();
    TestCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        key_pkcs8: key.serialize_der(),
        der: cert.der().clone(),
    }
}

/// An ECDSA P-256 certificate for `names`.
pub fn cert(names: &[&str]) -> TestCert {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    cert_with(
        rcgen::CertificateParams::new(names).unwrap(),
        &rcgen::PKCS_ECDSA_P256_SHA256,
    )
}

/// Writes `c` as `<stem>.pem` and `<stem>.key` in `dir`.
pub fn write(dir: &TempDir, stem: &str, c: &TestCert) -> CertFiles {
    let files = CertFiles {
        cert: dir.path(&format!("{stem}.pem")),
        key: dir.path(&format!("{stem}.key")),
    };
    std::fs::write(&files.cert, &c.cert_pem).unwrap();
    std::fs::write(&files.key, &c.key_pem).unwrap();
    files
}

pub fn store_cfg(
    certs: Vec<CertFiles>,
    self_signed: &[&str],
    default: Option<&str>,
) -> TlsStoreConfig {
    TlsStoreConfig {
        name: "main".into(),
        certs,
        self_signed: self_signed.iter().map(|s| s.to_string()).collect(),
        default: default.map(str::to_owned),
    }
}

/// A client offering `versions` and `alpn`.
pub fn client(
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&str],
) -> Arc<ClientConfig> {
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate))
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Arc::new(cfg)
}

pub fn default_client() -> Arc<ClientConfig> {
    client(rustls::ALL_VERSIONS, &[])
}

/// A connected pair after a completed handshake.
pub struct Pair {
    pub client: ClientConnection,
    pub server: ServerConnection,
}

/// Why a handshake failed, on each side.
#[derive(Debug, Default)]
pub struct Failure {
    pub client: Option<rustls::Error>,
    pub server: Option<rustls::Error>,
}

macro_rules! deliver {
    ($from:expr, $to:expr) => {{
        let mut buf = Vec::new();
        while $from.wants_write() {
            $from.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        let mut result = Ok(());
        while !rd.is_empty() {
            $to.read_tls(&mut rd).unwrap();
            if let Err(e) = $to.process_new_packets() {
                result = Err(e);
                break;
            }
        }
        result
    }};
}

/// Starts a client for `sni` (`None`: sends no SNI).
pub fn client_conn(client: &Arc<ClientConfig>, sni: Option<&str>) -> ClientConnection {
    let (cfg, name) = match sni {
        Some(n) => (Arc::clone(client), n.to_owned()),
        None => {
            let mut c = (**client).clone();
            c.enable_sni = false;
            (Arc::new(c), "nosni.invalid".to_owned())
        }
    };
    ClientConnection::new(cfg, ServerName::try_from(name).unwrap()).unwrap()
}

/// Runs a whole handshake in memory.
pub fn handshake(
    server: &Arc<ServerConfig>,
    client: &Arc<ClientConfig>,
    sni: Option<&str>,
) -> Result<Pair, Box<Failure>> {
    let mut c = client_conn(client, sni);
    let mut s = ServerConnection::new(Arc::clone(server)).unwrap();
    let mut fail = Failure::default();
    for _ in 0..32 {
        if let Err(e) = deliver!(c, s) {
            fail.server = Some(e);
        }
        if let Err(e) = deliver!(s, c) {
            fail.client = Some(e);
        }
        if fail.client.is_some() || fail.server.is_some() {
            if fail.server.is_none() {
                fail.server = deliver!(c, s).err();
            }
            return Err(Box::new(fail));
        }
        if !c.is_handshaking() && !s.is_handshaking() {
            return Ok(Pair {
                client: c,
                server: s,
            });
        }
    }
    panic!("handshake did not finish");
}

impl Pair {
    /// The leaf the server presented.
    pub fn leaf(&self) -> CertificateDer<'static> {
        self.client.peer_certificates().unwrap()[0]
            .clone()
            .into_owned()
    }

    /// Sends `msg` each way and checks it arrives.
    pub fn exchange(&mut self, msg: &[u8]) {
        use std::io::{Read, Write};
        self.client.writer().write_all(msg).unwrap();
        deliver!(self.client, self.server).unwrap();
        let mut got = vec![0; msg.len()];
        self.server.reader().read_exact(&mut got).unwrap();
        assert_eq!(got, msg);
        self.server.writer().write_all(msg).unwrap();
        deliver!(self.server, self.client).unwrap();
        let mut got = vec![0; msg.len()];
        self.client.reader().read_exact(&mut got).unwrap();
        assert_eq!(got, msg);
    }
}

/// Feeds bytes the server wrote straight to a client (for the peeked path).
pub fn client_reads(c: &mut ClientConnection, bytes: &[u8]) -> Result<(), rustls::Error> {
    let mut rd = bytes;
    while !rd.is_empty() {
        c.read_tls(&mut rd).unwrap();
        c.process_new_packets()?;
    }
    Ok(())
}

/// What a client wrote so far.
pub fn client_writes(c: &mut ClientConnection) -> Vec<u8> {
    let mut buf = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut buf).unwrap();
    }
    buf
}

/// The inner private key of a PKCS#8 document: PKCS#1 for RSA, SEC1 for EC.
pub fn pkcs8_inner(der: &[u8]) -> Vec<u8> {
    fn header(d: &[u8]) -> (u8, usize, usize) {
        let tag = d[0];
        let (len, hl) = if d[1] < 0x80 {
            (d[1] as usize, 2)
        } else {
            let n = (d[1] & 0x7f) as usize;
            let mut len = 0usize;
            for b in &d[2..2 + n] {
                len = (len << 8) | *b as usize;
            }
            (len, 2 + n)
        };
        (tag, hl, len)
    }
    let (_, hl, _) = header(der);
    let mut rest = &der[hl..];
    for _ in 0..2 {
        let (_, hl, len) = header(rest); // version, algorithm
        rest = &rest[hl + len..];
    }
    let (tag, hl, len) = header(rest);
    assert_eq!(tag, 0x04, "OCTET STRING");
    rest[hl..hl + len].to_vec()
}

pub fn pem(label: &str, der: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for chunk in der.chunks(3) {
        let n = chunk.iter().fold(0u32, |a, b| (a << 8) | *b as u32) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

pub fn symlink(target: impl AsRef<Path>, link: impl AsRef<Path>) {
    std::os::unix::fs::symlink(target, link).unwrap();
}
