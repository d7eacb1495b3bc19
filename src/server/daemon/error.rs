//! Why the daemon did not start or stopped, and the exit code each maps
//! to (one convention for the binary: 0, 1 runtime failure, 2 bad input).

use std::net::SocketAddr;

use thiserror::Error;

use crate::capture::CaptureError;
use crate::capture::select::SelectError;
use crate::config::{ConfigError, Issues, LoadError};
use crate::firewall::FirewallError;
use crate::firewall::instance::InstanceError;
use crate::server::ServerError;
use crate::spa_listener::SpaSetupError;

/// Exit code of a runtime failure.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code of bad input: nothing was started.
pub const EXIT_USAGE: u8 = 2;

/// Why the daemon did not start, or stopped with an error.
#[derive(Debug, Error)]
pub enum DaemonError {
    /// The configuration file was refused.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The configuration (with the flags beside it) was refused.
    #[error("invalid configuration:\n{0}")]
    Config(#[from] Issues),
    /// A flag's value was refused.
    #[error(transparent)]
    Flag(#[from] ConfigError),
    /// A valid configuration that today's core cannot run.
    #[error("{0}")]
    Unsupported(String),
    /// `upstream` is not `HOST:PORT`.
    #[error("invalid upstream '{0}': expected HOST:PORT, e.g. 127.0.0.1:2223")]
    Upstream(String),
    /// The SPA access file or replay cache was refused.
    #[error(transparent)]
    Spa(#[from] SpaSetupError),
    /// The fleet could not start (key file, credentials refused).
    #[error(transparent)]
    Fleet(#[from] crate::fleet::FleetError),
    /// The firewall backend cannot be used.
    #[error(transparent)]
    Firewall(FirewallError),
    /// Another server owns the firewall instance.
    #[error(transparent)]
    Instance(#[from] InstanceError),
    /// A socket could not be bound.
    #[error("cannot listen {what} {addr}: {source}")]
    Bind {
        /// What the socket was for.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The capture source chosen cannot be used here.
    #[error(transparent)]
    CaptureChoice(#[from] SelectError),
    /// The capture source could not be opened.
    #[error(transparent)]
    Capture(#[from] CaptureError),
    /// The control socket could not be set up (a path given explicitly).
    #[error(transparent)]
    Control(#[from] crate::control::ControlSocketError),
    /// A `control-group` that does not exist.
    #[error(transparent)]
    ControlGroup(#[from] crate::control::peer::NoSuchGroup),
    /// The metrics endpoint could not be set up.
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    /// The server failed while running (or its firewall setup failed).
    #[error(transparent)]
    Server(#[from] ServerError),
}

impl DaemonError {
    /// 2 for bad input or missing rights/tools (nothing was started),
    /// 1 for a runtime failure.
    pub fn exit_code(&self) -> u8 {
        let usage_firewall = |err: &FirewallError| {
            matches!(
                err,
                FirewallError::NeedsPrivilege { .. }
                    | FirewallError::ToolMissing { .. }
                    | FirewallError::NotBuilt { .. }
            )
        };
        match self {
            DaemonError::Load(_)
            | DaemonError::Config(_)
            | DaemonError::Flag(_)
            | DaemonError::Unsupported(_)
            | DaemonError::Upstream(_)
            | DaemonError::Spa(_)
            | DaemonError::CaptureChoice(_)
            | DaemonError::ControlGroup(_)
            | DaemonError::Fleet(_) => EXIT_USAGE,
            DaemonError::Capture(err) if !matches!(err, CaptureError::Io { .. }) => EXIT_USAGE,
            DaemonError::Firewall(err) | DaemonError::Server(ServerError::Setup(err))
                if usage_firewall(err) =>
            {
                EXIT_USAGE
            }
            _ => EXIT_FAILURE,
        }
    }
}
