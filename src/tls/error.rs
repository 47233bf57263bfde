//! The certificate store's errors: each names the file it is about and says
//! why, in words an operator can act on (`spliced check` prints them as is).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: no such file", path = .path.display())]
    Missing { path: PathBuf },
    #[error("{path}: cannot read: {source}", path = .path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not valid PEM: {reason}", path = .path.display())]
    BadPem { path: PathBuf, reason: String },
    #[error("{path}: no certificate in it (expected a PEM \"BEGIN CERTIFICATE\" block)", path = .path.display())]
    NoCertificate { path: PathBuf },
    #[error("{path}: cannot parse the certificate: {reason}", path = .path.display())]
    BadCertificate { path: PathBuf, reason: String },
    #[error("{path}: the certificate has no DNS name (no DNS subjectAltName and no usable CN), so no SNI can select it", path = .path.display())]
    NoNames { path: PathBuf },
    #[error("{path}: no private key in it (expected PEM PKCS#8 \"PRIVATE KEY\", PKCS#1 \"RSA PRIVATE KEY\" or SEC1 \"EC PRIVATE KEY\")", path = .path.display())]
    NoKey { path: PathBuf },
    #[error("{path}: unsupported private key: {reason}", path = .path.display())]
    BadKey { path: PathBuf, reason: String },
    #[error("{key}: the key does not match the certificate in {cert}", key = .key.display(), cert = .cert.display())]
    KeyMismatch { key: PathBuf, cert: PathBuf },
    #[error("tls store {store:?}: default {name:?} is served by none of its certificates")]
    DefaultNotCovered { store: String, name: String },
    #[error("tls store {store:?}: self_signed name {name:?} cannot be served (empty or a misplaced '*')")]
    BadSelfSignedName { store: String, name: String },
    #[error("tls store {store:?}: cannot generate the self-signed certificate: {reason}")]
    SelfSigned { store: String, reason: String },
    #[error("cannot build the TLS server config: {0}")]
    ServerConfig(String),
}
