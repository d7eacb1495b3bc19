//! Pure SPA policy: what an accepted packet opens ([`GrantPlan`]) and what
//! an access file lets be opened at all ([`open_tcp_ports`], which the
//! kernel backends drop by default), plus the stanzas worth a warning.
//!
//! Why here and not in the listener: these are decisions on values (no
//! socket, no clock, no thread), so they sit with the decoder whose
//! [`Accepted`] they read, and are tested without a listener. The server's
//! SPA listener carries the plans out.

use std::net::IpAddr;
use std::time::Duration;

use super::access_conf::AccessStanza;
use super::message::{PortSpec, Proto};
use super::verdict::Accepted;

/// What one accepted packet opens: tcp ports for an IP, for a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantPlan {
    /// The address named in the packet (or its source for `0.0.0.0`).
    pub ip: IpAddr,
    /// TCP ports to open, in request order, without duplicates.
    pub tcp_ports: Vec<u16>,
    /// Requested specs that are not opened (udp, icmp, none).
    pub skipped: Vec<PortSpec>,
    /// How long access lasts (the packet's timeout capped by MAX_FW_TIMEOUT,
    /// or FW_ACCESS_TIMEOUT; at least one second).
    pub ttl: Duration,
    /// The packet's replay digest (base64), for the fleet-wide replay
    /// check (issue 15).
    pub replay_digest: String,
}

impl GrantPlan {
    /// The plan for an accepted packet.
    pub fn for_accepted(accepted: &Accepted) -> Self {
        let mut tcp_ports = Vec::new();
        let mut skipped = Vec::new();
        for spec in &accepted.ports {
            match spec.proto {
                Proto::Tcp if !tcp_ports.contains(&spec.port) => tcp_ports.push(spec.port),
                Proto::Tcp => {}
                _ => skipped.push(*spec),
            }
        }
        GrantPlan {
            ip: IpAddr::V4(accepted.allow_ip),
            tcp_ports,
            skipped,
            ttl: Duration::from_secs(u64::from(accepted.timeout_secs.max(1))),
            replay_digest: accepted.replay_digest.clone(),
        }
    }
}

/// The TCP ports the stanzas' OPEN_PORTS allow, sorted, without duplicates:
/// what kernel backends must drop by default besides the protected port.
pub fn open_tcp_ports(stanzas: &[AccessStanza]) -> Vec<u16> {
    let mut ports: Vec<u16> = stanzas
        .iter()
        .flat_map(|s| s.open_ports.iter().flatten())
        .filter(|p| p.proto == Proto::Tcp)
        .map(|p| p.port)
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// Lines of the stanzas without OPEN_PORTS (any port may be requested).
pub fn stanzas_without_open_ports(stanzas: &[AccessStanza]) -> Vec<usize> {
    stanzas
        .iter()
        .filter(|s| s.open_ports.is_none())
        .map(|s| s.line)
        .collect()
}

/// Lines of the stanzas without an HMAC key (`--spa-allow-no-hmac`): their
/// packets are unauthenticated, so the server warns about each at start.
pub fn stanzas_without_hmac(stanzas: &[AccessStanza]) -> Vec<usize> {
    stanzas
        .iter()
        .filter(|s| s.keys.hmac_key.is_none())
        .map(|s| s.line)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::spa::{AccessConfOptions, DigestType, MessageType, SpaMessage, parse_access_conf};

    fn accepted(ports: &[&str], timeout_secs: u32) -> Accepted {
        let ports: Vec<PortSpec> = ports.iter().map(|p| p.parse().unwrap()).collect();
        Accepted {
            allow_ip: Ipv4Addr::new(127, 0, 0, 9),
            ports: ports.clone(),
            timeout_secs,
            stanza: 0,
            replay_digest: String::new(),
            message: SpaMessage {
                rand_val: "1234567890123456".into(),
                username: "u".into(),
                timestamp: 0,
                version: "3.0.0".into(),
                msg_type: MessageType::Access,
                message: String::new(),
                allow_ip: Ipv4Addr::new(127, 0, 0, 9),
                ports,
                nat_access: None,
                server_auth: None,
                client_timeout: 0,
                digest_type: DigestType::Sha256,
            },
        }
    }

    #[test]
    fn plans_open_each_tcp_port_once_and_skip_the_rest() {
        let plan =
            GrantPlan::for_accepted(&accepted(&["tcp/22", "udp/53", "tcp/22", "tcp/80"], 45));
        assert_eq!(plan.ip, IpAddr::from([127, 0, 0, 9]));
        assert_eq!(plan.tcp_ports, vec![22, 80]);
        assert_eq!(plan.skipped, vec!["udp/53".parse().unwrap()]);
        assert_eq!(plan.ttl, Duration::from_secs(45));
        let zero = GrantPlan::for_accepted(&accepted(&["icmp/1"], 0));
        assert!(zero.tcp_ports.is_empty());
        assert_eq!(
            zero.ttl,
            Duration::from_secs(1),
            "a grant lasts at least 1 s"
        );
    }

    #[test]
    fn open_tcp_ports_are_the_union_of_the_stanzas_tcp_ports() {
        let conf = "SOURCE ANY\nKEY k1\nHMAC_KEY h1\nOPEN_PORTS tcp/22,udp/53,tcp/80\n\n\
                    SOURCE ANY\nKEY k2\nHMAC_KEY h2\nOPEN_PORTS tcp/22,tcp/443\n\n\
                    SOURCE ANY\nKEY k3\nHMAC_KEY h3\n";
        let stanzas = parse_access_conf(conf, AccessConfOptions::default())
            .unwrap()
            .stanzas;
        assert_eq!(open_tcp_ports(&stanzas), vec![22, 80, 443]);
        assert_eq!(stanzas_without_open_ports(&stanzas), vec![11]);
    }

    #[test]
    fn stanzas_without_an_hmac_key_are_named_by_line() {
        let conf = "SOURCE ANY\nKEY k1\nHMAC_KEY h1\n\nSOURCE ANY\nKEY k2\n";
        let options = AccessConfOptions {
            allow_missing_hmac: true,
        };
        let stanzas = parse_access_conf(conf, options).unwrap().stanzas;
        assert_eq!(stanzas_without_hmac(&stanzas), vec![5]);
    }
}
