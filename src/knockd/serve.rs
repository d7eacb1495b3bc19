//! `knock-server --knockd-config FILE`: the knockd.conf read and planned,
//! what runs how said in the log, and the doors served: command doors by
//! the doorman (`doorman.rs`), doors translated by `--knockd-native` by
//! the daemon (`server::daemon`) on the native backend, side by side under
//! one stop signal. A failure of either stops both; the doorman always
//! runs its pending stops on the way out.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;
use tracing::{info, warn};

use super::doorman::{Doorman, DoormanError, DoormanSettings};
use super::parse::ConfError;
use super::plan::{PlanOptions, Planned, Service};
use super::{load, plan};
use crate::config::{Globals, Issues, Proto, ServerConfig};
use crate::server::daemon::{self, DaemonError, GateTuning};
use crate::shutdown::Shutdown;

/// What `--knockd-config` and its companion flags ask for.
#[derive(Debug, Clone)]
pub struct KnockdRun {
    /// The knockd.conf.
    pub path: PathBuf,
    /// `--knockd-allow-shell`, `--knockd-native`, `--lockout`.
    pub options: PlanOptions,
    /// `--state-dir`: where pending stops are recorded.
    pub state_dir: PathBuf,
    /// `--knockd-command-timeout`: time limit of each command.
    pub run_limit: Duration,
    /// `--knockd-interface` (knockd's `-i`).
    pub interface: Option<String>,
    /// The daemon's globals from the flags (bind, firewall, instance...).
    pub globals: Globals,
}

/// Why a knockd.conf could not be served.
#[derive(Debug, Error)]
pub enum KnockdError {
    /// The file is refused (with file:line).
    #[error(transparent)]
    Conf(#[from] ConfError),
    /// The translated doors are refused by portknock's checks.
    #[error("{path}: the doors translated by --knockd-native: {issues}")]
    Native {
        /// The file.
        path: String,
        /// What the checks said.
        issues: Issues,
    },
    /// The doorman could not start.
    #[error(transparent)]
    Doorman(#[from] DoormanError),
    /// The daemon of the translated doors failed.
    #[error(transparent)]
    Daemon(#[from] DaemonError),
}

impl KnockdError {
    /// 2 for bad input, 1 for a runtime failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            KnockdError::Conf(_) | KnockdError::Native { .. } => crate::cli::EXIT_USAGE,
            KnockdError::Doorman(_) => crate::cli::EXIT_FAILURE,
            KnockdError::Daemon(err) => err.exit_code(),
        }
    }
}

/// A knockd.conf read and planned, ready to serve.
#[derive(Debug, Clone)]
pub struct Prepared {
    run: KnockdRun,
    doors: Vec<Planned>,
    native: Option<ServerConfig>,
}

/// Reads and plans `run.path`; every refusal is bad input (exit 2).
pub fn prepare(run: KnockdRun) -> Result<Prepared, KnockdError> {
    let file = load(&run.path)?;
    let doors = plan(&file, run.options)?;
    // A knock port is heard by one of the two: refuse sharing.
    for (i, door) in doors.iter().enumerate() {
        for earlier in &doors[..i] {
            if native(door) == native(earlier) {
                continue;
            }
            let shared = door.door.knocks().iter().find(|k| {
                earlier
                    .door
                    .knocks()
                    .iter()
                    .any(|e| e.port == k.port && k.proto == Proto::Udp && e.proto == Proto::Udp)
            });
            if let Some(knock) = shared {
                return Err(ConfError::new(
                    &run.path,
                    door.door.sequence_line(),
                    format!(
                        "door '{}' shares knock port {} with door '{}', but one is translated by --knockd-native and the other runs commands",
                        door.door.name, knock.port, earlier.door.name
                    ),
                )
                .into());
            }
        }
    }
    let natives: Vec<_> = doors
        .iter()
        .filter_map(|p| match &p.service {
            Service::Native(door) => Some(door.clone()),
            Service::Commands { .. } => None,
        })
        .collect();
    let native = match natives.is_empty() {
        true => None,
        false => Some(
            ServerConfig::new(run.globals.clone(), natives).map_err(|issues| {
                KnockdError::Native {
                    path: run.path.display().to_string(),
                    issues,
                }
            })?,
        ),
    };
    Ok(Prepared { run, doors, native })
}

fn native(planned: &Planned) -> bool {
    matches!(planned.service, Service::Native(_))
}

impl Prepared {
    /// One line per door: how it is served (and why not natively).
    pub fn describe(&self) -> Vec<String> {
        self.doors
            .iter()
            .map(|p| {
                let name = &p.door.name;
                match (&p.service, &p.not_native) {
                    (Service::Native(door), _) => format!(
                        "door '{name}': translated to the native backend: {} open {}s",
                        door.protected()
                            .iter()
                            .map(|p| p.to_string())
                            .collect::<Vec<_>>()
                            .join(","),
                        door.timing().access.as_secs()
                    ),
                    (Service::Commands { .. }, Some(why)) => {
                        format!("door '{name}': runs its commands (not translated: {why})")
                    }
                    (Service::Commands { .. }, None) => format!("door '{name}': runs its commands"),
                }
            })
            .collect()
    }

    /// The planned doors.
    pub fn doors(&self) -> &[Planned] {
        &self.doors
    }
}

/// Serves `prepared` until `shutdown`.
pub async fn serve(prepared: Prepared, shutdown: Shutdown) -> Result<(), KnockdError> {
    let Prepared { run, doors, native } = prepared;
    for line in Prepared::describe(&Prepared {
        run: run.clone(),
        doors: doors.clone(),
        native: None,
    }) {
        info!("{line}");
    }
    let file = load(&run.path)?;
    if file.options.use_syslog || file.options.log_file.is_some() || file.options.pid_file.is_some()
    {
        warn!(
            "[options] UseSyslog, LogFile and PidFile are ignored: logs go to stderr (the journal under systemd), no pid file is written"
        );
    }
    let interface =
        run.interface
            .clone()
            .or(file.options.interface.as_ref().map(|i| i.value.clone()));
    if let Some(interface) = &interface {
        info!(
            interface,
            "knockd Interface: TCP knocks are captured there; UDP knocks are heard on every interface of the bind addresses"
        );
    }
    let binds: Vec<IpAddr> = match run.globals.bind.is_empty() {
        true => crate::net::WILDCARDS.to_vec(),
        false => run.globals.bind.clone(),
    };
    let doorman = Doorman::bind(DoormanSettings {
        doors,
        binds,
        state_dir: run.state_dir.clone(),
        run_limit: run.run_limit,
        interface,
    })?;
    info!(state_dir = %run.state_dir.display(), "knockd doors ready");
    let (stopper, inner) = Shutdown::new();
    let outer = shutdown.clone();
    let doorman_task = tokio::spawn(doorman.run(inner.clone()));
    // knockd re-reads its file on SIGHUP; here the doors are fixed for the
    // run (a restart keeps the pending stops). Caught, so a `systemctl
    // reload` does not kill the daemon without its stops.
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|err| DaemonError::Unsupported(format!("cannot handle SIGHUP: {err}")))?;
    let daemon = async {
        match native {
            Some(config) => daemon::run_with(config, GateTuning::default(), None, inner.clone())
                .await
                .map_err(KnockdError::from),
            None => {
                inner.stopped().await;
                Ok(())
            }
        }
    };
    tokio::pin!(daemon);
    let mut stopping = false;
    let result = loop {
        tokio::select! {
            result = &mut daemon => break result,
            // The native daemon tears its firewall down before it returns.
            () = outer.stopped(), if !stopping => {
                stopping = true;
                stopper.stop();
            }
            _ = hangups.recv() => warn!("SIGHUP: a knockd.conf is not reloaded while running; restart the service to read it again (pending stop commands survive a restart)"),
        }
    };
    stopper.stop();
    let _ = doorman_task.await;
    result
}
