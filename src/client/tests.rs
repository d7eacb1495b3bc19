//! Tests of knocking and the check against real listeners on loopback
//! (127.0.0.0/8 only; several 127.0.0.x addresses act as several clients).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use socket2::SockRef;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, UdpSocket};

use super::*;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const TIMEOUT: Duration = Duration::from_secs(2);

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

async fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind((LOOPBACK, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

#[test]
fn delays_allow_zero_but_not_negative_or_garbage() {
    assert_eq!(parse_delay("0").unwrap(), Duration::ZERO);
    assert_eq!(parse_delay("0ms").unwrap(), Duration::ZERO);
    assert_eq!(parse_delay("0.5").unwrap(), Duration::from_millis(500));
    assert_eq!(parse_delay("100ms").unwrap(), Duration::from_millis(100));
    for bad in ["-1", "-0", "x", "", "1x"] {
        let err = parse_delay(bad).unwrap_err().to_string();
        assert!(err.contains(&format!("'{bad}'")), "{err}");
    }
}

#[test]
fn host_names_are_checked_before_any_lookup() {
    for good in ["localhost", "example.com", "a-b.c_d.", "x1"] {
        assert!(is_valid_host_name(good), "{good}");
    }
    let long_label = "a".repeat(64);
    for bad in [
        "",
        "bad host",
        "-a.com",
        "a-.com",
        "a..b",
        "ex!ample",
        &long_label,
    ] {
        assert!(!is_valid_host_name(bad), "{bad}");
    }
}

#[tokio::test]
async fn resolve_takes_ip_literals_and_rejects_garbage_without_dns() {
    assert_eq!(resolve("127.0.0.1", None).await.unwrap(), LOOPBACK);
    assert_eq!(resolve(" ::1 ", None).await.unwrap(), ip("::1"));
    assert_eq!(resolve("[::1]", None).await.unwrap(), ip("::1"));
    let err = resolve("no such host!", None).await.unwrap_err();
    assert!(err.is_bad_input());
    assert!(err.to_string().contains("'no such host!'"), "{err}");
}

#[tokio::test]
async fn resolve_matches_the_family_of_the_source() {
    let err = resolve("::1", Some(ip("127.0.0.2"))).await.unwrap_err();
    assert!(matches!(err, ClientError::FamilyMismatch { .. }), "{err}");
    assert!(err.is_bad_input());
    // localhost comes from /etc/hosts: no packet leaves the machine.
    assert_eq!(
        resolve("localhost", Some(ip("127.0.0.2"))).await.unwrap(),
        LOOPBACK
    );
}

#[test]
fn wrong_sequences_are_wrong_from_the_first_knock() {
    let cases: [(&str, &[u16]); 4] = [
        ("1234,5678,9012", &[9012, 5678, 1234]),
        ("1111,2222,1111", &[2222, 1111, 1111]),
        ("1111,1111,2222", &[2222, 1111, 1111]),
        ("7,7", &[8, 7]),
    ];
    for (text, expected) in cases {
        let seq: Sequence = text.parse().unwrap();
        let wrong = wrong_sequence(&seq);
        assert_eq!(wrong, expected, "{text}");
        assert_ne!(wrong[0], seq.ports()[0], "{text}");
    }
    let top: Sequence = "65535".parse().unwrap();
    assert_eq!(wrong_sequence(&top), vec![1]);
}

#[tokio::test]
async fn knocks_arrive_in_order_from_the_source_with_the_delay() {
    let first = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
    let second = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
    let ports = [
        first.local_addr().unwrap().port(),
        second.local_addr().unwrap().port(),
    ];
    let mut seen = Vec::new();
    let started = Instant::now();
    send_knocks(
        LOOPBACK,
        &ports.map(KnockPort::udp),
        Duration::from_millis(100),
        Some(ip("127.0.0.3")),
        |index, knock| seen.push((index, knock.port)),
    )
    .await
    .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(95));
    assert_eq!(seen, vec![(1, ports[0]), (2, ports[1])]);
    let mut buf = [0u8; 64];
    for socket in [&first, &second] {
        let (n, from) = tokio::time::timeout(TIMEOUT, socket.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], KNOCK_PAYLOAD);
        assert_eq!(from.ip(), ip("127.0.0.3"));
    }
}

#[tokio::test]
async fn a_source_that_is_not_ours_is_bad_input() {
    // Binding sends nothing; 192.0.2.1 (TEST-NET-1) is on no interface here.
    let err = send_knocks(
        LOOPBACK,
        &[KnockPort::udp(9)],
        Duration::ZERO,
        Some(ip("192.0.2.1")),
        |_, _| {},
    )
    .await
    .unwrap_err();
    assert!(err.is_bad_input(), "{err}");
    assert!(err.to_string().contains("192.0.2.1"), "{err}");
}

#[tokio::test]
async fn a_listener_that_keeps_the_connection_is_open() {
    let (listener, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(stream);
    });
    let started = Instant::now();
    assert_eq!(
        check_port(addr, None, TIMEOUT).await.unwrap(),
        PortState::Open
    );
    assert!(started.elapsed() < TIMEOUT);
    server.abort();
}

#[tokio::test]
async fn a_listener_that_greets_is_open_at_once() {
    let (listener, addr) = listener().await;
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let _ = stream.write_all(b"Welcome\n").await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    });
    let started = Instant::now();
    assert_eq!(
        check_port(addr, None, TIMEOUT).await.unwrap(),
        PortState::Open
    );
    assert!(started.elapsed() < PROBE_WINDOW);
}

#[tokio::test]
async fn a_listener_that_resets_like_the_gate_is_closed() {
    let (listener, addr) = listener().await;
    tokio::spawn(async move {
        for _ in 0..2 {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let _ = SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            drop(stream);
        }
    });
    assert_eq!(
        check_port(addr, None, TIMEOUT).await.unwrap(),
        PortState::Closed
    );
}

#[tokio::test]
async fn a_listener_that_closes_at_once_is_closed() {
    let (listener, addr) = listener().await;
    tokio::spawn(async move {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        drop(stream);
    });
    assert_eq!(
        check_port(addr, None, TIMEOUT).await.unwrap(),
        PortState::Closed
    );
}

#[tokio::test]
async fn no_listener_is_closed() {
    let (listener, addr) = listener().await;
    drop(listener);
    assert_eq!(
        check_port(addr, None, TIMEOUT).await.unwrap(),
        PortState::Closed
    );
}

#[tokio::test]
async fn a_full_accept_queue_drops_the_syn_so_the_port_looks_filtered() {
    // Linux drops a SYN when the listener's accept queue is full: the same
    // silence a DROP rule gives, without leaving loopback.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::new(LOOPBACK, 0).into()).unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let mut held = Vec::new();
    for _ in 0..8 {
        match tokio::time::timeout(
            Duration::from_millis(300),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(Ok(stream)) => held.push(stream),
            _ => break,
        }
    }
    assert!(held.len() < 8, "the accept queue never filled");
    let started = Instant::now();
    let state = check_port(addr, None, Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(state, PortState::Filtered);
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn the_check_comes_from_the_source_address() {
    let (listener, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (mut stream, peer) = listener.accept().await.unwrap();
        let _ = stream.write_all(b"hi").await;
        peer.ip()
    });
    let state = check_port(addr, Some(ip("127.0.0.4")), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(state, PortState::Open);
    assert_eq!(server.await.unwrap(), ip("127.0.0.4"));
}

#[test]
fn connect_errors_are_classified() {
    use io::ErrorKind::*;
    let class = |kind| classify_connect_error(&io::Error::from(kind));
    assert_eq!(class(ConnectionRefused), Some(PortState::Closed));
    assert_eq!(class(ConnectionReset), Some(PortState::Closed));
    assert_eq!(class(TimedOut), Some(PortState::Filtered));
    assert_eq!(class(HostUnreachable), Some(PortState::Filtered));
    assert_eq!(class(NetworkUnreachable), Some(PortState::Filtered));
    assert_eq!(class(AddrNotAvailable), None);
    assert_eq!(class(PermissionDenied), None);
}

#[test]
fn probes_are_classified() {
    assert_eq!(classify_probe(None), PortState::Open);
    assert_eq!(classify_probe(Some(Ok(1))), PortState::Open);
    assert_eq!(classify_probe(Some(Ok(0))), PortState::Closed);
    let reset = io::Error::from(io::ErrorKind::ConnectionReset);
    assert_eq!(classify_probe(Some(Err(reset))), PortState::Closed);
}

#[test]
fn knocks_take_knockds_protocol_suffixes_and_a_bare_port_is_udp() {
    use crate::client::knocks::Knocks;
    use crate::config::Proto;
    let knocks: Knocks = "1234:tcp, 5678,9012:udp,22:TCP".parse().unwrap();
    let protos: Vec<(u16, Proto)> = knocks.knocks().iter().map(|k| (k.port, k.proto)).collect();
    assert_eq!(
        protos,
        [
            (1234, Proto::Tcp),
            (5678, Proto::Udp),
            (9012, Proto::Udp),
            (22, Proto::Tcp)
        ]
    );
    assert_eq!(knocks.to_string(), "1234:tcp,5678,9012,22:tcp");
    assert_eq!(knocks.sequence().ports(), [1234, 5678, 9012, 22]);
    let wrong: Vec<String> = knocks.wrong().iter().map(ToString::to_string).collect();
    assert_eq!(wrong, ["22:tcp", "9012", "5678", "1234:tcp"]);
    for (text, message) in [
        (
            "1234:sctp",
            "invalid knock '1234:sctp': expected PORT, PORT:udp or PORT:tcp with PORT from 1 to 65535",
        ),
        (
            "1234,0:tcp",
            "invalid knock '0:tcp': expected PORT, PORT:udp or PORT:tcp with PORT from 1 to 65535",
        ),
        (
            "",
            "invalid sequence '': expected 1 to 64 comma-separated ports, e.g. 1234,5678,9012",
        ),
    ] {
        let err = text.parse::<Knocks>().unwrap_err();
        assert_eq!(err.to_string(), message, "{text}");
    }
    let long = vec!["1"; 65].join(",");
    assert!(long.parse::<Knocks>().is_err());
}

#[tokio::test]
async fn a_tcp_knock_to_a_closed_port_is_sent_without_error_and_without_waiting() {
    let closed = std::net::TcpListener::bind((LOOPBACK, 0)).unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    send_knocks(
        LOOPBACK,
        &[
            KnockPort {
                port,
                proto: crate::config::Proto::Tcp,
            },
            KnockPort::udp(port),
        ],
        Duration::ZERO,
        None,
        |_, _| {},
    )
    .await
    .unwrap();
}
