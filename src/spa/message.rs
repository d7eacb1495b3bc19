//! The SPA plaintext: `:`-separated fields followed by a digest of them.
//!
//! [`parse_plaintext`] applies libfko's field rules (FWKNOP-SPA.md §3) to a
//! decrypted packet; [`encode_plaintext`] writes what the fwknop client writes.
//! Both work on at most a packet's worth of bytes and never panic.

use std::net::Ipv4Addr;

use super::b64;
use super::digest::DigestType;
pub use super::port_spec::{BadPortSpec, PortSpec, Proto};

/// Length of the random field kept by the decoder.
pub const RAND_VAL_LEN: usize = 16;
/// Longest base64 username field.
pub const MAX_USERNAME_B64: usize = 64;
/// Longest timestamp field.
const MAX_TIMESTAMP_LEN: usize = 12;
/// Longest version field.
const MAX_VERSION_LEN: usize = 8;
/// Longest base64 message / NAT / server-auth field.
const MAX_MESSAGE_B64: usize = 256;
/// Largest client timeout fwknopd accepts (`2 << 15`).
pub const MAX_CLIENT_TIMEOUT: u32 = 65536;
/// The protocol version the fwknop 2.6.10 client sends.
pub const PROTOCOL_VERSION: &str = "3.0.0";
/// Characters fwknop refuses in a username.
const USERNAME_FORBIDDEN: &[u8] = b"\"/\\[]:;|=,+*?<>";

/// The message type field (`fko.h`, `FKO_*_MSG`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    /// 0: run a command on the server (never honoured here).
    Command,
    /// 1: open ports for an IP.
    Access,
    /// 2: NAT access (forward to an inside host).
    NatAccess,
    /// 3: access with a client-chosen timeout.
    ClientTimeoutAccess,
    /// 4: NAT access with a client timeout.
    ClientTimeoutNatAccess,
    /// 5: local NAT access.
    LocalNatAccess,
    /// 6: local NAT access with a client timeout.
    ClientTimeoutLocalNatAccess,
}

impl MessageType {
    /// From the wire value 0..=6.
    pub fn from_code(code: u8) -> Option<Self> {
        use MessageType::*;
        Some(match code {
            0 => Command,
            1 => Access,
            2 => NatAccess,
            3 => ClientTimeoutAccess,
            4 => ClientTimeoutNatAccess,
            5 => LocalNatAccess,
            6 => ClientTimeoutLocalNatAccess,
            _ => return None,
        })
    }

    /// The wire value.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Whether the type carries a NAT field.
    pub fn is_nat(self) -> bool {
        use MessageType::*;
        matches!(
            self,
            NatAccess | ClientTimeoutNatAccess | LocalNatAccess | ClientTimeoutLocalNatAccess
        )
    }

    /// Whether the type carries a client timeout field.
    pub fn has_timeout(self) -> bool {
        use MessageType::*;
        matches!(
            self,
            ClientTimeoutAccess | ClientTimeoutNatAccess | ClientTimeoutLocalNatAccess
        )
    }

    /// Fields allowed after the message field.
    fn max_extra_fields(self) -> usize {
        usize::from(self.is_nat()) + usize::from(self.has_timeout()) + 1
    }
}

/// A decoded, digest-checked SPA message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpaMessage {
    /// The first 16 chars of the random field.
    pub rand_val: String,
    /// The decoded username.
    pub username: String,
    /// Unix seconds, as the client claims.
    pub timestamp: u64,
    /// The client's protocol version text.
    pub version: String,
    /// The message type.
    pub msg_type: MessageType,
    /// The decoded message text (`IP,proto/port,...` or `IP,command`).
    pub message: String,
    /// The IP the message asks to open (`0.0.0.0`: the packet's source).
    pub allow_ip: Ipv4Addr,
    /// The requested ports (empty for a command message).
    pub ports: Vec<PortSpec>,
    /// The decoded NAT field (`host,port`), for NAT types.
    pub nat_access: Option<String>,
    /// The decoded server-auth field, if present (ignored, like fwknopd).
    pub server_auth: Option<String>,
    /// The client timeout in seconds (0: none).
    pub client_timeout: u32,
    /// The inner digest type, inferred from its length.
    pub digest_type: DigestType,
}

/// Which rule a decrypted plaintext broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// A byte outside printable ASCII.
    #[error("non-printable byte in the decrypted message")]
    NotPrintable,
    /// Fewer than the 7 required fields.
    #[error("too few fields in the decrypted message")]
    TooFewFields,
    /// More fields than the message type allows.
    #[error("too many fields for the message type")]
    TooManyFields,
    /// The digest field's length matches no digest type.
    #[error("digest field has an unknown length")]
    DigestLength,
    /// The digest does not match the fields.
    #[error("inner digest does not match")]
    DigestMismatch,
    /// A field broke its rule.
    #[error("invalid {0} field")]
    Field(&'static str),
}

/// Decodes and checks a decrypted plaintext (FWKNOP-SPA.md §3, §6.4.4).
pub fn parse_plaintext(plain: &[u8]) -> Result<SpaMessage, MessageError> {
    if !plain.iter().all(|&c| (0x20..0x7f).contains(&c)) {
        return Err(MessageError::NotPrintable);
    }
    // Printable ASCII is valid UTF-8.
    let text = std::str::from_utf8(plain).map_err(|_| MessageError::NotPrintable)?;
    if text.bytes().filter(|&c| c == b':').count() < 6 {
        return Err(MessageError::TooFewFields);
    }
    let (body, digest) = text.rsplit_once(':').ok_or(MessageError::TooFewFields)?;
    let candidates = DigestType::candidates_for_b64_len(digest.len());
    if candidates.is_empty() {
        return Err(MessageError::DigestLength);
    }
    let digest_type = candidates
        .iter()
        .copied()
        .find(|d| b64::encode(&d.hash(body.as_bytes())) == digest)
        .ok_or(MessageError::DigestMismatch)?;

    let fields: Vec<&str> = body.split(':').collect();
    let [rand, user, ts, version, typ, msg, extra @ ..] = fields.as_slice() else {
        return Err(MessageError::TooFewFields);
    };
    if rand.len() < RAND_VAL_LEN
        || !rand.as_bytes()[..RAND_VAL_LEN]
            .iter()
            .all(u8::is_ascii_digit)
    {
        return Err(MessageError::Field("random"));
    }
    let username = parse_username(user)?;
    if ts.is_empty() || ts.len() > MAX_TIMESTAMP_LEN || !ts.bytes().all(|c| c.is_ascii_digit()) {
        return Err(MessageError::Field("timestamp"));
    }
    let timestamp: u64 = ts.parse().map_err(|_| MessageError::Field("timestamp"))?;
    if version.is_empty() || version.len() > MAX_VERSION_LEN {
        return Err(MessageError::Field("version"));
    }
    let msg_type = (!typ.is_empty() && typ.len() <= 2 && typ.bytes().all(|c| c.is_ascii_digit()))
        .then(|| typ.parse::<u8>().ok())
        .flatten()
        .and_then(MessageType::from_code)
        .ok_or(MessageError::Field("message type"))?;
    if extra.len() > msg_type.max_extra_fields() {
        return Err(MessageError::TooManyFields);
    }
    let message = decode_text_field(msg, "message")?;
    let (allow_ip, ports) = if msg_type == MessageType::Command {
        (parse_command_message(&message)?, Vec::new())
    } else {
        parse_access_message(&message)?
    };

    let mut rest = extra.iter();
    let nat_access = if msg_type.is_nat() {
        let field = rest.next().ok_or(MessageError::Field("NAT"))?;
        let nat = decode_text_field(field, "NAT")?;
        validate_nat(&nat)?;
        Some(nat)
    } else {
        None
    };
    let remaining: Vec<&&str> = rest.collect();
    let (server_auth, timeout_field) = match (msg_type.has_timeout(), remaining.as_slice()) {
        (false, []) => (None, None),
        (false, [sa]) => (Some(*sa), None),
        (true, [t]) => (None, Some(*t)),
        (true, [sa, t]) => (Some(*sa), Some(*t)),
        _ => return Err(MessageError::Field("client timeout")),
    };
    let server_auth = server_auth
        .map(|f| decode_text_field(f, "server auth"))
        .transpose()?;
    let client_timeout = match timeout_field {
        None => 0,
        Some(t) => {
            if t.is_empty() || t.len() > 10 || !t.bytes().all(|c| c.is_ascii_digit()) {
                return Err(MessageError::Field("client timeout"));
            }
            match t.parse::<u32>() {
                Ok(v) if v <= MAX_CLIENT_TIMEOUT => v,
                _ => return Err(MessageError::Field("client timeout")),
            }
        }
    };
    Ok(SpaMessage {
        rand_val: rand[..RAND_VAL_LEN].to_string(),
        username,
        timestamp,
        version: (*version).to_string(),
        msg_type,
        message,
        allow_ip,
        ports,
        nat_access,
        server_auth,
        client_timeout,
        digest_type,
    })
}

/// A base64 field of 1..=256 chars that decodes to printable text.
fn decode_text_field(field: &str, name: &'static str) -> Result<String, MessageError> {
    if field.is_empty() || field.len() > MAX_MESSAGE_B64 {
        return Err(MessageError::Field(name));
    }
    let bytes = b64::decode(field.as_bytes()).ok_or(MessageError::Field(name))?;
    if !bytes.iter().all(|&c| (0x20..0x7f).contains(&c)) {
        return Err(MessageError::Field(name));
    }
    String::from_utf8(bytes).map_err(|_| MessageError::Field(name))
}

fn parse_username(field: &str) -> Result<String, MessageError> {
    if field.len() > MAX_USERNAME_B64 {
        return Err(MessageError::Field("username"));
    }
    let name = decode_text_field(field, "username")?;
    if !valid_username(&name) {
        return Err(MessageError::Field("username"));
    }
    Ok(name)
}

/// fwknop's username rule: 1+ printable ASCII chars, none of `"/\[]:;|=,+*?<>`.
pub fn valid_username(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|c| (0x20..0x7f).contains(&c) && !USERNAME_FORBIDDEN.contains(&c))
}

/// A strict dotted quad of 7..=15 chars.
fn parse_ip(text: &str) -> Option<Ipv4Addr> {
    if !(7..=15).contains(&text.len()) {
        return None;
    }
    text.parse().ok()
}

/// `IP,proto/port[,proto/port...]`.
fn parse_access_message(msg: &str) -> Result<(Ipv4Addr, Vec<PortSpec>), MessageError> {
    let bad = MessageError::Field("access message");
    let mut parts = msg.split(',');
    let ip = parts.next().and_then(parse_ip).ok_or(bad)?;
    let ports: Vec<PortSpec> = parts
        .map(|p| p.parse().map_err(|_| bad))
        .collect::<Result<_, _>>()?;
    if ports.is_empty() {
        return Err(bad);
    }
    Ok((ip, ports))
}

/// `IP,command`.
fn parse_command_message(msg: &str) -> Result<Ipv4Addr, MessageError> {
    let bad = MessageError::Field("command message");
    let (ip, cmd) = msg.split_once(',').ok_or(bad)?;
    if cmd.is_empty() {
        return Err(bad);
    }
    parse_ip(ip).ok_or(bad)
}

/// `host,port`: one comma, host ≤ 70 chars without ` /?"'\`, port 1..=65535.
fn validate_nat(nat: &str) -> Result<(), MessageError> {
    let bad = MessageError::Field("NAT");
    let (host, port) = nat.split_once(',').ok_or(bad)?;
    if port.contains(',') || host.is_empty() || host.len() > 70 {
        return Err(bad);
    }
    if host.bytes().any(|c| b" /?\"'\\".contains(&c)) {
        return Err(bad);
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 && port.bytes().all(|c| c.is_ascii_digit()) => Ok(()),
        _ => Err(bad),
    }
}

/// The fields an encoder puts in a plaintext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainFields<'a> {
    /// 16 decimal digits.
    pub rand_val: &'a str,
    /// Username (already validated).
    pub username: &'a str,
    /// Unix seconds.
    pub timestamp: u64,
    /// Message type.
    pub msg_type: MessageType,
    /// Message text.
    pub message: &'a str,
    /// Optional server-auth text.
    pub server_auth: Option<&'a str>,
    /// Client timeout (written only for timeout types).
    pub client_timeout: u32,
    /// Inner digest type.
    pub digest: DigestType,
}

/// Writes `rand:b64 user:ts:version:type:b64 msg[:b64 sa][:timeout]:digest`.
pub fn encode_plaintext(f: &PlainFields<'_>) -> String {
    let mut body = format!(
        "{}:{}:{}:{}:{}:{}",
        f.rand_val,
        b64::encode(f.username.as_bytes()),
        f.timestamp,
        PROTOCOL_VERSION,
        f.msg_type.code(),
        b64::encode(f.message.as_bytes())
    );
    if let Some(sa) = f.server_auth {
        body.push(':');
        body.push_str(&b64::encode(sa.as_bytes()));
    }
    if f.msg_type.has_timeout() {
        body.push_str(&format!(":{}", f.client_timeout));
    }
    let digest = b64::encode(&f.digest.hash(body.as_bytes()));
    body.push(':');
    body.push_str(&digest);
    body
}

#[cfg(test)]
mod tests;
