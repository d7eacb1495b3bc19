//! Door commands: run without a shell with `%IP%` replaced; failing,
//! hanging and chatty commands; the stop command owned by the daemon's
//! timer (after SIGKILL and a restart, and at shutdown); a repeated knock
//! does not run the start command twice.

use std::time::Duration;

use super::harness::{Setup, WAIT, have_knock, lines, wait_file};

const DOOR: &str = "[options]\n  UseSyslog\n\n[openit]\n  sequence = {seq}\n  seq_timeout = 5\n  start_command = /bin/sh -c 'echo %IP% >> {dir}/started'\n  cmd_timeout = {cmd}\n  stop_command = /usr/bin/touch {dir}/closed-%IP%\n";

fn door(setup: &Setup, cmd_timeout: u64) {
    let text = DOOR
        .replace("{seq}", &setup.seq(&[0, 1, 2]))
        .replace("{cmd}", &cmd_timeout.to_string());
    setup.conf(&text);
}

#[test]
fn a_knocked_door_runs_start_then_stop_after_cmd_timeout() {
    if !have_knock("knockd::a_knocked_door_runs_start_then_stop_after_cmd_timeout") {
        return;
    }
    let setup = Setup::new(3);
    door(&setup, 1);
    let mut server = setup.start(&[]);
    setup.knock(&[0, 1, 2]);
    assert!(
        wait_file(&setup.path("closed-127.0.0.1")),
        "{}",
        server.logs()
    );
    assert_eq!(
        std::fs::read_to_string(setup.path("started")).unwrap(),
        "127.0.0.1\n"
    );
    server.wait_for("127.0.0.1: openit: OPEN SESAME", WAIT);
    assert!(server.printed("openit: Stage 2"), "{}", server.logs());
}

#[test]
fn a_repeated_knock_while_open_does_not_run_the_start_command_again() {
    if !have_knock("knockd::a_repeated_knock_while_open_does_not_run_the_start_command_again") {
        return;
    }
    let setup = Setup::new(3);
    door(&setup, 3);
    let mut server = setup.start(&[]);
    setup.knock(&[0, 1, 2]);
    assert!(wait_file(&setup.path("started")));
    setup.knock(&[0, 1, 2]);
    server.wait_for("not started again", WAIT);
    assert!(
        wait_file(&setup.path("closed-127.0.0.1")),
        "{}",
        server.logs()
    );
    assert_eq!(lines(&setup.path("started")), 1, "{}", server.logs());
}

#[test]
fn the_stop_command_survives_sigkill_and_runs_after_a_restart() {
    if !have_knock("knockd::the_stop_command_survives_sigkill_and_runs_after_a_restart") {
        return;
    }
    let setup = Setup::new(3);
    door(&setup, 3);
    let mut server = setup.start(&[]);
    setup.knock(&[0, 1, 2]);
    assert!(wait_file(&setup.path("started")));
    server.wait_for("command succeeded", WAIT);
    server.signal_and_wait("KILL", WAIT);
    let pending = std::fs::read_to_string(setup.path("state/knockd-pending-stops.toml")).unwrap();
    assert!(pending.contains("closed-127.0.0.1"), "{pending}");
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        !setup.path("closed-127.0.0.1").exists(),
        "nothing left to run it"
    );
    let mut again = setup.start(&[]);
    assert!(
        wait_file(&setup.path("closed-127.0.0.1")),
        "{}",
        again.logs()
    );
    again.wait_for("pending from a previous run", WAIT);
    assert!(again.printed("overdue=true"), "{}", again.logs());
}

#[test]
fn shutdown_runs_the_pending_stops() {
    if !have_knock("knockd::shutdown_runs_the_pending_stops") {
        return;
    }
    let setup = Setup::new(3);
    door(&setup, 600);
    let mut server = setup.start(&[]);
    setup.knock(&[0, 1, 2]);
    server.wait_for("command succeeded", WAIT);
    assert!(!setup.path("closed-127.0.0.1").exists());
    let status = server.signal_and_wait("TERM", WAIT);
    assert!(status.success(), "{}", server.logs());
    assert!(setup.path("closed-127.0.0.1").exists(), "{}", server.logs());
    let pending = std::fs::read_to_string(setup.path("state/knockd-pending-stops.toml")).unwrap();
    assert!(!pending.contains("closed"), "{pending}");
}

#[test]
fn failing_hanging_and_chatty_commands_are_logged_and_bounded() {
    if !have_knock("knockd::failing_hanging_and_chatty_commands_are_logged_and_bounded") {
        return;
    }
    let setup = Setup::new(4);
    let text = format!(
        "[fails]\nsequence = {}\ncommand = /bin/ls /nonexistent-{{dir}}\n[hangs]\nsequence = {}\ncommand = /bin/sleep 600\n[chatty]\nsequence = {}\ncommand = /usr/bin/head -c 5000000 /dev/zero\n[missing]\nsequence = {}\ncommand = /nonexistent/program\n",
        setup.seq(&[0]),
        setup.seq(&[1]),
        setup.seq(&[2]),
        setup.seq(&[3]),
    );
    setup.conf(&text);
    let mut server = setup.start(&["--knockd-command-timeout", "1s"]);
    for i in 0..4 {
        setup.knock(&[i]);
    }
    server.wait_for("fails: command returned non-zero status code (2)", WAIT);
    server.wait_for(
        "hangs: command timed out: its process group was killed",
        WAIT,
    );
    server.wait_for("dropped_bytes=5000000", WAIT);
    server.wait_for("missing: command could not start", WAIT);
    assert!(
        server.printed("No such file or directory"),
        "stderr is logged\n{}",
        server.logs()
    );
    // Still serving after all that.
    setup.knock(&[0]);
    let start = std::time::Instant::now();
    while server.count("fails: OPEN SESAME") < 2 && start.elapsed() < WAIT {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(server.count("fails: OPEN SESAME"), 2, "{}", server.logs());
}

#[test]
fn knocks_sent_back_to_back_are_judged_in_the_order_they_arrived() {
    if !have_knock("knockd::knocks_sent_back_to_back_are_judged_in_the_order_they_arrived") {
        return;
    }
    // Debian's `knock` has no delay by default: three datagrams on three
    // sockets within microseconds, each sequence must still open.
    let setup = Setup::new(3);
    let text = format!(
        "[fast]\nsequence = {}\nseq_timeout = 5\ncommand = /bin/true\n",
        setup.seq(&[0, 1, 2])
    );
    setup.conf(&text);
    let server = setup.start(&[]);
    let rounds = 30;
    for _ in 0..rounds {
        let mut cmd = std::process::Command::new("knock");
        cmd.args(["-u", "127.0.0.1"]);
        cmd.args(setup.ports.iter().map(|p| p.to_string()));
        assert!(cmd.status().unwrap().success());
    }
    let start = std::time::Instant::now();
    while server.count("fast: OPEN SESAME") < rounds && start.elapsed() < WAIT {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        server.count("fast: OPEN SESAME"),
        rounds,
        "{}",
        server.logs()
    );
}

#[test]
fn sighup_is_logged_and_the_doors_keep_working() {
    if !have_knock("knockd::sighup_is_logged_and_the_doors_keep_working") {
        return;
    }
    let setup = Setup::new(3);
    door(&setup, 1);
    let mut server = setup.start(&[]);
    server.signal("HUP");
    server.wait_for("SIGHUP: a knockd.conf is not reloaded", WAIT);
    setup.knock(&[0, 1, 2]);
    assert!(
        wait_file(&setup.path("closed-127.0.0.1")),
        "{}",
        server.logs()
    );
}
