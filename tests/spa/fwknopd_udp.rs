//! Our `knock-client --spa` against Debian's real fwknopd 2.6.10 running as
//! a UDP server (`-U`), live: fwknopd runs inside a network namespace this
//! test creates, so the iptables rules it adds (chain FWKNOP_INPUT) exist
//! only there; the client sends over that namespace's loopback. fwknopd
//! gets a private config, access file, digest cache and run directory.
//!
//! Needs root (`ip netns`) and `fwknopd` (package fwknop-server): missing,
//! it fails under `CI` and prints a loud SKIPPED line otherwise.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use crate::util::netns::{Netns, output, privileged};
use crate::util::spa::{HMAC, KEY, have};
use crate::util::{Proc, bin, run};

const WAIT: Duration = Duration::from_secs(15);

fn in_ns(ns: &Netns, program: &str) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &ns.name, program]);
    cmd
}

#[test]
fn real_fwknopd_udp_server_opens_for_our_client() {
    let name = "real_fwknopd_udp_server_opens_for_our_client";
    if !privileged(name) || !have("fwknopd", name) {
        return;
    }
    let ns = Netns::new("fwknopd");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let iptables = portknock::firewall::system::find_tool("iptables").expect("iptables");
    std::fs::write(
        d.join("fwknopd.conf"),
        format!("FIREWALL_EXE {};\n", iptables.display()),
    )
    .unwrap();
    std::fs::write(
        d.join("access.conf"),
        format!(
            "SOURCE ANY\nKEY_BASE64 {KEY}\nHMAC_KEY_BASE64 {HMAC}\nOPEN_PORTS tcp/2222,tcp/8022\n\
             FW_ACCESS_TIMEOUT 30\nMAX_FW_TIMEOUT 120\n"
        ),
    )
    .unwrap();
    std::fs::write(
        d.join("fwknoprc"),
        format!(
            "[fwknopd]\nSPA_SERVER 127.0.0.1\nACCESS tcp/8022\nKEY_BASE64 {KEY}\n\
             HMAC_KEY_BASE64 {HMAC}\nUSE_HMAC Y\nFW_TIMEOUT 45\n"
        ),
    )
    .unwrap();
    for f in ["fwknopd.conf", "access.conf", "fwknoprc"] {
        std::fs::set_permissions(d.join(f), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let mut cmd = in_ns(&ns, "fwknopd");
    cmd.args(["-f", "-U", "-v"])
        .arg("-c")
        .arg(d.join("fwknopd.conf"))
        .arg("-a")
        .arg(d.join("access.conf"))
        .arg("-d")
        .arg(d.join("digest.cache"))
        .arg("-p")
        .arg(d.join("fwknopd.pid"))
        .arg("-r")
        .arg(d);
    let mut fwknopd = Proc::spawn(cmd);
    fwknopd.wait_for("Kicking off UDP server", WAIT);

    // Keys from flags, an explicit address to open.
    let mut client = in_ns(&ns, bin("knock-client").to_str().unwrap());
    client
        .args(["--spa", "--target", "127.0.0.1", "--access", "tcp/2222"])
        .args([
            "--allow-ip",
            "127.0.0.2",
            "--key-base64",
            KEY,
            "--hmac-key-base64",
            HMAC,
        ]);
    run(client, WAIT).expect_code(0);
    fwknopd.wait_for("Added access rule to FWKNOP_INPUT for 127.0.0.2", WAIT);

    // Keys, port and timeout from an rc stanza; the address from the route.
    let mut client = in_ns(&ns, bin("knock-client").to_str().unwrap());
    client
        .args(["--spa", "--rc-file"])
        .arg(d.join("fwknoprc"))
        .args(["--name", "fwknopd"]);
    let out = run(client, WAIT).expect_code(0);
    assert!(
        out.stdout
            .contains("for 127.0.0.1 (timeout: 45s requested)"),
        "{}",
        out.describe()
    );
    fwknopd.wait_for("Added access rule to FWKNOP_INPUT for 127.0.0.1", WAIT);
    assert!(fwknopd.printed("Client Timeout: 45"), "{}", fwknopd.logs());

    let rules = output(&[
        "ip",
        "netns",
        "exec",
        &ns.name,
        "iptables",
        "-S",
        "FWKNOP_INPUT",
    ]);
    let rules = String::from_utf8_lossy(&rules.stdout).into_owned();
    for want in [
        "-s 127.0.0.2/32 -p tcp -m tcp --dport 2222",
        "-s 127.0.0.1/32 -p tcp -m tcp --dport 8022",
    ] {
        assert!(
            rules.contains(want),
            "no rule {want}\n{rules}\n{}",
            fwknopd.logs()
        );
    }
    assert_eq!(rules.matches("-j ACCEPT").count(), 2, "{rules}");
}
