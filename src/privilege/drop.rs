//! Becoming the unprivileged user, in two steps (boringtun's
//! `drop_privileges`, made stricter):
//!
//! 1. [`become_user`], before anything is read or bound: the process takes
//!    the user's uid and gid (and only its group) but keeps, for its
//!    setup only, the capabilities binding needs ([`SETUP_CAPS`]); every
//!    other capability leaves the bounding set and `PR_SET_NO_NEW_PRIVS`
//!    is set, so no exec can ever gain one back. Files it creates from
//!    now on (the SPA replay cache) belong to the user.
//! 2. [`drop_all`], once every socket is bound and before the first packet
//!    is read: effective, permitted, inheritable and ambient sets are
//!    cleared, and the bounding set emptied.

use std::ffi::CString;

use caps::{CapSet, Capability, CapsHashSet};

use super::PrivilegeError;

/// The user the packet process runs as when `--user` is not given: this
/// one if it exists (the Debian package creates it), else [`FALLBACK_USER`].
pub const DEFAULT_USER: &str = "portknock";
/// The user of last resort.
pub const FALLBACK_USER: &str = "nobody";

/// What the packet process may still do while it sets up: bind ports under
/// 1024, open capture sockets (AF_PACKET needs NET_RAW; binding an NFLOG
/// group needs NET_ADMIN, and an opened one is read without it), and read
/// a root-only config or access file.
pub const SETUP_CAPS: [Capability; 4] = [
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_NET_RAW,
    Capability::CAP_NET_ADMIN,
    Capability::CAP_DAC_READ_SEARCH,
];

/// A user to become: its name, uid and primary gid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: libc::uid_t,
    /// Its primary gid.
    pub gid: libc::gid_t,
}

impl User {
    /// Looks `name` up in the user database.
    pub fn lookup(name: &str) -> Result<User, PrivilegeError> {
        let unknown = || PrivilegeError::UnknownUser(name.to_string());
        let c_name = CString::new(name).map_err(|_| unknown())?;
        let mut buf = vec![0 as libc::c_char; 16 * 1024];
        // SAFETY: an all-zero passwd is a valid value for getpwnam_r to fill.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; buf's length is given.
        let rc = unsafe {
            libc::getpwnam_r(
                c_name.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr(),
                buf.len(),
                &mut found,
            )
        };
        if rc != 0 || found.is_null() {
            return Err(unknown());
        }
        if pwd.pw_uid == 0 {
            return Err(PrivilegeError::RootUser(name.to_string()));
        }
        Ok(User {
            name: name.to_string(),
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
        })
    }

    /// `--user`'s value, or [`DEFAULT_USER`] if it exists, else
    /// [`FALLBACK_USER`].
    pub fn resolve(given: Option<&str>) -> Result<User, PrivilegeError> {
        match given {
            Some(name) => User::lookup(name),
            None => User::lookup(DEFAULT_USER).or_else(|_| User::lookup(FALLBACK_USER)),
        }
    }
}

/// Step 1: becomes `user`, keeping [`SETUP_CAPS`] (those the process has)
/// until [`drop_all`].
pub fn become_user(user: &User) -> Result<(), PrivilegeError> {
    let keep: CapsHashSet = SETUP_CAPS.into_iter().collect();
    let had = caps::read(None, CapSet::Permitted).map_err(caps_err("read"))?;
    let mut keep: CapsHashSet = keep.intersection(&had).copied().collect();
    // Kept for step 2, which empties the bounding set with it.
    keep.insert(Capability::CAP_SETPCAP);
    let keep: CapsHashSet = keep.intersection(&had).copied().collect();
    // Out of the bounding set first (needs CAP_SETPCAP, still held).
    for cap in caps::all().difference(&keep) {
        caps::drop(None, CapSet::Bounding, *cap).map_err(caps_err("drop bounding"))?;
    }
    no_new_privs()?;
    // SAFETY: plain syscalls on integers and a one-element array.
    unsafe {
        check(libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0), "keep caps")?;
        check(libc::setgroups(1, &user.gid), "setgroups")?;
        check(libc::setresgid(user.gid, user.gid, user.gid), "setresgid")?;
        check(libc::setresuid(user.uid, user.uid, user.uid), "setresuid")?;
        check(libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0), "keep caps")?;
    }
    caps::set(None, CapSet::Inheritable, &CapsHashSet::new()).map_err(caps_err("inheritable"))?;
    caps::set(None, CapSet::Permitted, &keep).map_err(caps_err("permitted"))?;
    caps::set(None, CapSet::Effective, &keep).map_err(caps_err("effective"))?;
    Ok(())
}

/// Step 2: clears every capability set; the process can never gain one
/// again.
pub fn drop_all() -> Result<(), PrivilegeError> {
    caps::clear(None, CapSet::Ambient).map_err(caps_err("ambient"))?;
    // The bounding set shrinks with CAP_SETPCAP, kept by step 1 for this.
    for cap in caps::all() {
        caps::drop(None, CapSet::Bounding, cap).map_err(caps_err("drop bounding"))?;
    }
    for set in [CapSet::Effective, CapSet::Permitted, CapSet::Inheritable] {
        caps::clear(None, set).map_err(caps_err("clear"))?;
    }
    no_new_privs()
}

/// What the helper keeps: netlink and iptables need NET_ADMIN (and
/// iptables-legacy a raw socket); reading a root-only config file on a
/// reload needs DAC_READ_SEARCH when the file belongs to another user;
/// passing SIGHUP and SIGTERM on to the packet process, whose uid is not
/// ours, needs KILL.
pub const HELPER_CAPS: [Capability; 4] = [
    Capability::CAP_NET_ADMIN,
    Capability::CAP_NET_RAW,
    Capability::CAP_DAC_READ_SEARCH,
    Capability::CAP_KILL,
];

/// Narrows the helper (still uid 0, so the commands it runs, iptables,
/// get what it has) to [`HELPER_CAPS`]: bounding, permitted, effective;
/// nothing inheritable or ambient; no new privileges.
pub fn limit_helper() -> Result<(), PrivilegeError> {
    let keep: CapsHashSet = HELPER_CAPS.into_iter().collect();
    for cap in caps::all().difference(&keep) {
        caps::drop(None, CapSet::Bounding, *cap).map_err(caps_err("drop bounding"))?;
    }
    caps::clear(None, CapSet::Ambient).map_err(caps_err("ambient"))?;
    caps::clear(None, CapSet::Inheritable).map_err(caps_err("inheritable"))?;
    caps::set(None, CapSet::Effective, &keep).map_err(caps_err("effective"))?;
    caps::set(None, CapSet::Permitted, &keep).map_err(caps_err("permitted"))?;
    no_new_privs()
}

/// Whether this process is root (effective uid 0).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn no_new_privs() -> Result<(), PrivilegeError> {
    // SAFETY: prctl with integer arguments.
    check(
        unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) },
        "no new privs",
    )
}

fn check(rc: libc::c_int, what: &'static str) -> Result<(), PrivilegeError> {
    match rc {
        0 => Ok(()),
        _ => Err(PrivilegeError::Syscall {
            what,
            source: std::io::Error::last_os_error(),
        }),
    }
}

fn caps_err(what: &'static str) -> impl Fn(caps::errors::CapsError) -> PrivilegeError {
    move |err| PrivilegeError::Syscall {
        what,
        source: std::io::Error::other(err.to_string()),
    }
}
