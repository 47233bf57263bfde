//! The certificate store against real rustls handshakes, in memory.

use std::sync::Arc;

use rustls::AlertDescription;

use super::store::Note;
use super::testutil::*;
use super::*;
use crate::config::model::{CertFiles, ListenerTls, TlsVersion};

fn listener(alpn: &[&str], min_version: TlsVersion) -> ListenerTls {
    ListenerTls {
        store: 0,
        alpn: alpn.iter().map(|s| s.to_string()).collect(),
        min_version,
    }
}

fn serve(store: &Arc<ReloadableStore>) -> Arc<rustls::ServerConfig> {
    server_config(store, &listener(&["h2", "http/1.1"], TlsVersion::V1_2)).unwrap()
}

struct Fixture {
    _dir: TempDir,
    a: TestCert,
    b: TestCert,
    w: TestCert,
    files: Vec<CertFiles>,
}

fn fixture() -> Fixture {
    let dir = TempDir::new("fixture");
    let (a, b, w) = (cert(&["a.test"]), cert(&["b.test"]), cert(&["*.w.test"]));
    let files = vec![
        write(&dir, "a", &a),
        write(&dir, "b", &b),
        write(&dir, "w", &w),
    ];
    Fixture {
        _dir: dir,
        a,
        b,
        w,
        files,
    }
}

#[test]
fn sni_picks_exact_then_wildcard_then_default() {
    let f = fixture();
    let store = ReloadableStore::load(&store_cfg(f.files.clone(), &[], Some("b.test"))).unwrap();
    let server = serve(&store);
    let client = default_client();
    let leaf = |sni| handshake(&server, &client, sni).unwrap().leaf();
    assert_eq!(leaf(Some("a.test")), f.a.der);
    assert_eq!(leaf(Some("A.Test")), f.a.der);
    assert_eq!(leaf(Some("b.test")), f.b.der);
    assert_eq!(leaf(Some("x.w.test")), f.w.der);
    assert_eq!(leaf(Some("unknown.test")), f.b.der, "unknown SNI → default");
    assert_eq!(
        leaf(Some("x.y.w.test")),
        f.b.der,
        "a wildcard covers one label only"
    );
    assert_eq!(leaf(None), f.b.der, "missing SNI → default");
}

#[test]
fn default_may_be_a_wildcard_covered_name() {
    let f = fixture();
    let store =
        ReloadableStore::load(&store_cfg(f.files.clone(), &[], Some("www.w.test"))).unwrap();
    let got = handshake(&serve(&store), &default_client(), None)
        .unwrap()
        .leaf();
    assert_eq!(got, f.w.der);
}

#[test]
fn unknown_sni_without_default_is_refused_with_access_denied() {
    let f = fixture();
    let store = ReloadableStore::load(&store_cfg(f.files.clone(), &[], None)).unwrap();
    let server = serve(&store);
    for sni in [Some("unknown.test"), None] {
        let fail = handshake(&server, &default_client(), sni).err().unwrap();
        // rustls answers a resolver's None with access_denied, not
        // unrecognized_name (server/hs.rs); see UNRECOGNIZED_NAME_ALERT.
        assert_eq!(
            fail.client,
            Some(rustls::Error::AlertReceived(AlertDescription::AccessDenied)),
            "{sni:?}"
        );
        assert!(fail.server.is_some());
    }
}

#[test]
fn peeked_unknown_sni_can_be_refused_with_unrecognized_name() {
    let f = fixture();
    let store = ReloadableStore::load(&store_cfg(f.files.clone(), &[], None)).unwrap();
    let server = serve(&store);
    for (sni, known) in [("unknown.test", false), ("a.test", true)] {
        let mut client = client_conn(&default_client(), Some(sni));
        let hello = client_writes(&mut client);
        let mut acceptor = rustls::server::Acceptor::default();
        acceptor.read_tls(&mut &hello[..]).unwrap();
        let accepted = acceptor.accept().unwrap().unwrap();
        let name = accepted.client_hello().server_name().map(str::to_owned);
        assert_eq!(store.accepts(name.as_deref()), known);
        if known {
            let mut conn = accepted.into_connection(Arc::clone(&server)).unwrap();
            let mut out = Vec::new();
            conn.write_tls(&mut out).unwrap();
            client_reads(&mut client, &out).unwrap();
        } else {
            let err = client_reads(&mut client, &UNRECOGNIZED_NAME_ALERT).unwrap_err();
            assert_eq!(
                err,
                rustls::Error::AlertReceived(AlertDescription::UnrecognisedName)
            );
        }
    }
    assert!(!store.accepts(None));
}

#[test]
fn key_mismatch_names_the_key_file() {
    let dir = TempDir::new("mismatch");
    let a = write(&dir, "a", &cert(&["a.test"]));
    let b = write(&dir, "b", &cert(&["b.test"]));
    let files = CertFiles {
        cert: a.cert.clone(),
        key: b.key.clone(),
    };
    let err = CertStore::load(&store_cfg(vec![files], &[], None)).unwrap_err();
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.starts_with(&b.key.display().to_string()), "{msg}");
    assert!(msg.contains("does not match"), "{msg}");
    assert!(msg.contains(&a.cert.display().to_string()), "{msg}");
}

#[test]
fn missing_files_are_named() {
    let dir = TempDir::new("missing");
    let a = write(&dir, "a", &cert(&["a.test"]));
    for files in [
        CertFiles {
            cert: dir.path("nope.pem"),
            key: a.key.clone(),
        },
        CertFiles {
            cert: a.cert.clone(),
            key: dir.path("nope.key"),
        },
    ] {
        let missing = if files.cert.exists() {
            &files.key
        } else {
            &files.cert
        };
        let err = CertStore::load(&store_cfg(vec![files.clone()], &[], None)).unwrap_err();
        assert!(matches!(err, TlsError::Missing { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("{}: no such file", missing.display())
        );
    }
}

#[test]
fn files_without_a_certificate_or_key_are_named() {
    let dir = TempDir::new("empty");
    let a = write(&dir, "a", &cert(&["a.test"]));
    let junk = dir.path("junk.pem");
    std::fs::write(&junk, "hello\n").unwrap();

    let err = check(&store_cfg(
        vec![CertFiles {
            cert: junk.clone(),
            key: a.key.clone(),
        }],
        &[],
        None,
    ))
    .unwrap_err();
    assert!(matches!(err, TlsError::NoCertificate { .. }), "{err:?}");
    assert!(err.to_string().starts_with(&junk.display().to_string()));

    // A key file holding the certificate has no key in it.
    let err = check(&store_cfg(
        vec![CertFiles {
            cert: a.cert.clone(),
            key: a.cert.clone(),
        }],
        &[],
        None,
    ))
    .unwrap_err();
    assert!(matches!(err, TlsError::NoKey { .. }), "{err:?}");
    assert!(err.to_string().starts_with(&a.cert.display().to_string()));

    // Truncated PEM.
    let cut = dir.path("cut.pem");
    let pem = std::fs::read_to_string(&a.cert).unwrap();
    std::fs::write(&cut, &pem[..pem.len() / 2]).unwrap();
    let err = check(&store_cfg(
        vec![CertFiles {
            cert: cut.clone(),
            key: a.key.clone(),
        }],
        &[],
        None,
    ))
    .unwrap_err();
    assert!(
        err.to_string().starts_with(&cut.display().to_string()),
        "{err}"
    );
}

#[test]
fn cert_and_key_in_one_file() {
    let dir = TempDir::new("combined");
    let a = cert(&["a.test"]);
    let both = dir.path("both.pem");
    std::fs::write(&both, format!("{}{}", a.cert_pem, a.key_pem)).unwrap();
    let infos = check(&store_cfg(
        vec![CertFiles {
            cert: both.clone(),
            key: both,
        }],
        &[],
        None,
    ))
    .unwrap();
    assert_eq!(infos[0].names, ["a.test"]);
}

#[test]
fn sec1_and_pkcs1_keys_load() {
    let dir = TempDir::new("keyformats");
    let ec = cert(&["ec.test"]);
    let mut files = write(&dir, "ec", &ec);
    std::fs::write(
        &files.key,
        pem("EC PRIVATE KEY", &pkcs8_inner(&ec.key_pkcs8)),
    )
    .unwrap();
    let mut cfg = store_cfg(vec![files.clone()], &[], None);
    // rcgen makes RSA keys only with aws-lc-rs.
    if rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).is_ok() {
        let rsa = cert_with(
            rcgen::CertificateParams::new(vec!["rsa.test".to_string()]).unwrap(),
            &rcgen::PKCS_RSA_SHA256,
        );
        files = write(&dir, "rsa", &rsa);
        std::fs::write(
            &files.key,
            pem("RSA PRIVATE KEY", &pkcs8_inner(&rsa.key_pkcs8)),
        )
        .unwrap();
        cfg.certs.push(files);
        let store = ReloadableStore::load(&cfg).unwrap();
        let got = handshake(&serve(&store), &default_client(), Some("rsa.test")).unwrap();
        assert_eq!(got.leaf(), rsa.der);
    }
    let store = ReloadableStore::load(&cfg).unwrap();
    let got = handshake(&serve(&store), &default_client(), Some("ec.test")).unwrap();
    assert_eq!(got.leaf(), ec.der);
}

#[test]
fn expired_certificate_loads_with_a_note() {
    let dir = TempDir::new("expired");
    let mut params = rcgen::CertificateParams::new(vec!["old.test".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2000, 1, 1);
    params.not_after = rcgen::date_time_ymd(2001, 1, 1);
    let old = cert_with(params, &rcgen::PKCS_ECDSA_P256_SHA256);
    let files = write(&dir, "old", &old);
    let (store, notes) =
        CertStore::load_quiet(&store_cfg(vec![files.clone()], &[], None), None).unwrap();
    assert_eq!(
        notes,
        [Note::Expired {
            path: files.cert,
            not_after_unix: 978_307_200
        }]
    );
    assert_eq!(store.certs()[0].not_after_unix, 978_307_200);
}

#[test]
fn common_name_serves_only_without_san() {
    let dir = TempDir::new("cn");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "CN.Test");
    let c = cert_with(params, &rcgen::PKCS_ECDSA_P256_SHA256);
    let infos = check(&store_cfg(vec![write(&dir, "cn", &c)], &[], None)).unwrap();
    assert_eq!(infos[0].names, ["cn.test"]);

    // With a SAN, the CN is not a name.
    let mut params = rcgen::CertificateParams::new(vec!["san.test".to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "cn.test");
    let c = cert_with(params, &rcgen::PKCS_ECDSA_P256_SHA256);
    let infos = check(&store_cfg(vec![write(&dir, "san", &c)], &[], None)).unwrap();
    assert_eq!(infos[0].names, ["san.test"]);
}

#[test]
fn default_must_be_served_by_the_store() {
    let f = fixture();
    let err = check(&store_cfg(f.files.clone(), &[], Some("w.test"))).unwrap_err();
    assert!(matches!(err, TlsError::DefaultNotCovered { .. }), "{err:?}");
    assert!(err.to_string().contains("\"w.test\""), "{err}");
}

#[test]
fn earlier_certificate_keeps_a_shared_name() {
    let dir = TempDir::new("shadow");
    let first = cert(&["a.test", "x.test"]);
    let second = cert(&["a.test"]);
    let files = vec![write(&dir, "first", &first), write(&dir, "second", &second)];
    let (store, notes) = CertStore::load_quiet(&store_cfg(files.clone(), &[], None), None).unwrap();
    assert_eq!(
        notes,
        [Note::Shadowed {
            path: files[1].cert.clone(),
            name: "a.test".into()
        }]
    );
    assert_eq!(store.resolve(Some("a.test")).unwrap().cert[0], first.der);
}

#[test]
fn self_signed_serves_its_names_and_survives_reload() {
    let f = fixture();
    let cfg = store_cfg(
        vec![f.files[0].clone()],
        &["localhost", "*.local.test"],
        None,
    );
    let (_, notes) = CertStore::load_quiet(&cfg, None).unwrap();
    let Some(Note::Generated {
        names,
        fingerprint_sha256,
    }) = notes.first()
    else {
        panic!("{notes:?}")
    };
    assert_eq!(names, &["localhost", "*.local.test"]);
    assert_eq!(fingerprint_sha256.len(), 32 * 3 - 1);

    let store = ReloadableStore::load(&cfg).unwrap();
    let server = serve(&store);
    let first = handshake(&server, &default_client(), Some("localhost"))
        .unwrap()
        .leaf();
    assert_eq!(
        handshake(&server, &default_client(), Some("x.local.test"))
            .unwrap()
            .leaf(),
        first
    );
    assert_eq!(
        handshake(&server, &default_client(), Some("a.test"))
            .unwrap()
            .leaf(),
        f.a.der
    );
    let ss = store.certs().pop().unwrap();
    assert_eq!(ss.source, "self_signed");
    assert_eq!(ss.fingerprint_sha256, sha256_fingerprint(&first));

    let report = store.reload(&cfg).unwrap();
    assert!(!report.changed);
    assert_eq!(
        handshake(&server, &default_client(), Some("localhost"))
            .unwrap()
            .leaf(),
        first,
        "same names → same certificate"
    );

    store
        .reload(&store_cfg(vec![], &["localhost"], None))
        .unwrap();
    assert_ne!(
        handshake(&server, &default_client(), Some("localhost"))
            .unwrap()
            .leaf(),
        first,
        "other names → a new certificate"
    );
}

#[test]
fn fingerprint_is_openssl_style_sha256() {
    let der = rustls_pki_types::CertificateDer::from(b"abc".to_vec());
    assert_eq!(
        sha256_fingerprint(&der),
        "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
    );
}

#[test]
fn reload_swaps_for_new_handshakes_only() {
    let dir = TempDir::new("reload");
    let old = cert(&["a.test"]);
    let files = write(&dir, "a", &old);
    let cfg = store_cfg(vec![files.clone()], &[], None);
    let store = ReloadableStore::load(&cfg).unwrap();
    let server = serve(&store);
    let mut before = handshake(&server, &default_client(), Some("a.test")).unwrap();
    assert_eq!(before.leaf(), old.der);
    before.exchange(b"before");

    let new = cert(&["a.test", "c.test"]);
    write(&dir, "a", &new);
    let report = store.reload(&cfg).unwrap();
    assert!(report.changed);
    assert_eq!(report.certs[0].names, ["a.test", "c.test"]);

    before.exchange(b"after the reload, the old connection still works");
    assert_eq!(
        handshake(&server, &default_client(), Some("a.test"))
            .unwrap()
            .leaf(),
        new.der
    );
    assert_eq!(
        handshake(&server, &default_client(), Some("c.test"))
            .unwrap()
            .leaf(),
        new.der
    );
}

#[test]
fn broken_reload_changes_nothing() {
    let dir = TempDir::new("broken");
    let good = cert(&["a.test"]);
    let files = write(&dir, "a", &good);
    let cfg = store_cfg(vec![files.clone()], &[], None);
    let store = ReloadableStore::load(&cfg).unwrap();
    let server = serve(&store);
    let infos = store.certs();

    // A new cert with the old key: the pair no longer matches.
    std::fs::write(&files.cert, cert(&["a.test"]).cert_pem).unwrap();
    let err = store.reload(&cfg).unwrap_err();
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
    std::fs::write(&files.key, "garbage").unwrap();
    let err = store.reload(&cfg).unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&files.key.display().to_string()),
        "{err}"
    );

    assert_eq!(store.certs(), infos);
    assert_eq!(
        handshake(&server, &default_client(), Some("a.test"))
            .unwrap()
            .leaf(),
        good.der
    );
}

#[test]
fn files_changed_sees_rewrites_and_settles_after_reload() {
    let dir = TempDir::new("changed");
    let files = write(&dir, "a", &cert(&["a.test"]));
    let cfg = store_cfg(vec![files.clone()], &[], None);
    let store = ReloadableStore::load(&cfg).unwrap();
    assert!(!store.files_changed());

    std::fs::write(&files.key, "broken").unwrap();
    assert!(store.files_changed());
    store.reload(&cfg).unwrap_err();
    assert!(!store.files_changed(), "a failed reload is reported once");

    let fixed = cert(&["a.test"]);
    write(&dir, "a", &fixed);
    assert!(store.files_changed(), "fixing the file fires again");
    store.reload(&cfg).unwrap();
    assert!(!store.files_changed());
}

#[test]
fn files_changed_sees_a_kubernetes_data_symlink_swap() {
    // secret volume layout: cert.pem -> ..data/cert.pem, ..data -> ..v1
    let dir = TempDir::new("k8s");
    let v1 = cert(&["a.test"]);
    let v2 = cert(&["a.test"]);
    for (version, c) in [("..v1", &v1), ("..v2", &v2)] {
        std::fs::create_dir(dir.path(version)).unwrap();
        std::fs::write(dir.path(&format!("{version}/cert.pem")), &c.cert_pem).unwrap();
        std::fs::write(dir.path(&format!("{version}/key.pem")), &c.key_pem).unwrap();
    }
    // Same sizes and (nearly) same mtimes: only the target tells them apart.
    symlink("..v1", dir.path("..data"));
    symlink("..data/cert.pem", dir.path("cert.pem"));
    symlink("..data/key.pem", dir.path("key.pem"));
    let cfg = store_cfg(
        vec![CertFiles {
            cert: dir.path("cert.pem"),
            key: dir.path("key.pem"),
        }],
        &[],
        None,
    );
    let store = ReloadableStore::load(&cfg).unwrap();
    let server = serve(&store);
    assert!(!store.files_changed());

    // The kubelet's atomic swap: a new link renamed over ..data.
    symlink("..v2", dir.path("..data_tmp"));
    std::fs::rename(dir.path("..data_tmp"), dir.path("..data")).unwrap();
    assert!(store.files_changed());
    assert!(store.reload(&cfg).unwrap().changed);
    assert!(!store.files_changed());
    assert_eq!(
        handshake(&server, &default_client(), Some("a.test"))
            .unwrap()
            .leaf(),
        v2.der
    );
}

#[test]
fn alpn_negotiates_h2() {
    let f = fixture();
    let store = ReloadableStore::load(&store_cfg(f.files.clone(), &[], None)).unwrap();
    let server = serve(&store);
    let pair = handshake(
        &server,
        &client(rustls::ALL_VERSIONS, &["h2", "http/1.1"]),
        Some("a.test"),
    )
    .unwrap();
    assert_eq!(pair.server.alpn_protocol(), Some(&b"h2"[..]));
    let pair = handshake(
        &server,
        &client(rustls::ALL_VERSIONS, &["http/1.1"]),
        Some("a.test"),
    )
    .unwrap();
    assert_eq!(pair.client.alpn_protocol(), Some(&b"http/1.1"[..]));
    let pair = handshake(&server, &default_client(), Some("a.test")).unwrap();
    assert_eq!(pair.client.alpn_protocol(), None);
    assert_eq!(
        pair.client.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
}

#[test]
fn min_version_1_3_refuses_a_1_2_only_client() {
    let f = fixture();
    let store = ReloadableStore::load(&store_cfg(f.files.clone(), &[], None)).unwrap();
    let tls12 = client(&[&rustls::version::TLS12], &[]);

    let v12 = server_config(&store, &listener(&[], TlsVersion::V1_2)).unwrap();
    let pair = handshake(&v12, &tls12, Some("a.test")).unwrap();
    assert_eq!(
        pair.server.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );

    let v13 = server_config(&store, &listener(&[], TlsVersion::V1_3)).unwrap();
    let fail = handshake(&v13, &tls12, Some("a.test")).err().unwrap();
    assert_eq!(
        fail.client,
        Some(rustls::Error::AlertReceived(
            AlertDescription::ProtocolVersion
        ))
    );
}

#[test]
fn server_config_settings() {
    let f = fixture();
    let store = ReloadableStore::load(&store_cfg(f.files.clone(), &[], None)).unwrap();
    let cfg = serve(&store);
    assert!(cfg.ticketer.enabled());
    assert_eq!(cfg.max_early_data_size, 0);
    assert_eq!(cfg.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
    assert!(cfg.session_storage.can_cache());
    assert_eq!(
        provider_name(),
        if cfg!(feature = "aws-lc-rs") {
            "aws-lc-rs"
        } else {
            "ring"
        }
    );
}

#[test]
fn sessions_resume_on_tls12_and_tls13() {
    let f = fixture();
    let store = ReloadableStore::load(&store_cfg(f.files.clone(), &[], None)).unwrap();
    let server = serve(&store);
    for versions in [
        &[&rustls::version::TLS12][..],
        &[&rustls::version::TLS13][..],
    ] {
        let client = client(versions, &[]);
        let mut first = handshake(&server, &client, Some("a.test")).unwrap();
        // TLS 1.3 tickets arrive after the handshake.
        first.exchange(b"x");
        let second = handshake(&server, &client, Some("a.test")).unwrap();
        assert_eq!(
            second.client.handshake_kind(),
            Some(rustls::HandshakeKind::Resumed),
            "{versions:?}"
        );
    }
}

#[test]
fn fingerprint_matches_openssl_when_installed() {
    let dir = TempDir::new("openssl");
    let c = cert(&["a.test"]);
    let files = write(&dir, "a", &c);
    let Ok(out) = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&files.cert)
        .output()
    else {
        return; // no openssl here; the "abc" vector above still holds
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let theirs = text.trim().rsplit('=').next().unwrap_or_default();
    let ours = &check(&store_cfg(vec![files], &[], None)).unwrap()[0].fingerprint_sha256;
    assert_eq!(ours, theirs);
}

#[test]
fn unreadable_file_and_bad_self_signed_name_are_named() {
    let dir = TempDir::new("unreadable");
    let a = write(&dir, "a", &cert(&["a.test"]));
    // A directory cannot be read as a file, even by root.
    let files = CertFiles {
        cert: dir.0.clone(),
        key: a.key,
    };
    let err = check(&store_cfg(vec![files], &[], None)).unwrap_err();
    assert!(matches!(err, TlsError::Unreadable { .. }), "{err:?}");
    assert!(err
        .to_string()
        .starts_with(&format!("{}: cannot read", dir.0.display())));

    let err = check(&store_cfg(vec![], &["ok.test", "a*.test"], None)).unwrap_err();
    assert!(matches!(err, TlsError::BadSelfSignedName { .. }), "{err:?}");
    assert!(err.to_string().contains("\"a*.test\""), "{err}");
}
