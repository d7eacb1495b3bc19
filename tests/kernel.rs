//! The kernel firewall backends (nftables, iptables), always inside network
//! namespaces the tests create (`util/netns.rs`), so the machine's own rules
//! are never touched: the backends alone (`firewall`), and the real
//! programs in a lab of a server host and client namespaces (`netns_e2e`).
//! They need root; without it they print a loud SKIPPED line, and fail
//! when `CI` is set.

mod firewall;
mod netns_e2e;
mod nflog;
mod packet_source;
