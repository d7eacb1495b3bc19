//! The server's actors with a recording backend and a paused clock: grants
//! reach the firewall, expiry revokes on time, failures roll back, shutdown
//! tears down. Knocks go straight to the engine (no sockets), so pausing
//! time is sound.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::config::KnockRules;
use crate::firewall::Change;
use crate::firewall::recording::{Call, CallLog, RecordingFirewall};
use crate::grants::GrantChange;
use crate::knock::Verdict;

const SEC: Duration = Duration::from_secs(1);

fn settings() -> ServerSettings {
    ServerSettings {
        rules: KnockRules {
            access: 30 * SEC,
            ..KnockRules::default()
        },
        protected_port: 2222,
        max_grants: crate::grants::DEFAULT_MAX_GRANTS,
        doors: Vec::new(),
    }
}

fn ip(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

struct Harness {
    engine: Arc<Engine>,
    calls: CallLog,
    stop: crate::shutdown::Stopper,
    worker: FirewallWorker,
    expiry: tokio::task::JoinHandle<()>,
}

async fn start(firewall: impl FnOnce(CallLog) -> RecordingFirewall) -> Harness {
    let calls: CallLog = Arc::new(Mutex::new(Vec::new()));
    let counters = Arc::new(Counters::new());
    let (changes, failed, worker) =
        FirewallWorker::start(Box::new(firewall(calls.clone())), counters.clone())
            .await
            .unwrap();
    let engine = Arc::new(Engine::new(&settings(), changes, counters));
    let (stop, stop_rx) = crate::shutdown::Shutdown::new();
    let expiry = tokio::spawn({
        let engine = engine.clone();
        async move { engine.run_expiry(stop_rx, failed).await }
    });
    Harness {
        engine,
        calls,
        stop,
        worker,
        expiry,
    }
}

impl Harness {
    async fn knock_sequence(&self, source: IpAddr) -> Verdict {
        let mut last = None;
        for port in [1234, 5678, 9012] {
            last = Some(self.engine.handle_knock(source, port).await);
        }
        last.unwrap()
    }

    /// Lets the worker thread catch up (real time: it is a thread).
    async fn calls_settled(&self, expected: usize) -> Vec<Call> {
        for _ in 0..200 {
            let calls = self.calls.lock().unwrap().clone();
            if calls.len() >= expected {
                return calls;
            }
            std::thread::sleep(Duration::from_millis(5));
            tokio::task::yield_now().await;
        }
        self.calls.lock().unwrap().clone()
    }

    async fn stop(self) -> Vec<Call> {
        self.stop.stop();
        self.expiry.await.unwrap();
        drop(self.engine);
        self.worker.finish().await;
        self.calls.lock().unwrap().clone()
    }
}

#[tokio::test(start_paused = true)]
async fn a_grant_reaches_the_firewall_and_expires_on_time() {
    let h = start(RecordingFirewall::new).await;
    assert!(matches!(
        h.knock_sequence(ip(2)).await,
        Verdict::Grant { .. }
    ));
    let calls = h.calls_settled(2).await;
    assert_eq!(calls, vec![Call::Setup, Call::Grant(ip(2), 2222, 30 * SEC)]);
    assert_eq!(h.engine.open_grants(), 1);

    tokio::time::sleep(29 * SEC).await;
    assert_eq!(h.calls_settled(3).await.len(), 2, "revoked early");
    tokio::time::sleep(2 * SEC).await;
    let calls = h.calls_settled(3).await;
    assert_eq!(calls.last(), Some(&Call::Revoke(ip(2), 2222)));
    assert_eq!(h.engine.open_grants(), 0);
    let calls = h.stop().await;
    assert_eq!(calls.last(), Some(&Call::Teardown));
}

#[tokio::test(start_paused = true)]
async fn renewal_extends_the_grant_and_revokes_once() {
    let h = start(RecordingFirewall::new).await;
    h.knock_sequence(ip(2)).await;
    tokio::time::sleep(20 * SEC).await;
    h.knock_sequence(ip(2)).await;
    tokio::time::sleep(15 * SEC).await;
    // 35 s after the first grant, 15 s after the renewal: still open.
    assert!(
        !h.calls_settled(4)
            .await
            .contains(&Call::Revoke(ip(2), 2222))
    );
    tokio::time::sleep(16 * SEC).await;
    let calls = h.calls_settled(4).await;
    let revokes = calls
        .iter()
        .filter(|c| matches!(c, Call::Revoke(..)))
        .count();
    assert_eq!(revokes, 1);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_grant_is_forgotten_so_state_matches_the_firewall() {
    let h = start(|calls| RecordingFirewall::new(calls).failing_grants()).await;
    h.knock_sequence(ip(3)).await;
    h.calls_settled(2).await;
    for _ in 0..200 {
        if h.engine.open_grants() == 0 {
            break;
        }
        // The firewall thread reports; the expiry task drains the report.
        std::thread::sleep(Duration::from_millis(5));
        tokio::task::yield_now().await;
    }
    assert_eq!(h.engine.open_grants(), 0);
    tokio::time::sleep(40 * SEC).await;
    let calls = h.stop().await;
    assert!(
        !calls.iter().any(|c| matches!(c, Call::Revoke(..))),
        "{calls:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn independent_sources_get_independent_grants() {
    let h = start(RecordingFirewall::new).await;
    h.knock_sequence(ip(2)).await;
    assert!(matches!(
        h.engine.handle_knock(ip(3), 5678).await,
        Verdict::LockedOut { .. }
    ));
    tokio::time::sleep(10 * SEC).await;
    h.knock_sequence(ip(4)).await;
    let calls = h.stop().await;
    assert_eq!(
        calls,
        vec![
            Call::Setup,
            Call::Grant(ip(2), 2222, 30 * SEC),
            Call::Grant(ip(4), 2222, 30 * SEC),
            Call::Teardown
        ]
    );
}

#[tokio::test]
async fn a_failed_setup_starts_nothing() {
    let calls: CallLog = Arc::default();
    let fw = RecordingFirewall::new(calls.clone()).failing_setup();
    let err = FirewallWorker::start(Box::new(fw), Arc::new(Counters::new()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("refused by the test"));
    assert!(calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn run_listens_on_real_sockets_and_tears_down_on_shutdown() {
    let sockets = bind_udp(&[IpAddr::from([127, 0, 0, 1])], &[0]).unwrap();
    let port = sockets[0].local_addr().unwrap().port();
    let rules = KnockRules {
        sequence: crate::config::Sequence::new(vec![port]).unwrap(),
        ..KnockRules::default()
    };
    let settings = ServerSettings {
        rules,
        protected_port: 2222,
        max_grants: crate::grants::DEFAULT_MAX_GRANTS,
        doors: Vec::new(),
    };
    let running = RunningServer::start(settings, sockets);
    let (calls, counters) = (running.calls.clone(), running.counters.clone());
    let client = UdpSocket::bind("127.0.0.7:0").await.unwrap();
    for _ in 0..100 {
        client.send_to(b"knock", ("127.0.0.1", port)).await.unwrap();
        if counters.snapshot().grants > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running.stop().await;
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.first(), Some(&Call::Setup));
    assert!(
        calls.contains(&Call::Grant(ip(7), 2222, 30 * SEC)),
        "{calls:?}"
    );
    assert_eq!(calls.last(), Some(&Call::Teardown));
    assert!(counters.snapshot().packets >= 1);
}

/// Knocks that queued in the kernel on three sockets before the receiver
/// ran (as when neighbour resolution holds them, or the receiver is busy)
/// are judged in the order they arrived, whatever order the sockets are
/// read in: every source gets its grant. Judged socket by socket (the old
/// receivers, one per socket), the third port's knocks came first and
/// every source was locked out.
#[tokio::test]
async fn knocks_queued_on_several_sockets_are_judged_in_arrival_order() {
    const SOURCES: u8 = 200;
    let mut sockets = bind_udp(&[IpAddr::from([127, 0, 0, 1])], &[0, 0, 0]).unwrap();
    let ports: Vec<u16> = sockets
        .iter()
        .map(|s| s.local_addr().unwrap().port())
        .collect();
    let rules = KnockRules {
        sequence: crate::config::Sequence::new(ports.clone()).unwrap(),
        ..KnockRules::default()
    };
    let settings = ServerSettings {
        rules,
        protected_port: 2222,
        max_grants: crate::grants::DEFAULT_MAX_GRANTS,
        doors: Vec::new(),
    };
    receiver::wait_until_arrivals_are_stamped().await;
    for last in 1..=SOURCES {
        let from =
            std::net::UdpSocket::bind((std::net::Ipv4Addr::new(127, 0, 3, last), 0)).unwrap();
        for &port in &ports {
            from.send_to(b"knock", ("127.0.0.1", port)).unwrap();
        }
    }
    // The last port's socket first: read socket by socket, the sequence
    // would be judged backwards.
    sockets.reverse();
    let running = RunningServer::start(settings, sockets);
    let (calls, counters) = (running.calls.clone(), running.counters.clone());
    let expected = 3 * u64::from(SOURCES);
    for _ in 0..500 {
        if counters.snapshot().decisions() >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    running.stop().await;
    let snapshot = counters.snapshot();
    assert_eq!(snapshot.packets, expected, "{snapshot}");
    assert_eq!(snapshot.lockouts, 0, "{snapshot}");
    assert_eq!(snapshot.grants, u64::from(SOURCES), "{snapshot}");
    let calls = calls.lock().unwrap().clone();
    for last in 1..=SOURCES {
        let ip = IpAddr::from([127, 0, 3, last]);
        assert!(calls.contains(&Call::Grant(ip, 2222, 30 * SEC)), "{ip}");
    }
}

/// The whole server (`run`) on real sockets with a recording backend.
struct RunningServer {
    calls: CallLog,
    counters: Arc<Counters>,
    stop: crate::shutdown::Stopper,
    task: tokio::task::JoinHandle<Result<(), ServerError>>,
}

impl RunningServer {
    fn start(settings: ServerSettings, sockets: Vec<UdpSocket>) -> Self {
        let calls: CallLog = Arc::default();
        let counters = Arc::new(Counters::new());
        let (stop, shutdown) = Shutdown::new();
        let task = tokio::spawn(run(
            settings,
            sockets,
            Box::new(RecordingFirewall::new(calls.clone())),
            counters.clone(),
            shutdown,
        ));
        RunningServer {
            calls,
            counters,
            stop,
            task,
        }
    }

    /// Stops the server and waits until it has torn the firewall down.
    async fn stop(self) {
        self.stop.stop();
        self.task.await.unwrap().unwrap();
    }
}

/// Issue 9 item 6: at `max_grants`, knock and SPA grants alike are refused
/// and counted, nothing reaches the firewall for them, and the open grant
/// still renews.
#[tokio::test(start_paused = true)]
async fn at_max_grants_new_grants_are_refused_and_counted_renewals_work() {
    let (changes, mut queued) = tokio::sync::mpsc::channel(16);
    let counters = Arc::new(Counters::new());
    let settings = ServerSettings {
        max_grants: 1,
        ..settings()
    };
    let engine = Engine::new(&settings, changes, counters.clone());
    assert_eq!(engine.grant(ip(1), 2222, SEC).await, Ok(GrantChange::New));
    let refused = engine.grant(ip(2), 2222, SEC).await.unwrap_err();
    assert_eq!((refused.ip, refused.max), (ip(2), 1));
    for port in [1234, 5678, 9012] {
        engine.handle_knock(ip(3), port).await;
    }
    assert_eq!(engine.open_grants(), 1);
    assert_eq!(counters.snapshot().grants_refused, 2);
    assert_eq!(
        engine.grant(ip(1), 2222, SEC).await,
        Ok(GrantChange::Renewed)
    );
    let mut applied = Vec::new();
    while let Ok(change) = queued.try_recv() {
        applied.push(change);
    }
    assert_eq!(
        applied,
        vec![
            Change::Grant {
                ip: ip(1),
                port: 2222,
                ttl: SEC
            },
            Change::Grant {
                ip: ip(1),
                port: 2222,
                ttl: SEC
            },
        ]
    );
}

mod doors;
mod reload;
mod supervision;
