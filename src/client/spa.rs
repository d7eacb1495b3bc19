//! The client's SPA side (`knock-client --spa`): where the keys come from,
//! which address to ask for, and sending the one packet.
//!
//! Why the default allow-IP is found by connecting a UDP socket: fwknop
//! asks a web service for the client's public address (`-R`); portknock
//! makes no outbound lookups, so it opens for the address the kernel would
//! send from (`connect` picks the route, nothing is sent). Behind NAT the
//! user gives `--allow-ip` (or `source`, letting the server use the
//! packet's source address).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use thiserror::Error;

use super::{ClientError, local_addr};
use crate::spa::{
    AllowIp, BadPortSpec, DEFAULT_SPA_PORT, DigestType, EncryptionMode, KeyError, PortSpec, Proto,
    RcError, RcStanza, SpaKeys, load_fwknoprc,
};

/// A bad SPA option of the client (exit 2).
#[derive(Debug, Error)]
pub enum SpaClientError {
    /// A `--access` item that is not `proto/port`.
    #[error("invalid --access: {0}")]
    Access(BadPortSpec),
    /// No `--access` and no `ACCESS` in the rc stanza.
    #[error("no ports to open: give --access tcp/PORT (or ACCESS in the rc stanza)")]
    NoAccess,
    /// A key flag that is not base64.
    #[error("invalid {flag}: expected base64 (as printed by --keygen)")]
    Base64 {
        /// The flag.
        flag: &'static str,
    },
    /// An encryption key without an HMAC key.
    #[error(
        "--key-base64 needs --hmac-key-base64: knock-client sends HMAC-authenticated packets only"
    )]
    NoHmacKey,
    /// No keys anywhere.
    #[error(
        "no SPA keys: give --key-base64 and --hmac-key-base64, or --rc-file/--name naming a stanza with KEY_BASE64 and HMAC_KEY_BASE64"
    )]
    NoKeys,
    /// An rc stanza with a key but no HMAC key.
    #[error(
        "rc stanza [{0}] has no HMAC key: add HMAC_KEY_BASE64 (knock-client sends HMAC-authenticated packets only)"
    )]
    RcWithoutHmac(String),
    /// The keys were refused.
    #[error("invalid SPA keys: {0}")]
    Keys(KeyError),
    /// The rc file was refused.
    #[error("rc file {path}: {cause}")]
    Rc {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: RcError,
    },
    /// `ALLOW_IP resolve` in the rc file.
    #[error("ALLOW_IP resolve is not supported (no outbound lookups): give --allow-ip ADDRESS")]
    Resolve,
    /// `--allow-ip` that is neither an IPv4 address nor `source`.
    #[error("invalid --allow-ip '{0}': expected an IPv4 address or 'source'")]
    AllowIp(String),
    /// `--name` without `--rc-file` and no `$HOME`.
    #[error("--name without --rc-file needs $HOME to find ~/.fwknoprc")]
    NoHome,
    /// A client timeout fwknopd would refuse.
    #[error("invalid --timeout-request '{0}': expected seconds from 0 to {MAX_CLIENT_TIMEOUT}")]
    Timeout(u32),
    /// The address we would send from is not IPv4 (fwknop's format is IPv4).
    #[error(
        "the client sends from {0}, not an IPv4 address: SPA names an IPv4 address, give --allow-ip"
    )]
    NotIpv4(IpAddr),
    /// The address we would send from could not be found.
    #[error(transparent)]
    Local(#[from] ClientError),
}

/// Largest client timeout fwknopd accepts (libfko's `2 << 15`).
pub const MAX_CLIENT_TIMEOUT: u32 = 65536;

/// The client's SPA flags as given (`knock-client --spa ...`).
#[derive(Debug, Clone)]
pub struct SpaFlags {
    /// `--access`.
    pub access: Option<String>,
    /// `--key-base64`.
    pub key_base64: Option<String>,
    /// `--hmac-key-base64`.
    pub hmac_key_base64: Option<String>,
    /// `--hmac-digest`.
    pub hmac_digest: DigestType,
    /// `--rc-file`.
    pub rc_file: Option<PathBuf>,
    /// `--name`.
    pub name: Option<String>,
    /// `--allow-ip`.
    pub allow_ip: Option<String>,
    /// `--server-port`.
    pub server_port: Option<u16>,
    /// `--timeout-request`.
    pub timeout_request: Option<u32>,
    /// `--spa-user`.
    pub user: Option<String>,
}

/// A validated SPA send: flags merged over the rc stanza (flags win).
#[derive(Debug, Clone)]
pub struct SpaPlan {
    /// The keys.
    pub keys: SpaKeys,
    /// Ports to ask for.
    pub access: Vec<PortSpec>,
    /// Which address to ask for.
    pub allow: AllowChoice,
    /// The server's UDP port.
    pub server_port: u16,
    /// Requested access time, 0 for the server's default.
    pub client_timeout: u32,
    /// Username field.
    pub username: String,
    /// The rc stanza's SPA_SERVER, used when no --target is given.
    pub server: Option<String>,
    /// The port `--check` tries: the first tcp port asked for.
    pub check_port: Option<u16>,
}

impl SpaPlan {
    /// Validates `flags`, reading the rc stanza when `--rc-file` or
    /// `--name` is given (`--name` alone: `~/.fwknoprc`; `--rc-file`
    /// alone: stanza `default`).
    pub fn from_flags(flags: SpaFlags) -> Result<SpaPlan, SpaClientError> {
        let rc = match (&flags.rc_file, &flags.name) {
            (None, None) => None,
            (file, name) => {
                let path = match file {
                    Some(path) => path.clone(),
                    None => std::env::var_os("HOME")
                        .map(|home| PathBuf::from(home).join(".fwknoprc"))
                        .ok_or(SpaClientError::NoHome)?,
                };
                Some(rc_stanza(&path, name.as_deref().unwrap_or("default"))?)
            }
        };
        let access = match (&flags.access, &rc) {
            (Some(text), _) => parse_access(text)?,
            (None, Some(stanza)) => stanza.access.clone(),
            (None, None) => Vec::new(),
        };
        if access.is_empty() {
            return Err(SpaClientError::NoAccess);
        }
        let allow = match (&flags.allow_ip, rc.as_ref().and_then(|s| s.allow_ip)) {
            (Some(text), _) => parse_allow_ip(text)?,
            (None, Some(allow)) => rc_allow(allow)?,
            (None, None) => AllowChoice::Local,
        };
        let client_timeout = flags
            .timeout_request
            .or(rc.as_ref().map(|s| s.client_timeout))
            .unwrap_or(0);
        if client_timeout > MAX_CLIENT_TIMEOUT {
            return Err(SpaClientError::Timeout(client_timeout));
        }
        let keys = match (&flags.key_base64, &rc) {
            (Some(key), _) => {
                keys_from_flags(key, flags.hmac_key_base64.as_deref(), flags.hmac_digest)?
            }
            (None, Some(stanza)) => keys_from_rc(stanza)?,
            (None, None) => return Err(SpaClientError::NoKeys),
        };
        let username = flags
            .user
            .or_else(|| rc.as_ref().and_then(|s| s.username.clone()))
            .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
            .unwrap_or_else(|| "portknock".to_string());
        Ok(SpaPlan {
            check_port: access
                .iter()
                .find(|p| p.proto == Proto::Tcp)
                .map(|p| p.port),
            keys,
            access,
            allow,
            server_port: flags
                .server_port
                .or(rc.as_ref().map(|s| s.spa_server_port))
                .unwrap_or(DEFAULT_SPA_PORT),
            client_timeout,
            username,
            server: rc.and_then(|s| s.spa_server),
        })
    }
}

/// What address the packet asks the server to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllowChoice {
    /// This address.
    Ip(Ipv4Addr),
    /// `0.0.0.0`: the server uses the packet's source address.
    Source,
    /// The address this host sends from towards the target (the default).
    Local,
}

/// Parses `--allow-ip`: an IPv4 address or `source`.
pub fn parse_allow_ip(text: &str) -> Result<AllowChoice, SpaClientError> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("source") {
        return Ok(AllowChoice::Source);
    }
    text.parse()
        .map(AllowChoice::Ip)
        .map_err(|_| SpaClientError::AllowIp(text.to_string()))
}

/// Parses `--access`: comma-separated `proto/port` items.
pub fn parse_access(text: &str) -> Result<Vec<PortSpec>, SpaClientError> {
    let ports = text
        .split(',')
        .map(str::parse)
        .collect::<Result<Vec<PortSpec>, _>>()
        .map_err(SpaClientError::Access)?;
    Ok(ports)
}

/// Decodes a base64 key flag (padded or not).
pub fn decode_key(flag: &'static str, text: &str) -> Result<Vec<u8>, SpaClientError> {
    let text = text.trim();
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
        .map_err(|_| SpaClientError::Base64 { flag })
}

/// Keys from `--key-base64` and `--hmac-key-base64`.
pub fn keys_from_flags(
    key: &str,
    hmac_key: Option<&str>,
    hmac_digest: DigestType,
) -> Result<SpaKeys, SpaClientError> {
    let key = decode_key("--key-base64", key)?;
    let hmac = decode_key(
        "--hmac-key-base64",
        hmac_key.ok_or(SpaClientError::NoHmacKey)?,
    )?;
    SpaKeys::new(key, Some(hmac), hmac_digest, EncryptionMode::Cbc).map_err(SpaClientError::Keys)
}

/// The stanza `name` of the rc file at `path`.
pub fn rc_stanza(path: &Path, name: &str) -> Result<RcStanza, SpaClientError> {
    let rc_error = |cause| SpaClientError::Rc {
        path: path.to_path_buf(),
        cause,
    };
    let file = load_fwknoprc(path).map_err(rc_error)?;
    if let Some(loose) = &file.loose_mode {
        tracing::warn!("rc file: {loose}");
    }
    for warning in &file.warnings {
        tracing::warn!(file = %path.display(), "rc file: {warning}");
    }
    file.stanza(name).map_err(rc_error)
}

/// The keys of an rc stanza, which must carry an HMAC key.
pub fn keys_from_rc(stanza: &RcStanza) -> Result<SpaKeys, SpaClientError> {
    let keys = stanza.keys.clone().ok_or(SpaClientError::NoKeys)?;
    if keys.hmac_key.is_none() {
        return Err(SpaClientError::RcWithoutHmac(stanza.name.clone()));
    }
    Ok(keys)
}

/// The rc stanza's `ALLOW_IP` as a choice.
pub fn rc_allow(allow: AllowIp) -> Result<AllowChoice, SpaClientError> {
    match allow {
        AllowIp::Ip(ip) => Ok(AllowChoice::Ip(ip)),
        AllowIp::Source => Ok(AllowChoice::Source),
        AllowIp::Resolve => Err(SpaClientError::Resolve),
    }
}

/// The IPv4 address the packet names for `choice`.
pub fn allow_address(
    choice: AllowChoice,
    target: SocketAddr,
    source: Option<IpAddr>,
) -> Result<Ipv4Addr, SpaClientError> {
    Ok(match choice {
        AllowChoice::Ip(ip) => ip,
        AllowChoice::Source => Ipv4Addr::UNSPECIFIED,
        AllowChoice::Local => match super::sending_address(target, source)?.to_canonical() {
            IpAddr::V4(ip) => ip,
            other => return Err(SpaClientError::NotIpv4(other)),
        },
    })
}

/// Sends `packet` to `target` in one datagram from `source` (or any local
/// address); returns the bytes sent.
pub async fn send_packet(
    target: SocketAddr,
    packet: &[u8],
    source: Option<IpAddr>,
) -> Result<usize, ClientError> {
    let local = local_addr(target.ip(), source);
    let socket = tokio::net::UdpSocket::bind(local)
        .await
        .map_err(|source| ClientError::Bind {
            addr: local,
            source,
        })?;
    socket
        .send_to(packet, target)
        .await
        .map_err(|source| ClientError::Send { target, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_ip_and_access_parse_or_name_the_bad_value() {
        assert_eq!(parse_allow_ip("source").unwrap(), AllowChoice::Source);
        assert_eq!(
            parse_allow_ip("192.0.2.7").unwrap(),
            AllowChoice::Ip(Ipv4Addr::new(192, 0, 2, 7))
        );
        let err = parse_allow_ip("::1").unwrap_err().to_string();
        assert!(err.contains("'::1'"), "{err}");
        assert_eq!(
            parse_access("tcp/22,udp/53").unwrap(),
            vec!["tcp/22".parse().unwrap(), "udp/53".parse().unwrap()]
        );
        let err = parse_access("tcp/0").unwrap_err().to_string();
        assert!(err.contains("tcp/0"), "{err}");
    }

    #[test]
    fn keys_need_base64_and_an_hmac_key() {
        let key = "kB+G5+KiLS8N2x64DYM+VuPU+Gj7A7uITpF9Y4Ozqms=";
        assert!(matches!(
            keys_from_flags(key, None, DigestType::Sha256),
            Err(SpaClientError::NoHmacKey)
        ));
        let err = keys_from_flags("not base64!", Some(key), DigestType::Sha256).unwrap_err();
        assert!(err.to_string().contains("--key-base64"), "{err}");
        assert!(matches!(
            keys_from_flags(key, Some(key), DigestType::Sha256),
            Err(SpaClientError::Keys(KeyError::SameKeys))
        ));
        let keys = keys_from_flags(key, Some("aG1hYy1rZXk"), DigestType::Sha512).unwrap();
        assert_eq!(keys.hmac_key.unwrap().expose(), b"hmac-key");
    }

    #[test]
    fn the_local_choice_is_the_address_the_kernel_sends_from() {
        let target = SocketAddr::from(([127, 0, 0, 1], 62201));
        let ip = allow_address(AllowChoice::Local, target, None).unwrap();
        assert!(ip.is_loopback(), "{ip}");
        let from = IpAddr::from([127, 0, 0, 3]);
        assert_eq!(
            allow_address(AllowChoice::Local, target, Some(from)).unwrap(),
            Ipv4Addr::new(127, 0, 0, 3)
        );
        assert_eq!(
            allow_address(AllowChoice::Source, target, None).unwrap(),
            Ipv4Addr::UNSPECIFIED
        );
    }
}
