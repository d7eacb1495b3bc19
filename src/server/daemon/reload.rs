//! Reload: SIGHUP (or `knock-server --reload`, which finds the running
//! server of an instance and sends it SIGHUP) reads the file again.
//!
//! An invalid file, or a change this reload cannot carry out, is refused
//! with its errors in the log and the running configuration stays. A valid
//! one is checked against what runs, new knock ports are bound (a busy
//! port refuses the reload), and the new doors are swapped into the
//! running server in one step (`server/reload.rs`): open grants stay until
//! their end (a removed door's are revoked), progress on unchanged doors
//! is kept while a changed door starts afresh, knock sockets of dropped
//! ports close.
//!
//! Changed protected ports are handed to the firewall first (one
//! transaction with nftables; the chain rebuilt, grants re-applied, with
//! iptables); if the backend refuses, nothing changes.
//!
//! Changes that need a restart for now: the global settings (bind
//! addresses, backend, SPA, ...), the userspace gate's ports (its
//! listeners are bound once), and going from no door to doors or back.

use std::io;
use std::net::IpAddr;
use std::path::PathBuf;

use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use super::{DaemonError, bind, door_ports, door_settings, knock_ports};
use crate::config::{GlobalOverrides, Proto, ServerConfig, file};
use crate::firewall::FirewallKind;
use crate::firewall::instance::{Instance, InstanceLock};
use crate::server::Reload;

/// Where a reload reads the configuration: the file and the flags given
/// beside it (they keep overriding the file's globals).
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    /// The configuration file.
    pub path: PathBuf,
    /// Flags given beside `--config`.
    pub overrides: GlobalOverrides,
}

impl ConfigSource {
    /// Reads and checks the file, then applies the overrides.
    pub fn load(&self) -> Result<ServerConfig, DaemonError> {
        let config = file::load(&self.path)?;
        Ok(config.with_overrides(self.overrides.clone())?)
    }
}

/// What asks for reloads and where they read from.
#[derive(Debug)]
pub struct Reloads {
    /// The file to re-read; `None` (started from flags): a request is
    /// logged and ignored.
    pub source: Option<ConfigSource>,
    /// One message per request (SIGHUP, a test).
    pub triggers: mpsc::Receiver<()>,
}

/// SIGHUP, as reload requests. Call inside the runtime before the
/// firewall is touched: from then on SIGHUP never kills the daemon.
pub fn hangups() -> io::Result<mpsc::Receiver<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup())?;
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            info!("SIGHUP received: reloading the configuration");
            // A reload already queued reads the file anew: one is enough.
            let _ = tx.try_send(());
        }
    });
    Ok(rx)
}

/// Asks the server owning `instance` in this network namespace to reload
/// (SIGHUP); returns its pid. Only servers with a kernel backend hold the
/// instance lock; signal a userspace-gate server with `kill -HUP PID`.
pub fn request_reload(instance: &Instance) -> Result<i32, DaemonError> {
    let pid = InstanceLock::owner(instance)?.ok_or_else(|| {
        DaemonError::Unsupported(format!(
            "no running knock-server owns firewall instance '{instance}' in this network namespace (a userspace-gate server holds no instance lock: send it SIGHUP with kill -HUP PID)"
        ))
    })?;
    // SAFETY: plain system call with a pid and a signal number.
    if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
        let err = io::Error::last_os_error();
        return Err(DaemonError::Unsupported(format!(
            "cannot signal knock-server pid {pid}: {err}"
        )));
    }
    Ok(pid)
}

/// Serves reload requests for a daemon running `current` until they end,
/// then waits forever (the server's end stops the daemon).
pub(super) async fn serve(
    reloads: Option<Reloads>,
    mut current: ServerConfig,
    running: Running,
    server: mpsc::Sender<Reload>,
) {
    if let Some(Reloads {
        source,
        mut triggers,
    }) = reloads
    {
        while triggers.recv().await.is_some() {
            crate::systemd::reloading();
            let Some(source) = &source else {
                warn!(
                    "reload requested, but the server was started without --config: nothing to re-read; carrying on unchanged"
                );
                crate::systemd::reloaded("ready: reload ignored (started without --config)");
                continue;
            };
            match reload_once(source, &current, &running, &server).await {
                Ok(new) => {
                    current = new;
                    crate::systemd::reloaded("ready: configuration reloaded");
                }
                Err(err) => {
                    error!(
                        file = %source.path.display(),
                        "reload refused; the running configuration stays:\n{err}"
                    );
                    crate::systemd::reloaded(
                        "ready: reload refused, the running configuration stays (see the log)",
                    );
                }
            }
        }
    }
    std::future::pending().await
}

/// What a reload keeps from the start-up.
#[derive(Debug)]
pub(super) struct Running {
    /// The addresses knock sockets are bound on.
    pub binds: Vec<IpAddr>,
    /// The SPA access file's OPEN_PORTS (kept protected).
    pub spa_ports: Vec<u16>,
    /// Whether the backend is the userspace gate (its ports are fixed).
    pub userspace: bool,
    /// The ports the userspace gate listens on (bound once).
    pub gate_ports: Vec<u16>,
    /// What the capture source lets through, if one runs (its filter or
    /// rule is fixed at start).
    pub capture: Option<crate::capture::CaptureSpec>,
}

/// Reads `source`, checks it against `current`, and swaps it in.
async fn reload_once(
    source: &ConfigSource,
    current: &ServerConfig,
    running: &Running,
    server: &mpsc::Sender<Reload>,
) -> Result<ServerConfig, DaemonError> {
    let new = source.load()?;
    let old_doors = door_settings(current)?;
    let new_doors = door_settings(&new)?;
    let restart = |what: String| Err(DaemonError::Unsupported(format!("{what}: needs a restart")));
    if new.globals() != current.globals() {
        return restart("the global settings changed".to_string());
    }
    let (settings, old) = match (new_doors, old_doors) {
        (Some(new), Some(old)) => (new, old),
        (None, None) => {
            info!("configuration reloaded: nothing to change");
            return Ok(new);
        }
        (Some(_), None) => return restart("the first door was added".to_string()),
        (None, Some(_)) => return restart("every door was removed".to_string()),
    };
    if running.userspace {
        super::refuse_udp_in_gate(Some(&settings), FirewallKind::Userspace)?;
    }
    let protected = door_ports(Some(&settings), Proto::Tcp);
    let udp = door_ports(Some(&settings), Proto::Udp);
    let unchanged = protected == door_ports(Some(&old), Proto::Tcp)
        && udp == door_ports(Some(&old), Proto::Udp);
    if let Some(port) = running.spa_ports.iter().find(|p| udp.contains(p)) {
        return Err(DaemonError::Unsupported(format!(
            "SPA's OPEN_PORTS opens tcp/{port}, which a door now protects as udp/{port}: a port number is protected under one protocol only"
        )));
    }
    let firewall_ports = match unchanged {
        true => None,
        false if running.userspace && protected != running.gate_ports => {
            return restart(format!(
                "the userspace gate's ports changed from {:?} to {:?} (its listeners are bound once)",
                running.gate_ports, protected
            ));
        }
        false => {
            let mut ports = protected;
            ports.extend(&running.spa_ports);
            Some((ports, udp))
        }
    };
    if let Some(spec) = &running.capture {
        let spa_port = new.globals().spa.as_ref().map(|spa| spa.port);
        let wanted = super::capture_spec(Some(&settings), spa_port, &spec.interfaces);
        if wanted.udp_ports != spec.udp_ports || wanted.tcp_ports != spec.tcp_ports {
            return restart(format!(
                "the knock ports changed (udp {:?} tcp {:?}, captured: udp {:?} tcp {:?}; the capture's filter is fixed at start)",
                wanted.udp_ports, wanted.tcp_ports, spec.udp_ports, spec.tcp_ports
            ));
        }
    }
    let old_ports = knock_ports(Some(&old));
    let ports = knock_ports(Some(&settings));
    let added: Vec<u16> = ports
        .iter()
        .copied()
        .filter(|p| !old_ports.contains(p))
        .collect();
    let add = match running.capture {
        Some(_) => Vec::new(),
        None => {
            crate::server::bind_udp(&running.binds, &added).map_err(bind("for knocks on udp"))?
        }
    };
    let (done, applied) = oneshot::channel();
    let doors: Vec<String> = settings
        .doors
        .iter()
        .map(|d| d.name().to_string())
        .collect();
    let reload = Reload {
        settings,
        add,
        ports,
        firewall_ports,
        done,
    };
    let stopping = || DaemonError::Unsupported("the server is stopping".to_string());
    server.send(reload).await.map_err(|_| stopping())?;
    let kept = applied
        .await
        .map_err(|_| stopping())?
        .map_err(DaemonError::Firewall)?;
    info!(
        doors = ?doors,
        progress_kept = kept,
        "configuration reloaded"
    );
    Ok(new)
}
