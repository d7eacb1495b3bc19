//! Starting the fleet from a validated configuration: the group key, the
//! link, the first connection (refused credentials fail the start; an
//! unreachable engine does not), and the task as a server
//! [`Listener`] that joins the engine when the server starts it.

use std::sync::Arc;
use std::time::Duration;

use tracing::info;

use super::bus::{self, Buckets, FleetError};
use super::link::FleetLink;
use super::settings::load_key;
use crate::config::ServerConfig;
use crate::counters::Counters;
use crate::server::Listener;

/// The fleet's listener for `config` (which has a `[fleet]` table).
pub async fn listener(
    config: &ServerConfig,
    counters: &Arc<Counters>,
) -> Result<Option<Listener>, FleetError> {
    let globals = config.globals();
    let Some(settings) = globals.fleet.clone() else {
        return Ok(None);
    };
    let key = load_key(&settings.key_file)?;
    let longest = config
        .doors()
        .iter()
        .filter(|d| d.fleet())
        .map(|d| d.timing().access)
        .max()
        .unwrap_or_default();
    let replay_age = globals
        .spa
        .as_ref()
        .filter(|_| settings.spa)
        .map(|spa| Duration::from_secs(spa.max_age_secs.max(1)));
    let doors: Vec<String> = config
        .doors()
        .iter()
        .filter(|d| d.fleet())
        .map(|d| d.name().as_str().to_string())
        .collect();
    let (link, outbox) = FleetLink::new(settings, key, counters.clone());
    let client = bus::connect(&link).await?;
    let s = &link.settings;
    info!(
        urls = %s.urls.join(","),
        group = %s.group,
        node = %s.node,
        auth = s.auth.word(),
        doors = ?doors,
        spa = s.spa && replay_age.is_some(),
        when_unreachable = s.when_unreachable.word(),
        "fleet configured"
    );
    let buckets = Buckets::new(longest, replay_age);
    Ok(Some(Listener::new("fleet", move |engine, stop| {
        engine.set_fleet(link.clone());
        bus::run(link, client, outbox, buckets, engine, stop)
    })))
}
