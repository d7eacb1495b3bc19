//! A recording backend: applies nothing, remembers every call. It serves the
//! server's tests, and can be told to fail grants to exercise error paths.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Firewall, FirewallError};

/// One call made on the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `setup()`.
    Setup,
    /// `grant(ip, port, ttl)`.
    Grant(IpAddr, u16, Duration),
    /// `revoke(ip, port)`.
    Revoke(IpAddr, u16),
    /// `teardown()`.
    Teardown,
}

/// The calls made so far, shared with the test that made the backend.
pub type CallLog = Arc<Mutex<Vec<Call>>>;

/// A backend that records its calls.
#[derive(Debug, Default)]
pub struct RecordingFirewall {
    calls: CallLog,
    fail_grants: bool,
    fail_setup: bool,
}

impl RecordingFirewall {
    /// A backend recording into `calls`.
    pub fn new(calls: CallLog) -> Self {
        Self {
            calls,
            ..Self::default()
        }
    }

    /// Makes every grant fail as a firewall command would.
    pub fn failing_grants(mut self) -> Self {
        self.fail_grants = true;
        self
    }

    /// Makes setup fail.
    pub fn failing_setup(mut self) -> Self {
        self.fail_setup = true;
        self
    }

    fn record(&self, call: Call) {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(call);
    }
}

fn refused(command: &str) -> FirewallError {
    FirewallError::Command {
        command: command.into(),
        status: "exit status: 1".into(),
        stderr: "refused by the test".into(),
    }
}

impl Firewall for RecordingFirewall {
    fn name(&self) -> &'static str {
        "recording"
    }

    fn setup(&mut self) -> Result<(), FirewallError> {
        if self.fail_setup {
            return Err(refused("setup"));
        }
        self.record(Call::Setup);
        Ok(())
    }

    fn grant(&mut self, ip: IpAddr, port: u16, ttl: Duration) -> Result<(), FirewallError> {
        self.record(Call::Grant(ip, port, ttl));
        if self.fail_grants {
            return Err(refused("grant"));
        }
        Ok(())
    }

    fn revoke(&mut self, ip: IpAddr, port: u16) -> Result<(), FirewallError> {
        self.record(Call::Revoke(ip, port));
        Ok(())
    }

    fn teardown(&mut self) -> Result<(), FirewallError> {
        self.record(Call::Teardown);
        Ok(())
    }
}
