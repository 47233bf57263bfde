//! # spliced
//!
//! A Layer-4 TCP load balancer for Linux on io_uring. Thread-per-core workers,
//! each with its own ring and its own SO_REUSEPORT listener sockets, accept
//! connections, pick a backend from an immutable snapshot, and relay bytes both
//! ways: through a provided-buffer ring for small messages, and with `splice(2)`
//! through pooled pipes once a direction carries bulk.
//!
//! ## Architecture
//! ```text
//!   control thread (tokio): config · admin API · metrics · signals
//!        │ publishes Arc<Snapshot> (arc-swap)
//!   client ─► worker N (own io_uring) ─ accept → pick → connect → relay ─► backend
//! ```
//!
//! ## Glossary
//! - **listener**: an address clients connect to, bound once per worker.
//! - **pool**: a named set of backends with a selection algorithm.
//! - **backend**: one upstream `address`, named by it.
//! - **worker**: a data-plane thread with its own ring; a connection stays on it.
//! - **snapshot**: the immutable routing view workers read; replaced whole.
//! - **drain**: stop giving new connections while open ones run on.
//!
//! ## Module map
//! Layers, bottom first; a module uses only those below it (checked by the
//! `layers` test at the end of this file). Only what `main`, the end-to-end
//! tests, the benches and the fuzz targets use is `pub`; the rest is
//! `pub(crate)`.
//! 1. [`config`] (YAML → validated, typed config), [`proto`] (SNI and PROXY
//!    parsing, pure), `outcome` (why connections end or are refused),
//!    `sys` (raw syscalls), [`clock`], [`log`], `reactor` (the completion
//!    interface the L4 worker drives).
//! 2. `counters` (per-worker counters), `limits` (per-client limits),
//!    `tls` (certificate stores, SNI resolver, rustls server configs),
//!    `uring` (rings, buffer rings, pipes; with `sys` the only `unsafe`),
//!    `epoll` (the same interface over readiness, where io_uring is refused).
//! 3. [`balance`]: `Backend` and the selection algorithms behind one trait.
//! 4. `snapshot`: the immutable routing view the planes read.
//! 5. `metrics` (Prometheus exposition), `accesslog` (one line per
//!    finished connection, written off the data path).
//! 6. `plane`: the seam between control and the data planes (`Plane`,
//!    the shared state, listener binding).
//! 7. `session`: one connection's life without I/O (inspection, connect
//!    attempts, the relay, timeouts, accounting), driven by an engine.
//! 8. `dataplane`: the L4 workers (on io_uring or epoll), `http`: the
//!    HTTP plane.
//! 9. [`control`]: the control thread: start-up, reload, health, admin HTTP.
//! 10. [`demo`]: built-in backends and load, plugged into `control` by `main`.
#![deny(unsafe_code)]

pub(crate) mod accesslog;
pub mod balance;
pub mod clock;
pub mod config;
pub mod control;
pub(crate) mod counters;
pub(crate) mod dataplane;
pub mod demo;
pub(crate) mod epoll;
pub(crate) mod http;
pub(crate) mod limits;
pub mod log;
pub(crate) mod metrics;
pub(crate) mod outcome;
pub(crate) mod plane;
pub mod proto;
pub(crate) mod reactor;
pub(crate) mod session;
pub(crate) mod snapshot;
pub(crate) mod sys;
pub(crate) mod tls;
pub(crate) mod uring;

/// The module graph's layers, bottom first: a top-level module may use only
/// modules of lower layers (unit tests may reach anywhere). This keeps the
/// data planes and the control plane from growing back into one another.
#[cfg(test)]
mod layers {
    use std::collections::BTreeSet;
    use std::path::Path;

    const LAYERS: &[&[&str]] = &[
        &[
            "clock", "config", "log", "outcome", "proto", "reactor", "sys",
        ],
        &["counters", "epoll", "limits", "tls", "uring"],
        &["balance"],
        &["snapshot"],
        &["accesslog", "metrics"],
        &["plane"],
        &["session"],
        &["dataplane", "http"],
        &["control"],
        &["demo"],
    ];

    fn layer_of(module: &str) -> Option<usize> {
        LAYERS.iter().position(|l| l.contains(&module))
    }

    /// The top-level modules `text` names as `crate::X`, outside unit tests
    /// and comments.
    fn uses(text: &str) -> BTreeSet<String> {
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
        let mut found = BTreeSet::new();
        for line in code.lines() {
            let line = line.split("//").next().unwrap_or("");
            let mut rest = line;
            while let Some(at) = rest.find("crate::") {
                rest = &rest[at + "crate::".len()..];
                if let Some(list) = rest.strip_prefix('{') {
                    for item in list.split('}').next().unwrap_or("").split(',') {
                        let name = item.trim().split("::").next().unwrap_or("");
                        if !name.is_empty() {
                            found.insert(name.to_owned());
                        }
                    }
                } else {
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    found.insert(name);
                }
            }
        }
        found
    }

    fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    #[test]
    fn top_level_modules_only_use_lower_layers() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let mut problems = Vec::new();
        for file in files {
            let rel = file.strip_prefix(&src).unwrap();
            let first = rel
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy();
            let module = first.trim_end_matches(".rs").to_owned();
            if module == "lib" || module == "main" {
                continue;
            }
            let Some(own) = layer_of(&module) else {
                problems.push(format!("{module} is in no layer: add it to LAYERS"));
                continue;
            };
            let text = std::fs::read_to_string(&file).unwrap();
            for used in uses(&text) {
                if used == module {
                    continue;
                }
                match layer_of(&used) {
                    Some(layer) if layer < own => {}
                    _ => problems.push(format!(
                        "{} uses crate::{used}, which is not below {module}",
                        rel.display()
                    )),
                }
            }
        }
        problems.sort();
        problems.dedup();
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }
}
