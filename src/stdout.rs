//! Standard output that a closed pipe cannot crash: the binaries' printing.
//!
//! Why: Rust ignores SIGPIPE, so once the reader of our stdout goes away
//! (`knock-client ... | head -1`) every write fails with EPIPE, and
//! `println!` panics on that (exit 101, a backtrace hint on stderr). A
//! user who only wanted the first line did nothing wrong, so the programs
//! keep doing their work, stop printing, and exit with their normal code.
//! Other write errors (a full disk behind `>`) are treated the same way:
//! the output is a report, never the reason the work fails.
//! [`crate::cli::LossyStderr`] does the same for the logs.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a write to stdout failed; later writes are skipped.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes `text` to stdout and flushes it. Returns `false`, and prints
/// nothing from then on, once stdout is closed or broken.
pub fn print(text: &str) -> bool {
    if CLOSED.load(Ordering::Relaxed) {
        return false;
    }
    let mut out = std::io::stdout().lock();
    let written = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    if written.is_err() {
        CLOSED.store(true, Ordering::Relaxed);
    }
    written.is_ok()
}

/// [`print()`] with a line end.
pub fn print_line(line: &str) -> bool {
    let mut text = String::with_capacity(line.len() + 1);
    text.push_str(line);
    text.push('\n');
    print(&text)
}

/// Whether an earlier write found stdout closed or broken.
pub fn is_closed() -> bool {
    CLOSED.load(Ordering::Relaxed)
}
