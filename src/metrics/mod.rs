//! The Prometheus endpoint (`--metrics-listen ADDR`): `GET /metrics` in
//! the Prometheus text format (0.0.4), encoded by `prometheus-client`.
//!
//! One source of truth: nothing here counts. At each scrape the
//! [`exporter::Exporter`] reads the daemon's [`crate::counters`] (the same
//! atomics the stats line and the shutdown summary read) and the engine's
//! census (open grants by origin, tracked and locked-out sources), so the
//! figures cannot drift apart. No label carries an address: the series
//! stay few however many clients knock.
//!
//! | file | concept |
//! |---|---|
//! | `exporter.rs` | the collector: counters and census -> metric families |
//! | `http.rs` | a minimal HTTP/1.1 responder: one bounded request per connection |

pub mod exporter;
pub mod http;

use std::net::SocketAddr;
use std::sync::Arc;

use thiserror::Error;

use crate::counters::{Counters, SpaCounters};
use crate::server::Listener;

pub use exporter::{BuildInfo, Exporter};

/// The metrics endpoint could not be set up.
#[derive(Debug, Error)]
#[error("cannot serve metrics on {addr}")]
pub struct MetricsError {
    /// The address.
    pub addr: SocketAddr,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// Binds `addr` and returns the endpoint's task, which serves the engine's
/// and `counters`' figures (and the SPA listener's, if on).
pub async fn listener(
    addr: SocketAddr,
    info: BuildInfo,
    counters: Arc<Counters>,
    spa: Option<Arc<SpaCounters>>,
) -> Result<Listener, MetricsError> {
    let bound = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError { addr, source })?;
    Ok(Listener::new("metrics", move |engine, stop| {
        let exporter = Exporter::new(info, counters, spa, Some(engine));
        http::serve(bound, exporter, stop)
    }))
}
