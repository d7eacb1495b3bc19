//! Key files and unauthenticated stanzas as the binaries see them (issue 9
//! items 11 and 13): a world-writable access.conf or rc file is refused with
//! a line naming the file and its mode (exit 2); a readable one starts with
//! a warning, as fwknop gives; every stanza without HMAC is warned about.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::util::spa::{HMAC, KEY, SpaServer};
use crate::util::{bin, free_port, run};

const T: Duration = Duration::from_secs(20);

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn the_server_refuses_a_world_writable_access_file_and_warns_about_a_readable_one() {
    let dir = tempfile::tempdir().unwrap();
    let srv = SpaServer::new(dir.path());
    let access = dir.path().join("access.conf");

    chmod(&access, 0o666);
    let out = run(srv.spec.command(), T).expect_code(2);
    let name = access.display().to_string();
    assert!(out.stderr.contains(&name), "{}", out.describe());
    assert!(out.stderr.contains("0666"), "{}", out.describe());
    assert!(
        out.stderr.contains("writable by others"),
        "{}",
        out.describe()
    );

    chmod(&access, 0o644);
    let server = srv.start();
    assert_eq!(server.count("0644"), 1, "{}", server.logs());
    assert!(server.printed("chmod 600"), "{}", server.logs());
    drop(server);

    chmod(&access, 0o600);
    let server = srv.start();
    assert!(!server.printed("mode 0"), "{}", server.logs());
}

#[test]
fn the_server_warns_about_every_stanza_without_hmac() {
    let dir = tempfile::tempdir().unwrap();
    let mut srv = SpaServer::new(dir.path());
    let access = dir.path().join("access.conf");
    std::fs::write(
        &access,
        format!(
            "SOURCE ANY\nKEY_BASE64 {KEY}\nHMAC_KEY_BASE64 {HMAC}\nOPEN_PORTS tcp/22\n\n\
             SOURCE 127.0.0.1\nKEY_BASE64 {KEY}\nOPEN_PORTS tcp/22\n\n\
             SOURCE 127.0.0.2\nKEY_BASE64 {KEY}\nOPEN_PORTS tcp/22\n"
        ),
    )
    .unwrap();
    chmod(&access, 0o600);
    srv.spec.extra.push("--spa-allow-no-hmac".into());
    let server = srv.start();
    assert_eq!(server.count("has no HMAC_KEY"), 2, "{}", server.logs());
    assert!(server.printed("line=6"), "{}", server.logs());
    assert!(server.printed("line=10"), "{}", server.logs());
}

fn client(rc: &Path) -> Command {
    let mut cmd = Command::new(bin("knock-client"));
    cmd.args(["--spa", "--target", "127.0.0.1"])
        .args(["--server-port", &free_port().to_string()])
        .arg("--rc-file")
        .arg(rc);
    cmd
}

#[test]
fn the_client_refuses_a_world_writable_rc_file_and_warns_about_a_readable_one() {
    let dir = tempfile::tempdir().unwrap();
    let rc = dir.path().join("fwknoprc");
    std::fs::write(
        &rc,
        format!("[default]\nACCESS tcp/22\nKEY_BASE64 {KEY}\nHMAC_KEY_BASE64 {HMAC}\n"),
    )
    .unwrap();
    let name = rc.display().to_string();

    chmod(&rc, 0o666);
    let out = run(client(&rc), T).expect_code(2);
    assert!(out.stderr.contains(&name), "{}", out.describe());
    assert!(out.stderr.contains("0666"), "{}", out.describe());
    assert!(
        !out.stdout.contains("SPA packet sent"),
        "{}",
        out.describe()
    );

    chmod(&rc, 0o644);
    let out = run(client(&rc), T).expect_code(0);
    assert!(out.stderr.contains("0644"), "{}", out.describe());
    assert!(out.stderr.contains(&name), "{}", out.describe());

    chmod(&rc, 0o600);
    let out = run(client(&rc), T).expect_code(0);
    assert!(!out.stderr.contains("mode 0"), "{}", out.describe());
}
