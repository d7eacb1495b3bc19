//! portknock: a port-knocking system.
//!
//! A protected TCP service stays closed until a client knocks a secret
//! sequence of UDP ports within a time window; the server then opens the
//! firewall for that client's address only, for a limited time.
//!
//! Component map (data flows one way: packet -> core -> verdict -> firewall):
//!
//! | module | job |
//! |---|---|
//! | [`client`] | knocking and the access check (open, closed, filtered) |
//! | [`config`] | validated configuration; the one place that rejects bad values |
//! | [`knock`] | the core: a pure state machine judging `(ip, port, now)` |
//! | [`grants`] | open grants and their expiry, pure |
//! | [`firewall`] | the backend trait and its implementations |
//! | [`firewall_worker`] | the thread that owns the backend and applies changes in batches |
//! | [`server`] | the I/O shell: UDP knocks -> core -> firewall; expiry of grants |
//! | [`gate`] | userspace backend's listener: resets strangers, serves or proxies the granted |
//! | [`log_budget`] | info lines per window for events anyone can trigger; the rest at debug, summarised |
//! | [`counters`] | what the server received and decided |
//! | [`cli`] | glue for the binaries: logging, stop signal, exit codes |
//! | [`net`] | socket helpers: v6-only wildcards side by side |
//! | [`service`] | the protected service: greeting, flag, timed close, connection cap |
//! | [`spa`] | fwknop-compatible Single Packet Authorization: decoder, encoder, key files, replay cache |
//! | [`spa_listener`] | the server's SPA listener: UDP -> verifier thread -> grants in the engine |
//! | [`stats`] | the loopback stats endpoint: counters as one JSON line per connection |
//! | [`bench`](mod@bench) | the load generator behind `knock-bench`: traffic, probes, reports |

pub mod bench;
pub mod cli;
pub mod client;
pub mod config;
pub mod counters;
pub mod firewall;
pub mod firewall_worker;
pub mod gate;
pub mod grants;
pub mod knock;
pub mod log_budget;
pub mod net;
pub mod server;
pub mod service;
pub mod spa;
pub mod spa_listener;
pub mod stats;
