//! The userspace backend: no kernel rules, no privileges.
//!
//! It keeps the access list that the gate (`gate.rs`) consults for every
//! connection to the protected port. Entries carry their own end, so a
//! connection is refused the moment a grant ends even before the server's
//! expiry timer revokes it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::{Firewall, FirewallError};

/// The shared access list: `(ip, port)` -> end of access.
#[derive(Debug, Clone, Default)]
pub struct AccessList {
    inner: Arc<RwLock<HashMap<(IpAddr, u16), Instant>>>,
}

impl AccessList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `ip` may connect to `port` now.
    pub fn allows(&self, ip: IpAddr, port: u16) -> bool {
        let key = (ip.to_canonical(), port);
        self.read()
            .get(&key)
            .is_some_and(|&until| Instant::now() < until)
    }

    /// Number of entries (open or not yet revoked).
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<(IpAddr, u16), Instant>> {
        self.inner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<(IpAddr, u16), Instant>> {
        self.inner
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The userspace backend: writes grants into an [`AccessList`].
#[derive(Debug, Default)]
pub struct UserspaceFirewall {
    access: AccessList,
}

impl UserspaceFirewall {
    /// A backend writing into `access`, which the gate reads.
    pub fn new(access: AccessList) -> Self {
        Self { access }
    }
}

impl Firewall for UserspaceFirewall {
    fn name(&self) -> &'static str {
        "userspace"
    }

    fn setup(&mut self) -> Result<(), FirewallError> {
        self.access.write().clear();
        Ok(())
    }

    /// The access list does not depend on the ports: nothing to change
    /// (the gate's own port is fixed; the daemon refuses to move it).
    fn reconfigure(&mut self, _ports: &[u16], _udp_ports: &[u16]) -> Result<bool, FirewallError> {
        Ok(true)
    }

    fn grant(&mut self, ip: IpAddr, port: u16, ttl: Duration) -> Result<(), FirewallError> {
        self.access
            .write()
            .insert((ip.to_canonical(), port), Instant::now() + ttl);
        Ok(())
    }

    fn revoke(&mut self, ip: IpAddr, port: u16) -> Result<(), FirewallError> {
        self.access.write().remove(&(ip.to_canonical(), port));
        Ok(())
    }

    fn teardown(&mut self) -> Result<(), FirewallError> {
        self.access.write().clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_allows_only_that_ip_and_port_until_revoked() {
        let access = AccessList::new();
        let mut fw = UserspaceFirewall::new(access.clone());
        fw.setup().unwrap();
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        assert!(!access.allows(a, 2222));
        fw.grant(a, 2222, Duration::from_secs(60)).unwrap();
        assert!(access.allows(a, 2222));
        assert!(!access.allows(b, 2222));
        assert!(!access.allows(a, 2223));
        fw.revoke(a, 2222).unwrap();
        assert!(!access.allows(a, 2222));
        fw.revoke(a, 2222).unwrap();
    }

    #[test]
    fn an_ended_grant_no_longer_allows_before_revoke() {
        let access = AccessList::new();
        let mut fw = UserspaceFirewall::new(access.clone());
        let a: IpAddr = "::1".parse().unwrap();
        fw.grant(a, 2222, Duration::from_millis(1)).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(!access.allows(a, 2222));
        assert_eq!(access.len(), 1);
        fw.teardown().unwrap();
        assert!(access.is_empty());
    }
}
