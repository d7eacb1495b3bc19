//! The userspace gate: owns the protected TCP port when no kernel firewall
//! is used.
//!
//! A connection from an address without a live grant in the [`AccessList`]
//! is reset at once (SO_LINGER 0: an RST, no bytes). A granted one is served
//! by the built-in protected service or proxied to `--upstream`. A
//! connection outlives the grant that let it in, as established connections
//! do with a kernel firewall. Concurrent connections are capped.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::firewall::userspace::AccessList;
use crate::service::{self, ServiceSettings};

/// Default cap on connections the gate serves at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

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
    /// The protected port (grants are checked for this port).
    pub port: u16,
    /// What granted connections reach.
    pub target: GateTarget,
    /// Cap on connections served at once; past it, connections are reset.
    pub max_connections: usize,
}

/// Serves the gate on `listeners` until `shutdown` completes.
pub async fn run(
    listeners: Vec<TcpListener>,
    access: AccessList,
    settings: GateSettings,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let settings = Arc::new(settings);
    let slots = Arc::new(Semaphore::new(settings.max_connections.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut accept_loops = JoinSet::new();
    for listener in listeners {
        let addr = listener.local_addr()?;
        info!(%addr, "gate listening on the protected port");
        accept_loops.spawn(accept_loop(
            listener,
            access.clone(),
            settings.clone(),
            slots.clone(),
            stop_rx.clone(),
        ));
    }
    shutdown.await;
    let _ = stop_tx.send(true);
    while accept_loops.join_next().await.is_some() {}
    Ok(())
}

async fn accept_loop(
    listener: TcpListener,
    access: AccessList,
    settings: Arc<GateSettings>,
    slots: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of descriptors and the like: back off briefly.
                    warn!(error = %err, "gate accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        while connections.try_join_next().is_some() {}
        if !access.allows(peer.ip(), settings.port) {
            debug!(peer = %peer.ip(), "gate: no grant, connection reset");
            reset(stream);
            continue;
        }
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            warn!(peer = %peer.ip(), "gate: connection cap reached, connection reset");
            reset(stream);
            continue;
        };
        info!(peer = %peer.ip(), "gate: granted connection accepted");
        let settings = settings.clone();
        connections.spawn(async move {
            if let Err(err) = serve(stream, peer, &settings.target).await {
                debug!(peer = %peer.ip(), error = %err, "gate connection ended with an error");
            }
            drop(permit);
        });
    }
    connections.shutdown().await;
}

async fn serve(mut stream: TcpStream, peer: SocketAddr, target: &GateTarget) -> io::Result<()> {
    match target {
        GateTarget::Builtin(service) => service::serve_connection(stream, service).await,
        GateTarget::Upstream(upstream) => {
            let mut upstream_stream = match TcpStream::connect(upstream.as_str()).await {
                Ok(s) => s,
                Err(err) => {
                    warn!(peer = %peer.ip(), %upstream, error = %err, "gate: upstream unreachable");
                    reset(stream);
                    return Ok(());
                }
            };
            tokio::io::copy_bidirectional(&mut stream, &mut upstream_stream).await?;
            Ok(())
        }
    }
}

/// Closes with an RST and no bytes.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}
