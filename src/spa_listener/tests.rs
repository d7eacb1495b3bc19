//! The listener in process, with a recording backend and real loopback
//! sockets (real time: the clock is not paused while tasks wait on sockets).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::config::KnockRules;
use crate::counters::Counters;
use crate::firewall::recording::{Call, CallLog, RecordingFirewall};
use crate::server::{ServerSettings, bind_udp, run_with};
use crate::spa::{
    AccessConfOptions, DigestType, EncryptionMode, ServerPolicy, SpaKeys, SpaRequest, encode,
    parse_access_conf,
};

const KEY: &str = "kB+G5+KiLS8N2x64DYM+VuPU+Gj7A7uITpF9Y4Ozqms=";
const HMAC: &str =
    "vxdRyChqWMLurmUWJPUNWLPlMI57H9zvx/Gzdt7sS0FtjArdSOTNzBiw9D3HSVKV64jQv4fCM0BHc9VV3SCrjg==";

fn keys() -> SpaKeys {
    use base64::Engine as _;
    let b = |t: &str| base64::engine::general_purpose::STANDARD.decode(t).unwrap();
    SpaKeys::new(
        b(KEY),
        Some(b(HMAC)),
        DigestType::Sha256,
        EncryptionMode::Cbc,
    )
    .unwrap()
}

#[tokio::test]
async fn an_accepted_packet_grants_its_tcp_port_once_and_a_replay_is_refused() {
    let conf = format!(
        "SOURCE ANY\nKEY_BASE64 {KEY}\nHMAC_KEY_BASE64 {HMAC}\nOPEN_PORTS tcp/2222,tcp/8022\nFW_ACCESS_TIMEOUT 40\n"
    );
    let stanzas = parse_access_conf(&conf, AccessConfOptions::default())
        .unwrap()
        .stanzas;
    let verifier = Verifier::new(stanzas, ServerPolicy::default());
    let sockets = bind_udp(&[IpAddr::from([127, 0, 0, 1])], &[0]).unwrap();
    let port = sockets[0].local_addr().unwrap().port();
    let listener = SpaListener::new(sockets, verifier, ReplayCache::in_memory(120));
    let spa = listener.counters();

    let calls: CallLog = Arc::new(Mutex::new(Vec::new()));
    let (tx, shutdown) = crate::shutdown::Shutdown::new();
    let settings = ServerSettings {
        rules: KnockRules::default(),
        protected_port: 2222,
        max_grants: crate::grants::DEFAULT_MAX_GRANTS,
        doors: Vec::new(),
    };
    let server = tokio::spawn(run_with(
        settings,
        Vec::new(),
        vec![listener.into_listener()],
        Box::new(RecordingFirewall::new(calls.clone())),
        Arc::new(Counters::new()),
        shutdown,
    ));

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let request = SpaRequest::new(
        "tester",
        Ipv4Addr::new(127, 0, 0, 5),
        vec!["tcp/8022".parse().unwrap()],
        now,
    );
    let packet = encode(&request, &keys()).unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let wait = |what: fn(&SpaCounters) -> bool| {
        let spa = spa.clone();
        async move {
            for _ in 0..200 {
                if what(&spa) {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            false
        }
    };
    client
        .send_to(packet.as_bytes(), ("127.0.0.1", port))
        .await
        .unwrap();
    assert!(wait(|c| c.grants.load(Relaxed) == 1).await);
    client
        .send_to(packet.as_bytes(), ("127.0.0.1", port))
        .await
        .unwrap();
    client.send_to(b"junk", ("127.0.0.1", port)).await.unwrap();
    assert!(wait(|c| c.rejected.load(Relaxed) == 2).await);

    tx.stop();
    server.await.unwrap().unwrap();
    let calls = calls.lock().unwrap().clone();
    let grants: Vec<&Call> = calls
        .iter()
        .filter(|c| matches!(c, Call::Grant(..)))
        .collect();
    assert_eq!(
        grants,
        vec![&Call::Grant(
            IpAddr::from([127, 0, 0, 5]),
            8022,
            Duration::from_secs(40)
        )]
    );
    assert_eq!(calls.last(), Some(&Call::Teardown));
    assert_eq!(spa.accepted.load(Relaxed), 1);
}

#[tokio::test]
async fn a_thread_that_panics_wakes_the_listener() {
    let ended = Arc::new(Notify::new());
    let guard = EndGuard(ended.clone());
    let thread = std::thread::spawn(move || {
        let _ended = guard;
        panic!("a reader thread dies");
    });
    assert!(thread.join().is_err());
    tokio::time::timeout(Duration::from_secs(5), ended.notified())
        .await
        .expect("the end of a panicking thread was not reported");
}
