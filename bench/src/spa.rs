//! SPA mode (`knock-bench --mode spa`): fwknop-format Single Packet
//! Authorization packets offered to an SPA server (ours or fwknopd), each
//! freshly encoded, each naming its own allow-IP.
//!
//! Two phases, both bounded by count and by the run's deadline:
//! 1. latency: `latency_count` packets one at a time; after each, a TCP
//!    probe from the packet's allow-IP waits for the protected port to open
//!    (the userspace gate serves the granted IP; a kernel backend or
//!    fwknopd's iptables rule lets the SYN through);
//! 2. throughput: `count` packets at `rate` a second (0: full rate), then
//!    the opened count is watched until it reaches the offered count, stops
//!    growing for `settle`, or the deadline passes. Opened per second is
//!    the opened count over the time from the first packet sent to the last
//!    opening seen.
//!
//! Why these choices:
//! - Every packet is encoded before the timed phases (AES, two SHA-256,
//!   base64: tens of microseconds each, which would cap a full-rate load),
//!   with fresh randomness (a resent packet is a replay) and the current
//!   timestamp, so the whole run must fit in the server's age window
//!   ([`MAX_RUN`] keeps it well inside fwknopd's default 120 s).
//! - Packet `i` names allow-IP `source_at(source_base, i)` and is *sent
//!   from* that address too, so it is accepted with or without
//!   `--spa-require-source-match` (fwknopd: `REQUIRE_SOURCE_ADDRESS`), and
//!   every packet makes a new grant instead of renewing one.
//! - "Opened" comes from our server's counters (firewall changes applied,
//!   which for a kernel backend is later than `spa_grants`, the grants
//!   queued for the firewall) or, for a server without counters (fwknopd), from lines of
//!   its log that match a pattern (`Added access rule`).

use std::io::{Read, Seek, SeekFrom};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::report::{LatencySummary, Report, SpaFigures};
use super::sender::{BATCH, Packet, Sender, source_at};
use super::{BenchConfig, BenchError, observe, pacing::flood_allowance, probe};
use portknock::counters::SpaCountersSnapshot;
use portknock::spa::{PortSpec, Proto, SpaKeys, SpaRequest, encode};

/// Longest SPA run: packets are stamped when encoded, before the run, and
/// servers refuse them once older than their age window (120 s default).
pub const MAX_RUN: Duration = Duration::from_secs(100);
/// How long one latency probe waits for the port to open.
pub const PROBE_WAIT: Duration = Duration::from_secs(3);
/// How often the opened count is read during the throughput phase.
const POLL: Duration = Duration::from_millis(10);

/// Where the count of openings comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenedBy {
    /// Our server's stats endpoint: firewall changes applied without
    /// failure (grants, as no access expires within a run: give the stanza
    /// a FW_ACCESS_TIMEOUT longer than the run).
    Stats(SocketAddr),
    /// Lines of a server's log containing `pattern` (fwknopd: `Added access rule`).
    Log {
        /// The log file.
        path: PathBuf,
        /// What an opening line contains.
        pattern: String,
    },
}

/// The SPA side of a run.
#[derive(Debug, Clone)]
pub struct SpaLoad {
    /// Keys of the server's stanza.
    pub keys: SpaKeys,
    /// The server's SPA UDP port.
    pub port: u16,
    /// Packets sent one at a time and probed before the throughput phase.
    pub latency_count: u32,
    /// Where openings are counted; None: the throughput phase only sends.
    pub opened_by: Option<OpenedBy>,
}

/// Encodes packet `first + i` for `i in 0..n`: allow-IP from `base`,
/// access to `tcp/port`, stamped `timestamp`.
pub fn encode_packets(
    keys: &SpaKeys,
    base: Ipv4Addr,
    first: u32,
    n: u32,
    port: u16,
    timestamp: u64,
) -> Result<Vec<Vec<u8>>, BenchError> {
    (first..first.saturating_add(n))
        .map(|i| {
            let access = vec![tcp(port)];
            let request = SpaRequest::new("bench", source_at(base, i), access, timestamp);
            encode(&request, keys)
                .map(String::into_bytes)
                .map_err(BenchError::Encode)
        })
        .collect()
}

fn tcp(port: u16) -> PortSpec {
    PortSpec {
        proto: Proto::Tcp,
        port,
    }
}

/// Counts lines containing a pattern in a growing text, fed in chunks.
#[derive(Debug, Clone)]
pub struct LineCounter {
    pattern: String,
    partial: Vec<u8>,
    count: u64,
}

impl LineCounter {
    /// A counter of lines containing `pattern`.
    pub fn new(pattern: &str) -> Self {
        Self {
            pattern: pattern.to_string(),
            partial: Vec::new(),
            count: 0,
        }
    }

    /// Takes the next chunk; a line counts once it is complete.
    pub fn feed(&mut self, chunk: &[u8]) {
        self.partial.extend_from_slice(chunk);
        let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return;
        };
        let complete = String::from_utf8_lossy(&self.partial[..end]);
        self.count += complete
            .lines()
            .filter(|line| line.contains(&self.pattern))
            .count() as u64;
        self.partial.drain(..=end);
    }

    /// Complete matching lines so far.
    pub fn count(&self) -> u64 {
        self.count
    }
}

/// Watches when the opened count stops growing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenTracker {
    start: u64,
    target: u64,
    last: u64,
    last_change: Instant,
}

impl OpenTracker {
    /// Starting from `count` at `now`, waiting for `offered` more.
    pub fn new(count: u64, offered: u64, now: Instant) -> Self {
        Self {
            start: count,
            target: count + offered,
            last: count,
            last_change: now,
        }
    }

    /// Records the count seen at `now`.
    pub fn observe(&mut self, count: u64, now: Instant) {
        if count != self.last {
            self.last = count;
            self.last_change = now;
        }
    }

    /// Whether to stop watching: all opened, or nothing new for `settle`
    /// once sending is over.
    pub fn done(&self, now: Instant, settle: Duration, sending_over: bool) -> bool {
        self.last >= self.target
            || (sending_over && now.saturating_duration_since(self.last_change) >= settle)
    }

    /// Openings since the start, and when the last one was seen.
    pub fn opened(&self) -> (u64, Instant) {
        (self.last - self.start, self.last_change)
    }
}

/// Reads the opened count (and, from our server, its SPA counters).
struct Watcher {
    by: OpenedBy,
    log: Option<(std::fs::File, LineCounter)>,
}

impl Watcher {
    fn new(by: OpenedBy) -> Result<Self, BenchError> {
        let log = match &by {
            OpenedBy::Log { path, pattern } => {
                let file = std::fs::File::open(path).map_err(|source| BenchError::Io {
                    context: "cannot open the server log to count openings",
                    source,
                })?;
                Some((file, LineCounter::new(pattern)))
            }
            OpenedBy::Stats(_) => None,
        };
        Ok(Self { by, log })
    }

    /// The opened count now, and the SPA counters if the source has them.
    fn read(&mut self) -> Result<(u64, Option<SpaCountersSnapshot>), BenchError> {
        match (&self.by, &mut self.log) {
            (OpenedBy::Stats(addr), _) => {
                let (counters, spa) = observe::read_spa_counters(*addr)?;
                Ok((
                    counters.firewall_ops - counters.firewall_failures,
                    Some(spa),
                ))
            }
            (OpenedBy::Log { .. }, Some((file, counter))) => {
                let mut chunk = Vec::new();
                let read = file.read_to_end(&mut chunk);
                if read.is_err() {
                    // A rotated or truncated log: start over from its head.
                    let _ = file.seek(SeekFrom::Start(0));
                }
                counter.feed(&chunk);
                Ok((counter.count(), None))
            }
            (OpenedBy::Log { .. }, None) => Ok((0, None)),
        }
    }
}

/// The unix time now.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Runs both phases of an SPA load.
pub fn run(config: &BenchConfig, load: &SpaLoad, sender: &Sender) -> Result<Report, BenchError> {
    let started = Instant::now();
    let deadline = started + config.time_limit.min(MAX_RUN);
    let total = load.latency_count.saturating_add(config.count);
    let packets = encode_packets(
        &load.keys,
        config.source_base,
        0,
        total,
        config.protected_port,
        unix_now(),
    )?;
    let encode_time = started.elapsed();
    let mut report = Report {
        mode: format!("{:?}", config.mode),
        offered: u64::from(config.count),
        ..Report::default()
    };
    let mut figures = SpaFigures {
        encode_per_packet: encode_time / total.max(1),
        ..SpaFigures::default()
    };
    let target = SocketAddrV4::new(config.target, load.port);
    let (latency_packets, load_packets) = packets.split_at(load.latency_count as usize);
    measure_latency(
        config,
        sender,
        target,
        latency_packets,
        deadline,
        &mut report,
    )?;
    let mut watcher = load.opened_by.clone().map(Watcher::new).transpose()?;
    let before = match &mut watcher {
        Some(w) => Some(w.read()?),
        None => None,
    };
    let drops_before = observe::udp_rcvbuf_errors();
    let start = Instant::now();
    let mut tracker = before.map(|(count, _)| OpenTracker::new(count, report.offered, start));
    let mut next_poll = start + POLL;
    let mut batch = Vec::with_capacity(BATCH);
    let mut payloads: Vec<&[u8]> = Vec::with_capacity(BATCH);
    let mut queued = 0u64;
    let first = u64::from(load.latency_count);
    while queued < report.offered && Instant::now() < deadline {
        let now = Instant::now();
        if let (Some(w), Some(t)) = (&mut watcher, &mut tracker)
            && now >= next_poll
        {
            t.observe(w.read()?.0, Instant::now());
            next_poll = now + POLL;
        }
        let allowed = flood_allowance(report.offered, config.rate, start.elapsed());
        if queued >= allowed {
            report.packets_sent += flush(sender, &mut batch, &mut payloads)?;
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        let index = u32::try_from(first + queued).unwrap_or(u32::MAX);
        batch.push(Packet {
            source: source_at(config.source_base, index),
            target,
        });
        payloads.push(&load_packets[queued as usize]);
        queued += 1;
        if batch.len() == BATCH {
            report.packets_sent += flush(sender, &mut batch, &mut payloads)?;
        }
    }
    report.packets_sent += flush(sender, &mut batch, &mut payloads)?;
    report.send_time = start.elapsed();
    if let (Some(w), Some(t), Some((_, spa_before))) = (&mut watcher, &mut tracker, before) {
        let mut spa_after = None;
        loop {
            let now = Instant::now();
            let (count, spa) = w.read()?;
            t.observe(count, now);
            spa_after = spa.or(spa_after);
            if t.done(now, config.settle, true) || now >= deadline {
                break;
            }
            std::thread::sleep(POLL.min(deadline.saturating_duration_since(now)));
        }
        let (opened, last) = t.opened();
        figures.opened = Some(opened);
        figures.open_time = last.saturating_duration_since(start);
        figures.counters = spa_before.zip(spa_after);
    }
    report.kernel_drops = drops_before
        .zip(observe::udp_rcvbuf_errors())
        .map(|(a, b)| b.saturating_sub(a));
    report.server_peak_rss_kb = config.server_pid.and_then(observe::peak_rss_kb);
    report.spa = Some(figures);
    Ok(report)
}

/// Sends each latency packet alone and probes from its allow-IP until the
/// protected port opens.
fn measure_latency(
    config: &BenchConfig,
    sender: &Sender,
    target: SocketAddrV4,
    packets: &[Vec<u8>],
    deadline: Instant,
    report: &mut Report,
) -> Result<(), BenchError> {
    let protected = SocketAddr::new(IpAddr::V4(config.target), config.protected_port);
    let mut samples = Vec::with_capacity(packets.len());
    for (i, payload) in packets.iter().enumerate() {
        if Instant::now() >= deadline {
            break;
        }
        let source = source_at(config.source_base, i as u32);
        let packet = Packet { source, target };
        let sent = Instant::now();
        flush(sender, &mut vec![packet], &mut vec![payload.as_slice()])?;
        let probe_deadline = (sent + PROBE_WAIT).min(deadline);
        match probe::wait_open(IpAddr::V4(source), protected, probe_deadline) {
            Some(open) => samples.push(open - sent),
            None => report.probes_failed += 1,
        }
    }
    report.latency = LatencySummary::of(&mut samples);
    Ok(())
}

fn flush(
    sender: &Sender,
    batch: &mut Vec<Packet>,
    payloads: &mut Vec<&[u8]>,
) -> Result<u64, BenchError> {
    if batch.is_empty() {
        return Ok(0);
    }
    let n = sender
        .send_payloads(batch, payloads)
        .map_err(|source| BenchError::Io {
            context: "sendmmsg failed",
            source,
        })?;
    batch.clear();
    payloads.clear();
    Ok(n as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use portknock::spa::{
        AccessConfOptions, DigestType, EncryptionMode, ReplayCache, ServerPolicy, Verdict,
        Verifier, parse_access_conf,
    };

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn lines_count_once_complete_across_chunks() {
        let mut c = LineCounter::new("Added access rule");
        c.feed(b"start\nAdded access rule to FWKNOP_INPUT for 1");
        assert_eq!(c.count(), 0, "an incomplete line does not count yet");
        c.feed(b"27.0.0.2\nother\nAdded access rule x\nAdded acc");
        assert_eq!(c.count(), 2);
        c.feed(b"ess rule y\n\n");
        assert_eq!(c.count(), 3);
        c.feed(b"");
        assert_eq!(c.count(), 3);
    }

    #[test]
    fn the_tracker_stops_when_all_opened_or_when_openings_stall() {
        let t0 = Instant::now();
        let mut t = OpenTracker::new(5, 3, t0);
        assert!(!t.done(t0, 100 * MS, false));
        t.observe(7, t0 + 10 * MS);
        assert!(!t.done(t0 + 500 * MS, 100 * MS, false), "still sending");
        assert!(
            t.done(t0 + 110 * MS, 100 * MS, true),
            "stalled after sending"
        );
        assert!(!t.done(t0 + 100 * MS, 100 * MS, true));
        t.observe(8, t0 + 20 * MS);
        assert!(t.done(t0 + 20 * MS, 100 * MS, false), "all opened");
        t.observe(8, t0 + 90 * MS);
        assert_eq!(t.opened(), (3, t0 + 20 * MS), "a repeat is no change");
    }

    #[test]
    fn encoded_packets_are_distinct_and_each_opens_its_own_address() {
        let keys = SpaKeys::new(
            vec![7; 32],
            Some(vec![9; 64]),
            DigestType::Sha256,
            EncryptionMode::Cbc,
        )
        .unwrap();
        let conf = parse_access_conf(
            &format!(
                "SOURCE ANY\nKEY_BASE64 {}\nHMAC_KEY_BASE64 {}\nOPEN_PORTS tcp/2222\n",
                b64(&[7; 32]),
                b64(&[9; 64])
            ),
            AccessConfOptions::default(),
        )
        .unwrap();
        let verifier = Verifier::new(conf.stanzas, ServerPolicy::default());
        let mut replay = ReplayCache::in_memory(120);
        let now = unix_now();
        let base = Ipv4Addr::new(127, 20, 0, 0);
        let packets = encode_packets(&keys, base, 3, 4, 2222, now).unwrap();
        assert_eq!(packets.len(), 4);
        for (i, packet) in packets.iter().enumerate() {
            let allow = source_at(base, 3 + i as u32);
            let verdict = verifier.verify(packet, IpAddr::V4(allow), now, &mut replay);
            let Verdict::Accept(accepted) = verdict else {
                panic!("packet {i} refused: {verdict:?}");
            };
            assert_eq!(accepted.allow_ip, allow);
            assert_eq!(accepted.ports, vec![tcp(2222)]);
        }
        // Sent again, each one is a replay.
        let again = verifier.verify(&packets[0], IpAddr::V4(base), now, &mut replay);
        assert!(matches!(again, Verdict::Reject(_)), "{again:?}");
    }

    fn b64(bytes: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }
}
