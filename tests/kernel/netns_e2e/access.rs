//! The life of a grant, for each backend: dropped before the knock, open
//! for the knocker only (IPv4 and IPv6), dropped again when the access
//! duration ends while a connection opened during it lives on; a wrong
//! sequence locks the knocker out until the lockout ends; SIGTERM leaves
//! the host's rules as they were.

use std::time::{Duration, Instant};

use super::lab::{A, B, Backend, CLIENTS, Lab, Timing, V4, V6, assert_alive, sleep_until};

/// Access duration of these tests: long enough for the checks made during
/// a grant, short enough to wait for its end.
const ACCESS: u64 = 4;
const LOCKOUT: u64 = 3;

fn grant_lifecycle(test: &str, tag: &str, backend: Backend) {
    let timing = Timing {
        access: ACCESS,
        lockout: LOCKOUT,
    };
    let Some(mut lab) = Lab::start(test, tag, backend, timing) else {
        return;
    };
    // Before any knock, the kernel drops everyone's SYN, both families.
    lab.expect_filtered(&[(A, V4), (A, V6), (B, V4), (B, V6)]);

    // A knocks over IPv4 and over IPv6: open for A's two addresses only.
    lab.knock(&[(A, V4), (A, V6)]);
    let granted = Instant::now();
    lab.read_flag((A, V4));
    lab.read_flag((A, V6));
    let mut kept = [lab.open_connection((A, V4)), lab.open_connection((A, V6))];
    lab.expect_filtered(&[(B, V4), (B, V6)]);
    assert!(
        granted.elapsed() < Duration::from_secs(ACCESS),
        "the checks during the grant outlasted it ({:?}): make ACCESS longer",
        granted.elapsed()
    );

    // The access duration ends: A is dropped again, but the connections A
    // opened during the grant still carry A's packets.
    lab.wait_logged("access expired", 2, Duration::from_secs(ACCESS + 5));
    lab.wait_rules_without(CLIENTS[A][0]);
    lab.wait_rules_without(CLIENTS[A][1]);
    lab.expect_filtered(&[(A, V4), (A, V6)]);
    for stream in &mut kept {
        assert_alive(stream);
    }

    lab.stop_server();
}

fn lockout(test: &str, tag: &str, backend: Backend) {
    let timing = Timing {
        access: ACCESS,
        lockout: LOCKOUT,
    };
    let Some(mut lab) = Lab::start(test, tag, backend, timing) else {
        return;
    };
    // A knocks a wrong sequence, then the right one during the lockout:
    // the port stays dropped (the client checks both and exits 0).
    let wrong = Instant::now();
    let mut cmd = lab.client((A, V4));
    cmd.args(["--test-wrong", "--wait", "0.2", "--timeout", "0.5"]);
    let out = crate::util::run(cmd, Duration::from_secs(20)).expect_code(0);
    // (The client's line names the target, not itself: "192.0.2.1 is
    // locked out"; the server's log names the client.)
    assert!(
        out.stdout.contains(&format!(
            "[+] As expected, port 2222 is still {}",
            lab.denied_word()
        )),
        "{}",
        out.describe()
    );
    let locked = format!("wrong knock: locked out ip={}", CLIENTS[A][0]);
    lab.wait_logged(&locked, 1, Duration::from_secs(2));
    assert_eq!(lab.server().count("access granted"), 0);
    assert!(
        wrong.elapsed() < Duration::from_secs(LOCKOUT),
        "the right sequence was sent after the lockout ended ({:?})",
        wrong.elapsed()
    );

    // A's lockout is A's alone: B knocks in meanwhile.
    lab.knock(&[(B, V4)]);
    lab.read_flag((B, V4));

    // Once the lockout has ended, the right sequence opens the port for A.
    sleep_until(wrong + Duration::from_millis(LOCKOUT * 1000 + 300));
    lab.knock(&[(A, V4)]);
    lab.read_flag((A, V4));
    assert_eq!(lab.server().count("access granted"), 2);

    lab.stop_server();
}

#[test]
fn iptables_grant_opens_for_the_knocker_only_and_ends_on_time_v4_v6() {
    grant_lifecycle(
        "iptables_grant_opens_for_the_knocker_only_and_ends_on_time_v4_v6",
        "ipt-life",
        Backend::Iptables,
    );
}

#[test]
fn nftables_grant_opens_for_the_knocker_only_and_ends_on_time_v4_v6() {
    grant_lifecycle(
        "nftables_grant_opens_for_the_knocker_only_and_ends_on_time_v4_v6",
        "nft-life",
        Backend::Nftables,
    );
}

#[test]
fn iptables_wrong_sequence_locks_out_until_the_lockout_ends() {
    lockout(
        "iptables_wrong_sequence_locks_out_until_the_lockout_ends",
        "ipt-lock",
        Backend::Iptables,
    );
}

#[test]
fn nftables_wrong_sequence_locks_out_until_the_lockout_ends() {
    lockout(
        "nftables_wrong_sequence_locks_out_until_the_lockout_ends",
        "nft-lock",
        Backend::Nftables,
    );
}
