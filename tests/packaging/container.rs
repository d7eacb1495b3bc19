//! Issue 4, proven where no Docker engine runs: a network namespace plays
//! the container (192.0.2.40 stands in for 172.21.0.40) and runs
//! `scripts/start_services.sh` as the image's entry point does; the demo
//! scripts run from a second namespace, as from the Docker host. Also: the
//! compose file parses, and the demo works without root against a
//! userspace `start_services.sh` on loopback.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::util::netns::{Lan, privileged};
use crate::util::{FLAG, Outcome, Proc, bin, free_port, free_ports, run};

/// The "container" and the "Docker host" that talks to it.
const CONTAINER: [&str; 2] = ["192.0.2.40", "2001:db8::40"];
const DOCKER_HOST: [&str; 2] = ["192.0.2.2", "2001:db8::2"];
/// Shorter than the image's 5 s so the demo waits less, still longer than
/// demo.sh's step 2 needs (its right sequence goes out ~3.3 s after the
/// wrong one, with its fixed 2 s check timeout).
const LOCKOUT: &str = "4";

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
}

/// Where this test run's binaries are, for `PORTKNOCK_BIN_DIR`.
fn bin_dir() -> PathBuf {
    bin("knock-server").parent().unwrap().to_path_buf()
}

#[track_caller]
fn assert_printed(out: &Outcome, lines: &[&str]) {
    for line in lines {
        assert!(out.stdout.contains(line), "no {line:?}\n{}", out.describe());
    }
}

/// What the demo prints when all five steps behave, for `target:port`.
fn assert_demo_passed(out: &Outcome, target: &str, port: u16, filtered_or_closed: &str) {
    for step in 1..=5 {
        assert_printed(out, &[&format!("=== Step {step}: ")]);
    }
    assert_printed(
        out,
        &[
            &format!("[ok] port {port} is not reachable without knocking"),
            &format!(
                "[+] As expected, port {port} stays {filtered_or_closed} after the wrong sequence"
            ),
            &format!("[+] As expected, port {port} is still {filtered_or_closed}"),
            "[ok] the wrong sequence was refused and the IP locked out",
            &format!("[ok] port {port} opened for this address"),
            &format!("[ok] flag read: {FLAG}"),
            &format!("nc {target} {port}"),
            "Demo complete: all five steps behaved as described.",
        ],
    );
    assert!(!out.stdout.contains("[FAILED]"), "{}", out.describe());
}

#[test]
fn the_container_entry_point_serves_the_demo_and_sigterm_removes_its_rules() {
    if !privileged("the_container_entry_point_serves_the_demo_and_sigterm_removes_its_rules") {
        return;
    }
    let lan = Lan::new("ctr", CONTAINER, &[DOCKER_HOST]);
    lan.host.add_foreign_rules();
    let before = lan.host.rules();

    // The entry point with the image's environment (Dockerfile ENV).
    let mut cmd = lan.host.command(script("start_services.sh"));
    cmd.env("KNOCK_SEQUENCE", "1234,5678,9012")
        .env("PROTECTED_PORT", "2222")
        .env("WINDOW", "10")
        .env("ACCESS_DURATION", "30")
        .env("LOCKOUT", LOCKOUT)
        .env("FIREWALL", "iptables")
        .env("PORTKNOCK_BIN_DIR", bin_dir());
    let mut container = Proc::spawn(cmd);
    container.wait_for("knock server ready", Duration::from_secs(10));
    container.wait_for("protected-service listening", Duration::from_secs(10));
    assert!(lan.host.rules().contains("PORTKNOCK"));

    // From the "Docker host": the demo, then the quick check.
    let docker_host = &lan.clients[0];
    let mut demo = docker_host.command(script("demo.sh"));
    demo.arg(CONTAINER[0])
        .env("PORTKNOCK_BIN_DIR", bin_dir())
        .env("LOCKOUT", LOCKOUT);
    let out = run(demo, Duration::from_secs(60)).expect_code(0);
    // The kernel backend's default `--deny reset`: a stranger's SYN gets a
    // RST, so the protected port looks closed.
    assert_demo_passed(&out, CONTAINER[0], 2222, "closed");
    let client = DOCKER_HOST[0];
    assert!(
        container.printed(&format!("wrong knock: locked out ip={client}"))
            && container.printed(&format!("access granted ip={client}")),
        "{}",
        container.logs()
    );

    let mut check = docker_host.command(script("test_knocking.sh"));
    check.arg(CONTAINER[0]).env("PORTKNOCK_BIN_DIR", bin_dir());
    let out = run(check, Duration::from_secs(30)).expect_code(0);
    assert_printed(&out, &[&format!("[+] Flag: {FLAG}"), "PASS"]);

    // `docker stop`: SIGTERM to the entry point. Both programs exit, and
    // the rules are exactly as before the start.
    let status = container.signal_and_wait("TERM", Duration::from_secs(15));
    assert!(status.success(), "exit {status}\n{}", container.logs());
    assert!(
        container.printed("knock server stopped") && container.printed("[start_services] stopped"),
        "{}",
        container.logs()
    );
    assert_eq!(lan.host.pids(), Vec::<u32>::new(), "processes left behind");
    assert_eq!(lan.host.rules(), before, "rules left behind");
}

#[test]
fn the_demo_runs_without_root_against_a_userspace_start_services() {
    let sequence = free_ports(3)
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let port = free_port();
    let lockout = "3";
    let mut cmd = Command::new(script("start_services.sh"));
    cmd.env("FIREWALL", "userspace")
        .env("KNOCK_SEQUENCE", &sequence)
        .env("PROTECTED_PORT", port.to_string())
        .env("SERVICE_PORT", free_port().to_string())
        .env("BIND", "127.0.0.1")
        .env("LOCKOUT", lockout)
        .env("PORTKNOCK_BIN_DIR", bin_dir());
    let mut services = Proc::spawn(cmd);
    services.wait_for("knock server ready", Duration::from_secs(10));
    services.wait_for("protected-service listening", Duration::from_secs(10));

    let with_env = |name: &str| {
        let mut cmd = Command::new(script(name));
        cmd.arg("127.0.0.1")
            .env("KNOCK_SEQUENCE", &sequence)
            .env("PROTECTED_PORT", port.to_string())
            .env("LOCKOUT", lockout)
            .env("PORTKNOCK_BIN_DIR", bin_dir());
        cmd
    };
    // The userspace gate resets strangers: "closed" where the kernel said
    // "filtered".
    let out = run(with_env("demo.sh"), Duration::from_secs(60)).expect_code(0);
    assert_demo_passed(&out, "127.0.0.1", port, "closed");
    let out = run(with_env("test_knocking.sh"), Duration::from_secs(30)).expect_code(0);
    assert_printed(&out, &[&format!("[+] Flag: {FLAG}"), "PASS"]);

    let status = services.signal_and_wait("TERM", Duration::from_secs(15));
    assert!(status.success(), "exit {status}\n{}", services.logs());
    assert!(
        services.printed("knock server stopped"),
        "{}",
        services.logs()
    );
}

#[test]
fn docker_compose_accepts_the_compose_file() {
    if portknock::firewall::system::find_tool("docker-compose").is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "docker-compose is missing in CI (scripts/test.sh installs it)"
        );
        eprintln!("\n*** SKIPPED docker_compose_accepts_the_compose_file: no docker-compose ***\n");
        return;
    }
    let mut cmd = Command::new("docker-compose");
    cmd.args(["-f", "compose.yaml", "config"])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    let out = run(cmd, Duration::from_secs(30)).expect_code(0);
    assert_printed(
        &out,
        &[
            "  port_knocking:\n",
            "container_name: 2_network_port_knocking",
            "- NET_ADMIN",
            "  vulnerable_network:\n",
            "ipv4_address: 172.21.0.40",
            "subnet: 172.21.0.0/24",
        ],
    );
}
