//! The iptables backend beside the admin's rules (issue 9 items 4, 6, 16):
//! a grant whose rule was removed by hand does not poison later grants;
//! only TCP to the protected port walks our chain; with
//! `--iptables-position last` the admin's own INPUT drop wins.

use std::time::{Duration, Instant};

use super::lab::{A, Backend, CLIENTS, HOST, Lab, Timing, V4, sleep_until};
use crate::util::{Reached, connect_from};

/// The rule of client A's IPv4 grant, as `iptables -D` takes it.
fn a_grant_rule() -> Vec<String> {
    format!(
        "-s {}/32 -p tcp -m tcp --dport 2222 -j CONNMARK --set-xmark 0x1000000/0x1000000",
        CLIENTS[A][0]
    )
    .split(' ')
    .map(String::from)
    .collect()
}

#[test]
fn iptables_a_grant_after_a_hand_deleted_rule_opens_again() {
    let t = "iptables_a_grant_after_a_hand_deleted_rule_opens_again";
    let timing = Timing {
        access: 2,
        lockout: 1,
    };
    let Some(mut lab) = Lab::start(t, "ipt-book", Backend::Iptables, timing) else {
        return;
    };
    lab.knock(&[(A, V4)]);
    let knocked = Instant::now();
    // Just before the grant ends, the admin removes its rule by hand: the
    // revoke at expiry finds nothing to delete.
    sleep_until(knocked + Duration::from_millis(1700));
    let mut args = vec!["iptables".to_string(), "-D".into(), "PORTKNOCK".into()];
    args.extend(a_grant_rule());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _ = crate::util::netns::output(
        &[&["ip", "netns", "exec", &lab.lan.host.name][..], &args[..]].concat(),
    );
    lab.wait_logged("access expired", 1, Duration::from_secs(5));
    lab.wait_rules_without(CLIENTS[A][0]);

    // A knocks again: a rule is inserted and A gets in.
    lab.knock(&[(A, V4)]);
    assert!(lab.lan.host.rules().contains(CLIENTS[A][0]));
    lab.read_flag((A, V4));
}

/// The packet count of INPUT's jump to our chain.
fn jump_packets(lab: &Lab) -> u64 {
    let save = lab.lan.host.sh(&["iptables-save", "-c", "-t", "filter"]);
    let line = save
        .lines()
        .find(|l| l.ends_with("-j PORTKNOCK") && l.contains("-A INPUT"))
        .unwrap_or_else(|| panic!("no jump:\n{save}"));
    let counters = line.trim_start_matches('[').split(']').next().unwrap();
    counters.split(':').next().unwrap().parse().unwrap()
}

#[test]
fn iptables_other_ports_do_not_walk_our_chain() {
    let t = "iptables_other_ports_do_not_walk_our_chain";
    let timing = Timing {
        access: 5,
        lockout: 1,
    };
    let Some(lab) = Lab::start(t, "ipt-jump", Backend::Iptables, timing) else {
        return;
    };
    let before = jump_packets(&lab);
    // TCP to an unrelated port (nothing listens: reset): not one packet.
    let other = std::net::SocketAddr::new(HOST[0].parse().unwrap(), 8080);
    for _ in 0..5 {
        let reached = lab.lan.clients[A].run(|| connect_from(CLIENTS[A][0], other));
        assert_eq!(reached, Reached::Reset);
    }
    assert_eq!(
        jump_packets(&lab),
        before,
        "unrelated traffic walked our chain"
    );
    // The knocks (UDP) do not either; the check and the read of the
    // protected port do.
    lab.knock(&[(A, V4)]);
    lab.read_flag((A, V4));
    assert!(
        jump_packets(&lab) > before,
        "the protected port walks the chain"
    );
}

#[test]
fn iptables_position_last_lets_the_admins_drop_win() {
    let t = "iptables_position_last_lets_the_admins_drop_win";
    let timing = Timing {
        access: 5,
        lockout: 1,
    };
    let Some(mut lab) = Lab::start(t, "ipt-last", Backend::Iptables, timing) else {
        return;
    };
    // The lab's server runs with the default (first); restart it with last.
    lab.stop_server();
    lab.lan.host.sh(&[
        "iptables",
        "-A",
        "INPUT",
        "-s",
        CLIENTS[A][0],
        "-p",
        "tcp",
        "--dport",
        "2222",
        "-j",
        "DROP",
    ]);
    // `--deny drop`: whether our rule or the admin's DROP denies A, its
    // check sees the port filtered either way.
    lab.start_server_with(&["--iptables-position", "last", "--deny", "drop"]);
    let mut knock = lab.client((A, V4));
    knock.args(["--timeout", "1"]);
    crate::util::run(knock, Duration::from_secs(30));
    lab.wait_logged("access granted", 1, Duration::from_secs(5));
    // Granted, but the admin's DROP comes first: A stays out.
    lab.expect_filtered(&[(A, V4)]);
}
