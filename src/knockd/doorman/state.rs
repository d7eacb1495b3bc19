//! The doorman's state: the doors with their commands, the attempts, the
//! pending stops; what a knock, a finished command, a due stop and the
//! shutdown do to it.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{error, info, warn};

use super::launch::{Done, due, log_report, spawn_argv, spawn_run};
use super::{DoormanSettings, MAX_SOURCES, command_doors};
use crate::commands::{PendingFile, PendingStop};
use crate::config::KnockPort;
use crate::knockd::attempts::{Attempts, DoorRule, Event};
use crate::knockd::model::SequenceSource;
use crate::knockd::one_time;
use crate::knockd::plan::{Commands, Planned, Service};

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

pub(super) struct State {
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
    pub(super) fn new(settings: DoormanSettings) -> Self {
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
    pub(super) fn recover(&mut self) {
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

    pub(super) fn next_due(&self) -> Option<Instant> {
        let now = SystemTime::now();
        self.stops
            .iter()
            .filter(|s| !s.starting)
            .map(|s| Instant::now() + s.record.remaining(now))
            .min()
    }

    pub(super) fn knock(
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

    pub(super) fn finished(&mut self, finished: Done) {
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

    pub(super) fn run_due(&mut self, done: &mpsc::UnboundedSender<Done>) {
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

    pub(super) fn prune(&mut self) {
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
    pub(super) async fn shutdown(
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
