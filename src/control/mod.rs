//! Operating a running daemon: the control socket (`knock-server
//! --control-socket PATH`) and its client (`knockctl`).
//!
//! Why a Unix socket and not a TCP port: the kernel tells who is at the
//! other end (uid, pid), the file's mode keeps everyone else out before a
//! byte is read, and nothing is ever reachable from the network.
//!
//! | file | concept |
//! |---|---|
//! | `protocol.rs` | the versioned JSON-lines protocol: requests, replies, their parser (pure) |
//! | `peer.rs` | who may connect: root, the daemon's user, the control group |
//! | `listener.rs` | the socket: bounded, timed, capped connections |
//! | `handler.rs` | one request carried out against the engine |
//! | `client.rs` | `knockctl`'s side: connect, ask, read one reply |
//! | `render.rs` | replies as tables for people |
//!
//! The engine's side of each command is in `server/control_ops.rs`.

pub mod client;
pub mod handler;
pub mod listener;
pub mod peer;
pub mod protocol;
pub mod render;

pub use handler::ControlContext;
pub use listener::{ControlSocket, ControlSocketError, serve};
pub use protocol::{Reply, Request, WireRequest, parse_request};

/// Where the daemon listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = crate::config::globals::DEFAULT_CONTROL_SOCKET;
