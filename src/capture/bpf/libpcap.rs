//! libpcap's compiler as a test oracle: `tcpdump -dd EXPR` over an empty
//! capture file of link type `DLT_RAW` (offsets from the IP header on, as
//! a `SOCK_DGRAM` packet socket's filter sees them) prints the program
//! libpcap would attach, as C initialisers that map 1:1 onto
//! `sock_filter`.

use std::process::Command;

use libc::sock_filter;

use super::SNAP_LEN;
use crate::capture::CaptureSpec;

/// The libpcap expression equivalent to `spec`: libpcap's `tcp[...]` is
/// IPv4-only, so IPv6 TCP uses knockd's `ip6[6]`/`ip6[53]` clause (which,
/// like our program, assumes no extension headers). `None` for an empty
/// spec (nothing to capture).
pub fn expression(spec: &CaptureSpec) -> Option<String> {
    let list = |ports: &[u16]| {
        let words: Vec<String> = ports.iter().map(u16::to_string).collect();
        format!("({})", words.join(" or "))
    };
    let mut clauses = Vec::new();
    if !spec.udp_ports.is_empty() {
        clauses.push(format!("(udp dst port {})", list(&spec.udp_ports)));
    }
    if !spec.tcp_ports.is_empty() {
        let ports = list(&spec.tcp_ports);
        clauses.push(format!(
            "(ip and tcp dst port {ports} and tcp[13] & 0x12 == 0x02)"
        ));
        clauses.push(format!(
            "(ip6 and ip6[6] == 6 and tcp dst port {ports} and ip6[53] & 0x12 == 0x02)"
        ));
    }
    (!clauses.is_empty()).then(|| clauses.join(" or "))
}

/// Compiles `expr` with tcpdump; `None` (after a loud SKIPPED line) when
/// tcpdump is missing, a panic in CI (CI must never skip it).
pub fn compile(expr: &str) -> Option<Vec<sock_filter>> {
    let Some(tcpdump) = crate::firewall::system::find_tool("tcpdump") else {
        if std::env::var_os("CI").is_some() {
            panic!("tcpdump is missing in CI: .ci/run installs it");
        }
        eprintln!("\n*** SKIPPED libpcap comparison: tcpdump is not installed ***\n");
        return None;
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("empty-raw.pcap");
    std::fs::write(&file, empty_pcap()).expect("write the empty capture file");
    let out = Command::new(tcpdump)
        .arg("-r")
        .arg(&file)
        .arg("-dd")
        .arg(expr)
        .output()
        .expect("run tcpdump");
    assert!(
        out.status.success(),
        "tcpdump -dd '{expr}' failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(parse(&String::from_utf8_lossy(&out.stdout)))
}

/// A pcap file header with no packets: link type 101 (`LINKTYPE_RAW`),
/// snap length [`SNAP_LEN`] (libpcap's `ret` of an accepted packet).
fn empty_pcap() -> Vec<u8> {
    let mut header = Vec::with_capacity(24);
    header.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    header.extend_from_slice(&2u16.to_le_bytes());
    header.extend_from_slice(&4u16.to_le_bytes());
    header.extend_from_slice(&0i32.to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes());
    header.extend_from_slice(&SNAP_LEN.to_le_bytes());
    header.extend_from_slice(&101u32.to_le_bytes());
    header
}

/// Parses `tcpdump -dd` lines: `{ 0x30, 0, 0, 0x00000000 },`.
fn parse(text: &str) -> Vec<sock_filter> {
    text.lines()
        .filter(|line| line.trim_start().starts_with('{'))
        .map(|line| {
            let fields: Vec<u32> = line
                .trim()
                .trim_start_matches('{')
                .trim_end_matches(',')
                .trim_end_matches('}')
                .split(',')
                .map(|field| {
                    let field = field.trim();
                    match field.strip_prefix("0x") {
                        Some(hex) => u32::from_str_radix(hex, 16),
                        None => field.parse(),
                    }
                    .unwrap_or_else(|e| panic!("tcpdump -dd field '{field}': {e}"))
                })
                .collect();
            assert_eq!(fields.len(), 4, "tcpdump -dd line '{line}'");
            sock_filter {
                code: fields[0] as u16,
                jt: fields[1] as u8,
                jf: fields[2] as u8,
                k: fields[3],
            }
        })
        .collect()
}
