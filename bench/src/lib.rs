//! knock-bench, the load generator: offers a knock server a known load
//! from many 127.x sources, and reports what it decided and how fast
//! access opened. A workspace member beside its scripts in `bench/`, so
//! the `portknock` library's API is the product's alone.
//!
//! Modes ([`Mode`]): paced complete sequences, interleaved sequences (all
//! first knocks, then all second, ...), knock-to-open latency (one
//! sequence at a time, probed), and floods of first or wrong knocks from
//! distinct sources with an optional legitimate client knocking during the
//! flood. Every loop is bounded by a count and by `time_limit`.
//!
//! Pieces: [`pacing`] (when each knock is due, pure), [`sender`]
//! (sendmmsg with per-packet source), [`probe`] (TCP access check),
//! [`observe`] (server counters, memory, kernel drops), [`report`].

pub mod observe;
pub mod pacing;
pub mod probe;
pub mod report;
pub mod sender;
pub mod spa;

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use thiserror::Error;

use pacing::{Schedule, flood_allowance};
use report::{LatencySummary, Report};
use sender::{BATCH, Packet, Sender, source_at};

/// A benchmark failure.
#[derive(Debug, Error)]
pub enum BenchError {
    /// A socket operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The stats endpoint could not be read.
    #[error("cannot read the server's counters from {addr}: {source}")]
    Stats {
        /// The endpoint.
        addr: SocketAddr,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// SPA mode without keys.
    #[error("SPA mode needs the server's keys (--spa-key-base64, --spa-hmac-key-base64)")]
    NoSpaKeys,
    /// An SPA packet could not be encoded.
    #[error("cannot encode an SPA packet: {0}")]
    Encode(#[from] portknock::spa::EncodeError),
    /// The stats endpoint answered something else than counters.
    #[error("the stats endpoint {addr} answered {text:?}, not counters")]
    BadStats {
        /// The endpoint.
        addr: SocketAddr,
        /// What it said.
        text: String,
    },
}

/// What load to offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// `count` complete sequences started at `rate` a second (0: unpaced),
    /// knocks of one sequence `gap` apart, each from its own source.
    Sequences,
    /// `count` sequences interleaved: all first knocks, `gap`, all second, ...
    Interleaved,
    /// `count` sequences one at a time, each probed until access opens.
    Latency,
    /// `count` first knocks from distinct sources, at `rate` (0: full rate).
    FirstFlood,
    /// `count` wrong knocks from distinct sources, at `rate` (0: full rate).
    WrongFlood,
    /// SPA packets (fwknop format): a few one at a time, probed, then
    /// `count` at `rate` (0: full rate), each from and for its own address
    /// (see [`spa`]).
    Spa,
}

/// A validated benchmark run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// The load.
    pub mode: Mode,
    /// The server's knock address (IPv4).
    pub target: Ipv4Addr,
    /// The knock sequence.
    pub sequence: Vec<u16>,
    /// The protected TCP port (probed for access).
    pub protected_port: u16,
    /// Sequences or flood packets to offer.
    pub count: u32,
    /// Sequences (or flood packets) a second; 0 for no pacing.
    pub rate: f64,
    /// Time between the knocks of one sequence.
    pub gap: Duration,
    /// First source address of the load; sources count up from it.
    pub source_base: Ipv4Addr,
    /// Floods: a legitimate client from this address knocks mid-flood.
    pub legit: Option<Ipv4Addr>,
    /// Floods: how long after the flood starts the legitimate client knocks.
    pub legit_after: Duration,
    /// The server's stats endpoint, to count its decisions.
    pub stats: Option<SocketAddr>,
    /// The server's pid, to read its peak memory.
    pub server_pid: Option<u32>,
    /// Hard bound on the whole run.
    pub time_limit: Duration,
    /// Wait after sending before reading the counters (SPA: how long the
    /// opened count may stall before the run ends).
    pub settle: Duration,
    /// SPA mode: keys, port, where openings are counted.
    pub spa: Option<spa::SpaLoad>,
    /// Sequences mode against a rotating door: each sequence knocks the
    /// ports of the period its first knock is sent in (as knock-client).
    pub rotating: Option<RotatingLoad>,
}

/// A rotating door to knock (issue 14): the key, the door's name, the
/// rotation. `sequence` is then unused but for its length.
#[derive(Debug, Clone)]
pub struct RotatingLoad {
    /// The door's key.
    pub key: portknock::rotate::DoorKey,
    /// The door's name.
    pub door: String,
    /// Period, length, range.
    pub rotation: portknock::rotate::Rotation,
}

/// Runs the load and measures it.
pub fn run(config: &BenchConfig) -> Result<Report, BenchError> {
    let started = Instant::now();
    let deadline = started + config.time_limit;
    let sender = Sender::new().map_err(|source| BenchError::Io {
        context: "cannot open the sending socket",
        source,
    })?;
    if config.mode == Mode::Spa {
        let Some(load) = &config.spa else {
            return Err(BenchError::NoSpaKeys);
        };
        return spa::run(config, load, &sender);
    }
    let before = config.stats.map(observe::read_counters).transpose()?;
    let drops_before = observe::udp_rcvbuf_errors();
    let mut report = Report {
        mode: format!("{:?}", config.mode),
        offered: u64::from(config.count),
        ..Report::default()
    };
    let knocks = config.sequence.len();
    match config.mode {
        Mode::Sequences | Mode::Interleaved => {
            let interval = match config.mode {
                Mode::Sequences => Schedule::interval_for(config.rate),
                _ => Duration::ZERO,
            };
            let knocks = config
                .rotating
                .as_ref()
                .map_or(knocks, |r| r.rotation.length);
            let schedule = Schedule::new(config.count, knocks, interval, config.gap);
            let targets = targets(config);
            // Rotating: the period of each sequence's first knock, and the
            // ports of each period, derived once.
            let periods = std::cell::RefCell::new(std::collections::HashMap::new());
            let ports = std::cell::RefCell::new(std::collections::HashMap::new());
            let (sent, took) = send_schedule(
                &sender,
                schedule,
                |due| Packet {
                    source: source_at(config.source_base, due.sequence),
                    target: match &config.rotating {
                        None => targets[due.knock],
                        Some(r) => {
                            let unix = std::time::SystemTime::now()
                                .duration_since(std::time::UNIX_EPOCH)
                                .unwrap_or_default();
                            let c = *periods
                                .borrow_mut()
                                .entry(due.sequence)
                                .or_insert_with(|| r.rotation.period_at(unix));
                            let port = ports
                                .borrow_mut()
                                .entry(c)
                                .or_insert_with(|| r.rotation.sequence(&r.key, &r.door, c))
                                [due.knock];
                            SocketAddrV4::new(config.target, port)
                        }
                    },
                },
                deadline,
            )?;
            let mut used: Vec<u64> = periods.into_inner().into_values().collect();
            used.sort_unstable();
            used.dedup();
            report.periods = config.rotating.as_ref().map(|_| used.len() as u64);
            report.packets_sent = sent;
            report.send_time = took;
        }
        Mode::Latency => measure_latency(config, &sender, deadline, &mut report)?,
        Mode::FirstFlood | Mode::WrongFlood => flood(config, &sender, deadline, &mut report)?,
        Mode::Spa => unreachable!("handled above"),
    }
    let settle_until = (Instant::now() + config.settle).min(deadline);
    std::thread::sleep(settle_until.saturating_duration_since(Instant::now()));
    if let (Some(addr), Some(before)) = (config.stats, before) {
        report.counters = Some((before, observe::read_counters(addr)?));
    }
    report.kernel_drops = drops_before
        .zip(observe::udp_rcvbuf_errors())
        .map(|(a, b)| b.saturating_sub(a));
    report.server_peak_rss_kb = config.server_pid.and_then(observe::peak_rss_kb);
    Ok(report)
}

/// The server's address for each knock of the sequence.
fn targets(config: &BenchConfig) -> Vec<SocketAddrV4> {
    config
        .sequence
        .iter()
        .map(|&port| SocketAddrV4::new(config.target, port))
        .collect()
}

/// Sends what `schedule` holds as it falls due, in batches; stops at
/// `deadline`. Returns the packets sent and the time it took.
fn send_schedule(
    sender: &Sender,
    mut schedule: Schedule,
    packet: impl Fn(pacing::Due) -> Packet,
    deadline: Instant,
) -> Result<(u64, Duration), BenchError> {
    let start = Instant::now();
    let mut batch = Vec::with_capacity(BATCH);
    let mut sent = 0u64;
    while let Some(due) = schedule.peek() {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let elapsed = now - start;
        if due.at > elapsed {
            sent += flush(sender, &mut batch)?;
            std::thread::sleep((due.at - elapsed).min(deadline - now));
            continue;
        }
        schedule.next();
        batch.push(packet(due));
        if batch.len() == BATCH {
            sent += flush(sender, &mut batch)?;
        }
    }
    sent += flush(sender, &mut batch)?;
    Ok((sent, start.elapsed()))
}

fn flush(sender: &Sender, batch: &mut Vec<Packet>) -> Result<u64, BenchError> {
    if batch.is_empty() {
        return Ok(0);
    }
    let n = sender.send(batch).map_err(|source| BenchError::Io {
        context: "sendmmsg failed",
        source,
    })?;
    batch.clear();
    Ok(n as u64)
}

/// One sequence at a time: knock, then probe until access opens.
fn measure_latency(
    config: &BenchConfig,
    sender: &Sender,
    deadline: Instant,
    report: &mut Report,
) -> Result<(), BenchError> {
    let protected = SocketAddr::new(IpAddr::V4(config.target), config.protected_port);
    let mut samples = Vec::with_capacity(config.count as usize);
    let start = Instant::now();
    for i in 0..config.count {
        if Instant::now() >= deadline {
            break;
        }
        let source = source_at(config.source_base, i);
        let last_sent = knock_sequence(config, sender, source)?;
        report.packets_sent += config.sequence.len() as u64;
        let probe_deadline = (Instant::now() + Duration::from_secs(2)).min(deadline);
        match probe::wait_open(IpAddr::V4(source), protected, probe_deadline) {
            Some(open) => samples.push(open - last_sent),
            None => report.probes_failed += 1,
        }
    }
    report.send_time = start.elapsed();
    report.latency = LatencySummary::of(&mut samples);
    Ok(())
}

/// Sends one whole sequence from `source`, `gap` apart; returns when the
/// last knock left.
fn knock_sequence(
    config: &BenchConfig,
    sender: &Sender,
    source: Ipv4Addr,
) -> Result<Instant, BenchError> {
    let mut last = Instant::now();
    for (j, &port) in config.sequence.iter().enumerate() {
        if j > 0 {
            std::thread::sleep(config.gap);
        }
        let packet = Packet {
            source,
            target: SocketAddrV4::new(config.target, port),
        };
        last = Instant::now();
        flush(sender, &mut vec![packet])?;
    }
    Ok(last)
}

/// A flood of first or wrong knocks from distinct sources, with the
/// legitimate client (if any) knocking from its own thread meanwhile.
fn flood(
    config: &BenchConfig,
    sender: &Sender,
    deadline: Instant,
    report: &mut Report,
) -> Result<(), BenchError> {
    let first = config.sequence[0];
    let port = match config.mode {
        Mode::WrongFlood => config
            .sequence
            .iter()
            .copied()
            .find(|&p| p != first)
            .unwrap_or(first.wrapping_add(1)),
        _ => first,
    };
    let target = SocketAddrV4::new(config.target, port);
    let total = u64::from(config.count);
    std::thread::scope(|scope| {
        let legit = config
            .legit
            .map(|source| scope.spawn(move || legit_client(config, source, deadline)));
        let start = Instant::now();
        let mut batch = Vec::with_capacity(BATCH);
        let mut queued = 0u64;
        while queued < total && Instant::now() < deadline {
            let allowed = flood_allowance(total, config.rate, start.elapsed());
            if queued >= allowed {
                report.packets_sent += flush(sender, &mut batch)?;
                std::thread::sleep(Duration::from_micros(100));
                continue;
            }
            let index = u32::try_from(queued).unwrap_or(u32::MAX);
            batch.push(Packet {
                source: source_at(config.source_base, index),
                target,
            });
            queued += 1;
            if batch.len() == BATCH {
                report.packets_sent += flush(sender, &mut batch)?;
            }
        }
        report.packets_sent += flush(sender, &mut batch)?;
        report.send_time = start.elapsed();
        if let Some(handle) = legit {
            report.legit = Some(handle.join().unwrap_or((0, false)));
        }
        Ok(())
    })
}

/// The legitimate client during a flood: waits for the flood to build up,
/// then knocks and probes; after a refusal it waits out a lockout and tries
/// again, until in or out of time. Returns attempts and whether it got in.
fn legit_client(config: &BenchConfig, source: Ipv4Addr, deadline: Instant) -> (u32, bool) {
    let Ok(sender) = Sender::new() else {
        return (0, false);
    };
    let protected = SocketAddr::new(IpAddr::V4(config.target), config.protected_port);
    std::thread::sleep(
        Duration::from_millis(200).min(deadline.saturating_duration_since(Instant::now())),
    );
    let mut attempts = 0;
    while Instant::now() < deadline && attempts < 10 {
        attempts += 1;
        if knock_sequence(config, &sender, source).is_err() {
            break;
        }
        let probe_deadline = (Instant::now() + Duration::from_millis(500)).min(deadline);
        if probe::wait_open(IpAddr::V4(source), protected, probe_deadline).is_some() {
            return (attempts, true);
        }
    }
    (attempts, false)
}
