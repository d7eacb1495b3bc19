//! Reload under a paced load (issue 10, "Must show"): knock-bench offers
//! sequences on one door of a three-door server (the binary, `--config`,
//! userspace gate on loopback) while the test reloads it with SIGHUP
//! several times. Each reload is valid and changes the other doors (a
//! sequence that shares the benched door's first knock port changes, a
//! door with a knock port of its own comes and goes); the benched door is
//! unchanged, so its sources keep their progress across every swap and
//! no sequence offered may be lost.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::{Outcome, Proc, bin, free_port, free_ports, run};

const LIMIT: Duration = Duration::from_secs(10);
/// Sequences offered, and their pace: about 5 s of load.
const COUNT: u32 = 2500;
const RATE: u32 = 500;
/// Reloads while the load runs, one every `EVERY`.
const RELOADS: usize = 6;
const EVERY: Duration = Duration::from_millis(500);

/// "ssh" (benched): k0,k1,k2 -> p0. "web": shares k0 with ssh, its order
/// flips with `flip`, -> p1. "lan" -> p2 from 127.0.0.16/28 only. With
/// `mail`, a fourth door on a knock port of its own, k5 -> p1.
fn config(k: &[u16], p: &[u16], stats: &str, flip: bool, mail: bool) -> String {
    let web = if flip { [k[3], k[0]] } else { [k[0], k[3]] };
    let door = |name: &str, seq: &[u16], port: u16, extra: &str| {
        let seq: Vec<String> = seq.iter().map(u16::to_string).collect();
        format!(
            "\n[[door]]\nname = \"{name}\"\nsequence = [{}]\nwindow = \"10s\"\naccess = \"1m\"\nlockout = \"1s\"\nprotected = [\"tcp/{port}\"]\n{extra}",
            seq.join(", ")
        )
    };
    let mut text = format!(
        "bind = [\"127.0.0.1\"]\nfirewall = \"userspace\"\ncapture = \"socket\"\nstats-listen = \"{stats}\"\n"
    );
    text += &door("ssh", &k[..3], p[0], "");
    text += &door("web", &web, p[1], "");
    text += &door("lan", &[k[4], k[3]], p[2], "allow = [\"127.0.0.16/28\"]\n");
    if mail {
        text += &door("mail", &[k[5]], p[1], "");
    }
    text
}

/// The value of `"name":value` in knock-bench's JSON report.
fn field(out: &Outcome, name: &str) -> String {
    let key = format!("\"{name}\":");
    let Some(at) = out.stdout.find(&key) else {
        panic!("no {name} in the report\n{}", out.describe());
    };
    out.stdout[at + key.len()..]
        .split([',', '}'])
        .next()
        .unwrap()
        .trim_matches('"')
        .to_string()
}

/// Waits (bounded) until the server has logged `n` finished reloads.
fn wait_reloads(server: &Proc, n: usize) {
    let start = Instant::now();
    while server.count("configuration reloaded") < n {
        assert!(
            start.elapsed() < LIMIT,
            "reload {n} never finished\n{}",
            server.logs()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn no_knock_is_lost_while_sighup_reloads_a_changed_file_under_paced_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portknock.toml");
    let (k, p) = (free_ports(6), free_ports(3));
    let stats = format!("127.0.0.1:{}", free_port());
    std::fs::write(&path, config(&k, &p, &stats, false, false)).unwrap();
    let mut cmd = Command::new(bin("knock-server"));
    cmd.arg("--config").arg(&path);
    let mut server = Proc::spawn(cmd);
    server.wait_for("knock server ready", LIMIT);

    let mut bench = Command::new(bin("knock-bench"));
    let sequence: Vec<String> = k[..3].iter().map(u16::to_string).collect();
    bench
        .args(["--mode", "sequences", "--sequence", &sequence.join(",")])
        .args(["--protected-port", &p[0].to_string()])
        .args(["--count", &COUNT.to_string(), "--rate", &RATE.to_string()])
        .args(["--source-base", "127.70.0.0", "--stats", &stats])
        .args(["--server-pid", &server.pid().to_string()])
        .args(["--time-limit", "30s", "--settle", "500ms", "--json"]);
    let load = std::thread::spawn(move || run(bench, Duration::from_secs(60)));

    // The load is under way before the first reload, and each reload is
    // finished (logged) before the next file is written.
    std::thread::sleep(EVERY);
    for n in 1..=RELOADS {
        let text = config(&k, &p, &stats, n % 2 == 1, n % 3 != 0);
        std::fs::write(&path, text).unwrap();
        server.signal("HUP");
        wait_reloads(&server, n);
        std::thread::sleep(EVERY);
    }
    assert!(
        !load.is_finished(),
        "the load ended before the last reload: offer more sequences"
    );
    let out = load.join().unwrap().expect_code(0);

    assert_eq!(
        server.count("reload refused"),
        0,
        "every file was valid\n{}",
        server.logs()
    );
    assert!(
        out.status.success() && server.running(),
        "{}",
        server.logs()
    );
    assert_eq!(
        field(&out, "offered"),
        COUNT.to_string(),
        "{}",
        out.describe()
    );
    assert_eq!(
        field(&out, "grants"),
        COUNT.to_string(),
        "{}",
        out.describe()
    );
    assert_eq!(field(&out, "lost"), "0", "{}", out.describe());
    assert_eq!(field(&out, "lockouts"), "0", "{}", out.describe());
    assert_eq!(
        field(&out, "packets_sent"),
        field(&out, "server_packets"),
        "every knock was received\n{}",
        out.describe()
    );
    let status = server.signal_and_wait("TERM", LIMIT);
    assert!(status.success(), "{status:?}");
}
