//! Issue 9, item 2: a server task that ends before shutdown (a panic or a
//! return), or a firewall worker that dies, stops `run_with` with an error
//! naming it, through the normal teardown. Real time (the firewall worker
//! is a thread), each run bounded.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::KnockRules;
use crate::firewall::recording::{Call, CallLog, RecordingFirewall};
use crate::server::*;

/// Far longer than any of these runs takes; reaching it fails the test.
const BOUND: Duration = Duration::from_secs(20);

fn settings() -> ServerSettings {
    ServerSettings {
        rules: KnockRules::default(),
        protected_port: 2222,
        max_grants: crate::grants::DEFAULT_MAX_GRANTS,
        doors: Vec::new(),
    }
}

/// Runs the server with `listeners`, no knock sockets and a shutdown that
/// never comes; returns how it ended and the backend's calls.
async fn run_until_it_stops(
    listeners: Vec<Listener>,
    firewall: impl FnOnce(CallLog) -> Box<dyn Firewall>,
) -> (Result<(), ServerError>, Vec<Call>) {
    let calls: CallLog = Arc::new(Mutex::new(Vec::new()));
    let (_never, shutdown) = Shutdown::new();
    let run = run_with(
        settings(),
        Vec::new(),
        listeners,
        firewall(calls.clone()),
        Arc::new(Counters::new()),
        shutdown,
    );
    let result = tokio::time::timeout(BOUND, run)
        .await
        .expect("the server kept running after a task ended");
    let calls = calls.lock().unwrap().clone();
    (result, calls)
}

fn recording(calls: CallLog) -> Box<dyn Firewall> {
    Box::new(RecordingFirewall::new(calls))
}

/// A listener that grants access to 127.0.0.9, then runs until stopped.
fn granting() -> Listener {
    Listener::new("granting", |engine, stop| async move {
        engine
            .grant(IpAddr::from([127, 0, 0, 9]), 2222, 60 * SEC)
            .await
            .unwrap();
        stop.stopped().await;
    })
}

const SEC: Duration = Duration::from_secs(1);

#[tokio::test]
async fn a_listener_that_panics_stops_the_server_through_teardown() {
    let boom = Listener::new("boom", |_, _| async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        panic!("boom");
    });
    let (result, calls) = run_until_it_stops(vec![granting(), boom], recording).await;
    match result {
        Err(ServerError::TaskEnded { task, reason }) => {
            assert_eq!(task, "boom");
            assert!(reason.contains("panicked: boom"), "{reason}");
        }
        other => panic!("expected TaskEnded, got {other:?}"),
    }
    assert_eq!(calls.first(), Some(&Call::Setup));
    assert!(
        calls.contains(&Call::Grant(IpAddr::from([127, 0, 0, 9]), 2222, 60 * SEC)),
        "{calls:?}"
    );
    assert_eq!(calls.last(), Some(&Call::Teardown), "{calls:?}");
}

#[tokio::test]
async fn a_listener_that_returns_stops_the_server_through_teardown() {
    let quits = Listener::new("quits", |_, _| async {});
    let (result, calls) = run_until_it_stops(vec![quits], recording).await;
    match result {
        Err(ServerError::TaskEnded { task, reason }) => {
            assert_eq!((task, reason.as_str()), ("quits", "returned"));
        }
        other => panic!("expected TaskEnded, got {other:?}"),
    }
    assert_eq!(calls, vec![Call::Setup, Call::Teardown]);
}

/// Records like [`RecordingFirewall`], but panics on every grant.
#[derive(Debug)]
struct PanickingGrants(RecordingFirewall);

impl Firewall for PanickingGrants {
    fn name(&self) -> &'static str {
        "panicking"
    }
    fn setup(&mut self) -> Result<(), FirewallError> {
        self.0.setup()
    }
    fn grant(&mut self, _: IpAddr, _: u16, _: Duration) -> Result<(), FirewallError> {
        panic!("grant exploded");
    }
    fn revoke(&mut self, ip: IpAddr, port: u16) -> Result<(), FirewallError> {
        self.0.revoke(ip, port)
    }
    fn teardown(&mut self) -> Result<(), FirewallError> {
        self.0.teardown()
    }
}

#[tokio::test]
async fn a_firewall_worker_that_panics_stops_the_server_and_still_tears_down() {
    let (result, calls) = run_until_it_stops(vec![granting()], |calls| {
        Box::new(PanickingGrants(RecordingFirewall::new(calls)))
    })
    .await;
    match result {
        Err(ServerError::TaskEnded { task, .. }) => assert_eq!(task, "firewall worker"),
        other => panic!("expected TaskEnded, got {other:?}"),
    }
    assert_eq!(calls, vec![Call::Setup, Call::Teardown]);
}

#[tokio::test]
async fn a_stop_signal_still_ends_the_server_cleanly() {
    let calls: CallLog = Arc::new(Mutex::new(Vec::new()));
    let (stopper, shutdown) = Shutdown::new();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        stopper.stop();
    });
    let run = run_with(
        settings(),
        Vec::new(),
        vec![granting()],
        recording(calls.clone()),
        Arc::new(Counters::new()),
        shutdown,
    );
    tokio::time::timeout(BOUND, run).await.unwrap().unwrap();
    assert_eq!(calls.lock().unwrap().last(), Some(&Call::Teardown));
}
