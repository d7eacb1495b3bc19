//! Unit tests of nftables.rs.

use super::*;

#[test]
fn ruleset_golden() {
    let options = FirewallOptions::new([2222, 22]);
    assert_eq!(
        ruleset(&options),
        "table inet portknock\n\
             delete table inet portknock\n\
             table inet portknock {\n\
             \tset allowed_v4 {\n\t\ttype ipv4_addr . inet_service\n\t\tflags timeout\n\t}\n\
             \tset allowed_v6 {\n\t\ttype ipv6_addr . inet_service\n\t\tflags timeout\n\t}\n\
             \tchain input {\n\
             \t\ttype filter hook input priority filter; policy accept;\n\
             \t\ttcp dport { 22, 2222 } ct state established,related \
             ct mark & 0x01000000 == 0x01000000 accept\n\
             \t\tip saddr . tcp dport @allowed_v4 ct mark set ct mark | 0x01000000 accept\n\
             \t\tip6 saddr . tcp dport @allowed_v6 ct mark set ct mark | 0x01000000 accept\n\
             \t\ttcp dport { 22, 2222 } reject with tcp reset\n\
             \t}\n}\n"
    );
}

#[test]
fn ruleset_without_established_or_ports() {
    let options = FirewallOptions {
        keep_established: false,
        ..FirewallOptions::new([2222])
    };
    assert!(!ruleset(&options).contains("established"));
    // Nothing reads the mark then: the grants do not set it either.
    assert!(!ruleset(&options).contains("ct mark"));
    let none = FirewallOptions::new([]);
    let text = ruleset(&none);
    assert!(!text.contains("dport {"), "{text}");
}

/// `nft -t list table inet portknock` of nftables 1.0.6 after setup.
const LISTING: &str = "table inet portknock {
\tset allowed_v4 {
\t\ttype ipv4_addr . inet_service
\t\tflags timeout
\t}

\tset allowed_v6 {
\t\ttype ipv6_addr . inet_service
\t\tflags timeout
\t}

\tchain input {
\t\ttype filter hook input priority filter; policy accept;
\t\ttcp dport 2222 ct state established,related ct mark & 0x01000000 == 0x01000000 accept
\t\tip saddr . tcp dport @allowed_v4 ct mark set ct mark | 0x01000000 accept
\t\tip6 saddr . tcp dport @allowed_v6 ct mark set ct mark | 0x01000000 accept
\t\ttcp dport 2222 reject with tcp reset
\t}
}
";

#[test]
fn missing_parts_of_an_intact_flushed_or_deleted_table() {
    let options = FirewallOptions::new([2222]);
    assert!(missing_parts(Some(LISTING), &options).is_empty());
    assert_eq!(
        missing_parts(None, &options),
        vec!["table inet portknock".to_string()]
    );
    // `nft flush chain` / `nft flush table`: the chain is empty.
    let flushed: String = LISTING
        .lines()
        .filter(|l| !l.contains("dport"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        missing_parts(Some(&flushed), &options),
        vec!["table inet portknock chain input: 0 of 4 rules".to_string()]
    );
    let one_gone = LISTING.replace("\t\ttcp dport 2222 reject with tcp reset\n", "");
    assert_eq!(missing_parts(Some(&one_gone), &options).len(), 1);
    let no_set = LISTING.replace("set allowed_v6 {", "set other {");
    assert_eq!(
        missing_parts(Some(&no_set), &options),
        vec!["table inet portknock set allowed_v6".to_string()]
    );
    let no_chain = LISTING.replace("chain input {", "chain other {");
    assert_eq!(missing_parts(Some(&no_chain), &options).len(), 1);
}

/// An established rule that does not ask for the grant mark (a table of
/// an older version, or one edited by hand) lets a stranger's connection
/// ride it: not our complete ruleset, so it is repaired. A grant rule that
/// no longer sets the mark is reported too.
#[test]
fn missing_parts_reports_rules_without_the_grant_mark() {
    let options = FirewallOptions::new([2222]);
    let unmarked = LISTING.replace(" ct mark & 0x01000000 == 0x01000000", "");
    let missing = missing_parts(Some(&unmarked), &options);
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert!(missing[0].contains("the grant mark in `tcp dport 2222 ct state"));
    let unset = LISTING.replace(" ct mark set ct mark | 0x01000000", "");
    assert_eq!(missing_parts(Some(&unset), &options).len(), 2);
    // Without keep-established the mark is neither set nor asked for.
    let plain = FirewallOptions {
        keep_established: false,
        ..options
    };
    let listing = LISTING
        .replace("\t\ttcp dport 2222 ct state established,related ct mark & 0x01000000 == 0x01000000 accept\n", "")
        .replace(" ct mark set ct mark | 0x01000000", "");
    assert!(missing_parts(Some(&listing), &plain).is_empty());
}

#[test]
fn an_instance_has_its_own_table() {
    let options = FirewallOptions {
        instance: "web".parse().unwrap(),
        ..FirewallOptions::new([80])
    };
    assert!(ruleset(&options).starts_with(
        "table inet portknock-web\ndelete table inet portknock-web\ntable inet portknock-web {"
    ));
    assert_eq!(
        teardown_script(&options),
        "table inet portknock-web\ndelete table inet portknock-web\n"
    );
}

#[test]
fn change_commands_golden() {
    let v4: IpAddr = "::ffff:192.0.2.2".parse().unwrap();
    let v6: IpAddr = "2001:db8::2".parse().unwrap();
    assert_eq!(
        change_commands(&Change::Grant {
            ip: v4,
            port: 2222,
            ttl: Duration::from_millis(2500)
        }),
        "add element inet portknock allowed_v4 { 192.0.2.2 . 2222 timeout 2500ms }; \
             delete element inet portknock allowed_v4 { 192.0.2.2 . 2222 }; \
             add element inet portknock allowed_v4 { 192.0.2.2 . 2222 timeout 2500ms }"
    );
    assert_eq!(
        change_commands(&Change::Revoke { ip: v6, port: 22 }),
        "add element inet portknock allowed_v6 { 2001:db8::2 . 22 }; \
             delete element inet portknock allowed_v6 { 2001:db8::2 . 22 }"
    );
    assert_eq!(
        change_commands(&Change::Grant {
            ip: v6,
            port: 22,
            ttl: Duration::ZERO
        }),
        change_commands(&Change::Revoke { ip: v6, port: 22 })
    );
    assert!(
        change_commands(&Change::Grant {
            ip: v6,
            port: 22,
            ttl: Duration::from_micros(10)
        })
        .contains("timeout 1ms")
    );
}

#[test]
fn set_elements_are_read_from_both_sets_across_lines() {
    let listing = "table inet portknock {
\tset allowed_v4 {
\t\ttype ipv4_addr . inet_service
\t\tflags timeout
\t\telements = { 192.0.2.2 . 22 timeout 30s expires 29s992ms,
\t\t\t     192.0.2.1 . 2222 timeout 1m expires 59s992ms }
\t}
\tset allowed_v6 {
\t\ttype ipv6_addr . inet_service
\t\tflags timeout
\t\telements = { 2001:db8::1 . 2222 timeout 1m expires 59s928ms }
\t}
\tchain input {
\t\ttcp dport { 2222 } reject with tcp reset
\t}
}
";
    let found = set_elements(listing);
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(found.contains(&(ip("192.0.2.2"), 22)));
    assert!(found.contains(&(ip("192.0.2.1"), 2222)));
    assert!(found.contains(&(ip("2001:db8::1"), 2222)));
    assert!(set_elements("elements = { garbage, 1.2.3.4 . x, . . }").is_empty());
    assert!(set_elements("elements = { 192.0.2.9 . 1").contains(&(ip("192.0.2.9"), 1)));

    let ttl = Duration::from_secs(3);
    let live = [
        Change::Grant {
            ip: ip("192.0.2.1"),
            port: 2222,
            ttl,
        },
        Change::Grant {
            ip: ip("192.0.2.1"),
            port: 22,
            ttl,
        },
        Change::Grant {
            ip: ip("::ffff:192.0.2.2"),
            port: 22,
            ttl,
        },
        Change::Grant {
            ip: ip("2001:db8::2"),
            port: 2222,
            ttl,
        },
    ];
    assert_eq!(absent_grants(listing, &live), vec![live[1], live[3]]);
    // A flushed set: every live grant is missing.
    assert_eq!(
        absent_grants("table inet portknock {}", &live),
        live.to_vec()
    );
}

/// A door's `udp/N` (WireGuard) beside `tcp/22`: per protocol an
/// established rule, grant rules on the shared sets and a drop, all with
/// the grant mark; `nft -t list table` of nftables 1.0.6 after this setup
/// is intact, and each UDP rule, when gone, is reported.
#[test]
fn ruleset_with_udp_ports_golden_and_verified() {
    let options = FirewallOptions {
        udp_ports: vec![51821, 51820, 51821],
        ..FirewallOptions::new([22])
    };
    assert_eq!(
        ruleset(&options),
        "table inet portknock\n\
             delete table inet portknock\n\
             table inet portknock {\n\
             \tset allowed_v4 {\n\t\ttype ipv4_addr . inet_service\n\t\tflags timeout\n\t}\n\
             \tset allowed_v6 {\n\t\ttype ipv6_addr . inet_service\n\t\tflags timeout\n\t}\n\
             \tchain input {\n\
             \t\ttype filter hook input priority filter; policy accept;\n\
             \t\ttcp dport { 22 } ct state established,related \
             ct mark & 0x01000000 == 0x01000000 accept\n\
             \t\tudp dport { 51820, 51821 } ct state established,related \
             ct mark & 0x01000000 == 0x01000000 accept\n\
             \t\tip saddr . tcp dport @allowed_v4 ct mark set ct mark | 0x01000000 accept\n\
             \t\tip6 saddr . tcp dport @allowed_v6 ct mark set ct mark | 0x01000000 accept\n\
             \t\tip saddr . udp dport @allowed_v4 ct mark set ct mark | 0x01000000 accept\n\
             \t\tip6 saddr . udp dport @allowed_v6 ct mark set ct mark | 0x01000000 accept\n\
             \t\ttcp dport { 22 } reject with tcp reset\n\
             \t\tudp dport { 51820, 51821 } reject\n\
             \t}\n}\n"
    );
    let listing = "table inet portknock {
\tset allowed_v4 {
\t\ttype ipv4_addr . inet_service
\t\tflags timeout
\t}

\tset allowed_v6 {
\t\ttype ipv6_addr . inet_service
\t\tflags timeout
\t}

\tchain input {
\t\ttype filter hook input priority filter; policy accept;
\t\ttcp dport 22 ct state established,related ct mark & 0x01000000 == 0x01000000 accept
\t\tudp dport { 51820, 51821 } ct state established,related ct mark & 0x01000000 == 0x01000000 accept
\t\tip saddr . tcp dport @allowed_v4 ct mark set ct mark | 0x01000000 accept
\t\tip6 saddr . tcp dport @allowed_v6 ct mark set ct mark | 0x01000000 accept
\t\tip saddr . udp dport @allowed_v4 ct mark set ct mark | 0x01000000 accept
\t\tip6 saddr . udp dport @allowed_v6 ct mark set ct mark | 0x01000000 accept
\t\ttcp dport 22 reject with tcp reset
\t\tudp dport { 51820, 51821 } reject
\t}
}
";
    assert!(missing_parts(Some(listing), &options).is_empty());
    // The TCP-only listing lacks the four UDP rules.
    assert_eq!(
        missing_parts(Some(LISTING), &options),
        vec!["table inet portknock chain input: 4 of 8 rules".to_string()]
    );
    let no_udp_drop = listing.replace("\t\tudp dport { 51820, 51821 } reject\n", "");
    assert_eq!(missing_parts(Some(&no_udp_drop), &options).len(), 1);
    let unmarked = listing.replace(
        "{ 51820, 51821 } ct state established,related ct mark & 0x01000000 == 0x01000000",
        "{ 51820, 51821 } ct state established,related",
    );
    let missing = missing_parts(Some(&unmarked), &options);
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert!(
        missing[0].contains("the grant mark in `udp dport"),
        "{missing:?}"
    );
    // UDP only: the TCP grant rules stay (the seed's layout), no TCP drop.
    let wg = FirewallOptions {
        udp_ports: vec![51820],
        ..FirewallOptions::new([])
    };
    let text = rechain_script(&wg);
    assert!(
        text.contains("add rule inet portknock input udp dport { 51820 } reject"),
        "{text}"
    );
    assert!(text.contains("ip saddr . tcp dport @allowed_v4"), "{text}");
    assert!(!text.contains("tcp dport {"), "{text}");
}

/// `--deny`: reset (the default) answers like a closed port, per protocol;
/// drop keeps the silence of earlier versions.
#[test]
fn deny_reset_rejects_like_a_closed_port_and_drop_stays_silent() {
    let reset = FirewallOptions {
        udp_ports: vec![51820],
        ..FirewallOptions::new([22])
    };
    let rules = chain_rules(&reset);
    assert_eq!(
        &rules[rules.len() - 2..],
        [
            "tcp dport { 22 } reject with tcp reset",
            "udp dport { 51820 } reject"
        ]
    );
    let drop = FirewallOptions {
        deny: Deny::Drop,
        ..reset.clone()
    };
    let rules = chain_rules(&drop);
    assert_eq!(
        &rules[rules.len() - 2..],
        ["tcp dport { 22 } drop", "udp dport { 51820 } drop"]
    );
    assert_eq!(chain_rules(&drop).len(), chain_rules(&reset).len());
}
