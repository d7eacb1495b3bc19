//! iptables backend against the real kernel, inside a namespace.

use std::net::IpAddr;
use std::time::Duration;

use portknock::firewall::iptables::IptablesFirewall;
use portknock::firewall::{Firewall, FirewallOptions};

use crate::util::netns::{Netns, privileged, sh};

const V4: &str = "192.0.2.2";
const V6: &str = "2001:db8::2";
const TTL: Duration = Duration::from_secs(30);

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// `iptables-save` / `ip6tables-save` of the filter table without the
/// timestamped comment lines.
fn saved(tool: &str) -> String {
    sh(&[tool, "-t", "filter"])
        .lines()
        .filter(|line| !line.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

fn both() -> (String, String) {
    (saved("iptables-save"), saved("ip6tables-save"))
}

/// Foreign rules that must survive everything we do.
fn add_foreign_rules() {
    sh(&[
        "iptables", "-A", "INPUT", "-p", "tcp", "--dport", "80", "-j", "ACCEPT",
    ]);
    sh(&[
        "ip6tables",
        "-A",
        "INPUT",
        "-p",
        "tcp",
        "--dport",
        "80",
        "-j",
        "ACCEPT",
    ]);
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[test]
fn iptables_setup_grant_renew_revoke_teardown() {
    if !privileged("iptables_setup_grant_renew_revoke_teardown") {
        return;
    }
    let ns = Netns::new("ipt-life");
    ns.run(|| {
        add_foreign_rules();
        let before = both();
        let mut fw = IptablesFirewall::new(FirewallOptions::new([2222])).unwrap();
        fw.setup().unwrap();
        let (v4, v6) = both();
        for text in [&v4, &v6] {
            assert!(text.contains(":PORTKNOCK - [0:0]"), "{text}");
            let input: Vec<&str> = text.lines().filter(|l| l.starts_with("-A INPUT")).collect();
            assert_eq!(
                input[0], "-A INPUT -p tcp -m multiport --dports 2222 -j PORTKNOCK",
                "jump must be first, for the protected port only: {text}"
            );
            assert!(text.contains("-A INPUT -p tcp -m tcp --dport 80 -j ACCEPT"));
            assert!(text.contains(
                "-A PORTKNOCK -p tcp -m tcp --dport 2222 -m connmark --mark 0x1000000/0x1000000 -j ACCEPT"
            ));
            assert!(text.contains("-A PORTKNOCK -p tcp -m tcp --dport 2222 -j REJECT --reject-with tcp-reset"));
        }
        fw.grant(ip(V4), 2222, TTL).unwrap();
        fw.grant(ip(V6), 2222, TTL).unwrap();
        fw.grant(ip(V4), 2222, TTL).unwrap(); // renewal: no duplicate rule
        let (v4, v6) = both();
        assert_eq!(count(&v4, "-A PORTKNOCK -s 192.0.2.2/32 -p tcp -m tcp --dport 2222 -j CONNMARK --set-xmark 0x1000000/0x1000000"), 1, "{v4}");
        assert_eq!(count(&v6, "-A PORTKNOCK -s 2001:db8::2/128 -p tcp -m tcp --dport 2222 -j CONNMARK --set-xmark 0x1000000/0x1000000"), 1, "{v6}");
        // The grant sits above the reject.
        let grant_at = v4.find("-s 192.0.2.2/32").unwrap();
        assert!(grant_at < v4.find("-j REJECT").unwrap());

        fw.revoke(ip(V4), 2222).unwrap();
        fw.revoke(ip(V4), 2222).unwrap(); // revoking a closed grant is fine
        let (v4, v6) = both();
        assert!(!v4.contains("192.0.2.2"), "{v4}");
        assert!(v6.contains("2001:db8::2/128"), "{v6}");

        fw.teardown().unwrap();
        assert_eq!(both(), before, "teardown must restore the tables exactly");
    });
}

#[test]
fn iptables_batch_applies_several_changes_at_once() {
    if !privileged("iptables_batch_applies_several_changes_at_once") {
        return;
    }
    use portknock::firewall::Change;
    let ns = Netns::new("ipt-batch");
    ns.run(|| {
        let mut fw = IptablesFirewall::new(FirewallOptions::new([2222, 22])).unwrap();
        fw.setup().unwrap();
        let grant = |ip: &str, port| Change::Grant {
            ip: self::ip(ip),
            port,
            ttl: TTL,
        };
        let results = fw.apply(&[
            grant("192.0.2.2", 2222),
            grant("192.0.2.3", 22),
            grant("2001:db8::3", 2222),
            Change::Revoke {
                ip: ip("192.0.2.3"),
                port: 22,
            },
        ]);
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        let (v4, v6) = both();
        assert!(
            v4.contains("-s 192.0.2.2/32") && !v4.contains("192.0.2.3"),
            "{v4}"
        );
        assert!(v6.contains("-s 2001:db8::3/128"), "{v6}");
        fw.teardown().unwrap();
    });
}

#[test]
fn iptables_second_setup_after_a_crash_removes_the_stale_grant() {
    if !privileged("iptables_second_setup_after_a_crash_removes_the_stale_grant") {
        return;
    }
    let ns = Netns::new("ipt-crash");
    ns.run(|| {
        add_foreign_rules();
        let before = both();
        let mut crashed = IptablesFirewall::new(FirewallOptions::new([2222])).unwrap();
        crashed.setup().unwrap();
        crashed.grant(ip(V4), 2222, TTL).unwrap();
        crashed.grant(ip(V6), 2222, TTL).unwrap();
        drop(crashed); // no teardown: the rules stay, as after SIGKILL

        let mut fw = IptablesFirewall::new(FirewallOptions::new([2222])).unwrap();
        fw.setup().unwrap();
        let (v4, v6) = both();
        assert!(!v4.contains("192.0.2.2"), "stale v4 grant left: {v4}");
        assert!(!v6.contains("2001:db8::2"), "stale v6 grant left: {v6}");
        assert_eq!(count(&v4, "-j PORTKNOCK"), 1, "{v4}");
        assert_eq!(count(&v6, "-j PORTKNOCK"), 1, "{v6}");
        fw.teardown().unwrap();
        assert_eq!(both(), before);
    });
}

#[test]
fn iptables_failed_setup_leaves_nothing() {
    if !privileged("iptables_failed_setup_leaves_nothing") {
        return;
    }
    // A tool directory whose ip6tables-restore always fails: IPv4 is set up
    // first and must be undone.
    let dir = std::env::temp_dir().join(format!("pk-ipt-fail-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for tool in ["iptables-restore", "iptables-save", "ip6tables-save"] {
        let real = portknock::firewall::system::find_tool(tool).unwrap();
        let _ = std::fs::remove_file(dir.join(tool));
        std::os::unix::fs::symlink(real, dir.join(tool)).unwrap();
    }
    let fake = dir.join("ip6tables-restore");
    std::fs::write(&fake, "#!/bin/sh\necho 'injected failure' >&2\nexit 1\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();

    let ns = Netns::new("ipt-fail");
    let result = ns.run(|| {
        add_foreign_rules();
        let before = both();
        let mut fw = IptablesFirewall::new(FirewallOptions::new([2222]))
            .unwrap()
            .with_tool_dir(&dir);
        let err = fw.setup().unwrap_err();
        (before, both(), err.to_string())
    });
    let _ = std::fs::remove_dir_all(&dir);
    let (before, after, err) = result;
    assert!(
        err.contains("injected failure") && err.contains("ip6tables-restore"),
        "{err}"
    );
    assert_eq!(after, before, "a failed setup must leave no rules");
}
