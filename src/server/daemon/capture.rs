//! The daemon's capture step: which source hears knocks and SPA packets
//! (`capture/select.rs`), what it must let through (the [`CaptureSpec`]
//! of every door's knock ports and the SPA port), and opening it — all
//! before the firewall is touched, so an unusable source (a missing
//! capability, an NFLOG group another reader holds, an unknown interface)
//! fails the start with one line, exit 2, nothing applied.

use tracing::{info, warn};

use super::DaemonError;
use crate::capture::nflog::{NflogRule, NflogSource};
use crate::capture::packet::PacketSource;
use crate::capture::select::{self, Choice};
use crate::capture::{CaptureError, CaptureKind, CaptureSource, CaptureSpec};
use crate::config::{Globals, Proto};
use crate::server::ServerSettings;

/// The capture this run uses.
pub(super) struct Capture {
    /// The source and why.
    pub choice: Choice,
    /// What it lets through.
    pub spec: CaptureSpec,
    /// The open source (None: bound sockets).
    pub source: Option<Box<dyn CaptureSource>>,
}

/// What a capture source must let through for `doors` and `spa_port`:
/// every door's UDP knock ports plus the SPA port, every TCP knock port,
/// on `interfaces` (none: all). Sorted, each once.
pub fn capture_spec(
    doors: Option<&ServerSettings>,
    spa_port: Option<u16>,
    interfaces: &[String],
) -> CaptureSpec {
    let mut spec = CaptureSpec {
        interfaces: interfaces.to_vec(),
        ..CaptureSpec::default()
    };
    for door in doors.map_or(&[][..], |d| &d.doors[..]) {
        for knock in door.sequence() {
            match knock.proto {
                Proto::Udp => spec.udp_ports.push(knock.port),
                Proto::Tcp => spec.tcp_ports.push(knock.port),
            }
        }
    }
    // Decoys (issue 14) are heard as wrong knocks: a fixed door's decoy
    // band is static, so the filter holds it from the start.
    if let Some(doors) = doors {
        let fixed: Vec<_> = doors
            .doors
            .iter()
            .filter(|d| d.rotating_sequence().is_none())
            .cloned()
            .collect();
        spec.udp_ports
            .extend(crate::server::rotation::knock_ports_at(
                &fixed,
                crate::server::rotation::unix_now(),
            ));
    }
    spec.udp_ports.extend(spa_port);
    for ports in [&mut spec.udp_ports, &mut spec.tcp_ports] {
        ports.sort_unstable();
        ports.dedup();
    }
    spec
}

/// Some door has a rotating sequence.
fn has_rotating(doors: Option<&ServerSettings>) -> bool {
    doors.is_some_and(|d| {
        d.doors
            .iter()
            .any(|door| door.rotating_sequence().is_some())
    })
}

/// The NFLOG rule a kernel backend installs for this run: when the
/// capture is `nflog`, or `auto` (which picks nflog with a kernel backend).
pub(super) fn nflog_rule(globals: &Globals, doors: Option<&ServerSettings>) -> Option<NflogRule> {
    let settings = &globals.capture;
    let wanted = match (settings.kind, has_rotating(doors)) {
        (CaptureKind::Auto, true) => return None,
        (kind, _) => kind,
    };
    matches!(wanted, CaptureKind::Auto | CaptureKind::Nflog).then(|| {
        let spa_port = globals.spa.as_ref().map(|spa| spa.port);
        let spec = capture_spec(doors, spa_port, &settings.interfaces);
        NflogRule::new(spec, settings.nflog_group)
    })
}

/// Chooses the source for this run (`kernel_backend`: the firewall chosen
/// is nftables or iptables), refuses TCP knocks with bound sockets, checks
/// the interfaces and opens the source. Logs one line saying which source
/// and why.
pub(super) fn open(
    globals: &Globals,
    doors: Option<&ServerSettings>,
    kernel_backend: bool,
) -> Result<Capture, DaemonError> {
    let settings = &globals.capture;
    let choice = match (settings.kind, has_rotating(doors)) {
        // A rotating door's ports change every period and the capture
        // filters do not follow them yet: bound sockets, which rebind at
        // each boundary (issue 14). Said in the log line.
        (CaptureKind::Auto, true) => select::Choice {
            kind: CaptureKind::Socket,
            why: "a rotating door's ports change every period and the capture filter does not follow them yet: bound sockets (knock ports are visible to a UDP scan)",
        },
        (CaptureKind::Nflog | CaptureKind::Packet, true) => {
            return Err(DaemonError::Unsupported(format!(
                "--capture {:?}: a rotating door's ports change every period and this capture source does not follow them yet; use --capture socket or auto",
                settings.kind
            ).to_lowercase()));
        }
        (kind, _) => select::choose(kind, kernel_backend, select::has_net_raw())?,
    };
    let sequences = doors
        .map_or(&[][..], |d| &d.doors[..])
        .iter()
        .map(|d| (d.name().as_str(), d.sequence()));
    select::check_knocks(settings.kind, choice, sequences)?;
    for name in &settings.interfaces {
        check_interface(name)?;
    }
    let spa_port = globals.spa.as_ref().map(|spa| spa.port);
    let spec = capture_spec(doors, spa_port, &settings.interfaces);
    let source: Option<Box<dyn CaptureSource>> = match choice.kind {
        CaptureKind::Nflog => Some(Box::new(match inherited() {
            Some(fd) => NflogSource::from_bound(fd, settings.nflog_group),
            None => NflogSource::open(settings.nflog_group)?,
        })),
        CaptureKind::Packet => Some(Box::new(PacketSource::open(&spec)?)),
        _ => None,
    };
    match choice.kind {
        CaptureKind::Socket => {
            warn!(source = "socket", "capture: {}", choice.why);
            if !settings.interfaces.is_empty() {
                warn!(interfaces = ?settings.interfaces, "capture: bound sockets listen on every interface: --interface is ignored");
            }
        }
        kind => info!(
            source = ?kind,
            udp_ports = ?spec.udp_ports,
            tcp_ports = ?spec.tcp_ports,
            interfaces = ?spec.interfaces,
            nflog_group = (kind == CaptureKind::Nflog).then_some(settings.nflog_group),
            "capture: {}",
            choice.why
        ),
    }
    Ok(Capture {
        choice,
        spec,
        source,
    })
}

/// Names the NFLOG socket a privilege split's helper bound for its packet
/// process (which holds no capability to bind one): its descriptor number.
pub const CAPTURE_FD_ENV: &str = "PORTKNOCK_CAPTURE_FD";

/// The NFLOG socket the helper handed down ([`CAPTURE_FD_ENV`]), taken
/// once; `None` if there is none or the descriptor is not a socket.
fn inherited() -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    use std::sync::atomic::{AtomicBool, Ordering};
    static TAKEN: AtomicBool = AtomicBool::new(false);
    let fd: libc::c_int = std::env::var(CAPTURE_FD_ENV).ok()?.parse().ok()?;
    if fd < 3 || TAKEN.swap(true, Ordering::SeqCst) {
        return None;
    }
    // SAFETY: fstat on a descriptor number; `stat` is plain old data.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut stat) } != 0 || stat.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return None;
    }
    // SAFETY: the helper passed this descriptor to us alone; it is taken
    // once (TAKEN) and owned from here on.
    Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Opens the NFLOG socket a privilege split's helper hands to its packet
/// process, when the capture may be nflog (`auto`, `nflog`); refuses
/// `packet` (its sockets are not handed down yet). Checks first what the
/// packet process would refuse (unknown interfaces), so bad input exits 2
/// from the helper with nothing applied.
pub fn open_for_split(globals: &Globals) -> Result<Option<std::os::fd::OwnedFd>, DaemonError> {
    let settings = &globals.capture;
    for name in &settings.interfaces {
        check_interface(name)?;
    }
    match settings.kind {
        CaptureKind::Auto | CaptureKind::Nflog => {
            Ok(Some(NflogSource::open(settings.nflog_group)?.into_fd()))
        }
        CaptureKind::Packet => Err(DaemonError::Unsupported(
            "--capture packet with the privilege split: the AF_PACKET sockets are not handed to the packet process yet; use --capture nflog (kernel backends) or --privilege-split off".to_string(),
        )),
        CaptureKind::Socket => Ok(None),
    }
}

/// Refuses an interface this host does not have.
fn check_interface(name: &str) -> Result<(), CaptureError> {
    let unknown = || CaptureError::UnknownInterface {
        name: name.to_string(),
    };
    let c_name = std::ffi::CString::new(name).map_err(|_| unknown())?;
    // SAFETY: a NUL-terminated string that outlives the call.
    match unsafe { libc::if_nametoindex(c_name.as_ptr()) } {
        0 => Err(unknown()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ServerConfig, file};

    #[test]
    fn the_spec_holds_every_door_s_knock_ports_decoys_and_the_spa_port() {
        let text = r#"
            [[door]]
            name = "a"
            sequence = ["1234:udp", "5678:tcp", "1234", "9012:tcp"]
            protected = ["tcp/22"]
            decoys = false
            [[door]]
            name = "b"
            sequence = ["5678:tcp", "7000"]
            protected = ["tcp/2222"]
            decoys = [7001]
        "#;
        let config: ServerConfig = file::parse(std::path::Path::new("t.toml"), text).unwrap();
        let doors = ServerSettings::from_config(&config);
        let spec = capture_spec(Some(&doors), Some(62201), &["lo".to_string()]);
        // Door b's decoy is heard too (as a wrong knock).
        assert_eq!(spec.udp_ports, [1234, 7000, 7001, 62201]);
        assert_eq!(spec.tcp_ports, [5678, 9012]);
        assert_eq!(spec.interfaces, ["lo"]);
        let spa_only = capture_spec(None, Some(62201), &[]);
        assert_eq!(
            (spa_only.udp_ports, spa_only.tcp_ports),
            (vec![62201], vec![])
        );
    }

    #[test]
    fn an_unknown_interface_is_named() {
        assert!(check_interface("lo").is_ok());
        let err = check_interface("pk-nonexist0").unwrap_err();
        assert!(
            err.to_string().contains("unknown interface 'pk-nonexist0'"),
            "{err}"
        );
    }
}
