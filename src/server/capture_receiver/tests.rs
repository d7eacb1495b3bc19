//! The capture receiver with a fake source: a Unix datagram socket whose
//! datagrams are `stamp (8 bytes, big-endian) ++ IP packet`, so the test
//! decides what the "kernel" captured and when.

use std::net::IpAddr;
use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::capture::CaptureKind;
use crate::config::{ServerConfig, file};
use crate::firewall::recording::{Call, CallLog, RecordingFirewall};
use crate::firewall_worker::FirewallWorker;
use crate::server::ServerSettings;
use crate::spa_listener::CapturedSpa;

struct FakeSource {
    socket: UnixDatagram,
    buf: Vec<u8>,
    drops: u64,
}

impl AsRawFd for FakeSource {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

impl CaptureSource for FakeSource {
    fn drain(&mut self, each: &mut dyn FnMut(RawPacket<'_>)) -> io::Result<usize> {
        let mut read = 0;
        // Batches of 4, like a real source's recvmmsg.
        while read < 4 {
            match self.socket.recv(&mut self.buf) {
                Ok(n) if n >= 8 => {
                    let stamp = u64::from_be_bytes(self.buf[..8].try_into().unwrap());
                    each(RawPacket {
                        ip: &self.buf[8..n],
                        stamp_ns: stamp,
                    });
                    read += 1;
                }
                Ok(_) => read += 1,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) => return Err(err),
            }
        }
        self.drops += 1;
        Ok(read)
    }

    fn kernel_drops(&mut self) -> u64 {
        self.drops
    }

    fn kind(&self) -> CaptureKind {
        CaptureKind::Packet
    }
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const RST: u8 = 0x04;

fn v4(protocol: u8, source: [u8; 4], segment: &[u8]) -> Vec<u8> {
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&((20 + segment.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 1, 0x40, 0, 64, protocol, 0, 0]);
    ip.extend_from_slice(&source);
    ip.extend_from_slice(&[192, 0, 2, 1]);
    ip.extend_from_slice(segment);
    ip
}

fn udp(source: [u8; 4], port: u16, payload: &[u8]) -> Vec<u8> {
    let mut seg = vec![0x9c, 0x40];
    seg.extend_from_slice(&port.to_be_bytes());
    seg.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    seg.extend_from_slice(&[0, 0]);
    seg.extend_from_slice(payload);
    v4(17, source, &seg)
}

fn tcp(source: [u8; 4], port: u16, flags: u8) -> Vec<u8> {
    let mut seg = vec![0x9c, 0x40];
    seg.extend_from_slice(&port.to_be_bytes());
    seg.extend_from_slice(&[0; 8]);
    seg.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    v4(6, source, &seg)
}

const CLIENT: [u8; 4] = [192, 0, 2, 7];

/// A door knocked `1234:udp 5678:tcp 9012:udp`, protecting tcp/2222.
fn settings() -> ServerSettings {
    let text = r#"
        [[door]]
        name = "mixed"
        sequence = ["1234:udp", "5678:tcp", "9012:udp"]
        protected = ["tcp/2222"]
    "#;
    let config: ServerConfig = file::parse(std::path::Path::new("t.toml"), text).unwrap();
    ServerSettings::from_config(&config)
}

struct Rig {
    inject: UnixDatagram,
    calls: CallLog,
    counters: Arc<Counters>,
    spa: std::sync::mpsc::Receiver<CapturedSpa>,
    stop: crate::shutdown::Stopper,
    task: tokio::task::JoinHandle<()>,
    _worker: FirewallWorker,
    stamp: u64,
}

async fn start() -> Rig {
    let calls: CallLog = Arc::new(Mutex::new(Vec::new()));
    let counters = Arc::new(Counters::new());
    let (changes, _failed, worker) = FirewallWorker::start(
        Box::new(RecordingFirewall::new(calls.clone())),
        counters.clone(),
    )
    .await
    .unwrap();
    let engine = Arc::new(Engine::new(&settings(), changes, counters.clone()));
    let (inject, theirs) = UnixDatagram::pair().unwrap();
    theirs.set_nonblocking(true).unwrap();
    let source = Box::new(FakeSource {
        socket: theirs,
        buf: vec![0; 4096],
        drops: 0,
    });
    let (tap, spa) = SpaTap::new(Arc::default());
    let route = SpaRoute { port: 62201, tap };
    let (stop, stop_rx) = Shutdown::new();
    let (_reload_tx, reloads) = mpsc::channel(1);
    let task = tokio::spawn(receive_captured(
        source,
        engine,
        counters.clone(),
        Some(route),
        stop_rx,
        reloads,
    ));
    Rig {
        inject,
        calls,
        counters,
        spa,
        stop,
        task,
        _worker: worker,
        stamp: crate::server::order::realtime_ns() - 1_000_000,
    }
}

impl Rig {
    fn send(&mut self, packet: &[u8]) {
        self.stamp += 1_000;
        let mut datagram = self.stamp.to_be_bytes().to_vec();
        datagram.extend_from_slice(packet);
        self.inject.send(&datagram).unwrap();
    }

    /// Waits (bounded, real time: the firewall worker is a thread) until
    /// the counters show `decisions` decisions.
    async fn decided(&self, decisions: u64) -> crate::counters::CountersSnapshot {
        for _ in 0..400 {
            let snapshot = self.counters.snapshot();
            if snapshot.decisions() >= decisions {
                return snapshot;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("never decided {decisions}: {}", self.counters.snapshot());
    }

    async fn granted(&self) -> bool {
        for _ in 0..400 {
            let calls = self.calls.lock().unwrap().clone();
            if calls.iter().any(|c| matches!(c, Call::Grant(..))) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        false
    }

    async fn finish(self) {
        self.stop.stop();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

#[tokio::test]
async fn a_mixed_udp_and_tcp_sequence_opens_and_other_tcp_flags_change_nothing() {
    let mut rig = start().await;
    rig.send(&udp(CLIENT, 1234, b""));
    // Between correct knocks: ACK, RST and SYN+ACK to the next and the
    // other knock ports; none advances or breaks the sequence.
    for port in [5678, 1234, 9012] {
        for flags in [ACK, RST, SYN | ACK] {
            rig.send(&tcp(CLIENT, port, flags));
        }
    }
    rig.send(&tcp(CLIENT, 5678, SYN));
    rig.send(&tcp(CLIENT, 9012, ACK));
    rig.send(&udp(CLIENT, 9012, b"knock"));
    let snapshot = rig.decided(3).await;
    assert!(rig.granted().await, "{snapshot}");
    assert_eq!(
        (snapshot.grants, snapshot.lockouts, snapshot.progress),
        (1, 0, 2),
        "{snapshot}"
    );
    assert_eq!(
        (
            snapshot.capture_udp,
            snapshot.capture_tcp,
            snapshot.capture_ignored
        ),
        (2, 1, 10),
        "{snapshot}"
    );
    assert_eq!(snapshot.packets, 3, "only knocks are knock packets");
    assert!(
        snapshot.capture_drops > 0,
        "the source's drops are published"
    );
    let calls = rig.calls.lock().unwrap().clone();
    let grant = calls.iter().find(|c| matches!(c, Call::Grant(..))).unwrap();
    assert!(
        matches!(grant, Call::Grant(ip, 2222, _) if *ip == IpAddr::from(CLIENT)),
        "{grant:?}"
    );
    rig.finish().await;
}

#[tokio::test]
async fn a_wrong_syn_breaks_the_sequence_like_a_wrong_udp_knock() {
    let mut rig = start().await;
    rig.send(&udp(CLIENT, 1234, b""));
    rig.send(&tcp(CLIENT, 1234, SYN)); // 1234 is a UDP knock: tcp/1234 is no door's
    rig.send(&udp(CLIENT, 5678, b"")); // 5678 is a TCP knock: wrong
    let snapshot = rig.decided(2).await;
    assert_eq!((snapshot.progress, snapshot.lockouts), (1, 1), "{snapshot}");
    rig.finish().await;
}

#[tokio::test]
async fn spa_port_payloads_go_to_the_spa_pipeline_with_their_sender() {
    let mut rig = start().await;
    rig.send(&udp([198, 51, 100, 9], 62201, b"an spa packet"));
    rig.send(&tcp(CLIENT, 62201, SYN)); // TCP to the SPA port: no knock, no SPA
    rig.send(&udp(CLIENT, 1234, b""));
    rig.decided(1).await;
    let got = tokio::task::spawn_blocking(move || {
        let got = rig.spa.recv_timeout(Duration::from_secs(5)).unwrap();
        (got.payload().to_vec(), got.source(), rig)
    })
    .await
    .unwrap();
    let (payload, source, rig) = got;
    assert_eq!(payload, b"an spa packet");
    assert_eq!(source, IpAddr::from([198, 51, 100, 9]));
    let snapshot = rig.counters.snapshot();
    assert_eq!(
        (snapshot.capture_spa, snapshot.capture_udp),
        (1, 1),
        "{snapshot}"
    );
    rig.finish().await;
}

#[tokio::test]
async fn knocks_read_out_of_order_are_judged_in_stamp_order() {
    let rig = start().await;
    // The second knock was read first (another interface's socket).
    let base = rig.stamp;
    let send_at = |stamp: u64, packet: Vec<u8>| {
        let mut datagram = stamp.to_be_bytes().to_vec();
        datagram.extend_from_slice(&packet);
        rig.inject.send(&datagram).unwrap();
    };
    send_at(base + 20, tcp(CLIENT, 5678, SYN));
    send_at(base + 10, udp(CLIENT, 1234, b""));
    send_at(base + 30, udp(CLIENT, 9012, b""));
    let snapshot = rig.decided(3).await;
    assert_eq!((snapshot.grants, snapshot.lockouts), (1, 0), "{snapshot}");
    rig.finish().await;
}

#[test]
fn unparsable_packets_are_counted_as_ignored() {
    let mut order = KnockOrder::new(16);
    order.begin(u64::MAX);
    let mut tally = Tally::default();
    for junk in [&[][..], &[0x45, 0, 0][..], &[0x60; 39][..]] {
        route(
            RawPacket {
                ip: junk,
                stamp_ns: 1,
            },
            None,
            &mut order,
            &mut tally,
            5,
        );
    }
    assert_eq!(tally.ignored, 3);
    assert_eq!(order.held(), 0);
    // No stamp: dated by the pass.
    let packet = udp(CLIENT, 1234, b"");
    route(
        RawPacket {
            ip: &packet,
            stamp_ns: 0,
        },
        None,
        &mut order,
        &mut tally,
        5,
    );
    assert_eq!(order.pending()[0].stamp, 5);
}
