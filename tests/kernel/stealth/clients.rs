//! The real clients through each capture source: Debian's `knock` with
//! its default TCP knocks, with `-u`, and with a mixed `1234:udp 5678:tcp
//! 9012:udp` sequence (with ACK, SYN+ACK and RST segments from `nmap` to
//! the TCP knock port in between, which must change nothing), and the
//! real `fwknop` client's SPA packet; IPv4 and IPv6.

use std::time::Duration;

use super::rig::{CLIENTS, HOST, MIXED, Mode, PROTECTED, Rig, SPA_PORT, TCP_DOOR, UDP_DOOR, have};
use crate::util::run;
use crate::util::spa::{HMAC, KEY};

const WAIT: Duration = Duration::from_secs(20);

fn knock(rig: &Rig, client: usize, family: usize, args: &[String]) {
    let mut cmd = rig.client(client, "knock");
    cmd.arg(if family == 0 { "-4" } else { "-6" })
        .arg(HOST[family])
        .args(args);
    run(cmd, WAIT).expect_code(0);
}

fn ports(ports: &[u16]) -> Vec<String> {
    ports.iter().map(u16::to_string).collect()
}

/// One TCP segment with `flags` (nmap's words) to `port`, from `client`.
fn segment(rig: &Rig, client: usize, family: usize, flags: &str, port: u16) {
    let mut cmd = rig.client(client, "nmap");
    cmd.args(["-n", "-Pn", "--max-retries", "0", "--scanflags", flags]);
    if family == 1 {
        cmd.arg("-6");
    }
    cmd.args(["-p", &port.to_string(), HOST[family]]);
    run(cmd, WAIT).expect_code(0);
}

fn clients_open(test: &str, tag: &str, mode: Mode) {
    if !have("knock", test) || !have("nmap", test) || !have("fwknop", test) {
        return;
    }
    let Some(mut rig) = Rig::start(test, tag, mode) else {
        return;
    };
    for (client, family) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
        assert!(!rig.served(client, family), "served before any knock");
    }
    // Debian knock's default: TCP SYNs (client 0, IPv4).
    knock(&rig, 0, 0, &ports(&TCP_DOOR));
    rig.wait_logged("access granted", 1);
    assert!(rig.served(0, 0), "{}", rig.server().logs());
    // -u: UDP (client 0, IPv6).
    let mut udp = vec!["-u".to_string()];
    udp.extend(ports(&UDP_DOOR));
    knock(&rig, 0, 1, &udp);
    rig.wait_logged("access granted", 2);
    assert!(rig.served(0, 1), "{}", rig.server().logs());
    // Mixed, with other TCP flags to the TCP knock port between correct
    // knocks (client 1, IPv6).
    knock(&rig, 1, 1, &[MIXED[0].to_string()]);
    for flags in ["ACK", "SYNACK", "RST"] {
        segment(&rig, 1, 1, flags, 5678);
    }
    knock(&rig, 1, 1, &[MIXED[1].to_string()]);
    for flags in ["ACK", "SYNACK", "RST"] {
        segment(&rig, 1, 1, flags, 5678);
    }
    knock(&rig, 1, 1, &[MIXED[2].to_string()]);
    rig.wait_logged("access granted", 3);
    assert!(rig.served(1, 1), "{}", rig.server().logs());
    assert_eq!(
        rig.server().count("verdict=\"lockout\""),
        0,
        "{}",
        rig.server().logs()
    );
    // The real fwknop client (client 1, IPv4: fwknop's format names IPv4).
    let home = tempfile::tempdir().unwrap();
    let mut fwknop = rig.client(1, "fwknop");
    fwknop
        .args(["--no-rc-file", "--no-save-args", "-A"])
        .arg(format!("tcp/{PROTECTED}"))
        .args(["-a", CLIENTS[1][0], "-D", HOST[0]])
        .args(["--key-base64-rijndael", KEY, "--key-base64-hmac", HMAC])
        .args(["--server-port", &SPA_PORT.to_string()])
        .env("HOME", home.path());
    run(fwknop, WAIT).expect_code(0);
    rig.wait_logged("spa packet accepted", 1);
    rig.wait_logged("access granted", 4);
    assert!(rig.served(1, 0), "{}", rig.server().logs());
}

#[test]
fn nftables_nflog_debian_knock_tcp_udp_mixed_and_fwknop_open_the_port() {
    clients_open(
        "kernel::stealth::clients::nftables",
        "sc-nft",
        Mode::Nftables,
    );
}

#[test]
fn iptables_nflog_debian_knock_tcp_udp_mixed_and_fwknop_open_the_port() {
    clients_open(
        "kernel::stealth::clients::iptables",
        "sc-ipt",
        Mode::Iptables,
    );
}

#[test]
fn userspace_packet_debian_knock_tcp_udp_mixed_and_fwknop_open_the_port() {
    clients_open("kernel::stealth::clients::packet", "sc-pkt", Mode::Packet);
}
