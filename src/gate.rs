//! The userspace gate: owns the protected TCP ports when no kernel
//! firewall is used (one listener per port and address; a connection is
//! served only if its source holds a grant for the port it reached).
//!
//! A connection from an address without a live grant in the [`AccessList`]
//! is reset at once (SO_LINGER 0: an RST, no bytes). A granted one is served
//! by the built-in protected service or proxied to `--upstream`. A
//! connection outlives the grant that let it in, as established connections
//! do with a kernel firewall.
//!
//! Bounded everything, so that one granted client cannot lock out the
//! others (issue 9 item 9): connections at once are capped for the gate
//! and per client address ([`per_ip`]), a proxied connection with no bytes
//! either way for the idle timeout is closed ([`proxy`]), a failing accept
//! backs off ([`AcceptBackoff`]), and refusals at a cap are logged under a
//! budget ([`LogBudget`]), never one line per refused connection.
//!
//! | file | job |
//! |---|---|
//! | `gate.rs` | settings, the accept loop, refusals |
//! | `gate/per_ip.rs` | live connections per address, capped |
//! | `gate/proxy.rs` | the byte copy to `--upstream`, with its idle timeout |

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use crate::shutdown::Shutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::firewall::userspace::AccessList;
use crate::log_budget::{Admit, LogBudget};
use crate::service::accept_backoff::AcceptBackoff;
use crate::service::{self, MAX_MAX_CONNECTIONS, ServiceSettings};

pub mod per_ip;
pub mod proxy;

use per_ip::ConnectionsPerIp;
pub use proxy::DEFAULT_IDLE_TIMEOUT;
use proxy::ProxyEnd;

/// Default cap on connections the gate serves at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// Default cap on connections one client address holds at once: enough
/// for a browser or a few SSH sessions with multiplexing, a sixteenth of
/// the gate's default slots.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 16;
/// Refusals at a cap logged at warn per window; the rest go to debug and
/// the next warning counts them.
const REFUSALS_LOGGED: u32 = 5;
/// The window of that budget.
const REFUSAL_WINDOW: Duration = Duration::from_secs(10);

/// A gate setting that was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GateError {
    /// A per-address cap that is not a whole number in range.
    #[error(
        "invalid --max-connections-per-ip '{value}': expected a whole number from 1 to {MAX_MAX_CONNECTIONS}"
    )]
    MaxConnectionsPerIp {
        /// The text that was given.
        value: String,
    },
}

/// Parses `--max-connections-per-ip`: a whole number from 1 to
/// [`MAX_MAX_CONNECTIONS`].
pub fn parse_max_connections_per_ip(text: &str) -> Result<usize, GateError> {
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_MAX_CONNECTIONS).contains(&n) => Ok(n),
        _ => Err(GateError::MaxConnectionsPerIp {
            value: text.to_string(),
        }),
    }
}

/// What a granted connection reaches.
#[derive(Debug, Clone)]
pub enum GateTarget {
    /// The built-in protected service.
    Builtin(ServiceSettings),
    /// A TCP service at `HOST:PORT`, proxied byte for byte.
    Upstream(String),
}

/// How the gate behaves.
#[derive(Debug, Clone)]
pub struct GateSettings {
    /// The protected port of the settings' first listener (logs); each
    /// listener checks grants for the port it is bound to.
    pub port: u16,
    /// What granted connections reach.
    pub target: GateTarget,
    /// Cap on connections served at once; past it, connections are reset.
    pub max_connections: usize,
    /// Cap on connections one client address holds at once; past it, its
    /// new connections are reset.
    pub max_connections_per_ip: usize,
    /// A proxied connection with no byte either way for this long is
    /// closed on both sides.
    pub upstream_idle_timeout: Duration,
}

/// The caps shared by the gate's accept loops.
#[derive(Debug, Clone)]
struct Slots {
    total: Arc<Semaphore>,
    per_ip: ConnectionsPerIp,
}

/// Serves the gate on `listeners` until `shutdown` is stopped.
pub async fn run(
    listeners: Vec<TcpListener>,
    access: AccessList,
    settings: GateSettings,
    shutdown: Shutdown,
) -> io::Result<()> {
    let settings = Arc::new(settings);
    let slots = Slots {
        total: Arc::new(Semaphore::new(settings.max_connections.max(1))),
        per_ip: ConnectionsPerIp::new(settings.max_connections_per_ip),
    };
    let mut accept_loops = JoinSet::new();
    for listener in listeners {
        let addr = listener.local_addr()?;
        info!(%addr, "gate listening on the protected port");
        accept_loops.spawn(accept_loop(
            listener,
            access.clone(),
            settings.clone(),
            slots.clone(),
            shutdown.clone(),
        ));
    }
    shutdown.stopped().await;
    while accept_loops.join_next().await.is_some() {}
    Ok(())
}

async fn accept_loop(
    listener: TcpListener,
    access: AccessList,
    settings: Arc<GateSettings>,
    slots: Slots,
    stop: Shutdown,
) {
    let mut connections = JoinSet::new();
    let mut backoff = AcceptBackoff::new();
    let mut refusals = LogBudget::new(REFUSAL_WINDOW, REFUSALS_LOGGED);
    // Grants are per protected port: this listener serves its own port's.
    let port = listener
        .local_addr()
        .map_or(settings.port, |addr| addr.port());
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tokio::select! {
                        _ = backoff.on_error("gate", &err) => continue,
                        _ = stop.stopped() => break,
                    }
                }
            },
            _ = stop.stopped() => break,
        };
        backoff.on_success("gate");
        while connections.try_join_next().is_some() {}
        if !access.allows(peer.ip(), port) {
            debug!(peer = %peer.ip(), port, "gate: no grant, connection reset");
            reset(stream);
            continue;
        }
        let Some(ip_slot) = slots.per_ip.try_acquire(peer.ip()) else {
            refuse(
                stream,
                peer.ip(),
                Cap::PerIp(slots.per_ip.cap()),
                &mut refusals,
            );
            continue;
        };
        let Ok(permit) = slots.total.clone().try_acquire_owned() else {
            refuse(
                stream,
                peer.ip(),
                Cap::Total(settings.max_connections),
                &mut refusals,
            );
            continue;
        };
        info!(peer = %peer.ip(), "gate: granted connection accepted");
        let settings = settings.clone();
        connections.spawn(async move {
            if let Err(err) = serve(stream, peer, &settings).await {
                debug!(peer = %peer.ip(), error = %err, "gate connection ended with an error");
            }
            drop((permit, ip_slot));
        });
    }
    connections.shutdown().await;
}

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy)]
enum Cap {
    /// The address's own cap.
    PerIp(usize),
    /// The gate's cap.
    Total(usize),
}

/// Resets a granted connection refused at a cap; logs it under `budget`.
fn refuse(stream: TcpStream, ip: IpAddr, cap: Cap, budget: &mut LogBudget) {
    reset(stream);
    let (which, max) = match cap {
        Cap::PerIp(max) => ("per-address", max),
        Cap::Total(max) => ("gate", max),
    };
    match budget.admit(std::time::Instant::now()) {
        Admit::Info { demoted_before } => warn!(
            peer = %ip, cap = which, max, demoted_before,
            "gate: connection cap reached, connection reset"
        ),
        Admit::Debug => {
            debug!(peer = %ip, cap = which, max, "gate: connection cap reached, connection reset")
        }
    }
}

async fn serve(stream: TcpStream, peer: SocketAddr, settings: &GateSettings) -> io::Result<()> {
    match &settings.target {
        GateTarget::Builtin(service) => service::serve_connection(stream, service).await,
        GateTarget::Upstream(upstream) => {
            let upstream_stream = match TcpStream::connect(upstream.as_str()).await {
                Ok(s) => s,
                Err(err) => {
                    warn!(peer = %peer.ip(), %upstream, error = %err, "gate: upstream unreachable");
                    reset(stream);
                    return Ok(());
                }
            };
            let idle = settings.upstream_idle_timeout;
            if proxy::proxy(stream, upstream_stream, idle).await? == ProxyEnd::Idle {
                info!(
                    peer = %peer.ip(), idle_secs = idle.as_secs_f64(),
                    "gate: idle proxied connection closed"
                );
            }
            Ok(())
        }
    }
}

/// Closes with an RST and no bytes.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_per_address_cap_is_a_whole_number_in_range() {
        assert_eq!(parse_max_connections_per_ip("16"), Ok(16));
        assert_eq!(parse_max_connections_per_ip(" 1 "), Ok(1));
        for bad in ["0", "-1", "", "x", "1.5", "1000001"] {
            let err = parse_max_connections_per_ip(bad).unwrap_err();
            assert!(
                err.to_string().contains("--max-connections-per-ip"),
                "{bad}"
            );
        }
    }
}
