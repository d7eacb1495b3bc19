//! Choosing the backend for `--firewall`.
//!
//! An explicit kernel backend that cannot work (no CAP_NET_ADMIN, tool
//! missing) is an error at start-up, before anything is applied. `auto`
//! never fails: it takes nftables where usable, else iptables, else the
//! userspace gate, and returns why it passed over the others so the caller
//! can log a warning.

use super::iptables::IptablesFirewall;
use super::nftables::NftablesFirewall;
use super::userspace::{AccessList, UserspaceFirewall};
use super::{Firewall, FirewallError, FirewallKind, FirewallOptions};

/// The chosen backend.
pub struct Selected {
    /// The backend, not yet set up.
    pub firewall: Box<dyn Firewall>,
    /// Which backend it is (never `Auto`).
    pub kind: FirewallKind,
    /// Why `auto` passed over better backends, best first (empty otherwise).
    pub passed_over: Vec<FirewallError>,
}

impl std::fmt::Debug for Selected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Selected")
            .field("kind", &self.kind)
            .field("passed_over", &self.passed_over)
            .finish_non_exhaustive()
    }
}

/// Opens the backend `kind`. The userspace backend writes into `access`
/// (which the gate reads); kernel backends ignore it.
pub fn open(
    kind: FirewallKind,
    options: &FirewallOptions,
    access: AccessList,
) -> Result<Selected, FirewallError> {
    let selected = |firewall: Box<dyn Firewall>, kind| Selected {
        firewall,
        kind,
        passed_over: Vec::new(),
    };
    match kind {
        FirewallKind::Auto => Ok(auto(options, access)),
        FirewallKind::Userspace => Ok(selected(
            Box::new(UserspaceFirewall::new(access)),
            FirewallKind::Userspace,
        )),
        FirewallKind::Iptables => Ok(selected(
            Box::new(IptablesFirewall::new(options.clone())?),
            FirewallKind::Iptables,
        )),
        FirewallKind::Nftables => Ok(selected(
            Box::new(NftablesFirewall::new(options.clone())?),
            FirewallKind::Nftables,
        )),
    }
}

/// `--firewall auto`: nftables where usable (privilege, `nft`, and a working
/// `nft list tables`), else iptables, else userspace.
pub fn auto(options: &FirewallOptions, access: AccessList) -> Selected {
    let mut passed_over = Vec::new();
    match NftablesFirewall::new(options.clone())
        .and_then(|fw| NftablesFirewall::probe().map(|()| fw))
    {
        Ok(fw) => {
            return Selected {
                firewall: Box::new(fw),
                kind: FirewallKind::Nftables,
                passed_over,
            };
        }
        Err(e) => passed_over.push(e),
    }
    match IptablesFirewall::new(options.clone()) {
        Ok(fw) => {
            return Selected {
                firewall: Box::new(fw),
                kind: FirewallKind::Iptables,
                passed_over,
            };
        }
        Err(e) => passed_over.push(e),
    }
    Selected {
        firewall: Box::new(UserspaceFirewall::new(access)),
        kind: FirewallKind::Userspace,
        passed_over,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userspace_is_always_available() {
        let s = open(
            FirewallKind::Userspace,
            &FirewallOptions::new([2222]),
            AccessList::new(),
        )
        .unwrap();
        assert_eq!(s.kind, FirewallKind::Userspace);
        assert_eq!(s.firewall.name(), "userspace");
        assert!(s.passed_over.is_empty());
    }

    #[test]
    fn auto_picks_a_working_backend_and_says_why_it_passed_others() {
        let s = auto(&FirewallOptions::new([2222]), AccessList::new());
        assert_ne!(s.kind, FirewallKind::Auto);
        assert_eq!(s.firewall.name(), s.kind.to_string());
        match s.kind {
            FirewallKind::Nftables => assert!(s.passed_over.is_empty()),
            FirewallKind::Iptables => assert_eq!(s.passed_over.len(), 1),
            _ => assert_eq!(s.passed_over.len(), 2),
        }
    }
}
