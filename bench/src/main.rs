//! knock-bench: offers a knock server a known load from many 127.x sources
//! and reports what it decided and how fast access opened. See
//! `knock-bench --help` and BENCHMARKS.md.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use knock_bench::spa::{MAX_RUN, OpenedBy, SpaLoad};
use knock_bench::{self as bench, BenchConfig, Mode};
use portknock::cli::{self, EXIT_FAILURE, EXIT_USAGE};
use portknock::config::{self, Sequence};
use portknock::spa::{DEFAULT_SPA_PORT, DigestType};

/// Load generator for a port-knocking server (ours or knockd).
#[derive(Debug, Parser)]
#[command(name = "knock-bench", version, about, long_about = None)]
struct Args {
    /// The load to offer.
    #[arg(long, value_enum, default_value_t = Mode::Sequences)]
    mode: Mode,
    /// The server's IPv4 knock address.
    #[arg(long, default_value = "127.0.0.1")]
    target: Ipv4Addr,
    /// The knock sequence.
    #[arg(long, default_value = config::DEFAULT_SEQUENCE, value_parser = parse_sequence)]
    sequence: Sequence,
    /// Knock a rotating door (sequences mode): its key file; each sequence
    /// knocks the period its first knock is sent in.
    #[arg(long, value_name = "FILE")]
    door_key: Option<std::path::PathBuf>,
    /// The rotating door's name.
    #[arg(long, default_value = "default")]
    door: String,
    /// The rotating door's period.
    #[arg(long, default_value = "30s", value_parser = config::parse_duration)]
    period: Duration,
    /// Knocks per rotating sequence.
    #[arg(long, default_value_t = 4)]
    length: usize,
    /// The rotating door's port range.
    #[arg(long, default_value = "20000-60000")]
    ports: String,
    /// The protected TCP port, probed for access.
    #[arg(long, default_value_t = config::DEFAULT_PROTECTED_PORT, value_parser = config::parse_port)]
    protected_port: u16,
    /// Sequences (or flood packets) to offer.
    #[arg(long, default_value_t = 1000)]
    count: u32,
    /// Sequences (or flood packets) a second; 0: as fast as possible.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Time between the knocks of one sequence (5ms, 0.5, 1s). Our server
    /// orders knocks across its sockets by kernel arrival time, so even
    /// 1ms is judged in order (see BENCHMARKS.md).
    #[arg(long, default_value = "20ms", value_parser = config::parse_duration)]
    gap: Duration,
    /// First source address; each sequence or flood packet gets the next.
    #[arg(long, default_value = "127.16.0.0")]
    source_base: Ipv4Addr,
    /// Floods: a legitimate client knocks from this address mid-flood.
    #[arg(long)]
    legit: Option<Ipv4Addr>,
    /// Floods: how long after the flood starts the legitimate client knocks.
    #[arg(long, default_value = "1s", value_parser = parse_settle)]
    legit_after: Duration,
    /// The server's stats endpoint (knock-server --stats-listen).
    #[arg(long, value_name = "IP:PORT")]
    stats: Option<SocketAddr>,
    /// The server's pid, to report its peak memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Hard bound on the whole run.
    #[arg(long, default_value = "60s", value_parser = config::parse_duration)]
    time_limit: Duration,
    /// Wait after sending before the counters are read.
    #[arg(long, default_value = "1s", value_parser = parse_settle)]
    settle: Duration,
    /// Write the report as JSON instead of Markdown.
    #[arg(long)]
    json: bool,
    /// Write the report to this file instead of stdout.
    #[arg(long, value_name = "PATH")]
    output: Option<std::path::PathBuf>,
    /// SPA: the server stanza's encryption key (base64), as KEY_BASE64.
    #[arg(long, help_heading = "SPA")]
    spa_key_base64: Option<String>,
    /// SPA: the server stanza's HMAC key (base64), as HMAC_KEY_BASE64.
    #[arg(long, help_heading = "SPA")]
    spa_hmac_key_base64: Option<String>,
    /// SPA: the HMAC digest (HMAC_DIGEST_TYPE).
    #[arg(long, default_value = "sha256", help_heading = "SPA")]
    spa_hmac_digest: DigestType,
    /// SPA: the server's UDP port.
    #[arg(long, default_value_t = DEFAULT_SPA_PORT, value_parser = config::parse_port, help_heading = "SPA")]
    spa_port: u16,
    /// SPA: packets sent one at a time and probed before the load.
    #[arg(long, default_value_t = 20, help_heading = "SPA")]
    spa_latency_count: u32,
    /// SPA: count openings from lines of this log that contain
    /// --spa-opened-pattern (for servers without --stats, e.g. fwknopd).
    #[arg(
        long,
        value_name = "PATH",
        conflicts_with = "stats",
        help_heading = "SPA"
    )]
    spa_opened_log: Option<std::path::PathBuf>,
    /// SPA: what an opening line of --spa-opened-log contains.
    #[arg(long, default_value = "Added access rule", help_heading = "SPA")]
    spa_opened_pattern: String,
}

fn parse_sequence(text: &str) -> Result<Sequence, config::ConfigError> {
    text.parse()
}

/// Like the other durations, but 0 is allowed (no settling).
fn parse_settle(text: &str) -> Result<Duration, config::ConfigError> {
    match text.trim() {
        "0" | "0s" | "0ms" => Ok(Duration::ZERO),
        other => config::parse_duration(other),
    }
}

/// The SPA load of `--mode spa`, checked; None in the other modes.
fn spa_load(args: &Args) -> anyhow::Result<Option<SpaLoad>> {
    if args.mode != Mode::Spa {
        return Ok(None);
    }
    if args.time_limit > MAX_RUN {
        anyhow::bail!(
            "invalid --time-limit {:?} for --mode spa: at most {}s (packets are stamped before the run and servers refuse them after 120 s)",
            args.time_limit,
            MAX_RUN.as_secs()
        );
    }
    let key = args.spa_key_base64.as_deref().ok_or_else(|| {
        anyhow::anyhow!("--mode spa needs --spa-key-base64 and --spa-hmac-key-base64")
    })?;
    let keys = portknock::client::spa::keys_from_flags(
        key,
        args.spa_hmac_key_base64.as_deref(),
        args.spa_hmac_digest,
    )
    .map_err(|err| {
        anyhow::anyhow!("invalid SPA keys (--spa-key-base64, --spa-hmac-key-base64): {err}")
    })?;
    let opened_by = match (&args.spa_opened_log, args.stats) {
        (Some(path), _) => Some(OpenedBy::Log {
            path: path.clone(),
            pattern: args.spa_opened_pattern.clone(),
        }),
        (None, Some(addr)) => Some(OpenedBy::Stats(addr)),
        (None, None) => None,
    };
    Ok(Some(SpaLoad {
        keys,
        port: args.spa_port,
        latency_count: args.spa_latency_count,
        opened_by,
    }))
}

fn main() -> ExitCode {
    let args = Args::parse();
    cli::init_tracing(0, "warn");
    if !args.rate.is_finite() || args.rate < 0.0 {
        let err = anyhow::anyhow!(
            "invalid --rate '{}': expected 0 or a positive number",
            args.rate
        );
        return cli::fail("knock-bench", err.as_ref(), EXIT_USAGE);
    }
    let spa = match spa_load(&args) {
        Ok(spa) => spa,
        Err(err) => return cli::fail("knock-bench", err.as_ref(), EXIT_USAGE),
    };
    let rotating = match &args.door_key {
        None => None,
        Some(path) => {
            let loaded = portknock::rotate::DoorKey::load(path)
                .map_err(anyhow::Error::from)
                .and_then(|key| {
                    let rotation = portknock::rotate::Rotation::new(
                        args.period,
                        args.length,
                        &args.ports,
                        portknock::rotate::MIN_ENTROPY_BITS,
                    )?;
                    Ok(bench::RotatingLoad {
                        key,
                        door: args.door.clone(),
                        rotation,
                    })
                });
            match loaded {
                Ok(load) => Some(load),
                Err(err) => return cli::fail("knock-bench", err.as_ref(), EXIT_USAGE),
            }
        }
    };
    let config = BenchConfig {
        rotating,
        mode: args.mode,
        target: args.target,
        sequence: args.sequence.ports().to_vec(),
        protected_port: args.protected_port,
        count: args.count,
        rate: args.rate,
        gap: args.gap,
        source_base: args.source_base,
        legit: args.legit,
        legit_after: args.legit_after,
        stats: args.stats,
        server_pid: args.server_pid,
        time_limit: args.time_limit,
        settle: args.settle,
        spa,
    };
    let report = match bench::run(&config) {
        Ok(report) => report,
        Err(err) => return cli::fail("knock-bench", &err, EXIT_FAILURE),
    };
    let text = if args.json {
        report.to_json()
    } else {
        report.to_markdown()
    };
    match &args.output {
        Some(path) => {
            if let Err(err) = std::fs::write(path, text) {
                let err =
                    anyhow::Error::new(err).context(format!("cannot write {}", path.display()));
                return cli::fail("knock-bench", err.as_ref(), EXIT_FAILURE);
            }
        }
        None => {
            // A reader that left early (`| head`) loses the report, not the run.
            portknock::stdout::print(&text);
        }
    }
    ExitCode::SUCCESS
}
