//! What the kernel backends need from the system: the CAP_NET_ADMIN check,
//! finding a tool on `PATH`, and running a command with a script on stdin.
//!
//! Every one-shot firewall command goes through [`run`], so a failure always
//! becomes a [`FirewallError::Command`] naming the command line and carrying
//! its stderr, which the server logs before going on.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::FirewallError;

/// Bit of CAP_NET_ADMIN in the capability sets (`linux/capability.h`).
pub const CAP_NET_ADMIN_BIT: u32 = 12;

/// Whether `status` (the text of `/proc/self/status`) shows CAP_NET_ADMIN in
/// the effective set. A missing or unreadable `CapEff` line means no.
pub fn cap_eff_has_net_admin(status: &str) -> bool {
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_NET_ADMIN_BIT) != 0)
}

/// Whether this process may change the firewall (CAP_NET_ADMIN effective).
pub fn has_net_admin() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| cap_eff_has_net_admin(&status))
}

/// The path of the executable `tool` on `PATH`, or in the sbin directories
/// that a non-login root shell may lack on its `PATH`.
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(tool))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Checks CAP_NET_ADMIN, then that every one of `tools` exists: the checks a
/// kernel backend's constructor makes before touching anything.
pub fn require(backend: &'static str, tools: &[&'static str]) -> Result<(), FirewallError> {
    if !has_net_admin() {
        return Err(FirewallError::NeedsPrivilege { backend });
    }
    match tools.iter().find(|tool| find_tool(tool).is_none()) {
        Some(tool) => Err(FirewallError::ToolMissing { backend, tool }),
        None => Ok(()),
    }
}

/// Runs `program args...` with `stdin` written to its standard input and
/// returns its standard output. A non-zero exit becomes
/// [`FirewallError::Command`] with the command line and its stderr.
pub fn run(program: &str, args: &[&str], stdin: &str) -> Result<String, FirewallError> {
    let command = std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let io = |context: &str, source| FirewallError::Io {
        context: format!("{context} `{command}`"),
        source,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io("cannot start", e))?;
    if let Some(mut pipe) = child.stdin.take() {
        // A tool that exits early closes the pipe; its exit status says why.
        let _ = pipe.write_all(stdin.as_bytes());
    }
    let output = child
        .wait_with_output()
        .map_err(|e| io("cannot wait for", e))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(FirewallError::Command {
            command,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_eff_bit_12_is_net_admin() {
        assert!(cap_eff_has_net_admin(
            "Name:\tx\nCapEff:\t000001ffffffffff\n"
        ));
        assert!(cap_eff_has_net_admin("CapEff:\t0000000000001000\n"));
        assert!(!cap_eff_has_net_admin("CapEff:\t0000000000000000\n"));
        assert!(!cap_eff_has_net_admin("CapEff:\t000001ffffffefff\n"));
        assert!(!cap_eff_has_net_admin("CapPrm:\t0000000000001000\n"));
        assert!(!cap_eff_has_net_admin("CapEff:\tnot-hex\n"));
        assert!(!cap_eff_has_net_admin(""));
    }

    #[test]
    fn run_reports_command_status_and_stderr() {
        let out = run("sh", &["-c", "cat"], "hello").unwrap();
        assert_eq!(out, "hello");
        match run("sh", &["-c", "echo oops >&2; exit 3"], "") {
            Err(FirewallError::Command {
                command,
                status,
                stderr,
            }) => {
                assert!(command.starts_with("sh -c"), "{command}");
                assert!(status.contains('3'), "{status}");
                assert_eq!(stderr, "oops");
            }
            other => panic!("expected a command error, got {other:?}"),
        }
        assert!(matches!(
            run("/nonexistent/portknock-tool", &[], ""),
            Err(FirewallError::Io { .. })
        ));
    }

    #[test]
    fn find_tool_finds_sh_and_not_nonsense() {
        assert!(find_tool("sh").is_some());
        assert!(find_tool("portknock-no-such-tool").is_none());
    }
}
