//! The NATS task: connects, makes sure the group's buckets exist, watches
//! the grants bucket (current values first, then every change, in order)
//! and applies what verifies; publishes this node's records, holding them
//! while the engine is unreachable and dropping those that end meanwhile
//! (so nothing ended is resurrected when it comes back).
//!
//! The watch is the convergence mechanism: after a restart, a late join
//! or a lost connection the task watches again from the start, and the
//! snapshot brings every live grant with its end; [`super::decide`] skips
//! what has ended and clamps the rest. Applying a record twice renews a
//! grant to the same end, so a repeated snapshot changes nothing.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use async_nats::{Client, ConnectErrorKind, ConnectOptions, Event};
use futures_util::StreamExt;
use thiserror::Error;
use tracing::{debug, info, warn};

use super::decide::{Decision, decide};
use super::link::{FleetLink, unix_ms};
use super::record::{GrantRecord, RecordError, RecordKind, key_of};
use super::settings::{FleetAuth, FleetSettings};
use crate::log_budget::{Admit, LogBudget};
use crate::server::Engine;
use crate::shutdown::Shutdown;

/// How long the first connection attempt may take before the failure
/// policy applies (the client keeps trying in the background).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one write to the bucket may take.
const PUT_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between attempts while the engine is unreachable.
const RETRY: Duration = Duration::from_secs(1);
/// The grants bucket keeps records at least this long (records end
/// through `expires_at`; this only bounds what a restart replays).
const MIN_GRANTS_AGE: Duration = Duration::from_secs(3600);
/// Records held while unreachable, at most (oldest dropped beyond).
const MAX_PENDING: usize = 4096;

/// Why the fleet could not start.
#[derive(Debug, Error)]
pub enum FleetError {
    /// The settings or the key file were refused.
    #[error(transparent)]
    Config(#[from] super::settings::FleetConfigError),
    /// The NATS server refused this node (credentials, TLS).
    #[error("fleet: NATS server {urls} refused the connection ({kind}): {message}")]
    Refused {
        /// The configured URLs.
        urls: String,
        /// What kind of refusal.
        kind: String,
        /// The client's message.
        message: String,
    },
}

/// Connects to the fleet's NATS servers. Refused credentials or TLS fail
/// the start; an unreachable engine does not (the client keeps trying;
/// the failure policy decides what fleet doors do meanwhile).
pub async fn connect(link: &Arc<FleetLink>) -> Result<Client, FleetError> {
    let settings = &link.settings;
    let urls = settings.urls.join(",");
    let first = options(link, false).await?.connect(&settings.urls);
    let error = match tokio::time::timeout(CONNECT_TIMEOUT, first).await {
        Ok(Ok(client)) => return Ok(client),
        Ok(Err(e)) => e,
        Err(_) => {
            warn_unreachable(settings, "timed out");
            return background(link).await;
        }
    };
    match error.kind() {
        ConnectErrorKind::Io | ConnectErrorKind::TimedOut | ConnectErrorKind::Dns => {
            warn_unreachable(settings, &error.to_string());
            background(link).await
        }
        kind => Err(FleetError::Refused {
            urls,
            kind: kind.to_string(),
            message: error.to_string(),
        }),
    }
}

async fn background(link: &Arc<FleetLink>) -> Result<Client, FleetError> {
    let opts = options(link, true).await?;
    opts.connect(&link.settings.urls)
        .await
        .map_err(|e| FleetError::Refused {
            urls: link.settings.urls.join(","),
            kind: e.kind().to_string(),
            message: e.to_string(),
        })
}

fn warn_unreachable(settings: &FleetSettings, why: &str) {
    warn!(
        urls = %settings.urls.join(","),
        error = why,
        policy = settings.when_unreachable.word(),
        "fleet engine unreachable at start: starting anyway, retrying in the background (fleet doors follow when-unreachable meanwhile)"
    );
}

async fn options(link: &Arc<FleetLink>, retry: bool) -> Result<ConnectOptions, FleetError> {
    let s = &link.settings;
    let mut opts = ConnectOptions::new()
        .name(format!("portknock-{}", s.node))
        .connection_timeout(CONNECT_TIMEOUT)
        .max_reconnects(None);
    opts = match &s.auth {
        FleetAuth::None => opts,
        FleetAuth::UserPassword(u, p) => opts.user_and_password(u.clone(), p.clone()),
        FleetAuth::Token(t) => opts.token(t.clone()),
        FleetAuth::NkeyFile(path) => {
            let seed = std::fs::read_to_string(path).map_err(|e| {
                super::settings::FleetConfigError(format!(
                    "fleet nkey-file {}: {e}",
                    path.display()
                ))
            })?;
            opts.nkey(seed.trim().to_string())
        }
        FleetAuth::CredsFile(path) => opts.credentials_file(path).await.map_err(|e| {
            super::settings::FleetConfigError(format!("fleet creds-file {}: {e}", path.display()))
        })?,
    };
    if let Some(ca) = &s.tls_ca {
        opts = opts.add_root_certificates(ca.clone());
    }
    if retry {
        opts = opts.retry_on_initial_connect();
    }
    let events = link.clone();
    Ok(opts.event_callback(move |event| {
        let link = events.clone();
        async move {
            match event {
                Event::Connected => {
                    link.counters().connects.fetch_add(1, Relaxed);
                    info!("fleet: connected to NATS");
                }
                Event::Disconnected => {
                    link.set_online(false);
                    warn!("fleet: disconnected from NATS (retrying)");
                }
                other => debug!(event = %other, "fleet: NATS event"),
            }
        }
    }))
}

/// Runs the fleet until `stop`: buckets, watch and apply, publish.
pub async fn run(
    link: Arc<FleetLink>,
    client: Client,
    mut outbox: tokio::sync::mpsc::Receiver<GrantRecord>,
    buckets: Buckets,
    engine: Arc<Engine>,
    stop: Shutdown,
) {
    let js = jetstream::new(client);
    let mut pending: Vec<GrantRecord> = Vec::new();
    let mut budget = LogBudget::default();
    'connect: loop {
        let grants = loop {
            match buckets.open(&js, &link).await {
                Ok(grants) => break grants,
                Err(e) => {
                    debug!(error = %e, "fleet: buckets not reachable yet");
                    tokio::select! {
                        () = stop.stopped() => return,
                        () = tokio::time::sleep(RETRY) => continue,
                    }
                }
            }
        };
        // Last value per key first (the snapshot), then every change.
        let mut watch = match grants.watch_with_history(">").await {
            Ok(watch) => watch,
            Err(e) => {
                debug!(error = %e, "fleet: cannot watch the grants bucket yet");
                tokio::select! {
                    () = stop.stopped() => return,
                    () = tokio::time::sleep(RETRY) => continue 'connect,
                }
            }
        };
        link.set_online(true);
        info!(bucket = %link.settings.grants_bucket(), node = %link.settings.node, "fleet: watching grants");
        flush(&link, &grants, &mut pending).await;
        let mut tick = tokio::time::interval(RETRY);
        loop {
            tokio::select! {
                () = stop.stopped() => return,
                entry = watch.next() => match entry {
                    Some(Ok(entry)) => handle(&link, &engine, &entry, &mut budget).await,
                    Some(Err(e)) => {
                        warn!(error = %e, "fleet: watch failed; watching again");
                        link.set_online(false);
                        continue 'connect;
                    }
                    None => {
                        link.set_online(false);
                        continue 'connect;
                    }
                },
                Some(record) = outbox.recv() => {
                    pending.push(record);
                    while let Ok(more) = outbox.try_recv() {
                        pending.push(more);
                    }
                    flush(&link, &grants, &mut pending).await;
                }
                _ = tick.tick() => {
                    if !pending.is_empty() {
                        flush(&link, &grants, &mut pending).await;
                    }
                }
            }
        }
    }
}

/// Publishes what is pending, oldest first; keeps what fails for later
/// and drops what ended while waiting.
async fn flush(link: &FleetLink, grants: &kv::Store, pending: &mut Vec<GrantRecord>) {
    let counters = link.counters();
    let now = unix_ms();
    let before = pending.len();
    pending.retain(|r| r.kind == RecordKind::Revoke || r.expires_at > now);
    if pending.len() > MAX_PENDING {
        let extra = pending.len() - MAX_PENDING;
        pending.drain(..extra);
    }
    let dropped = before - pending.len();
    counters.publish_dropped.fetch_add(dropped as u64, Relaxed);
    let mut sent = 0;
    for record in pending.iter() {
        let key = key_of(&record.door, record.ip);
        let signed = link.key.sign(&link.settings.group, record.clone());
        let value = serde_json::to_vec(&signed).expect("a record serialises");
        match tokio::time::timeout(PUT_TIMEOUT, grants.put(&key, value.into())).await {
            Ok(Ok(_)) => {
                sent += 1;
                counters.published.fetch_add(1, Relaxed);
                debug!(key, id = %record.id, "fleet: published");
            }
            _ => {
                link.set_online(false);
                break;
            }
        }
    }
    pending.drain(..sent);
    if sent > 0 {
        link.set_online(true);
    }
    counters.pending.store(pending.len() as u64, Relaxed);
}

/// Applies one change of the grants bucket.
async fn handle(link: &FleetLink, engine: &Engine, entry: &kv::Entry, budget: &mut LogBudget) {
    let counters = link.counters();
    if entry.operation != kv::Operation::Put {
        // A delete or purge marker (an operator's `nats kv del`): it can
        // close a door, never open one.
        if let Some((door, ip)) = parse_key(&entry.key) {
            engine.revoke_fleet(ip, door).await;
            counters.applied.fetch_add(1, Relaxed);
        }
        return;
    }
    let record = match link.key.verify(&link.settings.group, &entry.value) {
        Ok(record) => record,
        Err(error) => {
            counters.rejected_forged.fetch_add(1, Relaxed);
            log_forged(&entry.key, &error, budget);
            return;
        }
    };
    let access = engine.fleet_access(&record.door, link);
    match decide(&record, unix_ms(), &link.run_prefix, access) {
        Decision::Apply { ttl, skewed } => {
            if skewed {
                counters.skew_warnings.fetch_add(1, Relaxed);
                warn!(ip = %record.ip, door = %record.door, origin = %record.origin, expires_at = record.expires_at, "fleet: record ends implausibly far ahead (clock skew?): clamped to the door's access time");
            }
            engine.apply_fleet(&record, ttl).await;
            counters.applied.fetch_add(1, Relaxed);
            info!(ip = %record.ip, door = %record.door, origin = %record.origin, remaining_ms = ttl.as_millis() as u64, "fleet: access granted");
        }
        Decision::Revoke => {
            engine.revoke_fleet(record.ip, &record.door).await;
            counters.applied.fetch_add(1, Relaxed);
            info!(ip = %record.ip, door = %record.door, origin = %record.origin, "fleet: access revoked");
        }
        Decision::Skip(why) => {
            counters.skipped.fetch_add(1, Relaxed);
            debug!(ip = %record.ip, door = %record.door, ?why, "fleet: record skipped");
        }
    }
}

fn log_forged(key: &str, error: &RecordError, budget: &mut LogBudget) {
    match budget.admit(Instant::now()) {
        Admit::Info { demoted_before } => {
            warn!(key, error = %error, demoted_before, "fleet: record ignored (does not verify with the group key)");
        }
        Admit::Debug => debug!(key, error = %error, "fleet: record ignored"),
    }
}

/// `(door, ip)` of a bucket key made by [`key_of`].
fn parse_key(key: &str) -> Option<(&str, std::net::IpAddr)> {
    let (door, ip) = key.split_once('.')?;
    Some((door, ip.replace('_', ":").parse().ok()?))
}

/// What the buckets must look like.
#[derive(Debug, Clone)]
pub struct Buckets {
    /// The grants bucket keeps records this long.
    pub grants_age: Duration,
    /// The SPA replay bucket's age (the packet-age window); None: no SPA.
    pub replay_age: Option<Duration>,
}

impl Buckets {
    /// The buckets for the longest fleet door `access` and SPA's window.
    pub fn new(longest_access: Duration, replay_age: Option<Duration>) -> Self {
        Self {
            grants_age: (longest_access * 2).max(MIN_GRANTS_AGE),
            replay_age,
        }
    }

    async fn open(
        &self,
        js: &jetstream::Context,
        link: &FleetLink,
    ) -> Result<kv::Store, Box<dyn std::error::Error + Send + Sync>> {
        let replicas = link.settings.replicas;
        let grants = bucket(js, link.settings.grants_bucket(), self.grants_age, replicas).await?;
        if let (Some(age), None) = (self.replay_age, link.replay.get()) {
            let replay = bucket(js, link.settings.replay_bucket(), age, replicas).await?;
            let _ = link.replay.set(replay);
        }
        Ok(grants)
    }
}

/// Opens bucket `name`, creating it with `max_age` if it does not exist
/// (a bucket made by another node is used as it is). The stream is made
/// the way the client's `create_key_value` makes it, without its account
/// query, whose reply NATS 2.9 (Debian's) words differently.
async fn bucket(
    js: &jetstream::Context,
    name: String,
    max_age: Duration,
    replicas: usize,
) -> Result<kv::Store, Box<dyn std::error::Error + Send + Sync>> {
    if let Ok(store) = js.get_key_value(&name).await {
        return Ok(store);
    }
    let config = jetstream::stream::Config {
        name: format!("KV_{name}"),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        max_age,
        max_message_size: i32::try_from(super::record::MAX_RECORD_LEN).unwrap_or(i32::MAX),
        storage: jetstream::stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: jetstream::stream::DiscardPolicy::New,
        duplicate_window: max_age.min(Duration::from_secs(120)),
        num_replicas: replicas,
        ..Default::default()
    };
    if let Err(e) = js.create_stream(config).await {
        debug!(error = %e, bucket = %name, "fleet: bucket not created (another node's?)");
    }
    Ok(js.get_key_value(&name).await?)
}
