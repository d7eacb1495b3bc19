use std::time::Duration;

use super::*;
use crate::config::decoys::Decoys;
use crate::config::{AllowList, KnockPort, ProtectedPort, Timing};

fn fixed(ports: &[u16], protected: u16, decoys: Decoys) -> Door {
    let sequence = ports.iter().map(|&p| KnockPort::udp(p)).collect();
    Door::new(
        "d".parse().unwrap(),
        sequence,
        Timing::default(),
        vec![ProtectedPort::tcp(protected)],
        AllowList::everything(),
    )
    .unwrap()
    .with_decoys(decoys)
}

#[test]
fn decoys_surround_each_knock_port_but_never_a_knock_or_protected_port() {
    let door = fixed(&[1234, 1236, 5678], 1230, Decoys::Band(8));
    let ports = knock_ports_at(&[door], Duration::ZERO);
    for p in (1226..=1244).chain(5670..=5686) {
        assert_eq!(ports.contains(&p), p != 1230, "{p}");
    }
    assert_eq!(ports.len(), 19 - 1 + 17);
    let off = fixed(&[1234, 5678], 22, Decoys::Off);
    assert_eq!(knock_ports_at(&[off], Duration::ZERO), vec![1234, 5678]);
    let set = fixed(&[1234], 22, Decoys::Set(vec![7, 1234]));
    assert_eq!(knock_ports_at(&[set], Duration::ZERO), vec![7, 1234]);
}
