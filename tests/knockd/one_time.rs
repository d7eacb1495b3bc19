//! One-time sequences: each line opens the door once, also across a
//! restart and after a SIGKILL right after a success; used up, the door is
//! disabled with a log line.

use super::harness::{Setup, WAIT, have_knock, lines, wait_file};

fn one_time(setup: &Setup) {
    let file = setup.path("seqs");
    std::fs::write(
        &file,
        format!(
            "# lines\n {}\n {}\n",
            setup.seq(&[0, 1]),
            setup.seq(&[2, 3])
        ),
    )
    .unwrap();
    setup.conf("[once]\none_time_sequences = {dir}/seqs\nseq_timeout = 5\ncommand = /bin/sh -c 'echo %IP% >> {dir}/opened'\n");
}

#[test]
fn each_line_opens_once_across_restarts_then_the_door_is_disabled() {
    if !have_knock("knockd::each_line_opens_once_across_restarts_then_the_door_is_disabled") {
        return;
    }
    let setup = Setup::new(4);
    one_time(&setup);
    let mut server = setup.start(&[]);
    setup.knock(&[0, 1]);
    assert!(wait_file(&setup.path("opened")));
    setup.knock(&[0, 1]);
    setup.knock(&[2, 3]);
    server.wait_for("used up: door disabled", WAIT);
    assert_eq!(
        server.logs().matches("OPEN SESAME").count(),
        2,
        "{}",
        server.logs()
    );
    let text = std::fs::read_to_string(setup.path("seqs")).unwrap();
    assert_eq!(
        text,
        format!(
            "# lines\n#{}\n#{}\n",
            setup.seq(&[0, 1]),
            setup.seq(&[2, 3])
        )
    );
    server.signal_and_wait("TERM", WAIT);
    let mut again = setup.start(&[]);
    again.wait_for("door disabled", WAIT);
    setup.knock(&[0, 1]);
    setup.knock(&[2, 3]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(!again.printed("OPEN SESAME"), "{}", again.logs());
    assert_eq!(lines(&setup.path("opened")), 2);
}

#[test]
fn a_sigkill_right_after_a_success_does_not_make_the_line_reusable() {
    if !have_knock("knockd::a_sigkill_right_after_a_success_does_not_make_the_line_reusable") {
        return;
    }
    let setup = Setup::new(4);
    one_time(&setup);
    let mut server = setup.start(&[]);
    setup.knock(&[0, 1]);
    server.wait_for("OPEN SESAME", WAIT);
    server.signal_and_wait("KILL", WAIT);
    let mut again = setup.start(&[]);
    setup.knock(&[0, 1]);
    setup.knock(&[2, 3]);
    again.wait_for("OPEN SESAME", WAIT);
    assert!(wait_file(&setup.path("opened")));
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        again.logs().matches("OPEN SESAME").count(),
        1,
        "{}",
        again.logs()
    );
    assert!(
        again.printed("used up"),
        "the second line was the one used\n{}",
        again.logs()
    );
}
