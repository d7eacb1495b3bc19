//! The stats endpoint: the server's counters for benchmarks and, later,
//! metrics.
//!
//! A TCP listener on a loopback address: every connection gets one line of
//! JSON ([`stats_line`], the counters' wire format in [`crate::counters`])
//! and is closed. Why this shape: any tool reads it (`nc 127.0.0.1 PORT`),
//! it costs nothing while nobody asks (no timer, no file rewritten), and
//! loopback only keeps the figures off the network.
//!
//! A failing accept (out of file descriptors) backs off as every accept
//! loop of the crate does ([`AcceptBackoff`]): retrying at once spun a core
//! while descriptors ran out (issue 9 item 10).

use std::net::SocketAddr;
use std::sync::Arc;

use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tracing::info;

use crate::counters::{Counters, SpaCounters, stats_line};
use crate::service::accept_backoff::AcceptBackoff;
use crate::shutdown::Shutdown;

/// A stats address that was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StatsAddrError {
    /// Not `IP:PORT`.
    #[error("invalid stats address '{0}': expected IP:PORT on loopback, e.g. 127.0.0.1:9920")]
    Syntax(String),
    /// Not a loopback address.
    #[error("invalid stats address '{0}': only loopback (127.0.0.0/8 or ::1) is allowed")]
    NotLoopback(String),
}

/// Parses `--stats-listen`: an `IP:PORT` on loopback.
pub fn parse_stats_addr(text: &str) -> Result<SocketAddr, StatsAddrError> {
    let addr: SocketAddr = text
        .trim()
        .parse()
        .map_err(|_| StatsAddrError::Syntax(text.to_string()))?;
    if !addr.ip().to_canonical().is_loopback() {
        return Err(StatsAddrError::NotLoopback(text.to_string()));
    }
    Ok(addr)
}

/// Answers every connection on `listener` with the counters (and the SPA
/// listener's, if given) until `shutdown` is stopped.
pub async fn serve(
    listener: TcpListener,
    counters: Arc<Counters>,
    spa: Option<Arc<SpaCounters>>,
    shutdown: Shutdown,
) {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "stats endpoint listening");
    }
    let shutdown = shutdown.stopped();
    tokio::pin!(shutdown);
    let mut backoff = AcceptBackoff::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut shutdown => return,
        };
        match accepted {
            Ok((mut stream, _)) => {
                backoff.on_success("stats endpoint");
                let line = stats_line(&counters, spa.as_deref());
                // A slow reader must not hold up the next one: write from a task.
                tokio::spawn(async move {
                    let _ = stream.write_all(line.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
            Err(err) => tokio::select! {
                _ = backoff.on_error("stats endpoint", &err) => {}
                _ = &mut shutdown => return,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::{CountersSnapshot, SpaCountersSnapshot};
    use std::sync::atomic::Ordering::Relaxed;
    use tokio::io::AsyncReadExt;

    #[test]
    fn only_loopback_addresses_are_accepted() {
        assert!(parse_stats_addr("127.0.0.1:9920").is_ok());
        assert!(parse_stats_addr("[::1]:9920").is_ok());
        assert!(matches!(
            parse_stats_addr("0.0.0.0:9920"),
            Err(StatsAddrError::NotLoopback(_))
        ));
        assert!(matches!(
            parse_stats_addr("localhost"),
            Err(StatsAddrError::Syntax(_))
        ));
    }

    #[tokio::test]
    async fn a_connection_reads_one_json_line_of_counters() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counters = Arc::new(Counters::new());
        counters.record_packets(7);
        let (stop, shutdown) = Shutdown::new();
        let spa = Arc::new(SpaCounters::default());
        spa.accepted.fetch_add(3, Relaxed);
        let server = tokio::spawn(serve(listener, counters, Some(spa), shutdown));
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).await.unwrap();
        assert_eq!(CountersSnapshot::from_json(&text).unwrap().packets, 7);
        assert_eq!(SpaCountersSnapshot::from_json(&text).unwrap().accepted, 3);
        let without = stats_line(&Counters::new(), None);
        assert_eq!(SpaCountersSnapshot::from_json(&without), None);
        stop.stop();
        server.await.unwrap();
    }
}
