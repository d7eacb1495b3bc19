//! Unit tests of monitor.rs.

use super::*;

/// One notification: nlmsghdr, nfgenmsg, then the table attribute.
fn message(ty: u16, family: u8, table: &str) -> Vec<u8> {
    let mut name = table.as_bytes().to_vec();
    name.push(0);
    let attr_len = 4 + name.len();
    let mut attr = Vec::new();
    attr.extend_from_slice(&(attr_len as u16).to_ne_bytes());
    attr.extend_from_slice(&NFTA_TABLE.to_ne_bytes());
    attr.extend_from_slice(&name);
    attr.resize(attr_len.next_multiple_of(4), 0);
    let len = 16 + 4 + attr.len();
    let mut out = Vec::new();
    out.extend_from_slice(&(len as u32).to_ne_bytes());
    out.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | ty).to_ne_bytes());
    out.extend_from_slice(&[0; 10]);
    out.extend_from_slice(&[family, 0, 0, 0]);
    out.extend_from_slice(&attr);
    out
}

fn ours() -> Vec<Watch> {
    vec![Watch {
        family: NFPROTO_INET,
        table: "portknock".into(),
        owned: true,
    }]
}

fn shared() -> Vec<Watch> {
    [NFPROTO_IPV4, NFPROTO_IPV6]
        .map(|family| Watch {
            family,
            table: "filter".into(),
            owned: false,
        })
        .to_vec()
}

#[test]
fn deletions_in_our_own_table_mean_broken() {
    for ty in DELETIONS {
        assert_eq!(
            classify(&message(ty, 1, "portknock"), &ours()),
            Notice::Broken
        );
    }
    for ty in ELEMENT_DELETIONS {
        let notice = classify(&message(ty, 1, "portknock"), &ours());
        assert_eq!(notice, Notice::Elements, "{ty}");
    }
}

#[test]
fn deletions_in_a_shared_table_mean_changed_and_elements_nothing() {
    for ty in DELETIONS {
        assert_eq!(
            classify(&message(ty, 2, "filter"), &shared()),
            Notice::Changed
        );
        assert_eq!(
            classify(&message(ty, 10, "filter"), &shared()),
            Notice::Changed
        );
    }
    assert_eq!(
        classify(&message(14, 2, "filter"), &shared()),
        Notice::Nothing
    );
    assert_eq!(
        classify(&message(8, 1, "filter"), &shared()),
        Notice::Nothing
    );
    assert_eq!(classify(&message(8, 2, "nat"), &shared()), Notice::Nothing);
}

#[test]
fn other_tables_families_and_additions_do_not() {
    let nothing = |ty, family, table| classify(&message(ty, family, table), &ours());
    assert_eq!(nothing(2, 1, "filter"), Notice::Nothing);
    assert_eq!(nothing(2, 1, "portknock-web"), Notice::Nothing);
    assert_eq!(nothing(2, 2, "portknock"), Notice::Nothing);
    for ty in [0, 3, 6, 9, 12, 15] {
        assert_eq!(nothing(ty, 1, "portknock"), Notice::Nothing, "{ty}");
    }
}

#[test]
fn the_most_urgent_message_of_a_read_counts_and_garbage_does_not_panic() {
    let mut buf = message(14, 1, "portknock");
    buf.extend(message(8, 1, "portknock"));
    buf.extend(message(12, 1, "portknock"));
    assert_eq!(classify(&buf, &ours()), Notice::Broken);
    assert_eq!(classify(&[], &ours()), Notice::Nothing);
    assert_eq!(classify(&[0xff; 40], &ours()), Notice::Nothing);
    let mut short = message(2, 1, "portknock");
    short[0] = 200;
    assert_eq!(classify(&short, &ours()), Notice::Nothing);
}
