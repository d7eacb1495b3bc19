//! Single Packet Authorization, compatible with fwknop 2.6.10 (Rijndael +
//! HMAC mode; see `shared/spa/FWKNOP-SPA.md`).
//!
//! Why: a classic knock sequence can be sniffed and replayed. An SPA packet
//! is encrypted, authenticated, timestamped and remembered, so one packet
//! opens access once, for the address it names. Speaking fwknop's format lets
//! existing fwknop clients (CLI, Android) knock on a portknock server, and
//! lets our client knock on fwknopd.
//!
//! Everything here is pure apart from the replay-cache file: the decoder
//! takes `now` and returns a [`Verdict`]; the server carries it out.
//!
//! | file | concept |
//! |---|---|
//! | `verifier.rs` | [`Verifier`]: fwknopd's checks, in fwknopd's order |
//! | `verdict.rs` | [`Verdict`], [`Accepted`], [`RejectReason`] |
//! | `encoder.rs` | [`encode`]: what our client sends |
//! | `message.rs` | the plaintext fields, [`SpaMessage`] |
//! | `port_spec.rs` | [`PortSpec`]: `tcp/22` |
//! | `policy.rs` | [`GrantPlan`]: what an accepted packet opens; [`open_tcp_ports`] |
//! | `cipher.rs` | salted AES-256-CBC with `EVP_BytesToKey` |
//! | `digest.rs` | [`DigestType`]: hashes and HMACs |
//! | `keys.rs` | [`SpaKeys`], secrets redacted from `Debug` |
//! | `access_conf.rs` | fwknopd's `access.conf` |
//! | `source.rs` | the `SOURCE` address list |
//! | `fwknoprc.rs` | the client's `~/.fwknoprc` |
//! | `key_file.rs` | reading key files: mode checks as fwknop's |
//! | `keygen.rs` | `--keygen` |
//! | `replay.rs` | the persistent, bounded replay cache |
//! | `replay_file.rs` | its file: private directory, no links, bounded reads |
//! | `b64.rs` | fwknop's unpadded base64 |

mod access_conf;
mod b64;
mod cipher;
mod digest;
mod encoder;
mod fwknoprc;
pub(crate) mod key_file;
mod keygen;
mod keys;
mod message;
mod policy;
mod port_spec;
mod replay;
mod replay_file;
mod source;
mod verdict;
mod verifier;

pub use access_conf::{
    AccessConf, AccessConfError, AccessConfOptions, AccessStanza, ConfWarning,
    DEFAULT_FW_ACCESS_TIMEOUT, DEFAULT_MAX_FW_TIMEOUT, load_access_conf, parse_access_conf,
};
pub use cipher::SALTED_PREFIX_B64;
pub use digest::{ALL_DIGESTS, DigestType, UnknownDigest};
pub use encoder::{EncodeError, SpaRequest, encode, encode_with};
pub use fwknoprc::{
    AllowIp, DEFAULT_SPA_PORT, RcError, RcFile, RcStanza, RcWarning, load_fwknoprc, parse_fwknoprc,
};
pub use key_file::{KeyFileError, LooseMode, MAX_KEY_FILE_LEN};
pub use keygen::{GeneratedKeys, KeyGenError};
pub use keys::{EncryptionMode, KeyError, SecretBytes, SpaKeys};
pub use message::{BadPortSpec, MessageError, MessageType, PortSpec, Proto, SpaMessage};
pub use policy::{GrantPlan, open_tcp_ports, stanzas_without_hmac, stanzas_without_open_ports};
pub use replay::{
    MAX_ENTRIES as MAX_REPLAY_ENTRIES, MAX_FILE_LEN as MAX_REPLAY_FILE_LEN, ReplayCache,
    ReplayDigest, ReplayError, ReplayStore,
};
pub use source::{IpNet, SourceSpec};
pub use verdict::{Accepted, RejectReason, Rejected, Verdict};
pub use verifier::{
    Checked, DEFAULT_MAX_AGE_SECS, GPG_MIN_LEN, MAX_PACKET_LEN, MIN_PACKET_LEN, ServerPolicy,
    Verifier,
};
