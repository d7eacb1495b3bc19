//! Out of file descriptors (issue 9 item 10): the server's accept loops
//! back off instead of spinning, and serve again once descriptors free up.
//!
//! The real knock-server runs with a low RLIMIT_NOFILE (set between fork
//! and exec). A granted client holds connections to the gate's built-in
//! service until the server has no descriptor left; then a connection to
//! the stats endpoint (and one more to the gate) waits in the backlog. The
//! server's CPU time over two seconds must stay small; once the held
//! connections close, both waiting connections are served.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::thread;
use std::time::{Duration, Instant};

use crate::util::{Proc, ServerSpec, free_port, loopback, run};

/// The server's descriptor limit: room for its own sockets and a few dozen
/// connections.
const NOFILE: u64 = 64;
/// Bound on connections the test opens to use the descriptors up.
const MAX_HELD: usize = 100;
/// How long the server's CPU time is measured while out of descriptors.
const MEASURE: Duration = Duration::from_secs(2);
/// Largest share of that wall time the server may spend on the CPU.
const MAX_CPU_SHARE: f64 = 0.2;

/// Connects from `source` and reads the greeting's first line; `None` if
/// nothing arrives within `wait` (the connection is left in the backlog).
fn greeted(source: &str, addr: SocketAddr, wait: Duration) -> (TcpStream, bool) {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .unwrap();
    let source: std::net::IpAddr = source.parse().unwrap();
    socket.bind(&SocketAddr::new(source, 0).into()).unwrap();
    socket
        .connect_timeout(&addr.into(), Duration::from_secs(2))
        .expect("connect (the backlog takes it even without an accept)");
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut line = String::new();
    let got = BufReader::new(&stream)
        .read_line(&mut line)
        .is_ok_and(|n| n > 0);
    (stream, got)
}

/// The process's CPU time (user + system) from /proc/PID/stat.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces), from field 3.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_secs_f64(ticks as f64 / per_second as f64)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| dir.count())
}

#[test]
fn out_of_descriptors_the_server_backs_off_and_recovers_when_connections_close() {
    let stats_port = free_port();
    let mut spec = ServerSpec::new();
    spec.extra = [
        "--stats-listen",
        &format!("127.0.0.1:{stats_port}"),
        "--close-after",
        "120",
        "--max-connections-per-ip",
        "1000",
    ]
    .map(String::from)
    .to_vec();
    let mut cmd = spec.command();
    // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: NOFILE,
                rlim_max: NOFILE,
            };
            match libc::setrlimit(libc::RLIMIT_NOFILE, &limit) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        });
    }
    let mut server = Proc::spawn(cmd);
    server.wait_for("knock server ready", Duration::from_secs(10));
    let source = "127.0.0.41";
    run(spec.client(source), Duration::from_secs(20)).expect_code(0);
    server.wait_for("access granted", Duration::from_secs(10));

    // Hold served connections until one is no longer accepted.
    let gate = loopback(spec.protected_port);
    let mut held = Vec::new();
    let waiting_gate = loop {
        assert!(
            held.len() < MAX_HELD,
            "descriptors never ran out\n{}",
            server.logs()
        );
        let (stream, served) = greeted(source, gate, Duration::from_secs(2));
        if !served {
            break stream;
        }
        held.push(stream);
    };
    let pid = server.pid();
    // At least: descriptors inherited above the limit stay open.
    assert!(
        open_fds(pid) as u64 >= NOFILE,
        "not out of descriptors\n{}",
        server.logs()
    );
    let mut waiting_stats = TcpStream::connect(("127.0.0.1", stats_port)).unwrap();

    let (cpu_before, wall_before) = (cpu_time(pid), Instant::now());
    thread::sleep(MEASURE);
    let (cpu, wall) = (cpu_time(pid) - cpu_before, wall_before.elapsed());
    let share = cpu.as_secs_f64() / wall.as_secs_f64();
    eprintln!(
        "held {} connections; server CPU {cpu:?} over {wall:?} ({:.1} %)",
        held.len(),
        share * 100.0
    );
    assert!(
        share < MAX_CPU_SHARE,
        "server spun at {:.0} % of a core while out of descriptors\n{}",
        share * 100.0,
        server.logs()
    );

    // Closing the held connections frees descriptors: both waiting
    // connections are served.
    drop(held);
    waiting_stats
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut line = String::new();
    waiting_stats.read_to_string(&mut line).unwrap();
    assert!(
        line.contains("\"packets\""),
        "stats answer: {line:?}\n{}",
        server.logs()
    );
    waiting_gate
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut greeting = String::new();
    BufReader::new(&waiting_gate)
        .read_line(&mut greeting)
        .unwrap();
    assert!(greeting.starts_with("Welcome"), "gate answer: {greeting:?}");
    assert!(server.printed("accept works again"), "{}", server.logs());
}
