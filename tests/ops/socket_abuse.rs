//! Oversized, malformed and idle control clients: each gets an error (or
//! is closed) and the daemon goes on answering others.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use super::control::{ask_json, server};

fn connect(path: &std::path::Path) -> (UnixStream, BufReader<UnixStream>) {
    let stream = UnixStream::connect(path).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let reader = BufReader::new(stream.try_clone().unwrap());
    (stream, reader)
}

#[test]
fn malformed_requests_get_an_error_and_the_connection_goes_on() {
    let (_server, _spec, _dir, socket) = server(&[]);
    let (mut stream, mut reader) = connect(&socket);
    let mut line = String::new();
    for bad in [
        "not json",
        r#"{"v":9,"cmd":"status"}"#,
        r#"{"v":1,"cmd":"grant","ip":"nope"}"#,
        "\u{0}\u{1}\u{2}",
    ] {
        writeln!(stream, "{bad}").unwrap();
        line.clear();
        reader.read_line(&mut line).unwrap();
        assert!(line.contains(r#""ok":false"#), "{bad}: {line}");
    }
    stream.write_all(b"\xff\xfe\n").unwrap();
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert!(line.contains("not UTF-8"), "{line}");
    writeln!(stream, r#"{{"v":1,"cmd":"status"}}"#).unwrap();
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert!(line.contains(r#""ok":true"#), "{line}");
}

#[test]
fn an_oversized_request_gets_an_error_and_is_closed_and_the_daemon_goes_on() {
    let (server, _spec, _dir, socket) = server(&[]);
    let (mut stream, mut reader) = connect(&socket);
    // 100 KiB without a newline: more than the 64 KiB bound.
    let big = vec![b'a'; 100 * 1024];
    let _ = stream.write_all(&big);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.contains("request longer than 65536 bytes"), "{line}");
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
    assert!(rest.is_empty(), "closed after the error");
    assert!(server.printed("request too long"), "{}", server.logs());
    assert_eq!(ask_json(&socket, &["status"])["ok"], true);
}

#[test]
fn idle_and_surplus_clients_do_not_stall_the_daemon() {
    let (_server, _spec, _dir, socket) = server(&[]);
    // Sixteen silent clients hold every slot.
    let idle: Vec<UnixStream> = (0..16)
        .map(|_| UnixStream::connect(&socket).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    // The seventeenth is told to come back, at once.
    let (_stream, mut reader) = connect(&socket);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.contains("too many control connections"), "{line}");
    // The silent ones are closed after the idle timeout; then a client
    // is served again.
    let mut first = idle.into_iter().next().unwrap();
    first
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut buf = [0u8; 16];
    let read = loop {
        match first.read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => break other,
        }
    };
    assert_eq!(read.unwrap(), 0, "idle client closed");
    assert_eq!(ask_json(&socket, &["status"])["ok"], true);
}
