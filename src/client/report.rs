//! The client's words: every line `knock-client` prints, as pure functions.
//!
//! Kept apart from the printing so the exact text (the seed's shape, which
//! scripts and the README quote) is unit-tested.

use std::net::IpAddr;
use std::time::Duration;

use super::PortState;
use crate::service::format_seconds;

/// The rule above and below the title and at the end: 60 `=`, as the seed.
pub const RULE: &str = "============================================================";

/// The title between the two rules of the banner.
pub const TITLE: &str = "Port Knocking Client";

/// `1234 → 5678 → 9012`.
pub fn arrow_list<T: std::fmt::Display>(ports: &[T]) -> String {
    ports
        .iter()
        .map(T::to_string)
        .collect::<Vec<_>>()
        .join(" → ")
}

/// The target as the user named it, with the address if that differs:
/// `localhost (127.0.0.1)`.
pub fn target_label(host: &str, ip: IpAddr) -> String {
    let host = host.trim();
    let same = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok_and(|parsed| parsed == ip);
    if same {
        host.to_string()
    } else {
        format!("{host} ({ip})")
    }
}

/// `[*] Sending knock sequence to HOST`.
pub fn sending_line(target: &str) -> String {
    format!("[*] Sending knock sequence to {target}")
}

/// `[*] Sequence: 1234 → 5678 → 9012`.
pub fn sequence_line<T: std::fmt::Display>(ports: &[T]) -> String {
    format!("[*] Sequence: {}", arrow_list(ports))
}

/// `[1/3] Knocking...   → Knocked on port 1234` (three spaces, as the seed).
pub fn knock_line(index: usize, total: usize, port: impl std::fmt::Display) -> String {
    format!("[{index}/{total}] Knocking...   → Knocked on port {port}")
}

/// `[+] Knock sequence completed`.
pub fn completed_line() -> &'static str {
    "[+] Knock sequence completed"
}

/// `[*] Sending SPA packet to HOST (udp/62201)`.
pub fn spa_sending_line(target: &str, port: u16) -> String {
    format!("[*] Sending SPA packet to {target} (udp/{port})")
}

/// `[*] Access: tcp/2222 for 127.0.0.2 (timeout: server default)`.
pub fn spa_access_line(access: &str, allow: std::net::Ipv4Addr, client_timeout: u32) -> String {
    let whom = match allow.is_unspecified() {
        true => "the packet's source address".to_string(),
        false => allow.to_string(),
    };
    let timeout = match client_timeout {
        0 => "server default".to_string(),
        secs => format!("{secs}s requested"),
    };
    format!("[*] Access: {access} for {whom} (timeout: {timeout})")
}

/// `[+] SPA packet sent (226 bytes)`.
pub fn spa_sent_line(bytes: usize) -> String {
    format!("[+] SPA packet sent ({bytes} bytes)")
}

/// `[*] Waiting 1.0s before checking protected port...`.
pub fn waiting_line(wait: Duration) -> String {
    format!(
        "[*] Waiting {}s before checking protected port...",
        decimal_seconds(wait)
    )
}

/// `[*] Attempting to connect to port 2222... ` (the trailing space is the
/// seed's: it printed the verdict after it).
pub fn attempting_line(port: u16) -> String {
    format!("[*] Attempting to connect to port {port}... ")
}

/// Seconds with at least one decimal, as the seed's Python printed a
/// float: `1.0`, `0.5`, `1.25`.
pub fn decimal_seconds(duration: Duration) -> String {
    match duration.subsec_nanos() {
        0 => format!("{}.0", duration.as_secs()),
        _ => format_seconds(duration),
    }
}

/// The hint after knocking without `--check`.
pub fn hint_line(host: &str, port: u16) -> String {
    format!("[*] Port {port} should now be open for you: try nc {host} {port}")
}

/// The verdict of a check after the right sequence: success or why not.
pub fn check_line(port: u16, state: PortState, timeout: Duration) -> String {
    match state {
        PortState::Open => format!("[+] SUCCESS! Port {port} is now accessible"),
        PortState::Closed => format!(
            "[-] FAILED: port {port} is closed (connection refused or reset): \
             the knock was not accepted"
        ),
        PortState::Filtered => format!(
            "[-] FAILED: port {port} is filtered (no answer within {}s): \
             the knock was not accepted",
            format_seconds(timeout)
        ),
    }
}

/// `[*] Checking port 2222 on HOST without knocking`.
pub fn check_only_line(target: &str, port: u16) -> String {
    format!("[*] Checking port {port} on {target} without knocking")
}

/// The verdict of a check without knocking: what a stranger sees.
pub fn check_only_result_line(port: u16, state: PortState) -> String {
    match state {
        PortState::Open => format!("[+] Port {port} is open"),
        other => format!("[-] Port {port} is {other}"),
    }
}

/// `[*] Testing a wrong sequence: 9012 → 5678 → 1234`.
pub fn wrong_sequence_line<T: std::fmt::Display>(ports: &[T]) -> String {
    format!("[*] Testing a wrong sequence: {}", arrow_list(ports))
}

/// The verdict of the check after the wrong sequence.
pub fn after_wrong_line(port: u16, state: PortState) -> String {
    match state {
        PortState::Open => format!(
            "[-] UNEXPECTED: port {port} is open after a wrong sequence \
             (an earlier grant may still be live)"
        ),
        closed => format!("[+] As expected, port {port} stays {closed} after the wrong sequence"),
    }
}

/// `[*] Sending the correct sequence during the lockout...`.
pub fn during_lockout_line() -> &'static str {
    "[*] Sending the correct sequence during the lockout..."
}

/// The verdict of the check after the right sequence sent while locked out.
pub fn lockout_line(port: u16, ip: IpAddr, state: PortState) -> String {
    match state {
        PortState::Open => format!(
            "[-] UNEXPECTED: port {port} opened during the lockout: {ip} was not locked out"
        ),
        closed => format!("[+] As expected, port {port} is still {closed}: {ip} is locked out"),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn lines_have_the_seeds_shape() {
        assert_eq!(
            sending_line("127.0.0.1"),
            "[*] Sending knock sequence to 127.0.0.1"
        );
        assert_eq!(
            sequence_line(&[1234, 5678, 9012]),
            "[*] Sequence: 1234 → 5678 → 9012"
        );
        assert_eq!(
            knock_line(1, 3, 1234),
            "[1/3] Knocking...   → Knocked on port 1234"
        );
        assert_eq!(completed_line(), "[+] Knock sequence completed");
        assert_eq!(
            check_line(2222, PortState::Open, Duration::from_secs(2)),
            "[+] SUCCESS! Port 2222 is now accessible"
        );
        assert_eq!(RULE.len(), 60);
        assert!(RULE.chars().all(|c| c == '='));
        assert_eq!(TITLE, "Port Knocking Client");
        assert_eq!(
            attempting_line(2222),
            "[*] Attempting to connect to port 2222... "
        );
        assert_eq!(
            check_only_line("127.0.0.1", 2222),
            "[*] Checking port 2222 on 127.0.0.1 without knocking"
        );
        assert_eq!(
            check_only_result_line(2222, PortState::Open),
            "[+] Port 2222 is open"
        );
        assert_eq!(
            check_only_result_line(2222, PortState::Filtered),
            format!("[-] Port 2222 is {}", PortState::Filtered)
        );
    }

    #[test]
    fn spa_lines() {
        use std::net::Ipv4Addr;
        assert_eq!(
            spa_sending_line("127.0.0.1", 62201),
            "[*] Sending SPA packet to 127.0.0.1 (udp/62201)"
        );
        assert_eq!(
            spa_access_line("tcp/2222", Ipv4Addr::new(127, 0, 0, 2), 0),
            "[*] Access: tcp/2222 for 127.0.0.2 (timeout: server default)"
        );
        assert_eq!(
            spa_access_line("tcp/22", Ipv4Addr::UNSPECIFIED, 60),
            "[*] Access: tcp/22 for the packet's source address (timeout: 60s requested)"
        );
        assert_eq!(spa_sent_line(226), "[+] SPA packet sent (226 bytes)");
    }

    #[test]
    fn a_single_port_has_no_arrow() {
        assert_eq!(arrow_list(&[7]), "7");
        assert_eq!(sequence_line::<u16>(&[]), "[*] Sequence: ");
    }

    #[test]
    fn failures_say_which_case_and_why() {
        let closed = check_line(2222, PortState::Closed, Duration::from_secs(2));
        assert!(
            closed.starts_with("[-] FAILED: port 2222 is closed"),
            "{closed}"
        );
        let filtered = check_line(8080, PortState::Filtered, Duration::from_millis(500));
        assert!(
            filtered.contains("port 8080 is filtered (no answer within 0.5s)"),
            "{filtered}"
        );
    }

    #[test]
    fn the_target_shows_its_address_only_when_it_differs() {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert_eq!(target_label("127.0.0.1", ip), "127.0.0.1");
        assert_eq!(target_label("localhost", ip), "localhost (127.0.0.1)");
        let v6: IpAddr = "::1".parse().unwrap();
        assert_eq!(target_label("[::1]", v6), "[::1]");
    }

    #[test]
    fn waiting_uses_the_seed_number_format() {
        assert_eq!(
            waiting_line(Duration::from_secs(1)),
            "[*] Waiting 1.0s before checking protected port..."
        );
        assert_eq!(
            waiting_line(Duration::from_millis(1500)),
            "[*] Waiting 1.5s before checking protected port..."
        );
        assert_eq!(decimal_seconds(Duration::ZERO), "0.0");
        assert_eq!(decimal_seconds(Duration::from_millis(250)), "0.25");
        assert_eq!(decimal_seconds(Duration::from_secs(10)), "10.0");
    }

    #[test]
    fn wrong_sequence_verdicts() {
        let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(
            after_wrong_line(2222, PortState::Closed),
            "[+] As expected, port 2222 stays closed after the wrong sequence"
        );
        assert!(after_wrong_line(2222, PortState::Open).starts_with("[-] UNEXPECTED"));
        assert_eq!(
            lockout_line(2222, ip, PortState::Filtered),
            "[+] As expected, port 2222 is still filtered: 127.0.0.2 is locked out"
        );
        assert!(lockout_line(2222, ip, PortState::Open).contains("was not locked out"));
    }
}
