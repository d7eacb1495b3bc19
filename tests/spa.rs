//! Single packet authorization: our encoder and verifier against vectors
//! and packets of Debian's real `fwknop` and `fwknopd`, the real server
//! with `--spa` end to end, its flags, key files and behaviour under load.
//! The shared fixtures (keys, an SPA server, packets) are in
//! `util/spa.rs`.

mod burst;
mod cli;
mod e2e;
mod files;
mod fwknop_client;
mod fwknopd;
mod fwknopd_udp;
mod vectors;
