//! The integration tests: one binary, one harness (`util`), a module per
//! area. They start the real programs on loopback, on ports picked per test.

mod util;

mod bench;
mod cli;
mod cli_client;
mod client_output;
mod container;
mod daemon;
mod e2e;
mod faults;
mod fd_exhaustion;
mod firewall;
mod gate_limits;
mod knock_log;
mod netns_e2e;
mod scripts;
mod spa_burst;
mod spa_cli;
mod spa_e2e;
mod spa_files;
mod spa_fwknop_client;
mod spa_fwknopd;
mod spa_fwknopd_udp;
mod spa_vectors;
