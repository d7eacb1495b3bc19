//! Both ends of the helper socket, and the packet process's side of it:
//! [`RemoteFirewall`], a [`Firewall`] whose every operation is a request
//! to the helper. The server's firewall worker drives it exactly as it
//! drives a local backend (batches in, one result per change out), so the
//! engine does not know the firewall lives in another process.
//!
//! The packet process takes its end with [`take_packet_link`] (put there
//! at start by [`super::become_packet`]); a thread watches it and ends the
//! process at once if the helper goes away (fail closed: nobody is left to
//! apply a revoke, so nobody may be granted either).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tracing::error;

use super::wire::{MAX_DATAGRAM, Outcome, Reply, Request};
use crate::firewall::{Change, Firewall, FirewallError, FirewallKind};

/// One end of a `SOCK_SEQPACKET` socketpair.
#[derive(Debug)]
pub struct Link {
    fd: OwnedFd,
}

/// The two ends of a new link, close-on-exec both.
pub fn pair() -> io::Result<(Link, Link)> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors socketpair writes.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socketpair succeeded: both are open and ours alone.
    let (a, b) = unsafe {
        use std::os::fd::FromRawFd;
        (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
    };
    Ok((Link { fd: a }, Link { fd: b }))
}

impl Link {
    /// Wraps a descriptor that is a `SOCK_SEQPACKET` Unix socket.
    pub fn from_fd(fd: OwnedFd) -> Link {
        Link { fd }
    }

    /// The descriptor.
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Sends one datagram.
    pub fn send(&self, bytes: &[u8]) -> io::Result<()> {
        // SAFETY: bytes is valid for its length; MSG_NOSIGNAL: a gone
        // peer is an EPIPE error, not a signal.
        let n = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        match n {
            n if n < 0 => Err(io::Error::last_os_error()),
            n if n as usize != bytes.len() => Err(io::Error::other("short send")),
            _ => Ok(()),
        }
    }

    /// Receives one datagram; `None` at end of file (the peer closed). A
    /// datagram longer than [`MAX_DATAGRAM`] is an error (it is dropped).
    pub fn recv(&self) -> io::Result<Option<Vec<u8>>> {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            // SAFETY: buf is valid for its length. MSG_TRUNC makes recv
            // return the datagram's real length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_TRUNC,
                )
            };
            if n < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            let n = n as usize;
            if n == 0 {
                return Ok(None);
            }
            if n > buf.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("a {n}-byte message, over the {MAX_DATAGRAM}-byte bound"),
                ));
            }
            buf.truncate(n);
            return Ok(Some(buf));
        }
    }

    /// Waits (at most `timeout`, `None`: forever) until the peer has closed
    /// its end; `true` if it did.
    pub fn wait_hangup(&self, timeout: Option<Duration>) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLRDHUP,
            revents: 0,
        };
        let ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as i32);
        loop {
            // SAFETY: one valid pollfd.
            let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
            if rc < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return rc > 0 && pfd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0;
        }
    }
}

static PACKET_LINK: Mutex<Option<RemoteFirewall>> = Mutex::new(None);
/// Set once the packet process said `Bye`: the helper's hangup is expected.
static SAID_BYE: AtomicBool = AtomicBool::new(false);

/// The packet process's firewall, if this process is one (taken once).
pub fn take_packet_link() -> Option<RemoteFirewall> {
    PACKET_LINK.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// Makes `link` this process's firewall: asks the helper which backend it
/// runs and starts the watcher that ends the process if the helper goes.
pub(super) fn install(link: Link) -> Result<(), super::PrivilegeError> {
    let kind = match ask(&link, &Request::Hello)? {
        Reply::Backend(kind) => kind,
        other => return Err(unexpected(&other).into()),
    };
    let watched = Link::from_fd(link.fd.try_clone().map_err(super::PrivilegeError::Link)?);
    std::thread::Builder::new()
        .name("helper-watch".into())
        .spawn(move || {
            watched.wait_hangup(None);
            if !SAID_BYE.load(Ordering::SeqCst) {
                error!("the firewall helper went away: stopping (it removed our rules, or the kernel ends them)");
                std::process::exit(crate::server::daemon::EXIT_FAILURE.into());
            }
        })
        .map_err(super::PrivilegeError::Link)?;
    *PACKET_LINK.lock().unwrap_or_else(|p| p.into_inner()) = Some(RemoteFirewall { link, kind });
    Ok(())
}

/// A request and its reply.
fn ask(link: &Link, request: &Request) -> Result<Reply, FirewallError> {
    link.send(&request.encode()).map_err(gone)?;
    let bytes = link
        .recv()
        .map_err(gone)?
        .ok_or_else(|| gone(io::Error::from(io::ErrorKind::UnexpectedEof)))?;
    Reply::decode(&bytes).map_err(|err| FirewallError::Io {
        context: "the firewall helper's reply".into(),
        source: io::Error::new(io::ErrorKind::InvalidData, err),
    })
}

fn gone(source: io::Error) -> FirewallError {
    FirewallError::Io {
        context: "the firewall helper".into(),
        source,
    }
}

fn unexpected(reply: &Reply) -> FirewallError {
    match reply {
        Reply::Failed(why) => FirewallError::Io {
            context: format!("the firewall helper refused: {why}"),
            source: io::Error::from(io::ErrorKind::PermissionDenied),
        },
        other => FirewallError::Io {
            context: format!("the firewall helper answered {other:?}"),
            source: io::Error::from(io::ErrorKind::InvalidData),
        },
    }
}

/// The firewall as the packet process sees it: requests to the helper.
#[derive(Debug)]
pub struct RemoteFirewall {
    link: Link,
    kind: FirewallKind,
}

impl RemoteFirewall {
    /// The backend the helper runs.
    pub fn kind(&self) -> FirewallKind {
        self.kind
    }
}

impl Firewall for RemoteFirewall {
    fn name(&self) -> &'static str {
        match self.kind {
            FirewallKind::Iptables => "iptables",
            _ => "nftables",
        }
    }

    fn setup(&mut self) -> Result<(), FirewallError> {
        match ask(&self.link, &Request::Setup)? {
            Reply::Ready => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    fn grant(
        &mut self,
        ip: std::net::IpAddr,
        port: u16,
        ttl: Duration,
    ) -> Result<(), FirewallError> {
        self.apply(&[Change::Grant { ip, port, ttl }]).remove(0)
    }

    fn revoke(&mut self, ip: std::net::IpAddr, port: u16) -> Result<(), FirewallError> {
        self.apply(&[Change::Revoke { ip, port }]).remove(0)
    }

    fn teardown(&mut self) -> Result<(), FirewallError> {
        SAID_BYE.store(true, Ordering::SeqCst);
        self.link.send(&Request::Bye.encode()).map_err(gone)
    }

    fn reconfigure(&mut self, ports: &[u16], udp_ports: &[u16]) -> Result<bool, FirewallError> {
        let request = Request::Reconfigure(ports.to_vec(), udp_ports.to_vec());
        match ask(&self.link, &request)? {
            // The helper applied its live grants again itself.
            Reply::Reconfigured => Ok(true),
            other => Err(unexpected(&other)),
        }
    }

    fn apply(&mut self, changes: &[Change]) -> Vec<Result<(), FirewallError>> {
        if changes.len() > super::wire::MAX_CHANGES {
            return changes
                .chunks(super::wire::MAX_CHANGES)
                .flat_map(|chunk| self.apply(chunk))
                .collect();
        }
        let outcomes = match ask(&self.link, &Request::Apply(changes.to_vec())) {
            Ok(Reply::Results(outcomes)) if outcomes.len() == changes.len() => outcomes,
            Ok(other) => return changes.iter().map(|_| Err(unexpected(&other))).collect(),
            Err(err) => {
                let text = err.to_string();
                return changes
                    .iter()
                    .map(|_| Err(gone(io::Error::other(text.clone()))))
                    .collect();
            }
        };
        outcomes
            .into_iter()
            .map(|outcome| match outcome {
                Outcome::Applied => Ok(()),
                Outcome::Refused => Err(FirewallError::Io {
                    context: "the firewall helper refused the change (a port the config does not protect?)".into(),
                    source: io::Error::from(io::ErrorKind::PermissionDenied),
                }),
                Outcome::Failed => Err(FirewallError::Io {
                    context: "the firewall helper could not apply the change".into(),
                    source: io::Error::other("backend failure (see the helper's log)"),
                }),
            })
            .collect()
    }
}
