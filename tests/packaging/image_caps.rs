//! The Docker image's privilege model without a Docker engine: the image
//! runs as an unprivileged user in a container whose only capability is
//! NET_ADMIN, and knock-server and the firewall tools it runs carry
//! `cap_net_admin+ep` as file capabilities (`Dockerfile`). Here: copies of
//! this build's knock-server and of `xtables-nft-multi` (named as the
//! iptables tools) with that file capability, run as `nobody` with a
//! bounding set of NET_ADMIN alone, inside a namespace the test makes.
//! A knock opens the port (a grant rule appears), SIGTERM removes every
//! rule.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::netns::{Netns, privileged};
use crate::util::{Proc, bin, run};

const LIMIT: Duration = Duration::from_secs(10);

#[test]
fn an_unprivileged_user_with_net_admin_file_caps_runs_the_iptables_backend() {
    if !privileged("an_unprivileged_user_with_net_admin_file_caps_runs_the_iptables_backend") {
        return;
    }
    let multi = std::fs::canonicalize("/usr/sbin/iptables-restore").unwrap();
    if !multi.ends_with("xtables-nft-multi")
        || portknock::firewall::system::find_tool("setcap").is_none()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "needs iptables-nft and setcap (libcap2-bin) in CI"
        );
        eprintln!("\n*** SKIPPED: needs iptables-nft (the image's) and setcap ***\n");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let tools = [
        "iptables",
        "iptables-restore",
        "iptables-save",
        "ip6tables",
        "ip6tables-restore",
        "ip6tables-save",
    ];
    let mut copies = vec![(bin("knock-server"), dir.path().join("knock-server"))];
    copies.extend(tools.map(|t| (multi.clone(), dir.path().join(t))));
    for (from, to) in &copies {
        std::fs::copy(from, to).unwrap();
        let mut setcap = Command::new("setcap");
        setcap.arg("cap_net_admin+ep").arg(to);
        run(setcap, LIMIT).expect_code(0);
    }

    let ns = Netns::new("imgcap");
    let mut server = ns.command("setpriv");
    server
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .args(["--bounding-set=-all,+net_admin", "--inh-caps=-all", "--"])
        .arg(dir.path().join("knock-server"))
        .args(["--firewall", "iptables", "--sequence", "41001,41002,41003"])
        .args(["--protected-port", "42222", "--bind", "127.0.0.1"])
        .args(["--control-socket", "none"])
        .env("PATH", format!("{}:/usr/bin:/bin", dir.path().display()));
    let mut server = Proc::spawn(server);
    server.wait_for("knock server ready", LIMIT);
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_ne!(field("Uid:").split_whitespace().next(), Some("0"));
    // CapEff: NET_ADMIN (bit 12) alone.
    assert_eq!(field("CapEff:"), "0000000000001000", "{status}");
    assert!(ns.rules().contains("-A PORTKNOCK"), "{}", ns.rules());

    let mut knock = ns.command(bin("knock-client"));
    knock.args(["--target", "127.0.0.1", "--sequence", "41001,41002,41003"]);
    knock.args(["--protected-port", "42222", "--delay", "0.05"]);
    run(knock, LIMIT).expect_code(0);
    let deadline = Instant::now() + LIMIT;
    while !ns.rules().contains("-s 127.0.0.1/32") {
        assert!(
            Instant::now() < deadline,
            "no grant rule\n{}\n{}",
            ns.rules(),
            server.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let exit = server.signal_and_wait("TERM", LIMIT);
    assert!(exit.success(), "{exit:?}\n{}", server.logs());
    assert!(!ns.rules().contains("PORTKNOCK"), "{}", ns.rules());
}
