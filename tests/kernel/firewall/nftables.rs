//! nftables backend against the real kernel, inside a namespace.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use portknock::firewall::nftables::NftablesFirewall;
use portknock::firewall::{Change, Firewall, FirewallError, FirewallOptions};

use crate::util::netns::{Netns, output, privileged, sh};

const V4: &str = "192.0.2.2";
const V6: &str = "2001:db8::2";

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn table() -> String {
    sh(&["nft", "list", "table", "inet", "portknock"])
}

fn table_exists() -> bool {
    output(&["nft", "list", "table", "inet", "portknock"])
        .status
        .success()
}

#[test]
fn nftables_setup_grant_renew_revoke_teardown() {
    if !privileged("nftables_setup_grant_renew_revoke_teardown") {
        return;
    }
    let ns = Netns::new("nft-life");
    ns.run(|| {
        // A foreign table that must survive.
        sh(&["nft", "add", "table", "ip", "foreign"]);
        let mut fw = NftablesFirewall::new(FirewallOptions::new([2222])).unwrap();
        fw.setup().unwrap();
        let text = table();
        for needle in [
            "type ipv4_addr . inet_service",
            "type ipv6_addr . inet_service",
            "flags timeout",
            "type filter hook input priority filter; policy accept;",
            "tcp dport 2222 ct state established,related ct mark & 0x01000000 == 0x01000000 accept",
            "ip saddr . tcp dport @allowed_v4 ct mark set ct mark | 0x01000000 accept",
            "ip6 saddr . tcp dport @allowed_v6 ct mark set ct mark | 0x01000000 accept",
            "tcp dport 2222 reject with tcp reset",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }

        fw.grant(ip(V4), 2222, Duration::from_secs(60)).unwrap();
        fw.grant(ip(V6), 2222, Duration::from_secs(60)).unwrap();
        let text = table();
        assert!(text.contains("192.0.2.2 . 2222 timeout 1m"), "{text}");
        assert!(text.contains("2001:db8::2 . 2222 timeout 1m"), "{text}");

        // Renewal refreshes the kernel timeout (longer and shorter).
        fw.grant(ip(V4), 2222, Duration::from_secs(600)).unwrap();
        assert!(
            table().contains("192.0.2.2 . 2222 timeout 10m"),
            "{}",
            table()
        );
        fw.grant(ip(V4), 2222, Duration::from_secs(20)).unwrap();
        assert!(
            table().contains("192.0.2.2 . 2222 timeout 20s"),
            "{}",
            table()
        );

        fw.revoke(ip(V4), 2222).unwrap();
        fw.revoke(ip(V4), 2222).unwrap(); // revoking a closed grant is fine
        let text = table();
        assert!(!text.contains("192.0.2.2"), "{text}");
        assert!(text.contains("2001:db8::2 . 2222"), "{text}");

        // A batch: one transaction.
        let ttl = Duration::from_secs(30);
        let results = fw.apply(&[
            Change::Grant {
                ip: ip("192.0.2.3"),
                port: 2222,
                ttl,
            },
            Change::Grant {
                ip: ip("2001:db8::3"),
                port: 2222,
                ttl,
            },
            Change::Revoke {
                ip: ip(V6),
                port: 2222,
            },
        ]);
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        let text = table();
        assert!(text.contains("192.0.2.3 . 2222") && text.contains("2001:db8::3 . 2222"));
        assert!(!text.contains("2001:db8::2 "), "{text}");

        fw.teardown().unwrap();
        assert!(!table_exists());
        assert!(sh(&["nft", "list", "tables"]).contains("table ip foreign"));
        fw.teardown().unwrap(); // idempotent
    });
}

#[test]
fn nftables_runtime_failure_is_a_command_error_and_the_session_recovers() {
    if !privileged("nftables_runtime_failure_is_a_command_error_and_the_session_recovers") {
        return;
    }
    let ns = Netns::new("nft-err");
    ns.run(|| {
        let mut fw = NftablesFirewall::new(FirewallOptions::new([2222])).unwrap();
        // No setup: the table does not exist, so a grant fails in the kernel.
        let err = fw.grant(ip(V4), 2222, Duration::from_secs(5)).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("No such file or directory"), "{text}");
        assert!(
            text.contains("add element inet portknock allowed_v4"),
            "{text}"
        );
        fw.setup().unwrap();
        fw.grant(ip(V4), 2222, Duration::from_secs(5)).unwrap();
        assert!(table().contains("192.0.2.2 . 2222"));
        fw.teardown().unwrap();
    });
}

#[test]
fn nftables_netlink_grants_1000_elements_with_timeouts() {
    if !privileged("nftables_netlink_grants_1000_elements_with_timeouts") {
        return;
    }
    let ns = Netns::new("nft-1000");
    ns.run(|| {
        let mut fw = NftablesFirewall::new(FirewallOptions::new([2222])).unwrap();
        fw.setup().unwrap();
        let addr = |i: u32| IpAddr::from([198, 51, 100 + (i / 250) as u8, (i % 250) as u8 + 1]);
        // 500 alone, 500 as one batch (with a v6 element among them).
        for i in 0..500 {
            fw.grant(addr(i), 2222, Duration::from_secs(600)).unwrap();
        }
        let mut batch: Vec<Change> = (500..1000)
            .map(|i| Change::Grant {
                ip: addr(i),
                port: 2222,
                ttl: Duration::from_secs(300),
            })
            .collect();
        batch.push(Change::Grant {
            ip: ip(V6),
            port: 2222,
            ttl: Duration::from_secs(300),
        });
        assert!(fw.apply(&batch).iter().all(Result::is_ok));
        let v4 = sh(&["nft", "list", "set", "inet", "portknock", "allowed_v4"]);
        for i in [0, 1, 249, 250, 499] {
            let needle = format!("{} . 2222 timeout 10m expires", addr(i));
            assert!(v4.contains(&needle), "missing {needle:?}");
        }
        for i in [500, 750, 999] {
            let needle = format!("{} . 2222 timeout 5m expires", addr(i));
            assert!(v4.contains(&needle), "missing {needle:?}");
        }
        assert_eq!(v4.matches(" . 2222 timeout ").count(), 1000, "{v4}");
        let v6 = sh(&["nft", "list", "set", "inet", "portknock", "allowed_v6"]);
        assert!(v6.contains("2001:db8::2 . 2222 timeout 5m expires"), "{v6}");
        fw.teardown().unwrap();
    });
}

#[test]
fn nftables_netlink_error_when_the_table_is_deleted_then_recovers_after_setup() {
    if !privileged("nftables_netlink_error_when_the_table_is_deleted_then_recovers_after_setup") {
        return;
    }
    let ns = Netns::new("nft-gone");
    ns.run(|| {
        let mut fw = NftablesFirewall::new(FirewallOptions::new([2222])).unwrap();
        fw.setup().unwrap();
        fw.grant(ip(V4), 2222, Duration::from_secs(60)).unwrap();
        sh(&["nft", "delete", "table", "inet", "portknock"]);
        for result in [
            fw.grant(ip(V6), 2222, Duration::from_secs(60)),
            fw.revoke(ip(V4), 2222),
        ] {
            match result {
                Err(FirewallError::Command {
                    command, stderr, ..
                }) => {
                    assert!(
                        command.contains("element inet portknock allowed_v"),
                        "{command}"
                    );
                    assert!(stderr.contains("No such file or directory"), "{stderr}");
                }
                other => panic!("expected a Command error, got {other:?}"),
            }
        }
        // A batch fails as a whole, then each change alone: one error each.
        let results = fw.apply(&[
            Change::Grant {
                ip: ip(V4),
                port: 2222,
                ttl: Duration::from_secs(60),
            },
            Change::Revoke {
                ip: ip(V6),
                port: 2222,
            },
        ]);
        assert!(results.iter().all(Result::is_err), "{results:?}");
        fw.setup().unwrap();
        fw.grant(ip(V4), 2222, Duration::from_secs(60)).unwrap();
        assert!(
            table().contains("192.0.2.2 . 2222 timeout 1m"),
            "{}",
            table()
        );
        fw.teardown().unwrap();
    });
}

#[test]
fn nftables_timeouts_expire_in_the_kernel_after_the_server_is_gone() {
    if !privileged("nftables_timeouts_expire_in_the_kernel_after_the_server_is_gone") {
        return;
    }
    let ns = Netns::new("nft-expiry");
    ns.run(|| {
        let mut fw = NftablesFirewall::new(FirewallOptions::new([2222])).unwrap();
        fw.setup().unwrap();
        let start = Instant::now();
        fw.grant(ip(V4), 2222, Duration::from_secs(2)).unwrap();
        fw.grant(ip(V6), 2222, Duration::from_secs(2)).unwrap();
        drop(fw); // the server is gone: nobody will revoke
        assert!(table().contains("192.0.2.2 . 2222"));
        let mut gone_after = None;
        for _ in 0..100 {
            let text = table();
            if !text.contains("192.0.2.2") && !text.contains("2001:db8::2") {
                gone_after = Some(start.elapsed());
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let gone_after = gone_after.expect("elements did not expire within 10 s");
        assert!(
            gone_after >= Duration::from_millis(1900),
            "expired too early: {gone_after:?}"
        );
        assert!(table_exists(), "the table itself stays");
    });
}

#[test]
fn nftables_second_setup_after_a_crash_removes_the_stale_grant() {
    if !privileged("nftables_second_setup_after_a_crash_removes_the_stale_grant") {
        return;
    }
    let ns = Netns::new("nft-crash");
    ns.run(|| {
        let mut crashed = NftablesFirewall::new(FirewallOptions::new([2222])).unwrap();
        crashed.setup().unwrap();
        crashed
            .grant(ip(V4), 2222, Duration::from_secs(600))
            .unwrap();
        drop(crashed);
        let mut fw = NftablesFirewall::new(FirewallOptions::new([2223])).unwrap();
        fw.setup().unwrap();
        let text = table();
        assert!(!text.contains("192.0.2.2"), "{text}");
        assert!(
            text.contains("tcp dport 2223 reject with tcp reset") && !text.contains("2222"),
            "{text}"
        );
        fw.teardown().unwrap();
    });
}

#[test]
fn nftables_failed_setup_leaves_nothing() {
    if !privileged("nftables_failed_setup_leaves_nothing") {
        return;
    }
    // An `nft` that refuses the ruleset (but deletes tables): the stale
    // table of a crashed run must not survive a failed setup.
    let dir = std::env::temp_dir().join(format!("pk-nft-fail-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let real = portknock::firewall::system::find_tool("nft").unwrap();
    let fake = dir.join("nft");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\nin=$(cat)\ncase \"$in\" in *chain*) echo 'injected failure' >&2; exit 1;; esac\n\
             printf '%s\\n' \"$in\" | exec {} \"$@\"\n",
            real.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();

    let ns = Netns::new("nft-fail");
    let result = ns.run(|| {
        let mut crashed = NftablesFirewall::new(FirewallOptions::new([2222])).unwrap();
        crashed.setup().unwrap();
        drop(crashed);
        let mut fw = NftablesFirewall::new(FirewallOptions::new([2222]))
            .unwrap()
            .with_tool_dir(&dir);
        let err = fw.setup().unwrap_err().to_string();
        (err, table_exists())
    });
    let _ = std::fs::remove_dir_all(&dir);
    let (err, exists) = result;
    assert!(err.contains("injected failure"), "{err}");
    assert!(!exists, "a failed setup must leave no table");
}

/// Cost of 1000 grants: the backend's netlink socket (one transaction per
/// grant, and all 1000 as one batch) against one `nft` process per grant,
/// and the iptables backend for scale. A measurement, not a timed
/// test: run with `cargo test --release --test firewall measure -- --ignored --nocapture`.
#[test]
#[ignore = "measurement; prints timings"]
fn measure_1000_grants() {
    use portknock::firewall::iptables::IptablesFirewall;
    if !privileged("measure_1000_grants") {
        return;
    }
    const N: u32 = 1000;
    let ttl = Duration::from_secs(600);
    let addr = |i: u32| IpAddr::from([198, 51, 100 + (i / 250) as u8, (i % 250) as u8 + 1]);
    let ns = Netns::new("measure");
    ns.run(|| {
        let mut fw = NftablesFirewall::new(FirewallOptions::new([2222])).unwrap();
        fw.setup().unwrap();
        let start = Instant::now();
        for i in 0..N {
            fw.grant(addr(i), 2222, ttl).unwrap();
        }
        let netlink = start.elapsed();
        fw.setup().unwrap();
        let start = Instant::now();
        for i in 0..N {
            let line = portknock::firewall::nftables::change_commands(&Change::Grant {
                ip: addr(i),
                port: 2222,
                ttl,
            });
            sh(&["nft", &line]);
        }
        let forked = start.elapsed();
        let batch: Vec<Change> = (0..N)
            .map(|i| Change::Grant { ip: addr(i), port: 2223, ttl })
            .collect();
        let start = Instant::now();
        assert!(fw.apply(&batch).iter().all(Result::is_ok));
        let batched = start.elapsed();
        // The set as the 50 000/s load grows it: 150 batches of 1000 new
        // elements; the slowest batch is what a knock may wait behind.
        let mut slowest = Duration::ZERO;
        let start = Instant::now();
        for b in 0..150u32 {
            let batch: Vec<Change> = (0..N)
                .map(|i| Change::Grant {
                    ip: IpAddr::from((0x0a00_0000 + b * N + i).to_be_bytes()),
                    port: 2222,
                    ttl,
                })
                .collect();
            let one = Instant::now();
            assert!(fw.apply(&batch).iter().all(Result::is_ok));
            slowest = slowest.max(one.elapsed());
        }
        let grown = start.elapsed();
        fw.teardown().unwrap();

        let mut ipt = IptablesFirewall::new(FirewallOptions::new([2222])).unwrap();
        ipt.setup().unwrap();
        let start = Instant::now();
        for i in 0..N {
            ipt.grant(addr(i), 2222, ttl).unwrap();
        }
        let iptables = start.elapsed();
        ipt.teardown().unwrap();
        println!(
            "1000 grants: netlink per grant {netlink:?} ({:?}/grant); nft process per grant {forked:?} ({:?}/grant); \
             netlink one batch {batched:?}; 150 batches of 1000 into a growing set {grown:?} (slowest {slowest:?}); \
             iptables-restore per grant {iptables:?} ({:?}/grant)",
            netlink / N,
            forked / N,
            iptables / N
        );
    });
}
