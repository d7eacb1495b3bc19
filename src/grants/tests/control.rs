//! Tests of what the control socket asks of the table: listing with
//! origins, revoking one address (optionally some ports), flushing.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::grants::{GrantTable, MANUAL, Origin, SPA};

const SEC: Duration = Duration::from_secs(1);

fn ip(last: u8) -> IpAddr {
    IpAddr::from([192, 0, 2, last])
}

#[test]
fn entries_name_their_origin_soonest_first() {
    let t0 = Instant::now();
    let mut table = GrantTable::new(10);
    table.grant_for(ip(1), 0, 22, t0 + 30 * SEC).unwrap();
    table.grant_for(ip(1), SPA, 22, t0 + 10 * SEC).unwrap();
    table.grant_for(ip(2), MANUAL, 443, t0 + 20 * SEC).unwrap();
    let seen: Vec<(IpAddr, u16, Origin)> = table
        .entries()
        .map(|e| (e.ip, e.port, e.origin()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (ip(1), 22, Origin::Spa),
            (ip(2), 443, Origin::Manual),
            (ip(1), 22, Origin::Knock),
        ]
    );
}

#[test]
fn revoking_an_address_closes_every_holder_on_the_chosen_ports_only() {
    let t0 = Instant::now();
    let mut table = GrantTable::new(10);
    table.grant_for(ip(1), 0, 22, t0 + 30 * SEC).unwrap();
    table.grant_for(ip(1), SPA, 22, t0 + 10 * SEC).unwrap();
    table.grant_for(ip(1), 1, 80, t0 + 10 * SEC).unwrap();
    table.grant_for(ip(2), 0, 22, t0 + 10 * SEC).unwrap();
    assert_eq!(table.revoke_ip(ip(1), |p| p == 22), vec![(ip(1), 22)]);
    assert!(!table.is_granted(ip(1), 22, t0));
    assert!(table.is_granted(ip(1), 80, t0));
    assert!(table.is_granted(ip(2), 22, t0));
    assert_eq!(table.len(), 2);
    assert_eq!(table.revoke_ip(ip(1), |_| true), vec![(ip(1), 80)]);
    assert!(table.revoke_ip(ip(3), |_| true).is_empty());
    // The removed grants no longer expire: only ip(2)'s is left to end.
    assert_eq!(table.expire(t0 + 60 * SEC), vec![(ip(2), 22)]);
}

#[test]
fn revoking_all_empties_the_table_and_names_each_firewall_entry_once() {
    let t0 = Instant::now();
    let mut table = GrantTable::new(10);
    table.grant_for(ip(1), 0, 22, t0 + 30 * SEC).unwrap();
    table.grant_for(ip(1), SPA, 22, t0 + 10 * SEC).unwrap();
    table.grant_for(ip(2), MANUAL, 22, t0 + 10 * SEC).unwrap();
    let mut closed = table.revoke_all();
    closed.sort();
    assert_eq!(closed, vec![(ip(1), 22), (ip(2), 22)]);
    assert!(table.is_empty());
    assert_eq!(table.next_expiry(), None);
    // The bound counts from zero again.
    table.grant_for(ip(3), 0, 22, t0 + SEC).unwrap();
    assert_eq!(table.len(), 1);
}
