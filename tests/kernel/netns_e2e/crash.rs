//! A server that dies without cleaning up: nftables leaves the ending of a
//! grant to the kernel, so access still ends on time; iptables leaves a
//! stale rule, which the next start removes. SIGTERM, in both cases,
//! leaves the host's rules exactly as they were before the first start.

use std::time::{Duration, Instant};

use super::lab::{A, B, Backend, CLIENTS, Lab, Timing, V4, V6, sleep_until};

#[test]
fn nftables_access_ends_on_time_after_the_server_is_sigkilled() {
    let timing = Timing {
        access: 3,
        lockout: 3,
    };
    let Some(mut lab) = Lab::start(
        "nftables_access_ends_on_time_after_the_server_is_sigkilled",
        "nft-kill",
        Backend::Nftables,
        timing,
    ) else {
        return;
    };
    lab.knock(&[(A, V4), (A, V6)]);
    // Both grants were made before this instant, so end before this + 3 s.
    let knocked = Instant::now();
    lab.kill_server();

    // Nobody is left to revoke: the kernel holds the grant, then ends it.
    lab.read_flag((A, V4));
    lab.read_flag((A, V6));
    assert!(lab.lan.host.rules().contains("table inet portknock"));
    sleep_until(knocked + Duration::from_millis(timing.access * 1000 + 300));
    lab.expect_filtered(&[(A, V4), (A, V6)]);
    let rules = lab.lan.host.rules();
    assert!(
        rules.contains("table inet portknock") && !rules.contains(CLIENTS[A][0]),
        "the table stays (nobody tore it down), the grant is gone:\n{rules}"
    );
}

#[test]
fn iptables_restart_removes_a_stale_grant_and_sigterm_restores_input() {
    let timing = Timing {
        access: 30,
        lockout: 3,
    };
    let Some(mut lab) = Lab::start(
        "iptables_restart_removes_a_stale_grant_and_sigterm_restores_input",
        "ipt-kill",
        Backend::Iptables,
        timing,
    ) else {
        return;
    };
    lab.knock(&[(A, V4), (A, V6)]);
    lab.kill_server();

    // The SIGKILLed server left its grants behind: A still gets in.
    let rules = lab.lan.host.rules();
    assert!(
        rules.contains(CLIENTS[A][0]) && rules.contains(CLIENTS[A][1]),
        "{rules}"
    );
    lab.read_flag((A, V4));

    // The next start removes the leftovers: A is dropped again.
    lab.start_server();
    let rules = lab.lan.host.rules();
    assert!(
        !rules.contains(CLIENTS[A][0]) && !rules.contains(CLIENTS[A][1]),
        "stale grants survived the restart:\n{rules}"
    );
    lab.expect_filtered(&[(A, V4), (A, V6)]);

    // The new server works, and SIGTERM (with a grant open) removes every
    // rule it added and nothing else: INPUT is back as it was.
    lab.knock(&[(B, V4), (B, V6)]);
    lab.stop_server();
}
