//! Issue 11, end to end: the real `knock-server` with each capture source
//! in a server-host namespace, scanned and knocked from client namespaces
//! on its LAN (`stealth/rig.rs`), by `nmap`, Debian's `knock` and the real
//! `fwknop` client. Needs root and the tools; without them a loud SKIPPED
//! line (a failure under `CI`).
//!
//! | file | shows |
//! |---|---|
//! | `scan.rs` | knock, SPA and protected ports read exactly like their closed neighbours (nftables+nflog, iptables+nflog, gate+packet), v4 and v6; the socket source is the visible one; a default-drop host stays silent everywhere and still hears knocks |
//! | `clients.rs` | Debian `knock` (TCP, `-u`, mixed) and `fwknop` open the port through each source; ACK, RST and SYN+ACK between knocks change nothing |
//! | `bad_input.rs` | unknown protocol suffix, unavailable source, NFLOG group held, unknown interface: exit 2, one line, nothing applied |

mod bad_input;
mod clients;
mod rig;
mod scan;
