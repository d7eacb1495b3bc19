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
//! never waits for one. Knocks are heard on bound UDP sockets; TCP knocks
//! wait for stealth capture (logged at start per door).

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{error, info, warn};

use super::attempts::{Attempts, DoorRule, Event};
use super::hearing::{self, Heard};
use super::model::SequenceSource;
use super::one_time;
use super::plan::{Commands, Planned, Service};
use crate::commands::runner::{self, Ending, Report};
use crate::commands::{PendingFile, PendingStop, Template};
use crate::config::{KnockPort, Proto};
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
}

/// Why the doorman could not start.
#[derive(Debug, thiserror::Error)]
pub enum DoormanError {
    /// A knock socket could not be bound.
    #[error("cannot bind the knock sockets: {0}")]
    Bind(#[from] crate::server::ServerError),
    /// The state file of pending stops is unusable.
    #[error(transparent)]
    Pending(#[from] crate::commands::PendingError),
}

struct Door {
    planned: Planned,
    v4: Commands,
    v6: Commands,
}

/// A pending stop, and whether its door's start command still runs.
struct Stop {
    record: PendingStop,
    door: usize,
    starting: bool,
}

enum Done {
    Start {
        door: usize,
        ip: IpAddr,
        report: Report,
    },
    Stop {
        door: String,
        ip: String,
        report: Report,
    },
}

/// The knock sockets, bound; [`Doorman::run`] serves them.
pub struct Doorman {
    settings: DoormanSettings,
    sockets: Vec<UdpSocket>,
}

impl Doorman {
    /// Binds a UDP socket per UDP knock port of the command doors, and
    /// reads the pending stops file (a corrupt file fails the start).
    pub fn bind(settings: DoormanSettings) -> Result<Self, DoormanError> {
        let mut ports = Vec::new();
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
            if planned.door.knocks().iter().any(|k| k.proto == Proto::Tcp) {
                warn!(door = %planned.door.name, "door has TCP knocks: not heard by this build (stealth capture); this door cannot be opened by knocking yet");
            }
        }
        PendingFile::in_dir(&settings.state_dir).load()?;
        let sockets = crate::server::bind_udp(&settings.binds, &ports)?;
        Ok(Self { settings, sockets })
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
        let hearing = hearing::spawn(sockets, knock_tx, stop.clone());
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
                Some((ip, port, stamp)) = knocks.recv() => {
                    let at = arrival(stamp);
                    state.knock(ip, KnockPort::udp(port), at, &mut events, &done_tx);
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

struct State {
    doors: Vec<Door>,
    attempts: Attempts,
    stops: Vec<Stop>,
    file: PendingFile,
    run_limit: Duration,
    /// Start commands running now.
    starting: usize,
    /// Stop commands running now.
    stopping: usize,
    /// When the latest knock arrived (kept non-decreasing).
    last_knock: Option<std::time::Instant>,
}

impl State {
    fn new(settings: DoormanSettings) -> Self {
        let doors: Vec<Door> = command_doors(&settings.doors)
            .map(|planned| {
                let Service::Commands { v4, v6 } = &planned.service else {
                    unreachable!("filtered");
                };
                Door {
                    v4: v4.clone(),
                    v6: v6.clone(),
                    planned: planned.clone(),
                }
            })
            .collect();
        let rules = doors
            .iter()
            .map(|d| {
                let knocks = d.planned.door.knocks();
                DoorRule {
                    sequence: (!knocks.is_empty()).then(|| knocks.to_vec()),
                    timeout: d.planned.door.seq_timeout,
                    allow_duplicates: d.planned.door.allow_duplicates,
                    lockout: d.planned.lockout,
                }
            })
            .collect();
        for d in &doors {
            if d.planned.door.knocks().is_empty() {
                warn!(door = %d.planned.door.name, "one-time sequences file has no unused line: door disabled");
            }
        }
        Self {
            doors,
            attempts: Attempts::new(rules, MAX_SOURCES),
            stops: Vec::new(),
            file: PendingFile::in_dir(&settings.state_dir),
            run_limit: settings.run_limit,
            starting: 0,
            stopping: 0,
            last_knock: None,
        }
    }

    /// Takes over the stops a previous run left: overdue ones run at once.
    fn recover(&mut self) {
        let records = match self.file.load() {
            Ok(records) => records,
            Err(err) => {
                error!(error = %err, "pending stops not recovered");
                return;
            }
        };
        for record in records {
            let late = record.remaining(SystemTime::now()).is_zero();
            info!(door = %record.door, ip = %record.ip, overdue = late, "stop command pending from a previous run");
            let door = self
                .doors
                .iter()
                .position(|d| d.planned.door.name == record.door)
                .unwrap_or(usize::MAX);
            self.stops.push(Stop {
                record,
                door,
                starting: false,
            });
        }
    }

    fn save(&self) {
        let records: Vec<PendingStop> = self.stops.iter().map(|s| s.record.clone()).collect();
        if let Err(err) = self.file.save(&records) {
            error!(error = %err, "pending stops not recorded: a restart would not run them");
        }
    }

    fn next_due(&self) -> Option<Instant> {
        let now = SystemTime::now();
        self.stops
            .iter()
            .filter(|s| !s.starting)
            .map(|s| Instant::now() + s.record.remaining(now))
            .min()
    }

    fn knock(
        &mut self,
        ip: IpAddr,
        knock: KnockPort,
        at: std::time::Instant,
        events: &mut Vec<Event>,
        done: &mpsc::UnboundedSender<Done>,
    ) {
        events.clear();
        // The core needs non-decreasing time.
        let at = self.last_knock.map_or(at, |last| last.max(at));
        self.last_knock = Some(at);
        self.attempts.knock(ip, knock, at, events);
        for &event in events.iter() {
            self.event(ip, event, done);
        }
    }

    fn event(&mut self, ip: IpAddr, event: Event, done: &mpsc::UnboundedSender<Done>) {
        let name = |door: usize| self.doors[door].planned.door.name.clone();
        match event {
            Event::Stage { door, stage, .. } => info!("{ip}: {}: Stage {stage}", name(door)),
            Event::Timeout { door, stage } => {
                info!("{ip}: {}: sequence timeout (stage {stage})", name(door))
            }
            Event::Broken { door, stage } => {
                info!(
                    "{ip}: {}: wrong knock: sequence broken (stage {stage})",
                    name(door)
                )
            }
            Event::LockedOut => info!("{ip}: knock ignored: locked out"),
            Event::Open { door } => {
                info!("{ip}: {}: OPEN SESAME", name(door));
                self.open(door, ip, done);
            }
        }
    }

    fn open(&mut self, door: usize, ip: IpAddr, done: &mpsc::UnboundedSender<Done>) {
        let name = self.doors[door].planned.door.name.clone();
        if let SequenceSource::OneTime { path, current } =
            &mut self.doors[door].planned.door.sequence
        {
            let used = current.clone().unwrap_or_default();
            match one_time::consume(&path.value, &used) {
                Ok(next) => {
                    if next.is_none() {
                        warn!(door = %name, file = %path.value.display(), "one-time sequences used up: door disabled");
                    }
                    *current = next.clone();
                    self.attempts.set_sequence(door, next);
                }
                Err(err) => {
                    // Fail closed: a line that cannot be marked used does
                    // not open the door.
                    error!(door = %name, error = %err, "one-time sequence not consumed: door not opened, disabled");
                    *current = None;
                    self.attempts.set_sequence(door, None);
                    return;
                }
            }
        }
        let ip_text = ip.to_string();
        let commands = match ip.is_ipv6() {
            true => &self.doors[door].v6,
            false => &self.doors[door].v4,
        };
        let cmd_timeout = self.doors[door].planned.door.cmd_timeout;
        if let Some(stop) = self
            .stops
            .iter_mut()
            .find(|s| s.door == door && s.record.ip == ip_text)
        {
            if !stop.starting {
                stop.record.due_ms = due(cmd_timeout);
            }
            info!(door = %name, %ip, "door already open for this source: not started again, stop postponed");
            self.save();
            return;
        }
        let start = commands.start.clone();
        if let Some(stop) = &commands.stop {
            self.stops.push(Stop {
                record: PendingStop {
                    door: name.clone(),
                    ip: ip_text.clone(),
                    due_ms: due(cmd_timeout + self.run_limit),
                    argv: stop.argv(&ip_text),
                },
                door,
                starting: start.is_some(),
            });
            // Recorded before the start command runs: a crash from here on
            // still closes the door at the next start.
            self.save();
        }
        if let Some(start) = start {
            self.starting += 1;
            spawn_run(
                start,
                &ip_text,
                self.run_limit,
                name,
                done.clone(),
                move |name, report| {
                    let _ = name;
                    Done::Start { door, ip, report }
                },
            );
        }
    }

    fn finished(&mut self, finished: Done) {
        match finished {
            Done::Start { door, ip, report } => {
                self.starting -= 1;
                log_report(&self.doors[door].planned.door.name, &report);
                let cmd_timeout = self.doors[door].planned.door.cmd_timeout;
                let ip = ip.to_string();
                if let Some(stop) = self
                    .stops
                    .iter_mut()
                    .find(|s| s.door == door && s.record.ip == ip && s.starting)
                {
                    stop.starting = false;
                    stop.record.due_ms = due(cmd_timeout);
                    self.save();
                }
            }
            Done::Stop { door, ip, report } => {
                self.stopping -= 1;
                let _ = ip;
                log_report(&door, &report);
            }
        }
    }

    fn run_due(&mut self, done: &mpsc::UnboundedSender<Done>) {
        let now = SystemTime::now();
        let (due, keep): (Vec<Stop>, Vec<Stop>) = std::mem::take(&mut self.stops)
            .into_iter()
            .partition(|s| !s.starting && s.record.remaining(now).is_zero());
        self.stops = keep;
        if due.is_empty() {
            return;
        }
        self.save();
        for stop in due {
            self.stopping += 1;
            spawn_argv(stop.record, self.run_limit, done.clone());
        }
    }

    fn prune(&mut self) {
        let mut timeouts = Vec::new();
        self.attempts
            .prune(Instant::now().into_std(), &mut timeouts);
        for (ip, event) in timeouts {
            if let Event::Timeout { door, stage } = event {
                info!(
                    "{ip}: {}: sequence timeout (stage {stage})",
                    self.doors[door].planned.door.name
                );
            }
        }
    }

    /// Waits for start commands still running, then runs every pending
    /// stop now and waits for them (each bounded by the run limit).
    async fn shutdown(
        &mut self,
        done: &mut mpsc::UnboundedReceiver<Done>,
        tx: mpsc::UnboundedSender<Done>,
    ) {
        while self.starting > 0 {
            match done.recv().await {
                Some(finished) => self.finished(finished),
                None => break,
            }
        }
        for stop in &mut self.stops {
            stop.record.due_ms = 0;
            stop.starting = false;
        }
        if !self.stops.is_empty() {
            info!(
                stops = self.stops.len(),
                "shutting down: running the pending stop commands"
            );
        }
        self.run_due(&tx);
        drop(tx);
        while self.stopping > 0 {
            match done.recv().await {
                Some(finished) => self.finished(finished),
                None => break,
            }
        }
    }
}

/// Milliseconds since the epoch `after` from now.
fn due(after: Duration) -> u64 {
    crate::commands::pending::unix_ms(SystemTime::now() + after)
}

fn spawn_run(
    template: Template,
    ip: &str,
    limit: Duration,
    door: String,
    done: mpsc::UnboundedSender<Done>,
    wrap: impl FnOnce(String, Report) -> Done + Send + 'static,
) {
    let argv = template.argv(ip);
    info!("{door}: running command: {}", argv.join(" "));
    tokio::task::spawn_blocking(move || {
        let report = runner::run(&argv, limit);
        let _ = done.send(wrap(door, report));
    });
}

fn spawn_argv(stop: PendingStop, limit: Duration, done: mpsc::UnboundedSender<Done>) {
    info!("{}: running command: {}", stop.door, stop.argv.join(" "));
    tokio::task::spawn_blocking(move || {
        let report = runner::run(&stop.argv, limit);
        let _ = done.send(Done::Stop {
            door: stop.door,
            ip: stop.ip,
            report,
        });
    });
}

fn log_report(door: &str, report: &Report) {
    let stderr = report.stderr.trim();
    let took_ms = report.took.as_millis() as u64;
    match &report.ending {
        Ending::Exited(0) => info!(
            door,
            took_ms,
            stderr,
            dropped_bytes = report.dropped,
            "command succeeded"
        ),
        Ending::Exited(code) => warn!(
            door,
            took_ms,
            stderr,
            dropped_bytes = report.dropped,
            "{door}: command returned non-zero status code ({code})"
        ),
        Ending::Signalled(signal) => warn!(
            door,
            took_ms, stderr, "{door}: command killed by signal {signal}"
        ),
        Ending::TimedOut => warn!(
            door,
            took_ms,
            stderr,
            dropped_bytes = report.dropped,
            "{door}: command timed out: its process group was killed"
        ),
        Ending::NotStarted(why) => error!(door, "{door}: command could not start: {why}"),
    }
}
