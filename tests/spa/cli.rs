//! The SPA flags of both binaries: bad values exit 2 with one line naming
//! the value and nothing started; `--keygen` prints keys that both of the
//! library's parsers read back.

use std::process::Command;
use std::time::Duration;

use portknock::spa::{AccessConfOptions, parse_access_conf, parse_fwknoprc};

use crate::util::spa::{HMAC, KEY};
use crate::util::{bin, free_port, run};

const T: Duration = Duration::from_secs(20);

fn server(args: &[&str]) -> Command {
    let mut cmd = Command::new(bin("knock-server"));
    cmd.args(["--firewall", "userspace", "--bind", "127.0.0.1"])
        .args(["--protected-port", &free_port().to_string()])
        .args(["--sequence", &free_port().to_string()])
        .args(args);
    cmd
}

#[test]
fn bad_server_spa_flags_exit_2_naming_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("access.conf");
    std::fs::write(
        &good,
        format!("SOURCE ANY\nKEY_BASE64 {KEY}\nHMAC_KEY_BASE64 {HMAC}\n"),
    )
    .unwrap();
    let no_hmac = dir.path().join("nohmac.conf");
    std::fs::write(&no_hmac, format!("SOURCE ANY\nKEY_BASE64 {KEY}\n")).unwrap();
    let unknown = dir.path().join("unknown.conf");
    std::fs::write(
        &unknown,
        format!("SOURCE ANY\nKEY_BASE64 {KEY}\nHMAC_KEY_BASE64 {HMAC}\nFROBNICATE Y\n"),
    )
    .unwrap();
    let good = good.display().to_string();
    let cache = dir.path().join("replay").display().to_string();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "").unwrap();
    let bad_cache = blocker.join("replay").display().to_string();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--spa".into()], "--spa-access"),
        (vec!["--no-sequence".into()], "--spa"),
        (vec!["--spa-port".into(), "99".into()], "--spa"),
        (
            sv(&["--spa", "--spa-access", &good, "--spa-port", "0"]),
            "'0'",
        ),
        (
            sv(&["--spa", "--spa-access", &good, "--spa-port", "x"]),
            "'x'",
        ),
        (
            sv(&["--spa", "--spa-access", &good, "--spa-max-age", "0"]),
            "--spa-max-age '0'",
        ),
        (
            sv(&["--spa", "--spa-access", &good, "--spa-max-age", "1.5"]),
            "'1.5'",
        ),
        (
            sv(&["--spa", "--spa-access", "/nonexistent/access.conf"]),
            "/nonexistent/access.conf",
        ),
        (
            vec![
                "--spa".into(),
                "--spa-access".into(),
                no_hmac.display().to_string(),
                "--spa-replay-cache".into(),
                cache.clone(),
            ],
            "HMAC",
        ),
        (
            vec![
                "--spa".into(),
                "--spa-access".into(),
                unknown.display().to_string(),
                "--spa-replay-cache".into(),
                cache.clone(),
            ],
            "FROBNICATE",
        ),
        (
            sv(&[
                "--spa",
                "--spa-access",
                &good,
                "--spa-replay-cache",
                &bad_cache,
            ]),
            "--spa-replay-cache",
        ),
    ];
    for (args, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(server(&args), T).expect_code(2);
        assert!(out.stderr.contains(needle), "{needle}\n{}", out.describe());
        assert!(
            !out.stderr.contains("knock server ready"),
            "{}",
            out.describe()
        );
        assert!(
            !out.stderr.contains(KEY) && !out.stderr.contains(HMAC),
            "{}",
            out.describe()
        );
    }
    // The spa port may not be a knock port.
    let port = free_port().to_string();
    let mut cmd = Command::new(bin("knock-server"));
    cmd.args([
        "--firewall",
        "userspace",
        "--bind",
        "127.0.0.1",
        "--sequence",
        &port,
    ])
    .args([
        "--spa",
        "--spa-access",
        &good,
        "--spa-port",
        &port,
        "--spa-replay-cache",
        &cache,
    ]);
    let out = run(cmd, T).expect_code(2);
    assert!(
        out.stderr.contains(&format!("--spa-port {port}")),
        "{}",
        out.describe()
    );
}

fn sv(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

#[test]
fn bad_client_spa_flags_exit_2_naming_the_value() {
    let keys = ["--key-base64", KEY, "--hmac-key-base64", HMAC];
    let cases: &[(&[&str], &str)] = &[
        (&["--access", "tcp/0"], "tcp/0"),
        (&["--access", "sctp/22"], "sctp/22"),
        (&["--access", "tcp/22", "--allow-ip", "::1"], "'::1'"),
        (&["--access", "tcp/22", "--allow-ip", "nope"], "'nope'"),
        (
            &["--access", "tcp/22", "--timeout-request", "70000"],
            "'70000'",
        ),
        (&["--access", "tcp/22", "--timeout-request", "-1"], "'-1'"),
        (&["--access", "tcp/22", "--server-port", "0"], "'0'"),
        (&["--access", "tcp/22", "--hmac-digest", "crc32"], "crc32"),
        (
            &["--access", "udp/53", "--check"],
            "--check needs a tcp port",
        ),
    ];
    for (args, needle) in cases {
        let mut cmd = Command::new(bin("knock-client"));
        cmd.args(["--spa", "--target", "127.0.0.1"])
            .args(keys)
            .args(*args);
        let out = run(cmd, T).expect_code(2);
        assert!(out.stderr.contains(needle), "{needle}\n{}", out.describe());
        assert!(
            !out.stdout.contains("SPA packet sent"),
            "{}",
            out.describe()
        );
    }
    let no_keys: &[(&[&str], &str)] = &[
        (&["--access", "tcp/22"], "no SPA keys"),
        (
            &["--access", "tcp/22", "--key-base64", KEY],
            "--hmac-key-base64",
        ),
        (
            &[
                "--access",
                "tcp/22",
                "--key-base64",
                "!!",
                "--hmac-key-base64",
                HMAC,
            ],
            "--key-base64",
        ),
        (
            &["--access", "tcp/22", "--rc-file", "/nonexistent/rc"],
            "/nonexistent/rc",
        ),
        (
            &["--key-base64", KEY, "--hmac-key-base64", HMAC],
            "no ports to open",
        ),
    ];
    for (args, needle) in no_keys {
        let mut cmd = Command::new(bin("knock-client"));
        cmd.args(["--spa", "--target", "127.0.0.1"]).args(*args);
        let out = run(cmd, T).expect_code(2);
        assert!(out.stderr.contains(needle), "{needle}\n{}", out.describe());
    }
    // SPA flags without --spa are refused by the parser.
    let mut cmd = Command::new(bin("knock-client"));
    cmd.args(["--target", "127.0.0.1", "--access", "tcp/22"]);
    run(cmd, T).expect_code(2);
}

#[test]
fn keygen_output_parses_back_on_both_sides() {
    let mut cmd = Command::new(bin("knock-client"));
    cmd.arg("--keygen");
    let out = run(cmd, T).expect_code(0);
    let (client, server) = out
        .stdout
        .split_once("# server:")
        .unwrap_or_else(|| panic!("no server part\n{}", out.describe()));
    let rc = parse_fwknoprc(&format!("[srv]\nSPA_SERVER 127.0.0.1\n{client}")).unwrap();
    let rc_keys = rc.stanza("srv").unwrap().keys.unwrap();
    let server = server.split_once('\n').map_or("", |(_, rest)| rest);
    let conf = parse_access_conf(server, AccessConfOptions::default()).unwrap();
    let conf_keys = &conf.stanzas[0].keys;
    assert_eq!(rc_keys.key.expose(), conf_keys.key.expose());
    assert_eq!(
        rc_keys.hmac_key.as_ref().unwrap().expose(),
        conf_keys.hmac_key.as_ref().unwrap().expose()
    );
    assert_eq!(conf_keys.key.len(), 32);
    assert_eq!(conf_keys.hmac_key.as_ref().unwrap().len(), 64);
    let again = run(
        {
            let mut c = Command::new(bin("knock-client"));
            c.arg("--keygen");
            c
        },
        T,
    )
    .expect_code(0);
    assert_ne!(
        again.stdout, out.stdout,
        "two --keygen runs printed the same keys"
    );
    // --keygen takes no other flag.
    let mut cmd = Command::new(bin("knock-client"));
    cmd.args(["--keygen", "--target", "127.0.0.1"]);
    run(cmd, T).expect_code(2);
}
