//! A minimal HTTP/1.1 responder for `GET /metrics`: one request per
//! connection, then close. Enough for Prometheus and `curl`; no web
//! framework. Bounded like every listener of the daemon: at most
//! [`MAX_CONNECTIONS`] at once (more are closed at once), a request head of
//! at most [`MAX_HEAD`] bytes read within [`TIMEOUT`], the reply written
//! within [`TIMEOUT`].

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::info;

use super::Exporter;
use crate::service::accept_backoff::AcceptBackoff;
use crate::shutdown::Shutdown;

/// Scrapes served at once.
pub const MAX_CONNECTIONS: usize = 8;
/// Longest request head read.
pub const MAX_HEAD: usize = 8 * 1024;
/// How long reading the request, and writing the reply, may each take.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves scrapes on `listener` until `stop`.
pub async fn serve(listener: TcpListener, exporter: Exporter, stop: Shutdown) {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "metrics endpoint listening (GET /metrics)");
    }
    let exporter = Arc::new(exporter);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    let mut backoff = AcceptBackoff::new();
    let stopped = stop.stopped();
    tokio::pin!(stopped);
    loop {
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stopped => break,
        };
        match accepted {
            Ok((stream, _)) => {
                backoff.on_success("metrics endpoint");
                // Over the cap: closed at once (dropped).
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    continue;
                };
                let exporter = exporter.clone();
                connections.spawn(async move {
                    let _ = respond(stream, &exporter).await;
                    drop(permit);
                });
            }
            Err(err) => tokio::select! {
                () = backoff.on_error("metrics endpoint", &err) => {}
                () = &mut stopped => break,
            },
        }
    }
    connections.shutdown().await;
}

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Asked {
    /// `GET /metrics`.
    Metrics,
    /// Another path.
    NotFound,
    /// Another method.
    BadMethod,
    /// Not HTTP.
    Malformed,
}

/// Reads the request line of `head`.
pub fn asked(head: &[u8]) -> Asked {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let Ok(line) = std::str::from_utf8(line) else {
        return Asked::Malformed;
    };
    let mut parts = line.trim_end().split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Asked::Malformed;
    };
    if !version.starts_with("HTTP/1.") {
        return Asked::Malformed;
    }
    let path = target.split('?').next().unwrap_or_default();
    match (method, path) {
        ("GET", "/metrics") => Asked::Metrics,
        ("GET", _) => Asked::NotFound,
        _ => Asked::BadMethod,
    }
}

async fn respond(mut stream: TcpStream, exporter: &Arc<Exporter>) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let read = tokio::time::timeout(TIMEOUT, async {
        let mut buf = [0u8; 1024];
        while head.len() < MAX_HEAD && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    if !matches!(read, Ok(Ok(()))) {
        return Ok(());
    }
    let (status, body, content_type) = match asked(&head) {
        Asked::Metrics => ("200 OK", exporter.scrape(), CONTENT_TYPE),
        Asked::NotFound => ("404 Not Found", "try /metrics\n".to_string(), "text/plain"),
        Asked::BadMethod => (
            "405 Method Not Allowed",
            "GET only\n".to_string(),
            "text/plain",
        ),
        Asked::Malformed => ("400 Bad Request", "not HTTP\n".to_string(), "text/plain"),
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    match tokio::time::timeout(TIMEOUT, stream.write_all(reply.as_bytes())).await {
        Ok(result) => result?,
        Err(_) => return Ok(()),
    }
    let _ = stream.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_metrics_is_served() {
        assert_eq!(
            asked(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Asked::Metrics
        );
        assert_eq!(asked(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"), Asked::Metrics);
        assert_eq!(asked(b"GET / HTTP/1.1\r\n\r\n"), Asked::NotFound);
        assert_eq!(asked(b"POST /metrics HTTP/1.1\r\n\r\n"), Asked::BadMethod);
        assert_eq!(asked(b"\xff\xfe"), Asked::Malformed);
        assert_eq!(asked(b"GET /metrics SPDY\r\n"), Asked::Malformed);
        assert_eq!(asked(b""), Asked::Malformed);
    }
}
