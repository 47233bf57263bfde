//! Microbenchmark of backend selection: nanoseconds per `pick` for every
//! algorithm at 4, 64 and 1024 backends, all eligible and with every other one
//! ineligible, plus the time to build a Maglev table. `cargo bench --bench pick`.
//!
//! The eligibility filter is the one `balance::choose` passes in (an untried
//! backend that `Backend::eligible` accepts), plus a mask for the "half" case,
//! so a pick pays for the same atomic loads it does in the worker. Each figure
//! is the median of several timed batches; a batch is sized to about 30 ms.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use spliced::balance::Backend;
use spliced::balance::{
    Balancer, LeastConnections, Maglev, PickContext, PowerOfTwo, RandomPick, RoundRobin,
    SmoothWeighted,
};

const SIZES: [usize; 3] = [4, 64, 1024];
const TABLE: usize = 65537;
const BIG_TABLE: usize = 655_373;
const BATCHES: usize = 7;
const BATCH_TARGET: Duration = Duration::from_millis(30);

/// xorshift64: the stand-in for a worker's generator (its cost, about a
/// nanosecond, is inside every figure, as it is in the worker).
struct XorShift(u64);

impl XorShift {
    #[inline]
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// `n` backends with weights 1..=3 and 0..100 open connections each.
fn backends(n: usize) -> Vec<Arc<Backend>> {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    (0..n)
        .map(|i| {
            let addr = format!("10.{}.{}.{}:80", i >> 16, (i >> 8) & 255, i & 255);
            let b = Backend::for_test(&addr, 1 + (i % 3) as u32);
            b.stats.active.store(rng.next() % 100, Ordering::Relaxed);
            Arc::new(b)
        })
        .collect()
}

fn algorithms(backends: &[Arc<Backend>]) -> Vec<(&'static str, Box<dyn Balancer>)> {
    vec![
        ("round_robin", Box::new(RoundRobin::new())),
        (
            "weighted_round_robin",
            Box::new(SmoothWeighted::new(backends.len(), 1)),
        ),
        ("least_connections", Box::new(LeastConnections::new(1))),
        (
            "ip_hash (maglev)",
            Box::new(Maglev::new(backends, TABLE, None)),
        ),
        (
            "ip_hash, bounded 1.25",
            Box::new(Maglev::new(backends, TABLE, Some(1.25))),
        ),
        ("random", Box::new(RandomPick::new())),
        ("p2c", Box::new(PowerOfTwo::new())),
    ]
}

/// Median nanoseconds per call of `f` (which does one pick).
fn time_per_call(mut f: impl FnMut(u64)) -> f64 {
    // Warm up and size the batch.
    let mut iters: u64 = 1000;
    loop {
        let t = Instant::now();
        for i in 0..iters {
            f(i);
        }
        let spent = t.elapsed();
        if spent >= BATCH_TARGET / 4 {
            iters = (iters as f64 * BATCH_TARGET.as_secs_f64() / spent.as_secs_f64()) as u64;
            break;
        }
        iters *= 4;
    }
    let mut samples: Vec<f64> = (0..BATCHES)
        .map(|_| {
            let t = Instant::now();
            for i in 0..iters {
                f(i);
            }
            t.elapsed().as_nanos() as f64 / iters as f64
        })
        .collect();
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[BATCHES / 2]
}

fn bench_pick(balancer: &dyn Balancer, backends: &[Arc<Backend>], half: bool) -> f64 {
    let mask: Vec<bool> = (0..backends.len()).map(|i| !half || i % 2 == 0).collect();
    let now = spliced::clock::now_ms();
    let eligible = |i: usize| mask[i] && backends[i].eligible(now);
    let mut rng = XorShift(0x1234_5678_9abc_def1);
    time_per_call(|i| {
        let ctx = PickContext {
            // A different client each time, from a /8 of them.
            client: Some(IpAddr::V4(Ipv4Addr::from(
                0x0a00_0000 | (i as u32 & 0x00ff_ffff),
            ))),
            worker: 0,
            now_ms: now,
            random: rng.next(),
        };
        black_box(balancer.pick(black_box(backends), &ctx, &eligible));
    })
}

/// Median wall time of building one Maglev table.
fn bench_build(backends: &[Arc<Backend>], table: usize) -> Duration {
    let mut samples: Vec<Duration> = (0..5)
        .map(|_| {
            let t = Instant::now();
            black_box(Maglev::new(black_box(backends), table, None));
            t.elapsed()
        })
        .collect();
    samples.sort();
    samples[2]
}

fn main() {
    let pools: Vec<Vec<Arc<Backend>>> = SIZES.iter().map(|&n| backends(n)).collect();

    println!(
        "ns per pick (median of {BATCHES} batches; \"half\" = every other backend ineligible)\n"
    );
    print!("| algorithm |");
    for n in SIZES {
        print!(" {n} all | {n} half |");
    }
    println!();
    println!("|---|{}", "---:|".repeat(2 * SIZES.len()));
    let names: Vec<&str> = algorithms(&pools[0])
        .iter()
        .map(|(name, _)| *name)
        .collect();
    for (a, name) in names.iter().enumerate() {
        print!("| {name} |");
        for pool in &pools {
            let algos = algorithms(pool);
            let balancer = &*algos[a].1;
            for half in [false, true] {
                print!(" {:.1} |", bench_pick(balancer, pool, half));
            }
        }
        println!();
    }

    println!("\nMaglev table build (median of 5)\n");
    println!("| backends | table | build |");
    println!("|---:|---:|---:|");
    for (n, pool) in SIZES.iter().zip(&pools) {
        println!("| {n} | {TABLE} | {:.2?} |", bench_build(pool, TABLE));
    }
    println!(
        "| 1024 | {BIG_TABLE} | {:.2?} |",
        bench_build(&pools[2], BIG_TABLE)
    );
}
