//! The daemon as a library and behind `--config`: `daemon::run` in-process
//! (loopback, userspace gate), reload, and the binary's refusals of bad
//! configuration files.

mod bad_config;
mod bench_config;
mod doors;
mod in_process;
mod reload;
mod reload_load;
mod udp_gate;
