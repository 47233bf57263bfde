//! Turns a [`RawConfig`] into the typed [`Config`]: interprets every value
//! (durations, addresses, names, counts), fills in defaults, and checks the
//! cross-references (listener → pool, unique names and addresses). It reports
//! *all* problems, each with its YAML path, the bad value and a fix.
//!
//! It must never read files or stop at the first error, and it does no I/O of
//! its own: resolving backend hostnames goes through the [`Resolve`] function
//! it is given, so tests and the fuzz target never touch DNS.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use serde_yaml::Value;

use super::error::{Collector, YamlPath};
use super::model::{
    AdminConfig, Algorithm, BackendConfig, Config, ListenerConfig, PoolConfig, PoolId,
    DEFAULT_BACKLOG, DEFAULT_CONNECT_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_RETRIES, DEFAULT_SHUTDOWN_TIMEOUT,
};
use super::raw::{
    closest, kind, scalar_text, RawAdmin, RawBackend, RawConfig, RawListener, RawPool,
};

/// Resolves a backend `host`name with `port` to the one address to use.
pub(super) type Resolve<'a> = &'a dyn Fn(&str, u16) -> io::Result<SocketAddr>;

/// Longest duration accepted anywhere. The data plane adds these to clock
/// readings and `io_uring` timespecs; a year is far beyond any sensible timeout
/// and keeps that arithmetic nowhere near overflow.
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
/// Upper bound for an explicit `workers: N`: far above any machine we target,
/// low enough to catch a typo such as `workers: 80000` before it spawns threads.
const MAX_WORKERS: u64 = 1024;
/// Upper bound for `retries`: each retry costs a connect timeout, so more than
/// this only delays the client's error.
const MAX_RETRIES: u64 = 16;
/// `listen(2)` backlog limit; the kernel further caps it at `net.core.somaxconn`.
const MAX_BACKLOG: u64 = 65535;

/// Algorithms the design names but this version does not implement yet; they
/// get "not implemented yet" rather than "unknown" (DESIGN.md §3).
const PLANNED_ALGORITHMS: &[&str] = &[
    "weighted_round_robin",
    "least_connections",
    "ip_hash",
    "random",
    "p2c",
];

/// Checks and converts the whole config. Returns `Some` only when nothing at
/// all was wrong, so a caller never sees a half-valid config.
pub(super) fn validate(raw: RawConfig, resolve: Resolve, errors: &mut Collector) -> Option<Config> {
    let root = YamlPath::root();

    let workers = workers(raw.workers.as_ref(), &root.key("workers"), errors);
    let shutdown_timeout = duration(
        raw.shutdown_timeout.as_ref(),
        &root.key("shutdown_timeout"),
        DEFAULT_SHUTDOWN_TIMEOUT,
        AllowZero::Yes,
        errors,
    );
    let admin = raw
        .admin
        .as_ref()
        .map(|admin| admin_section(admin, &root.key("admin"), errors));

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
        listeners: listeners?.into_iter().collect::<Option<_>>()?,
        pools: pools?.into_iter().collect::<Option<_>>()?,
    })
}

fn admin_section(admin: &RawAdmin, path: &YamlPath, errors: &mut Collector) -> Option<AdminConfig> {
    let listen_path = path.key("listen");
    let listen = required(
        admin.listen.as_ref(),
        &listen_path,
        "add listen: 127.0.0.1:9090",
        errors,
    )
    .and_then(|v| listen_address(v, &listen_path, "127.0.0.1:9090", errors));
    let token_path = path.key("token_file");
    let token_file = match admin.token_file.as_ref() {
        None => Some(None),
        Some(v) => string(
            v,
            &token_path,
            "a file path, e.g. /etc/spliced/admin.token",
            errors,
        )
        .and_then(|text| {
            if text.trim().is_empty() {
                errors.push(
                    &token_path,
                    Some(text),
                    "is an empty path",
                    "give the path of a file holding the token, or remove token_file",
                );
                None
            } else {
                Some(Some(PathBuf::from(text)))
            }
        }),
    };
    Some(AdminConfig {
        listen: listen?,
        token_file: token_file?,
    })
}

fn listener_section(
    listener: &RawListener,
    path: &YamlPath,
    pools: &PoolNames,
    seen: &mut Seen,
    errors: &mut Collector,
) -> Option<ListenerConfig> {
    let name_path = path.key("name");
    let name = name(listener.name.as_ref(), &name_path, "web", errors);
    if let Some(name) = &name {
        seen.name(name, path, &name_path, "listener", errors);
    }

    let listen_path = path.key("listen");
    let listen = required(
        listener.listen.as_ref(),
        &listen_path,
        "add listen: 0.0.0.0:8080",
        errors,
    )
    .and_then(|v| listen_address(v, &listen_path, "0.0.0.0:8080", errors));
    if let Some(listen) = listen {
        // Port 0 means "any free port": two of those never collide. Otherwise
        // SO_REUSEPORT would let both bind and silently split the traffic.
        if listen.port() != 0 {
            let label = format!("{path} ({})", name.as_deref().unwrap_or("unnamed"));
            if let Some(first) = seen.addresses.get(&listen) {
                errors.push(
                    &listen_path,
                    Some(&listen.to_string()),
                    format!("is already used by {first}"),
                    "give each listener its own address (port 0 lets the kernel pick one)",
                );
            } else {
                seen.addresses.insert(listen, label);
            }
        }
    }

    let pool_path = path.key("pool");
    let pool = required(
        listener.pool.as_ref(),
        &pool_path,
        "add pool: <name of a pool>",
        errors,
    )
    .and_then(|v| string(v, &pool_path, "the name of a pool", errors))
    .and_then(|wanted| pools.find(wanted, &pool_path, errors));

    let connect_timeout = duration(
        listener.connect_timeout.as_ref(),
        &path.key("connect_timeout"),
        DEFAULT_CONNECT_TIMEOUT,
        AllowZero::No,
        errors,
    );
    let idle_timeout = duration(
        listener.idle_timeout.as_ref(),
        &path.key("idle_timeout"),
        DEFAULT_IDLE_TIMEOUT,
        AllowZero::No,
        errors,
    );
    let retries = integer(
        listener.retries.as_ref(),
        &path.key("retries"),
        DEFAULT_RETRIES.into(),
        0..=MAX_RETRIES,
        errors,
    );
    let max_connections = integer(
        listener.max_connections.as_ref(),
        &path.key("max_connections"),
        DEFAULT_MAX_CONNECTIONS.into(),
        1..=u32::MAX.into(),
        errors,
    );
    let backlog = integer(
        listener.backlog.as_ref(),
        &path.key("backlog"),
        DEFAULT_BACKLOG.into(),
        1..=MAX_BACKLOG,
        errors,
    );

    Some(ListenerConfig {
        name: name?,
        listen: listen?,
        pool: pool?,
        connect_timeout: connect_timeout?,
        idle_timeout: idle_timeout?,
        // The ranges above all fit in u32.
        retries: u32::try_from(retries?).ok()?,
        max_connections: u32::try_from(max_connections?).ok()?,
        backlog: u32::try_from(backlog?).ok()?,
    })
}

fn pool_section(
    pool: RawPool,
    path: &YamlPath,
    resolve: Resolve,
    seen: &mut Seen,
    errors: &mut Collector,
) -> Option<PoolConfig> {
    let name_path = path.key("name");
    let name = name(pool.name.as_ref(), &name_path, "web", errors);
    if let Some(name) = &name {
        seen.name(name, path, &name_path, "pool", errors);
    }

    let algorithm = algorithm(pool.algorithm.as_ref(), &path.key("algorithm"), errors);

    let backends_path = path.key("backends");
    let backends = non_empty_list(
        pool.backends,
        &backends_path,
        "add at least one backend, e.g. backends: [127.0.0.1:9001]",
        errors,
    )
    .map(|backends| {
        let mut seen: HashMap<SocketAddr, YamlPath> = HashMap::new();
        let mut seen_names: HashMap<String, YamlPath> = HashMap::new();
        backends
            .into_iter()
            .enumerate()
            .map(|(i, backend)| {
                let (path, text) = match backend? {
                    RawBackend::Short(text) => (backends_path.index(i), Value::String(text)),
                    RawBackend::Full(entry) => {
                        let path = backends_path.index(i).key("address");
                        let text = required(
                            entry.address.as_ref(),
                            &path,
                            "add address: host:port, e.g. address: 127.0.0.1:9001",
                            errors,
                        )?
                        .clone();
                        (path, text)
                    }
                };
                let backend = backend_address(&text, &path, resolve, errors)?;
                // Listing a backend twice would double its share silently;
                // weights are the way to do that on purpose.
                let earlier = seen_names
                    .get(&backend.name.to_ascii_lowercase())
                    .or_else(|| seen.get(&backend.addr));
                if let Some(earlier) = earlier {
                    errors.push(
                        &path,
                        Some(&backend.name),
                        format!("is the same backend as {earlier}"),
                        "list each backend once per pool",
                    );
                    return None;
                }
                seen.insert(backend.addr, path.clone());
                seen_names.insert(backend.name.to_ascii_lowercase(), path);
                Some(backend)
            })
            .collect::<Vec<_>>()
    });

    Some(PoolConfig {
        name: name?,
        algorithm: algorithm?,
        backends: backends?.into_iter().collect::<Option<_>>()?,
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

fn workers(value: Option<&Value>, path: &YamlPath, errors: &mut Collector) -> Option<usize> {
    const FIX: &str = "use auto (one per CPU) or a whole number from 1 to 1024";
    let Some(value) = value else {
        return Some(auto_workers());
    };
    if value.as_str() == Some("auto") {
        return Some(auto_workers());
    }
    match whole_number(value) {
        Ok(n) if (1..=i128::from(MAX_WORKERS)).contains(&n) => usize::try_from(n).ok(),
        Ok(_) => {
            errors.push(path, scalar_text(value).as_deref(), "is out of range", FIX);
            None
        }
        Err(problem) => {
            let problem = problem.unwrap_or_else(|| "is not a worker count".to_owned());
            errors.push(path, scalar_text(value).as_deref(), problem, FIX);
            None
        }
    }
}

/// One worker per CPU the process may run on.
fn auto_workers() -> usize {
    // If the count is unknowable (some sandboxes), one worker still works.
    std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

fn algorithm(value: Option<&Value>, path: &YamlPath, errors: &mut Collector) -> Option<Algorithm> {
    let implemented: Vec<&str> = Algorithm::ALL.iter().map(|a| a.as_str()).collect();
    let Some(value) = value else {
        return Some(Algorithm::RoundRobin);
    };
    let name = string(value, path, "an algorithm name, e.g. round_robin", errors)?;
    if let Some(algorithm) = Algorithm::ALL.iter().find(|a| a.as_str() == name) {
        return Some(*algorithm);
    }
    if PLANNED_ALGORITHMS.contains(&name) {
        errors.push(
            path,
            Some(name),
            "is not implemented yet in this version",
            format!("use {}", implemented.join(" or ")),
        );
    } else {
        let mut known = implemented.clone();
        known.extend(PLANNED_ALGORITHMS);
        let hint = match closest(name, &known) {
            Some(near) => format!("did you mean {near}? "),
            None => String::new(),
        };
        errors.push(
            path,
            Some(name),
            "is not a known algorithm",
            format!(
                "{hint}use {} (planned, not implemented yet: {})",
                implemented.join(" or "),
                PLANNED_ALGORITHMS.join(", ")
            ),
        );
    }
    None
}

/// A listener or pool name: it becomes a metric label and appears in API
/// paths, so it is kept to a charset that needs no escaping anywhere.
fn name(
    value: Option<&Value>,
    path: &YamlPath,
    example: &str,
    errors: &mut Collector,
) -> Option<String> {
    let value = required(
        value,
        path,
        &format!("add name: <unique name>, e.g. name: {example}"),
        errors,
    )?;
    let name = string(value, path, &format!("a name, e.g. {example}"), errors)?;
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !valid {
        errors.push(
            path,
            Some(name),
            "is not a valid name",
            format!("use only letters, digits, '_', '.' and '-', e.g. {example}"),
        );
        return None;
    }
    Some(name.to_owned())
}

/// Whether a zero duration makes sense for a setting.
#[derive(Clone, Copy, PartialEq)]
enum AllowZero {
    Yes,
    No,
}

fn duration(
    value: Option<&Value>,
    path: &YamlPath,
    default: Duration,
    zero: AllowZero,
    errors: &mut Collector,
) -> Option<Duration> {
    let Some(value) = value else {
        return Some(default);
    };
    let example = format_duration(default);
    let text = match value {
        Value::String(text) => text.as_str(),
        Value::Number(_) => {
            // A bare number is ambiguous (seconds? milliseconds?), so it is
            // refused even when it is 0 rather than guessed.
            errors.push(
                path,
                scalar_text(value).as_deref(),
                "is a number without a unit",
                format!("add a unit, e.g. {example} (units: ms, s, m, h)"),
            );
            return None;
        }
        other => {
            errors.push(
                path,
                scalar_text(other).as_deref(),
                format!("is {}, not a duration", kind(other)),
                format!("write a number and a unit, e.g. {example}"),
            );
            return None;
        }
    };
    match parse_duration(text) {
        Ok(d) if d.is_zero() && zero == AllowZero::No => {
            errors.push(
                path,
                Some(text),
                "must be longer than zero",
                format!("use e.g. {example}"),
            );
            None
        }
        Ok(d) => Some(d),
        Err(BadDuration::NoUnit) => {
            errors.push(
                path,
                Some(text),
                "is a number without a unit",
                format!("add a unit, e.g. {example} (units: ms, s, m, h)"),
            );
            None
        }
        Err(BadDuration::Malformed) => {
            errors.push(
                path,
                Some(text),
                "is not a duration",
                format!(
                    "write a number and one unit (ms, s, m or h), e.g. 250ms, 1.5s or {example}"
                ),
            );
            None
        }
        Err(BadDuration::TooLong) => {
            errors.push(
                path,
                Some(text),
                "is too long",
                format!("use at most {}", format_duration(MAX_DURATION)),
            );
            None
        }
    }
}

#[derive(Debug, PartialEq)]
enum BadDuration {
    /// `2`, `1.5`: the number is fine, the unit is missing.
    NoUnit,
    Malformed,
    /// Longer than [`MAX_DURATION`].
    TooLong,
}

/// Parses `250ms`, `2s`, `1.5s`, `5m`, `1h`: one non-negative decimal number
/// and one unit. Exact to the nanosecond (no floating point), so `0.1s` is
/// exactly 100ms.
fn parse_duration(text: &str) -> Result<Duration, BadDuration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let well_formed = !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.bytes().all(|b| b.is_ascii_digit())
        && !(number.contains('.') && fraction.is_empty());
    if !well_formed {
        return Err(BadDuration::Malformed);
    }
    let unit_nanos: u128 = match unit {
        "" => return Err(BadDuration::NoUnit),
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60 * 1_000_000_000,
        "h" => 3600 * 1_000_000_000,
        _ => return Err(BadDuration::Malformed),
    };
    let max = MAX_DURATION.as_nanos();
    let whole = whole.trim_start_matches('0');
    // Anything with more digits than this is over a year in any unit; checking
    // the length first keeps the parse below from overflowing.
    if whole.len() > 20 {
        return Err(BadDuration::TooLong);
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| BadDuration::Malformed)?
    };
    // Digits beyond 15 are below a nanosecond even for hours; dropping them
    // keeps `fraction * unit` inside u128.
    let fraction = &fraction[..fraction.len().min(15)];
    let fraction_nanos = if fraction.is_empty() {
        0
    } else {
        let digits: u128 = fraction.parse().map_err(|_| BadDuration::Malformed)?;
        digits * unit_nanos / 10u128.pow(fraction.len() as u32)
    };
    let nanos = whole
        .checked_mul(unit_nanos)
        .and_then(|n| n.checked_add(fraction_nanos))
        .filter(|&n| n <= max)
        .ok_or(BadDuration::TooLong)?;
    Ok(Duration::from_nanos(
        u64::try_from(nanos).map_err(|_| BadDuration::TooLong)?,
    ))
}

/// Writes a duration the way a config would: `2s`, `5m`, `250ms`.
fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 3_600_000 == 0 && ms > 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms % 60_000 == 0 && ms > 0 {
        format!("{}m", ms / 60_000)
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

fn integer(
    value: Option<&Value>,
    path: &YamlPath,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
    errors: &mut Collector,
) -> Option<u64> {
    let Some(value) = value else {
        return Some(default);
    };
    let fix = if *range.end() == u64::from(u32::MAX) {
        format!("use a whole number of at least {}", range.start())
    } else {
        format!(
            "use a whole number from {} to {}",
            range.start(),
            range.end()
        )
    };
    match whole_number(value) {
        Ok(n) if n >= i128::from(*range.start()) && n <= i128::from(*range.end()) => {
            u64::try_from(n).ok()
        }
        Ok(_) => {
            errors.push(path, scalar_text(value).as_deref(), "is out of range", fix);
            None
        }
        Err(problem) => {
            let problem = problem.unwrap_or_else(|| "is not a whole number".to_owned());
            errors.push(path, scalar_text(value).as_deref(), problem, fix);
            None
        }
    }
}

/// Reads a whole number from a YAML integer or a quoted one (`"8"`, which
/// templating tools often produce). `Err(Some(problem))` names a wrong type;
/// `Err(None)` is a scalar that is not a whole number.
fn whole_number(value: &Value) -> Result<i128, Option<String>> {
    match value {
        Value::Number(n) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
            .ok_or(None),
        Value::String(s) => {
            let s = s.trim();
            let digits = s.strip_prefix('-').unwrap_or(s);
            if digits.is_empty() || digits.len() > 30 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(None);
            }
            s.parse::<i128>().map_err(|_| None)
        }
        other => Err(Some(format!("is {}, not a number", kind(other)))),
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

fn string<'a>(
    value: &'a Value,
    path: &YamlPath,
    expected: &str,
    errors: &mut Collector,
) -> Option<&'a str> {
    match value {
        Value::String(text) => Some(text),
        other => {
            let fix = match other {
                // `name: 8080` parses as a number; quoting keeps it a string.
                Value::Number(_) | Value::Bool(_) => {
                    format!("write {expected}; quote it if it looks like a number or true/false")
                }
                _ => format!("write {expected}"),
            };
            errors.push(
                path,
                scalar_text(other).as_deref(),
                format!("is {}, not text", kind(other)),
                fix,
            );
            None
        }
    }
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

/// An address to bind: an IP literal and a port (0 = any free port). Hostnames
/// are refused because a name can resolve to an address this host does not own.
fn listen_address(
    value: &Value,
    path: &YamlPath,
    example: &str,
    errors: &mut Collector,
) -> Option<SocketAddr> {
    let fix = format!(
        "use IP:port, e.g. {example} or [::]:{}",
        example.rsplit(':').next().unwrap_or("8080")
    );
    let Value::String(text) = value else {
        errors.push(
            path,
            scalar_text(value).as_deref(),
            format!("is {}, not an address", kind(value)),
            fix,
        );
        return None;
    };
    match split_address(text.trim()) {
        Ok((Host::Ip(ip), port)) => Some(SocketAddr::new(ip, port)),
        Ok((Host::Name(_), _)) => {
            errors.push(
                path,
                Some(text),
                "is not a valid address (a listen address must be an IP, not a hostname)",
                fix,
            );
            None
        }
        Err(detail) => {
            errors.push(
                path,
                Some(text),
                format!("is not a valid address ({detail})"),
                fix,
            );
            None
        }
    }
}

/// A backend: IP:port or hostname:port, port 1..=65535. Hostnames are
/// resolved now, once; the first address is used.
fn backend_address(
    value: &Value,
    path: &YamlPath,
    resolve: Resolve,
    errors: &mut Collector,
) -> Option<BackendConfig> {
    const FIX: &str = "use host:port, e.g. 127.0.0.1:9001, [::1]:9001 or backend.internal:9001";
    let Value::String(text) = value else {
        errors.push(
            path,
            scalar_text(value).as_deref(),
            format!("is {}, not an address", kind(value)),
            FIX,
        );
        return None;
    };
    let name = text.trim();
    let (host, port) = match split_address(name) {
        Ok(parts) => parts,
        Err(detail) => {
            errors.push(
                path,
                Some(text),
                format!("is not a valid address ({detail})"),
                FIX,
            );
            return None;
        }
    };
    if port == 0 {
        errors.push(
            path,
            Some(text),
            "is not a valid address (port 0 cannot be connected to)",
            "use the port the backend listens on, 1 to 65535",
        );
        return None;
    }
    let addr = match host {
        Host::Ip(ip) => SocketAddr::new(ip, port),
        Host::Name(host) => match resolve(host, port) {
            Ok(addr) => addr,
            Err(e) => {
                errors.push(
                    path,
                    Some(text),
                    format!("could not be resolved ({e})"),
                    "check the hostname and DNS, or use an IP address",
                );
                return None;
            }
        },
    };
    Some(BackendConfig {
        name: name.to_owned(),
        addr,
    })
}

enum Host<'a> {
    Ip(IpAddr),
    Name(&'a str),
}

/// Splits `host:port`, saying precisely what is wrong when it is not one.
fn split_address(text: &str) -> Result<(Host<'_>, u16), String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok((Host::Ip(addr.ip()), addr.port()));
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err("no port".to_owned());
    };
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port {port:?} is not a number"));
    }
    let Ok(port) = port.parse::<u16>() else {
        return Err(format!("port {port} is above 65535"));
    };
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return match inner.parse::<Ipv6Addr>() {
            Ok(ip) => Ok((Host::Ip(IpAddr::V6(ip)), port)),
            Err(_) => Err(format!("{inner:?} is not an IPv6 address")),
        };
    }
    if host.contains(':') {
        return Err("an IPv6 address needs brackets, e.g. [::1]:9001".to_owned());
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        // Unreachable in practice (the whole string would have parsed), kept
        // so an odd form is never misread as a hostname.
        return Ok((Host::Ip(ip), port));
    }
    if is_hostname(host) {
        Ok((Host::Name(host), port))
    } else {
        Err(format!("{host:?} is neither an IP address nor a hostname"))
    }
}

/// RFC 1123-ish: dot-separated labels of letters, digits, '-' (and '_', which
/// internal DNS often has), and a last label that is not all digits so a
/// mistyped IPv4 address (`10.0.0.300`) is never sent to DNS as a name.
fn is_hostname(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    let labels_ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    labels_ok
        && !host
            .rsplit('.')
            .next()
            .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_exactly() {
        let ok = [
            ("250ms", Duration::from_millis(250)),
            ("2s", Duration::from_secs(2)),
            ("1.5s", Duration::from_millis(1500)),
            ("0.1s", Duration::from_millis(100)),
            ("5m", Duration::from_secs(300)),
            ("1h", Duration::from_secs(3600)),
            ("0s", Duration::ZERO),
            ("0.0005ms", Duration::from_nanos(500)),
            ("007s", Duration::from_secs(7)),
            ("8760h", MAX_DURATION),
        ];
        for (text, want) in ok {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn bad_durations_say_why() {
        for text in ["2", "0", "1.5", "0000"] {
            assert_eq!(parse_duration(text), Err(BadDuration::NoUnit), "{text}");
        }
        for text in [
            "", "s", "2 s", "2sec", "-1s", "1.s", ".5s", "1.2.3s", "1m30s", "2S", "+2s", "1e3s",
            "∞s",
        ] {
            assert_eq!(parse_duration(text), Err(BadDuration::Malformed), "{text}");
        }
        for text in [
            "8761h",
            "99999999999999999999999999999999h",
            "1000000000000000000000ms",
        ] {
            assert_eq!(parse_duration(text), Err(BadDuration::TooLong), "{text}");
        }
    }

    #[test]
    fn durations_print_as_written() {
        assert_eq!(format_duration(Duration::from_secs(2)), "2s");
        assert_eq!(format_duration(Duration::from_secs(300)), "5m");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(MAX_DURATION), "8760h");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn addresses_split_with_precise_reasons() {
        let ip = |text: &str| match split_address(text) {
            Ok((Host::Ip(ip), port)) => SocketAddr::new(ip, port),
            _ => panic!("{text} should be an IP address"),
        };
        assert_eq!(ip("0.0.0.0:8080"), "0.0.0.0:8080".parse().unwrap());
        assert_eq!(ip("[::]:0"), "[::]:0".parse().unwrap());
        assert_eq!(ip("[::1]:9001"), "[::1]:9001".parse().unwrap());
        assert!(matches!(
            split_address("db.internal:5432"),
            Ok((Host::Name("db.internal"), 5432))
        ));
        assert!(matches!(
            split_address("localhost:1"),
            Ok((Host::Name("localhost"), 1))
        ));

        let reason = |text: &str| match split_address(text) {
            Err(reason) => reason,
            Ok(_) => panic!("{text} should be refused"),
        };
        assert_eq!(reason("0.0.0.0:99999"), "port 99999 is above 65535");
        assert_eq!(reason("127.0.0.1"), "no port");
        assert_eq!(reason("127.0.0.1:"), "port \"\" is not a number");
        assert_eq!(reason("127.0.0.1:+80"), "port \"+80\" is not a number");
        assert_eq!(reason("127.0.0.1:http"), "port \"http\" is not a number");
        assert!(reason("::1:9001").contains("needs brackets"));
        assert!(reason("[1.2.3.4]:80").contains("not an IPv6 address"));
        assert!(reason("10.0.0.300:80").contains("neither an IP address nor a hostname"));
        assert!(reason("bad host:80").contains("neither"));
        assert!(reason("-a.b:80").contains("neither"));
        assert!(reason(":80").contains("neither"));
    }
}
