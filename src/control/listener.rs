//! The control socket: a Unix stream socket the daemon owns, mode 0600
//! (0660 with a `control-group`), serving the protocol of `protocol.rs`.
//!
//! A slow or malicious client cannot stall the daemon: at most
//! [`MAX_CONNECTIONS`] are served at once (more get a refusal and are
//! closed), each waits at most [`IDLE_TIMEOUT`] for its next request line
//! and [`WRITE_TIMEOUT`] for its reply to be taken, a request is bounded
//! by [`MAX_REQUEST`] (longer: an error and the connection closes), and
//! every connection is its own task that touches the engine only through
//! short locks that copy data out.
//!
//! The path: a live socket at it (another daemon) refuses the start; a
//! stale one (nobody answers) is replaced; on the way out the file is
//! removed only if it is still the one this daemon made.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use super::handler::{ControlContext, handle};
use super::peer::{Policy, peer_groups, peer_of};
use super::protocol::{MAX_REQUEST, Reply, RequestError, parse_request};
use crate::server::Engine;
use crate::service::accept_backoff::AcceptBackoff;
use crate::shutdown::Shutdown;

/// Control connections served at once.
pub const MAX_CONNECTIONS: usize = 16;
/// How long a connection may wait before sending its next request.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a reply may take to be written.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// The control socket could not be set up.
#[derive(Debug, Error)]
pub enum ControlSocketError {
    /// Another process answers on the path.
    #[error(
        "control socket {0} is in use by a running daemon (give another --control-socket, or none)"
    )]
    InUse(PathBuf),
    /// Something else is at the path.
    #[error("control socket path {0} exists and is not a socket")]
    NotSocket(PathBuf),
    /// Creating, binding or setting the mode failed.
    #[error("cannot set up control socket {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A bound control socket; removes its file when dropped, if it is still
/// the one it made.
#[derive(Debug)]
pub struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
    inode: (u64, u64),
    policy: Policy,
}

impl ControlSocket {
    /// Binds `path` (creating its directory), mode 0600, or 0660 owned by
    /// `group` when given.
    pub fn bind(path: &Path, group: Option<u32>) -> Result<Self, ControlSocketError> {
        let io = |source| ControlSocketError::Io {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::symlink_metadata(path) {
            Ok(meta) if !std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()) => {
                return Err(ControlSocketError::NotSocket(path.to_path_buf()));
            }
            Ok(_) => {
                if std::os::unix::net::UnixStream::connect(path).is_ok() {
                    return Err(ControlSocketError::InUse(path.to_path_buf()));
                }
                info!(path = %path.display(), "removing a stale control socket");
                std::fs::remove_file(path).map_err(io)?;
            }
            Err(_) => {}
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let listener = UnixListener::bind(path).map_err(io)?;
        let mode = if group.is_some() { 0o660 } else { 0o600 };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io)?;
        if let Some(gid) = group {
            std::os::unix::fs::lchown(path, None, Some(gid)).map_err(io)?;
        }
        let meta = std::fs::symlink_metadata(path).map_err(io)?;
        Ok(Self {
            listener,
            path: path.to_path_buf(),
            inode: (meta.dev(), meta.ino()),
            policy: Policy::for_daemon(group),
        })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|meta| (meta.dev(), meta.ino()) == self.inode);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Serves `socket` until `stop`.
pub async fn serve(
    socket: ControlSocket,
    engine: Arc<Engine>,
    ctx: ControlContext,
    stop: Shutdown,
) {
    info!(path = %socket.path.display(), "control socket listening");
    let ctx = Arc::new(ctx);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    let mut backoff = AcceptBackoff::new();
    let stopped = stop.stopped();
    tokio::pin!(stopped);
    loop {
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            accepted = socket.listener.accept() => accepted,
            () = &mut stopped => break,
        };
        let mut stream = match accepted {
            Ok((stream, _)) => {
                backoff.on_success("control socket");
                stream
            }
            Err(err) => {
                tokio::select! {
                    () = backoff.on_error("control socket", &err) => {}
                    () = &mut stopped => break,
                }
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            connections.spawn(async move {
                let reply = Reply::error(format!(
                    "too many control connections (at most {MAX_CONNECTIONS}); try again"
                ));
                let _ = write_reply(&mut stream, &reply).await;
            });
            continue;
        };
        let (engine, ctx, policy) = (engine.clone(), ctx.clone(), socket.policy);
        connections.spawn(async move {
            connection(stream, &engine, &ctx, policy).await;
            drop(permit);
        });
    }
    // Open connections end with the listener (the JoinSet aborts them).
    connections.shutdown().await;
}

/// Serves one connection: checks the peer, then answers request lines
/// until the client closes, idles out, or oversteps.
async fn connection(stream: UnixStream, engine: &Engine, ctx: &ControlContext, policy: Policy) {
    let Ok(peer) = peer_of(&stream) else {
        return;
    };
    let mut stream = stream;
    if !policy.allows(&peer, &peer_groups(&stream)) {
        warn!(
            uid = peer.uid,
            pid = peer.pid.unwrap_or(0),
            "control: connection refused: not root, the daemon's user, or the control group"
        );
        let reply = Reply::error(format!(
            "permission denied: uid {} may not control this daemon (root, uid {}, or the control group may)",
            peer.uid, policy.uid
        ));
        let _ = write_reply(&mut stream, &reply).await;
        return;
    }
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        let limit = (MAX_REQUEST + 1) as u64;
        let read = tokio::time::timeout(
            IDLE_TIMEOUT,
            (&mut reader).take(limit).read_until(b'\n', &mut line),
        )
        .await;
        match read {
            Err(_) => {
                debug!(uid = peer.uid, "control: connection idle too long; closed");
                return;
            }
            Ok(Err(_)) | Ok(Ok(0)) => return,
            Ok(Ok(_)) => {}
        }
        if line.last() != Some(&b'\n') && line.len() > MAX_REQUEST {
            warn!(
                uid = peer.uid,
                pid = peer.pid.unwrap_or(0),
                "control: request too long; connection closed"
            );
            let _ = write_reply(&mut write, &Reply::error(RequestError::TooLong.to_string())).await;
            return;
        }
        let reply = match parse_request(&line) {
            Ok(request) => handle(request, &peer, engine, ctx).await,
            Err(err) => {
                debug!(uid = peer.uid, error = %err, "control: bad request");
                Reply::error(err.to_string())
            }
        };
        if write_reply(&mut write, &reply).await.is_err() {
            return;
        }
    }
}

async fn write_reply(
    stream: &mut (impl AsyncWriteExt + Unpin),
    reply: &Reply,
) -> std::io::Result<()> {
    let line = reply.to_line();
    match tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(line.as_bytes())).await {
        Ok(result) => result,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}
