//! Tests of grants held by several doors (and SPA) for one `(ip, port)`.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::grants::{GrantChange, GrantTable, SPA};

const SEC: Duration = Duration::from_secs(1);

fn ip(last: u8) -> IpAddr {
    IpAddr::from([192, 0, 2, last])
}

#[test]
fn the_firewall_port_stays_open_while_any_doors_grant_lasts_and_closes_with_the_last() {
    let t0 = Instant::now();
    let mut table = GrantTable::new(100);
    assert_eq!(
        table.grant_for(ip(1), 0, 22, t0 + 30 * SEC),
        Ok(GrantChange::New)
    );
    // Door 1 opens the same port for a shorter time: a grant of its own,
    // and the firewall keeps the later end.
    assert_eq!(
        table.grant_for(ip(1), 1, 22, t0 + 10 * SEC),
        Ok(GrantChange::New)
    );
    assert_eq!(table.len(), 2);
    assert_eq!(table.open_until(ip(1), 22), Some(t0 + 30 * SEC));
    assert!(
        table.expire(t0 + 10 * SEC).is_empty(),
        "door 0 still holds it"
    );
    assert!(table.is_granted(ip(1), 22, t0 + 20 * SEC));
    assert_eq!(table.expire(t0 + 30 * SEC), vec![(ip(1), 22)]);
    assert!(table.is_empty());
    assert_eq!(table.open_until(ip(1), 22), None);
}

#[test]
fn renewals_are_per_holder_and_the_firewall_sees_one_entry_per_ip_and_port() {
    let t0 = Instant::now();
    let mut table = GrantTable::new(100);
    table.grant_for(ip(1), 0, 22, t0 + 10 * SEC).unwrap();
    table.grant(ip(1), 22, t0 + 5 * SEC).unwrap();
    assert_eq!(
        table.grant_for(ip(1), 0, 22, t0 + 40 * SEC),
        Ok(GrantChange::Renewed)
    );
    let open: Vec<_> = table.iter().collect();
    assert_eq!(open, vec![(ip(1), 22, t0 + 40 * SEC)]);
    assert!(
        table.expire(t0 + 5 * SEC).is_empty(),
        "SPA's ended, door 0's lasts"
    );
    assert_eq!(table.len(), 1);
}

#[test]
fn removing_a_holder_closes_only_what_no_one_else_holds() {
    let t0 = Instant::now();
    let mut table = GrantTable::new(100);
    table.grant_for(ip(1), 2, 22, t0 + 30 * SEC).unwrap();
    table.grant_for(ip(1), 2, 443, t0 + 30 * SEC).unwrap();
    table.grant_for(ip(1), SPA, 443, t0 + 30 * SEC).unwrap();
    let mut closed = table.remove_holder(2);
    closed.sort();
    assert_eq!(closed, vec![(ip(1), 22)]);
    assert!(table.is_granted(ip(1), 443, t0));
    assert!(table.remove(ip(1), 443));
    assert!(table.is_empty());
    assert_eq!(table.next_expiry(), None);
}

#[test]
fn max_grants_counts_each_holders_grant() {
    let t0 = Instant::now();
    let mut table = GrantTable::new(1);
    table.grant_for(ip(1), 0, 22, t0 + SEC).unwrap();
    assert!(table.grant_for(ip(1), 1, 22, t0 + SEC).is_err());
}
