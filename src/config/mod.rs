//! Configuration: reading a YAML file into a checked, typed [`Config`].
//!
//! Three stages (STYLE.md rule 6), each in its own place:
//! - `raw`: the YAML document into serde structs that mirror it, reporting
//!   syntax errors, unknown keys and wrongly-shaped sections;
//! - `validate` (one file per section): raw into [`model`] types, one line
//!   per key naming its default and its kind; the kinds themselves (duration,
//!   address, CIDR, rate, size, SNI pattern, count, words, the values of
//!   `mode: http`...) live in `value`, one file each, and the ranges of
//!   counts in `bounds`. Certificate and CA files are only named here, never
//!   opened: the TLS module loads them;
//! - `check`: the rules across values (unique names, references, a primary
//!   per pool...), which `validate` applies as it reads and which the admin
//!   API's mutations (that edit a `Config` directly) go through too, so both
//!   get the same words;
//! - `error`: how problems are located and printed, one per line with the YAML
//!   path, the bad value, what is wrong and how to fix it;
//! - `change`: what differs between a running config and a new one
//!   ([`ChangeSet`]), so a reload touches only that.
//!
//! Every problem in a file is reported at once; a config with any problem
//! yields no [`Config`] at all, so nothing half-valid can reach the data plane.
//!
//! This module must never touch sockets, spawn threads or hold global state:
//! the control thread calls it (at start-up, on reload, from `spliced check`)
//! and decides what to do with the result. The only outside lookups are
//! reading the file in [`load_file`] and resolving backend hostnames, which
//! may block on DNS.

mod bounds;
mod change;
mod check;
mod error;
pub mod model;
mod raw;
mod validate;
mod value;

pub use change::{BackendDiff, Change, ChangeSet, ListenerDiff, PoolDiff, Setting, StoreDiff};
pub use error::{ConfigError, ConfigErrors};
pub use model::*;

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;

use error::Collector;
use validate::Resolve;

/// Reads and validates the config file at `path`.
///
/// Backend hostnames are resolved with the system resolver (see [`parse_str`]).
///
/// # Errors
///
/// Every problem in the file, in file order. A file that cannot be read gives
/// one error whose path is the file name.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    let yaml = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(
            path.display().to_string(),
            None,
            format!("cannot be read ({e})"),
            "check the path given with -c, that it is a UTF-8 text file, and that spliced may read it",
        )
    })?;
    parse_str(&yaml)
}

/// Validates a config held in memory (an API upload, a test).
///
/// Backend hostnames are resolved now, with the system resolver, and the first
/// address is used; this may block on DNS, so call it off the data path.
///
/// # Errors
///
/// Every problem in the config, each with its YAML path, in file order.
pub fn parse_str(yaml: &str) -> Result<Config, ConfigErrors> {
    parse_with(yaml, &resolve_with_system)
}

fn parse_with(yaml: &str, resolve: Resolve) -> Result<Config, ConfigErrors> {
    let mut errors = Collector::default();
    let config =
        raw::parse(yaml, &mut errors).and_then(|raw| validate::validate(raw, resolve, &mut errors));
    match config {
        Some(config) if errors.is_empty() => config.check().map(|()| config),
        _ if errors.is_empty() => {
            // Every path that yields no config records why; if one ever does
            // not, still refuse the config and say so rather than return an
            // empty error list.
            Err(ConfigError::new(
                "(top level)",
                None,
                "was rejected without a reason",
                "this is a bug in spliced's config checks; please report it with the file",
            )
            .into())
        }
        _ => Err(errors.finish()),
    }
}

fn resolve_with_system(host: &str, port: u16) -> io::Result<SocketAddr> {
    (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no addresses found"))
}

/// A small valid config the unit tests of `check` and `change` edit: two
/// listeners (one with an SNI route) over three pools, one of them hashing
/// with a backup.
#[cfg(test)]
const TEST_CONFIG: &str = "\
workers: 2
admin: { listen: 127.0.0.1:9090 }
listeners:
  - { name: web, listen: 127.0.0.1:8080, pool: web }
  - name: tls
    listen: 127.0.0.1:8443
    pool: api
    sni: [{ match: api.example.com, pool: api }]
pools:
  - name: web
    backends: [127.0.0.1:9001, 127.0.0.1:9002, { address: 127.0.0.1:9003, weight: 2 }]
  - name: api
    algorithm: ip_hash
    backends:
      - 127.0.0.1:9101
      - { address: 127.0.0.1:9102, backup: true }
  - { name: spare, backends: [127.0.0.1:9201] }
";

/// Entry point for the config fuzz target (`tests/fuzz`); not a public API.
#[doc(hidden)]
pub mod fuzzing {
    use std::io;
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    /// Parses and validates arbitrary bytes, then formats the result. Must
    /// never panic, whatever the input.
    pub fn parse(bytes: &[u8]) {
        let Ok(yaml) = std::str::from_utf8(bytes) else {
            return;
        };
        // Fuzzing must not send made-up hostnames to DNS: every name resolves
        // to a TEST-NET-1 address (RFC 5737), except one that always fails so
        // the error path is exercised too.
        let resolve = |host: &str, port: u16| -> io::Result<SocketAddr> {
            if host.starts_with("fail") {
                Err(io::Error::new(io::ErrorKind::NotFound, "fuzzing resolver"))
            } else {
                Ok(SocketAddr::new(
                    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
                    port,
                ))
            }
        };
        match super::parse_with(yaml, &resolve) {
            Ok(config) => {
                let _ = format!("{config:?}");
            }
            Err(errors) => {
                assert!(!errors.is_empty(), "a rejected config must say why");
                let _ = errors.to_string();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::Duration;

    /// Resolves the two made-up names the tests use (any other fails), without DNS.
    fn fake_resolve(host: &str, port: u16) -> io::Result<SocketAddr> {
        match host {
            "backend-a.internal" => Ok(SocketAddr::from(([10, 0, 0, 1], port))),
            "backend-b.internal" => Ok(SocketAddr::from(([10, 0, 0, 2], port))),
            _ => Err(io::Error::new(io::ErrorKind::NotFound, "name not known")),
        }
    }

    fn check(yaml: &str) -> Result<Config, ConfigErrors> {
        parse_with(yaml, &fake_resolve)
    }

    fn errors(yaml: &str) -> String {
        match check(yaml) {
            Ok(config) => panic!("expected errors, got {config:#?}"),
            Err(errors) => errors.to_string(),
        }
    }

    const MINIMAL: &str = "\
listeners:
  - { name: web, listen: 127.0.0.1:8080, pool: web }
pools:
  - { name: web, backends: [127.0.0.1:9001] }
";

    fn repo_file(relative: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
    }

    fn yaml_files(dir: &str) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(repo_file(dir))
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no .yaml files in {dir}");
        files
    }

    #[test]
    fn minimal_config_gets_every_default() {
        let config = check(MINIMAL).unwrap();
        assert_eq!(
            config.workers,
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        );
        assert_eq!(config.admin, None);
        assert_eq!(config.shutdown_timeout, DEFAULT_SHUTDOWN_TIMEOUT);
        let listener = &config.listeners[0];
        assert_eq!(listener.name, "web");
        assert_eq!(listener.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(listener.pool, Some(PoolId(0)));
        assert_eq!(listener.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(listener.idle_timeout, DEFAULT_IDLE_TIMEOUT);
        assert_eq!(listener.retries, DEFAULT_RETRIES);
        assert_eq!(listener.max_connections, DEFAULT_MAX_CONNECTIONS);
        assert_eq!(listener.backlog, DEFAULT_BACKLOG);
        assert_eq!(listener.sni_routes, []);
        assert!(!listener.require_sni);
        assert_eq!(listener.tls_inspect_timeout, DEFAULT_TLS_INSPECT_TIMEOUT);
        assert_eq!(listener.proxy_protocol, ProxyProtocolSend::Off);
        assert_eq!(listener.accept_proxy_protocol, ProxyProtocolAccept::Off);
        assert_eq!(listener.trusted_proxies, []);
        assert_eq!(listener.proxy_header_timeout, DEFAULT_PROXY_HEADER_TIMEOUT);
        assert_eq!((&listener.allow, &listener.deny), (&vec![], &vec![]));
        assert_eq!(listener.limits, None);
        assert_eq!(config.limits_table_size, DEFAULT_LIMITS_TABLE_SIZE);
        let pool = config.pool(listener.pool.unwrap());
        assert_eq!(
            *pool,
            PoolConfig {
                name: "web".into(),
                algorithm: Algorithm::RoundRobin,
                backends: vec![BackendConfig {
                    name: "127.0.0.1:9001".into(),
                    addr: "127.0.0.1:9001".parse().unwrap(),
                    weight: DEFAULT_WEIGHT,
                    backup: false,
                    max_connections: 0,
                    drain: false,
                    disabled: false,
                }],
                health_check: None,
                eject_after: DEFAULT_EJECT_AFTER,
                ejection_time: DEFAULT_EJECTION_TIME,
                max_ejection_time: DEFAULT_MAX_EJECTION_TIME,
                max_ejection_percent: DEFAULT_MAX_EJECTION_PERCENT,
                on_all_down: OnAllDown::FailOpen,
                slow_start: Duration::ZERO,
                hash_balance_factor: None,
                hash_table_size: DEFAULT_HASH_TABLE_SIZE,
                protocol: UpstreamProtocol::Http1,
                backend_tls: None,
            }
        );
        assert_eq!(
            pool.backends[0],
            BackendConfig::new("127.0.0.1:9001", "127.0.0.1:9001".parse().unwrap())
        );
    }

    #[test]
    fn every_key_is_read() {
        let config = check(
            "\
workers: 3
shutdown_timeout: 1.5s
admin: { listen: '[::1]:9090', token_file: /etc/spliced/admin.token }
listeners:
  - name: api
    listen: '[::]:0'
    pool: b
    connect_timeout: 250ms
    idle_timeout: 1h
    retries: 0
    max_connections: 1
    backlog: 65535
  - { name: other.v2, listen: '[::]:0', pool: a }
pools:
  - { name: a, backends: [127.0.0.1:1] }
  - name: b
    algorithm: round_robin
    backends:
      - backend-a.internal:80
      - address: '[::1]:65535'
",
        )
        .unwrap();
        assert_eq!(config.workers, 3);
        assert_eq!(config.shutdown_timeout, Duration::from_millis(1500));
        let admin = config.admin.as_ref().unwrap();
        assert_eq!(admin.listen, "[::1]:9090".parse().unwrap());
        assert_eq!(
            admin.token_file.as_deref(),
            Some(Path::new("/etc/spliced/admin.token"))
        );
        let api = &config.listeners[0];
        assert_eq!(api.pool, Some(PoolId(1)));
        assert_eq!(config.pool_id("b"), Some(PoolId(1)));
        assert_eq!(api.connect_timeout, Duration::from_millis(250));
        assert_eq!(api.idle_timeout, Duration::from_secs(3600));
        assert_eq!(
            (api.retries, api.max_connections, api.backlog),
            (0, 1, 65535)
        );
        assert_eq!(config.listeners[1].pool, Some(PoolId(0)));
        let b = &config.pools[1].backends;
        assert_eq!(b[0].name, "backend-a.internal:80");
        assert_eq!(b[0].addr, "10.0.0.1:80".parse().unwrap());
        assert_eq!(b[1].addr, "[::1]:65535".parse().unwrap());
    }

    #[test]
    fn workers_auto_and_quoted_numbers() {
        let with = |workers: &str| check(&format!("workers: {workers}\n{MINIMAL}"));
        assert_eq!(
            with("auto").unwrap().workers,
            check(MINIMAL).unwrap().workers
        );
        assert_eq!(with("'8'").unwrap().workers, 8);
        assert_eq!(with("1024").unwrap().workers, 1024);
        for bad in ["0", "1025", "-1", "1.5", "many", "[1]", "true"] {
            let shown = with(bad).unwrap_err().to_string();
            assert!(shown.starts_with("workers: "), "{bad}: {shown}");
            assert!(
                shown.contains("use auto (one per CPU) or a whole number from 1 to 1024"),
                "{shown}"
            );
        }
    }

    #[test]
    fn bare_numbers_are_never_durations() {
        for bare in ["0", "2", "1.5", "'2'"] {
            let shown = errors(&format!("shutdown_timeout: {bare}\n{MINIMAL}"));
            assert!(shown.contains("shutdown_timeout: "), "{shown}");
            assert!(
                shown.contains("is a number without a unit: add a unit, e.g. 30s"),
                "{shown}"
            );
        }
        // Zero is a fine shutdown timeout (close at once) but not a connect timeout.
        assert!(check(&format!("shutdown_timeout: 0s\n{MINIMAL}")).is_ok());
        let shown = errors(&MINIMAL.replace("pool: web }", "pool: web, connect_timeout: 0ms }"));
        assert!(
            shown.contains(r#"listeners[0].connect_timeout: "0ms" must be longer than zero"#),
            "{shown}"
        );
    }

    #[test]
    fn resolution_failures_name_the_backend() {
        let shown =
            errors(&MINIMAL.replace("[127.0.0.1:9001]", "[127.0.0.1:9001, nowhere.invalid:9002]"));
        assert_eq!(
            shown,
            r#"pools[0].backends[1]: "nowhere.invalid:9002" could not be resolved (name not known): check the hostname and DNS, or use an IP address"#
        );
    }

    #[test]
    fn duplicate_backends_count_resolved_addresses() {
        let shown = errors(&MINIMAL.replace(
            "[127.0.0.1:9001]",
            "[10.0.0.1:80, backend-a.internal:80, { address: 10.0.0.1:80 }]",
        ));
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(
            lines,
            [
                r#"pools[0].backends[1]: "backend-a.internal:80" is the same backend as pools[0].backends[0]: list each backend once per pool"#,
                r#"pools[0].backends[2].address: "10.0.0.1:80" is the same backend as pools[0].backends[0]: list each backend once per pool"#,
            ]
        );
    }

    #[test]
    fn listeners_on_port_zero_may_share_an_address() {
        let yaml = "\
listeners:
  - { name: a, listen: 127.0.0.1:0, pool: p }
  - { name: b, listen: 127.0.0.1:0, pool: p }
pools: [{ name: p, backends: [127.0.0.1:1] }]
";
        assert!(check(yaml).is_ok());
        let shown = errors(&yaml.replace(":0,", ":7000,"));
        assert_eq!(
            shown,
            r#"listeners[1].listen: "127.0.0.1:7000" is already used by listeners[0] (a): give each listener its own address (port 0 lets the kernel pick one)"#
        );
    }

    #[test]
    fn admin_needs_its_own_port() {
        let shown = errors(&format!("admin: {{ listen: 127.0.0.1:8080 }}\n{MINIMAL}"));
        assert!(
            shown.starts_with(
                r#"admin.listen: "127.0.0.1:8080" is already used by listeners[0] (web)"#
            ),
            "{shown}"
        );
        let shown = errors(&format!("admin: {{ token_file: /x }}\n{MINIMAL}"));
        assert_eq!(
            shown,
            "admin.listen: is missing: add listen: 127.0.0.1:9090"
        );
        // An empty `admin:` section is the same as none.
        assert_eq!(check(&format!("admin:\n{MINIMAL}")).unwrap().admin, None);
    }

    #[test]
    fn an_admin_api_beyond_loopback_needs_a_token_or_a_written_waiver() {
        let shown = errors(&format!("admin: {{ listen: 0.0.0.0:9090 }}\n{MINIMAL}"));
        assert!(
            shown.starts_with(r#"admin.listen: "0.0.0.0:9090" is reachable from other machines"#),
            "{shown}"
        );
        assert!(shown.contains("set admin.token_file"), "{shown}");
        for ok in [
            "admin: { listen: 0.0.0.0:9090, token_file: /etc/spliced/admin.token }",
            "admin: { listen: '[::]:9090', allow_unauthenticated: true }",
            "admin: { listen: '[::1]:9090' }",
            "admin: { listen: 127.0.0.2:9090, allowed_hosts: [spliced.internal, LB.example.com.] }",
        ] {
            let config = check(&format!("{ok}\n{MINIMAL}")).unwrap_or_else(|e| panic!("{ok}: {e}"));
            if ok.contains("allowed_hosts") {
                let hosts = &config.admin.unwrap().allowed_hosts;
                assert_eq!(hosts, &["spliced.internal", "lb.example.com"]);
            }
        }
        let shown = errors(&format!(
            "admin: {{ listen: 127.0.0.1:9090, allowed_hosts: [\"a:80\", ok] }}\n{MINIMAL}"
        ));
        assert!(
            shown.starts_with(r#"admin.allowed_hosts[0]: "a:80" is not a host name"#),
            "{shown}"
        );
    }

    #[test]
    fn an_unreadable_file_names_itself() {
        let path = repo_file("tests/fixtures/does-not-exist.yaml");
        let errors = load_file(&path).unwrap_err();
        assert_eq!(errors.len(), 1);
        let shown = errors.to_string();
        assert!(
            shown.starts_with(&format!("{}: cannot be read (", path.display())),
            "{shown}"
        );
        assert!(shown.contains("os error 2"), "{shown}");
    }

    #[test]
    fn system_resolver_resolves_localhost() {
        let config = parse_str(&MINIMAL.replace("[127.0.0.1:9001]", "[localhost:9001]"))
            .expect("localhost resolves");
        let backend = &config.pools[0].backends[0];
        assert_eq!(backend.name, "localhost:9001");
        assert!(backend.addr.ip().is_loopback() && backend.addr.port() == 9001);
    }

    /// A pool named `web` with `body` as its further keys, behind a listener.
    fn pool(body: &str) -> String {
        format!(
            "listeners:\n  - {{ name: web, listen: 127.0.0.1:8080, pool: web }}\npools:\n  - name: web\n{body}"
        )
    }

    #[test]
    fn every_selection_and_health_key_is_read() {
        let config = check(&pool(
            r#"    algorithm: ip_hash
    backends:
      - 127.0.0.1:9001
      - { address: 127.0.0.1:9002, weight: 3 }
      - { address: 127.0.0.1:9003, backup: true }
      - { address: 127.0.0.1:9004, max_connections: 100 }
      - { address: 127.0.0.1:9005, drain: true, weight: 0 }
      - { address: 127.0.0.1:9006, disabled: "true" }
    health_check:
      kind: tcp
      interval: 5s
      timeout: 5s
      rise: 1
      fall: 100
      send: "PING\r\n\x00"
      expect: "+PONG"
    eject_after: 0
    ejection_time: 1s
    max_ejection_time: 1s
    max_ejection_percent: 100
    on_all_down: refuse
    slow_start: 30s
    hash_balance_factor: 1.25
    hash_table_size: 1021
"#,
        ))
        .unwrap();
        let pool = &config.pools[0];
        assert_eq!(pool.algorithm, Algorithm::IpHash);
        let b = &pool.backends;
        assert_eq!(b.len(), 6);
        assert_eq!(
            b[0],
            BackendConfig::new("127.0.0.1:9001", "127.0.0.1:9001".parse().unwrap())
        );
        assert_eq!((b[1].weight, b[1].backup), (3, false));
        assert!(b[2].backup && b[2].weight == DEFAULT_WEIGHT);
        assert_eq!(b[3].max_connections, 100);
        assert!(b[4].drain && b[4].weight == 0 && !b[4].disabled);
        assert!(b[5].disabled && !b[5].drain);
        assert_eq!(
            pool.health_check,
            Some(HealthCheck {
                kind: HealthKind::Tcp {
                    send: Some(b"PING\r\n\0".to_vec()),
                    expect: Some(b"+PONG".to_vec()),
                },
                interval: Duration::from_secs(5),
                timeout: Duration::from_secs(5),
                rise: 1,
                fall: 100,
            })
        );
        assert_eq!(pool.eject_after, 0);
        assert_eq!(pool.ejection_time, Duration::from_secs(1));
        assert_eq!(pool.max_ejection_time, Duration::from_secs(1));
        assert_eq!(pool.max_ejection_percent, 100);
        assert_eq!(pool.on_all_down, OnAllDown::Refuse);
        assert_eq!(pool.slow_start, Duration::from_secs(30));
        assert_eq!(pool.hash_balance_factor, Some(1.25));
        assert_eq!(pool.hash_table_size, 1021);
    }

    #[test]
    fn every_algorithm_is_accepted() {
        for algorithm in Algorithm::ALL {
            let config = check(&pool(&format!(
                "    algorithm: {algorithm}\n    backends: [127.0.0.1:9001]\n"
            )))
            .unwrap();
            assert_eq!(config.pools[0].algorithm, algorithm);
        }
    }

    #[test]
    fn foreign_algorithm_names_are_translated() {
        for (written, meant) in [
            ("leastconn", "least_connections"),
            ("source", "ip_hash"),
            ("maglev", "ip_hash"),
            ("roundrobin", "round_robin"),
            ("least_connection", "least_connections"),
        ] {
            let shown = errors(&pool(&format!(
                "    algorithm: {written}\n    backends: [127.0.0.1:9001]\n"
            )));
            assert_eq!(
                shown,
                format!(
                    "pools[0].algorithm: \"{written}\" is not a known algorithm: did you mean {meant}? use one of round_robin, weighted_round_robin, least_connections, ip_hash, random, p2c"
                )
            );
        }
    }

    #[test]
    fn http_health_check_defaults_and_status_forms() {
        let http = |extra: &str| {
            let config = check(&pool(&format!(
                "    backends: [127.0.0.1:9001]\n    health_check:\n      kind: http\n{extra}"
            )))
            .unwrap();
            config.pools[0].health_check.clone().unwrap()
        };
        let check = http("");
        assert_eq!(check.interval, DEFAULT_HEALTH_INTERVAL);
        assert_eq!(check.timeout, DEFAULT_HEALTH_TIMEOUT);
        assert_eq!(
            (check.rise, check.fall),
            (DEFAULT_HEALTH_RISE, DEFAULT_HEALTH_FALL)
        );
        assert_eq!(
            check.kind,
            HealthKind::Http {
                path: "/".into(),
                host: None,
                expect_status: vec![200..=399],
            }
        );
        assert_eq!(check.kind.as_str(), "http");
        let statuses = |form: &str| match http(&format!("      expect_status: {form}\n")).kind {
            HealthKind::Http { expect_status, .. } => expect_status,
            other => panic!("{other:?}"),
        };
        assert_eq!(statuses("200"), [200..=200]);
        assert_eq!(statuses("'204'"), [204..=204]);
        assert_eq!(statuses("200-399"), [200..=399]);
        assert_eq!(statuses("\"200 - 299\""), [200..=299]);
        assert_eq!(
            statuses("[200, 204, \"300-302\"]"),
            [200..=200, 204..=204, 300..=302]
        );
        assert_eq!(statuses("[100, 599]"), [100..=100, 599..=599]);
        let with_host = http("      path: /healthz?full=1\n      host: app.internal:8080\n");
        assert_eq!(
            with_host.kind,
            HealthKind::Http {
                path: "/healthz?full=1".into(),
                host: Some("app.internal:8080".into()),
                expect_status: vec![200..=399],
            }
        );
        // A short interval brings the default timeout down with it.
        assert_eq!(
            http("      interval: 500ms\n").timeout,
            Duration::from_millis(500)
        );
    }

    #[test]
    fn tcp_health_check_may_only_connect() {
        let config = check(&pool(
            "    backends: [127.0.0.1:9001]\n    health_check: { kind: tcp, send: '' }\n",
        ))
        .unwrap();
        assert_eq!(
            config.pools[0].health_check.as_ref().unwrap().kind,
            HealthKind::Tcp {
                send: None,
                expect: None
            }
        );
    }

    #[test]
    fn bad_health_checks_name_the_key_and_the_kind() {
        let lines = |body: &str| -> Vec<String> {
            errors(&pool(&format!(
                "    backends: [127.0.0.1:9001]\n    health_check:\n{body}"
            )))
            .lines()
            .map(str::to_owned)
            .collect()
        };
        assert_eq!(
            lines("      kind: tcp\n      path: /healthz\n      expect_status: 200\n"),
            [
                "pools[0].health_check.path: is only for kind: http, and this check is kind: tcp: remove path, or change kind to http",
                "pools[0].health_check.expect_status: is only for kind: http, and this check is kind: tcp: remove expect_status, or change kind to http",
            ]
        );
        assert_eq!(
            lines("      kind: http\n      send: x\n      expect: y\n"),
            [
                "pools[0].health_check.send: is only for kind: tcp, and this check is kind: http: remove send, or change kind to tcp",
                "pools[0].health_check.expect: is only for kind: tcp, and this check is kind: http: remove expect, or change kind to tcp",
            ]
        );
        assert_eq!(
            lines("      interval: 1s\n"),
            ["pools[0].health_check.kind: is missing: add kind: tcp (connect, optionally send and expect bytes) or kind: http (GET a path)"]
        );
        assert_eq!(
            lines("      kind: htp\n      path: healthz\n"),
            [
                r#"pools[0].health_check.kind: "htp" is not a known health check kind: did you mean http? use tcp or http"#,
                r#"pools[0].health_check.path: "healthz" does not start with '/': write the path from its leading slash, e.g. /healthz (the host goes in host:)"#,
            ]
        );
        let shown = lines(
            "      kind: http\n      interval: 0s\n      timeout: 2\n      rise: 0\n      fall: 101\n      path: /a b\n      host: ''\n      expect_status: [2xx, 600, \"399-200\", true]\n",
        );
        assert_eq!(
            shown,
            [
                r#"pools[0].health_check.interval: "0s" must be longer than zero: use e.g. 2s"#,
                r#"pools[0].health_check.timeout: "2" is a number without a unit: add a unit, e.g. 1s (units: ms, s, m, h)"#,
                r#"pools[0].health_check.rise: "0" is out of range: use a whole number from 1 to 100"#,
                r#"pools[0].health_check.fall: "101" is out of range: use a whole number from 1 to 100"#,
                r#"pools[0].health_check.path: "/a b" contains a space, which cannot go in a request line: percent-encode it, e.g. %20 for a space"#,
                r#"pools[0].health_check.host: "" is empty: write the Host header value, e.g. app.internal or app.internal:8080, or remove host to send the backend's address"#,
                r#"pools[0].health_check.expect_status[0]: "2xx" is not a status code: write the range as "200-299""#,
                r#"pools[0].health_check.expect_status[1]: "600" is out of range (status codes are 100 to 599): use a status code from 100 to 599, a range such as 200-399, or a list of them, e.g. [200, 204, "300-302"]"#,
                r#"pools[0].health_check.expect_status[2]: "399-200" is a backwards range: write the lower code first: "200-399""#,
                r#"pools[0].health_check.expect_status[3]: "true" is true/false, not a status code: use a status code from 100 to 599, a range such as 200-399, or a list of them, e.g. [200, 204, "300-302"]"#,
            ]
        );
        assert_eq!(
            lines("      kind: tcp\n      interval: 1s\n      timeout: 1.5s\n      expect: ''\n      send: 7\n"),
            [
                r#"pools[0].health_check.timeout: "1.5s" is longer than interval (1s): a probe must end before the next one starts: use at most 1s, or raise interval"#,
                r#"pools[0].health_check.send: "7" is a number, not text: write the bytes to send, e.g. "PING\r\n"; quote it if it looks like a number or true/false"#,
                r#"pools[0].health_check.expect: "" is empty, so every reply would match: give the bytes the reply must contain, or remove expect to only check the connect"#,
            ]
        );
        assert_eq!(
            lines("      kind: http\n      expect_status: []\n      colour: red\n"),
            [
                "pools[0].health_check.colour: is not a known key: allowed keys here: kind, interval, timeout, rise, fall, send, expect, path, host, expect_status",
                r#"pools[0].health_check.expect_status: is an empty list: use a status code from 100 to 599, a range such as 200-399, or a list of them, e.g. [200, 204, "300-302"]"#,
            ]
        );
        let empty = errors(&pool("    backends: [127.0.0.1:9001]\n    health_check:\n"));
        assert!(
            empty.starts_with("pools[0].health_check: is empty, not a mapping"),
            "{empty}"
        );
    }

    #[test]
    fn bad_backend_settings_are_all_reported() {
        let shown = errors(&pool(
            "    backends:\n      - { address: 127.0.0.1:9001, weight: 1001, backup: yes, max_connections: -1, drain: 1, disabled: off }\n      - { weight: 2 }\n",
        ));
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(
            lines,
            [
                r#"pools[0].backends[0].weight: "1001" is out of range: use a whole number from 0 to 1000"#,
                r#"pools[0].backends[0].backup: "yes" is a string, not true or false: write true or false (the default is false)"#,
                r#"pools[0].backends[0].max_connections: "-1" is out of range: use a whole number, 0 or more"#,
                r#"pools[0].backends[0].drain: "1" is a number, not true or false: write true or false (the default is false)"#,
                r#"pools[0].backends[0].disabled: "off" is a string, not true or false: write true or false (the default is false)"#,
                "pools[0].backends[1].address: is missing: add address: host:port, e.g. address: 127.0.0.1:9001",
            ]
        );
    }

    #[test]
    fn a_pool_needs_a_primary_backend() {
        let only_backups = errors(&pool(
            "    backends:\n      - { address: 127.0.0.1:9001, backup: true }\n      - { address: 127.0.0.1:9002, backup: true }\n",
        ));
        assert_eq!(
            only_backups,
            "pools[0].backends: has only backup backends: make at least one a primary (leave out backup: true): backups only take traffic when no primary is up"
        );
        // A primary that is drained, disabled or at weight 0 still counts: that
        // is operator state, which can change at run time.
        assert!(check(&pool(
            "    backends:\n      - { address: 127.0.0.1:9001, backup: true }\n      - { address: 127.0.0.1:9002, disabled: true, drain: true, weight: 0 }\n",
        ))
        .is_ok());
        // An unreadable entry might have been the primary: no guessing.
        let shown = errors(&pool(
            "    backends:\n      - { address: 127.0.0.1:9001, backup: true }\n      - 9002\n      - { address: 127.0.0.1:9003, backup: maybe }\n",
        ));
        assert!(!shown.contains("only backup"), "{shown}");
        // A bad address does not hide that the entry is a backup.
        let shown = errors(&pool(
            "    backends:\n      - { address: 127.0.0.1, backup: true }\n",
        ));
        assert!(shown.contains("has only backup backends"), "{shown}");
    }

    #[test]
    fn ejection_and_slow_start_limits() {
        let with = |body: &str| check(&pool(&format!("    backends: [127.0.0.1:9001]\n{body}")));
        // A long ejection_time raises the default cap with it.
        let pool0 = |body: &str| with(body).unwrap().pools[0].clone();
        assert_eq!(
            pool0("    ejection_time: 10m\n").max_ejection_time,
            Duration::from_secs(600)
        );
        assert_eq!(pool0("    slow_start: 0s\n").slow_start, Duration::ZERO);
        assert_eq!(
            pool0("    max_ejection_percent: 0\n").max_ejection_percent,
            0
        );
        let shown = with(
            "    eject_after: 1001\n    ejection_time: 0s\n    max_ejection_percent: 101\n    on_all_down: fail-open\n    slow_start: 30\n",
        )
        .unwrap_err()
        .to_string();
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(
            lines,
            [
                r#"pools[0].eject_after: "1001" is out of range: use a whole number from 0 to 1000"#,
                r#"pools[0].ejection_time: "0s" must be longer than zero: use e.g. 10s"#,
                r#"pools[0].max_ejection_percent: "101" is out of range: use a whole number from 0 to 100"#,
                r#"pools[0].on_all_down: "fail-open" is not a known on_all_down setting: did you mean fail_open? use fail_open or refuse"#,
                r#"pools[0].slow_start: "30" is a number without a unit: add a unit, e.g. 30s (units: ms, s, m, h)"#,
            ]
        );
        let shown = with("    ejection_time: 1m\n    max_ejection_time: 30s\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            shown,
            r#"pools[0].max_ejection_time: "30s" is shorter than ejection_time (1m): it caps how long repeated ejections grow: use at least 1m, or lower ejection_time"#
        );
    }

    #[test]
    fn hash_settings_need_ip_hash() {
        let shown = errors(&pool(
            "    algorithm: p2c\n    backends: [127.0.0.1:9001]\n    hash_balance_factor: 1.25\n    hash_table_size: 65537\n",
        ));
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(
            lines,
            [
                r#"pools[0].hash_balance_factor: "1.25" only applies to algorithm ip_hash, and this pool uses p2c: set algorithm: ip_hash to keep each client on one backend, or remove hash_balance_factor"#,
                r#"pools[0].hash_table_size: "65537" only applies to algorithm ip_hash, and this pool uses p2c: set algorithm: ip_hash to keep each client on one backend, or remove hash_table_size"#,
            ]
        );
        let shown = errors(&pool(
            "    backends: [127.0.0.1:9001]\n    hash_balance_factor: 2\n",
        ));
        assert!(
            shown.contains("and this pool uses round_robin, the default: "),
            "{shown}"
        );
        // With the algorithm itself wrong, only that is reported.
        let shown = errors(&pool(
            "    algorithm: 3\n    backends: [127.0.0.1:9001]\n    hash_balance_factor: 2\n",
        ));
        assert_eq!(shown.lines().count(), 1, "{shown}");
    }

    #[test]
    fn hash_balance_factor_range() {
        let factor = |value: &str| {
            check(&pool(&format!(
                "    algorithm: ip_hash\n    backends: [127.0.0.1:9001]\n    hash_balance_factor: {value}\n"
            )))
            .map(|config| config.pools[0].hash_balance_factor)
            .map_err(|e| e.to_string())
        };
        assert_eq!(factor("1.0001"), Ok(Some(1.0001)));
        assert_eq!(factor("100"), Ok(Some(100.0)));
        assert_eq!(factor("'1.5'"), Ok(Some(1.5)));
        for bad in ["1", "1.0", "0.5", "-2", "100.01", ".nan", ".inf", "'NaN'"] {
            let shown = factor(bad).unwrap_err();
            assert!(
                shown.contains("is out of range: use a number above 1 and at most 100, e.g. 1.25"),
                "{bad}: {shown}"
            );
        }
        assert!(factor("lots")
            .unwrap_err()
            .contains(r#""lots" is not a number"#));
        assert!(factor("[2]")
            .unwrap_err()
            .contains("is a list, not a number"));
    }

    #[test]
    fn hash_table_size_is_a_large_enough_prime() {
        let size = |value: &str, backends: usize| {
            let list: Vec<String> = (0..backends)
                .map(|i| format!("127.0.{}.{}:9000", i / 250, i % 250 + 1))
                .collect();
            check(&pool(&format!(
                "    algorithm: ip_hash\n    backends: [{}]\n{}",
                list.join(", "),
                if value.is_empty() {
                    String::new()
                } else {
                    format!("    hash_table_size: {value}\n")
                }
            )))
            .map(|config| config.pools[0].hash_table_size)
            .map_err(|e| e.to_string())
        };
        assert_eq!(size("", 1), Ok(DEFAULT_HASH_TABLE_SIZE));
        assert_eq!(size("1021", 102), Ok(1021));
        assert_eq!(size("1000003", 1), Ok(1_000_003));
        assert_eq!(
            size("65536", 3),
            Err(r#"pools[0].hash_table_size: "65536" is not a prime: use a prime from 1021 to 1000003 and at least 10 × the backends, e.g. 65537"#.to_owned())
        );
        assert_eq!(
            size("1021", 103),
            Err(r#"pools[0].hash_table_size: "1021" is less than 10 × the pool's 103 backends: use a prime from 1021 to 1000003 and at least 10 × the backends, e.g. 1031"#.to_owned())
        );
        assert!(size("1019", 1).unwrap_err().contains(r#""1019" is out of range: use a prime from 1021 to 1000003 and at least 10 × the backends, e.g. 1021"#));
        assert!(size("1000033", 1).unwrap_err().contains(r#""1000033" is out of range: use a prime from 1021 to 1000003 and at least 10 × the backends, e.g. 1000003"#));
        assert!(size("65537.5", 1).unwrap_err().contains(
            r#""65537.5" is not a whole number: use a prime from 1021 to 1000003, e.g. 65537"#
        ));
        // Unwritten, the default is checked against the backend count too.
        assert_eq!(
            size("", 6554),
            Err(r#"pools[0].hash_table_size: "65537" (the default) is less than 10 × the pool's 6554 backends: use a prime from 1021 to 1000003 and at least 10 × the backends, e.g. 65543"#.to_owned())
        );
    }

    #[test]
    fn every_shipped_config_is_valid() {
        // WHY the exception: conf/compose.yaml is the compose demo, not a
        // spliced config (tests/e2e/deploy.rs checks it and the config it
        // mounts).
        for path in yaml_files("conf")
            .into_iter()
            .filter(|p| !p.ends_with("compose.yaml"))
        {
            if let Err(errors) = load_file(&path) {
                panic!("{} is invalid:\n{errors}", path.display());
            }
        }
    }

    /// The keys conf/example.yaml shows commented out (they cannot all be on
    /// at once) must be valid too, once switched on with what they need.
    #[test]
    fn example_config_commented_keys_are_valid() {
        let example = std::fs::read_to_string(repo_file("conf/example.yaml")).unwrap();
        let uncomment = |text: &str, keys: &[&str]| -> String {
            text.lines()
                .map(|line| {
                    let body = line.trim_start();
                    let indent = &line[..line.len() - body.len()];
                    // A commented block keeps its own indentation after "# ".
                    let key_of = |rest: &str| {
                        let rest = rest.trim_start();
                        rest.strip_prefix("- ").unwrap_or(rest).to_owned()
                    };
                    match body.strip_prefix("# ") {
                        Some(rest)
                            if keys
                                .iter()
                                .any(|k| key_of(rest).starts_with(&format!("{k}:"))) =>
                        {
                            format!("{indent}{rest}\n")
                        }
                        _ => format!("{line}\n"),
                    }
                })
                .collect()
        };
        let variants = [
            uncomment(&example, &["token_file", "send", "expect"]),
            uncomment(
                &example.replace("kind: tcp", "kind: http"),
                &["path", "host", "expect_status"],
            ),
            uncomment(
                &example.replace("algorithm: round_robin", "algorithm: ip_hash"),
                &["hash_balance_factor", "hash_table_size"],
            ),
            uncomment(
                &example.replace("require_sni: false", "require_sni: true"),
                &["sni", "match", "pool", "alpn"],
            ),
            uncomment(
                &example
                    .replace("accept_proxy_protocol: off", "accept_proxy_protocol: any")
                    .replace("    proxy_protocol: off", "    proxy_protocol: v2"),
                &["trusted_proxies", "allow", "deny"],
            ),
            uncomment(
                &example.replace("action: reject", "action: tarpit"),
                &[
                    "limits",
                    "per_ip_rate",
                    "per_ip_burst",
                    "per_ip_connections",
                    "per_ip_bandwidth",
                    "action",
                    "tarpit_delay",
                    "ipv6_prefix",
                ],
            ),
        ];
        for (i, variant) in variants.iter().enumerate() {
            assert_ne!(*variant, example, "variant {i} changed nothing");
            if let Err(errors) = check(variant) {
                panic!("variant {i} of conf/example.yaml is invalid:\n{errors}");
            }
        }
        let http = check(&variants[1]).unwrap();
        assert!(matches!(
            &http.pools[0].health_check.as_ref().unwrap().kind,
            HealthKind::Http { path, .. } if path == "/"
        ));
        let sni = &check(&variants[3]).unwrap().listeners[0];
        assert!(sni.require_sni);
        assert_eq!(
            sni.sni_routes,
            [SniRoute {
                pattern: SniPattern::Exact("api.example.com".into()),
                alpn: vec!["h2".into(), "http/1.1".into()],
                pool: PoolId(0),
            }]
        );
        let proxy = &check(&variants[4]).unwrap().listeners[0];
        assert_eq!(proxy.proxy_protocol, ProxyProtocolSend::V2);
        assert_eq!(proxy.accept_proxy_protocol, ProxyProtocolAccept::Any);
        let shown = |cidrs: &[Cidr]| cidrs.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(
            shown(&proxy.trusted_proxies),
            ["10.0.0.0/8", "::1/128", "127.0.0.1/32"]
        );
        assert_eq!(shown(&proxy.allow), ["10.0.0.0/8", "::1/128"]);
        assert_eq!(shown(&proxy.deny), ["192.0.2.0/24"]);
        let limits = check(&variants[5]).unwrap().listeners[0].limits.clone();
        assert_eq!(
            limits,
            Some(Limits {
                per_ip_rate: Some(50.0),
                per_ip_burst: Some(100),
                per_ip_connections: Some(20),
                per_ip_bandwidth: Some(10_000_000),
                action: LimitAction::Tarpit,
                tarpit_delay: DEFAULT_TARPIT_DELAY,
                ipv6_prefix: DEFAULT_IPV6_PREFIX,
            })
        );
        let tcp = check(&variants[0]).unwrap();
        assert_eq!(
            tcp.pools[0].health_check.as_ref().unwrap().kind,
            HealthKind::Tcp {
                send: Some(b"PING\r\n".to_vec()),
                expect: Some(b"+PONG".to_vec())
            }
        );
    }

    #[test]
    fn demo_config_matches_spliced_demo() {
        let config = load_file(&repo_file("conf/demo.yaml")).unwrap();
        assert_eq!(
            config.admin.as_ref().unwrap().listen,
            "127.0.0.1:9090".parse().unwrap()
        );
        assert_eq!(config.listeners.len(), 2);
        assert_eq!(config.listeners[0].name, "demo");
        let https = &config.listeners[1];
        assert_eq!(https.listen, "127.0.0.1:8443".parse().unwrap());
        let tls = https.http.as_ref().unwrap().tls.as_ref().unwrap();
        assert_eq!(config.tls[tls.store].self_signed, ["localhost"]);
        assert_eq!(https.pool, config.listeners[0].pool);
        assert_eq!(
            config.listeners[0].listen,
            "127.0.0.1:8080".parse().unwrap()
        );
        let pool = config.pool(config.listeners[0].pool.unwrap());
        assert_eq!(pool.name, "demo");
        let ports: Vec<u16> = pool.backends.iter().map(|b| b.addr.port()).collect();
        assert_eq!(ports, [9001, 9002, 9003]);
    }

    #[test]
    fn sni_example_routes_by_name_and_alpn() {
        let config = load_file(&repo_file("conf/sni.yaml")).unwrap();
        let listener = &config.listeners[0];
        assert_eq!(listener.listen, "127.0.0.1:8443".parse().unwrap());
        assert_eq!(listener.proxy_protocol, ProxyProtocolSend::V2);
        let routes: Vec<(String, Vec<String>, &str)> = listener
            .sni_routes
            .iter()
            .map(|r| {
                (
                    r.pattern.to_string(),
                    r.alpn.clone(),
                    config.pool(r.pool).name.as_str(),
                )
            })
            .collect();
        assert_eq!(
            routes,
            [
                ("api.example.com".into(), vec![], "api"),
                ("grpc.example.net".into(), vec!["h2".into()], "grpc"),
                ("*.example.com".into(), vec![], "wildcard"),
            ]
        );
        assert_eq!(
            listener.sni_routes[2].pattern,
            SniPattern::Suffix(".example.com".into())
        );
        assert_eq!(config.pool(listener.pool.unwrap()).name, "default-tls");
        for pool in &config.pools {
            assert!(pool.backends.iter().all(|b| b.addr.ip().is_loopback()));
        }
    }

    #[test]
    fn limits_example_sets_lists_and_limits() {
        let config = load_file(&repo_file("conf/limits.yaml")).unwrap();
        let public = &config.listeners[0];
        assert!(!public.allow.is_empty() && !public.deny.is_empty());
        let limits = public.limits.as_ref().unwrap();
        assert_eq!(limits.per_ip_rate, Some(50.0));
        assert_eq!(limits.per_ip_bandwidth, Some(10_000_000));
        let behind = &config.listeners[1];
        assert_eq!(behind.accept_proxy_protocol, ProxyProtocolAccept::V2);
        assert!(behind.trusted_proxies[0].contains("127.0.0.1".parse().unwrap()));
        let limits = behind.limits.as_ref().unwrap();
        assert_eq!(limits.per_ip_rate, Some(10.0));
        assert_eq!(
            (limits.action, limits.tarpit_delay),
            (LimitAction::Tarpit, Duration::from_secs(5))
        );
    }

    /// A listener `web` on 127.0.0.1:8080 with `body` as its further keys,
    /// and pools `web`, `api` and `h2`.
    fn listener(body: &str) -> String {
        format!(
            "listeners:\n  - name: web\n    listen: 127.0.0.1:8080\n    pool: web\n{body}pools:\n  - {{ name: web, backends: [127.0.0.1:9001] }}\n  - {{ name: api, backends: [127.0.0.1:9002] }}\n  - {{ name: h2, backends: [127.0.0.1:9003] }}\n"
        )
    }

    #[test]
    fn every_passthrough_and_limit_key_is_read() {
        let config = check(&format!(
            "limits_table_size: '1024'\n{}",
            listener(
                r#"    sni:
      - { match: API.Example.COM., pool: api }
      - { match: "*.Example.com", pool: web }
      - { match: app.example.com, pool: h2, alpn: [h2, http/1.1] }
    require_sni: true
    tls_inspect_timeout: 1500ms
    proxy_protocol: v1
    accept_proxy_protocol: v2
    trusted_proxies: [10.1.2.0/24, "fd00::/8", 127.0.0.1, "::1"]
    proxy_header_timeout: 250ms
    allow: [0.0.0.0/0, "::/0"]
    deny: [192.0.2.0/24]
    limits:
      per_ip_rate: 30/m
      per_ip_burst: '5'
      per_ip_connections: 4294967295
      per_ip_bandwidth: 1.5KiB/s
      action: reject
      tarpit_delay: 1m
      ipv6_prefix: 48
"#
            )
        ))
        .unwrap();
        assert_eq!(config.limits_table_size, 1024);
        let l = &config.listeners[0];
        assert_eq!(
            l.sni_routes,
            [
                SniRoute {
                    pattern: SniPattern::Exact("api.example.com".into()),
                    alpn: vec![],
                    pool: PoolId(1),
                },
                SniRoute {
                    pattern: SniPattern::Suffix(".example.com".into()),
                    alpn: vec![],
                    pool: PoolId(0),
                },
                SniRoute {
                    pattern: SniPattern::Exact("app.example.com".into()),
                    alpn: vec!["h2".into(), "http/1.1".into()],
                    pool: PoolId(2),
                },
            ]
        );
        assert!(l.require_sni);
        assert_eq!(l.tls_inspect_timeout, Duration::from_millis(1500));
        assert_eq!(l.proxy_protocol, ProxyProtocolSend::V1);
        assert_eq!(l.accept_proxy_protocol, ProxyProtocolAccept::V2);
        let shown = |cidrs: &[Cidr]| cidrs.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(
            shown(&l.trusted_proxies),
            ["10.1.2.0/24", "fd00::/8", "127.0.0.1/32", "::1/128"]
        );
        assert_eq!(l.proxy_header_timeout, Duration::from_millis(250));
        assert_eq!(shown(&l.allow), ["0.0.0.0/0", "::/0"]);
        assert_eq!(shown(&l.deny), ["192.0.2.0/24"]);
        assert_eq!(
            l.limits,
            Some(Limits {
                per_ip_rate: Some(0.5),
                per_ip_burst: Some(5),
                per_ip_connections: Some(u32::MAX),
                per_ip_bandwidth: Some(1536),
                action: LimitAction::Reject,
                tarpit_delay: Duration::from_secs(60),
                ipv6_prefix: 48,
            })
        );
    }

    #[test]
    fn limits_get_their_defaults() {
        let config = check(&listener("    limits: { per_ip_connections: 3 }\n")).unwrap();
        assert_eq!(
            config.listeners[0].limits,
            Some(Limits {
                per_ip_rate: None,
                per_ip_burst: None,
                per_ip_connections: Some(3),
                per_ip_bandwidth: None,
                action: DEFAULT_LIMIT_ACTION,
                tarpit_delay: DEFAULT_TARPIT_DELAY,
                ipv6_prefix: DEFAULT_IPV6_PREFIX,
            })
        );
        // An empty section is no limits, as an empty `admin:` is no admin.
        assert_eq!(
            check(&listener("    limits:\n")).unwrap().listeners[0].limits,
            None
        );
    }

    #[test]
    fn proxy_protocol_off_may_be_a_boolean() {
        let send = |value: &str| {
            check(&listener(&format!("    proxy_protocol: {value}\n")))
                .map(|c| c.listeners[0].proxy_protocol)
                .map_err(|e| e.to_string())
        };
        assert_eq!(send("off"), Ok(ProxyProtocolSend::Off));
        assert_eq!(send("false"), Ok(ProxyProtocolSend::Off));
        assert_eq!(send("'off'"), Ok(ProxyProtocolSend::Off));
        assert_eq!(send("v2"), Ok(ProxyProtocolSend::V2));
        assert_eq!(
            send("true").unwrap_err(),
            r#"listeners[0].proxy_protocol: "true" does not say which PROXY protocol version: use v1 or v2"#
        );
        assert_eq!(
            send("2").unwrap_err(),
            r#"listeners[0].proxy_protocol: "2" is a number, not a PROXY protocol setting: did you mean v2? use one of off, v1, v2"#
        );
        assert_eq!(
            send("V2").unwrap_err(),
            r#"listeners[0].proxy_protocol: "V2" is not a known PROXY protocol setting: did you mean v2? use one of off, v1, v2"#
        );
        assert!(send("any").unwrap_err().contains("use one of off, v1, v2"));
        let accept = |value: &str| {
            check(&listener(&format!(
                "    accept_proxy_protocol: {value}\n    trusted_proxies: [127.0.0.1]\n"
            )))
            .map(|c| c.listeners[0].accept_proxy_protocol)
            .map_err(|e| e.to_string())
        };
        assert_eq!(accept("any"), Ok(ProxyProtocolAccept::Any));
        assert_eq!(accept("v1"), Ok(ProxyProtocolAccept::V1));
        // Off with trusted proxies is its own error, whichever way off is written.
        for off in ["off", "false"] {
            assert!(accept(off)
                .unwrap_err()
                .contains("trusted_proxies: is set, but accept_proxy_protocol is off"));
        }
        assert!(accept("true")
            .unwrap_err()
            .ends_with("use one of v1, v2, any"));
        // With the setting itself wrong, trusted_proxies is not blamed too.
        assert_eq!(accept("v3").unwrap_err().lines().count(), 1);
    }

    #[test]
    fn trusted_proxies_go_with_accept_proxy_protocol() {
        assert!(check(&listener("    trusted_proxies: []\n")).is_ok());
        let shown = errors(&listener("    accept_proxy_protocol: any\n"));
        assert_eq!(
            shown,
            "listeners[0].trusted_proxies: is missing: accept_proxy_protocol: any needs the addresses of the balancers in front, e.g. trusted_proxies: [10.0.0.0/8]; only they may send a PROXY header"
        );
        // A bad entry is reported as itself, not as a missing list.
        let shown = errors(&listener(
            "    accept_proxy_protocol: any\n    trusted_proxies: [lb.internal]\n",
        ));
        assert_eq!(shown.lines().count(), 1, "{shown}");
        assert!(
            shown.starts_with(
                r#"listeners[0].trusted_proxies[0]: "lb.internal" is not an IP network"#
            ),
            "{shown}"
        );
    }

    #[test]
    fn sni_routes_are_checked_together() {
        let shown = errors(&listener(
            r#"    sni:
      - { match: "*.example.com", pool: web }
      - { match: "*.EXAMPLE.com.", pool: api }
      - { match: example.com, pool: api }
      - { match: a.example.com, pool: apl, alpn: h2 }
      - { match: 8443, pool: api, alpn: [h2, 2] }
      - { match: b.example.com, pool: api, extra: 1 }
"#,
        ));
        let lines: Vec<&str> = shown.lines().collect();
        // The shape check runs first, so its findings lead within a listener.
        assert_eq!(
            lines,
            [
                "listeners[0].sni[5].extra: is not a known key: allowed keys here: match, pool, alpn",
                r#"listeners[0].sni[1].match: "*.EXAMPLE.com." is the same pattern as listeners[0].sni[0].match (*.example.com): list each name once per listener (case and a trailing dot make no difference)"#,
                r#"listeners[0].sni[3].pool: "apl" does not name a pool: did you mean api? pools defined: api, h2, web"#,
                r#"listeners[0].sni[3].alpn: "h2" is a string, not a list: write a list, e.g. [h2]"#,
                r#"listeners[0].sni[4].match: "8443" is a number, not text: write a host name, e.g. api.example.com; quote it if it looks like a number or true/false"#,
                r#"listeners[0].sni[4].alpn[1]: "2" is a number, not text: write a protocol name, e.g. h2; quote it if it looks like a number or true/false"#,
            ]
        );
        // An exact name and a wildcard over it are different patterns.
        assert!(check(&listener(
            "    sni:\n      - { match: example.com, pool: api }\n      - { match: '*.example.com', pool: api }\n"
        ))
        .is_ok());
        // require_sni with an empty list, or with only unreadable routes.
        let shown = errors(&listener("    sni: []\n    require_sni: true\n"));
        assert!(
            shown.starts_with("listeners[0].require_sni: \"true\" needs sni routes"),
            "{shown}"
        );
        let shown = errors(&listener("    sni: [x]\n    require_sni: true\n"));
        assert!(!shown.contains("require_sni"), "{shown}");
    }

    /// Routes for one name are tried in order, so alpn can split a name's
    /// clients between pools; only a route that can never win is an error.
    #[test]
    fn sni_routes_for_one_name_split_by_alpn() {
        let config = check(&listener(
            r#"    sni:
      - { match: app.example.com, pool: h2, alpn: [h2] }
      - { match: App.Example.com., pool: api, alpn: [http/1.1, h2] }
      - { match: app.example.com, pool: web }
      - { match: "*.example.com", pool: h2, alpn: [h2] }
      - { match: "*.example.com", pool: api }
"#,
        ))
        .unwrap();
        let pools: Vec<usize> = config.listeners[0]
            .sni_routes
            .iter()
            .map(|r| r.pool.0)
            .collect();
        assert_eq!(pools, [2, 1, 0, 2, 1]);

        let shown = errors(&listener(
            r#"    sni:
      - { match: app.example.com, pool: api }
      - { match: app.example.com, pool: h2, alpn: [h2] }
      - { match: "*.example.com", pool: h2, alpn: [h2, http/1.1] }
      - { match: "*.EXAMPLE.com", pool: api, alpn: [http/1.1] }
      - { match: "*.example.com", pool: api, alpn: [http/1.1, h3] }
      - { match: b.example.com, pool: api, alpn: [h2] }
      - { match: b.example.com, pool: web, alpn: [h2], extra: 1 }
"#,
        ));
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(
            lines,
            [
                "listeners[0].sni[6].extra: is not a known key: allowed keys here: match, pool, alpn",
                r#"listeners[0].sni[1].match: "app.example.com" can never be chosen: listeners[0].sni[0].match (app.example.com), listed earlier without alpn, takes every client asking for this name: routes for one name are tried in order: put the route with alpn first"#,
                r#"listeners[0].sni[3].match: "*.EXAMPLE.com" can never be chosen: listeners[0].sni[2].match (*.example.com), listed earlier, already takes clients offering http/1.1: remove this route, or list protocols the earlier route does not take"#,
                // Bad in another way (an unknown key), still compared.
                r#"listeners[0].sni[6].match: "b.example.com" can never be chosen: listeners[0].sni[5].match (b.example.com), listed earlier, already takes clients offering h2: remove this route, or list protocols the earlier route does not take"#,
            ]
        );
    }

    /// A `mode: http` listener `web` on 127.0.0.1:8443 with `body` as its
    /// further keys, a store `main`, and pools `web` and `api`.
    fn http_listener(body: &str) -> String {
        format!(
            "tls:\n  - {{ name: main, self_signed: [localhost] }}\nlisteners:\n  - name: web\n    listen: 127.0.0.1:8443\n    mode: http\n{body}pools:\n  - {{ name: web, backends: [127.0.0.1:9001] }}\n  - {{ name: api, backends: [127.0.0.1:9002] }}\n"
        )
    }

    #[test]
    fn an_http_listener_gets_every_default_and_needs_no_pool() {
        let config = check(&http_listener("")).unwrap();
        let l = &config.listeners[0];
        assert_eq!(l.pool, None);
        assert_eq!(
            l.http.as_deref(),
            Some(&HttpListener {
                tls: None,
                redirect_https: None,
                timeouts: DEFAULT_HTTP_TIMEOUTS,
                request_limits: DEFAULT_REQUEST_LIMITS,
                trusted_proxies: vec![],
                routes: vec![],
            })
        );
        // The passthrough settings stay at their defaults.
        assert_eq!(l.sni_routes, []);
        assert_eq!(l.tls_inspect_timeout, DEFAULT_TLS_INSPECT_TIMEOUT);
        assert_eq!(
            config.tls,
            [TlsStoreConfig {
                name: "main".into(),
                certs: vec![],
                self_signed: vec!["localhost".into()],
                default: None,
            }]
        );
        let pool = &config.pools[0];
        assert_eq!(
            (pool.protocol, &pool.backend_tls),
            (UpstreamProtocol::Http1, &None)
        );
        // Written as the default, mode: tcp is today's listener.
        let tcp = check(&MINIMAL.replace("pool: web }", "pool: web, mode: tcp }")).unwrap();
        assert_eq!(tcp, check(MINIMAL).unwrap());
        assert_eq!(tcp.listeners[0].http, None);
        assert_eq!(tcp.tls, []);
        // With tls and nothing else, the alpn and version defaults.
        let config = check(&http_listener("    tls: { store: main }\n")).unwrap();
        assert_eq!(
            config.listeners[0].http.as_ref().unwrap().tls,
            Some(ListenerTls {
                store: 0,
                alpn: vec!["h2".into(), "http/1.1".into()],
                min_version: TlsVersion::V1_2,
            })
        );
    }

    #[test]
    fn a_tcp_listener_still_needs_a_pool() {
        let shown = errors(&MINIMAL.replace(", pool: web }", " }"));
        assert_eq!(
            shown,
            "listeners[0].pool: is missing: add pool: <name of a pool>"
        );
    }

    #[test]
    fn every_http_key_is_read() {
        let config = check(
            r#"tls:
  - name: main
    certs:
      - { cert: /etc/spliced/site.pem, key: /etc/spliced/site.key }
    self_signed: [LocalHost, "*.localhost", 127.0.0.1]
    default: site.example.com
  - { name: spare, certs: [{ cert: a.pem, key: a.key }] }
listeners:
  - name: https
    listen: 127.0.0.1:8443
    mode: http
    tls: { store: spare, alpn: [http/1.1], min_version: 1.3 }
    timeouts: { handshake: 1s, request_header: 2s, idle: 3s, tunnel_idle: 0, backend_response: 4s }
    request_limits: { max_header_bytes: 64KiB, max_body: '1048576', h2_max_streams: 250 }
    forwarded: { trusted_proxies: [10.0.0.0/8, "::1"] }
    pool: web
    connect_timeout: 1s
    limits: { per_ip_connections: 5 }
    routes:
      - match: { host: API.Example.com, path_prefix: /v1/ }
        pool: api
      - match: { host: "*.example.com" }
        pool: web
      - match: { path_prefix: /ws/ }
        pool: api
      - match:
        pool: web
  - { name: http, listen: 127.0.0.1:8080, mode: http, redirect_https: 8443 }
pools:
  - { name: web, backends: [127.0.0.1:9001] }
  - name: api
    protocol: h2
    backend_tls: { sni: api.internal, ca_file: /etc/spliced/ca.pem, verify: false }
    backends: [127.0.0.1:9002]
  - { name: grpc, protocol: h2c, backends: [127.0.0.1:9003] }
  - { name: tls1, backend_tls: {}, backends: [127.0.0.1:9004] }
"#,
        )
        .unwrap();
        assert_eq!(
            config.tls,
            [
                TlsStoreConfig {
                    name: "main".into(),
                    certs: vec![CertFiles {
                        cert: "/etc/spliced/site.pem".into(),
                        key: "/etc/spliced/site.key".into(),
                    }],
                    self_signed: vec!["localhost".into(), "*.localhost".into(), "127.0.0.1".into()],
                    default: Some("site.example.com".into()),
                },
                TlsStoreConfig {
                    name: "spare".into(),
                    certs: vec![CertFiles {
                        cert: "a.pem".into(),
                        key: "a.key".into(),
                    }],
                    self_signed: vec![],
                    default: None,
                },
            ]
        );
        let l = &config.listeners[0];
        assert_eq!(l.pool, Some(PoolId(0)));
        assert_eq!(l.connect_timeout, Duration::from_secs(1));
        assert!(l.limits.is_some());
        let secs = Duration::from_secs;
        assert_eq!(
            **l.http.as_ref().unwrap(),
            HttpListener {
                tls: Some(ListenerTls {
                    store: 1,
                    alpn: vec!["http/1.1".into()],
                    min_version: TlsVersion::V1_3,
                }),
                redirect_https: None,
                timeouts: HttpTimeouts {
                    handshake: secs(1),
                    request_header: secs(2),
                    idle: secs(3),
                    tunnel_idle: None,
                    backend_response: secs(4),
                },
                request_limits: RequestLimits {
                    max_header_bytes: 64 * 1024,
                    max_body: 1 << 20,
                    h2_max_streams: 250,
                },
                trusted_proxies: vec![
                    Cidr {
                        addr: [10, 0, 0, 0].into(),
                        prefix: 8
                    },
                    Cidr {
                        addr: "::1".parse().unwrap(),
                        prefix: 128
                    },
                ],
                routes: vec![
                    HttpRoute {
                        host: Some(SniPattern::Exact("api.example.com".into())),
                        path_prefix: Some("/v1/".into()),
                        pool: PoolId(1),
                        sticky: None,
                        rate_limits: Vec::new(),
                    },
                    HttpRoute {
                        host: Some(SniPattern::Suffix(".example.com".into())),
                        path_prefix: None,
                        pool: PoolId(0),
                        sticky: None,
                        rate_limits: Vec::new(),
                    },
                    HttpRoute {
                        host: None,
                        path_prefix: Some("/ws/".into()),
                        pool: PoolId(1),
                        sticky: None,
                        rate_limits: Vec::new(),
                    },
                    HttpRoute {
                        host: None,
                        path_prefix: None,
                        pool: PoolId(0),
                        sticky: None,
                        rate_limits: Vec::new(),
                    },
                ],
            }
        );
        let redirect = config.listeners[1].http.as_ref().unwrap();
        assert_eq!(
            (redirect.redirect_https, &redirect.tls),
            (Some(8443), &None)
        );
        assert_eq!(config.listeners[1].pool, None);
        let api = &config.pools[1];
        assert_eq!(api.protocol, UpstreamProtocol::H2);
        assert_eq!(
            api.backend_tls,
            Some(BackendTls {
                sni: Some("api.internal".into()),
                ca_file: Some("/etc/spliced/ca.pem".into()),
                verify: false,
            })
        );
        assert_eq!(config.pools[2].protocol, UpstreamProtocol::H2c);
        assert_eq!(
            config.pools[3].backend_tls,
            Some(BackendTls {
                sni: None,
                ca_file: None,
                verify: true,
            })
        );
    }

    #[test]
    fn bad_http_values_name_their_path() {
        let shown = errors(&http_listener(
            r#"    tls: { store: mian, alpn: [h2, h2], min_version: "1.1" }
    timeouts: { handshake: 0s, request_header: 10, idle: forever, tunnel_idle: -1s, backend_response: 30s }
    request_limits: { max_header_bytes: 512, max_body: 10mb, h2_max_streams: 0 }
    forwarded: { trusted_proxies: 10.0.0.0/8 }
    routes:
      - { match: { host: "api.example.com:443", path_prefix: v1/ }, pool: api }
      - { match: { path_prefix: /a }, pool: wbe }
      - { match: { path_prefix: /a/b }, pool: web }
      - { match: { host: "*" }, pool: web }
      - { pool: web, weight: 1 }
"#,
        ));
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(
            lines,
            [
                "listeners[0].routes[4].weight: is not a known key: allowed keys here: match, pool, sticky, rate_limit",
                r#"listeners[0].tls.store: "mian" does not name a tls store: did you mean main? stores defined: main"#,
                r#"listeners[0].tls.alpn: "h2, h2" lists h2 twice: list each protocol once"#,
                r#"listeners[0].tls.min_version: "1.1" is not a TLS version spliced accepts: use "1.2" (the default) or "1.3"; older versions are not offered"#,
                r#"listeners[0].timeouts.handshake: "0s" must be longer than zero: use e.g. 5s"#,
                r#"listeners[0].timeouts.request_header: "10" is a number without a unit: add a unit, e.g. 10s (units: ms, s, m, h)"#,
                r#"listeners[0].timeouts.idle: "forever" is not a duration: write a number and one unit (ms, s, m or h), e.g. 250ms, 1.5s or 1m"#,
                r#"listeners[0].timeouts.tunnel_idle: "-1s" is not a duration: write a number and one unit (ms, s, m or h), e.g. 250ms, 1.5s or 1h"#,
                r#"listeners[0].request_limits.max_header_bytes: "512" is out of range: use from 1KiB to 1MiB"#,
                r#"listeners[0].request_limits.max_body: "10mb" has an unknown unit "mb": did you mean MB? write bytes with a unit, e.g. 32KiB or 10MiB (units: B, KB, MB, GB, KiB, MiB, GiB), or a whole number of bytes"#,
                r#"listeners[0].request_limits.h2_max_streams: "0" is out of range: use a whole number from 1 to 10000"#,
                r#"listeners[0].forwarded.trusted_proxies: "10.0.0.0/8" is a string, not a list: write a list, e.g. [10.0.0.0/8]"#,
                r#"listeners[0].routes[0].match.host: "api.example.com:443" contains ':', which is not allowed in a host name: the host is matched without its port: write the name alone, e.g. api.example.com"#,
                r#"listeners[0].routes[0].match.path_prefix: "v1/" does not start with /: write the path as requests carry it, e.g. /v1/"#,
                r#"listeners[0].routes[1].pool: "wbe" does not name a pool: did you mean web? pools defined: api, web"#,
                "listeners[0].routes[2]: can never be chosen: listeners[0].routes[1] (path_prefix /a), listed earlier, matches every request it does: routes are tried in order and the first match wins: put the more specific route first, or remove this one",
                r#"listeners[0].routes[3].match.host: "*" matches every name: leave host out: a route without host takes every host"#,
            ]
        );
    }

    #[test]
    fn bad_stores_and_pools_name_their_path() {
        let shown = errors(
            r#"tls:
  - { name: main, certs: [{ cert: "", key: k }, { key: k }], self_signed: localhost }
  - { name: main, self_signed: [], default: "a b", acme: { directory: x } }
  - name: empty
listeners:
  - { name: web, listen: 127.0.0.1:8443, mode: http, tls: { store: main } }
pools:
  - { name: web, protocol: http2, backends: [127.0.0.1:9001] }
  - { name: api, protocol: h2, backends: [127.0.0.1:9002] }
  - { name: grpc, protocol: h2c, backend_tls: { verify: no }, backends: [127.0.0.1:9003] }
  - { name: pl, backend_tls: { sni: "*.internal", ca_file: "" }, discovery: { file: x }, backends: [127.0.0.1:9004] }
"#,
        );
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(
            lines,
            [
                r#"tls[0].certs[0].cert: "" is an empty path: give the file's path, e.g. /etc/spliced/site.pem"#,
                "tls[0].certs[1].cert: is missing: add cert: the PEM file of the certificate chain, e.g. cert: /etc/spliced/site.pem",
                r#"tls[0].self_signed: "localhost" is a string, not a list: write a list, e.g. [localhost]"#,
                "tls[1].acme: is not supported yet: remove acme and give the store certs (cert and key files) or self_signed names for now",
                r#"tls[1].name: "main" is already the name of tls[0]: give each tls store a unique name (it is a metric label)"#,
                r#"tls[1].default: "a b" contains a space: write one name, e.g. api.example.com"#,
                "tls[1]: has no certificates: add certs: [{ cert: FILE, key: FILE }] or self_signed: [localhost] (or both)",
                "tls[2]: has no certificates: add certs: [{ cert: FILE, key: FILE }] or self_signed: [localhost] (or both)",
                r#"pools[0].protocol: "http2" is not a known upstream protocol: did you mean http1? use one of http1, h2c, h2"#,
                "pools[1].backend_tls: is missing: protocol: h2 is HTTP/2 over TLS: add backend_tls: {} (or with sni, ca_file), or use protocol: h2c for HTTP/2 without TLS",
                r#"pools[2].backend_tls.verify: "no" is a string, not true or false: write true or false (the default is true)"#,
                "pools[2].backend_tls: is set, but protocol: h2c is HTTP/2 without TLS: use protocol: h2 for HTTP/2 over TLS, or remove backend_tls",
                "pools[3].discovery: is not supported yet: list the pool's backends under backends: for now",
                r#"pools[3].backend_tls.sni: "*.internal" is a wildcard, and a client sends one name: write the name the backends' certificate is for, e.g. api.internal"#,
                r#"pools[3].backend_tls.ca_file: "" is an empty path: give the file's path, e.g. /etc/spliced/ca.pem"#,
            ]
        );
    }

    #[test]
    fn keys_of_one_mode_are_refused_in_the_other() {
        let shown = errors(&MINIMAL.replace(
            "pool: web }",
            "pool: web, tls: { store: main }, timeouts: {}, request_limits: {}, forwarded: {}, routes: [], redirect_https: 8443 }",
        ));
        let lines: Vec<&str> = shown.lines().collect();
        let fix = |key: &str| {
            format!("listeners[0].{key}: is only for mode: http: add mode: http to this listener to terminate TLS and proxy HTTP, or remove {key}")
        };
        let expected: Vec<String> = [
            "tls",
            "timeouts",
            "request_limits",
            "forwarded",
            "routes",
            "redirect_https",
        ]
        .map(fix)
        .into();
        assert_eq!(lines, expected);

        let shown = errors(&http_listener(
            "    sni: [{ match: a.example.com, pool: web }]\n    require_sni: true\n    tls_inspect_timeout: 5s\n    proxy_protocol: v2\n    accept_proxy_protocol: v1\n    trusted_proxies: [10.0.0.0/8]\n    proxy_header_timeout: 5s\n",
        ));
        let passthrough = "is only for mode: tcp (TLS passthrough): in mode: http, route by host with routes: [{ match: { host: api.example.com }, pool: api }]; or remove mode: http to pass TLS through";
        let unsupported =
            "is not supported in mode: http yet: remove it, or remove mode: http to relay bytes as they are";
        assert_eq!(
            shown.lines().collect::<Vec<_>>(),
            [
                format!("listeners[0].sni: {passthrough}"),
                format!("listeners[0].require_sni: {passthrough}"),
                format!("listeners[0].tls_inspect_timeout: {passthrough}"),
                format!("listeners[0].proxy_protocol: {unsupported}"),
                format!("listeners[0].accept_proxy_protocol: {unsupported}"),
                "listeners[0].trusted_proxies: is for accept_proxy_protocol, which mode: http does not support yet: to keep X-Forwarded-For from proxies in front, write forwarded: { trusted_proxies: [10.0.0.0/8] }".to_owned(),
                format!("listeners[0].proxy_header_timeout: {unsupported}"),
            ]
        );
        // A mode that is itself wrong says so, and nothing about the keys.
        let shown = errors(&http_listener("    routes: []\n").replace("mode: http", "mode: https"));
        assert_eq!(
            shown,
            r#"listeners[0].mode: "https" is not a known listener mode: did you mean http? use tcp or http"#
        );
    }

    #[test]
    fn a_redirecting_listener_proxies_nothing() {
        let shown = errors(&http_listener(
            "    redirect_https: 8443\n    tls: { store: main }\n    pool: web\n    routes: [{ pool: web }]\n",
        ));
        let why = "is set, but redirect_https answers every request with a redirect to port 8443";
        assert_eq!(
            shown.lines().collect::<Vec<_>>(),
            [
                format!("listeners[0].tls: {why}: a redirecting listener speaks plaintext HTTP: remove tls, or remove redirect_https to serve HTTPS here"),
                format!("listeners[0].pool: {why}: nothing is proxied from here: remove pool, or remove redirect_https"),
                format!("listeners[0].routes: {why}: nothing is proxied from here: remove routes, or remove redirect_https"),
            ]
        );
        for port in ["0", "65536", "https"] {
            let shown = errors(&http_listener(&format!("    redirect_https: {port}\n")));
            assert!(
                shown.starts_with(&format!(r#"listeners[0].redirect_https: "{port}" "#))
                    && shown.contains("use a whole number from 1 to 65535"),
                "{shown}"
            );
        }
    }

    #[test]
    fn http_example_terminates_tls_and_routes_by_host_and_path() {
        let config = load_file(&repo_file("conf/http.yaml")).unwrap();
        assert_eq!(config.tls[0].self_signed, ["localhost", "api.localhost"]);
        let https = &config.listeners[0];
        let http = https.http.as_ref().unwrap();
        assert_eq!(http.tls.as_ref().unwrap().store, 0);
        assert_eq!(http.tls.as_ref().unwrap().alpn, DEFAULT_ALPN);
        assert_eq!(http.timeouts, DEFAULT_HTTP_TIMEOUTS);
        assert_eq!(http.request_limits, DEFAULT_REQUEST_LIMITS);
        let pools: Vec<&str> = http
            .routes
            .iter()
            .map(|r| config.pool(r.pool).name.as_str())
            .collect();
        assert_eq!(pools, ["api", "api", "web"]);
        assert_eq!(http.routes[0].rate_limits.len(), 2);
        assert_eq!(http.routes[1].rate_limits[0].key, RateLimitKey::Ip);
        let sticky = http.routes[2].sticky.as_ref().unwrap();
        assert_eq!(
            (sticky.cookie.as_str(), sticky.same_site),
            ("SPLICED", Some(SameSite::Lax))
        );
        assert_eq!(config.pool(https.pool.unwrap()).name, "web");
        let redirect = &config.listeners[1];
        assert_eq!(redirect.http.as_ref().unwrap().redirect_https, Some(8443));
        assert_eq!(config.pools[1].protocol, UpstreamProtocol::H2c);
    }

    const HTTP_ROUTE: &str = "\
listeners:
  - name: web
    listen: 127.0.0.1:8080
    mode: http
    routes:
      - ROUTE
pools:
  - { name: web, backends: [127.0.0.1:9001] }
";

    fn route(yaml: &str) -> Result<HttpRoute, ConfigErrors> {
        check(&HTTP_ROUTE.replace("ROUTE", yaml))
            .map(|mut c| c.listeners.remove(0).http.unwrap().routes.remove(0))
    }

    #[test]
    fn sticky_and_rate_limits_are_read_with_their_defaults() {
        let r =
            route("{ pool: web, sticky: { cookie: SRV }, rate_limit: { key: ip, rate: 20/s } }")
                .unwrap();
        assert_eq!(
            r.sticky,
            Some(Sticky {
                cookie: "SRV".into(),
                ttl: None,
                secure: false,
                http_only: true,
                same_site: None,
                secret: None,
            })
        );
        assert_eq!(
            r.rate_limits,
            [RateLimit {
                key: RateLimitKey::Ip,
                rate: 20.0,
                burst: 20,
                missing: MissingKey::Ip,
            }]
        );
        let r = route(
            "{ pool: web, sticky: { cookie: S, ttl: 1h, secure: true, http_only: false, same_site: none, secret: 0123456789abcdefXYZ },
          rate_limit: [ { key: \"header:X-API-Key\", rate: 600/m, burst: 3, missing: skip }, { key: ip, rate: 0.5/s } ] }",
        )
        .unwrap();
        let sticky = r.sticky.unwrap();
        assert_eq!(sticky.ttl, Some(Duration::from_secs(3600)));
        assert_eq!(sticky.same_site, Some(SameSite::None));
        assert_eq!(
            sticky.secret,
            Some(StickySecret("0123456789abcdefXYZ".into()))
        );
        assert!(
            !format!("{sticky:?}").contains("0123456789"),
            "secret printed"
        );
        assert_eq!(
            r.rate_limits[0].key,
            RateLimitKey::Header("X-API-Key".into())
        );
        assert_eq!((r.rate_limits[0].rate, r.rate_limits[0].burst), (10.0, 3));
        assert_eq!(r.rate_limits[0].missing, MissingKey::Skip);
        assert_eq!(r.rate_limits[1].burst, 1, "a second's worth, at least 1");
        let session = route("{ pool: web, sticky: { cookie: S, ttl: 0s } }").unwrap();
        assert_eq!(session.sticky.unwrap().ttl, None);
    }

    #[test]
    fn bad_sticky_and_rate_limits_name_their_path() {
        let shown = route(
            "{ pool: web, sticky: { cookie: \"a b\", ttl: 5, same_site: lx, secret: short, path: / },
          rate_limit: [ { key: ip, rate: 5, missing: skip }, { key: \"header:\", rate: 1/h }, { key: ip, rate: 1/s }, { rate: 1/s, burst: 0 }, 7 ] }",
        )
        .unwrap_err()
        .to_string();
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(
            lines,
            [
                "listeners[0].routes[0].sticky.path: is not a known key: allowed keys here: cookie, ttl, secure, http_only, same_site, secret",
                "listeners[0].routes[0].rate_limit[4]: \"7\" is a number, not a rate limit: each rate limit is a mapping of key, rate, burst, missing, e.g. - { key: ip, rate: 20/s, burst: 40 }",
                r#"listeners[0].routes[0].sticky.cookie: "a b" is not a valid cookie name: use letters, digits and !#$%&'*+-.^_`|~ only, e.g. SPLICED"#,
                r#"listeners[0].routes[0].sticky.ttl: "5" is a number without a unit: add a unit, e.g. 30s (units: ms, s, m, h)"#,
                r#"listeners[0].routes[0].sticky.same_site: "lx" is not a known SameSite value: use one of strict, lax, none"#,
                "listeners[0].routes[0].sticky.secret: is shorter than 16 characters: give at least 16 random characters, e.g. the output of `openssl rand -base64 32`, the same on every instance",
                r#"listeners[0].routes[0].rate_limit[0].rate: "5" is a number without a unit: add /s or /m, e.g. 5/s (per second) or 5/m (per minute)"#,
                r#"listeners[0].routes[0].rate_limit[0].missing: "skip" is only for key: "header:NAME" (every request has an address): remove missing"#,
                r#"listeners[0].routes[0].rate_limit[1].key: "header:" does not name a valid header: use ip, or "header:NAME" with a request header's name, e.g. "header:X-API-Key""#,
                r#"listeners[0].routes[0].rate_limit[1].rate: "1/h" has an unknown unit "/h": write requests per second or per minute, e.g. 50/s or 30/m"#,
                r#"listeners[0].routes[0].rate_limit[2].key: "ip" is already the key of rate_limit[0]: give each limit of a route its own key, or merge the two"#,
                r#"listeners[0].routes[0].rate_limit[3].key: is missing: add key: ip, or key: "header:X-API-Key" to count requests by a header"#,
                r#"listeners[0].routes[0].rate_limit[3].burst: "0" is out of range: use a whole number of at least 1"#,
            ]
        );
        let shown =
            route("{ pool: web, sticky: {}, rate_limit: { key: id, rate: 1/s, brust: 2 } }")
                .unwrap_err()
                .to_string();
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(
            lines,
            [
                "listeners[0].routes[0].rate_limit.brust: is not a known key: did you mean burst? allowed keys here: key, rate, burst, missing",
                "listeners[0].routes[0].sticky.cookie: is missing: add cookie: <the cookie's name>, e.g. cookie: SPLICED",
                r#"listeners[0].routes[0].rate_limit.key: "id" is not a rate limit key: use ip, or "header:NAME" with a request header's name, e.g. "header:X-API-Key""#,
            ]
        );
        let shown = route("{ pool: web, sticky: { cookie: S, same_site: none } }")
            .unwrap_err()
            .to_string();
        assert_eq!(
            shown,
            r#"listeners[0].routes[0].sticky.same_site: "none" needs secure: true (browsers refuse SameSite=None cookies without Secure): add secure: true, or use same_site: lax"#
        );
    }

    #[test]
    fn a_reload_that_changes_sticky_or_a_limit_changes_the_routes() {
        let before = check(
            &HTTP_ROUTE.replace("ROUTE", "{ pool: web, rate_limit: { key: ip, rate: 1/s } }"),
        )
        .unwrap();
        let after = check(
            &HTTP_ROUTE.replace("ROUTE", "{ pool: web, rate_limit: { key: ip, rate: 2/s } }"),
        )
        .unwrap();
        assert_ne!(before, after);
        let changes = ChangeSet::between(&before, &after);
        assert!(format!("{changes:?}").contains("routes"), "{changes:?}");
    }

    /// Each `tests/fixtures/bad/X.yaml` must be rejected, and every line of the
    /// `X.expected` beside it must appear in the printed errors.
    #[test]
    fn every_bad_fixture_reports_what_it_expects() {
        for path in yaml_files("tests/fixtures/bad") {
            let expected_path = path.with_extension("expected");
            let expected = std::fs::read_to_string(&expected_path)
                .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
            let shown = match load_file(&path) {
                Ok(_) => panic!("{} was accepted", path.display()),
                Err(errors) => errors.to_string(),
            };
            for line in expected.lines().filter(|line| !line.trim().is_empty()) {
                assert!(
                    shown.contains(line),
                    "{}: expected {line:?} in:\n{shown}",
                    path.display()
                );
            }
        }
    }

    #[test]
    fn fuzzing_entry_point_survives_odd_input() {
        let odd: &[&[u8]] = &[
            b"",
            b"\xff\xfe",
            b"[",
            b"{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{",
            b"a: &a [*a, *a]\nb: &b [*a, *a, *a]\nc: &c [*b, *b, *b]\n",
            b"listeners: !!binary aGVsbG8=\n",
            b"pools: [{name: p, backends: [fail.x:1, x.y:0, x.y:2, '[::1]:3', {address: 1}]}]\nlisteners: [{name: l, listen: '0.0.0.0:1', pool: p}]\n",
            b"<<: 1\n",
            b"listeners: [{<<: [{a: 1}, 2]}]\n",
            b"workers: 99999999999999999999999999999\nshutdown_timeout: 99999999999999999999999999999999999999999999h\n",
            b"listeners: [{name: a, listen: '[::]:0', pool: p, retries: -99999999999999999999}]\n",
            b"pools: [{name: p, algorithm: ip_hash, hash_table_size: 99999999999999999999999, hash_balance_factor: .nan, backends: [{address: '1.2.3.4:5', backup: true, weight: 1e999}]}]\n",
            b"pools: [{name: p, health_check: {kind: http, expect_status: [-1, '999999999999999999999999-1', '1-', [200]], timeout: 0.000000000000000000001s}}]\n",
            b"pools: [{name: p, health_check: {kind: [tcp], send: {a: b}, expect: !!binary aGVsbG8=}}]\n",
            b"limits_table_size: 1e999\nlisteners: [{name: a, listen: '[::]:1', pool: p, sni: [{match: '*.*', pool: p, alpn: [[]]}, {match: '.', alpn: ''}, {match: ''}], require_sni: yes}]\npools: [{name: p, backends: [1.2.3.4:5]}]\n",
            b"listeners: [{name: a, listen: '[::]:1', pool: p, allow: ['::/0', '1.2.3.4/', '/', '::ffff:1.2.3.4/128', '0.0.0.0/00000000000000000000000000032'], deny: [{}], trusted_proxies: ~, accept_proxy_protocol: {}, proxy_protocol: -1}]\n",
            b"tls: [{name: a, certs: [{cert: 1}, 2, ~], self_signed: a, acme: 1}, ~, 3]\nlisteners: [{name: a, listen: '[::]:1', mode: http, tls: {store: [a], alpn: [h2, {}], min_version: .nan}, timeouts: {tunnel_idle: -0}, request_limits: {max_body: '1e999GiB', max_header_bytes: -1}, routes: [{match: {host: '*.*', path_prefix: ''}}, ~, 1, {match: 2}], redirect_https: 1e9}]\npools: [{name: p, protocol: [h2], backend_tls: 1, backends: [1.2.3.4:5]}]\n",
            b"listeners: [{limits: {per_ip_rate: '99999999999999999999999999999999999999999999999999/s', per_ip_burst: -1, per_ip_bandwidth: '9999999999999999999999999GiB/s', ipv6_prefix: 0, action: [], tarpit_delay: .inf}}, {limits: {per_ip_rate: './m', per_ip_bandwidth: '/s'}}]\n",
        ];
        for input in odd {
            fuzzing::parse(input);
        }
        let mut config = MINIMAL.as_bytes().to_vec();
        for len in 0..config.len() {
            fuzzing::parse(&config[..len]);
        }
        config.reverse();
        fuzzing::parse(&config);
    }
}
