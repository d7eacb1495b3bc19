use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::*;
use crate::firewall::recording::{Call, CallLog, RecordingFirewall};

/// A recording backend whose rules someone else can "flush" (`broken`),
/// and that panics on a grant for port 0.
struct Drifting {
    inner: RecordingFirewall,
    broken: Arc<AtomicBool>,
    /// Someone flushed the grants (e.g. `nft flush set`), structure intact.
    flushed: Arc<AtomicBool>,
}

impl Firewall for Drifting {
    fn name(&self) -> &'static str {
        "drifting"
    }
    fn setup(&mut self) -> Result<(), FirewallError> {
        self.broken.store(false, Ordering::SeqCst);
        self.inner.setup()
    }
    fn grant(&mut self, ip: IpAddr, port: u16, ttl: Duration) -> Result<(), FirewallError> {
        assert_ne!(port, 0, "a backend bug");
        self.inner.grant(ip, port, ttl)
    }
    fn revoke(&mut self, ip: IpAddr, port: u16) -> Result<(), FirewallError> {
        self.inner.revoke(ip, port)
    }
    fn teardown(&mut self) -> Result<(), FirewallError> {
        self.inner.teardown()
    }
    fn verify(&mut self) -> Result<Vec<String>, FirewallError> {
        Ok(match self.broken.load(Ordering::SeqCst) {
            true => vec!["chain".into()],
            false => Vec::new(),
        })
    }
    fn verify_every(&self) -> Option<Duration> {
        Some(Duration::from_millis(10))
    }
    fn missing_grants(&mut self, live: &[Change]) -> Result<Vec<Change>, FirewallError> {
        Ok(match self.flushed.swap(false, Ordering::SeqCst) {
            true => live.to_vec(),
            false => Vec::new(),
        })
    }
}

fn drifting() -> (Box<dyn Firewall>, CallLog, Arc<AtomicBool>) {
    let (fw, calls, broken, _) = drifting_grants();
    (fw, calls, broken)
}

/// [`drifting`], with the switch that flushes the grants.
fn drifting_grants() -> (Box<dyn Firewall>, CallLog, Arc<AtomicBool>, Arc<AtomicBool>) {
    let calls = CallLog::default();
    let broken = Arc::new(AtomicBool::new(false));
    let flushed = Arc::new(AtomicBool::new(false));
    let fw = Drifting {
        inner: RecordingFirewall::new(calls.clone()),
        broken: broken.clone(),
        flushed: flushed.clone(),
    };
    (Box::new(fw), calls, broken, flushed)
}

fn calls(log: &CallLog) -> Vec<Call> {
    log.lock().unwrap().clone()
}

/// Waits (bounded) until `done` holds of the calls.
async fn wait_for(log: &CallLog, done: impl Fn(&[Call]) -> bool) {
    for _ in 0..500 {
        if done(&calls(log)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("not reached: {:?}", calls(log));
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[tokio::test]
async fn drift_is_repaired_with_setup_and_the_live_grants() {
    let (fw, log, broken) = drifting();
    let (tx, _failed, worker) = FirewallWorker::start(fw, Arc::new(Counters::new()))
        .await
        .unwrap();
    let ttl = Duration::from_secs(7);
    worker.live_grants(move || {
        vec![Change::Grant {
            ip: ip("192.0.2.2"),
            port: 2222,
            ttl,
        }]
    });
    // Intact rules: checks run, nothing is repaired.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(calls(&log), vec![Call::Setup]);

    broken.store(true, Ordering::SeqCst);
    let grant = Call::Grant(ip("192.0.2.2"), 2222, ttl);
    wait_for(&log, |c| c.contains(&grant)).await;
    assert_eq!(calls(&log), vec![Call::Setup, Call::Setup, grant]);
    assert!(!broken.load(Ordering::SeqCst));
    drop(tx);
    worker.finish().await;
    assert_eq!(calls(&log).last(), Some(&Call::Teardown));
}

#[tokio::test]
async fn flushed_grants_are_re_added_alone_without_a_setup() {
    let (fw, log, _, flushed) = drifting_grants();
    let (tx, _failed, worker) = FirewallWorker::start(fw, Arc::new(Counters::new()))
        .await
        .unwrap();
    let ttl = Duration::from_millis(4200);
    worker.live_grants(move || {
        vec![Change::Grant {
            ip: ip("192.0.2.3"),
            port: 2222,
            ttl,
        }]
    });
    flushed.store(true, Ordering::SeqCst);
    let grant = Call::Grant(ip("192.0.2.3"), 2222, ttl);
    wait_for(&log, |c| c.contains(&grant)).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The remaining time, once, and no setup: the structure was intact.
    assert_eq!(calls(&log), vec![Call::Setup, grant]);
    drop(tx);
    worker.finish().await;
}

#[tokio::test]
async fn a_panicking_backend_is_torn_down_and_closes_the_queue() {
    let (fw, log, _) = drifting();
    let (tx, _failed, worker) = FirewallWorker::start(fw, Arc::new(Counters::new()))
        .await
        .unwrap();
    tx.send(Change::Grant {
        ip: ip("192.0.2.2"),
        port: 0,
        ttl: Duration::from_secs(1),
    })
    .await
    .unwrap();
    wait_for(&log, |c| c.contains(&Call::Teardown)).await;
    // The thread ended and its queue is closed: senders see it.
    for _ in 0..500 {
        if worker.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(worker.is_finished());
    assert!(tx.is_closed());
    assert!(
        tx.send(Change::Revoke {
            ip: ip("192.0.2.2"),
            port: 1
        })
        .await
        .is_err()
    );
    worker.finish().await;
}
