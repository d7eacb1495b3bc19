//! The gate's limits with `--upstream` (issue 9 item 9): one granted client
//! cannot take every slot, and a silent proxied connection is closed. The
//! real knock-server with the userspace gate on loopback, proxying to an
//! echo service that the test runs itself.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::util::{Proc, ServerSpec, loopback, run};

/// Bound on connections the echo service takes in one test.
const UPSTREAM_MAX_ACCEPTS: usize = 64;
/// Bound on the echo service's life.
const UPSTREAM_LIFETIME: Duration = Duration::from_secs(120);

/// An echo service on 127.0.0.1: greets each connection with `hello\n`,
/// then echoes; counts the connections whose peer (the gate) closed.
struct Echo {
    addr: SocketAddr,
    closed: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Echo {
    fn start() -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let closed = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (closed2, stop2) = (closed.clone(), stop.clone());
        thread::spawn(move || {
            let started = Instant::now();
            let mut accepted = 0;
            while !stop2.load(Ordering::Relaxed)
                && accepted < UPSTREAM_MAX_ACCEPTS
                && started.elapsed() < UPSTREAM_LIFETIME
            {
                match listener.accept() {
                    Ok((stream, _)) => {
                        accepted += 1;
                        let closed = closed2.clone();
                        thread::spawn(move || echo(stream, &closed));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Echo { addr, closed, stop }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Greets, then echoes until the peer closes (or the lifetime ends).
fn echo(mut stream: TcpStream, closed: &AtomicUsize) {
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(UPSTREAM_LIFETIME)).unwrap();
    if stream.write_all(b"hello\n").is_err() {
        return;
    }
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) if stream.write_all(&buf[..n]).is_ok() => {}
            _ => break,
        }
    }
    closed.fetch_add(1, Ordering::Relaxed);
}

/// Connects from `source` to the gate; the stream if the echo service's
/// greeting came through, `None` if the gate reset or closed it.
fn open_from(source: &str, addr: SocketAddr) -> Option<TcpStream> {
    let source: IpAddr = source.parse().unwrap();
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .unwrap();
    socket.bind(&SocketAddr::new(source, 0).into()).unwrap();
    socket
        .connect_timeout(&addr.into(), Duration::from_secs(2))
        .ok()?;
    let mut stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut greeting = [0u8; 6];
    stream.read_exact(&mut greeting).ok()?;
    assert_eq!(&greeting, b"hello\n");
    Some(stream)
}

/// Starts a server proxying to `echo` with `extra` flags, and grants each
/// of `sources`.
fn start_granted(echo: &Echo, extra: &[&str], sources: &[&str]) -> (ServerSpec, Proc) {
    let mut spec = ServerSpec::new();
    spec.extra = vec!["--upstream".into(), echo.addr.to_string()];
    spec.extra.extend(extra.iter().map(|s| s.to_string()));
    let server = spec.start();
    for source in sources {
        run(spec.client(source), Duration::from_secs(20)).expect_code(0);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.count("access granted") < sources.len() {
        assert!(
            Instant::now() < deadline,
            "grants missing\n{}",
            server.logs()
        );
        thread::sleep(Duration::from_millis(20));
    }
    (spec, server)
}

/// Lines at warn level that contain `needle`.
fn warnings(server: &Proc, needle: &str) -> usize {
    server
        .logs()
        .lines()
        .filter(|l| l.contains(" WARN ") && l.contains(needle))
        .count()
}

#[test]
fn a_granted_client_at_its_cap_cannot_take_more_and_another_is_still_served() {
    let echo = Echo::start();
    let (a, b) = ("127.0.0.21", "127.0.0.22");
    let flags = ["--max-connections-per-ip", "4", "--max-connections", "8"];
    let (spec, server) = start_granted(&echo, &flags, &[a, b]);
    let gate = loopback(spec.protected_port);

    let mut held: Vec<TcpStream> = (0..4)
        .map(|i| open_from(a, gate).unwrap_or_else(|| panic!("connection {i} refused")))
        .collect();
    // A flood of attempts past the cap: every one refused, few lines logged.
    for attempt in 0..20 {
        assert!(
            open_from(a, gate).is_none(),
            "attempt {attempt} past the cap was served\n{}",
            server.logs()
        );
    }
    let other = open_from(b, gate);
    assert!(
        other.is_some(),
        "second client locked out\n{}",
        server.logs()
    );
    let logged = warnings(&server, "connection cap reached");
    assert!(
        (1..=5).contains(&logged),
        "{logged} warnings\n{}",
        server.logs()
    );

    // A closed connection gives its slot back.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    let again = loop {
        if let Some(stream) = open_from(a, gate) {
            break stream;
        }
        assert!(
            Instant::now() < deadline,
            "slot not returned\n{}",
            server.logs()
        );
        thread::sleep(Duration::from_millis(50));
    };
    drop((again, held, other));
}

#[test]
fn an_idle_proxied_connection_is_closed_while_an_active_one_stays() {
    let echo = Echo::start();
    let source = "127.0.0.23";
    let flags = ["--upstream-idle-timeout", "1s"];
    let (spec, server) = start_granted(&echo, &flags, &[source]);
    let gate = loopback(spec.protected_port);
    let mut idle = open_from(source, gate).expect("idle connection served");
    let mut active = open_from(source, gate).expect("active connection served");

    // Three idle periods of traffic on one connection, none on the other.
    let mut buf = [0u8; 16];
    for round in 0..10 {
        thread::sleep(Duration::from_millis(300));
        active.write_all(b"x").unwrap();
        let n = active.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 1, "active connection closed in round {round}");
    }
    // The idle one was closed: EOF (or a reset), well within the wait.
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    match idle.read(&mut buf) {
        Ok(0) => {}
        Err(err) if err.kind() != std::io::ErrorKind::WouldBlock => {}
        other => panic!("idle connection still open: {other:?}\n{}", server.logs()),
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while echo.closed.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "upstream side not closed");
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(echo.closed.load(Ordering::Relaxed), 1);
    assert!(
        server.printed("idle proxied connection closed"),
        "{}",
        server.logs()
    );

    active.write_all(b"y").unwrap();
    assert_eq!(
        active.read(&mut buf).unwrap(),
        1,
        "active connection closed"
    );
}

#[test]
fn bad_gate_limits_are_refused_with_exit_2_naming_the_value() {
    let cases: [(&[&str], &str); 5] = [
        (
            &["--max-connections-per-ip", "0"],
            "invalid --max-connections-per-ip '0'",
        ),
        (&["--max-connections-per-ip", "many"], "'many'"),
        (&["--max-connections-per-ip", "1000001"], "1 to 1000000"),
        (&["--upstream-idle-timeout", "0"], "invalid duration '0'"),
        (&["--upstream-idle-timeout", "25h"], "'25h'"),
    ];
    for (args, needle) in cases {
        let mut cmd = std::process::Command::new(crate::util::bin("knock-server"));
        cmd.args(["--bind", "127.0.0.1", "--firewall", "userspace"])
            .args(args);
        let out = run(cmd, Duration::from_secs(10)).expect_code(2);
        assert!(out.stderr.contains(needle), "{}", out.describe());
        assert!(!out.stderr.contains("panicked"), "{}", out.describe());
    }
}
