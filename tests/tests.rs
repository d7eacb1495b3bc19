//! The integration tests: one binary, one harness (`util`, with the SPA
//! fixtures in `util/spa.rs` and the namespace helpers in `util/netns.rs`),
//! a folder per area. They start the real programs on loopback, on ports
//! picked per test. Module roots follow one convention: `area.rs` beside
//! its folder `area/` (never `area/mod.rs`).
//!
//! - `knock`: the knock sequence, the userspace gate and the binaries'
//!   flags and output, end to end on loopback; also the failures a server
//!   meets there (full disk, no file descriptors, floods).
//! - `spa`: single packet authorization, against our own client and
//!   Debian's real `fwknop`/`fwknopd`.
//! - `kernel`: the nftables and iptables backends, inside network
//!   namespaces the tests create.
//! - `daemon`: the server as a library and behind `--config`.
//! - `ops`: operating a daemon: the control socket and `knockctl`, the
//!   Prometheus endpoint, JSON logs.
//! - `packaging`: what ships around the code: scripts, the container, the
//!   library's shape.
//!
//! `spa_fuzz` is its own binary (it installs a counting allocator).

mod util;

mod daemon;
mod fleet;
mod kernel;
mod knock;
mod knockd;
mod ops;
mod packaging;
mod spa;
