//! Issue 9, item 7: a flood of spoofed wrong knocks (each from a new
//! loopback source, each locking it out) leaves the server's log at a
//! fixed number of lines, and summary lines account for every lockout
//! that was logged at debug only. Bounded: 20 000 datagrams, paced.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::thread;
use std::time::Duration;

use crate::util::{Proc, ServerSpec, run};

/// Wrong knocks sent, one per source.
const FLOOD: u32 = 20_000;
/// Info lines the whole run may write: start-up, at most two budget
/// windows of lockout lines (20 each), summaries, one grant, shutdown.
const MAX_LINES: usize = 120;

/// The numeric value of `field=` in `line`.
fn field(line: &str, field: &str) -> Option<u64> {
    let at = line.find(&format!("{field}="))? + field.len() + 1;
    let digits: String = line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[test]
fn a_wrong_knock_flood_is_summarised_under_a_log_budget() {
    let spec = ServerSpec::new();
    let mut server = Proc::spawn_logging(spec.command(), "info");
    server.wait_for("knock server ready", Duration::from_secs(10));

    // The second port of the sequence as a first knock: a wrong knock.
    let to = SocketAddr::from(([127, 0, 0, 1], spec.sequence[1]));
    for i in 0..FLOOD {
        // 127.1.x.y, y from 1: a new source for each knock.
        let source = Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250 + 1) as u8);
        let socket = UdpSocket::bind((source, 0)).expect("bind a loopback source");
        socket.send_to(b"knock", to).expect("send a knock");
        if i % 1000 == 999 {
            thread::sleep(Duration::from_millis(10));
        }
    }
    // A real client after the flood: once it is granted, the flood before
    // it has been judged.
    let mut client = spec.client("127.0.0.2");
    client.args(["--check", "--wait", "0.2"]);
    run(client, Duration::from_secs(30)).expect_code(0);
    server.wait_for("access granted", Duration::from_secs(10));
    let status = server.signal_and_wait("TERM", Duration::from_secs(10));
    assert!(status.success(), "{}", server.logs());

    let logs = server.logs();
    let stderr: Vec<&str> = logs.lines().collect();
    let stopped = stderr
        .iter()
        .find(|l| l.contains("knock server stopped"))
        .unwrap_or_else(|| panic!("no stop line\n{logs}"));
    let lockouts = field(stopped, "lockouts").expect("lockouts in the stop line");
    assert!(
        lockouts > 1000,
        "too few wrong knocks reached the server ({lockouts}) to test a flood"
    );
    let at_info = server.count("wrong knock: locked out") as u64;
    let demoted: u64 = stderr
        .iter()
        .filter(|l| l.contains("log budget exceeded") && l.contains("lockout"))
        .map(|l| field(l, "demoted").expect("demoted in a summary line"))
        .sum();
    eprintln!(
        "flood: {lockouts} lockouts judged, {at_info} at info, {demoted} summarised, {} lines in all",
        stderr.len()
    );
    assert!(demoted > 0, "no summary of demoted lockouts\n{logs}");
    assert_eq!(
        at_info + demoted,
        lockouts,
        "every lockout is logged or counted in a summary\n{logs}"
    );
    assert!(
        stderr.len() <= MAX_LINES,
        "{} lines of output for {lockouts} lockouts\n{logs}",
        stderr.len()
    );
    assert_eq!(server.count("access granted"), 1, "{logs}");
}
