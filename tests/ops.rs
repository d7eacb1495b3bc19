//! Operating a running daemon (issue 13): `knockctl` over the control
//! socket, the Prometheus endpoint, JSON logs. Userspace backend on
//! loopback here; the kernel backends' revoke and flush run in the
//! namespace lab (`kernel/netns_e2e/control.rs`).

mod control;
mod logs;
mod metrics;
mod socket_abuse;
