//! The process started as root, when it splits: it chooses the backend
//! and takes the instance lock exactly as a single process would, starts
//! the packet process (itself again, [`super::LINK_FD_ENV`] set, the
//! link on descriptor 3) and becomes the helper: it forwards SIGHUP and
//! SIGTERM to the packet process and, when that goes, tears down.
//!
//! Fail closed both ways: the packet process dying (any way) closes its
//! end of the link, and the helper removes our rules and exits 1; the
//! helper dying kills the packet process (`PR_SET_PDEATHSIG`, plus a
//! watcher on the link), so no process is left granting what nobody
//! would revoke.

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::time::Duration;

use tracing::{error, info, warn};

use super::helper::{End, Helper, Policy};
use super::link::{self, Link};
use super::{LINK_FD_ENV, PrivilegeError, Split, User};
use crate::config::{Proto, ServerConfig};
use crate::firewall::instance::InstanceLock;
use crate::firewall::userspace::AccessList;
use crate::firewall::{Firewall, FirewallKind, select};
use crate::server::ServerError;
use crate::server::daemon::{
    ConfigSource, DaemonError, GateTuning, Reloads, door_ports, door_settings, firewall_options,
    protected_ports,
};
use crate::shutdown::Shutdown;

/// How long a stopped packet process gets before it is killed.
const STOP_LIMIT: Duration = Duration::from_secs(10);

/// A helper ready to start its packet process.
pub struct Prepared {
    selected: select::Selected,
    policy: Policy,
    spa_ports: Vec<u16>,
    lock: InstanceLock,
    user: User,
    /// The NFLOG socket bound for the packet process (it cannot bind one).
    capture: Option<std::os::fd::OwnedFd>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("backend", &self.selected.kind)
            .field("policy", &self.policy)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Whether `config` runs split under `split` and `user`: `None` when it
/// does not (`off`; `auto` without root; a userspace backend, which needs
/// no privilege to split off), else the chosen backend, the policy and
/// the instance lock. Nothing is set up yet.
pub fn prepare(
    config: &ServerConfig,
    tuning: &GateTuning,
    split: Split,
    user: Option<&str>,
) -> Result<Option<Prepared>, DaemonError> {
    let root = super::drop::is_root();
    match (split, root) {
        (Split::Off, _) | (Split::Auto, false) => return Ok(None),
        (Split::On, false) => return Err(usage(PrivilegeError::NeedsRoot)),
        _ => {}
    }
    let user = User::resolve(user).map_err(usage)?;
    let globals = config.globals();
    let doors = door_settings(config)?;
    let spa_ports = match &globals.spa {
        Some(spa) => {
            let options = crate::spa::AccessConfOptions {
                allow_missing_hmac: spa.allow_no_hmac,
            };
            let conf = crate::spa::load_access_conf(&spa.access, options).map_err(|cause| {
                crate::spa_listener::SpaSetupError::Access {
                    path: spa.access.clone(),
                    cause,
                }
            })?;
            crate::spa::open_tcp_ports(&conf.stanzas)
        }
        None => Vec::new(),
    };
    let (tcp, udp) = protected_ports(doors.as_ref(), globals.spa.is_some(), &spa_ports, tuning);
    let options = firewall_options(globals, tcp.clone(), udp.clone(), doors.as_ref());
    let selected = select::open(globals.firewall, &options, AccessList::new())
        .map_err(DaemonError::Firewall)?;
    if selected.kind == FirewallKind::Userspace {
        // Debug: a start the config refuses prints what --check-config does.
        tracing::debug!(
            "privilege split: not needed by the userspace gate (it holds no capability to split off)"
        );
        return Ok(None);
    }
    let lock = InstanceLock::acquire(&globals.instance)?;
    let capture = crate::server::daemon::open_for_split(globals)?;
    Ok(Some(Prepared {
        selected,
        policy: Policy {
            tcp,
            udp,
            max_grants: globals.max_grants,
        },
        spa_ports,
        lock,
        user,
        capture,
    }))
}

fn usage(err: PrivilegeError) -> DaemonError {
    DaemonError::Unsupported(err.to_string())
}

impl Prepared {
    /// Starts `packet` (this program with the same flags) as the packet
    /// process and serves it as the helper until it stops; SIGHUPs from
    /// `reloads` are passed on, `shutdown` stops it (SIGTERM).
    pub async fn run(
        self,
        mut packet: Command,
        reloads: Option<Reloads>,
        shutdown: Shutdown,
    ) -> Result<(), DaemonError> {
        let Prepared {
            selected,
            policy,
            spa_ports,
            lock,
            user,
            capture,
        } = self;
        let failed = |what: &str, err: std::io::Error| {
            DaemonError::Server(ServerError::TaskEnded {
                task: "firewall helper",
                reason: format!("{what}: {err}"),
            })
        };
        let (ours, theirs) = link::pair().map_err(|e| failed("no socketpair", e))?;
        let mut child = spawn(&mut packet, &theirs, capture.as_ref())
            .map_err(|e| failed("cannot start the packet process", e))?;
        drop(theirs);
        drop(capture);
        if let Err(err) = super::drop::limit_helper() {
            signal(child.id() as libc::pid_t, libc::SIGKILL);
            let _ = child.wait();
            return Err(failed(
                "cannot narrow the helper's capabilities",
                std::io::Error::other(err.to_string()),
            ));
        }
        info!(
            helper_pid = std::process::id(),
            packet_pid = child.id(),
            user = %user.name,
            uid = user.uid,
            backend = %selected.kind,
            "privilege split: the packet process runs as the user with no capability; this process keeps CAP_NET_ADMIN (and NET_RAW, DAC_READ_SEARCH, KILL) for the firewall only"
        );
        let (source, mut triggers) = match reloads {
            Some(Reloads { source, triggers }) => (source, Some(triggers)),
            None => (None, None),
        };
        let reload_ports = move || reload_ports(source.as_ref(), &spa_ports);
        let helper = Helper::new(
            ours,
            selected.firewall as Box<dyn Firewall>,
            selected.kind,
            policy,
            reload_ports,
            tokio::runtime::Handle::current(),
        );
        let (end_tx, mut end_rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("helper".into())
            .spawn(move || {
                let _ = end_tx.send(helper.serve());
            })
            .map_err(|e| failed("cannot start the helper thread", e))?;
        let pid = child.id() as libc::pid_t;
        let mut stopping = false;
        let mut stop = std::pin::pin!(shutdown.stopped());
        let end = loop {
            tokio::select! {
                end = &mut end_rx => break end.unwrap_or(End::Failed("the helper thread panicked".into())),
                () = &mut stop, if !stopping => {
                    stopping = true;
                    signal(pid, libc::SIGTERM);
                }
                () = tokio::time::sleep(STOP_LIMIT), if stopping => {
                    warn!(packet_pid = pid, "the packet process did not stop in time: killing it");
                    signal(pid, libc::SIGKILL);
                }
                Some(()) = next(&mut triggers) => signal(pid, libc::SIGHUP),
            }
        };
        let status = wait(&mut child).await;
        drop(lock);
        info!(?end, status = %status, "firewall helper stopped: rules removed");
        match (end, status.success()) {
            (End::Bye, true) => Ok(()),
            (End::Bye, false) | (End::Gone, _) => {
                error!(status = %status, "the packet process ended: rules removed, stopping");
                Err(DaemonError::Server(ServerError::TaskEnded {
                    task: "packet process",
                    reason: status.to_string(),
                }))
            }
            (End::Failed(why), _) => Err(DaemonError::Server(ServerError::TaskEnded {
                task: "firewall helper",
                reason: why,
            })),
        }
    }
}

/// What the configuration file protects now (the SPA ports stay those of
/// the start, as in `daemon/reload.rs`).
fn reload_ports(
    source: Option<&ConfigSource>,
    spa_ports: &[u16],
) -> Result<(Vec<u16>, Vec<u16>), String> {
    let source = source.ok_or("started without --config")?;
    let config = source.load().map_err(|e| e.to_string())?;
    let doors = door_settings(&config).map_err(|e| e.to_string())?;
    let mut tcp = door_ports(doors.as_ref(), Proto::Tcp);
    tcp.extend(spa_ports);
    Ok((tcp, door_ports(doors.as_ref(), Proto::Udp)))
}

async fn next(triggers: &mut Option<tokio::sync::mpsc::Receiver<()>>) -> Option<()> {
    match triggers {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Starts `packet` with `link` on descriptor 3 and the NFLOG socket
/// `capture`, if any, on descriptor 4.
fn spawn(
    packet: &mut Command,
    link: &Link,
    capture: Option<&std::os::fd::OwnedFd>,
) -> std::io::Result<Child> {
    let fd = link.fd().as_raw_fd();
    packet.env(LINK_FD_ENV, "3");
    let capture = capture.map(|c| c.as_raw_fd());
    if capture.is_some() {
        packet.env(crate::server::daemon::CAPTURE_FD_ENV, "4");
    }
    /// `from` on descriptor `to`, inherited across exec.
    fn place(from: libc::c_int, to: libc::c_int) -> std::io::Result<()> {
        // SAFETY: fcntl and dup2 on descriptors of this process.
        let ok = unsafe {
            match from == to {
                true => libc::fcntl(to, libc::F_SETFD, 0) == 0,
                false => libc::dup2(from, to) == to,
            }
        };
        match ok {
            true => Ok(()),
            false => Err(std::io::Error::last_os_error()),
        }
    }
    // SAFETY: dup, dup2 and fcntl are async-signal-safe; nothing else runs
    // between fork and exec.
    unsafe {
        packet.pre_exec(move || {
            // Move each out of the other's way first: the link may sit on
            // 4, the capture socket on 3.
            let link = match fd {
                4 => libc::dup(fd),
                _ => fd,
            };
            let capture = capture.map(|c| match c {
                3 => libc::dup(c),
                _ => c,
            });
            if link < 0 || capture.is_some_and(|c| c < 0) {
                return Err(std::io::Error::last_os_error());
            }
            place(link, 3)?;
            if let Some(capture) = capture {
                place(capture, 4)?;
            }
            Ok(())
        });
    }
    packet.spawn()
}

fn signal(pid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: kill with a pid of our own child.
    unsafe { libc::kill(pid, signal) };
}

/// Waits for the child (killing it after [`STOP_LIMIT`]).
async fn wait(child: &mut Child) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + STOP_LIMIT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status,
            Ok(None) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            _ => {
                let _ = child.kill();
                if let Ok(status) = child.wait() {
                    return status;
                }
                return std::os::unix::process::ExitStatusExt::from_raw(9);
            }
        }
    }
}
