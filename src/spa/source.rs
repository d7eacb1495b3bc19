//! The `SOURCE` list of an access.conf stanza: `ANY`, or addresses and
//! networks (`192.0.2.1`, `198.51.100.0/24`, `2001:db8::/32`), comma-separated.

use std::net::IpAddr;

/// One network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    /// The network address (host bits are ignored when matching).
    pub addr: IpAddr,
    /// Prefix length (≤ 32 for IPv4, ≤ 128 for IPv6).
    pub prefix: u8,
}

impl IpNet {
    /// Parses `ADDR` or `ADDR/PREFIX`.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|c| c.is_ascii_digit()) => {
                p.parse().ok()?
            }
            Some(_) => return None,
        };
        (prefix <= max).then_some(IpNet { addr, prefix })
    }

    /// Whether `ip` is inside (an IPv4-mapped IPv6 address matches IPv4 nets).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), self.prefix),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), self.prefix),
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let bits = usize::from(prefix);
    let full = bits / 8;
    if a[..full] != b[..full] {
        return false;
    }
    let rest = bits % 8;
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[full] & mask == b[full] & mask
    }
}

/// Which senders a stanza applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// `ANY`.
    Any,
    /// A list of networks.
    Nets(Vec<IpNet>),
}

impl SourceSpec {
    /// Parses the SOURCE value; `None` if any element is invalid.
    pub fn parse(text: &str) -> Option<Self> {
        let items: Vec<&str> = text.split(',').map(str::trim).collect();
        if items.iter().any(|i| i.eq_ignore_ascii_case("ANY")) {
            return (items.len() == 1).then_some(SourceSpec::Any);
        }
        items
            .into_iter()
            .map(IpNet::parse)
            .collect::<Option<Vec<_>>>()
            .map(SourceSpec::Nets)
    }

    /// Whether `ip` may use the stanza.
    pub fn matches(&self, ip: IpAddr) -> bool {
        match self {
            SourceSpec::Any => true,
            SourceSpec::Nets(nets) => nets.iter().any(|n| n.contains(ip)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn matching() {
        let s = SourceSpec::parse("198.51.100.0/24, 192.0.2.7, 2001:db8::/32").unwrap();
        assert!(s.matches(ip("198.51.100.200")));
        assert!(s.matches(ip("::ffff:198.51.100.1")));
        assert!(!s.matches(ip("198.51.101.1")));
        assert!(s.matches(ip("192.0.2.7")) && !s.matches(ip("192.0.2.8")));
        assert!(s.matches(ip("2001:db8::1")) && !s.matches(ip("2001:db9::1")));
        assert!(SourceSpec::parse("any").unwrap().matches(ip("10.0.0.1")));
        assert!(
            IpNet::parse("10.0.0.0/12")
                .unwrap()
                .contains(ip("10.15.255.255"))
        );
        assert!(
            !IpNet::parse("10.0.0.0/12")
                .unwrap()
                .contains(ip("10.16.0.0"))
        );
        assert!(IpNet::parse("0.0.0.0/0").unwrap().contains(ip("1.2.3.4")));
        for bad in [
            "10.0.0.0/33",
            "10.0.0/8",
            "x",
            "",
            "1.2.3.4/",
            "ANY,1.2.3.4",
            "::/129",
        ] {
            assert!(SourceSpec::parse(bad).is_none(), "{bad}");
        }
    }
}
