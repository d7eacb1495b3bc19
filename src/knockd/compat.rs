//! knockd's own command line, so a unit file can swap the binary:
//! `knock-server knockd -c /etc/knockd.conf -i eth0 -v` (or a symlink named
//! `knockd` to knock-server) is turned into knock-server's flags.
//!
//! | knockd | here |
//! |---|---|
//! | `-c`, `--config FILE` | `--knockd-config FILE` (default `/etc/knockd.conf`, as knockd) |
//! | `-i`, `--interface IF` | `--knockd-interface IF` (logged; bound sockets hear every interface) |
//! | `-v`, `--verbose` | `-v` |
//! | `-D`, `--debug` | `-vv` |
//! | `-d`, `--daemon` | accepted, stays in the foreground (run it under systemd `Type=simple`) |
//! | `-4`, `--only-ip-v4` | `--bind 0.0.0.0` |
//! | `-V`, `--version`, `-h`, `--help` | knock-server's |
//! | `-l`, `--lookup`, `-p`, `--pidfile`, `-g`, `--logfile` | refused: no reverse DNS (it leaks the first knock port), no pid file, logs go to stderr |
//!
//! Flags of knock-server itself (`--knockd-native`, `--firewall`...) may
//! follow and pass through unchanged.

/// knockd's default configuration file.
pub const DEFAULT_CONF: &str = "/etc/knockd.conf";

/// Whether `argv` asks for the knockd command line: program named
/// `knockd`, or first argument `knockd`.
pub fn wanted(argv: &[String]) -> bool {
    let name = argv
        .first()
        .and_then(|p| p.rsplit('/').next())
        .unwrap_or("");
    name == "knockd" || argv.get(1).is_some_and(|a| a == "knockd")
}

/// knock-server's argv for a knockd-style `argv` (program name first);
/// an error names the flag that is not supported.
pub fn translate(argv: &[String]) -> Result<Vec<String>, String> {
    let mut out = vec!["knock-server".to_string()];
    let skip = if argv.get(1).is_some_and(|a| a == "knockd") {
        2
    } else {
        1
    };
    let mut args = argv.iter().skip(skip);
    let mut config = None;
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| {
            args.next()
                .cloned()
                .ok_or_else(|| format!("knockd option {flag} needs a value"))
        };
        match arg.as_str() {
            "-c" | "--config" => config = Some(value(arg)?),
            "-i" | "--interface" => {
                out.push("--knockd-interface".into());
                out.push(value(arg)?);
            }
            "-v" | "--verbose" => out.push("-v".into()),
            "-D" | "--debug" => out.push("-vv".into()),
            "-d" | "--daemon" => {}
            "-4" | "--only-ip-v4" => out.extend(["--bind".to_string(), "0.0.0.0".to_string()]),
            "-V" | "--version" => out.push("--version".into()),
            "-h" | "--help" => out.push("--help".into()),
            "-l" | "--lookup" => {
                return Err("knockd option -l (reverse DNS lookups) is not supported: a lookup leaks the first knock's source to the DNS".into());
            }
            "-p" | "--pidfile" | "-g" | "--logfile" => {
                return Err(format!(
                    "knockd option {arg} is not supported: no pid file is written and logs go to stderr (the journal under systemd)"
                ));
            }
            other => out.push(other.to_string()),
        }
    }
    out.push("--knockd-config".into());
    out.push(config.unwrap_or_else(|| DEFAULT_CONF.to_string()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn knockd_flags_become_knock_server_flags() {
        let got = translate(&argv(&[
            "knock-server",
            "knockd",
            "-c",
            "/x.conf",
            "-i",
            "eth1",
            "-D",
            "-d",
        ]))
        .unwrap();
        assert_eq!(
            got,
            argv(&[
                "knock-server",
                "--knockd-interface",
                "eth1",
                "-vv",
                "--knockd-config",
                "/x.conf"
            ])
        );
        let got = translate(&argv(&["/usr/sbin/knockd", "-v", "-4"])).unwrap();
        assert_eq!(
            got,
            argv(&[
                "knock-server",
                "-v",
                "--bind",
                "0.0.0.0",
                "--knockd-config",
                DEFAULT_CONF
            ])
        );
    }

    #[test]
    fn only_knockd_names_ask_for_it() {
        assert!(wanted(&argv(&["/usr/sbin/knockd"])));
        assert!(wanted(&argv(&["knock-server", "knockd"])));
        assert!(!wanted(&argv(&["knock-server", "--config", "knockd"])));
    }

    #[test]
    fn unsupported_flags_are_refused_by_name() {
        assert!(
            translate(&argv(&["knockd", "-l"]))
                .unwrap_err()
                .contains("-l")
        );
        assert!(
            translate(&argv(&["knockd", "-p", "/run/k.pid"]))
                .unwrap_err()
                .contains("-p")
        );
        assert!(
            translate(&argv(&["knockd", "-c"]))
                .unwrap_err()
                .contains("needs a value")
        );
    }
}
