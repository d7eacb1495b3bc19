//! Who may use the control socket: root, the daemon's own user, or a
//! member of the group the configuration allows (`control-group`). The
//! socket file's mode (0600, or 0660 with a group) is the first fence;
//! the peer's credentials (`SO_PEERCRED`, and `SO_PEERGROUPS` for its
//! supplementary groups) are checked again on every connection, so a
//! file mode loosened by hand or a descriptor passed on does not widen
//! who may act.

use std::ffi::CString;
use std::os::fd::AsRawFd;

use thiserror::Error;
use tokio::net::UnixStream;

/// `SO_PEERGROUPS` from `asm-generic/socket.h` (Linux 4.13; the value of
/// every architecture this builds for but mips, sparc, parisc, alpha).
const SO_PEERGROUPS: libc::c_int = 59;

/// Who is at the other end of a control connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Its user id.
    pub uid: u32,
    /// Its primary group id.
    pub gid: u32,
    /// Its process id, if the kernel told.
    pub pid: Option<i32>,
}

/// Who the daemon lets in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The daemon's own user id.
    pub uid: u32,
    /// The allowed group, if any.
    pub group: Option<u32>,
}

/// A `control-group` that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("control group '{0}' does not exist on this system")]
pub struct NoSuchGroup(pub String);

impl Policy {
    /// The daemon's own user, plus `group` if given.
    pub fn for_daemon(group: Option<u32>) -> Self {
        // SAFETY: getuid cannot fail.
        let uid = unsafe { libc::geteuid() };
        Self { uid, group }
    }

    /// Whether `peer`, in `groups` (its supplementary groups), may act.
    pub fn allows(&self, peer: &Peer, groups: &[u32]) -> bool {
        peer.uid == 0
            || peer.uid == self.uid
            || self
                .group
                .is_some_and(|g| peer.gid == g || groups.contains(&g))
    }
}

/// The credentials of the process at the other end of `stream`.
pub fn peer_of(stream: &UnixStream) -> std::io::Result<Peer> {
    let cred = stream.peer_cred()?;
    Ok(Peer {
        uid: cred.uid(),
        gid: cred.gid(),
        pid: cred.pid(),
    })
}

/// The peer's supplementary groups (`SO_PEERGROUPS`, Linux 4.13+); empty
/// when the kernel does not say.
pub fn peer_groups(stream: &UnixStream) -> Vec<u32> {
    let mut groups = vec![0 as libc::gid_t; 64];
    for _ in 0..2 {
        let mut len = (groups.len() * size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: the buffer is `len` bytes long and outlives the call.
        let rc = unsafe {
            libc::getsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if rc == 0 {
            groups.truncate(len as usize / size_of::<libc::gid_t>());
            return groups;
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ERANGE) {
            return Vec::new();
        }
        // The kernel set `len` to what it needs; bounded by NGROUPS_MAX.
        let want = (len as usize / size_of::<libc::gid_t>()).min(65_536);
        groups = vec![0; want.max(1)];
    }
    Vec::new()
}

/// The id of the group called `name`.
pub fn group_id(name: &str) -> Result<u32, NoSuchGroup> {
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(gid);
    }
    let missing = || NoSuchGroup(name.to_string());
    let cname = CString::new(name).map_err(|_| missing())?;
    let mut group: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut found: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; buf's length is passed.
    let rc = unsafe {
        libc::getgrnam_r(
            cname.as_ptr(),
            &mut group,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() {
        return Err(missing());
    }
    Ok(group.gr_gid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32, gid: u32) -> Peer {
        Peer {
            uid,
            gid,
            pid: Some(1),
        }
    }

    #[test]
    fn root_the_daemons_user_and_the_allowed_group_may_act_others_not() {
        let policy = Policy {
            uid: 999,
            group: Some(50),
        };
        assert!(policy.allows(&peer(0, 0), &[]));
        assert!(policy.allows(&peer(999, 999), &[]));
        assert!(policy.allows(&peer(1000, 50), &[]));
        assert!(policy.allows(&peer(1000, 1000), &[7, 50]));
        assert!(!policy.allows(&peer(1000, 1000), &[7]));
        let no_group = Policy {
            uid: 999,
            group: None,
        };
        assert!(!no_group.allows(&peer(1000, 50), &[50]));
    }

    #[test]
    fn groups_are_found_by_name_or_number() {
        assert_eq!(group_id("root"), Ok(0));
        assert_eq!(group_id("4242"), Ok(4242));
        assert!(group_id("no-such-group-portknock").is_err());
        assert!(group_id("nul\0byte").is_err());
    }
}
