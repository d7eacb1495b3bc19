//! Unit tests of grants.rs.

use super::*;
use std::time::Duration;

fn ip(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

#[test]
fn grants_expire_in_deadline_order_at_their_end() {
    let t0 = Instant::now();
    let mut table = GrantTable::new(100);
    assert_eq!(
        table.grant(ip(1), 22, t0 + Duration::from_secs(30)),
        Ok(GrantChange::New)
    );
    assert_eq!(
        table.grant(ip(2), 22, t0 + Duration::from_secs(10)),
        Ok(GrantChange::New)
    );
    assert_eq!(table.next_expiry(), Some(t0 + Duration::from_secs(10)));
    assert!(table.is_granted(ip(2), 22, t0 + Duration::from_secs(9)));
    assert!(!table.is_granted(ip(2), 22, t0 + Duration::from_secs(10)));
    assert!(!table.is_granted(ip(2), 23, t0));
    assert!(table.expire(t0 + Duration::from_secs(9)).is_empty());
    assert_eq!(
        table.expire(t0 + Duration::from_secs(10)),
        vec![(ip(2), 22)]
    );
    assert_eq!(table.len(), 1);
    assert_eq!(
        table.expire(t0 + Duration::from_secs(60)),
        vec![(ip(1), 22)]
    );
    assert!(table.is_empty());
    assert_eq!(table.next_expiry(), None);
}

#[test]
fn renewal_moves_the_deadline_and_leaves_one_grant() {
    let t0 = Instant::now();
    let mut table = GrantTable::new(100);
    table
        .grant(ip(1), 22, t0 + Duration::from_secs(30))
        .unwrap();
    assert_eq!(
        table.grant(ip(1), 22, t0 + Duration::from_secs(50)),
        Ok(GrantChange::Renewed)
    );
    assert_eq!(table.len(), 1);
    assert!(table.expire(t0 + Duration::from_secs(30)).is_empty());
    assert_eq!(
        table.expire(t0 + Duration::from_secs(50)),
        vec![(ip(1), 22)]
    );
}

#[test]
fn mapped_ipv6_is_the_same_source_as_ipv4() {
    let t0 = Instant::now();
    let mut table = GrantTable::new(100);
    let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
    table
        .grant(mapped, 22, t0 + Duration::from_secs(5))
        .unwrap();
    assert!(table.is_granted(ip(1), 22, t0));
    assert!(table.remove(ip(1), 22));
    assert!(!table.remove(ip(1), 22));
    assert_eq!(table.next_expiry(), None);
}

#[test]
fn at_the_cap_a_new_grant_is_refused_and_open_ones_stay_and_renew() {
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs(10);
    let mut table = GrantTable::new(2);
    table.grant(ip(1), 22, end).unwrap();
    table.grant(ip(2), 22, end).unwrap();
    assert_eq!(
        table.grant(ip(3), 22, end),
        Err(GrantRefused {
            ip: ip(3),
            port: 22,
            max: 2
        })
    );
    // Another port of an open IP is a new grant too.
    assert!(table.grant(ip(1), 23, end).is_err());
    assert_eq!(table.len(), 2);
    assert!(table.is_granted(ip(1), 22, t0) && table.is_granted(ip(2), 22, t0));
    let later = t0 + Duration::from_secs(20);
    assert_eq!(table.grant(ip(2), 22, later), Ok(GrantChange::Renewed));
    assert_eq!(table.expire(end), vec![(ip(1), 22)]);
    assert_eq!(table.grant(ip(3), 22, later), Ok(GrantChange::New));
    assert_eq!(table.next_expiry(), Some(later));
}

#[test]
fn max_grants_is_validated() {
    assert_eq!(parse_max_grants("1"), Ok(1));
    assert_eq!(parse_max_grants(" 10000 "), Ok(10_000));
    assert_eq!(parse_max_grants("10000000"), Ok(MAX_MAX_GRANTS));
    for bad in [
        "0",
        "-1",
        "x",
        "",
        "1.5",
        "10000001",
        "99999999999999999999999",
    ] {
        let err = parse_max_grants(bad).unwrap_err();
        assert!(err.to_string().contains("--max-grants"), "{err}");
    }
}

#[test]
fn refusals_are_logged_once_per_interval_with_the_count_suppressed() {
    let t0 = Instant::now();
    let mut log = RefusalLog::default();
    assert_eq!(log.admit(t0), Some(0));
    for i in 1..1_000u32 {
        assert_eq!(log.admit(t0 + Duration::from_millis(u64::from(i))), None);
    }
    assert_eq!(log.admit(t0 + REFUSAL_LOG_INTERVAL), Some(999));
    assert_eq!(log.admit(t0 + REFUSAL_LOG_INTERVAL * 3), Some(0));
}

mod control;
mod holders;
