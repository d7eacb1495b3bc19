//! Running knockd-style door commands safely (issue 12).
//!
//! | file | job |
//! |---|---|
//! | `commands/words.rs` | a command line split into words, `%IP%` per word, shell syntax refused unless allowed |
//! | `commands/runner.rs` | one run: own process group, time limit (SIGKILL to the group), bounded output, exit status |
//! | `commands/pending.rs` | the stop commands still to run, in an atomically replaced state file |
//!
//! Why a room of its own: knockd runs `system()` in a sleeping child, so
//! shell syntax in a config line runs, a hanging command hangs forever and
//! a killed child leaves the door open. Each of those is fixed here, apart
//! from the knockd.conf reader (`knockd/`) that decides when to run what.

pub mod pending;
pub mod runner;
pub mod words;

pub use pending::{PendingError, PendingFile, PendingStop};
pub use runner::{Ending, Report};
pub use words::{Template, WordsError};
