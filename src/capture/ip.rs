//! Parsing a captured IP packet into a [`Heard`] knock or SPA payload.
//!
//! Every capture source hands over raw IP packets (from the IP header on);
//! this is the one place that reads them. It is pure and total: any byte
//! string gives `Some(Heard)` or `None`, never a panic, because the bytes
//! come from anyone on the network. What is refused (`None`):
//!
//! - truncated or inconsistent headers (an IPv4 IHL below 5 or past the
//!   end, a UDP or TCP header cut short, an extension header running past
//!   the packet);
//! - non-first fragments (IPv4 offset ≠ 0, IPv6 fragment header with an
//!   offset): they carry no transport header, and the first fragment
//!   already told the knock (knockd's libpcap filter drops them too);
//! - protocols other than UDP and TCP, and IPv6 extension headers other
//!   than the usual hop-by-hop, routing, destination options and fragment
//!   (RFC 8200 §4; an ESP or unknown header ends the walk).
//!
//! A UDP payload is clipped to the UDP length (the IP packet may carry
//! padding) and to what the source captured (its snap length).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::Heard;
use crate::config::Proto;

/// IP protocol numbers (IANA), as in `netinet/in.h`.
const TCP: u8 = 6;
const UDP: u8 = 17;
const HOP_BY_HOP: u8 = 0;
const ROUTING: u8 = 43;
const FRAGMENT: u8 = 44;
const DEST_OPTS: u8 = 60;
/// Most IPv6 extension headers walked before giving up (bounds the work a
/// hostile chain can cause; real packets carry one or two).
const MAX_EXTENSIONS: usize = 8;

/// TCP flag bits (RFC 9293 §3.1).
pub const TCP_SYN: u8 = 0x02;
/// The ACK bit.
pub const TCP_ACK: u8 = 0x10;

/// Whether a heard packet is a knock: any UDP datagram, or a TCP segment
/// with SYN set and ACK clear (knockd's `TCPFlags = syn,!ack`). Other TCP
/// segments neither advance nor break a sequence.
pub fn is_knock(heard: &Heard<'_>) -> bool {
    match heard.proto {
        Proto::Udp => true,
        Proto::Tcp => heard.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN,
    }
}

/// The packet in `ip` as a knock or SPA packet, or `None` (see the module
/// doc for what is refused).
pub fn parse(ip: &[u8]) -> Option<Heard<'_>> {
    match ip.first()? >> 4 {
        4 => parse_v4(ip),
        6 => parse_v6(ip),
        _ => None,
    }
}

fn parse_v4(ip: &[u8]) -> Option<Heard<'_>> {
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    if ihl < 20 || ip.len() < ihl {
        return None;
    }
    let fragment = u16::from_be_bytes([ip[6], ip[7]]);
    if fragment & 0x1fff != 0 {
        return None;
    }
    // The total length clips link-layer padding; a capture may be shorter.
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if total < ihl {
        return None;
    }
    let end = total.min(ip.len());
    let source = IpAddr::V4(Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]));
    let destination = IpAddr::V4(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]));
    transport(ip[9], &ip[ihl..end], source, destination)
}

fn parse_v6(ip: &[u8]) -> Option<Heard<'_>> {
    if ip.len() < 40 {
        return None;
    }
    let octets = |at: usize| -> [u8; 16] { ip[at..at + 16].try_into().expect("16 bytes") };
    let source = IpAddr::V6(Ipv6Addr::from(octets(8)));
    let destination = IpAddr::V6(Ipv6Addr::from(octets(24)));
    let payload_len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    // Payload length 0 is a jumbogram (hop-by-hop option): take what is there.
    let end = match payload_len {
        0 => ip.len(),
        n => (40 + n).min(ip.len()),
    };
    let mut next = ip[6];
    let mut at = 40;
    for _ in 0..MAX_EXTENSIONS {
        match next {
            HOP_BY_HOP | ROUTING | DEST_OPTS => {
                let header = ip.get(at..at + 2)?;
                next = header[0];
                at += (usize::from(header[1]) + 1) * 8;
            }
            FRAGMENT => {
                let header = ip.get(at..at + 8)?;
                if u16::from_be_bytes([header[2], header[3]]) & 0xfff8 != 0 {
                    return None;
                }
                next = header[0];
                at += 8;
            }
            _ => {
                if at > end {
                    return None;
                }
                return transport(next, &ip[at..end], source, destination);
            }
        }
    }
    None
}

/// The UDP or TCP header at the start of `segment` (the rest of the IP
/// packet, clipped to its stated length).
fn transport<'a>(
    protocol: u8,
    segment: &'a [u8],
    source: IpAddr,
    destination: IpAddr,
) -> Option<Heard<'a>> {
    match protocol {
        UDP => {
            let header = segment.get(..8)?;
            let port = u16::from_be_bytes([header[2], header[3]]);
            let length = usize::from(u16::from_be_bytes([header[4], header[5]]));
            if length < 8 {
                return None;
            }
            let payload = &segment[8..length.min(segment.len())];
            Some(Heard {
                source,
                destination,
                proto: Proto::Udp,
                port,
                tcp_flags: 0,
                payload,
            })
        }
        TCP => {
            // Ports and flags are all a knock needs (flags at byte 13).
            let header = segment.get(..14)?;
            Some(Heard {
                source,
                destination,
                proto: Proto::Tcp,
                port: u16::from_be_bytes([header[2], header[3]]),
                tcp_flags: header[13],
                payload: &[],
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
