//! Issue 3, end to end: the real `knock-server` (each kernel backend) and
//! `protected-service` in a "server host" namespace, the real
//! `knock-client` in two client namespaces on the same LAN (see
//! `netns_e2e/lab.rs`). Each test builds its own namespaces, so they run
//! side by side; durations are a few seconds so the module stays short.
//! They need root; without it they print a loud SKIPPED line, and fail
//! when `CI` is set.

mod access;
mod config_reload;
mod crash;
mod doors;
mod instance;
mod iptables_rules;
mod lab;
mod leftovers;
mod life;
mod privilege;
mod privsep;
mod reload;
mod udp_port;
