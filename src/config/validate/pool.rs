//! One item of `pools:`: its algorithm, ejection and hash settings, and how
//! HTTP listeners speak to it (`protocol`, `backend_tls`); its backends and
//! health check have files of their own.

use std::time::Duration;

use serde_yaml::Value;

use super::backend::backends;
use super::fields::{non_empty, Fields};
use super::health::health_check;
use super::Resolve;
use crate::config::bounds::{self, MAX_HASH_TABLE_SIZE, MIN_HASH_TABLE_SIZE};
use crate::config::check::{self, Names, ADD_BACKEND};
use crate::config::model::{
    Algorithm, BackendTls, OnAllDown, PoolConfig, UpstreamProtocol, DEFAULT_EJECTION_TIME,
    DEFAULT_EJECT_AFTER, DEFAULT_HASH_TABLE_SIZE, DEFAULT_MAX_EJECTION_PERCENT,
    DEFAULT_MAX_EJECTION_TIME, DEFAULT_ON_ALL_DOWN, DEFAULT_SLOW_START,
};
use crate::config::raw::{kind, scalar_text, RawPool};
use crate::config::value::count::{whole_number, Count};
use crate::config::value::http::{backend_sni, FilePath, PROTOCOL};
use crate::config::value::text::Name;
use crate::config::value::word::{Flag, Word};
use crate::config::value::{algorithm, duration, Bad};

const ON_ALL_DOWN: Word<'static, OnAllDown> = Word {
    all: &OnAllDown::ALL,
    name: OnAllDown::as_str,
    what: "on_all_down setting",
};

pub(super) fn pool(
    p: RawPool,
    mut f: Fields,
    resolve: Resolve,
    names: &mut Names,
) -> Option<PoolConfig> {
    let name = f.need("name", &p.name, &Name("web").missing(), Name("web"));
    if let Some(name) = &name {
        let first = names.first("pool", name, f.at());
        f.keep("name", first);
    }
    let algorithm = f.or(
        "algorithm",
        &p.algorithm,
        Algorithm::RoundRobin,
        algorithm::algorithm,
    );
    // The algorithm and how errors about hash settings describe it; `None`
    // when the algorithm is itself wrong (already reported).
    let described = algorithm.map(|a| match p.algorithm {
        None => (a, format!("{a}, the default")),
        Some(_) => (a, a.to_string()),
    });

    let backend_count = p.backends.as_ref().map_or(0, Vec::len);
    let backends = non_empty(p.backends, &f.path("backends"), ADD_BACKEND, f.errors())
        .and_then(|list| backends(list, f.section("backends"), resolve));
    let health_check = match &p.health_check {
        None => Some(None),
        Some(check) => health_check(check, f.section("health_check")).map(Some),
    };

    let eject_after = f.or(
        "eject_after",
        &p.eject_after,
        DEFAULT_EJECT_AFTER,
        Count::new(bounds::EJECT_AFTER),
    );
    let ejection_time = f.or(
        "ejection_time",
        &p.ejection_time,
        DEFAULT_EJECTION_TIME,
        duration::POSITIVE,
    );
    // A longer ejection_time raises the default cap with it.
    let fit = (ejection_time, Duration::max as fn(_, _) -> _);
    let max_ejection_time = f.fitted(
        "max_ejection_time",
        &p.max_ejection_time,
        DEFAULT_MAX_EJECTION_TIME,
        fit,
        check::ejection_cap,
    );
    let max_ejection_percent = f.or(
        "max_ejection_percent",
        &p.max_ejection_percent,
        DEFAULT_MAX_EJECTION_PERCENT,
        Count::new(bounds::MAX_EJECTION_PERCENT),
    );
    let on_all_down = f.or(
        "on_all_down",
        &p.on_all_down,
        DEFAULT_ON_ALL_DOWN,
        ON_ALL_DOWN,
    );
    let slow_start = f.or(
        "slow_start",
        &p.slow_start,
        DEFAULT_SLOW_START,
        duration::ZERO_OK,
    );

    let described = described.as_ref().map(|(a, shown)| (*a, shown.as_str()));
    let hashed = |key: &str, value: &Value| match described {
        Some(algorithm) => check::needs_ip_hash(key, scalar_text(value).as_deref(), algorithm),
        None => Ok(()),
    };
    let hash_balance_factor = match &p.hash_balance_factor {
        None => Some(None),
        Some(value) => {
            let read = hashed("hash_balance_factor", value).and_then(|()| factor(value));
            f.keep("hash_balance_factor", read).map(Some)
        }
    };
    let hash_table_size = match &p.hash_table_size {
        Some(value) => hashed("hash_table_size", value),
        None => Ok(()),
    }
    .and_then(|()| table_size(p.hash_table_size.as_ref(), described, backend_count));
    let hash_table_size = f.keep("hash_table_size", hash_table_size);

    // How HTTP listeners reach the backends (a tcp listener relays bytes
    // and ignores both).
    let protocol = f.or("protocol", &p.protocol, UpstreamProtocol::Http1, PROTOCOL);
    let backend_tls = match &p.backend_tls {
        None => Some(None),
        Some(t) => {
            let mut f = f.section("backend_tls");
            let sni = f.opt("sni", &t.sni, backend_sni);
            let ca_file = f.opt("ca_file", &t.ca_file, FilePath("/etc/spliced/ca.pem"));
            let verify = f.or("verify", &t.verify, true, Flag);
            (|| {
                Some(Some(BackendTls {
                    sni: sni?,
                    ca_file: ca_file?,
                    verify: verify?,
                }))
            })()
        }
    };
    if let Some(protocol) = protocol {
        let rule = check::backend_tls(protocol, p.backend_tls.is_some());
        f.keep("backend_tls", rule);
    }

    Some(PoolConfig {
        name: name?,
        algorithm: algorithm?,
        backends: backends?,
        health_check: health_check?,
        eject_after: eject_after?,
        ejection_time: ejection_time?,
        max_ejection_time: max_ejection_time?,
        max_ejection_percent: max_ejection_percent?,
        on_all_down: on_all_down?,
        slow_start: slow_start?,
        hash_balance_factor: hash_balance_factor?,
        hash_table_size: hash_table_size?,
        protocol: protocol?,
        backend_tls: backend_tls?,
    })
}

/// `hash_balance_factor`: a number above 1.
fn factor(value: &Value) -> Result<f64, Bad> {
    const FIX: &str = "use a number above 1 and at most 100, e.g. 1.25 (lower spreads load more evenly, higher moves fewer clients off their backend)";
    let number = match value {
        Value::Number(n) => n.as_f64(),
        // Quoted, as templating tools write numbers.
        Value::String(s) => s.trim().parse::<f64>().ok(),
        other => {
            return Err(Bad::at(
                other,
                format!("is {}, not a number", kind(other)),
                FIX,
            ))
        }
    };
    match number {
        // Written to refuse NaN too: every comparison with it is false.
        Some(factor) if factor > 1.0 && factor <= bounds::MAX_HASH_BALANCE_FACTOR => Ok(factor),
        Some(_) => Err(Bad::at(value, "is out of range", FIX)),
        None => Err(Bad::at(value, "is not a number", FIX)),
    }
}

/// `hash_table_size` (`None`: the default) as the table rule in `check` sees
/// it, against the pool's `backends` entries as written.
fn table_size(
    value: Option<&Value>,
    algorithm: Option<(Algorithm, &str)>,
    backends: usize,
) -> Result<u32, Bad> {
    let size = match value {
        None => i128::from(DEFAULT_HASH_TABLE_SIZE),
        Some(value) => whole_number(value).map_err(|problem| {
            Bad::at(
                value,
                problem.unwrap_or_else(|| "is not a whole number".to_owned()),
                format!(
                    "use a prime from {MIN_HASH_TABLE_SIZE} to {MAX_HASH_TABLE_SIZE}, e.g. {DEFAULT_HASH_TABLE_SIZE}"
                ),
            )
        })?,
    };
    let hashing = matches!(algorithm, Some((Algorithm::IpHash, _)));
    check::hash_table_size(size, hashing, backends).map_err(|(problem, fix)| match value {
        Some(value) => Bad::at(value, problem, fix),
        None => Bad::new(
            Some(&DEFAULT_HASH_TABLE_SIZE.to_string()),
            format!("(the default) {problem}"),
            fix,
        ),
    })
}
