//! The gate's proxy to `--upstream`, with an idle timeout.
//!
//! Why: a proxied connection held open without traffic keeps a gate slot
//! (and two descriptors) forever; one granted client parked 300 of them
//! (issue 9 item 9). When no byte moves either way, on either socket, for
//! the idle timeout, both sides are closed. Bytes are copied as
//! [`tokio::io::copy_bidirectional`] does (a half-close is passed on); each
//! socket is wrapped in a `Tracked` stream that notes the time of the
//! last byte read or written, and a watchdog sleeps until that time plus
//! the timeout.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Default `--upstream-idle-timeout`: as long as an SSH session may sit
/// silent behind many NAT boxes' TCP timeouts, and short enough that parked
/// connections give their slots back.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// How a proxied connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyEnd {
    /// Both sides closed; bytes copied each way.
    Closed {
        /// Client to upstream.
        to_upstream: u64,
        /// Upstream to client.
        to_client: u64,
    },
    /// No byte either way for the idle timeout: both sides were closed.
    Idle,
}

/// Copies between `client` and `upstream` until both close or nothing
/// moves for `idle`. Both streams are dropped (closed) when this returns.
pub async fn proxy<A, B>(client: A, upstream: B, idle: Duration) -> io::Result<ProxyEnd>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let activity = Arc::new(Activity::new());
    let mut client = Tracked::new(client, Arc::clone(&activity));
    let mut upstream = Tracked::new(upstream, Arc::clone(&activity));
    let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
    tokio::pin!(copy);
    loop {
        let deadline = activity.last() + idle;
        tokio::select! {
            copied = &mut copy => {
                let (to_upstream, to_client) = copied?;
                return Ok(ProxyEnd::Closed { to_upstream, to_client });
            }
            () = tokio::time::sleep_until(deadline) => {
                if activity.last() + idle <= Instant::now() {
                    return Ok(ProxyEnd::Idle);
                }
            }
        }
    }
}

/// The time of the last byte, as nanoseconds since `base`.
#[derive(Debug)]
struct Activity {
    base: Instant,
    last_nanos: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            base: Instant::now(),
            last_nanos: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let nanos = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_nanos.fetch_max(nanos, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.base + Duration::from_nanos(self.last_nanos.load(Ordering::Relaxed))
    }
}

/// A stream that notes every byte read or written in its [`Activity`].
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Tracked<S> {
    fn new(inner: S, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

    const IDLE: Duration = Duration::from_secs(10);

    /// A proxy between two in-memory pipes; returns the far ends (the
    /// client's and the upstream's) and the proxy task.
    fn start() -> (
        DuplexStream,
        DuplexStream,
        tokio::task::JoinHandle<io::Result<ProxyEnd>>,
    ) {
        let (client, client_far) = duplex(1024);
        let (upstream, upstream_far) = duplex(1024);
        let task = tokio::spawn(proxy(client, upstream, IDLE));
        (client_far, upstream_far, task)
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_is_closed_on_both_sides_after_the_timeout() {
        let (mut client, mut upstream, task) = start();
        let started = Instant::now();
        assert_eq!(task.await.unwrap().unwrap(), ProxyEnd::Idle);
        assert!(started.elapsed() >= IDLE);
        let mut buf = [0u8; 8];
        assert_eq!(client.read(&mut buf).await.unwrap(), 0);
        assert_eq!(upstream.read(&mut buf).await.unwrap(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn traffic_either_way_keeps_the_connection_open() {
        let (mut client, mut upstream, task) = start();
        let mut buf = [0u8; 8];
        // Five idle periods, a byte every half period, alternating ways.
        for round in 0..10 {
            tokio::time::sleep(IDLE / 2).await;
            let (from, to) = match round % 2 {
                0 => (&mut client, &mut upstream),
                _ => (&mut upstream, &mut client),
            };
            from.write_all(b"x").await.unwrap();
            assert_eq!(to.read(&mut buf).await.unwrap(), 1);
            assert!(!task.is_finished(), "closed while active (round {round})");
        }
        let quiet_from = Instant::now();
        assert_eq!(task.await.unwrap().unwrap(), ProxyEnd::Idle);
        assert!(quiet_from.elapsed() >= IDLE);
    }

    #[tokio::test(start_paused = true)]
    async fn both_sides_closing_ends_the_proxy_with_the_byte_counts() {
        let (mut client, mut upstream, task) = start();
        client.write_all(b"hello").await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        upstream.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello");
        upstream.write_all(b"hi").await.unwrap();
        drop(upstream);
        let mut back = Vec::new();
        client.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"hi");
        assert_eq!(
            task.await.unwrap().unwrap(),
            ProxyEnd::Closed {
                to_upstream: 5,
                to_client: 2
            }
        );
    }
}
