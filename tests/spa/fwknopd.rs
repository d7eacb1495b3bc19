//! Packets built by our encoder are accepted by Debian's real fwknopd 2.6.10.
//!
//! No socket and no firewall: the packets are written into a pcap file that
//! fwknopd reads (`--pcap-file`) in test mode (`-t`: every check, no firewall
//! change), and it runs inside a fresh network namespace (`unshare -n`) all
//! the same. fwknopd logs "--test mode enabled, skipping firewall
//! manipulation" exactly where it would otherwise open the firewall.
//! (In `-t` mode fwknopd does not record digests, so replays are not
//! checked here; `vectors.json` covers fwknopd's replay verdict.)
//!
//! Needs `fwknopd` (package fwknop-server) and root for `unshare -n`.
//! Missing: fails under `CI`, warns loudly otherwise.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use portknock::spa::{DigestType, EncryptionMode, SpaKeys, SpaRequest, encode};

use crate::util::spa::{HMAC as S1_HMAC, KEY as S1_KEY};

const S2_KEY: &str = "lk2qU+b5t8nrpO1El299HrfLaYBUMvfdBmpt+LgTnp8=";
const S2_HMAC: &str = "Lo/HmTx3dddGA47CMsFUV9Fl9rR6loQGiX6Mh9iIN/Y3jrajiJd0xEAU5Dl9Z0jN1B4yutCB7umBE4uK9i+woOVknVMxdat/k+KjQn9rKjWzR8z8rNj7/3xIXm6s7dKq4B5LA3aN98sZAIdKWuXdhpNSdvTm0zFehT/cV7CkVPA=";
const ACCEPTED_MARK: &str = "--test mode enabled, skipping firewall manipulation";

fn b64(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

fn tools_present() -> bool {
    let ok = Command::new("unshare")
        .args(["-n", "fwknopd", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let msg = "fwknopd (fwknop-server) or `unshare -n` (root) unavailable: encoder-vs-fwknopd test NOT RUN";
        if std::env::var_os("CI").is_some() {
            panic!("{msg}");
        }
        eprintln!("\n!!!!!!!!!! WARNING: {msg} !!!!!!!!!!\n");
    }
    ok
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A pcap file (Ethernet link type) of UDP datagrams 127.0.0.1 -> 127.0.0.1:62201.
fn write_pcap(path: &Path, payloads: &[String], ts: u32) {
    let mut out = Vec::new();
    for v in [
        0xa1b2c3d4u32.to_le_bytes().as_slice(),
        &2u16.to_le_bytes(),
        &4u16.to_le_bytes(),
    ] {
        out.extend_from_slice(v);
    }
    for v in [0u32, 0, 65535, 1] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for (i, p) in payloads.iter().enumerate() {
        let udp_len = 8 + p.len();
        let mut udp = Vec::new();
        udp.extend_from_slice(&(40000 + i as u16).to_be_bytes());
        udp.extend_from_slice(&62201u16.to_be_bytes());
        udp.extend_from_slice(&(udp_len as u16).to_be_bytes());
        udp.extend_from_slice(&[0, 0]);
        udp.extend_from_slice(p.as_bytes());
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&((20 + udp_len) as u16).to_be_bytes());
        ip.extend_from_slice(&(i as u16 + 1).to_be_bytes());
        ip.extend_from_slice(&[0x40, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1]);
        let sum = checksum(&ip);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&[0x08, 0x00]);
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(&udp);
        for v in [ts, 0, frame.len() as u32, frame.len() as u32] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&frame);
    }
    std::fs::write(path, out).unwrap();
}

fn keys(key: Vec<u8>, hmac: &[u8], digest: DigestType) -> SpaKeys {
    SpaKeys::new(key, Some(hmac.to_vec()), digest, EncryptionMode::Cbc).unwrap()
}

#[test]
fn real_fwknopd_accepts_our_packets() {
    if !tools_present() {
        return;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let s1 = keys(b64(S1_KEY), &b64(S1_HMAC), DigestType::Sha256);
    let s2 = keys(b64(S2_KEY), &b64(S2_HMAC), DigestType::Sha512);
    let s3 = keys(
        b"fwknop-test-passphrase".to_vec(),
        b"hmac-test-passphrase-0123456789",
        DigestType::Sha256,
    );
    let wrong = keys(b64(S1_KEY), b"not-the-hmac-key", DigestType::Sha256);
    let ip = |last| Ipv4Addr::new(127, 0, 0, last);
    let tcp = |p: u16| vec![format!("tcp/{p}").parse().unwrap()];
    let req = |last, port| SpaRequest::new("portknock", ip(last), tcp(port), now);

    let mut with_timeout = req(3, 8080);
    with_timeout.client_timeout = 45;
    with_timeout.digest = DigestType::Md5;
    let mut inner_sha512 = req(4, 22);
    inner_sha512.digest = DigestType::Sha512;
    let mut multi = SpaRequest::new(
        "portknock",
        ip(6),
        vec!["tcp/22".parse().unwrap(), "udp/53".parse().unwrap()],
        now,
    );
    multi.digest = DigestType::Sha3_256;
    let packets = vec![
        encode(&req(2, 2222), &s1).unwrap(),
        encode(&with_timeout, &s1).unwrap(),
        encode(&inner_sha512, &s2).unwrap(),
        encode(&req(5, 22), &s3).unwrap(),
        encode(&multi, &s1).unwrap(),
        encode(&req(66, 22), &wrong).unwrap(),
    ];

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_pcap(&d.join("spa.pcap"), &packets, now as u32);
    std::fs::write(d.join("fwknopd.conf"), "PCAP_FILTER udp port 62201\n").unwrap();
    let access = format!(
        "SOURCE ANY\nKEY_BASE64 {S1_KEY}\nHMAC_KEY_BASE64 {S1_HMAC}\nREQUIRE_SOURCE_ADDRESS Y\n\n\
         SOURCE ANY\nKEY_BASE64 {S2_KEY}\nHMAC_KEY_BASE64 {S2_HMAC}\nHMAC_DIGEST_TYPE sha512\nREQUIRE_SOURCE_ADDRESS Y\n\n\
         SOURCE ANY\nKEY fwknop-test-passphrase\nHMAC_KEY hmac-test-passphrase-0123456789\nREQUIRE_SOURCE_ADDRESS Y\n"
    );
    std::fs::write(d.join("access.conf"), access).unwrap();
    for f in ["fwknopd.conf", "access.conf"] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d.join(f), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let mut cmd = Command::new("timeout");
    cmd.args(["60", "unshare", "-n", "fwknopd", "-f", "-t", "-v", "-C"])
        .arg(packets.len().to_string())
        .arg("-c")
        .arg(d.join("fwknopd.conf"))
        .arg("-a")
        .arg(d.join("access.conf"))
        .arg("-d")
        .arg(d.join("digest.cache"))
        .arg("-p")
        .arg(d.join("fwknopd.pid"))
        .arg("-r")
        .arg(d)
        .arg("--pcap-file")
        .arg(d.join("spa.pcap"));
    let out = cmd.output().expect("run fwknopd");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let ctx = || {
        format!(
            "command: {cmd:?}\nstatus: {}\n--- fwknopd output ---\n{log}",
            out.status
        )
    };
    assert!(out.status.success(), "fwknopd failed\n{}", ctx());
    for want in [
        "127.0.0.2,tcp/2222",
        "127.0.0.3,tcp/8080",
        "127.0.0.4,tcp/22",
        "127.0.0.5,tcp/22",
        "127.0.0.6,tcp/22,udp/53",
    ] {
        assert!(
            log.contains(&format!("Message String: {want}")),
            "fwknopd did not decode {want}\n{}",
            ctx()
        );
    }
    assert!(log.contains("Client Timeout: 45"), "{}", ctx());
    assert!(
        !log.contains("127.0.0.66"),
        "the wrong-HMAC packet decoded\n{}",
        ctx()
    );
    assert_eq!(
        log.matches(ACCEPTED_MARK).count(),
        5,
        "five packets should be accepted\n{}",
        ctx()
    );
}
