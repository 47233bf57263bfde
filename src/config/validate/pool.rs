//! One item of `pools:`: its algorithm, ejection and hash settings; its
//! backends and health check have files of their own.

// WHY: moved here whole from validate.rs; each section gets its own imports
// when its reads move to the field reader.
use super::backend::backend_list;
use super::health::health_check;
#[allow(unused_imports)]
use super::*;

/// Upper bound for `eject_after`: a backend failing a thousand connects in a
/// row is down by any measure; a larger number is a typo.
pub(super) const MAX_EJECT_AFTER: u64 = 1000;

/// Upper bound for `hash_balance_factor`: by 100× the average load the bound
/// no longer bounds anything.
pub(super) const MAX_HASH_BALANCE_FACTOR: f64 = 100.0;

/// Maglev table size limits: the smallest prime above 1000 (tables smaller
/// than that spread badly even over a few backends), and the smallest prime
/// above a million (the table is copied per pool and rebuilt on every change,
/// so it is kept to a few megabytes).
pub(super) const MIN_HASH_TABLE_SIZE: u32 = 1021;

pub(super) const MAX_HASH_TABLE_SIZE: u32 = 1_000_003;

pub(super) fn pool_section(
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
    // The algorithm and how errors about hash settings describe it; `None`
    // when the algorithm is itself wrong (already reported).
    let algorithm_shown = algorithm.map(|a| match pool.algorithm {
        None => (a, format!("{a}, the default")),
        Some(_) => (a, a.to_string()),
    });
    let algorithm_shown = algorithm_shown
        .as_ref()
        .map(|(a, shown)| (*a, shown.as_str()));

    let backends_path = path.key("backends");
    let backend_count = pool.backends.as_ref().map_or(0, Vec::len);
    let backends = non_empty_list(
        pool.backends,
        &backends_path,
        "add at least one backend, e.g. backends: [127.0.0.1:9001]",
        errors,
    )
    .map(|backends| backend_list(backends, &backends_path, resolve, errors));

    let health_check = match &pool.health_check {
        None => Some(None),
        Some(check) => health_check(check, &path.key("health_check"), errors).map(Some),
    };

    let eject_after = integer(
        pool.eject_after.as_ref(),
        &path.key("eject_after"),
        DEFAULT_EJECT_AFTER.into(),
        0..=MAX_EJECT_AFTER,
        errors,
    );
    let ejection_time = duration(
        pool.ejection_time.as_ref(),
        &path.key("ejection_time"),
        DEFAULT_EJECTION_TIME,
        POSITIVE,
        errors,
    );
    let max_ejection_time = max_ejection_time(
        pool.max_ejection_time.as_ref(),
        &path.key("max_ejection_time"),
        ejection_time,
        errors,
    );
    let max_ejection_percent = integer(
        pool.max_ejection_percent.as_ref(),
        &path.key("max_ejection_percent"),
        DEFAULT_MAX_EJECTION_PERCENT.into(),
        0..=100,
        errors,
    );
    let on_all_down_path = path.key("on_all_down");
    let on_all_down = match pool.on_all_down.as_ref() {
        None => Some(DEFAULT_ON_ALL_DOWN),
        Some(value) => {
            let names = OnAllDown::ALL.map(OnAllDown::as_str);
            keyword(
                value,
                &on_all_down_path,
                &names,
                "on_all_down setting",
                errors,
            )
            .and_then(|word| OnAllDown::ALL.into_iter().find(|o| o.as_str() == word))
        }
    };
    let slow_start = duration(
        pool.slow_start.as_ref(),
        &path.key("slow_start"),
        DEFAULT_SLOW_START,
        ZERO_OK,
        errors,
    );
    let hash_balance_factor = hash_balance_factor(
        pool.hash_balance_factor.as_ref(),
        &path.key("hash_balance_factor"),
        algorithm_shown,
        errors,
    );
    let hash_table_size = hash_table_size(
        pool.hash_table_size.as_ref(),
        &path.key("hash_table_size"),
        algorithm_shown,
        backend_count,
        errors,
    );

    Some(PoolConfig {
        name: name?,
        algorithm: algorithm?,
        backends: backends??,
        health_check: health_check?,
        // The ranges checked above all fit the field types.
        eject_after: u32::try_from(eject_after?).ok()?,
        ejection_time: ejection_time?,
        max_ejection_time: max_ejection_time?,
        max_ejection_percent: u8::try_from(max_ejection_percent?).ok()?,
        on_all_down: on_all_down?,
        slow_start: slow_start?,
        hash_balance_factor: hash_balance_factor?,
        hash_table_size: hash_table_size?,
    })
}

/// `max_ejection_time`, which must not be shorter than `ejection_time`.
pub(super) fn max_ejection_time(
    value: Option<&Value>,
    path: &YamlPath,
    ejection_time: Option<Duration>,
    errors: &mut Collector,
) -> Option<Duration> {
    let Some(value) = value else {
        // WHY: as for a health check's timeout, the default grows to a longer
        // ejection_time rather than fail on a key the file never wrote.
        return Some(ejection_time.map_or(DEFAULT_MAX_EJECTION_TIME, |e| {
            e.max(DEFAULT_MAX_EJECTION_TIME)
        }));
    };
    let max = duration(
        Some(value),
        path,
        DEFAULT_MAX_EJECTION_TIME,
        POSITIVE,
        errors,
    )?;
    match ejection_time {
        Some(first) if max < first => {
            errors.push(
                path,
                scalar_text(value).as_deref(),
                format!("is shorter than ejection_time ({})", format_duration(first)),
                format!(
                    "it caps how long repeated ejections grow: use at least {}, or lower ejection_time",
                    format_duration(first)
                ),
            );
            None
        }
        _ => Some(max),
    }
}

/// The pool's algorithm and how errors describe it (`round_robin, the
/// default`); `None` when the algorithm is itself wrong (already reported).
pub(super) type PoolAlgorithm<'a> = Option<(Algorithm, &'a str)>;

/// Reports a hash setting on a pool that does not hash, and says whether it did.
pub(super) fn needs_ip_hash(
    value: &Value,
    path: &YamlPath,
    key: &str,
    algorithm: PoolAlgorithm,
    errors: &mut Collector,
) -> bool {
    match algorithm {
        Some((other, algorithm)) if other != Algorithm::IpHash => {
            errors.push(
                path,
                scalar_text(value).as_deref(),
                format!("only applies to algorithm ip_hash, and this pool uses {algorithm}"),
                format!(
                    "set algorithm: ip_hash to keep each client on one backend, or remove {key}"
                ),
            );
            true
        }
        _ => false,
    }
}

pub(super) fn hash_balance_factor(
    value: Option<&Value>,
    path: &YamlPath,
    algorithm: PoolAlgorithm,
    errors: &mut Collector,
) -> Option<Option<f64>> {
    const FIX: &str = "use a number above 1 and at most 100, e.g. 1.25 (lower spreads load more evenly, higher moves fewer clients off their backend)";
    let Some(value) = value else {
        return Some(None);
    };
    if needs_ip_hash(value, path, "hash_balance_factor", algorithm, errors) {
        return None;
    }
    let number = match value {
        Value::Number(n) => n.as_f64(),
        // Quoted, as templating tools write numbers.
        Value::String(s) => s.trim().parse::<f64>().ok(),
        other => {
            errors.push(
                path,
                scalar_text(other).as_deref(),
                format!("is {}, not a number", kind(other)),
                FIX,
            );
            return None;
        }
    };
    match number {
        // Written to refuse NaN too: every comparison with it is false.
        Some(factor) if factor > 1.0 && factor <= MAX_HASH_BALANCE_FACTOR => Some(Some(factor)),
        Some(_) => {
            errors.push(path, scalar_text(value).as_deref(), "is out of range", FIX);
            None
        }
        None => {
            errors.push(path, scalar_text(value).as_deref(), "is not a number", FIX);
            None
        }
    }
}

pub(super) fn hash_table_size(
    value: Option<&Value>,
    path: &YamlPath,
    algorithm: PoolAlgorithm,
    backends: usize,
    errors: &mut Collector,
) -> Option<u32> {
    let size = match value {
        None => i128::from(DEFAULT_HASH_TABLE_SIZE),
        Some(value) => {
            if needs_ip_hash(value, path, "hash_table_size", algorithm, errors) {
                return None;
            }
            match whole_number(value) {
                Ok(size) => size,
                Err(problem) => {
                    let problem = problem.unwrap_or_else(|| "is not a whole number".to_owned());
                    errors.push(
                        path,
                        scalar_text(value).as_deref(),
                        problem,
                        format!(
                            "use a prime from {MIN_HASH_TABLE_SIZE} to {MAX_HASH_TABLE_SIZE}, e.g. {DEFAULT_HASH_TABLE_SIZE}"
                        ),
                    );
                    return None;
                }
            }
        }
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
    } else {
        return u32::try_from(size).ok();
    };
    let wanted = size
        .max(needed)
        .clamp(MIN_HASH_TABLE_SIZE.into(), MAX_HASH_TABLE_SIZE.into());
    let suggestion = next_prime(wanted);
    let fix = if needed > i128::from(MAX_HASH_TABLE_SIZE) {
        format!(
            "the largest table ({MAX_HASH_TABLE_SIZE}) fits {} backends: split the pool",
            MAX_HASH_TABLE_SIZE / 10
        )
    } else {
        format!(
            "use a prime from {MIN_HASH_TABLE_SIZE} to {MAX_HASH_TABLE_SIZE} and at least 10 × the backends, e.g. {suggestion}"
        )
    };
    let shown = match value {
        Some(value) => scalar_text(value),
        None => Some(DEFAULT_HASH_TABLE_SIZE.to_string()),
    };
    let problem = if value.is_none() {
        format!("(the default) {problem}")
    } else {
        problem
    };
    errors.push(path, shown.as_deref(), problem, fix);
    None
}
