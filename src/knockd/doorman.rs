//! The shell of the knockd drop-in: hears the command doors' knocks, runs
//! their attempts (`attempts.rs`), and carries out an opened door: the
//! one-time line consumed durably, the start command run, the stop command
//! owned by this task's timer and recorded in the state file
//! (`commands/pending.rs`), so it runs after a restart too, and at shutdown
//! for every door still open.
//!
//! knockd's "duplicates rules on repeated knocks" is fixed here: a door
//! that is open for a source (its stop is pending) is not started again by
//! the same source; its stop is postponed instead. Commands run on
//! blocking threads with a time limit (`commands/runner.rs`); the task
//! never waits for one. UDP knocks are heard on bound sockets, TCP knocks
//! through an AF_PACKET capture (`hearing.rs`).

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{info, warn};

use super::hearing::{self, Heard};
use super::model::SequenceSource;
use super::one_time;
use super::plan::{Planned, Service};
use crate::capture::packet::PacketSource;
use crate::capture::{CaptureSource, CaptureSpec};
use crate::commands::PendingFile;
use crate::config::Proto;
use crate::shutdown::Shutdown;

/// Default time limit of one command run (`--knockd-command-timeout`).
pub const DEFAULT_RUN_LIMIT: Duration = Duration::from_secs(30);
/// How often stale attempts are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(1);
/// Sources tracked at most (a flood displaces the oldest first).
pub const MAX_SOURCES: usize = 65_536;

/// What the doorman needs.
#[derive(Debug, Clone)]
pub struct DoormanSettings {
    /// The doors served by commands (others are skipped).
    pub doors: Vec<Planned>,
    /// Addresses to bind the knock sockets on.
    pub binds: Vec<IpAddr>,
    /// Where the pending stops are recorded.
    pub state_dir: PathBuf,
    /// Time limit of each command run.
    pub run_limit: Duration,
    /// The interface TCP knocks are captured on (None: all).
    pub interface: Option<String>,
}

/// Why the doorman could not start.
#[derive(Debug, thiserror::Error)]
pub enum DoormanError {
    /// A knock socket could not be bound.
    #[error("cannot bind the knock sockets: {0}")]
    Bind(#[from] crate::server::ServerError),
    /// TCP knocks cannot be captured (needs CAP_NET_RAW).
    #[error("cannot capture TCP knocks: {0}")]
    Capture(crate::capture::CaptureError),
    /// The state file of pending stops is unusable.
    #[error(transparent)]
    Pending(#[from] crate::commands::PendingError),
}

/// The knock sockets, bound; [`Doorman::run`] serves them.
pub struct Doorman {
    settings: DoormanSettings,
    sockets: Vec<UdpSocket>,
    capture: Option<Box<dyn CaptureSource>>,
}

impl Doorman {
    /// Binds a UDP socket per UDP knock port of the command doors, and
    /// reads the pending stops file (a corrupt file fails the start).
    pub fn bind(settings: DoormanSettings) -> Result<Self, DoormanError> {
        let mut ports = Vec::new();
        let mut tcp_ports = Vec::new();
        for planned in command_doors(&settings.doors) {
            let mut knocks = planned.door.knocks().to_vec();
            if let SequenceSource::OneTime { path, .. } = &planned.door.sequence {
                // Every unused line's ports: each becomes the sequence in turn.
                let lines = one_time::all_unused(&path.value).unwrap_or_default();
                knocks.extend(lines.into_iter().flatten());
            }
            for knock in &knocks {
                if knock.proto == Proto::Udp && !ports.contains(&knock.port) {
                    ports.push(knock.port);
                }
            }
            for knock in knocks.iter().filter(|k| k.proto == Proto::Tcp) {
                if !tcp_ports.contains(&knock.port) {
                    tcp_ports.push(knock.port);
                }
            }
        }
        tcp_ports.sort_unstable();
        // TCP knocks (knockd's default) are read off the wire.
        let capture = match tcp_ports.is_empty() {
            true => None,
            false => {
                let spec = CaptureSpec {
                    udp_ports: Vec::new(),
                    tcp_ports: tcp_ports.clone(),
                    interfaces: settings.interface.iter().cloned().collect(),
                };
                let source = PacketSource::open(&spec).map_err(DoormanError::Capture)?;
                info!(ports = ?tcp_ports, interface = ?settings.interface, "TCP knocks: AF_PACKET capture");
                Some(Box::new(source) as Box<dyn CaptureSource>)
            }
        };
        PendingFile::in_dir(&settings.state_dir).load()?;
        let sockets = crate::server::bind_udp(&settings.binds, &ports)?;
        Ok(Self {
            settings,
            sockets,
            capture,
        })
    }

    /// Serves until `shutdown`; then waits for running start commands and
    /// runs every pending stop.
    pub async fn run(self, shutdown: Shutdown) {
        let (knock_tx, mut knocks) = mpsc::channel::<Heard>(1024);
        let stop = Arc::new(AtomicBool::new(false));
        let sockets = self
            .sockets
            .into_iter()
            .filter_map(|s| {
                s.into_std()
                    .map_err(|err| warn!(error = %err, "knock socket unusable"))
                    .ok()
            })
            .collect();
        let hearing = hearing::spawn(sockets, self.capture, knock_tx, stop.clone());
        let mut state = State::new(self.settings);
        state.recover();
        let (done_tx, mut done) = mpsc::unbounded_channel::<Done>();
        let mut prune = tokio::time::interval(PRUNE_EVERY);
        let mut events = Vec::new();
        loop {
            let next = state.next_due();
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some((ip, knock, stamp)) = knocks.recv() => {
                    let at = arrival(stamp);
                    state.knock(ip, knock, at, &mut events, &done_tx);
                }
                Some(finished) = done.recv() => state.finished(finished),
                () = sleep => state.run_due(&done_tx),
                _ = prune.tick() => state.prune(),
                () = shutdown.stopped() => break,
            }
        }
        stop.store(true, Ordering::Relaxed);
        drop(knocks);
        let _ = tokio::task::spawn_blocking(move || hearing.join()).await;
        state.shutdown(&mut done, done_tx).await;
    }
}

fn command_doors(doors: &[Planned]) -> impl Iterator<Item = &Planned> {
    doors
        .iter()
        .filter(|p| matches!(p.service, Service::Commands { .. }))
}

/// The monotonic instant of a knock stamped `stamp` (ns of CLOCK_REALTIME):
/// now, less how long it waited (at most a second: a larger gap is a
/// stepped clock), and never before an earlier knock's instant.
fn arrival(stamp: u64) -> std::time::Instant {
    let waited = crate::server::order::realtime_ns().saturating_sub(stamp);
    let waited = Duration::from_nanos(waited).min(crate::server::order::MAX_AGE);
    Instant::now().into_std() - waited
}

mod launch;
mod state;

use launch::Done;
use state::State;
