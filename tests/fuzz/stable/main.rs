//! A stable-toolchain fallback for the cargo-fuzz targets: runs the same
//! `fuzzing` entry points over random mutations of the seed inputs for a
//! bounded time. No coverage feedback, so it finds less than libFuzzer; it
//! exists so the invariants are still exercised where nightly is missing.
//!
//! Usage: `fuzz-stable TARGET SECONDS [SEED_DIR...]`, where TARGET is
//! `sni_peek`, `proxy_header` or `config`. Prints `executions: N`; on a panic
//! it saves the input under `artifacts/TARGET/` and exits with status 1.

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use std::{env, fs, process};

/// xorshift64*: small, seedable, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Bytes that tend to sit on parser boundaries: lengths, record types, the
/// first bytes of each protocol.
const INTERESTING: &[u8] = &[
    0, 1, 2, 3, 4, 0x0a, 0x0d, 0x16, 0x20, 0x21, 0x11, 0x3f, 0x40, 0x7f, 0x80, 0xfe, 0xff,
];

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, corpus: &[Vec<u8>], max_len: usize) {
    for _ in 0..1 + rng.below(4) {
        let len = input.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = rng.next() as u8;
            }
            2 if len > 0 => {
                let i = rng.below(len);
                input[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            3 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                input.splice(i..i, bytes);
            }
            4 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                input.drain(i..i + n);
            }
            5 if len > 0 => input.truncate(rng.below(len)),
            6 if len > 0 => {
                // Duplicate a range (grows repeated structures: records, TLVs).
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(256));
                let copy = input[i..i + n].to_vec();
                let at = rng.below(len + 1);
                input.splice(at..at, copy);
            }
            7 if !corpus.is_empty() => {
                // Splice in part of another seed.
                let other = &corpus[rng.below(corpus.len())];
                if !other.is_empty() {
                    let i = rng.below(other.len());
                    let n = 1 + rng.below(other.len() - i);
                    let at = rng.below(len + 1);
                    input.splice(at..at, other[i..i + n].iter().copied());
                }
            }
            8 if len >= 2 => {
                // Overwrite a big-endian 16-bit length somewhere.
                let i = rng.below(len - 1);
                let v = [0u16, 1, 0xff, 0x100, 0x3fff, 0x4000, 0x4001, 0xffff][rng.below(8)];
                input[i..i + 2].copy_from_slice(&v.to_be_bytes());
            }
            _ => {}
        }
    }
    input.truncate(max_len);
}

fn read_seeds(dirs: &[PathBuf]) -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for dir in dirs {
        let Ok(entries) = fs::read_dir(dir) else {
            eprintln!("fuzz-stable: cannot read seed directory {}", dir.display());
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
        paths.sort();
        for path in paths {
            if path.is_file() {
                if let Ok(bytes) = fs::read(&path) {
                    seeds.push(bytes);
                }
            }
        }
    }
    if seeds.is_empty() {
        seeds.push(Vec::new());
    }
    seeds
}

fn save_crash(target: &str, input: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("artifacts")
        .join(target);
    let _ = fs::create_dir_all(&dir);
    // FNV-1a of the input names the file, like libFuzzer's crash-<sha1>.
    let hash = input.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let path = dir.join(format!("crash-stable-{hash:016x}"));
    let _ = fs::write(&path, input);
    path
}

fn main() {
    let args: Vec<String> = env::args().collect();
    let usage = || -> ! {
        eprintln!("usage: fuzz-stable sni_peek|proxy_header|config SECONDS [SEED_DIR...]");
        process::exit(2);
    };
    let (Some(target), Some(seconds)) = (args.get(1), args.get(2)) else {
        usage()
    };
    let (entry, max_len): (fn(&[u8]), usize) = match target.as_str() {
        "sni_peek" => (spliced::proto::fuzzing::sni, 40_000),
        "proxy_header" => (spliced::proto::fuzzing::proxy, 5_000),
        "config" => (spliced::config::fuzzing::parse, 8_192),
        _ => usage(),
    };
    let Ok(seconds) = seconds.parse::<u64>() else {
        usage()
    };
    let seeds = read_seeds(&args[3..].iter().map(PathBuf::from).collect::<Vec<_>>());
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    let mut rng = Rng(seed);
    println!(
        "fuzz-stable: {target} for {seconds}s from {} seed(s), rng seed {seed}",
        seeds.len()
    );

    // The panic message still goes to stderr; the input is saved below.
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut executions: u64 = 0;
    let mut input = Vec::new();
    // The clock is read once every 256 executions.
    while executions & 0xff != 0 || Instant::now() < deadline {
        input.clear();
        input.extend_from_slice(&seeds[rng.below(seeds.len())]);
        // Every seed also runs as is, once.
        if executions >= seeds.len() as u64 {
            mutate(&mut rng, &mut input, &seeds, max_len);
        } else {
            input.clear();
            input.extend_from_slice(&seeds[executions as usize]);
        }
        if panic::catch_unwind(AssertUnwindSafe(|| entry(&input))).is_err() {
            let path = save_crash(target, &input);
            println!("executions: {}", executions + 1);
            println!("CRASH: input saved to {}", path.display());
            process::exit(1);
        }
        executions += 1;
    }
    println!("executions: {executions}");
}
