//! The protected service: what a client reaches once its knock is granted.
//!
//! It is deliberately tiny (the seed's demo service): four lines of text,
//! including the flag, then the connection closes after `close_after`. It
//! exists in two places: the `protected-service` binary runs [`run`] on its
//! own port, and the userspace gate (`gate.rs`) calls [`serve_connection`]
//! for each granted connection, so both speak exactly the same bytes.
//!
//! Bounded everything: concurrent connections are capped by a semaphore (at
//! the cap a new connection is closed at once, never queued), and each
//! connection lives at most `close_after`.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::shutdown::Shutdown;
use tokio::task::JoinSet;

use crate::config::DEFAULT_FLAG;

pub mod accept_backoff;

use accept_backoff::AcceptBackoff;

/// Default time a connection stays open after the greeting (the seed's 3 s).
pub const DEFAULT_CLOSE_AFTER: Duration = Duration::from_secs(3);
/// Default cap on concurrent connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Largest accepted `--max-connections`: beyond it the cap protects nothing.
pub const MAX_MAX_CONNECTIONS: usize = 1_000_000;

/// How the protected service behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSettings {
    /// The secret sent as the third line.
    pub flag: String,
    /// How long a connection stays open after the greeting.
    pub close_after: Duration,
    /// Cap on concurrent connections; more are closed at once.
    pub max_connections: usize,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        Self {
            flag: DEFAULT_FLAG.to_string(),
            close_after: DEFAULT_CLOSE_AFTER,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// A service setting that was refused, or a listener that could not be made.
#[derive(Debug, Error)]
pub enum ServiceError {
    /// A connection cap that is not a whole number in range.
    #[error(
        "invalid --max-connections '{value}': expected a whole number from 1 to {MAX_MAX_CONNECTIONS}"
    )]
    MaxConnections {
        /// The text that was given.
        value: String,
    },
    /// A listening socket could not be set up.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address we tried.
        addr: SocketAddr,
        /// Why it failed.
        source: io::Error,
    },
}

/// Parses `--max-connections`: a whole number from 1 to [`MAX_MAX_CONNECTIONS`].
pub fn parse_max_connections(text: &str) -> Result<usize, ServiceError> {
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_MAX_CONNECTIONS).contains(&n) => Ok(n),
        _ => Err(ServiceError::MaxConnections {
            value: text.to_string(),
        }),
    }
}

/// Formats a duration as the seed does: `3` for whole seconds, `0.5` otherwise.
pub fn format_seconds(duration: Duration) -> String {
    if duration.subsec_nanos() == 0 {
        duration.as_secs().to_string()
    } else {
        // f64 Display prints the shortest text that round-trips: 0.5, 1.25.
        duration.as_secs_f64().to_string()
    }
}

/// The exact text sent to every connection: four lines, each ending in `\n`.
pub fn greeting(settings: &ServiceSettings) -> String {
    format!(
        "Welcome to the protected service!\n\
         You successfully knocked and gained access.\n\
         {}\n\
         Connection will close in {} seconds...\n",
        settings.flag,
        format_seconds(settings.close_after)
    )
}

/// Serves one connection: writes the greeting, waits `close_after` (or less
/// if the peer closes first), then closes.
///
/// Whatever the peer sends meanwhile is read and discarded, so a chatty
/// peer cannot fill our buffers; it cannot extend the wait either.
pub async fn serve_connection<S>(mut stream: S, settings: &ServiceSettings) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let deadline = tokio::time::Instant::now() + settings.close_after;
    let text = greeting(settings);
    // The greeting is tiny, but a peer that never reads must not hold us
    // past the deadline either.
    match tokio::time::timeout_at(deadline, stream.write_all(text.as_bytes())).await {
        Ok(result) => result?,
        Err(_elapsed) => return Ok(()),
    }
    stream.flush().await?;
    let mut sink = [0u8; 512];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut sink)).await {
            Err(_elapsed) => break,
            Ok(Ok(0)) => return Ok(()), // the peer closed: nothing more to do
            Ok(Ok(_)) => continue,      // discard; the deadline bounds the loop
            Ok(Err(err)) if is_peer_gone(&err) => return Ok(()),
            Ok(Err(err)) => return Err(err),
        }
    }
    match stream.shutdown().await {
        Err(err) if !is_peer_gone(&err) => Err(err),
        _ => Ok(()),
    }
}

fn is_peer_gone(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::NotConnected
    )
}

/// The addresses `--bind` means when it is not given: every IPv4 and every
/// IPv6 address.
pub fn default_bind_addrs() -> Vec<IpAddr> {
    vec![
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    ]
}

/// Binds one TCP listener. IPv6 sockets are made V6ONLY so that `0.0.0.0`
/// and `::` can both be bound on the same port. Must run inside a tokio
/// runtime.
pub fn bind_listener(addr: SocketAddr) -> Result<TcpListener, ServiceError> {
    let fail = |source| ServiceError::Bind { addr, source };
    let domain = Domain::for_address(addr);
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP)).map_err(fail)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true).map_err(fail)?;
    }
    socket.set_reuse_address(true).map_err(fail)?;
    socket.set_nonblocking(true).map_err(fail)?;
    socket.bind(&addr.into()).map_err(fail)?;
    socket.listen(1024).map_err(fail)?;
    TcpListener::from_std(socket.into()).map_err(fail)
}

/// Binds a listener on each address. When the addresses are the defaults
/// (both wildcards), a family the machine lacks (no IPv6) is skipped with a
/// warning; an explicitly chosen address that fails is an error.
pub fn bind_listeners(addrs: &[IpAddr], port: u16) -> Result<Vec<TcpListener>, ServiceError> {
    let lenient = addrs == default_bind_addrs().as_slice();
    let mut listeners = Vec::new();
    let mut first_error = None;
    for &ip in addrs {
        match bind_listener(SocketAddr::new(ip, port)) {
            Ok(listener) => listeners.push(listener),
            Err(err) if lenient => {
                tracing::warn!(error = %err, "skipping an address family");
                first_error.get_or_insert(err);
            }
            Err(err) => return Err(err),
        }
    }
    match (listeners.is_empty(), first_error) {
        (true, Some(err)) => Err(err),
        _ => Ok(listeners),
    }
}

/// Runs the service on `listeners` until `shutdown` is stopped.
///
/// At most `settings.max_connections` connections are served at once; a
/// connection beyond the cap is closed at once and logged. On shutdown,
/// accepting stops and open connections are closed before this returns.
pub async fn run(
    listeners: Vec<TcpListener>,
    settings: ServiceSettings,
    shutdown: Shutdown,
) -> io::Result<()> {
    if listeners.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the protected service needs at least one listener",
        ));
    }
    let settings = Arc::new(settings);
    let permits = Arc::new(Semaphore::new(settings.max_connections.max(1)));
    let mut accept_loops = JoinSet::new();
    for listener in listeners {
        accept_loops.spawn(accept_loop(
            listener,
            Arc::clone(&settings),
            Arc::clone(&permits),
            shutdown.clone(),
        ));
    }
    shutdown.stopped().await;
    tracing::info!("protected service stopping");
    while let Some(joined) = accept_loops.join_next().await {
        if let Err(err) = joined {
            tracing::error!(error = %err, "accept loop ended abnormally");
        }
    }
    Ok(())
}

/// Accepts on one listener until told to stop, then closes its connections.
async fn accept_loop(
    listener: TcpListener,
    settings: Arc<ServiceSettings>,
    permits: Arc<Semaphore>,
    stop: Shutdown,
) {
    let mut connections = JoinSet::new();
    let stop_for_connections = stop.clone();
    let mut backoff = AcceptBackoff::new();
    loop {
        tokio::select! {
            _ = stop.stopped() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(err) => {
                        tokio::select! {
                            _ = backoff.on_error("protected service", &err) => continue,
                            _ = stop.stopped() => break,
                        }
                    }
                };
                backoff.on_success("protected service");
                let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                    tracing::warn!(%peer, max = settings.max_connections,
                        "connection cap reached: closing new connection");
                    drop(stream);
                    continue;
                };
                tracing::info!(%peer, "serving connection");
                let settings = Arc::clone(&settings);
                let stop = stop_for_connections.clone();
                connections.spawn(async move {
                    tokio::select! {
                        result = serve_connection(stream, &settings) => {
                            if let Err(err) = result {
                                tracing::debug!(%peer, error = %err, "connection ended with an error");
                            }
                        }
                        _ = stop.stopped() => {}
                    }
                    drop(permit);
                });
            }
        }
    }
    // Each task sees the stop signal and drops its stream (a clean FIN).
    while connections.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests;
