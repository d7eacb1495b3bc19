//! Choosing the capture source (`--capture`), before anything is applied.
//!
//! `auto` takes the stealthiest source this run can have: NFLOG when the
//! firewall backend is a kernel one (it already holds CAP_NET_ADMIN and
//! owns a table the capture rule joins), AF_PACKET when CAP_NET_RAW is
//! held (the userspace gate as root), else bound sockets. An explicit
//! choice that cannot work is refused with one line naming what is
//! missing, so the daemon exits 2 before touching the firewall; so are TCP
//! knocks with bound sockets, which cannot hear them.
//!
//! The decision is pure ([`choose`], [`check_knocks`]); [`has_net_raw`]
//! reads this process's capabilities.

use thiserror::Error;

use super::CaptureKind;
use crate::config::KnockPort;

/// Bit of CAP_NET_RAW in the capability sets (`linux/capability.h`).
pub const CAP_NET_RAW_BIT: u32 = 13;

/// A capture source chosen, and why (for the log line at start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    /// Nflog, Packet or Socket (never Auto).
    pub kind: CaptureKind,
    /// Why this one, in words for the log.
    pub why: &'static str,
}

impl Choice {
    /// Whether knock ports look like closed ports with this source.
    pub fn stealthy(&self) -> bool {
        self.kind != CaptureKind::Socket
    }
}

/// A capture source that cannot be used for this configuration.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SelectError {
    /// `--capture nflog` without a kernel firewall backend.
    #[error(
        "--capture nflog needs a kernel firewall backend (nftables or iptables, with CAP_NET_ADMIN); this run uses the userspace gate: use --firewall nftables|iptables, or --capture packet|socket"
    )]
    NflogNeedsKernelBackend,
    /// `--capture packet` without CAP_NET_RAW.
    #[error(
        "--capture packet needs CAP_NET_RAW, which this process does not hold: run as root, grant it (systemd AmbientCapabilities=CAP_NET_RAW), or use --capture socket"
    )]
    PacketNeedsNetRaw,
    /// TCP knocks with the socket source (chosen, or what `auto` fell to).
    #[error(
        "door '{door}': TCP knock {knock} cannot be heard with {how}bound sockets (they hear UDP only): use --capture nflog (kernel firewall) or packet (CAP_NET_RAW), or make the knock udp"
    )]
    TcpKnockWithSockets {
        /// The door.
        door: String,
        /// The first TCP knock of it.
        knock: KnockPort,
        /// `"--capture auto's fallback, "` or empty.
        how: &'static str,
    },
}

/// The source for `wanted`, given whether the firewall backend chosen is
/// a kernel one and whether CAP_NET_RAW is held.
pub fn choose(
    wanted: CaptureKind,
    kernel_backend: bool,
    net_raw: bool,
) -> Result<Choice, SelectError> {
    let nflog = Choice {
        kind: CaptureKind::Nflog,
        why: "the firewall backend is a kernel one: an NFLOG rule logs knock-port packets and lets them continue, so knock ports look closed",
    };
    let packet = Choice {
        kind: CaptureKind::Packet,
        why: "CAP_NET_RAW is held: an AF_PACKET socket copies knock-port packets, so knock ports look closed",
    };
    match wanted {
        CaptureKind::Nflog if kernel_backend => Ok(nflog),
        CaptureKind::Nflog => Err(SelectError::NflogNeedsKernelBackend),
        CaptureKind::Packet if net_raw => Ok(Choice {
            why: "chosen by --capture packet",
            ..packet
        }),
        CaptureKind::Packet => Err(SelectError::PacketNeedsNetRaw),
        CaptureKind::Socket => Ok(Choice {
            kind: CaptureKind::Socket,
            why: "chosen by --capture socket: knock ports are visible to a UDP scan (they do not answer like closed ports) and TCP knocks cannot be heard",
        }),
        CaptureKind::Auto if kernel_backend => Ok(nflog),
        CaptureKind::Auto if net_raw => Ok(packet),
        CaptureKind::Auto => Ok(Choice {
            kind: CaptureKind::Socket,
            why: "no kernel firewall backend and no CAP_NET_RAW: bound sockets; knock ports are visible to a UDP scan (they do not answer like closed ports) and TCP knocks cannot be heard",
        }),
    }
}

/// Refuses TCP knocks (`doors`: each door's name and sequence) when
/// `chosen` is the socket source.
pub fn check_knocks<'a>(
    wanted: CaptureKind,
    chosen: Choice,
    doors: impl IntoIterator<Item = (&'a str, &'a [KnockPort])>,
) -> Result<(), SelectError> {
    if chosen.kind != CaptureKind::Socket {
        return Ok(());
    }
    for (door, sequence) in doors {
        if let Some(knock) = sequence
            .iter()
            .find(|k| k.proto == crate::config::Proto::Tcp)
        {
            return Err(SelectError::TcpKnockWithSockets {
                door: door.to_string(),
                knock: *knock,
                how: match wanted {
                    CaptureKind::Auto => "--capture auto's fallback, ",
                    _ => "",
                },
            });
        }
    }
    Ok(())
}

/// Whether `status` (the text of `/proc/self/status`) shows CAP_NET_RAW in
/// the effective set. A missing or unreadable `CapEff` line means no.
pub fn cap_eff_has_net_raw(status: &str) -> bool {
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_NET_RAW_BIT) != 0)
}

/// Whether this process may open an AF_PACKET socket (CAP_NET_RAW
/// effective).
pub fn has_net_raw() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| cap_eff_has_net_raw(&status))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Proto;

    #[test]
    fn auto_picks_the_stealthiest_source_available() {
        assert_eq!(
            choose(CaptureKind::Auto, true, true).unwrap().kind,
            CaptureKind::Nflog
        );
        assert_eq!(
            choose(CaptureKind::Auto, true, false).unwrap().kind,
            CaptureKind::Nflog
        );
        assert_eq!(
            choose(CaptureKind::Auto, false, true).unwrap().kind,
            CaptureKind::Packet
        );
        let socket = choose(CaptureKind::Auto, false, false).unwrap();
        assert_eq!(socket.kind, CaptureKind::Socket);
        assert!(!socket.stealthy());
        assert!(
            socket.why.contains("visible to a UDP scan"),
            "{}",
            socket.why
        );
        assert!(
            socket.why.contains("TCP knocks cannot be heard"),
            "{}",
            socket.why
        );
    }

    #[test]
    fn an_explicit_choice_is_kept_or_refused_naming_what_is_missing() {
        assert_eq!(
            choose(CaptureKind::Nflog, true, false).unwrap().kind,
            CaptureKind::Nflog
        );
        assert_eq!(
            choose(CaptureKind::Packet, true, true).unwrap().kind,
            CaptureKind::Packet
        );
        assert_eq!(
            choose(CaptureKind::Socket, true, true).unwrap().kind,
            CaptureKind::Socket
        );
        let err = choose(CaptureKind::Nflog, false, true).unwrap_err();
        assert_eq!(err, SelectError::NflogNeedsKernelBackend);
        assert!(err.to_string().contains("kernel firewall backend"), "{err}");
        let err = choose(CaptureKind::Packet, true, false).unwrap_err();
        assert!(err.to_string().contains("CAP_NET_RAW"), "{err}");
    }

    #[test]
    fn tcp_knocks_are_refused_with_sockets_only() {
        let seq = [
            KnockPort::udp(1234),
            KnockPort {
                port: 5678,
                proto: Proto::Tcp,
            },
        ];
        let udp_only = [KnockPort::udp(1)];
        let doors = || [("ssh", &seq[..]), ("web", &udp_only[..])];
        let socket = choose(CaptureKind::Auto, false, false).unwrap();
        let err = check_knocks(CaptureKind::Auto, socket, doors()).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("door 'ssh': TCP knock 5678:tcp"), "{text}");
        assert!(text.contains("auto's fallback"), "{text}");
        let explicit = choose(CaptureKind::Socket, true, true).unwrap();
        assert!(check_knocks(CaptureKind::Socket, explicit, doors()).is_err());
        let packet = choose(CaptureKind::Packet, false, true).unwrap();
        assert!(check_knocks(CaptureKind::Packet, packet, doors()).is_ok());
        assert!(check_knocks(CaptureKind::Socket, explicit, [("web", &udp_only[..])]).is_ok());
    }

    #[test]
    fn net_raw_is_read_from_the_effective_set() {
        assert!(cap_eff_has_net_raw("Name:\tx\nCapEff:\t000001ffffffffff\n"));
        assert!(cap_eff_has_net_raw("CapEff:\t0000000000002000\n"));
        assert!(!cap_eff_has_net_raw("CapEff:\t0000000000001000\n"));
        assert!(!cap_eff_has_net_raw("CapEff:\tzz\n"));
        assert!(!cap_eff_has_net_raw(""));
    }
}
