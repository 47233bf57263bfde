//! Configuration: reading a YAML file into a checked, typed [`Config`].
//!
//! Three stages, one file each (STYLE.md rule 6):
//! - `raw`: the YAML document into serde structs that mirror it, reporting
//!   syntax errors, unknown keys and wrongly-shaped sections;
//! - `validate`: raw into [`model`] types, interpreting every value, applying
//!   defaults and checking cross-references;
//! - `error`: how problems are located and printed, one per line with the YAML
//!   path, the bad value, what is wrong and how to fix it.
//!
//! Every problem in a file is reported at once; a config with any problem
//! yields no [`Config`] at all, so nothing half-valid can reach the data plane.
//!
//! This module must never touch sockets, spawn threads or hold global state:
//! the control thread calls it (at start-up, on reload, from `spliced check`)
//! and decides what to do with the result. The only outside lookups are
//! reading the file in [`load_file`] and resolving backend hostnames, which
//! may block on DNS.

mod error;
pub mod model;
mod raw;
mod validate;

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
        Some(config) if errors.is_empty() => Ok(config),
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
        assert_eq!(listener.pool, PoolId(0));
        assert_eq!(listener.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(listener.idle_timeout, DEFAULT_IDLE_TIMEOUT);
        assert_eq!(listener.retries, DEFAULT_RETRIES);
        assert_eq!(listener.max_connections, DEFAULT_MAX_CONNECTIONS);
        assert_eq!(listener.backlog, DEFAULT_BACKLOG);
        let pool = config.pool(listener.pool);
        assert_eq!(pool.algorithm, Algorithm::RoundRobin);
        assert_eq!(
            pool.backends,
            [BackendConfig {
                name: "127.0.0.1:9001".into(),
                addr: "127.0.0.1:9001".parse().unwrap()
            }]
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
        assert_eq!(api.pool, PoolId(1));
        assert_eq!(config.pool_id("b"), Some(PoolId(1)));
        assert_eq!(api.connect_timeout, Duration::from_millis(250));
        assert_eq!(api.idle_timeout, Duration::from_secs(3600));
        assert_eq!(
            (api.retries, api.max_connections, api.backlog),
            (0, 1, 65535)
        );
        assert_eq!(config.listeners[1].pool, PoolId(0));
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

    #[test]
    fn every_shipped_config_is_valid() {
        for path in yaml_files("conf") {
            if let Err(errors) = load_file(&path) {
                panic!("{} is invalid:\n{errors}", path.display());
            }
        }
    }

    #[test]
    fn demo_config_matches_spliced_demo() {
        let config = load_file(&repo_file("conf/demo.yaml")).unwrap();
        assert_eq!(
            config.admin.as_ref().unwrap().listen,
            "127.0.0.1:9090".parse().unwrap()
        );
        assert_eq!(config.listeners.len(), 1);
        assert_eq!(config.listeners[0].name, "demo");
        assert_eq!(
            config.listeners[0].listen,
            "127.0.0.1:8080".parse().unwrap()
        );
        let pool = config.pool(config.listeners[0].pool);
        assert_eq!(pool.name, "demo");
        let ports: Vec<u16> = pool.backends.iter().map(|b| b.addr.port()).collect();
        assert_eq!(ports, [9001, 9002, 9003]);
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
