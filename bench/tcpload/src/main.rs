//! tcpload: a small raw-TCP load tool for the spliced benchmarks.
//!
//! The benchmark suite needs connection-rate and echo-latency figures with
//! HdrHistogram percentiles, an echo backend that can hold tens of
//! thousands of idle connections, and a client that can hold them, none of
//! which Debian packages (tcpkali is absent). Each mode prints exactly one
//! JSON object on stdout when it ends (`hold` also prints a `ready` line
//! first); human-readable progress goes to stderr.

mod echo;
mod exchange;
mod hold;
mod rate;
mod serve;
mod sources;
mod stats;
mod sys;
mod threads;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "tcpload",
    version,
    about = "Raw-TCP load tool: echo server, connection rate, echo latency, connection holding"
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Echo server (and idle-connection holder) until SIGTERM/SIGINT.
    Serve {
        /// Address to listen on (repeatable); port 0 picks one, reported in
        /// the READY line on stderr.
        #[arg(long, required = true)]
        listen: Vec<SocketAddr>,
        /// Event-loop threads.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
        threads: u16,
    },
    /// Connection rate: C slots connect, optionally echo a payload, close, repeat.
    Rate {
        #[arg(long)]
        target: SocketAddr,
        /// Seconds to run (fractions allowed).
        #[arg(long, value_parser = parse_secs)]
        duration: Duration,
        /// Connections in flight at once.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        concurrency: u32,
        /// Source IPv4 addresses: A-B (inclusive range) and/or a comma list.
        #[arg(long, value_parser = parse_sources)]
        sources: Option<SourceList>,
        /// Bytes to send and wait for echoed back on each connection (0:
        /// connect only).
        #[arg(long, default_value_t = 0)]
        payload: u32,
        /// Close with RST (SO_LINGER 0) instead of FIN: no TIME_WAIT.
        #[arg(long)]
        linger0: bool,
        /// Per-connection timeout in seconds.
        #[arg(long, default_value = "5", value_parser = parse_secs)]
        timeout: Duration,
        /// Independent event loops; slots are split between them.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
        threads: u16,
    },
    /// Round-trip latency: C persistent connections in a closed send/echo loop.
    Echo {
        #[arg(long)]
        target: SocketAddr,
        /// Persistent connections.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        conns: u32,
        /// Bytes per round trip.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        size: u32,
        /// Seconds to measure, after all connections are up.
        #[arg(long, value_parser = parse_secs)]
        duration: Duration,
        /// Source IPv4 addresses: A-B (inclusive range) and/or a comma list.
        #[arg(long, value_parser = parse_sources)]
        sources: Option<SourceList>,
        /// Connect timeout, and the longest a round trip may take before
        /// the connection counts as failed, in seconds.
        #[arg(long, default_value = "5", value_parser = parse_secs)]
        timeout: Duration,
        /// Independent event loops; connections are split between them.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
        threads: u16,
    },
    /// Open N connections, ping each, report ready, hold until stdin EOF,
    /// SIGTERM/SIGINT or --hold, then check a sample is alive.
    Hold {
        #[arg(long)]
        target: SocketAddr,
        /// Connections to open.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        conns: u32,
        /// Source IPv4 addresses: A-B (inclusive range) and/or a comma list.
        #[arg(long, value_parser = parse_sources)]
        sources: Option<SourceList>,
        /// Bytes sent and awaited back on each connection once it is up,
        /// and again on the liveness sample at the end.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=65536))]
        ping: u32,
        /// Seconds to hold; default: until stdin EOF or SIGTERM/SIGINT.
        #[arg(long, value_parser = parse_secs)]
        hold: Option<Duration>,
        /// Pace new connections to at most this many per second.
        #[arg(long)]
        connect_rate: Option<f64>,
        /// Most connections being set up (connect + ping) at once.
        #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
        in_flight: u32,
        /// Per-connection timeout for connect + ping, and for the liveness
        /// check, in seconds.
        #[arg(long, default_value = "10", value_parser = parse_secs)]
        timeout: Duration,
        /// How many random held connections the final liveness check pings.
        #[arg(long, default_value_t = 100)]
        check: u32,
    },
}

fn parse_secs(s: &str) -> Result<Duration> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|e| anyhow::anyhow!("{s:?} is not a number of seconds: {e}"))?;
    if !v.is_finite() || v <= 0.0 || v > 1e9 {
        bail!("{s:?}: seconds must be positive and finite");
    }
    Ok(Duration::from_secs_f64(v))
}

/// The parsed `--sources` value. A newtype so clap treats the whole list
/// as one value rather than as repeated occurrences.
#[derive(Clone, Debug)]
struct SourceList(Vec<Ipv4Addr>);

fn parse_sources(s: &str) -> Result<SourceList> {
    sources::parse(s).map(SourceList)
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("tcpload: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.mode {
        Mode::Serve { listen, threads } => serve::run(serve::ServeArgs {
            listen,
            threads: threads as usize,
        }),
        Mode::Rate {
            target,
            duration,
            concurrency,
            sources,
            payload,
            linger0,
            timeout,
            threads,
        } => rate::run(rate::RateArgs {
            target,
            duration,
            concurrency: concurrency as usize,
            sources: sources.map(|s| s.0).unwrap_or_default(),
            payload: payload as usize,
            linger0,
            timeout,
            threads: threads as usize,
        }),
        Mode::Echo {
            target,
            conns,
            size,
            duration,
            sources,
            timeout,
            threads,
        } => echo::run(echo::EchoArgs {
            target,
            conns: conns as usize,
            size: size as usize,
            duration,
            sources: sources.map(|s| s.0).unwrap_or_default(),
            timeout,
            threads: threads as usize,
        }),
        Mode::Hold {
            target,
            conns,
            sources,
            ping,
            hold,
            connect_rate,
            in_flight,
            timeout,
            check,
        } => {
            if let Some(r) = connect_rate {
                if !r.is_finite() || r <= 0.0 {
                    bail!("--connect-rate must be a positive number, got {r}");
                }
            }
            hold::run(hold::HoldArgs {
                target,
                conns: conns as usize,
                sources: sources.map(|s| s.0).unwrap_or_default(),
                ping: ping as usize,
                hold,
                connect_rate,
                in_flight: in_flight as usize,
                timeout,
                check: check as usize,
            })
        }
    }
}
