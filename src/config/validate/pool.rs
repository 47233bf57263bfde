//! One item of `pools:`: its algorithm, ejection and hash settings; its
//! backends and health check have files of their own.

use serde_yaml::Value;

use super::backend::backends;
use super::fields::{non_empty, Fields};
use super::health::health_check;
use super::{Resolve, Seen};
use crate::config::bounds::{self, MAX_HASH_TABLE_SIZE, MIN_HASH_TABLE_SIZE};
use crate::config::model::{
    Algorithm, OnAllDown, PoolConfig, DEFAULT_EJECTION_TIME, DEFAULT_EJECT_AFTER,
    DEFAULT_HASH_TABLE_SIZE, DEFAULT_MAX_EJECTION_PERCENT, DEFAULT_MAX_EJECTION_TIME,
    DEFAULT_ON_ALL_DOWN, DEFAULT_SLOW_START,
};
use crate::config::raw::{kind, scalar_text, RawPool};
use crate::config::value::count::{is_prime, next_prime, whole_number, Count};
use crate::config::value::duration::{self, format as format_duration};
use crate::config::value::text::Name;
use crate::config::value::word::Word;
use crate::config::value::{algorithm, Bad};

const ON_ALL_DOWN: Word<'static, OnAllDown> = Word {
    all: &OnAllDown::ALL,
    name: OnAllDown::as_str,
    what: "on_all_down setting",
};

pub(super) fn pool(
    p: RawPool,
    mut f: Fields,
    resolve: Resolve,
    seen: &mut Seen,
) -> Option<PoolConfig> {
    let name = f.need("name", &p.name, &Name("web").missing(), Name("web"));
    if let Some(name) = &name {
        let (item, at) = (f.at().clone(), f.path("name"));
        seen.name(name, &item, &at, "pool", f.errors());
    }
    let algorithm = f.or(
        "algorithm",
        &p.algorithm,
        Algorithm::RoundRobin,
        algorithm::algorithm,
    );
    // The algorithm and how errors about hash settings describe it; `None`
    // when the algorithm is itself wrong (already reported).
    let hashing = algorithm.map(|a| match p.algorithm {
        None => (a, format!("{a}, the default")),
        Some(_) => (a, a.to_string()),
    });

    let backend_count = p.backends.as_ref().map_or(0, Vec::len);
    let backends = non_empty(
        p.backends,
        &f.path("backends"),
        "add at least one backend, e.g. backends: [127.0.0.1:9001]",
        f.errors(),
    )
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
    let max_ejection_time = f
        .or(
            "max_ejection_time",
            &p.max_ejection_time,
            DEFAULT_MAX_EJECTION_TIME,
            duration::POSITIVE,
        )
        .and_then(|max| match (ejection_time, &p.max_ejection_time) {
            // WHY: as for a health check's timeout, the default grows to a
            // longer ejection_time rather than fail on a key the file never wrote.
            (Some(first), None) => Some(max.max(first)),
            (Some(first), Some(value)) if max < first => {
                f.report(
                    "max_ejection_time",
                    Bad::at(
                        value,
                        format!("is shorter than ejection_time ({})", format_duration(first)),
                        format!(
                            "it caps how long repeated ejections grow: use at least {}, or lower ejection_time",
                            format_duration(first)
                        ),
                    ),
                );
                None
            }
            _ => Some(max),
        });
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

    let shown = hashing.as_ref().map(|(a, shown)| (*a, shown.as_str()));
    let hash_balance_factor = match &p.hash_balance_factor {
        None => Some(None),
        Some(value) => {
            let read =
                needs_ip_hash(value, "hash_balance_factor", shown).and_then(|()| factor(value));
            f.keep("hash_balance_factor", read).map(Some)
        }
    };
    let hash_table_size = match &p.hash_table_size {
        Some(value) => needs_ip_hash(value, "hash_table_size", shown),
        None => Ok(()),
    }
    .and_then(|()| table_size(p.hash_table_size.as_ref(), shown, backend_count));
    let hash_table_size = f.keep("hash_table_size", hash_table_size);

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
    })
}

/// The pool's algorithm and how errors describe it (`round_robin, the
/// default`); `None` when the algorithm is itself wrong (already reported).
type PoolAlgorithm<'a> = Option<(Algorithm, &'a str)>;

/// Refuses a hash setting `key` on a pool that does not hash.
fn needs_ip_hash(value: &Value, key: &str, algorithm: PoolAlgorithm) -> Result<(), Bad> {
    match algorithm {
        Some((other, algorithm)) if other != Algorithm::IpHash => Err(Bad::at(
            value,
            format!("only applies to algorithm ip_hash, and this pool uses {algorithm}"),
            format!("set algorithm: ip_hash to keep each client on one backend, or remove {key}"),
        )),
        _ => Ok(()),
    }
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

/// `hash_table_size` (`None`: the default), a prime in range and at least
/// 10 × the pool's backends when it hashes.
fn table_size(
    value: Option<&Value>,
    algorithm: PoolAlgorithm,
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
    // Maglev spreads a backend's share evenly only when the table is much
    // larger than the backend count (the paper uses 100×; 10× is the floor).
    let hashing = matches!(algorithm, Some((Algorithm::IpHash, _)));
    let needed = if hashing {
        i128::try_from(backends)
            .unwrap_or(i128::MAX)
            .saturating_mul(10)
    } else {
        0
    };
    let in_range =
        (i128::from(MIN_HASH_TABLE_SIZE)..=i128::from(MAX_HASH_TABLE_SIZE)).contains(&size);
    let problem = if !in_range {
        "is out of range".to_owned()
    } else if !is_prime(size) {
        "is not a prime".to_owned()
    } else if size < needed {
        format!("is less than 10 × the pool's {backends} backends")
    } else if let Ok(size) = u32::try_from(size) {
        return Ok(size);
    } else {
        "is out of range".to_owned()
    };
    let wanted = size
        .max(needed)
        .clamp(MIN_HASH_TABLE_SIZE.into(), MAX_HASH_TABLE_SIZE.into());
    let fix = if needed > i128::from(MAX_HASH_TABLE_SIZE) {
        format!(
            "the largest table ({MAX_HASH_TABLE_SIZE}) fits {} backends: split the pool",
            MAX_HASH_TABLE_SIZE / 10
        )
    } else {
        format!(
            "use a prime from {MIN_HASH_TABLE_SIZE} to {MAX_HASH_TABLE_SIZE} and at least 10 × the backends, e.g. {}",
            next_prime(wanted)
        )
    };
    Err(match value {
        Some(value) => Bad::new(scalar_text(value).as_deref(), problem, fix),
        None => Bad::new(
            Some(&DEFAULT_HASH_TABLE_SIZE.to_string()),
            format!("(the default) {problem}"),
            fix,
        ),
    })
}
