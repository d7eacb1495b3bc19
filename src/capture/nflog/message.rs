//! The nfnetlink_log messages, as bytes: the config requests the reader
//! sends ([`bind`], [`configure`]) and the parser of what the kernel sends
//! back ([`Messages`]). Pure, allocation-free on the read side, so hostile
//! or truncated input is tested with byte fixtures (`tests.rs`).
//!
//! Layout (`linux/netfilter/nfnetlink_log.h`, `nfnetlink.h`): a netlink
//! header (16 bytes), a `struct nfgenmsg` (family, version, `res_id` = the
//! group in network order), then attributes (`struct nlattr`: u16 length
//! with the 4-byte header, u16 type; padded to 4). The message type is
//! `NFNL_SUBSYS_ULOG << 8 | NFULNL_MSG_PACKET` for a logged packet and
//! `... | NFULNL_MSG_CONFIG` for config. Integers inside attributes are
//! big-endian; the netlink and nfgenmsg headers are host order (except
//! `res_id`).

/// `nlmsghdr` length.
const NLMSG_HDRLEN: usize = 16;
/// `nfgenmsg` length.
const NFGEN_LEN: usize = 4;
/// `nlattr` header length.
const NLA_HDRLEN: usize = 4;
/// The type bits of `nla_type` (without `NLA_F_NESTED`/`NLA_F_NET_BYTEORDER`).
const NLA_TYPE_MASK: u16 = 0x3fff;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
/// `NLMSG_ERROR`: an ack (error 0) or a failure (negative errno).
const NLMSG_ERROR: u16 = 0x2;

/// `NFNL_SUBSYS_ULOG << 8 | NFULNL_MSG_PACKET`.
pub const MSG_PACKET: u16 = ((libc::NFNL_SUBSYS_ULOG as u16) << 8) | libc::NFULNL_MSG_PACKET as u16;
/// `NFNL_SUBSYS_ULOG << 8 | NFULNL_MSG_CONFIG`.
pub const MSG_CONFIG: u16 = ((libc::NFNL_SUBSYS_ULOG as u16) << 8) | libc::NFULNL_MSG_CONFIG as u16;

fn align4(len: usize) -> usize {
    (len + 3) & !3
}

fn put_attr(out: &mut Vec<u8>, ty: u16, data: &[u8]) {
    let len = NLA_HDRLEN + data.len();
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&ty.to_ne_bytes());
    out.extend_from_slice(data);
    out.resize(align4(out.len()), 0);
}

/// One config request for `group`: header, nfgenmsg, then `attrs`.
fn config_message(group: u16, seq: u32, attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&[0; NLMSG_HDRLEN]);
    out.push(libc::AF_UNSPEC as u8);
    out.push(libc::NFNETLINK_V0 as u8);
    out.extend_from_slice(&group.to_be_bytes());
    for (ty, data) in attrs {
        put_attr(&mut out, *ty, data);
    }
    let len = out.len() as u32;
    out[0..4].copy_from_slice(&len.to_ne_bytes());
    out[4..6].copy_from_slice(&MSG_CONFIG.to_ne_bytes());
    out[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    out[8..12].copy_from_slice(&seq.to_ne_bytes());
    // nlmsg_pid 0: to the kernel.
    out
}

/// `NFULNL_CFG_CMD_BIND` of `group` to the sending socket (acked).
pub fn bind(group: u16, seq: u32) -> Vec<u8> {
    let cmd = [libc::NFULNL_CFG_CMD_BIND as u8];
    config_message(group, seq, &[(libc::NFULA_CFG_CMD as u16, &cmd)])
}

/// The instance's settings (acked): copy the packet up to `copy_range`
/// bytes (`NFULA_CFG_MODE`, a packed `{be32 range, u8 mode, u8 pad}`),
/// flush after every `qthresh` packets and at the latest after `timeout`
/// hundredths of a second, and number the messages (`NFULNL_CFG_F_SEQ`) so
/// gaps show kernel drops.
pub fn configure(group: u16, seq: u32, copy_range: u32, qthresh: u32, timeout: u32) -> Vec<u8> {
    let mut mode = [0u8; 6];
    mode[..4].copy_from_slice(&copy_range.to_be_bytes());
    mode[4] = libc::NFULNL_COPY_PACKET as u8;
    let qthresh = qthresh.to_be_bytes();
    let timeout = timeout.to_be_bytes();
    let flags = (libc::NFULNL_CFG_F_SEQ as u16).to_be_bytes();
    config_message(
        group,
        seq,
        &[
            (libc::NFULA_CFG_MODE as u16, &mode),
            (libc::NFULA_CFG_QTHRESH as u16, &qthresh),
            (libc::NFULA_CFG_TIMEOUT as u16, &timeout),
            (libc::NFULA_CFG_FLAGS as u16, &flags),
        ],
    )
}

/// A packet the kernel logged to our group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Logged<'a> {
    /// The group it was logged to (`res_id`).
    pub group: u16,
    /// The IP packet from its IP header on (`NFULA_PAYLOAD`), up to the
    /// copy range.
    pub payload: &'a [u8],
    /// The kernel's receive stamp in nanoseconds since the epoch
    /// (`NFULA_TIMESTAMP`), or 0 when the skb carried none.
    pub stamp_ns: u64,
    /// The instance's message number (`NFULA_SEQ`), when numbering is on.
    pub seq: Option<u32>,
}

/// One item of a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item<'a> {
    /// A logged packet with its payload.
    Packet(Logged<'a>),
    /// An ack (`errno` 0) or a failure (a positive errno) of request `seq`.
    Ack {
        /// The request's sequence number.
        seq: u32,
        /// 0, or the errno the kernel refused it with.
        errno: i32,
    },
    /// A message that is none of ours or of no interest (`NLMSG_DONE`
    /// closing a batch, a packet message without payload).
    Other,
    /// Bytes that do not form a message (a length that runs past the
    /// buffer, an attribute that does); the rest of the buffer is skipped.
    Malformed,
}

/// The messages of one datagram, in order. Never panics, never allocates.
#[derive(Debug, Clone)]
pub struct Messages<'a> {
    rest: &'a [u8],
}

impl<'a> Messages<'a> {
    /// Iterates over the messages in `buf` (one `recv`'s bytes).
    pub fn new(buf: &'a [u8]) -> Self {
        Messages { rest: buf }
    }
}

fn u16_ne(b: &[u8]) -> u16 {
    u16::from_ne_bytes([b[0], b[1]])
}

fn u32_ne(b: &[u8]) -> u32 {
    u32::from_ne_bytes([b[0], b[1], b[2], b[3]])
}

fn u32_be(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn u64_be(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

impl<'a> Iterator for Messages<'a> {
    type Item = Item<'a>;

    fn next(&mut self) -> Option<Item<'a>> {
        let buf = self.rest;
        if buf.is_empty() {
            return None;
        }
        if buf.len() < NLMSG_HDRLEN {
            self.rest = &[];
            return Some(Item::Malformed);
        }
        let len = u32_ne(&buf[0..4]) as usize;
        if len < NLMSG_HDRLEN || len > buf.len() {
            self.rest = &[];
            return Some(Item::Malformed);
        }
        let ty = u16_ne(&buf[4..6]);
        let seq = u32_ne(&buf[8..12]);
        let body = &buf[NLMSG_HDRLEN..len];
        self.rest = buf.get(align4(len)..).unwrap_or(&[]);
        Some(match ty {
            NLMSG_ERROR if body.len() >= 4 => Item::Ack {
                seq,
                errno: -(i32::from_ne_bytes([body[0], body[1], body[2], body[3]])),
            },
            MSG_PACKET => packet(body),
            NLMSG_ERROR => Item::Malformed,
            _ => Item::Other,
        })
    }
}

/// A packet message's body: nfgenmsg, then attributes.
fn packet(body: &[u8]) -> Item<'_> {
    if body.len() < NFGEN_LEN {
        return Item::Malformed;
    }
    let group = u16::from_be_bytes([body[2], body[3]]);
    let mut attrs = &body[NFGEN_LEN..];
    let mut payload = None;
    let mut stamp_ns = 0;
    let mut seq = None;
    while !attrs.is_empty() {
        if attrs.len() < NLA_HDRLEN {
            return Item::Malformed;
        }
        let len = u16_ne(&attrs[0..2]) as usize;
        if len < NLA_HDRLEN || len > attrs.len() {
            return Item::Malformed;
        }
        let data = &attrs[NLA_HDRLEN..len];
        match (u16_ne(&attrs[2..4]) & NLA_TYPE_MASK) as libc::c_int {
            libc::NFULA_PAYLOAD => payload = Some(data),
            libc::NFULA_TIMESTAMP if data.len() >= 16 => {
                // struct nfulnl_msg_packet_timestamp { be64 sec; be64 usec; }
                let (sec, usec) = (u64_be(&data[0..8]), u64_be(&data[8..16]));
                stamp_ns = sec
                    .saturating_mul(1_000_000_000)
                    .saturating_add(usec.saturating_mul(1_000));
            }
            libc::NFULA_SEQ if data.len() >= 4 => seq = Some(u32_be(data)),
            _ => {}
        }
        attrs = attrs.get(align4(len)..).unwrap_or(&[]);
    }
    match payload {
        Some(payload) => Item::Packet(Logged {
            group,
            payload,
            stamp_ns,
            seq,
        }),
        None => Item::Other,
    }
}
