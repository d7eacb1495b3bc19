//! The engine's side of fleet mode (issue 15): publishing this node's
//! grants of fleet doors, applying remote ones through the same grant
//! table and firewall queue as local ones (so expiry, `--max-grants`, the
//! firewall worker and its privilege split treat them alike), the
//! `refuse` failure policy, and the SPA fleet-wide replay gate.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

use super::engine::{DoorInfo, Engine, Handled, log_refusal};
use crate::firewall::Change;
use crate::fleet::{FleetLink, GrantRecord, RecordKind, ReplayCheck, SPA_DOOR, WhenUnreachable};
use crate::grants::{Holder, SPA};
use crate::knock::Verdict;
use crate::spa::GrantPlan;

/// Longest SPA grant applied from the fleet (fwknop's own cap on a
/// client's requested timeout is far below; this bounds a bad record).
pub const FLEET_SPA_CAP: Duration = Duration::from_secs(24 * 3600);

impl Engine {
    /// Joins the engine to the fleet (once; later calls are ignored).
    pub fn set_fleet(&self, link: Arc<FleetLink>) {
        let _ = self.fleet.set(link);
    }

    /// The fleet link, if the daemon runs in a fleet.
    pub fn fleet(&self) -> Option<&Arc<FleetLink>> {
        self.fleet.get()
    }

    /// Whether fleet doors refuse grants now (policy `refuse`, engine
    /// unreachable).
    pub(super) fn fleet_refuses(&self) -> bool {
        let refuses = self.fleet.get().is_some_and(|link| link.refuses_now());
        if refuses {
            warn!("fleet engine unreachable: fleet door grant refused (when-unreachable = refuse)");
        }
        refuses
    }

    /// Publishes the grants of fleet doors among `verdicts` (one record
    /// per door and address).
    pub(super) fn publish_knock_grants(&self, verdicts: &[Handled], doors: &[DoorInfo]) {
        let Some(link) = self.fleet.get() else { return };
        let now = Instant::now().into_std();
        let mut last = None;
        for handled in verdicts {
            let (Verdict::Grant { ip, until }, Some((_, Ok(_), _))) =
                (handled.judged.verdict, handled.grant)
            else {
                continue;
            };
            let door = &doors[usize::from(handled.judged.door).min(doors.len() - 1)];
            if !door.fleet || last == Some((ip, handled.judged.door)) {
                continue;
            }
            last = Some((ip, handled.judged.door));
            let ttl = until.saturating_duration_since(now);
            link.publish(RecordKind::Grant, ip, &door.name, &door.protected, ttl);
        }
    }

    /// How long a fleet record for `door` may open it here: the door's
    /// access time if it is shared here, None if not.
    pub fn fleet_access(&self, door: &str, link: &FleetLink) -> Option<Duration> {
        if door == SPA_DOOR {
            return link.settings.spa.then_some(FLEET_SPA_CAP);
        }
        let state = self.lock();
        state
            .doors
            .iter()
            .find(|d| d.fleet && d.name == door)
            .map(|d| d.access)
    }

    /// The holder and ports of a fleet record's door here.
    fn fleet_holder(&self, door: &str, ports: &[u16]) -> Option<(Holder, Vec<u16>)> {
        if door == SPA_DOOR {
            return Some((SPA, ports.to_vec()));
        }
        let state = self.lock();
        let index = state.doors.iter().position(|d| d.fleet && d.name == door)?;
        let holder = Holder::try_from(index).ok()?;
        Some((holder, state.doors[index].protected.clone()))
    }

    /// Opens a remote record's door for its address for `ttl` (the time
    /// that remains), like a local grant of that door.
    pub async fn apply_fleet(&self, record: &GrantRecord, ttl: Duration) {
        let Some((holder, ports)) = self.fleet_holder(&record.door, &record.ports) else {
            return;
        };
        let mut changes = Vec::new();
        {
            let mut state = self.lock();
            let now = Instant::now().into_std();
            let until = now + ttl;
            for &port in &ports {
                match state.grant(record.ip, holder, port, until, &self.counters) {
                    Ok(_) => {
                        let end = state.grants.open_until(record.ip, port).unwrap_or(until);
                        let ttl = end.saturating_duration_since(now);
                        changes.push(Change::Grant {
                            ip: record.ip,
                            port,
                            ttl,
                        });
                    }
                    Err((refused, log)) => log_refusal(&refused, log),
                }
            }
            self.wake_expiry.notify_one();
        }
        for change in changes {
            self.queue(change).await;
        }
    }

    /// Ends `door`'s grant for `ip` now (a fleet revocation): the expiry
    /// task closes the firewall unless another door still holds it.
    pub async fn revoke_fleet(&self, ip: IpAddr, door: &str) {
        let Some((holder, ports)) = self.fleet_holder(door, &[]) else {
            return;
        };
        let mut state = self.lock();
        let now = Instant::now().into_std();
        let ports = match holder == SPA {
            true => state
                .grants
                .iter()
                .filter(|&(i, _, _)| i == ip.to_canonical())
                .map(|(_, port, _)| port)
                .collect(),
            false => ports,
        };
        for port in ports {
            if state.grants.open_until(ip, port).is_some() {
                let _ = state.grant(ip, holder, port, now, &self.counters);
            }
        }
        self.wake_expiry.notify_one();
    }

    /// The fleet-wide replay check of an accepted SPA packet (after the
    /// local cache): false if another node accepted it first, or the
    /// engine is unreachable under policy `refuse`. Waits at most
    /// [`crate::fleet::REPLAY_CHECK_TIMEOUT`].
    pub async fn spa_fleet_admits(&self, plan: &GrantPlan) -> bool {
        let Some(link) = self.fleet.get().filter(|l| l.settings.spa) else {
            return true;
        };
        match link.replay_check(&plan.replay_digest).await {
            ReplayCheck::Fresh => true,
            ReplayCheck::Replayed => {
                info!(ip = %plan.ip, "spa packet refused: already accepted by a node of the fleet (replay)");
                false
            }
            ReplayCheck::Unreachable => match link.settings.when_unreachable {
                WhenUnreachable::GrantLocally => {
                    warn!(ip = %plan.ip, "fleet replay check unavailable: granting on the local replay check only (when-unreachable = grant-locally)");
                    true
                }
                WhenUnreachable::Refuse => {
                    link.counters()
                        .refused_unreachable
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    warn!(ip = %plan.ip, "spa packet refused: fleet replay check unavailable (when-unreachable = refuse)");
                    false
                }
            },
        }
    }

    /// Publishes an SPA grant to the fleet.
    pub fn publish_spa(&self, plan: &GrantPlan) {
        if let Some(link) = self.fleet.get().filter(|l| l.settings.spa) {
            if !plan.tcp_ports.is_empty() {
                link.publish(
                    RecordKind::Grant,
                    plan.ip,
                    SPA_DOOR,
                    &plan.tcp_ports,
                    plan.ttl,
                );
            }
        }
    }
}
