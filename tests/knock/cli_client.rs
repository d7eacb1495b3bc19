//! Binary-level tests of `knock-client` and `protected-service`: flags,
//! exit codes, messages, and the check against loopback listeners.
//!
//! Knocks go to UDP sockets this test binds on 127.0.0.1 port 0, never to the
//! default ports, so a knock-server another test runs is never disturbed.

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::process::{Command, Output};
use std::thread;
use std::time::Duration;

const CLIENT: &str = env!("CARGO_BIN_EXE_knock-client");
const SERVICE: &str = env!("CARGO_BIN_EXE_protected-service");

fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("FLAG")
        .output()
        .expect("the binary runs")
}

fn describe(args: &[&str], out: &Output) -> String {
    format!(
        "args: {args:?}\nstatus: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs and asserts the exit code and that stderr mentions `needle`.
fn assert_fails(bin: &str, args: &[&str], code: i32, needle: &str) {
    let out = run(bin, args);
    let text = describe(args, &out);
    assert_eq!(out.status.code(), Some(code), "{text}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(needle), "{text}");
    assert!(
        out.stdout.is_empty(),
        "nothing may start on bad input\n{text}"
    );
}

/// Two UDP sockets to knock on, kept alive by the caller; `"p1,p2"`.
fn knock_ports() -> (Vec<UdpSocket>, String) {
    let sockets: Vec<UdpSocket> = (0..2)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let list = sockets
        .iter()
        .map(|s| s.local_addr().unwrap().port().to_string())
        .collect::<Vec<_>>()
        .join(",");
    (sockets, list)
}

#[test]
fn bad_client_input_exits_2_naming_the_value() {
    let cases: &[(&[&str], &str)] = &[
        (&[], "--target"),
        (
            &["--target", "127.0.0.1", "--sequence", ""],
            "invalid sequence ''",
        ),
        (&["--target", "127.0.0.1", "--sequence", "1,0"], "'0'"),
        (&["--target", "127.0.0.1", "--sequence", "1,abc"], "'abc'"),
        (
            &["--target", "127.0.0.1", "--protected-port", "65536"],
            "'65536'",
        ),
        (&["--target", "127.0.0.1", "--protected-port", "0"], "'0'"),
        (&["--target", "127.0.0.1", "--sequence", "1,2222"], "2222"),
        (&["--target", "127.0.0.1", "--delay", "-1"], "'-1'"),
        (&["--target", "127.0.0.1", "--timeout", "0"], "'0'"),
        (&["--target", "127.0.0.1", "--wait", "soon"], "'soon'"),
        (&["--target", "not a host!"], "'not a host!'"),
        (
            &["--target", "::1", "--source", "127.0.0.2"],
            "--source 127.0.0.2",
        ),
        (
            &["--target", "127.0.0.1", "--source", "192.0.2.1"],
            "192.0.2.1",
        ),
        (
            &["--target", "127.0.0.1", "--source", "nowhere"],
            "'nowhere'",
        ),
        (&["--target", "127.0.0.1", "--bogus"], "--bogus"),
    ];
    for (args, needle) in cases {
        assert_fails(CLIENT, args, 2, needle);
    }
}

#[test]
fn client_help_explains_each_flag_with_its_default() {
    let out = run(CLIENT, &["--help"]);
    assert!(out.status.success(), "{}", describe(&["--help"], &out));
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--target",
        "--sequence",
        "[default: 1234,5678,9012]",
        "--protected-port",
        "[default: 2222]",
        "--delay",
        "[default: 0.5]",
        "--check",
        "--wait",
        "[default: 1]",
        "--timeout",
        "[default: 2]",
        "--test-wrong",
        "--source",
        "--quiet",
    ] {
        assert!(help.contains(needle), "missing {needle} in:\n{help}");
    }
}

#[test]
fn check_succeeds_against_an_open_port_and_prints_the_seed_lines() {
    let (_sockets, seq) = knock_ports();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let _ = stream.write_all(b"Welcome\n");
        let mut rest = Vec::new();
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = stream.read_to_end(&mut rest);
    });
    let args = [
        "--target",
        "127.0.0.1",
        "--sequence",
        &seq,
        "--protected-port",
        &port,
        "--delay",
        "0",
        "--wait",
        "0",
        "--check",
    ];
    let out = run(CLIENT, &args);
    let text = describe(&args, &out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let (p1, p2) = seq.split_once(',').unwrap();
    for line in [
        "Port Knocking Client".to_string(),
        "[*] Sending knock sequence to 127.0.0.1".to_string(),
        format!("[*] Sequence: {p1} → {p2}"),
        format!("[1/2] Knocking...   → Knocked on port {p1}"),
        format!("[2/2] Knocking...   → Knocked on port {p2}"),
        "[+] Knock sequence completed".to_string(),
        format!("[+] SUCCESS! Port {port} is now accessible"),
    ] {
        assert!(stdout.contains(&line), "missing {line}\n{text}");
    }
    server.join().unwrap();
}

#[test]
fn check_fails_with_exit_1_when_the_port_is_closed() {
    let (_sockets, seq) = knock_ports();
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port().to_string()
    };
    let args = [
        "--target",
        "127.0.0.1",
        "--sequence",
        &seq,
        "--protected-port",
        &port,
        "--delay",
        "0",
        "--wait",
        "0",
        "--check",
    ];
    let out = run(CLIENT, &args);
    let text = describe(&args, &out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("FAILED: port {port} is closed")),
        "{text}"
    );
    // Quiet: no progress, but the failure still says why, on stderr.
    let mut quiet = args.to_vec();
    quiet.push("--quiet");
    let out = run(CLIENT, &quiet);
    let text = describe(&quiet, &out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(out.stdout.is_empty(), "{text}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("FAILED"),
        "{text}"
    );
}

#[test]
fn knocks_without_check_exit_0_and_arrive_from_the_source() {
    let (sockets, seq) = knock_ports();
    let args = [
        "--target",
        "127.0.0.1",
        "--sequence",
        &seq,
        "--delay",
        "0",
        "--source",
        "127.0.0.5",
        "--quiet",
    ];
    let out = run(CLIENT, &args);
    let text = describe(&args, &out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(out.stdout.is_empty(), "{text}");
    let mut buf = [0u8; 64];
    for socket in &sockets {
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let (n, from) = socket.recv_from(&mut buf).unwrap();
        assert!(n > 0);
        assert_eq!(from.ip().to_string(), "127.0.0.5", "{text}");
    }
}

#[test]
fn bad_service_input_exits_2_naming_the_value() {
    let cases: &[(&[&str], &str)] = &[
        (&["--port", "0"], "'0'"),
        (&["--port", "70000"], "'70000'"),
        (&["--close-after", "-1"], "'-1'"),
        (&["--close-after", "0"], "'0'"),
        (&["--max-connections", "0"], "'0'"),
        (&["--bind", "300.1.1.1"], "'300.1.1.1'"),
    ];
    for (args, needle) in cases {
        assert_fails(SERVICE, args, 2, needle);
    }
}

#[test]
fn service_help_explains_each_flag_with_its_default() {
    let out = run(SERVICE, &["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--port",
        "[default: 2222]",
        "--bind",
        "0.0.0.0 and ::",
        "--flag",
        "[env: FLAG]",
        "FLAG{port_knock1ng_m4st3r_2024}",
        "--close-after",
        "[default: 3]",
        "--max-connections",
        "[default: 1024]",
    ] {
        assert!(help.contains(needle), "missing {needle} in:\n{help}");
    }
}
