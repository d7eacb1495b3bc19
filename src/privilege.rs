//! Least privilege: the process that parses hostile packets holds no
//! capability and cannot change the ruleset (issue 13; the shape of
//! letmein's `letmeind`/`letmeinfwd`). See `docs/privilege.md` for the
//! why; the rooms:
//!
//! | file | what |
//! |---|---|
//! | `privilege/wire.rs` | the helper protocol: versioned fixed-size binary records |
//! | `privilege/link.rs` | the socketpair ends; [`link::RemoteFirewall`], the packet process's firewall |
//! | `privilege/helper.rs` | the privileged helper: policy, its own grant table, the real backend |
//! | `privilege/drop.rs` | becoming `--user`, then clearing every capability set |
//! | `privilege/split.rs` | starting the packet process and supervising it |
//!
//! With `--privilege-split on` (or `auto`, started as root with a kernel
//! backend) the process started as root validates the configuration,
//! takes the instance lock and chooses the backend, then re-executes
//! itself as the packet process with one end of a `SOCK_SEQPACKET`
//! socketpair (descriptor 3, named by [`LINK_FD_ENV`]) and becomes the
//! helper. The packet process becomes `--user` at once (keeping only the
//! capabilities binding needs), binds its sockets, asks the helper to set
//! the firewall up, clears every capability and only then reads packets.

pub mod drop;
pub mod helper;
pub mod link;
pub mod split;
pub mod wire;

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

pub use drop::User;

/// The environment variable that makes a `knock-server` the packet
/// process: the number of its end of the link (always 3).
pub const LINK_FD_ENV: &str = "PORTKNOCK_PRIVSEP_FD";

/// `--privilege-split`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Split {
    /// On when started as root with a kernel backend; off otherwise.
    #[default]
    Auto,
    /// Always (refused when not root).
    On,
    /// Never: one process keeps what it started with.
    Off,
}

impl Split {
    /// The names `--privilege-split` takes.
    pub const NAMES: [&'static str; 3] = ["auto", "on", "off"];
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Split::Auto => "auto",
            Split::On => "on",
            Split::Off => "off",
        })
    }
}

impl FromStr for Split {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "auto" => Ok(Split::Auto),
            "on" => Ok(Split::On),
            "off" => Ok(Split::Off),
            _ => Err(format!(
                "unknown privilege split '{text}': expected one of auto, on, off"
            )),
        }
    }
}

/// Why the split could not be made.
#[derive(Debug, Error)]
pub enum PrivilegeError {
    /// `--user` names nobody.
    #[error("--user {0}: no such user")]
    UnknownUser(String),
    /// `--user` names a uid-0 account.
    #[error("--user {0}: that user is root (uid 0): name an unprivileged user")]
    RootUser(String),
    /// `--privilege-split on` without root.
    #[error(
        "--privilege-split on needs root (it starts an unprivileged packet process beside a privileged firewall helper)"
    )]
    NeedsRoot,
    /// A system call of the drop failed.
    #[error("cannot drop privileges ({what}): {source}")]
    Syscall {
        /// Which step.
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The link to the helper failed.
    #[error("the firewall helper link: {0}")]
    Link(#[source] std::io::Error),
    /// The helper refused or failed.
    #[error(transparent)]
    Helper(#[from] crate::firewall::FirewallError),
}

impl PrivilegeError {
    /// 2 for bad input (a user, a flag), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            PrivilegeError::UnknownUser(_)
            | PrivilegeError::RootUser(_)
            | PrivilegeError::NeedsRoot => crate::server::daemon::EXIT_USAGE,
            _ => crate::server::daemon::EXIT_FAILURE,
        }
    }
}

/// The drop this process still owes once its sockets are bound.
static PENDING_DROP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes this process the packet process, if [`LINK_FD_ENV`] says so:
/// becomes `user` (keeping only the capabilities binding needs), installs
/// the link as its firewall (see [`link::take_packet_link`]) and owes
/// [`after_bind`] the rest. Returns whether it is one. Call it first
/// thing, before the runtime starts.
pub fn become_packet(user: Option<&str>) -> Result<bool, PrivilegeError> {
    let Some(fd) = std::env::var_os(LINK_FD_ENV) else {
        return Ok(false);
    };
    // Not for our children (a door's commands).
    // SAFETY: no other thread runs yet (called before the runtime).
    unsafe { std::env::remove_var(LINK_FD_ENV) };
    let fd: i32 = fd
        .to_str()
        .and_then(|s| s.parse().ok())
        .filter(|fd| *fd > 2)
        .ok_or_else(|| PrivilegeError::Link(std::io::Error::other("bad descriptor number")))?;
    // SAFETY: the helper passed this descriptor to us and nothing else
    // in this process owns it.
    let owned = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: fcntl on a descriptor we own.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    let user = User::resolve(user)?;
    drop::become_user(&user)?;
    // Die with the helper (set after the uid change, which clears it).
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    link::install(link::Link::from_fd(owned))?;
    PENDING_DROP.store(true, std::sync::atomic::Ordering::SeqCst);
    Ok(true)
}

/// Clears every capability this process still holds, if it owes it (a
/// packet process whose sockets are bound); the daemon calls it right
/// before it starts reading packets.
pub fn after_bind() -> Result<(), PrivilegeError> {
    if PENDING_DROP.swap(false, std::sync::atomic::Ordering::SeqCst) {
        drop::drop_all()?;
        tracing::info!(
            pid = std::process::id(),
            // SAFETY: getuid has no preconditions.
            uid = unsafe { libc::getuid() },
            "packet process: every capability dropped; reading packets"
        );
    }
    Ok(())
}
