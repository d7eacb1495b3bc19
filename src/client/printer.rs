//! How `knock-client` prints: the seed's layout, colours, quiet mode.
//!
//! The words live in [`super::report`]; this file decides where they go.
//! Why colours are opt-out by context: the output is read by people on a
//! terminal and by scripts and tests through pipes, so escape codes appear
//! only when stdout is a terminal and never when `NO_COLOR` is set to a
//! non-empty value (<https://no-color.org>). Printing goes through
//! [`crate::stdout`], so a reader that goes away early (`| head -1`) stops
//! the output, never the knock.

use std::ffi::OsStr;
use std::io::{IsTerminal, Write};

use super::report;

/// ANSI: green and bold, for `[+]`.
const GREEN: &str = "\x1b[1;32m";
/// ANSI: red and bold, for `[-]`.
const RED: &str = "\x1b[1;31m";
/// ANSI: cyan, for `[*]`.
const CYAN: &str = "\x1b[36m";
/// ANSI: yellow, for the `[1/3]` counters.
const YELLOW: &str = "\x1b[33m";
/// ANSI: bold, for the banner.
const BOLD: &str = "\x1b[1m";
/// ANSI: back to plain.
const RESET: &str = "\x1b[0m";

/// Whether to colour: only on a terminal, and not when `NO_COLOR` is set
/// to anything but the empty string.
pub fn colour_wanted(is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    is_terminal && no_color.is_none_or(OsStr::is_empty)
}

/// `line` with its leading tag (`[+]`, `[-]`, `[*]`, `[1/3]`) coloured;
/// banner lines in bold; anything else unchanged.
pub fn paint(line: &str) -> String {
    if line == report::RULE || line == report::TITLE {
        return format!("{BOLD}{line}{RESET}");
    }
    let Some(end) = line.find(']').filter(|_| line.starts_with('[')) else {
        return line.to_string();
    };
    let (tag, rest) = line.split_at(end + 1);
    let colour = match tag {
        "[+]" => GREEN,
        "[-]" => RED,
        "[*]" => CYAN,
        counter if counter[1..end].contains('/') => YELLOW,
        _ => return line.to_string(),
    };
    format!("{colour}{tag}{RESET}{rest}")
}

/// Prints the client's lines: nothing but failures when quiet (those on
/// stderr), colours when wanted.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    quiet: bool,
    colour: bool,
}

impl Printer {
    /// A printer with colours decided by the caller.
    pub fn new(quiet: bool, colour: bool) -> Self {
        Self { quiet, colour }
    }

    /// A printer for this process: colours per [`colour_wanted`] on stdout
    /// and the environment's `NO_COLOR`.
    pub fn for_stdout(quiet: bool) -> Self {
        let no_color = std::env::var_os("NO_COLOR");
        let colour = colour_wanted(std::io::stdout().is_terminal(), no_color.as_deref());
        Self::new(quiet, colour)
    }

    /// Prints one progress line (not when quiet).
    pub fn say(&self, line: &str) {
        if self.quiet {
            return;
        }
        match self.colour {
            true => crate::stdout::print_line(&paint(line)),
            false => crate::stdout::print_line(line),
        };
    }

    /// Prints an empty line (not when quiet).
    pub fn blank(&self) {
        self.say("");
    }

    /// Prints the banner and the blank line after it.
    pub fn banner(&self) {
        self.say(report::RULE);
        self.say(report::TITLE);
        self.say(report::RULE);
        self.blank();
    }

    /// Prints the blank line and the closing rule.
    pub fn close(&self) {
        self.blank();
        self.say(report::RULE);
    }

    /// Prints a verdict and returns `ok`. A failure is printed even when
    /// quiet, then on stderr, so a script still learns why.
    pub fn verdict(&self, line: &str, ok: bool) -> bool {
        match (ok, self.quiet) {
            (true, true) => {}
            (_, false) => self.say(line),
            (false, true) => {
                let _ = writeln!(std::io::stderr(), "{line}");
            }
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::*;

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        assert!(colour_wanted(true, None));
        assert!(!colour_wanted(false, None));
        assert!(!colour_wanted(true, Some(OsStr::new("1"))));
        assert!(!colour_wanted(true, Some(OsStr::new("0"))));
        assert!(!colour_wanted(false, Some(OsStr::new("1"))));
        // no-color.org: an empty value does not count as set.
        assert!(colour_wanted(true, Some(OsStr::new(""))));
    }

    #[test]
    fn paint_colours_the_tag_only() {
        assert_eq!(
            paint("[+] SUCCESS! Port 2222 is now accessible"),
            "\x1b[1;32m[+]\x1b[0m SUCCESS! Port 2222 is now accessible"
        );
        assert_eq!(paint("[-] FAILED"), "\x1b[1;31m[-]\x1b[0m FAILED");
        assert_eq!(paint("[*] Sequence: 1"), "\x1b[36m[*]\x1b[0m Sequence: 1");
        assert_eq!(
            paint("[1/3] Knocking..."),
            "\x1b[33m[1/3]\x1b[0m Knocking..."
        );
        assert_eq!(
            paint(report::RULE),
            format!("\x1b[1m{}\x1b[0m", report::RULE)
        );
    }

    #[test]
    fn paint_leaves_other_lines_alone() {
        for line in ["", "plain", "[x] odd", "[unclosed", "a [+] inside", "[]"] {
            assert_eq!(paint(line), line);
        }
    }
}
