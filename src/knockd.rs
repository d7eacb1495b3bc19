//! knockd.conf as a drop-in (issue 12): read the file knockd users have,
//! do what knockd does with it, minus knockd's known failures.
//!
//! | file | job |
//! |---|---|
//! | `knockd/model.rs` | what a knockd.conf says: options, doors, with line numbers |
//! | `knockd/parse.rs` | knockd 0.8's lexical rules; one error with file:line |
//! | `knockd/one_time.rs` | one-time sequence files: read, consume durably |
//! | `knockd/plan.rs` | commands checked, what this build cannot serve refused, `--knockd-native` translation |
//! | `knockd/attempts.rs` | knockd's attempt matching, pure, O(1) per knock |
//! | `knockd/hearing.rs` | one thread reads every knock socket, knocks released in kernel-stamp order |
//! | `knockd/doorman.rs` | the shell: knock sockets, attempts, commands, the stop timer and its state file |
//! | `knockd/serve.rs` | `--knockd-config`: plan logged, doorman and native daemon side by side |
//! | `knockd/compat.rs` | knockd's own command line (`knock-server knockd -c FILE ...`) |
//!
//! Doors served by commands run here; doors translated by
//! `--knockd-native` become ordinary portknock doors run by the daemon
//! (`server::daemon`) beside them. The quirks of knockd and what became of
//! each are listed in README.md, "Migrating from knockd".

pub mod attempts;
pub mod compat;
pub mod doorman;
pub mod hearing;
pub mod model;
pub mod one_time;
pub mod parse;
pub mod plan;
pub mod serve;

pub use model::{KnockdDoor, KnockdFile};
pub use parse::{ConfError, load, parse};
pub use plan::{PlanOptions, Planned, Service, plan};
