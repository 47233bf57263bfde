//! One `tls:` store loaded into memory: each configured PEM chain and key,
//! checked against each other, indexed by the DNS names in the leaf, plus an
//! optional generated self-signed certificate. Loading is all-or-nothing and
//! never logs (the caller decides: `spliced check` stays quiet, start-up and
//! reload log the returned notes); it never touches sockets.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::names::{self, NameIndex};
use super::{provider, sha256_fingerprint, TlsError};
use crate::config::model::{CertFiles, TlsStoreConfig};

/// What `spliced check`, the metrics and the logs show about one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The DNS names it serves, as written in the certificate (lowercased,
    /// `*.` kept for wildcards).
    pub names: Vec<String>,
    /// The leaf's notAfter, Unix seconds.
    pub not_after_unix: i64,
    /// SHA-256 of the leaf's DER, uppercase hex with colons, as
    /// `openssl x509 -noout -fingerprint -sha256` prints it.
    pub fingerprint_sha256: String,
    /// The certificate file, or `"self_signed"`.
    pub source: String,
}

/// Something worth a warning (or, for a generated certificate, an info line)
/// that does not stop the store from loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// The leaf's notAfter is in the past: clients will refuse it.
    Expired { path: PathBuf, not_after_unix: i64 },
    /// A name an earlier certificate of the store already serves; that one keeps it.
    Shadowed { path: PathBuf, name: String },
    /// A SAN that no SNI can match (a misplaced `*`), ignored.
    UnusableName { path: PathBuf, name: String },
    /// A self-signed certificate was generated (not on reuse across reloads).
    Generated {
        names: Vec<String>,
        fingerprint_sha256: String,
    },
}

impl Note {
    /// Logs the note under the store's name.
    pub fn log(&self, store: &str) {
        use crate::log::{info, warn};
        match self {
            Note::Expired {
                path,
                not_after_unix,
            } => {
                let ms = u64::try_from(*not_after_unix)
                    .unwrap_or(0)
                    .saturating_mul(1000);
                warn(
                    "tls certificate has expired; serving it anyway",
                    &[
                        ("store", &store),
                        ("file", &path.display()),
                        ("not_after", &crate::log::rfc3339(ms)),
                    ],
                )
            }
            Note::Shadowed { path, name } => warn(
                "tls certificate name already served by an earlier certificate; that one keeps it",
                &[("store", &store), ("file", &path.display()), ("name", name)],
            ),
            Note::UnusableName { path, name } => warn(
                "tls certificate name cannot match any SNI; ignored",
                &[("store", &store), ("file", &path.display()), ("name", name)],
            ),
            Note::Generated {
                names,
                fingerprint_sha256,
            } => info(
                "tls self-signed certificate generated",
                &[
                    ("store", &store),
                    ("names", &names.join(",")),
                    ("sha256", fingerprint_sha256),
                ],
            ),
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    key: Arc<CertifiedKey>,
    info: CertInfo,
}

/// The self-signed certificate and the configured names it was made for, so a
/// reload with the same names keeps it (clients that pinned it stay happy).
#[derive(Debug, Clone)]
struct SelfSigned {
    configured: Vec<String>,
    entry: Entry,
}

/// A loaded certificate store: immutable; a reload builds a new one.
#[derive(Debug, Clone)]
pub struct CertStore {
    name: String,
    entries: Vec<Entry>,
    index: NameIndex,
    /// Index into `entries` serving unknown and missing SNI.
    default: Option<usize>,
    self_signed: Option<SelfSigned>,
}

impl CertStore {
    /// Loads the store, logging its notes (expired certificates, the
    /// generated self-signed certificate's fingerprint).
    pub fn load(cfg: &TlsStoreConfig) -> Result<CertStore, TlsError> {
        let (store, notes) = Self::load_quiet(cfg, None)?;
        for note in &notes {
            note.log(&cfg.name);
        }
        Ok(store)
    }

    /// Loads the store without logging; with `previous`, its self-signed
    /// certificate is reused when the configured names are the same.
    pub fn load_quiet(
        cfg: &TlsStoreConfig,
        previous: Option<&CertStore>,
    ) -> Result<(CertStore, Vec<Note>), TlsError> {
        let now = unix_now();
        let mut notes = Vec::new();
        let mut entries = Vec::new();
        let mut index = NameIndex::default();

        for files in &cfg.certs {
            let (certified, parsed) = load_pair(files)?;
            let leaf = &certified.cert[0];
            if parsed.not_after_unix < now {
                notes.push(Note::Expired {
                    path: files.cert.clone(),
                    not_after_unix: parsed.not_after_unix,
                });
            }
            let at = entries.len();
            let mut served = Vec::new();
            for name in parsed.names {
                match names::pattern(&name) {
                    None => notes.push(Note::UnusableName {
                        path: files.cert.clone(),
                        name,
                    }),
                    Some(p) => {
                        if !index.insert(p, at) {
                            notes.push(Note::Shadowed {
                                path: files.cert.clone(),
                                name: names::normalize(&name),
                            });
                        }
                        served.push(names::normalize(&name));
                    }
                }
            }
            if served.is_empty() {
                return Err(TlsError::NoNames {
                    path: files.cert.clone(),
                });
            }
            let info = CertInfo {
                names: served,
                not_after_unix: parsed.not_after_unix,
                fingerprint_sha256: sha256_fingerprint(leaf),
                source: files.cert.display().to_string(),
            };
            entries.push(Entry {
                key: Arc::new(certified),
                info,
            });
        }

        let self_signed = if cfg.self_signed.is_empty() {
            None
        } else {
            let reuse = previous
                .and_then(|p| p.self_signed.as_ref())
                .filter(|s| s.configured == cfg.self_signed)
                .cloned();
            let ss = match reuse {
                Some(ss) => ss,
                None => {
                    let ss = generate_self_signed(&cfg.name, &cfg.self_signed)?;
                    notes.push(Note::Generated {
                        names: ss.entry.info.names.clone(),
                        fingerprint_sha256: ss.entry.info.fingerprint_sha256.clone(),
                    });
                    ss
                }
            };
            let at = entries.len();
            for name in &cfg.self_signed {
                let Some(p) = names::pattern(name) else {
                    return Err(TlsError::BadSelfSignedName {
                        store: cfg.name.clone(),
                        name: name.clone(),
                    });
                };
                if !index.insert(p, at) {
                    notes.push(Note::Shadowed {
                        path: PathBuf::from("self_signed"),
                        name: names::normalize(name),
                    });
                }
            }
            entries.push(ss.entry.clone());
            Some(ss)
        };

        let default = match &cfg.default {
            None => None,
            Some(name) => Some(
                index
                    .lookup(name)
                    .ok_or_else(|| TlsError::DefaultNotCovered {
                        store: cfg.name.clone(),
                        name: name.clone(),
                    })?,
            ),
        };

        let store = CertStore {
            name: cfg.name.clone(),
            entries,
            index,
            default,
            self_signed,
        };
        Ok((store, notes))
    }

    /// The store's name (`tls[].name`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The certificate for a ClientHello's SNI: exact name, else the
    /// one-label wildcard, else the default; `None` without a default.
    /// A missing SNI gets the default.
    pub fn resolve(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let at = sni.and_then(|n| self.index.lookup(n)).or(self.default)?;
        self.entries.get(at).map(|e| Arc::clone(&e.key))
    }

    /// Whether a handshake with this SNI gets a certificate.
    pub fn accepts(&self, sni: Option<&str>) -> bool {
        sni.and_then(|n| self.index.lookup(n))
            .or(self.default)
            .is_some()
    }

    /// Every certificate of the store, in config order (self-signed last).
    pub fn certs(&self) -> Vec<CertInfo> {
        self.entries.iter().map(|e| e.info.clone()).collect()
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => TlsError::Missing {
            path: path.to_owned(),
        },
        _ => TlsError::Unreadable {
            path: path.to_owned(),
            source: e,
        },
    })
}

fn pem_error(path: &Path, e: pem::Error) -> TlsError {
    TlsError::BadPem {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

/// The certificate chain in a PEM file, leaf first.
pub(super) fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read_file(path)?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(chain)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in a PEM file.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read_file(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_owned(),
        },
        e => pem_error(path, e),
    })
}

/// A cert file's chain and a key file's key, checked to belong together, and
/// what the leaf says.
fn load_pair(files: &CertFiles) -> Result<(CertifiedKey, Leaf), TlsError> {
    let chain = read_chain(&files.cert)?;
    let key = read_key(&files.key)?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::BadKey {
            path: files.key.clone(),
            reason: e.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        // WHY: a provider whose key cannot produce its public half cannot be
        // checked; rustls' own CertifiedKey::from_der accepts that too.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(TlsError::KeyMismatch {
                key: files.key.clone(),
                cert: files.cert.clone(),
            })
        }
        Err(e) => {
            return Err(TlsError::BadCertificate {
                path: files.cert.clone(),
                reason: e.to_string(),
            })
        }
    }
    // read_chain refused an empty chain, so the leaf is there.
    let leaf = parse_leaf(&files.cert, &certified.cert[0])?;
    Ok((certified, leaf))
}

struct Leaf {
    names: Vec<String>,
    not_after_unix: i64,
}

/// The leaf's DNS SANs (or its CN when it has no SAN extension at all) and
/// its notAfter.
fn parse_leaf(path: &Path, der: &CertificateDer<'_>) -> Result<Leaf, TlsError> {
    use x509_parser::extensions::GeneralName;
    let bad = |reason: String| TlsError::BadCertificate {
        path: path.to_owned(),
        reason,
    };
    let (_, cert) =
        x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| bad(e.to_string()))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| bad(e.to_string()))?;
    let names = match san {
        Some(san) => san
            .value
            .general_names
            .iter()
            .filter_map(|g| match g {
                GeneralName::DNSName(n) => Some((*n).to_owned()),
                _ => None,
            })
            .collect(),
        None => cert
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok())
            .map(str::to_owned)
            .take(1)
            .collect(),
    };
    Ok(Leaf {
        names,
        not_after_unix: cert.validity().not_after.timestamp(),
    })
}

/// One ECDSA P-256 certificate for all of `names`, signed by its own key.
fn generate_self_signed(store: &str, configured: &[String]) -> Result<SelfSigned, TlsError> {
    let fail = |reason: String| TlsError::SelfSigned {
        store: store.to_owned(),
        reason,
    };
    let mut sans = Vec::new();
    for name in configured {
        if names::pattern(name).is_none() {
            return Err(TlsError::BadSelfSignedName {
                store: store.to_owned(),
                name: name.clone(),
            });
        }
        sans.push(names::normalize(name));
    }
    let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| fail(e.to_string()))?;
    let mut params =
        rcgen::CertificateParams::new(sans.clone()).map_err(|e| fail(e.to_string()))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    if let Some(first) = sans.first() {
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, first.clone());
    }
    let cert = params
        .self_signed(&key_pair)
        .map_err(|e| fail(e.to_string()))?;
    let der = cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| fail(e.to_string()))?;
    let info = CertInfo {
        names: sans,
        not_after_unix: params.not_after.unix_timestamp(),
        fingerprint_sha256: sha256_fingerprint(&der),
        source: "self_signed".to_owned(),
    };
    Ok(SelfSigned {
        configured: configured.to_vec(),
        entry: Entry {
            key: Arc::new(CertifiedKey::new(vec![der], signing)),
            info,
        },
    })
}
