//! Tests of the protected service: exact bytes, timing, the cap, shutdown.
//! Network tests use 127.0.0.1 port 0 only.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn settings(close_after: Duration, max_connections: usize) -> ServiceSettings {
    ServiceSettings {
        flag: "FLAG{test}".to_string(),
        close_after,
        max_connections,
    }
}

/// Starts the service on 127.0.0.1 port 0; returns its address and the
/// sender that stops it.
async fn start(
    settings: ServiceSettings,
) -> (
    SocketAddr,
    crate::shutdown::Stopper,
    tokio::task::JoinHandle<io::Result<()>>,
) {
    let listener = bind_listener(SocketAddr::new(LOOPBACK, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, shutdown) = Shutdown::new();
    let handle = tokio::spawn(run(vec![listener], settings, shutdown));
    (addr, tx, handle)
}

async fn read_all(stream: &mut TcpStream, limit: Duration) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    tokio::time::timeout(limit, stream.read_to_end(&mut buf))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no EOF in time"))??;
    Ok(buf)
}

#[test]
fn seconds_are_formatted_like_the_seed() {
    assert_eq!(format_seconds(Duration::from_secs(3)), "3");
    assert_eq!(format_seconds(Duration::from_secs(60)), "60");
    assert_eq!(format_seconds(Duration::from_millis(500)), "0.5");
    assert_eq!(format_seconds(Duration::from_millis(1250)), "1.25");
    assert_eq!(format_seconds(Duration::from_millis(100)), "0.1");
}

#[test]
fn the_default_greeting_is_the_seeds_four_lines() {
    let text = greeting(&ServiceSettings::default());
    assert_eq!(
        text,
        "Welcome to the protected service!\n\
         You successfully knocked and gained access.\n\
         FLAG{port_knock1ng_m4st3r_2024}\n\
         Connection will close in 3 seconds...\n"
    );
    assert_eq!(text.lines().count(), 4);
}

#[test]
fn the_greeting_names_the_configured_flag_and_delay() {
    let text = greeting(&settings(Duration::from_millis(500), 1));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[2], "FLAG{test}");
    assert_eq!(lines[3], "Connection will close in 0.5 seconds...");
}

#[test]
fn max_connections_must_be_in_range() {
    assert_eq!(parse_max_connections("1").unwrap(), 1);
    assert_eq!(parse_max_connections(" 64 ").unwrap(), 64);
    for bad in ["0", "-1", "x", "", "1.5", "1000001"] {
        let err = parse_max_connections(bad).unwrap_err().to_string();
        assert!(err.contains(&format!("'{bad}'")), "{err}");
    }
}

#[tokio::test]
async fn serve_connection_writes_the_greeting_then_closes_after_the_delay() {
    let (mut client, server) = tokio::io::duplex(4096);
    let settings = settings(Duration::from_millis(300), 1);
    let expected = greeting(&settings);
    let started = Instant::now();
    let serving = tokio::spawn(async move { serve_connection(server, &settings).await });
    let mut got = Vec::new();
    client.read_to_end(&mut got).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(String::from_utf8(got).unwrap(), expected);
    assert!(elapsed >= Duration::from_millis(290), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    serving.await.unwrap().unwrap();
}

#[tokio::test]
async fn serve_connection_ends_early_when_the_peer_closes() {
    let (mut client, server) = tokio::io::duplex(4096);
    let settings = settings(Duration::from_secs(30), 1);
    let serving = tokio::spawn(async move { serve_connection(server, &settings).await });
    let mut line = [0u8; 10];
    client.read_exact(&mut line).await.unwrap();
    drop(client);
    tokio::time::timeout(Duration::from_secs(2), serving)
        .await
        .expect("serve_connection should end when the peer closes")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn serve_connection_ignores_what_the_peer_sends() {
    let (mut client, server) = tokio::io::duplex(4096);
    let settings = settings(Duration::from_millis(200), 1);
    let expected = greeting(&settings);
    let serving = tokio::spawn(async move { serve_connection(server, &settings).await });
    client.write_all(b"hello\nGET / HTTP/1.0\n").await.unwrap();
    let mut got = Vec::new();
    client.read_to_end(&mut got).await.unwrap();
    assert_eq!(String::from_utf8(got).unwrap(), expected);
    serving.await.unwrap().unwrap();
}

#[tokio::test]
async fn run_serves_the_exact_greeting_over_tcp() {
    let settings = settings(Duration::from_millis(200), 4);
    let expected = greeting(&settings);
    let (addr, stop, handle) = start(settings).await;
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let got = read_all(&mut stream, Duration::from_secs(5)).await.unwrap();
    assert_eq!(String::from_utf8(got).unwrap(), expected);
    assert!(started.elapsed() >= Duration::from_millis(190));
    stop.stop();
    handle.await.unwrap().unwrap();
}

#[tokio::test]
async fn at_the_cap_a_new_connection_is_closed_at_once() {
    let settings = settings(Duration::from_secs(10), 2);
    let (addr, stop, handle) = start(settings).await;
    // Two connections take both permits: each has had its greeting.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut first = [0u8; 7];
        stream.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"Welcome");
        held.push(stream);
    }
    // The third is accepted by the kernel, then closed without a byte.
    let mut third = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    match read_all(&mut third, Duration::from_secs(2)).await {
        Ok(bytes) => assert!(bytes.is_empty(), "got {bytes:?}"),
        Err(err) => assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    // Freeing a permit lets the next connection in.
    drop(held.pop());
    let mut next = None;
    for _ in 0..50 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut first = [0u8; 7];
        if stream.read_exact(&mut first).await.is_ok() {
            next = Some(first);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(next.as_ref().map(|b| &b[..]), Some(&b"Welcome"[..]));
    stop.stop();
    handle.await.unwrap().unwrap();
}

#[tokio::test]
async fn shutdown_closes_open_connections_and_returns() {
    let settings = settings(Duration::from_secs(30), 4);
    let expected = greeting(&settings);
    let (addr, stop, handle) = start(settings).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut first = [0u8; 7];
    stream.read_exact(&mut first).await.unwrap();
    stop.stop();
    tokio::time::timeout(Duration::from_secs(2), handle)
        .await
        .expect("run should return promptly after shutdown")
        .unwrap()
        .unwrap();
    // The rest of the greeting, then EOF long before the 30 s delay.
    let rest = read_all(&mut stream, Duration::from_secs(2)).await.unwrap();
    assert_eq!(rest.len() + 7, expected.len());
}

#[tokio::test]
async fn run_refuses_an_empty_listener_list() {
    let (_stopper, shutdown) = Shutdown::new();
    let err = run(Vec::new(), ServiceSettings::default(), shutdown)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

#[tokio::test]
async fn an_explicit_address_that_is_not_ours_is_an_error() {
    // Binding sends nothing; 192.0.2.1 (TEST-NET-1) is on no interface here.
    let ip: IpAddr = "192.0.2.1".parse().unwrap();
    let err = bind_listeners(&[ip], 0).unwrap_err().to_string();
    assert!(err.contains("192.0.2.1"), "{err}");
    let listeners = bind_listeners(&[LOOPBACK], 0).unwrap();
    assert_eq!(listeners.len(), 1);
}
