//! The firewall helper: the privileged half of the split. It owns the
//! kernel backend through the same [`FirewallWorker`] a single process
//! uses (setup, batches, repair, teardown) and takes requests from the
//! packet process over the link, one at a time. It parses no packet.
//!
//! Its policy ([`Policy`]): a grant or revoke names a port the
//! configuration protects, a grant lasts at most [`MAX_TTL`], and at most
//! `max_grants` x ports grants are open at once; a reload may only move
//! the protected ports to what the configuration file (read by the helper
//! itself) says. Anything else is refused and logged. Malformed messages
//! are answered with `Failed` and the helper goes on.
//!
//! It keeps its own table of what it granted (with deadlines), so a
//! repair after someone flushed the rules re-applies the grants without
//! asking the packet process. When the packet process goes (a `Bye`, end
//! of file, or its death), the helper tears the rules down and stops.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use super::link::Link;
use super::wire::{MAX_TTL, Outcome, Reply, Request};
use crate::counters::Counters;
use crate::firewall::nftables::NftMonitor;
use crate::firewall::{Change, Firewall, FirewallError, FirewallKind};
use crate::firewall_worker::FirewallWorker;

/// How long the helper waits for the worker to apply one batch.
const APPLY_WAIT: Duration = Duration::from_secs(30);

/// What the helper lets the packet process ask for.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Protected TCP ports.
    pub tcp: Vec<u16>,
    /// Protected UDP ports.
    pub udp: Vec<u16>,
    /// `--max-grants`: the bound of open grants per port.
    pub max_grants: usize,
}

impl Policy {
    /// Whether `change` may be applied while `open` grants are open and
    /// `known` says whether this one is one of them.
    pub fn allows(&self, change: &Change, open: usize, known: bool) -> Result<(), String> {
        let port = match *change {
            Change::Grant { port, .. } | Change::Revoke { port, .. } => port,
        };
        if !self.tcp.contains(&port) && !self.udp.contains(&port) {
            return Err(format!("port {port} is not protected by the configuration"));
        }
        if let Change::Grant { ttl, .. } = *change {
            if ttl.is_zero() || ttl > MAX_TTL {
                return Err(format!("a grant of {ttl:?} (at most {MAX_TTL:?})"));
            }
            let bound = self
                .max_grants
                .saturating_mul(self.tcp.len() + self.udp.len());
            if !known && open >= bound {
                return Err(format!("{open} grants are open, the bound is {bound}"));
            }
        }
        Ok(())
    }
}

/// Reads the protected (TCP, UDP) ports of the configuration file now.
type ReloadPorts = Box<dyn Fn() -> Result<(Vec<u16>, Vec<u16>), String> + Send>;
/// Who owns what grant until when (the helper's own view).
type Table = Arc<Mutex<HashMap<(IpAddr, u16), Instant>>>;
/// A batch the backend applied, and whether each change succeeded.
type Report = (Vec<Change>, Vec<bool>);

/// The helper's state while it serves.
pub struct Helper {
    link: Link,
    firewall: Option<Box<dyn Firewall>>,
    kind: FirewallKind,
    policy: Policy,
    /// Re-reads the configuration's protected ports for a reload.
    reload_ports: ReloadPorts,
    runtime: tokio::runtime::Handle,
}

/// How serving ended.
#[derive(Debug)]
pub enum End {
    /// The packet process said goodbye.
    Bye,
    /// The packet process closed its end without a goodbye (it died).
    Gone,
    /// The link failed, or the backend could not be set up.
    Failed(String),
}

impl Helper {
    /// A helper for `firewall` (`kind`), not set up yet.
    pub fn new(
        link: Link,
        firewall: Box<dyn Firewall>,
        kind: FirewallKind,
        policy: Policy,
        reload_ports: impl Fn() -> Result<(Vec<u16>, Vec<u16>), String> + Send + 'static,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        Helper {
            link,
            firewall: Some(firewall),
            kind,
            policy,
            reload_ports: Box::new(reload_ports),
            runtime,
        }
    }

    /// Serves requests until the packet process goes, then tears down.
    /// Blocking: run it on a thread of its own.
    pub fn serve(mut self) -> End {
        let table: Table = Arc::default();
        let (reports_tx, reports) = std_mpsc::channel::<Report>();
        let mut running: Option<(tokio::sync::mpsc::Sender<Change>, FirewallWorker)> = None;
        let end = loop {
            let bytes = match self.link.recv() {
                Ok(Some(bytes)) => bytes,
                Ok(None) => break End::Gone,
                Err(err) if err.kind() == std::io::ErrorKind::InvalidData => {
                    warn!(error = %err, "helper: refused an oversized request");
                    self.reply(&Reply::Failed(err.to_string()));
                    continue;
                }
                Err(err) => break End::Failed(format!("the link failed: {err}")),
            };
            let request = match Request::decode(&bytes) {
                Ok(request) => request,
                Err(err) => {
                    warn!(error = %err, "helper: refused a malformed request");
                    self.reply(&Reply::Failed(err.to_string()));
                    continue;
                }
            };
            let reply = match (request, &running) {
                (Request::Hello, _) => Reply::Backend(self.kind),
                (Request::Bye, _) => break End::Bye,
                (Request::Setup, None) => match self.setup(&table, reports_tx.clone()) {
                    Ok(started) => {
                        running = Some(started);
                        Reply::Ready
                    }
                    Err(err) => {
                        self.reply(&Reply::Failed(err.to_string()));
                        break End::Failed(format!("firewall setup failed: {err}"));
                    }
                },
                (Request::Setup, Some(_)) => Reply::Failed("already set up".into()),
                (_, None) => Reply::Failed("the firewall is not set up yet".into()),
                (Request::Apply(changes), Some((tx, _))) => {
                    Reply::Results(self.apply(&changes, tx, &reports, &table))
                }
                (Request::Reconfigure(tcp, udp), Some((_, worker))) => {
                    self.reconfigure(tcp, udp, worker)
                }
            };
            self.reply(&reply);
        };
        if let Some((tx, worker)) = running {
            drop(tx);
            self.runtime.block_on(worker.finish());
        }
        end
    }

    fn reply(&self, reply: &Reply) {
        if let Err(err) = self.link.send(&reply.encode()) {
            warn!(error = %err, "helper: cannot answer the packet process");
        }
    }

    fn setup(
        &mut self,
        table: &Table,
        reports: std_mpsc::Sender<Report>,
    ) -> Result<(tokio::sync::mpsc::Sender<Change>, FirewallWorker), FirewallError> {
        let inner = self.firewall.take().expect("set up once");
        let reporting = Box::new(Reporting { inner, reports });
        let counters = Arc::new(Counters::new());
        let (tx, _failed, worker) = self
            .runtime
            .block_on(FirewallWorker::start(reporting, counters))?;
        let live = table.clone();
        worker.live_grants(move || {
            let now = Instant::now();
            let table = live.lock().unwrap_or_else(|p| p.into_inner());
            table
                .iter()
                .filter(|(_, end)| **end > now)
                .map(|(&(ip, port), end)| Change::Grant {
                    ip,
                    port,
                    ttl: *end - now,
                })
                .collect()
        });
        info!(backend = %self.kind, tcp = ?self.policy.tcp, udp = ?self.policy.udp, "firewall helper: rules set up");
        Ok((tx, worker))
    }

    /// Checks each change, has the worker apply the allowed ones, and
    /// waits for their outcomes.
    fn apply(
        &self,
        changes: &[Change],
        tx: &tokio::sync::mpsc::Sender<Change>,
        reports: &std_mpsc::Receiver<Report>,
        table: &Table,
    ) -> Vec<Outcome> {
        let mut outcomes = vec![Outcome::Refused; changes.len()];
        let mut sent = VecDeque::new();
        {
            let mut table = table.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            table.retain(|_, end| *end > now);
            for (i, change) in changes.iter().enumerate() {
                let key = match *change {
                    Change::Grant { ip, port, .. } | Change::Revoke { ip, port } => (ip, port),
                };
                if let Err(why) = self
                    .policy
                    .allows(change, table.len(), table.contains_key(&key))
                {
                    warn!(?change, reason = %why, "helper: refused a change");
                    continue;
                }
                if tx.blocking_send(*change).is_err() {
                    outcomes[i] = Outcome::Failed;
                    continue;
                }
                match *change {
                    Change::Grant { ttl, .. } => table.insert(key, now + ttl),
                    Change::Revoke { .. } => table.remove(&key),
                };
                sent.push_back((i, *change));
            }
        }
        // The worker applies in order, maybe split into several batches,
        // maybe after a repair batch of its own (not ours: skipped).
        let deadline = Instant::now() + APPLY_WAIT;
        while !sent.is_empty() {
            let wait = deadline.saturating_duration_since(Instant::now());
            let Ok((batch, ok)) = reports.recv_timeout(wait) else {
                break;
            };
            let ours =
                batch.len() <= sent.len() && batch.iter().zip(&sent).all(|(a, (_, b))| a == b);
            if !ours {
                continue;
            }
            for ok in ok {
                let (i, change) = sent.pop_front().expect("checked length");
                outcomes[i] = if ok {
                    Outcome::Applied
                } else {
                    Outcome::Failed
                };
                if let (false, Change::Grant { ip, port, .. }) = (ok, change) {
                    table
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&(ip, port));
                }
            }
        }
        for (i, _) in sent {
            error!("helper: the firewall worker did not report a change in time");
            outcomes[i] = Outcome::Failed;
        }
        outcomes
    }

    fn reconfigure(&mut self, tcp: Vec<u16>, udp: Vec<u16>, worker: &FirewallWorker) -> Reply {
        let (want_tcp, want_udp) = match (self.reload_ports)() {
            Ok(ports) => ports,
            Err(why) => return Reply::Failed(format!("cannot read the configuration: {why}")),
        };
        if sorted(&tcp) != sorted(&want_tcp) || sorted(&udp) != sorted(&want_udp) {
            warn!(asked_tcp = ?tcp, asked_udp = ?udp, config_tcp = ?want_tcp, config_udp = ?want_udp, "helper: refused protected ports the configuration does not name");
            return Reply::Failed(format!(
                "ports tcp {tcp:?} udp {udp:?} are not what the configuration protects (tcp {want_tcp:?} udp {want_udp:?})"
            ));
        }
        let reconfigurer = worker.reconfigurer();
        let result = self
            .runtime
            .block_on(reconfigurer.reconfigure(tcp.clone(), udp.clone()));
        match result {
            Ok(()) => {
                self.policy.tcp = tcp;
                self.policy.udp = udp;
                Reply::Reconfigured
            }
            Err(err) => Reply::Failed(err.to_string()),
        }
    }
}

fn sorted(ports: &[u16]) -> Vec<u16> {
    let mut ports = ports.to_vec();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// The real backend, reporting each batch's outcome to the helper.
struct Reporting {
    inner: Box<dyn Firewall>,
    reports: std_mpsc::Sender<Report>,
}

impl Firewall for Reporting {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn setup(&mut self) -> Result<(), FirewallError> {
        self.inner.setup()
    }
    fn grant(&mut self, ip: IpAddr, port: u16, ttl: Duration) -> Result<(), FirewallError> {
        self.inner.grant(ip, port, ttl)
    }
    fn revoke(&mut self, ip: IpAddr, port: u16) -> Result<(), FirewallError> {
        self.inner.revoke(ip, port)
    }
    fn teardown(&mut self) -> Result<(), FirewallError> {
        self.inner.teardown()
    }
    fn verify(&mut self) -> Result<Vec<String>, FirewallError> {
        self.inner.verify()
    }
    fn missing_grants(&mut self, live: &[Change]) -> Result<Vec<Change>, FirewallError> {
        self.inner.missing_grants(live)
    }
    fn verify_every(&self) -> Option<Duration> {
        self.inner.verify_every()
    }
    fn monitor(&mut self) -> Result<Option<NftMonitor>, FirewallError> {
        self.inner.monitor()
    }
    fn reconfigure(&mut self, ports: &[u16], udp_ports: &[u16]) -> Result<bool, FirewallError> {
        self.inner.reconfigure(ports, udp_ports)
    }
    fn apply(&mut self, changes: &[Change]) -> Vec<Result<(), FirewallError>> {
        let results = self.inner.apply(changes);
        let ok = results.iter().map(Result::is_ok).collect();
        let _ = self.reports.send((changes.to_vec(), ok));
        results
    }
}

#[cfg(test)]
mod tests;
