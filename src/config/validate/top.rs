//! The settings at the top level of the file: `workers`, `dataplane`,
//! `shutdown_timeout` and `limits_table_size` (the sections under it have
//! files of their own).

use std::num::NonZeroUsize;
use std::time::Duration;

use serde_yaml::Value;

use super::fields::Fields;
use crate::config::bounds;
use crate::config::model::{Dataplane, DEFAULT_LIMITS_TABLE_SIZE, DEFAULT_SHUTDOWN_TIMEOUT};
use crate::config::raw::RawConfig;
use crate::config::value::count::{whole_number, Count};
use crate::config::value::word::Word;
use crate::config::value::{duration, Bad};

/// `dataplane`: the L4 engine.
const DATAPLANE: Word<'static, Dataplane> = Word {
    all: &Dataplane::ALL,
    name: Dataplane::as_str,
    what: "data plane engine",
};

/// The top-level settings, each `None` when it was bad (and reported).
pub(super) struct Settings {
    pub workers: Option<usize>,
    pub dataplane: Option<Dataplane>,
    pub shutdown_timeout: Option<Duration>,
    pub limits_table_size: Option<usize>,
}

pub(super) fn settings(raw: &RawConfig, f: &mut Fields) -> Settings {
    Settings {
        workers: f.or("workers", &raw.workers, auto_workers(), workers),
        dataplane: f.or("dataplane", &raw.dataplane, Dataplane::Auto, DATAPLANE),
        shutdown_timeout: f.or(
            "shutdown_timeout",
            &raw.shutdown_timeout,
            DEFAULT_SHUTDOWN_TIMEOUT,
            duration::ZERO_OK,
        ),
        limits_table_size: f.or(
            "limits_table_size",
            &raw.limits_table_size,
            DEFAULT_LIMITS_TABLE_SIZE,
            Count::new(bounds::LIMITS_TABLE_SIZE),
        ),
    }
}

/// `workers`: `auto` (one per CPU) or a count.
fn workers(value: &Value) -> Result<usize, Bad> {
    const FIX: &str = "use auto (one per CPU) or a whole number from 1 to 1024";
    if value.as_str() == Some("auto") {
        return Ok(auto_workers());
    }
    let out_of_range = || Bad::at(value, "is out of range", FIX);
    match whole_number(value) {
        Ok(n)
            if n >= i128::from(*bounds::WORKERS.start())
                && n <= i128::from(*bounds::WORKERS.end()) =>
        {
            usize::try_from(n).map_err(|_| out_of_range())
        }
        Ok(_) => Err(out_of_range()),
        Err(problem) => Err(Bad::at(
            value,
            problem.unwrap_or_else(|| "is not a worker count".to_owned()),
            FIX,
        )),
    }
}

/// One worker per CPU the process may run on.
fn auto_workers() -> usize {
    // If the count is unknowable (some sandboxes), one worker still works.
    std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::value::testing::read;

    #[test]
    fn workers_are_auto_or_a_count_up_to_1024() {
        assert_eq!(read(&workers, "auto"), Ok(auto_workers()));
        assert_eq!(read(&workers, "'8'"), Ok(8));
        assert_eq!(read(&workers, "1024"), Ok(1024));
        assert_eq!(
            read(&workers, "1025"),
            Err(r#""1025" is out of range: use auto (one per CPU) or a whole number from 1 to 1024"#.into())
        );
        assert!(read(&workers, "many")
            .unwrap_err()
            .starts_with(r#""many" is not a worker count"#));
        assert!(read(&workers, "[1]")
            .unwrap_err()
            .starts_with("is a list, not a number"));
    }
}
