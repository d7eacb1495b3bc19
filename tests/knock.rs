//! The knock sequence end to end on loopback with the userspace gate: the
//! real knock-server, knock-client and protected-service, their flags and
//! output, knock-bench against them, and how the server holds up when
//! things fail around it (a full disk, no file descriptors, floods).

mod bench;
mod cli;
mod cli_client;
mod client_output;
mod e2e;
mod faults;
mod fd_exhaustion;
mod gate_limits;
mod knock_log;
mod rotating;
mod sweep;
