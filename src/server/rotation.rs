//! The shell of rotating doors (issue 14): the wall clock, the
//! used-sequence memory on disk, and the knock sockets that follow the
//! rotation.
//!
//! The core judges knocks against periods `c-1`, `c` and `c+1` of each
//! rotating door (`knock/rotation.rs`). Here, a task wakes at each period
//! boundary of any rotating door and hands the receiver a tick; between two
//! passes, the receiver judges what it holds under the old periods, then
//! the engine rotates the core and the receiver closes the sockets of the
//! ports no longer accepted and binds the new ones. The ports of the
//! period that just became `c+1` are bound a whole period before a client
//! with a correct clock knocks them, and the period that just ended stays
//! accepted (as `c-1`) for a whole period after, so no correct knock is
//! lost at a boundary. With stealth capture the same tick is where the
//! capture filter (`CaptureSpec`) will be replaced, with the ports of all
//! three periods at once (the seam: [`Engine::rotate`] returns them).
//!
//! The used-sequence memory ([`UsedMemory`]) is one state file per
//! rotating door (`rotate/used.rs`), written atomically when a sequence
//! opens its door (rare: once per period at most) and read back at every
//! rotation, so a restart never re-opens a replay.

use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tracing::{error, warn};

use super::Engine;
use crate::config::{Door, Proto};
use crate::rotate::{UsedError, UsedSequences};
use crate::shutdown::Shutdown;

/// Time since the Unix epoch, by the wall clock (periods are wall-clock
/// periods shared with clients).
pub fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
}

/// The used-sequence memory of every rotating door.
#[derive(Debug, Default)]
pub struct UsedMemory {
    doors: Vec<(String, UsedSequences)>,
}

impl UsedMemory {
    /// Reads the state file of each rotating door of `doors` (a missing
    /// file is an empty memory; an unreadable one is an error).
    pub fn load(doors: &[Door]) -> Result<Self, UsedError> {
        let mut memory = Self::default();
        for door in doors {
            if let Some(rotating) = door.rotating_sequence() {
                let used = UsedSequences::load(&rotating.state)?;
                memory.doors.push((door.name().as_str().to_string(), used));
            }
        }
        Ok(memory)
    }

    /// Whether `door`'s sequence of `period` opened it already.
    pub fn is_used(&self, door: &str, period: u64) -> bool {
        self.doors
            .iter()
            .any(|(name, used)| name == door && used.is_used(door, period))
    }

    /// Records a use and saves it; a failed save is logged (the core
    /// still refuses the sequence until its period ends).
    pub fn record(&mut self, door: &str, period: u64, current: u64) {
        for (name, used) in &mut self.doors {
            if name == door {
                if let Err(err) = used.mark(door, period, current) {
                    error!(door, error = %err, "cannot save the used-sequence memory: a replay after a restart would not be refused");
                }
            }
        }
    }
}

/// The UDP knock ports of `doors` at `unix`: every fixed knock, and the
/// sequences of periods `c-1..=c+1` of every rotating door.
pub fn knock_ports_at(doors: &[Door], unix: Duration) -> Vec<u16> {
    let knocks: Vec<Vec<u16>> = doors.iter().map(|d| door_knocks(d, unix)).collect();
    let mut ports: Vec<u16> = knocks.iter().flatten().copied().collect();
    ports.sort_unstable();
    ports.dedup();
    // Decoys: never a knock port or a protected port of any door.
    let protected: Vec<u16> = doors
        .iter()
        .flat_map(|d| d.protected())
        .map(|p| p.port)
        .collect();
    let mut decoys: Vec<u16> = doors
        .iter()
        .zip(&knocks)
        .flat_map(|(door, knocks)| door.decoys().ports(knocks))
        .filter(|p| ports.binary_search(p).is_err() && !protected.contains(p))
        .collect();
    ports.append(&mut decoys);
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// The UDP knock ports of `door` at `unix` (a rotating door's: periods
/// `c-1..=c+1`).
fn door_knocks(door: &Door, unix: Duration) -> Vec<u16> {
    let mut ports = Vec::new();
    {
        let knocks = match door.rotating_sequence() {
            None => door.sequence().to_vec(),
            Some(r) => {
                let c = r.rotation.period_at(unix);
                (c.saturating_sub(1)..=c + 1)
                    .flat_map(|p| r.knocks(door.name().as_str(), p))
                    .collect()
            }
        };
        ports.extend(
            knocks
                .iter()
                .filter(|k| k.proto == Proto::Udp)
                .map(|k| k.port),
        );
    }
    ports
}

/// Binds knock sockets for `ports` on `addrs`, skipping (with a warning)
/// a port that cannot be bound: a rotating port or a decoy held by another
/// program loses its knocks, the rest works.
pub fn bind_lenient(addrs: &[std::net::IpAddr], ports: &[u16]) -> Vec<tokio::net::UdpSocket> {
    let mut sockets = Vec::new();
    for &port in ports {
        match super::bind_udp(addrs, &[port]) {
            Ok(bound) => sockets.extend(bound),
            Err(err) => {
                warn!(port, error = %err, "cannot bind a rotating knock port or decoy: its knocks are not heard")
            }
        }
    }
    sockets
}

/// The next period boundary after `unix` of any rotating door of `doors`.
pub fn next_boundary(doors: &[Door], unix: Duration) -> Option<Duration> {
    doors
        .iter()
        .filter_map(|door| door.rotating_sequence())
        .map(|r| r.rotation.start_of(r.rotation.period_at(unix) + 1))
        .min()
}

/// Sends the receiver a tick (the boundary's wall-clock time) at each
/// period boundary of the engine's rotating doors, until `stop`.
pub(super) async fn run_rotator(
    engine: std::sync::Arc<Engine>,
    ticks: mpsc::Sender<Duration>,
    stop: Shutdown,
) {
    loop {
        let now = unix_now();
        let next = engine.next_boundary(now);
        // No rotating door (yet: a reload may add one): look again later.
        let wait = next.map_or(Duration::from_secs(1), |b| b.saturating_sub(now));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.stopped() => return,
        }
        if let Some(boundary) = next {
            if ticks.send(boundary.max(unix_now())).await.is_err() {
                warn!("knock receiver gone: rotation stops");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests;
