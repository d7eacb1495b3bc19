//! A command line split into words without a shell.
//!
//! knockd hands its command lines to `system()`, so `/bin/sh` reads them:
//! any shell syntax in a door's command runs, and a typo can run something
//! else. Here a line is split into words (whitespace separates them;
//! `'single'` and `"double"` quotes and backslash escapes group them, as
//! in sh) and run directly. A line that needs a shell — a pipe,
//! redirection, `;`, `&`, `&&`, `||`, `$(`, `$VAR`, backticks, a subshell —
//! is refused when the configuration is loaded unless a shell is allowed
//! (the door's `Allow_Shell = yes` or `--knockd-allow-shell`); then the
//! line goes to `/bin/sh -c` as knockd does. `%IP%` is replaced in each
//! word (or in the shell line) by the knocker's address, which is only
//! ever digits, hex, `.` and `:`.

use thiserror::Error;

/// knockd's placeholder for the knocker's address.
pub const IP_PLACEHOLDER: &str = "%IP%";

/// Why a command line cannot run without a shell.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum WordsError {
    /// The line uses shell syntax.
    #[error(
        "needs a shell: '{token}' at column {column} (allow it with the door's Allow_Shell = yes or --knockd-allow-shell, or write the command without it)"
    )]
    NeedsShell {
        /// The shell syntax found.
        token: String,
        /// 1-based column, in characters.
        column: usize,
    },
    /// A quote is not closed.
    #[error("unclosed {0} quote")]
    Unclosed(char),
    /// Nothing to run.
    #[error("empty command")]
    Empty,
}

/// A command as configured: words to run directly, or a line for `/bin/sh -c`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Template {
    /// Program and arguments.
    Words(Vec<String>),
    /// A shell line (allowed explicitly).
    Shell(String),
}

impl Template {
    /// Parses `line`: words, or (with `allow_shell`, for a line that needs
    /// one) a shell line. Without `allow_shell` a shell line is refused.
    pub fn parse(line: &str, allow_shell: bool) -> Result<Self, WordsError> {
        match split(line) {
            Ok(words) if words.is_empty() => Err(WordsError::Empty),
            Ok(words) => Ok(Template::Words(words)),
            Err(WordsError::NeedsShell { .. }) if allow_shell => {
                Ok(Template::Shell(line.trim().to_string()))
            }
            Err(err) => Err(err),
        }
    }

    /// The program and arguments to run for a knock from `ip` (`%IP%`
    /// replaced).
    pub fn argv(&self, ip: &str) -> Vec<String> {
        match self {
            Template::Words(words) => words
                .iter()
                .map(|w| w.replace(IP_PLACEHOLDER, ip))
                .collect(),
            Template::Shell(line) => vec![
                "/bin/sh".to_string(),
                "-c".to_string(),
                line.replace(IP_PLACEHOLDER, ip),
            ],
        }
    }
}

/// Splits `line` into words like sh does for plain words and quotes,
/// refusing every construct that only a shell would interpret.
pub fn split(line: &str) -> Result<Vec<String>, WordsError> {
    let chars: Vec<char> = line.chars().collect();
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut i = 0;
    let shell = |token: &str, at: usize| WordsError::NeedsShell {
        token: token.to_string(),
        column: at + 1,
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => {
                words.extend(word.take());
            }
            '\'' => {
                let close = chars[i + 1..]
                    .iter()
                    .position(|&c| c == '\'')
                    .ok_or(WordsError::Unclosed('\''))?;
                let text: String = chars[i + 1..i + 1 + close].iter().collect();
                word.get_or_insert_with(String::new).push_str(&text);
                i += close + 1;
            }
            '"' => {
                let current = word.get_or_insert_with(String::new);
                let mut j = i + 1;
                loop {
                    match chars.get(j) {
                        None => return Err(WordsError::Unclosed('"')),
                        Some('"') => break,
                        Some('$') | Some('`') => return Err(shell(&chars[j].to_string(), j)),
                        Some('\\') if matches!(chars.get(j + 1), Some('"' | '\\' | '$' | '`')) => {
                            current.push(chars[j + 1]);
                            j += 1;
                        }
                        Some(&c) => current.push(c),
                    }
                    j += 1;
                }
                i = j;
            }
            '\\' => match chars.get(i + 1) {
                Some(&next) => {
                    word.get_or_insert_with(String::new).push(next);
                    i += 1;
                }
                None => return Err(shell("\\", i)),
            },
            '|' | '&' | ';' | '<' | '>' | '(' | ')' | '`' => {
                let double = chars.get(i + 1) == Some(&c) && matches!(c, '|' | '&' | '>' | '<');
                let token: String = if double {
                    [c, c].iter().collect()
                } else {
                    c.to_string()
                };
                return Err(shell(&token, i));
            }
            '$' => {
                let token: String = chars[i..(i + 2).min(chars.len())].iter().collect();
                return Err(shell(&token, i));
            }
            '#' if word.is_none() => return Err(shell("#", i)),
            c => word.get_or_insert_with(String::new).push(c),
        }
        i += 1;
    }
    words.extend(word);
    Ok(words)
}

#[cfg(test)]
mod tests;
