//! Fleet mode (issue 15) with real `nats-server` processes started by the
//! tests: three `knock-server` nodes in three network namespaces (nftables
//! backend) sharing grants through one NATS JetStream server in a hub
//! namespace (`fleet/lab.rs`), and the bad inputs on loopback.
//! Kernel tests need root (loud SKIPPED line without it; a failure in CI).

mod bad_input;
mod bench;
mod cluster;
mod lab;
mod spa_replay;
mod three_nodes;
