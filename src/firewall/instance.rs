//! Which firewall objects belong to this server (`--instance NAME`), and
//! the lock that keeps a second server of the same instance out.
//!
//! Two servers with a kernel backend used to share `inet portknock` /
//! `PORTKNOCK`: the second one's setup replaced the first one's rules (its
//! protected port opened to strangers) and its teardown removed them. Each
//! instance now names its own table and chain, and only one live process
//! may own an instance per network namespace.
//!
//! The lock is an abstract Unix socket `\0portknock/<instance>`: abstract
//! names live in the network namespace (like the rules they guard), need
//! no file, and the kernel releases them when the process dies, even by
//! SIGKILL, so a crash never leaves a stale lock. A refused server learns
//! the owner's pid by connecting (`SO_PEERCRED`) and touches nothing.

use std::fmt;
use std::io;
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};

use thiserror::Error;

/// Longest instance name: keeps `PORTKNOCK-<name>` within iptables' 28
/// characters of a chain name (`XT_EXTENSION_MAXNAMELEN` is 29 with NUL).
pub const MAX_INSTANCE_LEN: usize = 16;
/// The name of the instance that keeps the historic object names.
pub const DEFAULT_INSTANCE: &str = "default";

/// A bad `--instance` value, or another live owner of the instance.
#[derive(Debug, Error)]
pub enum InstanceError {
    /// The name is empty, too long, or has a character outside `[a-z0-9_-]`.
    #[error(
        "invalid instance name '{0}': use 1 to {MAX_INSTANCE_LEN} characters of a-z, 0-9, '_' and '-'"
    )]
    Invalid(String),
    /// Another live process owns the instance in this network namespace.
    #[error(
        "another knock-server ({}) already owns firewall instance '{instance}' in this network namespace: stop it, or start this one with its own --instance NAME (and its own ports)",
        .pid.map_or_else(|| "pid unknown".to_string(), |pid| format!("pid {pid}"))
    )]
    Taken {
        /// The instance.
        instance: String,
        /// The owner's pid, when it could be learned.
        pid: Option<i32>,
    },
    /// The lock socket could not be created.
    #[error("cannot take the lock of firewall instance '{instance}': {source}")]
    Io {
        /// The instance.
        instance: String,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// A validated instance name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Instance(String);

impl Default for Instance {
    fn default() -> Self {
        Instance(DEFAULT_INSTANCE.to_string())
    }
}

impl fmt::Display for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Instance {
    type Err = InstanceError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let valid = !text.is_empty()
            && text.len() <= MAX_INSTANCE_LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        match valid {
            true => Ok(Instance(text.to_string())),
            false => Err(InstanceError::Invalid(text.to_string())),
        }
    }
}

impl Instance {
    /// Whether this is the default instance (historic names).
    pub fn is_default(&self) -> bool {
        self.0 == DEFAULT_INSTANCE
    }

    /// Name of the nftables table (family `inet`): `portknock`, or
    /// `portknock-<name>`.
    pub fn nft_table(&self) -> String {
        match self.is_default() {
            true => "portknock".to_string(),
            false => format!("portknock-{}", self.0),
        }
    }

    /// Name of the iptables chain: `PORTKNOCK`, or `PORTKNOCK-<name>`.
    pub fn iptables_chain(&self) -> String {
        match self.is_default() {
            true => "PORTKNOCK".to_string(),
            false => format!("PORTKNOCK-{}", self.0),
        }
    }

    /// The abstract socket name of the instance lock.
    pub fn lock_name(&self) -> String {
        format!("portknock/{}", self.0)
    }
}

/// Ownership of an instance in this network namespace, held while the
/// value lives (and released by the kernel when the process dies).
#[derive(Debug)]
pub struct InstanceLock {
    _listener: UnixListener,
}

impl InstanceLock {
    /// Takes the lock of `instance`, or says which pid holds it.
    pub fn acquire(instance: &Instance) -> Result<InstanceLock, InstanceError> {
        let io = |source| InstanceError::Io {
            instance: instance.to_string(),
            source,
        };
        let addr = SocketAddr::from_abstract_name(instance.lock_name().as_bytes()).map_err(io)?;
        match UnixListener::bind_addr(&addr) {
            Ok(listener) => Ok(InstanceLock {
                _listener: listener,
            }),
            Err(err) if err.kind() == io::ErrorKind::AddrInUse => Err(InstanceError::Taken {
                instance: instance.to_string(),
                pid: UnixStream::connect_addr(&addr)
                    .ok()
                    .and_then(|s| peer_pid(&s)),
            }),
            Err(err) => Err(io(err)),
        }
    }
}

impl InstanceLock {
    /// The pid of the live owner of `instance` in this network namespace
    /// (`None`: nobody holds it, or its pid cannot be learned).
    pub fn owner(instance: &Instance) -> Result<Option<i32>, InstanceError> {
        let addr =
            SocketAddr::from_abstract_name(instance.lock_name().as_bytes()).map_err(|source| {
                InstanceError::Io {
                    instance: instance.to_string(),
                    source,
                }
            })?;
        match UnixStream::connect_addr(&addr) {
            Ok(stream) => Ok(peer_pid(&stream)),
            Err(_) => Ok(None),
        }
    }
}

/// The pid of the process at the other end of `stream` (`SO_PEERCRED`).
fn peer_pid(stream: &UnixStream) -> Option<i32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` is a ucred of `len` bytes, written by the kernel.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &raw mut len,
        )
    };
    (rc == 0 && cred.pid > 0).then_some(cred.pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        for good in ["a", "web", "ssh-2", "x_y", "0123456789abcdef"] {
            assert!(good.parse::<Instance>().is_ok(), "{good}");
        }
        for bad in ["", "Web", "a b", "a/b", "0123456789abcdefg", "é", "a.b"] {
            let err = bad.parse::<Instance>().unwrap_err().to_string();
            assert!(err.contains("invalid instance name"), "{bad}: {err}");
        }
    }

    #[test]
    fn default_keeps_the_historic_names() {
        let default = Instance::default();
        assert_eq!(default.nft_table(), "portknock");
        assert_eq!(default.iptables_chain(), "PORTKNOCK");
        assert_eq!("default".parse::<Instance>().unwrap(), default);
        let web: Instance = "web".parse().unwrap();
        assert_eq!(web.nft_table(), "portknock-web");
        assert_eq!(web.iptables_chain(), "PORTKNOCK-web");
        let longest: Instance = "a".repeat(MAX_INSTANCE_LEN).parse().unwrap();
        assert!(longest.iptables_chain().len() <= 28);
    }

    #[test]
    fn a_second_lock_names_the_owner_and_a_released_one_is_free() {
        // A name no other test uses, unique per run.
        let name = format!("t{}", std::process::id() % 1_000_000_000);
        let instance: Instance = name.parse().unwrap();
        let lock = InstanceLock::acquire(&instance).unwrap();
        match InstanceLock::acquire(&instance) {
            Err(InstanceError::Taken { pid, .. }) => {
                assert_eq!(pid, Some(std::process::id() as i32))
            }
            other => panic!("expected Taken, got {other:?}"),
        }
        drop(lock);
        InstanceLock::acquire(&instance).unwrap();
    }
}
