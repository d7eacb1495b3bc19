//! Open grants and their expiry: which `(ip, port)` may reach the protected
//! service, and until when.
//!
//! Pure like the core: every call takes `now`. The server asks
//! [`GrantTable::next_expiry`] for the one deadline to sleep until (a timer,
//! not polling) and revokes what [`GrantTable::expire`] returns. Grants live
//! apart from the knock tracker so a flood of knocks can never evict one.
//!
//! Bounded by `--max-grants` (issue 9: 300 000 spoofed correct sequences
//! made 300 000 grants). At the cap a *new* grant is refused and an open
//! one is never evicted: evicting would let whoever floods with a sniffed
//! sequence shut real users out mid-session, while refusing only delays
//! newcomers until a grant ends. Renewals of an open grant still work. The
//! shell counts refusals and logs them under a [`RefusalLog`] budget, one
//! line per burst rather than one per packet.
//!
//! Grants are per `(ip, holder, port)`: a holder is a door (issue 10: each
//! door's grant has its own end and renews on its own) or SPA. The
//! firewall knows only `(ip, port)`, which stays open while any holder's
//! grant for it lasts: [`GrantTable::open_until`] is the latest end (what
//! a kernel timeout must be set to), and [`GrantTable::expire`] returns an
//! `(ip, port)` only when its last grant ends. `--max-grants` counts
//! `(ip, holder, port)` grants.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use thiserror::Error;

/// Default bound on open grants: far above what one host's users need,
/// small enough that a flood of spoofed grants costs a few megabytes.
pub const DEFAULT_MAX_GRANTS: usize = 10_000;

/// Largest accepted `--max-grants`: the configuration file's bound
/// (`max-grants`), so a flag and a file accept the same values.
pub const MAX_MAX_GRANTS: usize = crate::config::server_config::MAX_TABLE_BOUND as usize;

/// How long refusals are summarised into one warning.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// A `--max-grants` value that was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid --max-grants '{value}': expected a whole number from 1 to {MAX_MAX_GRANTS}")]
pub struct MaxGrantsError {
    /// The text given.
    pub value: String,
}

/// Parses `--max-grants`: a whole number from 1 to [`MAX_MAX_GRANTS`].
pub fn parse_max_grants(text: &str) -> Result<usize, MaxGrantsError> {
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_MAX_GRANTS).contains(&n) => Ok(n),
        _ => Err(MaxGrantsError {
            value: text.to_string(),
        }),
    }
}

/// A new grant refused because the table holds its maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("grant for {ip} port {port} refused: {max} grants are open (--max-grants)")]
pub struct GrantRefused {
    /// Who asked.
    pub ip: IpAddr,
    /// For which port.
    pub port: u16,
    /// The bound.
    pub max: usize,
}

/// Whether a grant was new or extended an open one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantChange {
    /// No grant was open for this `(ip, port)`.
    New,
    /// An open grant was renewed to the new end.
    Renewed,
}

/// Who holds a grant: a door's index (`knock::DoorId`), [`SPA`], or
/// [`MANUAL`]. Its [`Origin`] says how it was granted.
pub type Holder = u16;

/// The holder of SPA grants (no door has this index).
pub const SPA: Holder = Holder::MAX;

/// The holder of grants an operator made over the control socket
/// (`knockctl grant`; no door has this index).
pub const MANUAL: Holder = Holder::MAX - 1;

pub use origin::Origin;

/// The open grants, keyed by `(ip, holder, port)`, at most `max` of them.
#[derive(Debug)]
pub struct GrantTable {
    until: HashMap<(IpAddr, Holder, u16), Instant>,
    by_deadline: BTreeSet<(Instant, IpAddr, u16, Holder)>,
    /// The holders of each open `(ip, port)`: the firewall's view.
    holders: HashMap<(IpAddr, u16), Vec<Holder>>,
    max: usize,
}

impl GrantTable {
    /// An empty table that holds at most `max` grants (at least one).
    pub fn new(max: usize) -> Self {
        Self {
            until: HashMap::new(),
            by_deadline: BTreeSet::new(),
            holders: HashMap::new(),
            max: max.max(1),
        }
    }

    /// Opens (or renews) SPA's access for `(ip, port)` until `until`; a
    /// new grant is refused while `max` are open.
    pub fn grant(
        &mut self,
        ip: IpAddr,
        port: u16,
        until: Instant,
    ) -> Result<GrantChange, GrantRefused> {
        self.grant_for(ip, SPA, port, until)
    }

    /// Opens (or renews) `holder`'s access for `(ip, port)` until `until`;
    /// a new grant is refused while `max` are open. Another holder's grant
    /// for the same `(ip, port)` is a new grant (the firewall's `(ip, port)`
    /// is then held twice).
    pub fn grant_for(
        &mut self,
        ip: IpAddr,
        holder: Holder,
        port: u16,
        until: Instant,
    ) -> Result<GrantChange, GrantRefused> {
        let ip = ip.to_canonical();
        if let Some(old) = self.until.get_mut(&(ip, holder, port)) {
            self.by_deadline.remove(&(*old, ip, port, holder));
            *old = until;
            self.by_deadline.insert((until, ip, port, holder));
            return Ok(GrantChange::Renewed);
        }
        if self.until.len() >= self.max {
            return Err(GrantRefused {
                ip,
                port,
                max: self.max,
            });
        }
        self.until.insert((ip, holder, port), until);
        self.by_deadline.insert((until, ip, port, holder));
        self.holders.entry((ip, port)).or_default().push(holder);
        Ok(GrantChange::New)
    }

    /// Removes every grant whose end is at or before `now`; returns the
    /// `(ip, port)`s whose last grant that was, which the firewall must
    /// close.
    pub fn expire(&mut self, now: Instant) -> Vec<(IpAddr, u16)> {
        let mut closed = Vec::new();
        while let Some(&(until, ip, port, holder)) = self.by_deadline.first() {
            if until > now {
                break;
            }
            self.by_deadline.pop_first();
            self.until.remove(&(ip, holder, port));
            if self.release(ip, port, holder) {
                closed.push((ip, port));
            }
        }
        closed
    }

    /// Drops `holder` from `(ip, port)`; true if it was the last.
    fn release(&mut self, ip: IpAddr, port: u16, holder: Holder) -> bool {
        let Some(holders) = self.holders.get_mut(&(ip, port)) else {
            return false;
        };
        holders.retain(|&h| h != holder);
        if holders.is_empty() {
            self.holders.remove(&(ip, port));
            return true;
        }
        false
    }

    /// Removes every holder's grant for `(ip, port)`, if any; true if
    /// there was one.
    pub fn remove(&mut self, ip: IpAddr, port: u16) -> bool {
        let ip = ip.to_canonical();
        let Some(holders) = self.holders.remove(&(ip, port)) else {
            return false;
        };
        for holder in holders {
            if let Some(until) = self.until.remove(&(ip, holder, port)) {
                self.by_deadline.remove(&(until, ip, port, holder));
            }
        }
        true
    }

    /// Removes every grant `holder` holds (a door removed by a reload);
    /// returns the `(ip, port)`s the firewall must close (no other holder).
    pub fn remove_holder(&mut self, holder: Holder) -> Vec<(IpAddr, u16)> {
        let mine: Vec<(IpAddr, u16, Instant)> = self
            .until
            .iter()
            .filter(|(key, _)| key.1 == holder)
            .map(|(&(ip, _, port), &until)| (ip, port, until))
            .collect();
        let mut closed = Vec::new();
        for (ip, port, until) in mine {
            self.until.remove(&(ip, holder, port));
            self.by_deadline.remove(&(until, ip, port, holder));
            if self.release(ip, port, holder) {
                closed.push((ip, port));
            }
        }
        closed
    }

    /// The earliest end of an open grant: when the server must next wake.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.by_deadline.first().map(|&(until, ..)| until)
    }

    /// The latest end of the grants holding `(ip, port)` open: how long
    /// the firewall must keep it open.
    pub fn open_until(&self, ip: IpAddr, port: u16) -> Option<Instant> {
        let ip = ip.to_canonical();
        let holders = self.holders.get(&(ip, port))?;
        holders
            .iter()
            .filter_map(|&h| self.until.get(&(ip, h, port)).copied())
            .max()
    }

    /// Whether `(ip, port)` has a grant still open at `now`.
    pub fn is_granted(&self, ip: IpAddr, port: u16, now: Instant) -> bool {
        self.open_until(ip, port).is_some_and(|until| now < until)
    }

    /// Every `(ip, port)` open in the firewall, with the latest end of its
    /// grants, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (IpAddr, u16, Instant)> + '_ {
        self.holders
            .keys()
            .filter_map(|&(ip, port)| self.open_until(ip, port).map(|until| (ip, port, until)))
    }

    /// Number of open grants (one per `(ip, holder, port)`).
    pub fn len(&self) -> usize {
        self.until.len()
    }

    /// Whether no grant is open.
    pub fn is_empty(&self) -> bool {
        self.until.is_empty()
    }
}

/// The budget of refusal warnings: the first refusal after a quiet
/// [`REFUSAL_LOG_INTERVAL`] is logged at once, later ones in the interval
/// are counted and reported with the next logged one.
#[derive(Debug, Default)]
pub struct RefusalLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl RefusalLog {
    /// Notes a refusal at `now`; `Some(n)` if it is to be logged, with
    /// the `n` refusals suppressed since the last logged one.
    pub fn admit(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < REFUSAL_LOG_INTERVAL => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests;

mod control;
mod origin;
mod remap;

pub use control::GrantEntry;
