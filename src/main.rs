//! The `spliced` command line: parse arguments, set up logging, hand over to the
//! library. No logic lives here beyond mapping errors to exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use spliced::{config, control, demo, log};

#[derive(Parser)]
#[command(
    name = "spliced",
    version,
    about = "A Layer-4 TCP load balancer on io_uring, with splice for bulk"
)]
struct Cli {
    /// Config file to run (same as `spliced run -c FILE`).
    #[arg(short = 'c', long = "config", global = false)]
    config: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "info", global = true)]
    log_level: log::Level,
    #[arg(long, value_enum, default_value = "text", global = true)]
    log_format: log::Format,
    /// The L4 engine, over the config's `dataplane:` (auto: io_uring when
    /// allowed, else epoll).
    #[arg(long, global = true, value_parser = parse_dataplane)]
    dataplane: Option<config::Dataplane>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the balancer with a config file.
    Run {
        #[arg(short = 'c', long = "config")]
        config: PathBuf,
        /// Re-read the config when the file changes (a rename over it, a
        /// Kubernetes ConfigMap update, an edit), as on SIGHUP.
        #[arg(long)]
        watch: bool,
    },
    /// Validate a config file: print every error with its YAML path; exit 1 if invalid.
    Check {
        #[arg(short = 'c', long = "config")]
        config: PathBuf,
    },
    /// Run the built-in demo: three demo backends and a balancer on 127.0.0.1:8080 (TCP) and 127.0.0.1:8443 (HTTPS).
    Demo {
        /// Also generate some traffic through it, so the dashboard has something to show.
        #[arg(long)]
        load: bool,
        /// Listen on this address instead of 127.0.0.1 (e.g. 0.0.0.0 in a
        /// container); the demo backends stay on loopback, and the admin API
        /// beyond loopback has no token.
        #[arg(long, value_name = "IP")]
        bind: Option<std::net::IpAddr>,
    },
    /// Exit 0 if the admin API at ADDR answers 200 on /health, 1 otherwise:
    /// a container HEALTHCHECK for images without curl.
    Health {
        #[arg(value_name = "ADDR", default_value = "127.0.0.1:9090")]
        addr: std::net::SocketAddr,
    },
}

fn parse_dataplane(text: &str) -> Result<config::Dataplane, String> {
    let all = config::Dataplane::ALL;
    all.into_iter().find(|d| d.as_str() == text).ok_or_else(|| {
        let names: Vec<&str> = all.iter().map(|d| d.as_str()).collect();
        format!("use one of {}", names.join(", "))
    })
}

fn load(path: &std::path::Path) -> Result<config::Config, ExitCode> {
    config::load_file(path).map_err(|errors| {
        eprintln!("{}: invalid configuration:\n{errors}", path.display());
        ExitCode::from(1)
    })
}

/// `spliced run`: the balancer on a config file; `Err` with the exit code
/// when the file is invalid (its errors are printed already).
fn run_file(
    config: PathBuf,
    watch: bool,
    dataplane: Option<config::Dataplane>,
) -> Result<anyhow::Result<()>, ExitCode> {
    let c = load(&config)?;
    Ok(control::run(
        c,
        control::RunOptions {
            path: Some(config),
            watch_config: watch,
            dataplane,
            ..Default::default()
        },
        |_| {},
    ))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    log::init(cli.log_level, cli.log_format);
    let result = match (cli.command, cli.config) {
        (Some(Command::Check { config }), _) => {
            // Everything `run` would refuse short of binding: the file, then
            // what it names (the admin token).
            let checked = load(&config).and_then(|c| match control::read_token(&c) {
                Ok(_) => Ok(c),
                Err(e) => {
                    eprintln!("{}: invalid configuration:\n{e:#}", config.display());
                    Err(ExitCode::from(1))
                }
            });
            let checked = checked.and_then(|c| match control::certs::check(&c) {
                Ok(lines) => Ok((c, lines)),
                Err(e) => {
                    eprintln!("{}: invalid configuration:\n{e}", config.display());
                    Err(ExitCode::from(1))
                }
            });
            return match checked {
                Ok((c, certs)) => {
                    for line in certs {
                        println!("{line}");
                    }
                    for warning in c.warnings() {
                        eprintln!("warning: {warning}");
                    }
                    println!(
                        "{}: configuration is valid ({} listener(s), {} pool(s), {} worker(s))",
                        config.display(),
                        c.listeners.len(),
                        c.pools.len(),
                        c.workers
                    );
                    println!(
                        "dataplane: {}",
                        control::describe_dataplane(cli.dataplane.unwrap_or(c.dataplane))
                    );
                    ExitCode::SUCCESS
                }
                Err(code) => code,
            };
        }
        (Some(Command::Run { config, watch }), _) => match run_file(config, watch, cli.dataplane) {
            Ok(result) => result,
            Err(code) => return code,
        },
        (None, Some(config)) => match run_file(config, false, cli.dataplane) {
            Ok(result) => result,
            Err(code) => return code,
        },
        (Some(Command::Health { addr }), _) => {
            return match control::admin::probe_health(addr, std::time::Duration::from_secs(3)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("spliced health: {addr}: {e}");
                    ExitCode::from(1)
                }
            };
        }
        (Some(Command::Demo { load, bind }), _) => match bind {
            Some(ip) => demo::config_on(ip),
            None => demo::config(),
        }
        .and_then(|c| {
            demo::start_backends(&c)?;
            let options = control::RunOptions {
                path: None,
                load_generator: Some(demo::load_generator),
                // "Until stopped", bounded so nothing runs forever by accident.
                demo_load: load.then_some(std::time::Duration::from_secs(24 * 3600)),
                watch_config: false,
                dataplane: cli.dataplane,
            };
            control::run(c, options, |bound| println!("{}", demo::banner(bound)))
        }),
        (None, None) => {
            eprintln!("spliced: nothing to do. Try `spliced demo`, `spliced run -c FILE` or `spliced --help`.");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error(&format!("{e:#}"), &[]);
            ExitCode::from(1)
        }
    }
}
