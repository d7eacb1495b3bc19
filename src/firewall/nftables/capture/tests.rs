//! The capture chain's text, and how a listing is checked for it.

use super::*;
use crate::capture::CaptureSpec;
use crate::firewall::FirewallOptions;
use crate::firewall::nftables::{missing_parts, ruleset};

fn rule(interfaces: &[&str]) -> NflogRule {
    NflogRule::new(
        CaptureSpec {
            udp_ports: vec![1234, 5678],
            tcp_ports: vec![9012],
            interfaces: interfaces.iter().map(|name| name.to_string()).collect(),
        },
        27502,
    )
}

#[test]
fn the_chain_logs_udp_and_tcp_syn_to_local_addresses_and_lets_them_go_on() {
    assert_eq!(
        chain(Some(&rule(&[]))),
        "\tchain capture {\n\
         \t\ttype filter hook prerouting priority raw; policy accept;\n\
         \t\tfib daddr type local udp dport { 1234, 5678 } log group 27502 snaplen 2048\n\
         \t\tfib daddr type local tcp dport { 9012 } tcp flags & (syn | ack) == syn log group 27502 snaplen 2048\n\
         \t}\n"
    );
}

#[test]
fn named_interfaces_restrict_every_rule() {
    let rules = rules(&rule(&["eth0", "wg0"]));
    assert_eq!(rules.len(), 2);
    for line in rules {
        assert!(
            line.starts_with("iifname { \"eth0\", \"wg0\" } fib daddr type local "),
            "{line}"
        );
    }
}

#[test]
fn only_the_protocols_with_ports_get_a_rule_and_none_gets_no_chain() {
    let mut udp_only = rule(&[]);
    udp_only.spec.tcp_ports.clear();
    assert_eq!(rules(&udp_only).len(), 1);
    let mut empty = udp_only.clone();
    empty.spec.udp_ports.clear();
    assert_eq!(chain(Some(&empty)), "");
    assert_eq!(chain(None), "");
}

#[test]
fn the_setup_transaction_puts_the_chain_in_our_table() {
    let options = FirewallOptions {
        capture: Some(rule(&[])),
        ..FirewallOptions::new([2222])
    };
    let text = ruleset(&options);
    let input_end = text.find("\t}\n").expect("input chain");
    let capture_at = text.find("\tchain capture {").expect("capture chain");
    assert!(capture_at > input_end, "{text}");
    assert!(text.ends_with("\t}\n}\n"), "{text}");
    assert!(!ruleset(&FirewallOptions::new([2222])).contains("capture"));
}

#[test]
fn replacing_the_chain_is_one_transaction_that_leaves_the_rest() {
    assert_eq!(
        replace_script("inet portknock", Some(&rule(&[]))),
        "add chain inet portknock capture { type filter hook prerouting priority raw; policy accept; }\n\
         flush chain inet portknock capture\n\
         add rule inet portknock capture fib daddr type local udp dport { 1234, 5678 } log group 27502 snaplen 2048\n\
         add rule inet portknock capture fib daddr type local tcp dport { 9012 } tcp flags & (syn | ack) == syn log group 27502 snaplen 2048\n"
    );
    assert_eq!(
        replace_script("inet portknock-web", None),
        "add chain inet portknock-web capture { type filter hook prerouting priority raw; policy accept; }\n\
         delete chain inet portknock-web capture\n"
    );
}

/// `nft -t list table inet portknock` (nftables 1.0.6) after setup with
/// the capture rule: nft prints the flag test its own way.
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
\t\ttcp dport 2222 drop
\t}

\tchain capture {
\t\ttype filter hook prerouting priority raw; policy accept;
\t\tfib daddr type local udp dport { 1234, 5678 } log group 27502 snaplen 2048
\t\tfib daddr type local tcp dport 9012 tcp flags syn / syn,ack log group 27502 snaplen 2048
\t}
}
";

#[test]
fn a_listing_with_the_chain_is_intact_and_each_loss_is_named() {
    let options = FirewallOptions {
        capture: Some(rule(&[])),
        ..FirewallOptions::new([2222])
    };
    assert_eq!(missing_parts(Some(LISTING), &options), Vec::<String>::new());
    let start = LISTING.find("\n\tchain capture").unwrap();
    let without = format!("{}\n}}\n", &LISTING[..start]);
    assert_eq!(
        missing_parts(Some(&without), &options),
        vec!["table inet portknock chain capture".to_string()]
    );
    let one_rule = LISTING.replace(
        "\t\tfib daddr type local udp dport { 1234, 5678 } log group 27502 snaplen 2048\n",
        "",
    );
    assert_eq!(
        missing_parts(Some(&one_rule), &options),
        vec!["table inet portknock chain capture: 1 of 2 rules".to_string()]
    );
    let other_group = LISTING.replace("group 27502", "group 5");
    assert_eq!(
        missing_parts(Some(&other_group), &options),
        vec!["table inet portknock chain capture: 0 of 2 rules".to_string()]
    );
    // Without a capture rule the chain is not asked for.
    assert!(missing(&without, None, "table inet portknock").is_empty());
}
