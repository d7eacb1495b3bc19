//! What the load generator reads about the server and the machine: the
//! server's counters from its stats endpoint, its peak memory, and the
//! kernel's count of datagrams dropped for full receive buffers.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::BenchError;
use portknock::counters::{CountersSnapshot, SpaCountersSnapshot};

/// Reads the counters from a `--stats-listen` endpoint.
pub fn read_counters(addr: SocketAddr) -> Result<CountersSnapshot, BenchError> {
    let text = read_stats(addr)?;
    CountersSnapshot::from_json(&text).ok_or(BenchError::BadStats { addr, text })
}

/// Reads the counters and the SPA listener's counters from a
/// `--stats-listen` endpoint (an error if the server runs without SPA).
pub fn read_spa_counters(
    addr: SocketAddr,
) -> Result<(CountersSnapshot, SpaCountersSnapshot), BenchError> {
    let text = read_stats(addr)?;
    match (
        CountersSnapshot::from_json(&text),
        SpaCountersSnapshot::from_json(&text),
    ) {
        (Some(counters), Some(spa)) => Ok((counters, spa)),
        _ => Err(BenchError::BadStats { addr, text }),
    }
}

fn read_stats(addr: SocketAddr) -> Result<String, BenchError> {
    let fail = |source| BenchError::Stats { addr, source };
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(fail)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(fail)?;
    let mut text = String::new();
    stream.read_to_string(&mut text).map_err(fail)?;
    Ok(text)
}

/// The peak resident memory of process `pid` in kB (`VmHWM`).
pub fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status_field(&status, "VmHWM:")
}

fn status_field(status: &str, name: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

/// UDP `RcvbufErrors` of this network namespace (`/proc/net/snmp`).
pub fn udp_rcvbuf_errors() -> Option<u64> {
    snmp_udp_field(
        &std::fs::read_to_string("/proc/net/snmp").ok()?,
        "RcvbufErrors",
    )
}

/// The value of `field` in the `Udp:` lines of `/proc/net/snmp` text (a
/// header line of names, then a line of values).
fn snmp_udp_field(snmp: &str, field: &str) -> Option<u64> {
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let names = udp.next()?;
    let values = udp.next()?;
    let column = names.split_whitespace().position(|n| n == field)?;
    values.split_whitespace().nth(column)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snmp_and_status_fields_are_found_by_name() {
        let snmp = "Ip: Forwarding\nIp: 1\nUdp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors\nUdp: 10 0 3 9 42\nUdpLite: InDatagrams\nUdpLite: 0\n";
        assert_eq!(snmp_udp_field(snmp, "RcvbufErrors"), Some(42));
        assert_eq!(snmp_udp_field(snmp, "Nope"), None);
        let status = "Name:\tknock-server\nVmHWM:\t   12345 kB\nVmRSS:\t 100 kB\n";
        assert_eq!(status_field(status, "VmHWM:"), Some(12345));
        assert!(udp_rcvbuf_errors().is_some());
        assert!(peak_rss_kb(std::process::id()).is_some());
    }
}
