//! Issue 9, items 2 and 5, with iptables (where the daemon's own timer
//! ends a grant, so a dead expiry task would leave the door open): a
//! server whose stderr reader went away keeps judging knocks, ends grants
//! on time and tears down on SIGTERM; SIGHUP neither kills it nor skips
//! its teardown. Issue 10: SIGQUIT, SIGUSR1 and SIGUSR2 stop the server
//! through the same teardown as SIGTERM (nftables here, whose DROP on the
//! protected port would otherwise stay behind).

use std::time::{Duration, Instant};

use super::lab::{A, B, Backend, CLIENTS, Lab, Timing, V4, V6, sleep_until};
use crate::util::Proc;

#[test]
fn iptables_server_with_a_broken_log_pipe_still_grants_expires_and_tears_down() {
    let timing = Timing {
        access: 3,
        lockout: 3,
    };
    let Some(mut lab) = Lab::prepare(
        "iptables_server_with_a_broken_log_pipe_still_grants_expires_and_tears_down",
        "ipt-pipe",
        Backend::Iptables,
        timing,
    ) else {
        return;
    };
    // Debug logs: every knock writes a line into the broken pipe.
    let cmd = lab.server_command(&[]);
    let ready = Duration::from_secs(10);
    lab.server = Some(Proc::spawn_then_close_stderr(
        cmd,
        "knock server ready",
        ready,
    ));

    lab.knock(&[(A, V4), (A, V6)]);
    // Both grants were made before this instant, so end before this + 3 s:
    // the expiry task survived its "access expired" lines.
    let knocked = Instant::now();
    lab.read_flag((A, V4));
    sleep_until(knocked + Duration::from_millis(timing.access * 1000 + 300));
    lab.expect_filtered(&[(A, V4), (A, V6)]);
    lab.wait_rules_without(CLIENTS[A][0]);
    lab.wait_rules_without(CLIENTS[A][1]);

    // Still judging: a new grant, open at SIGTERM, is removed with the rest.
    lab.knock(&[(B, V4)]);
    let mut server = lab.server.take().unwrap();
    assert!(server.running(), "{}", server.logs());
    let status = server.signal_and_wait("TERM", Duration::from_secs(10));
    assert!(status.success(), "exit {status}\n{}", server.logs());
    assert_eq!(
        lab.lan.host.rules(),
        lab.rules_before,
        "rules after SIGTERM differ from those before the start"
    );
}

#[test]
fn iptables_server_survives_sighup_and_still_tears_down_on_sigterm() {
    let Some(mut lab) = Lab::start(
        "iptables_server_survives_sighup_and_still_tears_down_on_sigterm",
        "ipt-hup",
        Backend::Iptables,
        Timing {
            access: 30,
            lockout: 3,
        },
    ) else {
        return;
    };
    lab.server().signal("HUP");
    lab.wait_logged("nothing to re-read", 1, Duration::from_secs(5));
    lab.knock(&[(A, V4), (A, V6)]);
    lab.server().signal("HUP");
    lab.wait_logged("nothing to re-read", 2, Duration::from_secs(5));
    lab.read_flag((A, V6));
    // SIGTERM with the grants open: every rule goes, INPUT is as before.
    lab.stop_server();
}

#[test]
fn nftables_server_tears_down_on_sigquit_sigusr1_and_sigusr2() {
    let Some(mut lab) = Lab::start(
        "nftables_server_tears_down_on_sigquit_sigusr1_and_sigusr2",
        "nft-quit",
        Backend::Nftables,
        Timing {
            access: 30,
            lockout: 3,
        },
    ) else {
        return;
    };
    for (i, name) in ["QUIT", "USR1", "USR2"].into_iter().enumerate() {
        if i > 0 {
            lab.start_server();
        }
        // A grant open at the signal is removed with the rest.
        lab.knock(&[(A, V4)]);
        lab.read_flag((A, V4));
        let mut server = lab.server.take().unwrap();
        let status = server.signal_and_wait(name, Duration::from_secs(10));
        assert!(
            status.success(),
            "SIG{name}: exit {status}\n{}",
            server.logs()
        );
        assert!(
            server.printed(&format!("stop signal received (SIG{name})")),
            "{}",
            server.logs()
        );
        assert!(server.printed("knock server stopped"), "{}", server.logs());
        assert_eq!(
            lab.lan.host.rules(),
            lab.rules_before,
            "rules after SIG{name} differ from those before the start"
        );
    }
}
