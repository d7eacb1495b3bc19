//! portknock: a port-knocking system.
//!
//! A protected TCP service stays closed until a client knocks a secret
//! sequence of UDP ports within a time window, or sends one authenticated
//! SPA packet; the server then opens the firewall for that client's
//! address only, for a limited time.
//!
//! # Component map, by layer
//!
//! Data flows one way: packet -> core -> verdict -> grant -> firewall. A
//! room may call rooms of its own layer and of the layers above it in this
//! list, never those below. (One allowance: [`config`] names the
//! firewall's plain value types, the backend kind and instance name, to
//! validate them; it calls nothing there.)
//!
//! **Core: pure rooms.** No sockets, no clock (`now` is passed in), no
//! tokio, no firewall. They must stay pure: that is what lets them be
//! tested densely, with property tests and injected time. Reading a file
//! the user named (a config, key files) is their only I/O, at the edge.
//!
//! | module | job |
//! |---|---|
//! | [`knock`] | the core: a pure state machine judging `(ip, port, now)`; bounded table |
//! | [`grants`] | open grants and their expiry; the single source of truth |
//! | [`spa`] | fwknop-compatible SPA: decoder, encoder, policy, key files (and the replay-cache file) |
//! | [`config`] | the validated configuration: the one place that rejects bad values |
//! | [`log_budget`] | how many lines a flood may log per window, pure |
//! | [`counters`] | what the server received and decided: atomics and their wire format (the stats line), no I/O |
//!
//! **Shell: I/O rooms.** Sockets, threads, timers; they carry the core's
//! verdicts out.
//!
//! | module | job |
//! |---|---|
//! | [`firewall`] | the backend trait and its implementations (nftables, iptables, userspace) |
//! | [`firewall_worker`] | the thread that owns the backend and applies changes in batches |
//! | [`privilege`] | the privilege split: a capability-free packet process, a small firewall helper behind a socketpair |
//! | [`capture`] | stealth capture: knocks and SPA read off the wire (NFLOG, AF_PACKET) or from bound sockets |
//! | [`server`] | UDP knocks -> core -> grants -> firewall worker; expiry; reload; `server::daemon`: the composition root (`ServerConfig` in, running daemon out) |
//! | [`spa_listener`] | the server's SPA listener: UDP -> verifier thread -> grants in the engine |
//! | [`gate`] | the userspace backend's listener: resets strangers, serves or proxies the granted |
//! | [`control`] | the control socket (`knockctl`): versioned JSON lines, peer check, bounded connections |
//! | [`metrics`] | the Prometheus endpoint: the counters and the engine's census, read at each scrape |
//! | [`stats`] | the loopback stats endpoint: counters as one JSON line per connection |
//! | [`systemd`] | readiness, reload and stop notifications to systemd (`Type=notify`); a no-op without `NOTIFY_SOCKET` |
//! | [`net`] | socket helpers: v6-only wildcards side by side |
//! | [`service`] | the protected service: greeting, flag, timed close, connection cap |
//! | [`client`] | knocking, SPA sending and the access check (open, closed, filtered); how the client prints |
//!
//! **Who may call a firewall backend:** only [`firewall_worker`], on its own
//! thread (setup, batched apply, repair, teardown), so a knock never waits
//! behind a firewall command and the kernel state follows the grant table
//! from one place. The [`server`] chooses and builds the backend and hands
//! it to the worker; it and [`spa_listener`] then only send changes;
//! [`gate`] shares the userspace backend's access list. The core layer
//! never calls a backend.
//!
//! **Glue for the binaries** (`src/bin/`): flags become a validated config,
//! then a library call; nothing in the layers above uses these.
//!
//! | module | job |
//! |---|---|
//! | [`cli`] | logging on stderr, stop signal, exit codes |
//! | [`stdout`] | printing that a closed pipe cannot crash |

#![warn(missing_docs)]

pub mod capture;
pub mod cli;
pub mod client;
pub mod commands;
pub mod config;
pub mod control;
pub mod counters;
pub mod firewall;
pub mod firewall_worker;
pub mod fleet;
pub mod gate;
pub mod grants;
pub mod knock;
pub mod knockd;
pub mod log_budget;
pub mod metrics;
pub mod net;
pub mod privilege;
pub mod rotate;
pub mod server;
pub mod service;
pub mod shutdown;
pub mod spa;
pub mod spa_listener;
pub mod stats;
pub mod stdout;
pub mod systemd;
