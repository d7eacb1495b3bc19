//! The SPA decoder: judges one received payload against the access stanzas,
//! running fwknopd's checks in fwknopd's order (FWKNOP-SPA.md §6).
//!
//! Cheap checks first: size, the re-added prefix, the alphabet, the source
//! stanza match, and only then crypto, HMAC (constant time) strictly before
//! any decryption; then the replay cache, then the policy. The work is split
//! in two so a listener can run the stateless half ([`Verifier::check`]) on
//! several threads and the replay half ([`Verifier::conclude`]), which must
//! check-and-record each digest atomically, on one. (fwknopd looks up the
//! cache before the crypto; doing it after costs a replayed packet its HMAC
//! but lets the crypto run in parallel.) Every step works on the payload
//! after the size check, so no allocation exceeds a small multiple of
//! [`MAX_PACKET_LEN`]. No clock is read: `now` is passed in.

use std::net::{IpAddr, Ipv4Addr};

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

use super::access_conf::AccessStanza;
use super::b64;
use super::cipher::{self, SALTED_PREFIX_B64};
use super::message::{self, MessageType, RAND_VAL_LEN, SpaMessage};
use super::replay::{ReplayDigest, ReplayStore};
use super::verdict::{Accepted, RejectReason, Rejected, Verdict};

/// fwknopd drops payloads shorter than this (`MIN_SPA_DATA_SIZE`).
pub const MIN_PACKET_LEN: usize = 140;
/// fwknopd drops payloads longer than this (`MAX_SPA_PACKET_LEN`).
pub const MAX_PACKET_LEN: usize = 1500;
/// fwknopd treats payloads this long or longer as GnuPG (`MIN_GNUPG_MSG_SIZE`).
pub const GPG_MIN_LEN: usize = 400;
/// fwknopd's default `MAX_SPA_PACKET_AGE`, seconds.
pub const DEFAULT_MAX_AGE_SECS: u64 = 120;

/// Server-wide rules (flags), on top of each stanza's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerPolicy {
    /// Timestamps further than this from `now` are refused (`--spa-max-age`).
    pub max_age_secs: u64,
    /// Require the requested IP to equal the packet's source address
    /// (`--spa-require-source-match`); fwknop does not.
    pub require_source_match: bool,
    /// Accept NAT message types (fwknopd with ENABLE_IPT_FORWARDING). The
    /// grant then opens the message's ports; no NAT rule is made.
    pub allow_nat: bool,
}

impl Default for ServerPolicy {
    fn default() -> Self {
        ServerPolicy {
            max_age_secs: DEFAULT_MAX_AGE_SECS,
            require_source_match: false,
            allow_nat: false,
        }
    }
}

/// The decoder: stanzas in file order plus the server policy.
#[derive(Debug, Clone)]
pub struct Verifier {
    stanzas: Vec<AccessStanza>,
    policy: ServerPolicy,
}

/// A packet that passed [`Verifier::check`]: its replay digest and what
/// each matching stanza made of it, waiting for [`Verifier::conclude`].
#[derive(Debug)]
pub struct Checked {
    digest: ReplayDigest,
    outcomes: Vec<(usize, Outcome)>,
}

/// What one stanza made of a packet: its message, or how far it got.
type Outcome = Result<SpaMessage, (Stage, RejectReason)>;

/// How far a stanza got before failing; the furthest failure is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    /// Not authenticated (HMAC, or decryption for a stanza without HMAC).
    Unauthenticated,
    /// HMAC verified, decryption failed.
    Decrypt,
    /// Decrypted, message invalid.
    Decode,
    /// Decoded, refused by policy.
    Policy,
}

struct Failure {
    stage: Stage,
    reason: RejectReason,
    stanza: usize,
    message: Option<Box<SpaMessage>>,
}

impl Verifier {
    /// A decoder for these stanzas (tried in order) and policy.
    pub fn new(stanzas: Vec<AccessStanza>, policy: ServerPolicy) -> Self {
        Verifier { stanzas, policy }
    }

    /// The stanzas, in the order they are tried.
    pub fn stanzas(&self) -> &[AccessStanza] {
        &self.stanzas
    }

    /// The server policy.
    pub fn policy(&self) -> &ServerPolicy {
        &self.policy
    }

    /// Judges `packet` (the UDP payload) from `source` at `now` (unix
    /// seconds). A packet that authenticates and decodes is recorded in
    /// `replay` before the policy checks, as fwknopd does, and committed
    /// before an acceptance is returned. [`Verifier::check`] then
    /// [`Verifier::conclude`] then [`ReplayStore::commit`].
    pub fn verify(
        &self,
        packet: &[u8],
        source: IpAddr,
        now: u64,
        replay: &mut dyn ReplayStore,
    ) -> Verdict {
        let checked = match self.check(packet, source) {
            Ok(checked) => checked,
            Err(rejected) => return Verdict::Reject(rejected),
        };
        let verdict = self.conclude(checked, source, now, replay);
        if matches!(verdict, Verdict::Accept(_)) && replay.commit(now).is_err() {
            return Verdict::Reject(Rejected {
                reason: RejectReason::ReplayCacheFailed,
                stanza: None,
                message: None,
            });
        }
        verdict
    }

    /// The first, stateless half of [`Verifier::verify`]: sizes, alphabet,
    /// stanza choice by source, HMAC and decryption for every matching
    /// stanza. Needs no replay cache, so packets can be checked on several
    /// threads at once. A packet that authenticates with no stanza is
    /// rejected here, whether or not it was seen before.
    pub fn check(&self, packet: &[u8], source: IpAddr) -> Result<Checked, Rejected> {
        let reject = |reason| Rejected {
            reason,
            stanza: None,
            message: None,
        };
        precheck(packet).map_err(reject)?;
        let candidates: Vec<usize> = (0..self.stanzas.len())
            .filter(|&i| self.stanzas[i].source.matches(source))
            .collect();
        if candidates.is_empty() {
            return Err(reject(RejectReason::NoStanzaForSource));
        }
        if packet.len() >= GPG_MIN_LEN {
            return Err(reject(RejectReason::TreatedAsGpg { len: packet.len() }));
        }
        let outcomes: Vec<(usize, Outcome)> = candidates
            .into_iter()
            .map(|idx| (idx, authenticate(&self.stanzas[idx], packet)))
            .collect();
        if outcomes.iter().all(|(_, o)| o.is_err()) {
            let best = outcomes
                .into_iter()
                .filter_map(|(idx, o)| o.err().map(|(stage, reason)| (stage, idx, reason)))
                .reduce(|best, f| if f.0 > best.0 { f } else { best });
            return Err(match best {
                Some((_, idx, reason)) => Rejected {
                    reason,
                    stanza: Some(idx),
                    message: None,
                },
                None => reject(RejectReason::NoStanzaForSource),
            });
        }
        Ok(Checked {
            digest: Sha256::digest(packet).into(),
            outcomes,
        })
    }

    /// The second half of [`Verifier::verify`], for one thread at a time:
    /// the replay check and record (atomic per digest, since the caller
    /// owns `replay`), then the policy. The record is not yet durable: the
    /// caller commits `replay` before it carries out an acceptance.
    pub fn conclude(
        &self,
        checked: Checked,
        source: IpAddr,
        now: u64,
        replay: &mut dyn ReplayStore,
    ) -> Verdict {
        let Checked { digest, outcomes } = checked;
        if replay.contains(&digest) {
            return Verdict::Reject(Rejected {
                reason: RejectReason::Replay,
                stanza: None,
                message: None,
            });
        }
        let mut best: Option<Failure> = None;
        let mut recorded = false;
        for (idx, outcome) in outcomes {
            let stanza = &self.stanzas[idx];
            let failure = match outcome {
                Err((stage, reason)) => Failure {
                    stage,
                    reason,
                    stanza: idx,
                    message: None,
                },
                Ok(msg) => {
                    if !recorded {
                        if replay.record(digest, msg.timestamp).is_err() {
                            return Verdict::Reject(Rejected {
                                reason: RejectReason::ReplayCacheFailed,
                                stanza: None,
                                message: None,
                            });
                        }
                        recorded = true;
                    }
                    match self.apply_policy(stanza, &msg, source, now) {
                        Ok((allow_ip, timeout_secs)) => {
                            return Verdict::Accept(Box::new(Accepted {
                                allow_ip,
                                ports: msg.ports.clone(),
                                timeout_secs,
                                stanza: idx,
                                replay_digest: b64::encode(&digest),
                                message: msg,
                            }));
                        }
                        Err(reason) => Failure {
                            stage: Stage::Policy,
                            reason,
                            stanza: idx,
                            message: Some(Box::new(msg)),
                        },
                    }
                }
            };
            if best.as_ref().is_none_or(|b| failure.stage > b.stage) {
                best = Some(failure);
            }
        }
        match best {
            Some(f) => Verdict::Reject(Rejected {
                reason: f.reason,
                stanza: Some(f.stanza),
                message: f.message,
            }),
            None => Verdict::Reject(Rejected {
                reason: RejectReason::NoStanzaForSource,
                stanza: None,
                message: None,
            }),
        }
    }

    /// Steps 6..9 of §6.4: age, allow-IP, username, type, ports, timeout.
    fn apply_policy(
        &self,
        stanza: &AccessStanza,
        msg: &SpaMessage,
        source: IpAddr,
        now: u64,
    ) -> Result<(Ipv4Addr, u32), RejectReason> {
        let skew = i128::from(msg.timestamp) - i128::from(now);
        if skew.unsigned_abs() > u128::from(self.policy.max_age_secs) {
            let skew_secs =
                i64::try_from(skew).unwrap_or(if skew < 0 { i64::MIN } else { i64::MAX });
            return Err(RejectReason::StaleTimestamp {
                skew_secs,
                max_age_secs: self.policy.max_age_secs,
            });
        }
        let source_v4 = match source {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(v6) => v6.to_ipv4_mapped(),
        };
        let allow_ip = if msg.allow_ip.is_unspecified() {
            if stanza.require_source_address {
                return Err(RejectReason::SourceAddressRequired);
            }
            source_v4.ok_or(RejectReason::SourceNotIpv4)?
        } else {
            if self.policy.require_source_match && source_v4 != Some(msg.allow_ip) {
                return Err(RejectReason::SourceMismatch);
            }
            msg.allow_ip
        };
        if let Some(user) = &stanza.require_username {
            if *user != msg.username {
                return Err(RejectReason::UsernameMismatch);
            }
        }
        if msg.msg_type == MessageType::Command {
            return Err(RejectReason::CommandNotEnabled);
        }
        if msg.msg_type.is_nat() && !self.policy.allow_nat {
            return Err(RejectReason::NatNotEnabled);
        }
        if let Some(open) = &stanza.open_ports {
            if let Some(p) = msg.ports.iter().find(|p| !open.contains(p)) {
                return Err(RejectReason::PortNotAllowed(*p));
            }
        }
        let timeout = if msg.client_timeout > 0 {
            msg.client_timeout.min(stanza.max_fw_timeout)
        } else {
            stanza.fw_access_timeout
        };
        Ok((allow_ip, timeout))
    }
}

/// §6.1: size bounds, the re-added prefix, the alphabet. No allocation.
fn precheck(packet: &[u8]) -> Result<(), RejectReason> {
    if packet.len() < MIN_PACKET_LEN {
        return Err(RejectReason::TooShort {
            len: packet.len(),
            min: MIN_PACKET_LEN,
        });
    }
    if packet.len() > MAX_PACKET_LEN {
        return Err(RejectReason::TooLong {
            len: packet.len(),
            max: MAX_PACKET_LEN,
        });
    }
    if packet.starts_with(SALTED_PREFIX_B64.as_bytes()) {
        return Err(RejectReason::SaltedPrefixPresent);
    }
    if let Some(offset) = packet.iter().position(|&c| !b64::is_payload_char(c)) {
        return Err(RejectReason::BadCharacter { offset });
    }
    Ok(())
}

/// §6.4.2..4 for one stanza: HMAC, decrypt, decode.
fn authenticate(stanza: &AccessStanza, packet: &[u8]) -> Result<SpaMessage, (Stage, RejectReason)> {
    let keys = &stanza.keys;
    let body = match &keys.hmac_key {
        Some(hmac_key) => {
            let tag_len = keys.hmac_digest.b64_len();
            if packet.len() <= tag_len {
                return Err((Stage::Unauthenticated, RejectReason::HmacMismatch));
            }
            let (body, tag) = packet.split_at(packet.len() - tag_len);
            let mut b = Vec::with_capacity(SALTED_PREFIX_B64.len() + body.len());
            b.extend_from_slice(SALTED_PREFIX_B64.as_bytes());
            b.extend_from_slice(body);
            let expected = b64::encode(&keys.hmac_digest.hmac(hmac_key.expose(), &b));
            if !bool::from(expected.as_bytes().ct_eq(tag)) {
                return Err((Stage::Unauthenticated, RejectReason::HmacMismatch));
            }
            b
        }
        None => {
            let mut b = Vec::with_capacity(SALTED_PREFIX_B64.len() + packet.len());
            b.extend_from_slice(SALTED_PREFIX_B64.as_bytes());
            b.extend_from_slice(packet);
            b
        }
    };
    let decrypt_stage = if keys.hmac_key.is_some() {
        Stage::Decrypt
    } else {
        Stage::Unauthenticated
    };
    let decrypt_failed = (decrypt_stage, RejectReason::DecryptFailed);
    let blob = b64::decode_payload(&body).ok_or(decrypt_failed.clone())?;
    let plain =
        cipher::decrypt(&blob, keys.key.expose(), keys.mode).ok_or(decrypt_failed.clone())?;
    let rand_ok = plain.len() > RAND_VAL_LEN
        && plain[..RAND_VAL_LEN].iter().all(u8::is_ascii_digit)
        && plain[RAND_VAL_LEN] == b':';
    if !rand_ok {
        return Err(decrypt_failed);
    }
    let decode_stage = if keys.hmac_key.is_some() {
        Stage::Decode
    } else {
        Stage::Decrypt
    };
    message::parse_plaintext(&plain).map_err(|e| (decode_stage, RejectReason::Malformed(e)))
}

#[cfg(test)]
mod tests;
