//! Why a capture source could not be opened: one error type for every
//! source, each variant naming the value or the privilege at fault, so the
//! daemon can print one line and exit 2 without applying anything.

use std::io;

/// A capture source that cannot be opened or configured.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The process lacks a capability the source needs.
    #[error("{source_name} capture needs {capability}: {why}")]
    MissingCapability {
        /// The source (`packet`, `nflog`).
        source_name: &'static str,
        /// The capability (`CAP_NET_RAW`, `CAP_NET_ADMIN`).
        capability: &'static str,
        /// What to do about it.
        why: &'static str,
    },
    /// An interface named by `--interface` does not exist.
    #[error("unknown interface '{name}' (--interface): no such network interface here")]
    UnknownInterface {
        /// The name as given.
        name: String,
    },
    /// The doors name more ports than one classic BPF program can test.
    #[error(
        "{ports} capture ports do not fit in one classic BPF program (at most {max} udp and tcp ports together); use the nflog source or fewer ports"
    )]
    TooManyPorts {
        /// Ports asked for (udp and tcp together).
        ports: usize,
        /// The most that fit.
        max: usize,
    },
    /// The NFLOG group is bound by another reader in this network
    /// namespace (another knock-server, ulogd, ...): one reader per group.
    #[error(
        "NFLOG group {group} is already read by another process in this network namespace (another knock-server, or ulogd?): choose a free group with --nflog-group N"
    )]
    GroupTaken {
        /// The group asked for.
        group: u16,
    },
    /// A system call failed while setting the source up.
    #[error("{source_name} capture: {what}: {error}")]
    Io {
        /// The source (`packet`, `nflog`).
        source_name: &'static str,
        /// The step that failed (`socket(AF_PACKET)`, `SO_ATTACH_FILTER`, ...).
        what: &'static str,
        /// The system's answer.
        #[source]
        error: io::Error,
    },
}
