//! The top-level settings: `workers`, `shutdown_timeout`, `limits_table_size`.

// WHY: moved here whole from validate.rs; each section gets its own imports
// when its reads move to the field reader.
#[allow(unused_imports)]
use super::*;

/// Upper bound for an explicit `workers: N`: far above any machine we target,
/// low enough to catch a typo such as `workers: 80000` before it spawns threads.
pub(super) const MAX_WORKERS: u64 = 1024;

/// `limits_table_size` bounds. Below ~1000 entries a handful of busy clients
/// would evict each other's counts; ten million entries is already around a
/// gigabyte of state, which only a typo asks for.
pub(super) const MIN_LIMITS_TABLE_SIZE: u64 = 1024;

pub(super) const MAX_LIMITS_TABLE_SIZE: u64 = 10_000_000;

pub(super) fn workers(
    value: Option<&Value>,
    path: &YamlPath,
    errors: &mut Collector,
) -> Option<usize> {
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
pub(super) fn auto_workers() -> usize {
    // If the count is unknowable (some sandboxes), one worker still works.
    std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
}
