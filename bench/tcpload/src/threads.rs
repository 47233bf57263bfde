//! Runs one client mode on several threads: splits its connections over
//! them, starts them together and collects what each measured. `rate` and
//! `echo` both work this way.

use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;

use anyhow::{Context, Result};

/// Runs `body(args, share, thread, barrier)` on `threads` threads named
/// `NAME-i`, where the shares of `total` differ by at most one; every body
/// must call `barrier.wait()` once. Returns the results in thread order.
pub fn run_split<A, R>(
    name: &str,
    args: &Arc<A>,
    threads: usize,
    total: usize,
    body: fn(&A, usize, usize, &Barrier) -> Result<R>,
) -> Result<Vec<R>>
where
    A: Send + Sync + 'static,
    R: Send + 'static,
{
    let barrier = Arc::new(Barrier::new(threads));
    let mut handles: Vec<JoinHandle<Result<R>>> = Vec::new();
    for t in 0..threads {
        let share = total / threads + usize::from(t < total % threads);
        let args = Arc::clone(args);
        let barrier = Arc::clone(&barrier);
        let h = std::thread::Builder::new()
            .name(format!("{name}-{t}"))
            .spawn(move || body(&args, share, t, &barrier))
            .with_context(|| format!("spawning {name} thread"))?;
        handles.push(h);
    }
    handles
        .into_iter()
        .map(|h| {
            h.join()
                .map_err(|_| anyhow::anyhow!("a {name} thread panicked"))?
        })
        .collect()
}
