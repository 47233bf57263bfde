//! The admin API's routes (DESIGN.md §3): read-only views (dashboard, health,
//! readiness, metrics, pools) and mutations (backends added, removed or
//! patched; reload; a posted config). Every mutation builds a whole new config
//! and goes through the same apply path as a reload, so it is atomic: a bad
//! request changes nothing and gets a 4xx with a JSON error. Every request
//! must name this API in `Host`, and mutations must come from its own origin
//! with a JSON (or YAML) body (`guard`); mutating calls need the bearer token
//! when `admin.token_file` is set. Parsing a posted config and resolving a
//! backend's hostname run off the control thread (`reload::off_thread`).
//!
//! Changes made here live until the next reload of the config file, as with
//! HAProxy's runtime API: write them to the file to keep them.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use super::guard::{self, BodyKind};
use super::{Request, Response};
use crate::balance::WEIGHT_SCALE;
use crate::clock;
use crate::config::{self, BackendConfig, Config, HealthKind, HttpListener};
use crate::control::reload::{self, ReloadError};
use crate::control::State;
use crate::counters::{CODE_CLASSES, CONNECT_BUCKETS_US, HANDSHAKE_RESULTS, LISTENER_SLOTS};
use crate::metrics;
use crate::outcome::Reject;
use crate::snapshot::{Listener, Snapshot};

const DASHBOARD: &str = include_str!("dashboard.html");

/// Routes one request.
pub async fn route(state: &Arc<State>, req: &Request) -> Response {
    let segments: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    let allowed_hosts = state
        .inner()
        .config
        .admin
        .as_ref()
        .map(|a| a.allowed_hosts.clone())
        .unwrap_or_default();
    if let Err(r) = guard::check_host(req.host.as_deref(), &allowed_hosts) {
        return Response::error(r.status, r.message);
    }
    let mutating = matches!(req.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE");
    if mutating {
        let kind = match segments.as_slice() {
            ["api", "v1", "config"] => BodyKind::Yaml,
            _ => BodyKind::Json,
        };
        if let Err(r) = guard::check_mutation(req, kind) {
            return Response::error(r.status, r.message);
        }
        if let Err(r) = authorize(state, req) {
            return r;
        }
    }
    match (req.method.as_str(), segments.as_slice()) {
        ("GET", [""]) => Response {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: DASHBOARD.as_bytes().to_vec(),
        },
        ("GET", ["health"]) => Response::text(200, "ok\n"),
        ("GET", ["ready"]) => {
            // Draining: the listeners no longer accept, so outer balancers
            // and Kubernetes must stop sending traffic here.
            if state.shared.draining.load(Ordering::Acquire) {
                Response::text(503, "draining\n")
            } else if state.ready.load(Ordering::Acquire) {
                Response::text(200, "ready\n")
            } else {
                Response::text(503, "starting\n")
            }
        }
        ("GET", ["metrics"]) => Response {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: metrics_text(state).into_bytes(),
        },
        ("GET", ["api", "v1", "pools"]) => Response::json(200, &pools_json(state)),
        ("POST", ["api", "v1", "pools", pool, "backends"]) => {
            add_backend(state, pool, &req.body).await
        }
        ("PUT", ["api", "v1", "pools", pool, "backends"]) => {
            replace_backends(state, pool, &req.body).await
        }
        ("DELETE", ["api", "v1", "pools", pool, "backends", address]) => {
            remove_backend(state, pool, &percent_decode(address))
        }
        ("PATCH", ["api", "v1", "pools", pool, "backends", address]) => {
            patch_backend(state, pool, &percent_decode(address), &req.body)
        }
        ("POST", ["api", "v1", "reload"]) => match reload::reload_file(state).await {
            Ok(()) => Response::json(200, &json!({"result": "reloaded"})),
            Err(e) => reload_error(e),
        },
        ("PUT", ["api", "v1", "config"]) => put_config(state, &req.body).await,
        ("POST", ["api", "v1", "demo", "load"]) => demo_load(state, &req.body),
        (_, ["health" | "ready" | "metrics"]) | (_, [""]) => {
            Response::error(405, "method not allowed")
        }
        (_, ["api", "v1", ..]) => Response::error(
            404,
            format!("no such endpoint: {} {}", req.method, req.path),
        ),
        _ => Response::error(404, "not found"),
    }
}

fn authorize(state: &State, req: &Request) -> Result<(), Response> {
    let inner = state.inner();
    let Some(token) = inner.token.as_deref() else {
        return Ok(());
    };
    let given = req.authorization.as_deref().and_then(guard::bearer_token);
    match given {
        Some(g) if constant_time_eq(g.as_bytes(), token.as_bytes()) => Ok(()),
        Some(_) => Err(Response::error(401, "wrong admin token")),
        None => Err(Response::error(
            401,
            "this call needs `Authorization: Bearer <token>` (admin.token_file is set)",
        )),
    }
}

/// Compares without stopping at the first difference (no timing hint).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `%XX` escapes in a path segment (backend addresses contain ':' and '[').
pub fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn metrics_text(state: &State) -> String {
    let snapshot = state.shared.snapshot.load();
    let reloads = metrics::Reloads {
        config: (
            state.reloads_ok.load(Ordering::Relaxed),
            state.reloads_error.load(Ordering::Relaxed),
        ),
        tls: (
            state.tls_reloads.ok.load(Ordering::Relaxed),
            state.tls_reloads.error.load(Ordering::Relaxed),
        ),
    };
    metrics::render(
        &snapshot,
        &state.shared.stats,
        &state.shared.limiter,
        reloads,
    )
}

fn pools_json(state: &State) -> Value {
    let snapshot = state.shared.snapshot.load_full();
    let inner = state.inner();
    let now = clock::now_ms();
    let listeners: Vec<Value> = snapshot
        .listeners
        .iter()
        .map(|l| {
            let addr = inner
                .listeners
                .iter()
                .find(|b| b.id == l.id)
                .map(|b| b.addr.to_string());
            let mut v = json!({
                "name": l.name,
                "listen": addr,
                "mode": if l.settings.http.is_some() { "http" } else { "tcp" },
                "pool": l.pool.map(|p| snapshot.pools[p].name.as_str()),
                "active": l.stats.active.load(Ordering::Relaxed),
                "accepted": l.stats.sum(|s| &s.accepted),
                "rejected": Reject::ALL
                    .iter()
                    .map(|r| (r.as_str().to_string(), json!(l.stats.sum(|s| &s.rejected[r.index()]))))
                    .collect::<serde_json::Map<String, Value>>(),
                "fail_open": l.stats.sum(|s| &s.fail_open),
            });
            if let (Some(http), Value::Object(map)) = (l.settings.http.as_deref(), &mut v) {
                map.extend(http_listener_json(&snapshot, &inner.config, l, http));
            }
            v
        })
        .collect();
    // Which HTTP listeners send traffic to each pool (for the per-backend,
    // per-listener response counts).
    let http_routes: Vec<(usize, &str, usize)> = snapshot
        .listeners
        .iter()
        .filter(|l| l.settings.http.is_some())
        .flat_map(|l| {
            l.pools()
                .into_iter()
                .map(move |p| (p, l.name.as_str(), l.metrics_slot))
        })
        .collect();
    let pools: Vec<Value> = snapshot
        .pools
        .iter()
        .zip(&inner.config.pools)
        .enumerate()
        .map(|(pi, (p, pc))| {
            let backends: Vec<Value> = p
                .backends
                .iter()
                .map(|b| {
                    let ejected = b.ejected(now);
                    let state = if b.disabled {
                        "disabled"
                    } else if b.drain || b.weight == 0 {
                        "draining"
                    } else if ejected {
                        "ejected"
                    } else if !b.up() {
                        "down"
                    } else {
                        "up"
                    };
                    let s = &b.stats;
                    let mut v = json!({
                        "address": b.name,
                        "resolved": b.addr.to_string(),
                        "weight": b.weight,
                        "effective_weight": b.effective_weight(now) as f64 / WEIGHT_SCALE as f64,
                        "backup": b.backup,
                        "drain": b.drain,
                        "disabled": b.disabled,
                        "max_connections": b.max_connections,
                        "healthy": b.up(),
                        "ejected": ejected,
                        "ejected_for_ms": s.ejected_until_ms.load(Ordering::Relaxed).saturating_sub(now),
                        "state": state,
                        "active": b.active(),
                        "connections": s.sum(|w| &w.connections),
                        "bytes_client_to_backend": s.sum(|w| &w.bytes[0]),
                        "bytes_backend_to_client": s.sum(|w| &w.bytes[1]),
                        "connect_errors": s.sum(|w| &w.connect_errors_refused)
                            + s.sum(|w| &w.connect_errors_timeout)
                            + s.sum(|w| &w.connect_errors_other),
                        "checks_ok": s.checks_ok.load(Ordering::Relaxed),
                        "checks_failed": s.checks_failed.load(Ordering::Relaxed),
                    });
                    let http: serde_json::Map<String, Value> = http_routes
                        .iter()
                        .filter(|(pool, _, _)| *pool == pi)
                        .map(|(_, listener, slot)| {
                            let classes = by_class(|c| s.sum_route(*slot, |r| &r.http_responses[c]));
                            (listener.to_string(), classes_json(&classes))
                        })
                        .collect();
                    if let (false, Value::Object(map)) = (http.is_empty(), &mut v) {
                        map.insert("http_responses".into(), Value::Object(http));
                    }
                    v
                })
                .collect();
            let health = pc.health_check.as_ref().map(|h| {
                json!({
                    "kind": match h.kind { HealthKind::Tcp { .. } => "tcp", HealthKind::Http { .. } => "http" },
                    "interval_ms": h.interval.as_millis() as u64,
                    "timeout_ms": h.timeout.as_millis() as u64,
                    "rise": h.rise,
                    "fall": h.fall,
                })
            });
            json!({
                "name": p.name,
                "algorithm": pc.algorithm.as_str(),
                "on_all_down": pc.on_all_down.as_str(),
                "health_check": health,
                "backends": backends,
            })
        })
        .collect();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs_f64(),
        "demo": state.demo.is_some(),
        "dataplane": state.shared.stats.engine(),
        "token_required": inner.token.is_some(),
        "listeners": listeners,
        "pools": pools,
        "tls_stores": tls_stores_json(&snapshot),
        "events": state.events.recent(),
    })
}

/// One value per status class, from `f(class index)`.
fn by_class(f: impl Fn(usize) -> u64) -> [u64; CODE_CLASSES] {
    std::array::from_fn(f)
}

/// `{"1xx": n, ..., "5xx": n, "total": n}`.
fn classes_json(classes: &[u64; CODE_CLASSES]) -> Value {
    let mut map: serde_json::Map<String, Value> = CODE_CLASS_LABELS
        .iter()
        .zip(classes)
        .map(|(label, n)| (label.to_string(), json!(n)))
        .collect();
    map.insert("total".into(), json!(classes.iter().sum::<u64>()));
    Value::Object(map)
}

/// The `code_class` label of each status-class index (as /metrics has it).
const CODE_CLASS_LABELS: [&str; CODE_CLASSES] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The keys an HTTP listener adds to its `/api/v1/pools` entry: its TLS
/// settings, routes, responses by status class (the backends' answers
/// through it plus its own), backend response time and TLS handshakes.
fn http_listener_json(
    snapshot: &Snapshot,
    config: &Config,
    l: &Listener,
    http: &HttpListener,
) -> serde_json::Map<String, Value> {
    let pool_name = |p: usize| snapshot.pools.get(p).map(|p| p.name.as_str());
    let tls = http.tls.as_ref().map(|t| {
        let store = l
            .tls_store
            .as_ref()
            .map(|s| s.current().name().to_string())
            .or_else(|| config.tls.get(t.store).map(|s| s.name.clone()));
        json!({"store": store, "alpn": t.alpn, "min_version": t.min_version.as_str()})
    });
    let routes: Vec<Value> = http
        .routes
        .iter()
        .map(|r| {
            json!({
                "host": r.host.as_ref().map(|h| h.to_string()),
                "path_prefix": r.path_prefix,
                "pool": pool_name(r.pool.0),
            })
        })
        .collect();
    let pools = l.pools();
    let backends = || {
        pools
            .iter()
            .filter_map(|&p| snapshot.pools.get(p))
            .flat_map(|p| p.backends.iter())
    };
    let slot = l.metrics_slot;
    let proxied = by_class(|c| {
        backends()
            .map(|b| b.stats.sum_route(slot, |r| &r.http_responses[c]))
            .sum()
    });
    let local = by_class(|c| l.stats.sum(|s| &s.http_local[c]));
    let all = by_class(|c| proxied[c] + local[c]);
    let latency = {
        let histograms = || {
            backends().flat_map(|b| {
                (0..b.stats.workers()).map(move |w| {
                    &b.stats.worker(w).by_listener[slot % LISTENER_SLOTS].http_duration
                })
            })
        };
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let buckets: Vec<u64> = (0..CONNECT_BUCKETS_US.len())
            .map(|i| histograms().map(|h| load(&h.buckets[i])).sum())
            .collect();
        let overflow: u64 = histograms().map(|h| load(&h.overflow)).sum();
        let count: u64 = histograms().map(|h| load(&h.count)).sum();
        let sum_us: u64 = histograms().map(|h| load(&h.sum_us)).sum();
        latency_json(&CONNECT_BUCKETS_US, &buckets, overflow, count, sum_us)
    };
    let handshakes = l.server_config.as_ref().map(|_| {
        HANDSHAKE_RESULTS
            .iter()
            .enumerate()
            .map(|(i, r)| (r.to_string(), json!(l.stats.sum(|s| &s.tls_handshakes[i]))))
            .collect::<serde_json::Map<String, Value>>()
    });
    let mut map = serde_json::Map::new();
    map.insert("tls".into(), json!(tls));
    map.insert("redirect_https".into(), json!(http.redirect_https));
    map.insert("routes".into(), json!(routes));
    map.insert("requests".into(), classes_json(&all));
    map.insert("local_responses".into(), classes_json(&local));
    map.insert("latency".into(), latency);
    map.insert("tls_handshakes".into(), json!(handshakes));
    map
}

/// A response-time histogram as the dashboard reads it: the bucket bounds
/// and per-bucket (not cumulative) counts, so rates over a window can be
/// taken from two polls, plus the mean and p50/p99 since start, estimated
/// as Prometheus' `histogram_quantile` does (linear within a bucket).
fn latency_json(
    bounds_us: &[u64],
    buckets: &[u64],
    overflow: u64,
    count: u64,
    sum_us: u64,
) -> Value {
    let q = |q: f64| quantile(bounds_us, buckets, overflow, q).map(|us| us / 1e6);
    json!({
        "count": count,
        "sum_seconds": sum_us as f64 / 1e6,
        "mean_seconds": (count > 0).then(|| sum_us as f64 / 1e6 / count as f64),
        "p50_seconds": q(0.5),
        "p99_seconds": q(0.99),
        "bounds_seconds": bounds_us.iter().map(|&b| b as f64 / 1e6).collect::<Vec<_>>(),
        "buckets": buckets,
        "overflow": overflow,
    })
}

/// The `q` quantile (µs) of a fixed-bucket histogram, interpolated linearly
/// within its bucket (the first from 0); values past the last bound count as
/// that bound. `None` without observations.
fn quantile(bounds_us: &[u64], buckets: &[u64], overflow: u64, q: f64) -> Option<f64> {
    let total: u64 = buckets.iter().sum::<u64>() + overflow;
    if total == 0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let mut below = 0u64;
    let mut lower = 0.0;
    for (&bound, &n) in bounds_us.iter().zip(buckets) {
        let upper = bound as f64;
        if n > 0 && (below + n) as f64 >= rank {
            return Some(lower + (upper - lower) * ((rank - below as f64) / n as f64));
        }
        below += n;
        lower = upper;
    }
    bounds_us.last().map(|&b| b as f64)
}

/// Every certificate store with what it serves now.
fn tls_stores_json(snapshot: &Snapshot) -> Vec<Value> {
    snapshot
        .tls_stores
        .iter()
        .map(|store| {
            let current = store.current();
            let certs: Vec<Value> = current
                .certs()
                .into_iter()
                .map(|c| {
                    let ms = u64::try_from(c.not_after_unix)
                        .unwrap_or(0)
                        .saturating_mul(1000);
                    json!({
                        "names": c.names,
                        "not_after": crate::log::rfc3339(ms),
                        "not_after_unix": c.not_after_unix,
                        "sha256": c.fingerprint_sha256,
                        "source": c.source,
                    })
                })
                .collect();
            json!({"name": current.name(), "certs": certs})
        })
        .collect()
}

fn reload_error(e: ReloadError) -> Response {
    let status = match e {
        ReloadError::Invalid(_) | ReloadError::Token(_) | ReloadError::Tls(_) => 422,
        ReloadError::NeedsRestart(_) | ReloadError::Bind(_) => 409,
        ReloadError::NoFile => 409,
        ReloadError::TooSlow(_) => 504,
        ReloadError::CheckFailed(_) => 500,
    };
    Response::error(status, e)
}

fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, Response> {
    serde_json::from_slice(body)
        .map_err(|e| Response::error(400, format!("invalid JSON body: {e}")))
}

/// Runs `change` on a copy of the running config and applies the result.
fn mutate(
    state: &State,
    pool: &str,
    event: (&str, &'static str, String),
    change: impl FnOnce(&mut Config, usize) -> Result<(), Response>,
) -> Result<(), Response> {
    let mut config = state.inner().config.clone();
    let Some(pi) = config.pools.iter().position(|p| p.name == pool) else {
        return Err(Response::error(404, format!("no pool named {pool:?}")));
    };
    change(&mut config, pi)?;
    // `apply` holds the result to the file's rules (`Config::check_with`).
    reload::apply(state, config).map_err(reload_error)?;
    state.events.push(pool, event.0, event.1, event.2);
    Ok(())
}

fn find_backend(config: &Config, pi: usize, address: &str) -> Result<usize, Response> {
    config.pools[pi]
        .backends
        .iter()
        .position(|b| b.name == address || b.addr.to_string() == address)
        .ok_or_else(|| {
            Response::error(
                404,
                format!(
                    "pool {:?} has no backend {address:?}",
                    config.pools[pi].name
                ),
            )
        })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewBackend {
    address: String,
    #[serde(default)]
    weight: Option<u32>,
    #[serde(default)]
    backup: bool,
    #[serde(default)]
    max_connections: u32,
    #[serde(default)]
    drain: bool,
    #[serde(default)]
    disabled: bool,
}

/// The address of a backend named by the API: an IP:port at once, a
/// host:port through DNS on a blocking thread.
async fn resolve(address: &str) -> Result<SocketAddr, Response> {
    if let Ok(a) = address.parse::<SocketAddr>() {
        return Ok(a);
    }
    let name = address.to_string();
    let lookup =
        reload::off_thread(move || Ok(name.to_socket_addrs().ok().and_then(|mut a| a.next())));
    match lookup.await {
        Ok(Some(a)) => Ok(a),
        Ok(None) => Err(Response::error(
            422,
            format!("{address:?} is not an IP:port and does not resolve as host:port"),
        )),
        Err(e) => Err(reload_error(e)),
    }
}

impl NewBackend {
    fn into_config(self, addr: SocketAddr) -> BackendConfig {
        let mut b = BackendConfig::new(self.address, addr);
        b.weight = self.weight.unwrap_or(config::DEFAULT_WEIGHT);
        b.backup = self.backup;
        b.max_connections = self.max_connections;
        b.drain = self.drain;
        b.disabled = self.disabled;
        b
    }
}

async fn add_backend(state: &State, pool: &str, body: &[u8]) -> Response {
    let nb: NewBackend = match parse_json(body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let addr = match resolve(&nb.address).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let address = nb.address.clone();
    let b = nb.into_config(addr);
    let result = mutate(
        state,
        pool,
        (&address, "added", format!("weight {}", b.weight)),
        |config, pi| {
            let backends = &mut config.pools[pi].backends;
            if backends.iter().any(|o| o.addr == addr || o.name == address) {
                return Err(Response::error(
                    409,
                    format!("pool {pool:?} already has backend {address}"),
                ));
            }
            backends.push(b);
            // A pool left without a primary and the file's other rules
            // are `apply`'s to refuse, in the file's words.
            Ok(())
        },
    );
    match result {
        Ok(()) => Response::json(
            201,
            &json!({"result": "added", "pool": pool, "address": address}),
        ),
        Err(r) => r,
    }
}

/// `PUT /api/v1/pools/{pool}/backends`: the pool's whole backend set, as an
/// autoscaler or a discovery hook knows it, applied at once. Backends that
/// stay (same address) keep their health, ejection state and counters;
/// added ones start down until probed when the pool has a health check;
/// removed ones drain. A set the file would refuse changes nothing.
async fn replace_backends(state: &State, pool: &str, body: &[u8]) -> Response {
    let wanted: Vec<NewBackend> = match parse_json(body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let mut set = Vec::with_capacity(wanted.len());
    for nb in wanted {
        match resolve(&nb.address).await {
            Ok(addr) => set.push(nb.into_config(addr)),
            Err(r) => return r,
        }
    }
    let names: Vec<String> = set.iter().map(|b| b.name.clone()).collect();
    let mut before = Vec::new();
    let result = mutate(
        state,
        pool,
        ("", "replaced", format!("{} backends", names.len())),
        |config, pi| {
            before = config.pools[pi]
                .backends
                .iter()
                .map(|b| b.name.clone())
                .collect();
            config.pools[pi].backends = set;
            Ok(())
        },
    );
    match result {
        Ok(()) => {
            let added: Vec<&String> = names.iter().filter(|n| !before.contains(n)).collect();
            let removed: Vec<&String> = before.iter().filter(|n| !names.contains(n)).collect();
            Response::json(
                200,
                &json!({
                    "result": "replaced",
                    "pool": pool,
                    "backends": names.len(),
                    "added": added,
                    "removed": removed,
                }),
            )
        }
        Err(r) => r,
    }
}

fn remove_backend(state: &State, pool: &str, address: &str) -> Response {
    let result = mutate(
        state,
        pool,
        (address, "removed", String::new()),
        |config, pi| {
            let i = find_backend(config, pi, address)?;
            config.pools[pi].backends.remove(i);
            Ok(())
        },
    );
    match result {
        Ok(()) => Response::json(
            200,
            &json!({"result": "removed", "pool": pool, "address": address}),
        ),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BackendPatch {
    weight: Option<u32>,
    drain: Option<bool>,
    disabled: Option<bool>,
}

fn patch_backend(state: &State, pool: &str, address: &str, body: &[u8]) -> Response {
    let patch: BackendPatch = match parse_json(body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if patch.weight.is_none() && patch.drain.is_none() && patch.disabled.is_none() {
        return Response::error(
            400,
            "nothing to change: send any of {\"weight\": N, \"drain\": bool, \"disabled\": bool}",
        );
    }
    // Weights out of range, the last primary disabled and the like are
    // refused by `apply` with the words the config check uses for the file.
    let (event, detail) = match (patch.drain, patch.disabled, patch.weight) {
        (Some(true), _, _) => ("drain", String::new()),
        (Some(false), _, _) => ("undrain", String::new()),
        (_, Some(true), _) => ("disabled", String::new()),
        (_, Some(false), _) => ("enabled", String::new()),
        (_, _, Some(w)) => ("weight", format!("weight {w}")),
        _ => unreachable!("checked above"),
    };
    let result = mutate(state, pool, (address, event, detail), |config, pi| {
        let i = find_backend(config, pi, address)?;
        let b = &mut config.pools[pi].backends[i];
        if let Some(w) = patch.weight {
            b.weight = w;
        }
        if let Some(d) = patch.drain {
            b.drain = d;
        }
        if let Some(d) = patch.disabled {
            b.disabled = d;
        }
        Ok(())
    });
    match result {
        Ok(()) => {
            let inner = state.inner();
            let b = inner
                .config
                .pools
                .iter()
                .find(|p| p.name == pool)
                .and_then(|p| {
                    p.backends
                        .iter()
                        .find(|b| b.name == address || b.addr.to_string() == address)
                });
            match b {
                Some(b) => Response::json(
                    200,
                    &json!({"pool": pool, "address": b.name, "weight": b.weight, "drain": b.drain, "disabled": b.disabled}),
                ),
                None => Response::json(200, &json!({"pool": pool, "address": address})),
            }
        }
        Err(r) => r,
    }
}

async fn put_config(state: &State, body: &[u8]) -> Response {
    let Ok(yaml) = String::from_utf8(body.to_vec()) else {
        return Response::error(400, "the config must be UTF-8 YAML");
    };
    let new = reload::off_thread(move || config::parse_str(&yaml).map_err(ReloadError::from)).await;
    match reload::apply_and_report(state, new, "PUT /api/v1/config") {
        Ok(()) => Response::json(200, &json!({"result": "applied"})),
        Err(e) => reload_error(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoadRequest {
    #[serde(default = "default_load_seconds")]
    seconds: u64,
}

fn default_load_seconds() -> u64 {
    30
}

fn demo_load(state: &State, body: &[u8]) -> Response {
    let Some((addr, generate)) = state.demo else {
        return Response::error(404, "load generation is only available in `spliced demo`");
    };
    let req: LoadRequest = if body.is_empty() {
        LoadRequest {
            seconds: default_load_seconds(),
        }
    } else {
        match parse_json(body) {
            Ok(v) => v,
            Err(r) => return r,
        }
    };
    let seconds = req.seconds.clamp(1, 600);
    tokio::spawn(generate(addr, Duration::from_secs(seconds)));
    Response::json(
        200,
        &json!({"result": "generating load", "seconds": seconds}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_percent_escapes() {
        assert_eq!(percent_decode("127.0.0.1%3A9001"), "127.0.0.1:9001");
        assert_eq!(percent_decode("%5B%3A%3A1%5D%3A80"), "[::1]:80");
        assert_eq!(percent_decode("plain"), "plain");
        assert_eq!(percent_decode("bad%zz"), "bad%zz");
        assert_eq!(percent_decode("trail%4"), "trail%4");
    }

    #[test]
    fn quantiles_interpolate_within_buckets_like_prometheus() {
        let bounds = [1_000, 2_000, 4_000];
        assert_eq!(quantile(&bounds, &[0, 0, 0], 0, 0.5), None);
        // 10 at (0,1ms], 10 at (1,2ms]: the median is the first bucket's top.
        assert_eq!(quantile(&bounds, &[10, 10, 0], 0, 0.5), Some(1_000.0));
        // p75: halfway into the second bucket.
        assert_eq!(quantile(&bounds, &[10, 10, 0], 0, 0.75), Some(1_500.0));
        // Empty buckets below are skipped: all in (2,4ms], median 3ms.
        assert_eq!(quantile(&bounds, &[0, 0, 4], 0, 0.5), Some(3_000.0));
        // Past every bound: the last bound.
        assert_eq!(quantile(&bounds, &[1, 0, 0], 9, 0.99), Some(4_000.0));
        let v = latency_json(&bounds, &[2, 0, 0], 0, 2, 1_000);
        assert_eq!(v["mean_seconds"], 0.0005);
        assert_eq!(v["p50_seconds"], 0.0005);
        assert_eq!(v["bounds_seconds"][2], 0.004);
        assert_eq!(
            latency_json(&bounds, &[0; 3], 0, 0, 0)["mean_seconds"],
            Value::Null
        );
    }

    #[test]
    fn status_classes_have_their_labels_and_a_total() {
        let v = classes_json(&[0, 5, 1, 2, 3]);
        assert_eq!(v["2xx"], 5);
        assert_eq!(v["5xx"], 3);
        assert_eq!(v["total"], 11);
    }

    #[test]
    fn compares_tokens_exactly() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }
}
