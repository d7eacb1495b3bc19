//! Man pages and shell completions, generated from a binary's own clap
//! definition, for packaging (`cargo deb`, `scripts/build-deb.sh`):
//!
//! ```text
//! PROG --generate-man DIR                # DIR/PROG.1 (+ PROG-SUB.1 per subcommand)
//! PROG --generate-completions SHELL DIR  # bash: PROG.bash, zsh: _PROG, fish: PROG.fish
//! ```
//!
//! Why hidden first arguments of each shipped binary rather than an
//! unshipped xtask: the clap definitions live in `src/bin/` (the library
//! holds no clap, `tests/packaging/library_shape.rs`), so only the binary
//! itself has them without moving them; and what is generated is exactly
//! what that binary parses. They are looked for before clap parses, so a
//! binary with required flags still generates, and `--help` never shows
//! them. Included by each binary with `#[path = "shared/docs.rs"]`
//! (cargo builds no binary from a folder without `main.rs`).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::ValueEnum;
use clap_complete::Shell;

/// If the first argument asks for man pages or completions, writes them
/// for `cmd` and returns the exit code; otherwise `None` (run as usual).
pub fn generate(cmd: impl FnOnce() -> clap::Command) -> Option<ExitCode> {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let first = args.first()?.to_str()?;
    let result = match (first, &args[1..]) {
        ("--generate-man", [dir]) => man(cmd(), PathBuf::from(dir)),
        ("--generate-completions", [shell, dir]) => {
            completions(cmd(), shell.to_string_lossy().as_ref(), PathBuf::from(dir))
        }
        ("--generate-man", _) => Err("usage: --generate-man DIR".to_string()),
        ("--generate-completions", _) => Err(format!(
            "usage: --generate-completions SHELL DIR (SHELL: {})",
            shells()
        )),
        _ => return None,
    };
    Some(match result {
        Ok(path) => {
            println!("{}", path.display());
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    })
}

fn shells() -> String {
    Shell::value_variants()
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn man(cmd: clap::Command, dir: PathBuf) -> Result<PathBuf, String> {
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    clap_mangen::generate_to(cmd, &dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

fn completions(mut cmd: clap::Command, shell: &str, dir: PathBuf) -> Result<PathBuf, String> {
    let shell: Shell = shell
        .parse()
        .map_err(|_| format!("unknown shell {shell:?}; one of {}", shells()))?;
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let name = cmd.get_name().to_string();
    clap_complete::generate_to(shell, &mut cmd, name, &dir)
        .map_err(|e| format!("{}: {e}", dir.display()))
}
