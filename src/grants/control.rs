//! What the control socket asks of the grant table: every grant with its
//! holder (for `list`), and removing by address or all at once (`revoke`,
//! `flush`). Kept apart from the hot path's methods in `grants.rs`.

use std::net::IpAddr;
use std::time::Instant;

use super::{GrantTable, Holder, Origin};

/// One open grant as `knockctl list` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantEntry {
    /// The address let in.
    pub ip: IpAddr,
    /// Who holds it: a door's index, SPA or manual.
    pub holder: Holder,
    /// The protected port.
    pub port: u16,
    /// When it ends.
    pub until: Instant,
}

impl GrantEntry {
    /// How it was granted.
    pub fn origin(&self) -> Origin {
        Origin::of(self.holder)
    }
}

impl GrantTable {
    /// Every open grant, one per `(ip, holder, port)`, soonest end first.
    pub fn entries(&self) -> impl Iterator<Item = GrantEntry> + '_ {
        self.by_deadline
            .iter()
            .map(|&(until, ip, port, holder)| GrantEntry {
                ip,
                holder,
                port,
                until,
            })
    }

    /// Removes every grant of `ip` on a port `ports` accepts, whoever
    /// holds it; returns the `(ip, port)`s the firewall must close.
    pub fn revoke_ip(&mut self, ip: IpAddr, ports: impl Fn(u16) -> bool) -> Vec<(IpAddr, u16)> {
        let ip = ip.to_canonical();
        let open: Vec<(IpAddr, u16)> = self
            .holders
            .keys()
            .copied()
            .filter(|&(held, port)| held == ip && ports(port))
            .collect();
        open.into_iter()
            .filter(|&(ip, port)| self.remove(ip, port))
            .collect()
    }

    /// Removes every grant; returns the `(ip, port)`s the firewall must
    /// close (each once).
    pub fn revoke_all(&mut self) -> Vec<(IpAddr, u16)> {
        self.until.clear();
        self.by_deadline.clear();
        self.holders.drain().map(|(key, _)| key).collect()
    }
}
