//! `--log-format json`: every line on stderr is one JSON object with
//! stable field names; a grant's line names ip, door and port; no secret.

use std::time::Duration;

use serde_json::Value;

use crate::util::{Proc, ServerSpec, run};

#[test]
fn json_logs_are_one_object_per_line_with_stable_fields() {
    let mut spec = ServerSpec::new();
    spec.extra = vec!["--log-format".into(), "json".into()];
    let mut server: Proc = spec.start();
    run(spec.client("127.0.0.31"), Duration::from_secs(10)).expect_code(0);
    server.wait_for("access granted", Duration::from_secs(5));
    server.signal_and_wait("TERM", Duration::from_secs(10));
    let logs = server.logs();
    let stderr = logs.split_once("--- stderr ---\n").expect("stderr").1;
    let mut granted = None;
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let event: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for key in ["timestamp", "level", "message"] {
            assert!(event.get(key).is_some(), "no {key}: {line}");
        }
        if event["message"] == "access granted" {
            granted = Some(event);
        }
    }
    let granted = granted.unwrap_or_else(|| panic!("no grant event in {logs}"));
    assert_eq!(granted["ip"], "127.0.0.31");
    assert_eq!(granted["door"], "default");
    assert_eq!(granted["port"], spec.protected_port);
    assert!(!logs.contains("FLAG{"), "the flag is a secret");
}
