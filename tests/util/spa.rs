//! SPA fixtures shared by the SPA tests and by the tests that use SPA on
//! the way (faults, bench): one key pair, a server with SPA on and the
//! sequence off, valid packets made with our own encoder, and the check that
//! an external tool (`fwknop`, `fwknopd`) is installed.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use portknock::spa::{DigestType, EncryptionMode, SpaKeys, SpaRequest, encode};

use crate::util::{Proc, ServerSpec, free_port};

/// The Rijndael key (base64) of every SPA fixture.
pub const KEY: &str = "kB+G5+KiLS8N2x64DYM+VuPU+Gj7A7uITpF9Y4Ozqms=";
/// The HMAC key (base64) beside [`KEY`].
pub const HMAC: &str =
    "vxdRyChqWMLurmUWJPUNWLPlMI57H9zvx/Gzdt7sS0FtjArdSOTNzBiw9D3HSVKV64jQv4fCM0BHc9VV3SCrjg==";
/// How long a fixture waits for a line of the server's log.
const WAIT: Duration = Duration::from_secs(10);

/// Whether `tool --version` runs; otherwise fails under CI or warns loudly.
pub fn have(tool: &str, test: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let msg =
            format!("{test}: `{tool}` is not installed (Debian: fwknop-client / fwknop-server)");
        if std::env::var_os("CI").is_some() {
            panic!("{msg}");
        }
        eprintln!("\n*** SKIPPED {msg} ***\n");
    }
    ok
}

/// A server with SPA on (sequence off), its access file and replay cache in `dir`.
pub struct SpaServer {
    /// The server, its protected port in `spec.protected_port`.
    pub spec: ServerSpec,
    /// The UDP port the SPA listener binds.
    pub spa_port: u16,
    /// A second protected port the access file opens too.
    pub other_port: u16,
    /// The replay cache the server keeps.
    pub cache: PathBuf,
}

impl SpaServer {
    /// Writes the access file into `dir`; nothing is started yet.
    pub fn new(dir: &Path) -> SpaServer {
        let mut spec = ServerSpec::new();
        let spa_port = free_port();
        let other_port = free_port();
        let access = dir.join("access.conf");
        std::fs::write(
            &access,
            format!(
                "SOURCE ANY\nKEY_BASE64 {KEY}\nHMAC_KEY_BASE64 {HMAC}\n\
                 OPEN_PORTS tcp/{},tcp/{other_port}\nFW_ACCESS_TIMEOUT 30\nMAX_FW_TIMEOUT 60\n",
                spec.protected_port
            ),
        )
        .unwrap();
        let cache = dir.join("replay");
        spec.extra = vec![
            "--no-sequence".into(),
            "--spa".into(),
            "--spa-access".into(),
            access.display().to_string(),
            "--spa-port".into(),
            spa_port.to_string(),
            "--spa-replay-cache".into(),
            cache.display().to_string(),
        ];
        SpaServer {
            spec,
            spa_port,
            other_port,
            cache,
        }
    }

    /// Starts the server and waits until its SPA listener is ready.
    pub fn start(&self) -> Proc {
        let mut server = self.spec.start();
        server.wait_for("spa listener ready", WAIT);
        server
    }
}

/// The fixture keys as our encoder takes them.
pub fn keys() -> SpaKeys {
    let b = |t: &str| base64::engine::general_purpose::STANDARD.decode(t).unwrap();
    SpaKeys::new(
        b(KEY),
        Some(b(HMAC)),
        DigestType::Sha256,
        EncryptionMode::Cbc,
    )
    .unwrap()
}

/// A fresh valid packet (our encoder, now) asking `tcp/port` for `allow`.
pub fn packet(keys: &SpaKeys, allow: Ipv4Addr, port: u16) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let req = SpaRequest::new(
        "burst",
        allow,
        vec![format!("tcp/{port}").parse().unwrap()],
        now,
    );
    encode(&req, keys).unwrap()
}
