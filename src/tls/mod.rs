//! TLS termination's certificates: the certificate stores (`tls:` in the
//! config) loaded from PEM files or generated self-signed, the SNI resolver
//! rustls asks for each handshake, hot reload of the files, and the
//! `rustls::ServerConfig` an HTTP listener accepts with. Owns the choice of
//! crypto provider (a crate feature, never rustls' process default). Never
//! touches sockets: the HTTP plane drives the handshakes.
//!
//! - `names`: SNI normalisation and wildcard rules (pure).
//! - `store`: [`CertStore`], one loaded store; [`CertInfo`].
//! - `reload`: [`ReloadableStore`], the swappable resolver, and the file probe.
//! - `client`: TLS to backends (`backend_tls`).

mod client;
mod error;
mod names;
mod reload;
mod store;

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::ServerSessionMemoryCache;
use rustls::ServerConfig;
use rustls_pki_types::CertificateDer;

pub use client::client_config;
pub use error::TlsError;
pub use reload::{ReloadableStore, Staged};
pub use store::{CertInfo, CertStore};

use crate::config::model::{ListenerTls, TlsStoreConfig, TlsVersion};

#[cfg(not(any(feature = "aws-lc-rs", feature = "ring")))]
compile_error!("spliced needs a TLS crypto provider: build with the `aws-lc-rs` (default) or the `ring` feature");

// WHY: chosen by our own features, aws-lc-rs first. Test builds compile ring
// too (the e2e tests' dev-dependency), so rustls' process default would be a
// guess.
#[cfg(feature = "aws-lc-rs")]
use rustls::crypto::aws_lc_rs as backend;
#[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
use rustls::crypto::ring as backend;

/// TLS 1.2 sessions remembered for resumption by session ID, per listener.
/// Each entry is a few hundred bytes, so this is about 1 MiB; TLS 1.3 resumes
/// by ticket and needs no server state.
const SESSION_CACHE_ENTRIES: usize = 4096;

/// A fatal `unrecognized_name` alert (112) as a plaintext TLS record, for a
/// listener that peeks the ClientHello and refuses an SNI no certificate
/// serves: write these bytes and close. (rustls itself answers a resolver's
/// `None` with `access_denied`, 49.)
pub const UNRECOGNIZED_NAME_ALERT: [u8; 7] = [
    0x15, // content type: alert
    0x03, 0x03, // legacy record version TLS 1.2, as TLS 1.3 records carry
    0x00, 0x02, // length
    0x02, // level: fatal
    0x70, // description: unrecognized_name (112)
];

/// The crypto provider every TLS config of spliced uses.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: std::sync::OnceLock<Arc<CryptoProvider>> = std::sync::OnceLock::new();
    Arc::clone(PROVIDER.get_or_init(|| Arc::new(backend::default_provider())))
}

/// The provider's name, for logs and `spliced_dataplane_info`-style metrics.
pub fn provider_name() -> &'static str {
    if cfg!(feature = "aws-lc-rs") {
        "aws-lc-rs"
    } else {
        "ring"
    }
}

/// SHA-256 of `der` as `openssl x509 -fingerprint -sha256` prints it:
/// uppercase hex pairs joined by colons.
pub(crate) fn sha256_fingerprint(der: &CertificateDer<'_>) -> String {
    // The provider's SHA-256, reached through a TLS 1.3 suite that uses it
    // (rustls exposes the hash no other way).
    let Some(suite) = backend::cipher_suite::TLS13_AES_128_GCM_SHA256.tls13() else {
        return String::new();
    };
    let digest = suite.common.hash_provider.hash(der.as_ref());
    let hex: Vec<String> = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

/// The certificates a store's config would load, without logging and
/// without touching running listeners: for `spliced check`.
pub fn check(cfg: &TlsStoreConfig) -> Result<Vec<CertInfo>, TlsError> {
    CertStore::load_quiet(cfg, None).map(|(store, _)| store.certs())
}

/// The `ServerConfig` a listener with `tls` accepts with, resolving
/// certificates from `store` (so reloading the store needs no new config).
/// Build it once per listener and share it across workers: the ticket key
/// and session cache live in it, so resumption works across workers only
/// when they share it.
pub fn server_config(
    store: &Arc<ReloadableStore>,
    tls: &ListenerTls,
) -> Result<Arc<ServerConfig>, TlsError> {
    let versions: &[&'static rustls::SupportedProtocolVersion] = match tls.min_version {
        TlsVersion::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::V1_3 => &[&rustls::version::TLS13],
    };
    let fail = |e: rustls::Error| TlsError::ServerConfig(e.to_string());
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .map_err(fail)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::clone(store) as Arc<dyn rustls::server::ResolvesServerCert>);
    config.alpn_protocols = tls.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    // Rotating ticket keys (a new key every 6 h, the previous one still
    // accepted), so a leaked key exposes a bounded window.
    config.ticketer = backend::Ticketer::new().map_err(fail)?;
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
    // WHY: 0-RTT data is replayable; nothing behind us is known to be safe with it.
    config.max_early_data_size = 0;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;
