//! TLS termination in the HTTP mode: certificates by SNI from PEM files
//! (exact and wildcard names), a self-signed store for newcomers, ALPN
//! choosing HTTP/2 or HTTP/1.1, `unrecognized_name` for names no certificate
//! serves, and certificates rotated on disk (rewrite, broken file,
//! Kubernetes `..data` swap) reaching new handshakes while open connections
//! carry on. Clients: curl, `openssl s_client` and rustls.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;

use crate::harness::*;
use crate::http::curl;
use crate::http_backend::HttpBackend;
use crate::tls::{client_config, tls_connect, Leaf, Pki, Tls, Verify};

/// One HTTPS listener `web` on store `main` (given as YAML lines), pool `a`.
fn config(store: &str, backend: &HttpBackend) -> String {
    format!(
        "workers: 2\nadmin:\n  listen: 127.0.0.1:0\ntls:\n  - name: main\n{store}listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    mode: http\n    tls: {{ store: main }}\n    pool: a\npools:\n  - name: a\n    backends: [{}]\n",
        backend.addr
    )
}

/// Sends a keep-alive GET for `host` on an open TLS connection; returns the
/// status and the body.
fn get_on(tls: &mut Tls, host: &str) -> (u16, String) {
    tls.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(tls.read(&mut byte).unwrap(), 1, "EOF in the response head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0u8; len];
    tls.read_exact(&mut body).unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The certificate a new handshake for `name` is given.
fn served_cert(addr: std::net::SocketAddr, name: &str) -> Vec<u8> {
    let config = client_config(Verify::Any, &[b"http/1.1"], true);
    let tls = tls_connect(addr, &config, name).expect("handshake");
    tls.conn.peer_certificates().unwrap()[0].to_vec()
}

#[test]
fn a_self_signed_store_serves_http2_and_http11_by_alpn() {
    let a = HttpBackend::start("a");
    let lb = Spliced::start(&config("    self_signed: [localhost]\n", &a));
    let port = lb.addr("web").port();
    let resolve = format!("localhost:{port}:127.0.0.1");
    let url = format!("https://localhost:{port}/hello");
    let h2 = curl(&["-k", "--resolve", &resolve, "--http2", &url]);
    assert!(h2.head.starts_with("http/2 200"), "{}", h2.head);
    assert!(h2.body.contains("x-forwarded-proto: https"), "{}", h2.body);
    let h1 = curl(&["-k", "--resolve", &resolve, "--http1.1", &url]);
    assert!(h1.head.starts_with("http/1.1 200"), "{}", h1.head);
    assert!(
        lb.log_text().contains("sha256="),
        "the generated certificate's fingerprint is logged:\n{}",
        lb.log_text()
    );
    let Some(openssl) = peer_tool("openssl") else {
        return;
    };
    let out = run_command(
        {
            let mut c = Command::new(openssl);
            c.args(["s_client", "-connect", &lb.addr("web").to_string()])
                .args(["-servername", "localhost", "-alpn", "h2,http/1.1"]);
            c
        },
        "",
        WAIT,
    );
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(text.contains("ALPN protocol: h2"), "{text}");
    assert!(text.contains("TLSv1.3"), "{text}");
}

#[test]
fn certificates_are_chosen_by_sni_and_unknown_names_get_unrecognized_name() {
    let pki = Pki::new();
    let dir = temp_dir();
    let leaves = [
        pki.leaf("a.test", &["a.test"]),
        pki.leaf("b.test", &["b.test"]),
        pki.leaf("wild.test", &["*.w.test"]),
    ];
    let mut store = String::from("    certs:\n");
    for leaf in &leaves {
        let (cert, key) = leaf.write_pem(&dir);
        store.push_str(&format!(
            "      - {{ cert: {}, key: {} }}\n",
            cert.display(),
            key.display()
        ));
    }
    let a = HttpBackend::start("a");
    let lb = Spliced::start(&config(&store, &a));
    let web = lb.addr("web");
    let verified = client_config(Verify::Ca(&pki), &[b"h2", b"http/1.1"], true);
    for (name, leaf) in [("a.test", 0), ("b.test", 1), ("x.w.test", 2)] {
        let tls = tls_connect(web, &verified, name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            tls.conn.peer_certificates().unwrap()[0],
            leaves[leaf].der,
            "{name} gets its own certificate"
        );
        assert_eq!(tls.conn.alpn_protocol(), Some(&b"h2"[..]));
    }
    let unknown = client_config(Verify::Any, &[b"http/1.1"], true);
    let Err(err) = tls_connect(web, &unknown, "unknown.test") else {
        panic!("no certificate for unknown.test and no default: the handshake must fail");
    };
    assert!(
        err.to_string().to_lowercase().contains("unrecognisedname")
            || err.to_string().to_lowercase().contains("unrecognized"),
        "{err}"
    );
    wait_until("the refusal is counted", || {
        lb.metric(
            "spliced_tls_handshakes_total",
            &[("listener", "web"), ("result", "unknown_sni")],
        ) >= 1.0
    });
}

/// Writes `leaf` as `dir/site.crt` and `dir/site.key` by rename, as a
/// careful operator (or certbot's deploy hook) does.
fn install(leaf: &Leaf, dir: &Path) {
    for (name, text) in [("site.crt", &leaf.cert_pem), ("site.key", &leaf.key_pem)] {
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, dir.join(name)).unwrap();
    }
}

#[test]
fn rotated_certificates_reach_new_handshakes_while_open_connections_carry_on() {
    let pki = Pki::new();
    let dir = temp_dir();
    install(&pki.leaf("one", &["site.test"]), &dir);
    let store = format!(
        "    certs: [{{ cert: {0}/site.crt, key: {0}/site.key }}]\n",
        dir.display()
    );
    let a = HttpBackend::start("a");
    let lb = Spliced::start(&config(&store, &a));
    let web = lb.addr("web");
    let client = client_config(Verify::Ca(&pki), &[b"http/1.1"], true);
    let mut open = tls_connect(web, &client, "site.test").unwrap();
    assert_eq!(get_on(&mut open, "site.test").0, 200);

    // A rewrite by rename: new handshakes get the new certificate.
    let two = pki.leaf("two", &["site.test"]);
    install(&two, &dir);
    wait_until("new handshakes get the rotated certificate", || {
        served_cert(web, "site.test") == two.der.to_vec()
    });
    assert_eq!(
        get_on(&mut open, "site.test").0,
        200,
        "the connection opened before the rotation still serves requests"
    );

    // A broken file changes nothing and says why, naming the file.
    std::fs::write(dir.join("site.crt"), "not a certificate").unwrap();
    wait_until("the broken file is reported", || {
        lb.log_text().contains("cannot be loaded")
    });
    assert!(lb.log_text().contains("site.crt"), "{}", lb.log_text());
    assert_eq!(served_cert(web, "site.test"), two.der.to_vec());

    // SIGHUP re-reads them too, once fixed.
    let three = pki.leaf("three", &["site.test"]);
    install(&three, &dir);
    lb.signal("HUP");
    wait_until("the fixed files are served", || {
        served_cert(web, "site.test") == three.der.to_vec()
    });
    assert_eq!(get_on(&mut open, "site.test").0, 200);
}

#[test]
fn a_kubernetes_style_data_symlink_swap_is_picked_up() {
    let pki = Pki::new();
    let dir = temp_dir();
    let v1 = dir.join("..2026_12_04_v1");
    let v2 = dir.join("..2026_12_04_v2");
    std::fs::create_dir_all(&v1).unwrap();
    std::fs::create_dir_all(&v2).unwrap();
    install(&pki.leaf("one", &["site.test"]), &v1);
    let two = pki.leaf("two", &["site.test"]);
    install(&two, &v2);
    std::os::unix::fs::symlink("..2026_12_04_v1", dir.join("..data")).unwrap();
    for f in ["site.crt", "site.key"] {
        std::os::unix::fs::symlink(format!("..data/{f}"), dir.join(f)).unwrap();
    }
    let store = format!(
        "    certs: [{{ cert: {0}/site.crt, key: {0}/site.key }}]\n",
        dir.display()
    );
    let a = HttpBackend::start("a");
    let lb = Spliced::start(&config(&store, &a));
    let web = lb.addr("web");
    let first = served_cert(web, "site.test");
    // The swap as the kubelet does it: a new symlink renamed over ..data.
    std::os::unix::fs::symlink("..2026_12_04_v2", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    wait_until("the swapped certificate is served", || {
        served_cert(web, "site.test") == two.der.to_vec()
    });
    assert_ne!(first, two.der.to_vec());
}

#[test]
fn backends_are_reached_over_verified_tls_with_http2_or_http11() {
    let pki = Pki::new();
    let leaf = pki.leaf("backend.test", &["backend.test"]);
    let dir = temp_dir();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let secure = HttpBackend::start_tls("secure", leaf.server_config(&[b"h2", b"http/1.1"]));
    let yaml = format!(
        "workers: 1\nlisteners:\n  - name: web\n    listen: 127.0.0.1:0\n    mode: http\n    routes:\n      - {{ match: {{ path_prefix: /h2/ }}, pool: h2 }}\n      - {{ match: {{ path_prefix: /h1/ }}, pool: h1 }}\n      - {{ match: {{ path_prefix: /wrong/ }}, pool: wrong }}\npools:\n  - name: h2\n    protocol: h2\n    backend_tls: {{ sni: backend.test, ca_file: {ca} }}\n    backends: [{b}]\n  - name: h1\n    backend_tls: {{ sni: backend.test, ca_file: {ca} }}\n    backends: [{b}]\n  - name: wrong\n    backend_tls: {{ sni: other.test, ca_file: {ca} }}\n    retries: 0\n    backends: [{b}]\n",
        ca = ca.display(),
        b = secure.addr
    )
    .replace("    retries: 0\n", "");
    let lb = Spliced::start(&yaml);
    let web = lb.addr("web");
    let h2 = curl(&[&format!("http://{web}/h2/x")]);
    assert_eq!(h2.status, 200, "{}", h2.body);
    assert!(
        h2.body.contains("backend: secure") && h2.body.contains("HTTP/2.0"),
        "{}",
        h2.body
    );
    let h1 = curl(&[&format!("http://{web}/h1/x")]);
    assert_eq!(h1.status, 200, "{}", h1.body);
    assert!(h1.body.contains("HTTP/1.1"), "{}", h1.body);
    let wrong = curl(&[&format!("http://{web}/wrong/x")]);
    assert_eq!(
        wrong.status, 502,
        "a backend whose certificate does not carry the expected name is not used: {}",
        wrong.body
    );
    assert_eq!(secure.requests(), 2);
}
