//! The integration tests: one binary, one harness (`util`), a module per
//! area. They start the real programs on loopback, on ports picked per test.

mod util;

mod bench;
mod cli;
mod cli_client;
mod e2e;
mod scripts;
