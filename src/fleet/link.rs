//! The engine's end of the fleet: what the knock and SPA paths call to
//! publish a grant, to ask whether fleet doors are refused right now, and
//! to check an SPA digest fleet-wide. The NATS task (`bus.rs`) owns the
//! other end.
//!
//! Nothing here waits on the network except [`FleetLink::replay_check`],
//! which is bounded by [`REPLAY_CHECK_TIMEOUT`]: publishing is a
//! `try_send` into a bounded queue, so a knock never waits for NATS.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::kv;
use tokio::sync::mpsc;
use tracing::warn;

use super::record::{GrantRecord, GroupKey, RecordKind};
use super::settings::{FleetSettings, WhenUnreachable};
use crate::counters::FleetCounters;

/// Records waiting for the NATS task; beyond this they are dropped and
/// counted (each node still enforces its own grants).
pub const OUTBOX: usize = 4096;

/// Longest an SPA grant waits for the fleet-wide replay check (then the
/// failure policy decides).
pub const REPLAY_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The door name of SPA grants in records.
pub const SPA_DOOR: &str = "spa";

/// What the fleet-wide replay check said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayCheck {
    /// First time anywhere in the fleet: recorded.
    Fresh,
    /// Another node (or this one) accepted this packet already.
    Replayed,
    /// The engine could not be asked in time.
    Unreachable,
}

/// Shared by the engine, the SPA grant task and the NATS task.
#[derive(Debug)]
pub struct FleetLink {
    /// The settings.
    pub settings: FleetSettings,
    /// The group key.
    pub key: GroupKey,
    /// Ids of this run's records start with this (`<node>.<run>.`).
    pub run_prefix: String,
    seq: AtomicU64,
    outbox: mpsc::Sender<GrantRecord>,
    online: AtomicBool,
    /// The SPA replay bucket, once the NATS task has it.
    pub(super) replay: OnceLock<kv::Store>,
    counters: Arc<crate::counters::Counters>,
}

impl FleetLink {
    /// A link for `settings`; returns the queue the NATS task drains.
    pub fn new(
        settings: FleetSettings,
        key: GroupKey,
        counters: Arc<crate::counters::Counters>,
    ) -> (Arc<Self>, mpsc::Receiver<GrantRecord>) {
        let (outbox, rx) = mpsc::channel(OUTBOX);
        let run = format!("{:x}", unix_ms() ^ u64::from(std::process::id()) << 40);
        counters.fleet.enabled.store(true, Relaxed);
        let link = Self {
            run_prefix: format!("{}.{run}.", settings.node),
            settings,
            key,
            seq: AtomicU64::new(0),
            outbox,
            online: AtomicBool::new(false),
            replay: OnceLock::new(),
            counters,
        };
        (Arc::new(link), rx)
    }

    /// The fleet counters.
    pub fn counters(&self) -> &FleetCounters {
        &self.counters.fleet
    }

    /// Marks the engine reachable (buckets ready) or not.
    pub fn set_online(&self, online: bool) {
        self.online.store(online, Relaxed);
        self.counters().connected.store(u64::from(online), Relaxed);
    }

    /// Whether the engine is reachable now.
    pub fn is_online(&self) -> bool {
        self.online.load(Relaxed)
    }

    /// Whether fleet doors must refuse grants now (policy `refuse` and
    /// the engine unreachable); counts the refusal.
    pub fn refuses_now(&self) -> bool {
        let refuse = self.settings.when_unreachable == WhenUnreachable::Refuse && !self.is_online();
        if refuse {
            self.counters().refused_unreachable.fetch_add(1, Relaxed);
        }
        refuse
    }

    /// Queues a record for the fleet: `ip` may reach `ports` of `door`
    /// for `ttl` from now (or, for [`RecordKind::Revoke`], no longer).
    /// Never waits: a full queue drops the record (counted, logged).
    pub fn publish(&self, kind: RecordKind, ip: IpAddr, door: &str, ports: &[u16], ttl: Duration) {
        let seq = self.seq.fetch_add(1, Relaxed);
        let record = GrantRecord {
            kind,
            ip: ip.to_canonical(),
            door: door.to_string(),
            ports: ports.to_vec(),
            expires_at: unix_ms() + u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX / 2),
            origin: self.settings.node.clone(),
            id: format!("{}{seq}", self.run_prefix),
        };
        if self.outbox.try_send(record).is_err() {
            self.counters().publish_dropped.fetch_add(1, Relaxed);
            warn!(%ip, door, "fleet outbox full: grant not published (applied here only)");
        }
    }

    /// Creates `digest` in the fleet's replay bucket: refused if it
    /// exists. Bounded by [`REPLAY_CHECK_TIMEOUT`].
    pub async fn replay_check(&self, digest: &str) -> ReplayCheck {
        let Some(store) = self.replay.get().filter(|_| self.is_online()) else {
            return ReplayCheck::Unreachable;
        };
        // Base64 digests hold '+' and '/', which NATS keys refuse: hex.
        let key: String = digest.bytes().map(|b| format!("{b:02x}")).collect();
        let create = store.create(&key, "1".into());
        match tokio::time::timeout(REPLAY_CHECK_TIMEOUT, create).await {
            Ok(Ok(_)) => ReplayCheck::Fresh,
            Ok(Err(e)) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                self.counters().replay_refused.fetch_add(1, Relaxed);
                ReplayCheck::Replayed
            }
            Ok(Err(e)) => {
                warn!(error = %e, "fleet replay check failed");
                ReplayCheck::Unreachable
            }
            Err(_) => ReplayCheck::Unreachable,
        }
    }
}

/// Now, unix milliseconds.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
