//! `knockctl`'s side of the control socket: connect, send one request
//! line, read one reply line. Errors say which of the usual cases it is
//! (no daemon at the path, no permission on the file, the daemon refused)
//! so an operator knows what to fix.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

use super::protocol::{Reply, WireRequest};

/// Longest reply read: a `list` of the largest grant table
/// (`MAX_MAX_GRANTS` rows of about 100 bytes) fits many times over.
pub const MAX_REPLY: u64 = 256 * 1024 * 1024;

/// How long the client waits for the daemon.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request got no reply.
#[derive(Debug, Error)]
pub enum ClientError {
    /// Nothing at the path, or nobody listening.
    #[error("no daemon at {0}: is knock-server running with --control-socket {0}?")]
    NoDaemon(PathBuf),
    /// The file's mode keeps this user out.
    #[error(
        "permission denied on {0}: run as root, the daemon's user, or a member of its control-group"
    )]
    PermissionDenied(PathBuf),
    /// Any other failure talking to the daemon.
    #[error("talking to the daemon at {path} failed")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The daemon's answer was not a reply of this protocol.
    #[error("the daemon's reply was not understood: {0}")]
    BadReply(String),
}

/// Sends `request` to the daemon at `path`; returns its raw reply line and
/// the parsed reply.
pub fn ask(path: &Path, request: &WireRequest) -> Result<(String, Reply), ClientError> {
    let io = |source: std::io::Error| ClientError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut stream = UnixStream::connect(path).map_err(|err| match err.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            ClientError::NoDaemon(path.to_path_buf())
        }
        std::io::ErrorKind::PermissionDenied => ClientError::PermissionDenied(path.to_path_buf()),
        _ => io(err),
    })?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
    // A daemon that refuses this peer answers and closes without reading:
    // the write may then fail, and the refusal is still there to read.
    let sent = stream.write_all(request.to_line().as_bytes());
    let mut line = String::new();
    let read = BufReader::new(stream.take(MAX_REPLY)).read_line(&mut line);
    if line.is_empty() {
        sent.map_err(io)?;
        read.map_err(io)?;
    }
    if line.is_empty() {
        return Err(ClientError::BadReply(
            "the daemon closed the connection without a reply".to_string(),
        ));
    }
    let reply: Reply = serde_json::from_str(line.trim_end())
        .map_err(|err| ClientError::BadReply(err.to_string()))?;
    Ok((line, reply))
}
