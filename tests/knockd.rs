//! Issue 12, the knockd drop-in with the real binaries: `knock-server
//! --knockd-config` (and `knock-server knockd -c`) on loopback, knocked by
//! Debian's `knock` client over UDP; door commands that touch files in the
//! test's directory. Kernel ones (iptables commands, `--knockd-native`,
//! real knockd side by side) are in `kernel/netns_e2e/knockd.rs`.

mod bad_input;
mod commands;
mod harness;
mod one_time;
