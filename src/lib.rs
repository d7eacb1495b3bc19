//! portknock: a port-knocking system.
//!
//! A protected TCP service stays closed until a client knocks a secret
//! sequence of UDP ports within a time window; the server then opens the
//! firewall for that client's address only, for a limited time.
//!
//! Component map (data flows one way: packet -> core -> verdict -> firewall):
//!
//! | module | job |
//! |---|---|
//! | [`config`] | validated configuration; the one place that rejects bad values |
//! | [`knock`] | the core: a pure state machine judging `(ip, port, now)` |
//! | [`grants`] | open grants and their expiry, pure |
//! | [`firewall`] | the backend trait and its implementations |
//! | [`spa`] | fwknop-compatible Single Packet Authorization: decoder, encoder, key files, replay cache |

pub mod config;
pub mod firewall;
pub mod grants;
pub mod knock;
pub mod spa;
