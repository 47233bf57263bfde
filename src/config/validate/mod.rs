//! Turns a [`RawConfig`] into the typed [`Config`]: interprets every value
//! (durations, addresses, names, counts), fills in defaults, and checks the
//! cross-references (listener and SNI route → pool, unique names and
//! addresses, SNI routes that could never be chosen). It reports
//! *all* problems, each with its YAML path, the bad value and a fix.
//!
//! It must never read files or stop at the first error, and it does no I/O of
//! its own: resolving backend hostnames goes through the [`Resolve`] function
//! it is given, so tests and the fuzz target never touch DNS.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use serde_yaml::Value;

use super::error::{Collector, YamlPath};
use super::model::{
    AccessLogConfig, AccessLogFormat, AccessLogTarget, AdminConfig, Algorithm, BackendConfig, Cidr,
    Config, HealthCheck, HealthKind, LimitAction, Limits, ListenerConfig, OnAllDown, PoolConfig,
    PoolId, ProxyProtocolAccept, ProxyProtocolSend, SniPattern, SniRoute, DEFAULT_BACKLOG,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_EJECTION_TIME, DEFAULT_EJECT_AFTER, DEFAULT_EXPECT_STATUS,
    DEFAULT_HASH_TABLE_SIZE, DEFAULT_HEALTH_FALL, DEFAULT_HEALTH_INTERVAL, DEFAULT_HEALTH_PATH,
    DEFAULT_HEALTH_RISE, DEFAULT_HEALTH_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_IPV6_PREFIX,
    DEFAULT_LIMITS_TABLE_SIZE, DEFAULT_LIMIT_ACTION, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_EJECTION_PERCENT, DEFAULT_MAX_EJECTION_TIME, DEFAULT_ON_ALL_DOWN,
    DEFAULT_PROXY_HEADER_TIMEOUT, DEFAULT_RETRIES, DEFAULT_SHUTDOWN_TIMEOUT, DEFAULT_SLOW_START,
    DEFAULT_TARPIT_DELAY, DEFAULT_TLS_INSPECT_TIMEOUT, DEFAULT_WEIGHT, MAX_WEIGHT,
};
use super::raw::{
    closest, kind, scalar_text, RawAccessLog, RawAdmin, RawBackend, RawConfig, RawHealthCheck,
    RawLimits, RawListener, RawPool, RawSniRoute,
};
pub(super) use super::value::address::Resolve;
use super::value::address::{Backend, Listen};
use super::value::count::{is_prime, next_prime, whole_number, Count};
use super::value::duration::{format as format_duration, Dur, POSITIVE, ZERO_OK};
use super::value::proxy::ProxySetting;
use super::value::rate::{Bandwidth, ConnectionRate};
use super::value::text::{self, header_breaker, host_name, Name, HOST_NAMES_FIX};
use super::value::word::{Flag, Word};
use super::value::{algorithm, cidr, sni, status, Bad, Kind, ListOf};

mod access_log;
mod admin;
mod backend;
mod health;
mod limits;
mod listener;
mod pool;
mod top;

use access_log::access_log_section;
use admin::admin_section;
use listener::listener_section;
use pool::pool_section;
use top::{workers, MAX_LIMITS_TABLE_SIZE, MIN_LIMITS_TABLE_SIZE};

/// Checks and converts the whole config. Returns `Some` only when nothing at
/// all was wrong, so a caller never sees a half-valid config.
pub(super) fn validate(raw: RawConfig, resolve: Resolve, errors: &mut Collector) -> Option<Config> {
    let root = YamlPath::root();

    let workers = workers(raw.workers.as_ref(), &root.key("workers"), errors);
    let shutdown_timeout = duration(
        raw.shutdown_timeout.as_ref(),
        &root.key("shutdown_timeout"),
        DEFAULT_SHUTDOWN_TIMEOUT,
        ZERO_OK,
        errors,
    );
    let limits_table_size = integer(
        raw.limits_table_size.as_ref(),
        &root.key("limits_table_size"),
        u64::try_from(DEFAULT_LIMITS_TABLE_SIZE).unwrap_or(u64::MAX),
        MIN_LIMITS_TABLE_SIZE..=MAX_LIMITS_TABLE_SIZE,
        errors,
    );
    let admin = raw
        .admin
        .as_ref()
        .map(|admin| admin_section(admin, &root.key("admin"), errors));
    let access_log = raw
        .access_log
        .as_ref()
        .map(|log| access_log_section(log, &root.key("access_log"), errors));

    // Pool names first, so a listener's `pool:` can be checked in file order.
    let pools_path = root.key("pools");
    let raw_pools = non_empty_list(
        raw.pools,
        &pools_path,
        "add at least one pool, e.g. pools: [{ name: web, backends: [127.0.0.1:9001] }]",
        errors,
    );
    let pool_names = PoolNames::new(raw_pools.as_deref().unwrap_or_default());

    let listeners_path = root.key("listeners");
    let listeners = non_empty_list(
        raw.listeners,
        &listeners_path,
        "add at least one listener, e.g. listeners: [{ name: web, listen: 0.0.0.0:8080, pool: web }]",
        errors,
    )
    .map(|listeners| {
        let mut seen = Seen::default();
        listeners
            .into_iter()
            .enumerate()
            .map(|(i, listener)| {
                let path = listeners_path.index(i);
                listener_section(listener.as_ref()?, &path, &pool_names, &mut seen, errors)
            })
            .collect::<Vec<_>>()
    });

    let pools = raw_pools.map(|pools| {
        let mut seen = Seen::default();
        pools
            .into_iter()
            .enumerate()
            .map(|(i, pool)| pool_section(pool?, &pools_path.index(i), resolve, &mut seen, errors))
            .collect::<Vec<_>>()
    });

    // The admin listener shares the machine's ports with the listeners.
    if let (Some(Some(admin)), Some(listeners)) = (&admin, &listeners) {
        let clash = listeners
            .iter()
            .enumerate()
            .find(|(_, l)| matches!(l, Some(l) if l.listen == admin.listen));
        if let Some((i, Some(listener))) = clash.filter(|_| admin.listen.port() != 0) {
            errors.push(
                &root.key("admin").key("listen"),
                Some(&admin.listen.to_string()),
                format!("is already used by listeners[{i}] ({})", listener.name),
                "give the admin API its own port, e.g. 127.0.0.1:9090",
            );
        }
    }

    if !errors.is_empty() {
        return None;
    }
    Some(Config {
        workers: workers?,
        admin: match admin {
            None => None,
            Some(admin) => Some(admin?),
        },
        shutdown_timeout: shutdown_timeout?,
        // The range checked above fits in usize.
        limits_table_size: usize::try_from(limits_table_size?).ok()?,
        access_log: match access_log {
            None => None,
            Some(log) => Some(log?),
        },
        listeners: listeners?.into_iter().collect::<Option<_>>()?,
        pools: pools?.into_iter().collect::<Option<_>>()?,
    })
}

/// Names and addresses already used, to report duplicates at the second use.
#[derive(Default)]
struct Seen {
    names: HashMap<String, String>,
    addresses: HashMap<SocketAddr, String>,
}

impl Seen {
    fn name(
        &mut self,
        name: &str,
        item: &YamlPath,
        name_path: &YamlPath,
        what: &str,
        errors: &mut Collector,
    ) {
        if let Some(first) = self.names.get(name) {
            errors.push(
                name_path,
                Some(name),
                format!("is already the name of {first}"),
                format!("give each {what} a unique name (it is a metric label)"),
            );
        } else {
            self.names.insert(name.to_owned(), item.to_string());
        }
    }
}

/// Pool names as written, for resolving and checking listeners' `pool:`.
struct PoolNames {
    /// Name → index in `pools`, which is also the index in [`Config::pools`]
    /// when the config turns out valid.
    by_name: HashMap<String, usize>,
}

impl PoolNames {
    fn new(pools: &[Option<RawPool>]) -> Self {
        let mut by_name = HashMap::new();
        for (i, pool) in pools.iter().enumerate() {
            if let Some(Value::String(name)) = pool.as_ref().and_then(|p| p.name.as_ref()) {
                by_name.entry(name.clone()).or_insert(i);
            }
        }
        PoolNames { by_name }
    }

    fn find(&self, wanted: &str, path: &YamlPath, errors: &mut Collector) -> Option<PoolId> {
        if let Some(&i) = self.by_name.get(wanted) {
            return Some(PoolId(i));
        }
        // Reported even when some pool entry was unreadable and might have been
        // the one meant: a second, related error beats a hidden one.
        let mut names: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
        names.sort_unstable();
        let fix = match (closest(wanted, &names), names.is_empty()) {
            (Some(near), _) => format!("did you mean {near}? pools defined: {}", names.join(", ")),
            (None, true) => format!("define a pool named {wanted} under pools:"),
            (None, false) => format!(
                "use one of the pools defined: {}, or add a pool named {wanted}",
                names.join(", ")
            ),
        };
        errors.push(path, Some(wanted), "does not name a pool", fix);
        None
    }
}

fn required<'a>(
    value: Option<&'a Value>,
    path: &YamlPath,
    fix: &str,
    errors: &mut Collector,
) -> Option<&'a Value> {
    if value.is_none() {
        errors.push(path, None, "is missing", fix);
    }
    value
}

fn non_empty_list<T>(
    list: Option<Vec<T>>,
    path: &YamlPath,
    fix: &str,
    errors: &mut Collector,
) -> Option<Vec<T>> {
    match list {
        None => {
            errors.push(path, None, "is missing", fix);
            None
        }
        Some(list) if list.is_empty() => {
            errors.push(path, None, "is empty", fix);
            None
        }
        Some(list) => Some(list),
    }
}

/// Records `bad` at `path`, each bad item of a list at its index.
fn record(path: &YamlPath, bad: Bad, errors: &mut Collector) {
    match bad {
        Bad::Value {
            shown,
            problem,
            fix,
        } => errors.push(path, shown.as_deref(), problem, fix),
        Bad::Items(items) => {
            for (i, bad) in items {
                record(&path.index(i), bad, errors);
            }
        }
    }
}

/// `value` read as `kind`, or `None` with the problem recorded at `path`.
fn read<K: Kind>(
    kind: K,
    value: &Value,
    path: &YamlPath,
    errors: &mut Collector,
) -> Option<K::Out> {
    kind.read(value)
        .map_err(|bad| record(path, bad, errors))
        .ok()
}

/// As [`read`], with `default` when the value is absent.
fn read_or<K: Kind>(
    kind: K,
    value: Option<&Value>,
    default: K::Out,
    path: &YamlPath,
    errors: &mut Collector,
) -> Option<K::Out> {
    match value {
        None => Some(default),
        Some(value) => kind
            .read_or(value, &default)
            .map_err(|bad| record(path, bad, errors))
            .ok(),
    }
}

fn duration(
    value: Option<&Value>,
    path: &YamlPath,
    default: Duration,
    kind: Dur,
    errors: &mut Collector,
) -> Option<Duration> {
    read_or(kind, value, default, path, errors)
}

fn integer(
    value: Option<&Value>,
    path: &YamlPath,
    default: u64,
    range: RangeInclusive<u64>,
    errors: &mut Collector,
) -> Option<u64> {
    read_or(Count::new(range), value, default, path, errors)
}

fn boolean(
    value: Option<&Value>,
    path: &YamlPath,
    default: bool,
    errors: &mut Collector,
) -> Option<bool> {
    read_or(Flag, value, default, path, errors)
}

fn keyword(
    value: &Value,
    path: &YamlPath,
    allowed: &[&'static str],
    what: &str,
    errors: &mut Collector,
) -> Option<&'static str> {
    let word = Word {
        all: allowed,
        name: |w| w,
        what,
    };
    read(word, value, path, errors)
}

fn string<'a>(
    value: &'a Value,
    path: &YamlPath,
    expected: &str,
    errors: &mut Collector,
) -> Option<&'a str> {
    text::string(value, expected)
        .map_err(|bad| record(path, bad, errors))
        .ok()
}

fn name(
    value: Option<&Value>,
    path: &YamlPath,
    example: &str,
    errors: &mut Collector,
) -> Option<String> {
    let name = Name(example);
    let value = required(value, path, &name.missing(), errors)?;
    read(name, value, path, errors)
}

fn listen_address(
    value: &Value,
    path: &YamlPath,
    example: &str,
    errors: &mut Collector,
) -> Option<SocketAddr> {
    read(Listen(example), value, path, errors)
}

fn backend_address(
    value: &Value,
    path: &YamlPath,
    resolve: Resolve,
    errors: &mut Collector,
) -> Option<(String, SocketAddr)> {
    read(Backend(resolve), value, path, errors)
}

fn cidr_list(value: Option<&Value>, path: &YamlPath, errors: &mut Collector) -> Option<Vec<Cidr>> {
    read_or(cidr::LIST, value, Vec::new(), path, errors)
}

fn alpn_list(
    value: Option<&Value>,
    path: &YamlPath,
    errors: &mut Collector,
) -> Option<Vec<String>> {
    read_or(sni::ALPN, value, Vec::new(), path, errors)
}

fn algorithm(value: Option<&Value>, path: &YamlPath, errors: &mut Collector) -> Option<Algorithm> {
    read_or(
        algorithm::algorithm,
        value,
        Algorithm::RoundRobin,
        path,
        errors,
    )
}

fn expect_status(
    value: Option<&Value>,
    path: &YamlPath,
    errors: &mut Collector,
) -> Option<Vec<RangeInclusive<u16>>> {
    read_or(
        status::expect_status,
        value,
        vec![DEFAULT_EXPECT_STATUS],
        path,
        errors,
    )
}
