//! The SPA pipeline: reader threads that check packets in parallel, one
//! committer that owns the replay cache (issue 9 item 15).
//!
//! Why this shape:
//! - no userspace queue that drops: a reader takes the next datagram only
//!   when it has checked the last one and handed it on, and the hand-off
//!   blocks while the committer is busy, so a burst waits in the socket's
//!   kernel receive buffer (8 MiB, see `server::receiver::enlarge_buffer`)
//!   instead of being dropped at a small queue;
//! - the stateless checks (sizes, HMAC, decryption) run on one reader per
//!   core; junk is rejected there, so a junk flood is spread over cores and
//!   never reaches the committer;
//! - one committer thread owns the [`ReplayCache`], so each digest's
//!   check-and-record is atomic; it takes whatever is waiting (up to
//!   [`BATCH_MAX`]), records it, commits the cache once (one fsync) and
//!   only then hands that batch's grants on. A failed commit refuses the
//!   whole batch (fail closed). Every second it also checks that the cache
//!   file was not deleted or replaced.

use std::io;
use std::net::{IpAddr, UdpSocket};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{debug, error, info};

use super::{GrantPlan, LogBudget, SpaCounters, join, log_rejection, unix_now};
use crate::spa::{
    Checked, MAX_PACKET_LEN, RejectReason, Rejected, ReplayCache, ReplayStore, Verdict, Verifier,
};

/// Most packets committed together (one fsync for all of them).
pub const BATCH_MAX: usize = 256;
/// How often a blocked reader looks at the stop flag.
pub(super) const READ_TIMEOUT: Duration = Duration::from_millis(100);
/// How often the committer checks that the cache file is still ours.
const FILE_CHECK_EVERY: Duration = Duration::from_secs(1);

/// A checked packet on its way to the committer.
pub(super) struct Candidate {
    checked: Checked,
    source: IpAddr,
    received: Instant,
}

/// What readers share.
pub(super) struct Shared<'a> {
    pub(super) verifier: &'a Verifier,
    pub(super) counters: &'a SpaCounters,
    pub(super) budget: &'a Mutex<LogBudget>,
    pub(super) stop: &'a AtomicBool,
}

/// One reader of a bound socket: receive, check, hand on; until `stop`
/// or the committer is gone.
pub(super) fn read_loop(socket: &UdpSocket, to_committer: &SyncSender<Candidate>, shared: &Shared) {
    let receive = |buf: &mut [u8]| socket.recv_from(buf).map(|(len, from)| (len, from.ip()));
    check_loop(receive, to_committer, shared);
}

/// One reader of captured packets (`capture_tap.rs`): the same checks as
/// for a socket's datagrams, the packets taken from `captured`.
pub(super) fn captured_loop(
    captured: &Mutex<Receiver<super::capture_tap::CapturedSpa>>,
    to_committer: &SyncSender<Candidate>,
    shared: &Shared,
) {
    let receive = |buf: &mut [u8]| super::capture_tap::take(captured, buf);
    check_loop(receive, to_committer, shared);
}

/// Receive with `receive` (the payload into the buffer, its length and
/// sender out), check, hand on; until `stop` or the committer is gone.
fn check_loop(
    mut receive: impl FnMut(&mut [u8]) -> io::Result<(usize, IpAddr)>,
    to_committer: &SyncSender<Candidate>,
    shared: &Shared,
) {
    // One byte more than the largest valid packet, so an oversize one is
    // seen as such (and rejected as too long), not truncated to a valid size.
    let mut buf = vec![0u8; MAX_PACKET_LEN + 1];
    while !shared.stop.load(Relaxed) {
        let (len, from) = match receive(&mut buf) {
            Ok(got) => got,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                debug!(error = %e, "spa receive error");
                continue;
            }
        };
        let received = Instant::now();
        shared.counters.received.fetch_add(1, Relaxed);
        let source = from.to_canonical();
        match shared.verifier.check(&buf[..len], source) {
            Ok(checked) => {
                let candidate = Candidate {
                    checked,
                    source,
                    received,
                };
                // Blocks while the committer is busy: the backlog stays in
                // the kernel's receive buffer.
                if to_committer.send(candidate).is_err() {
                    return;
                }
            }
            Err(rejected) => {
                shared.counters.rejected.fetch_add(1, Relaxed);
                let mut budget = shared.budget.lock().unwrap_or_else(|p| p.into_inner());
                log_rejection(shared.verifier, &rejected, source, &mut budget);
            }
        }
    }
}

/// The committer: batches, replay check and record, one commit, then grants.
pub(super) fn commit_loop(
    verifier: &Verifier,
    mut replay: ReplayCache,
    from_readers: &Receiver<Candidate>,
    plans: &mpsc::Sender<(GrantPlan, Instant)>,
    counters: &SpaCounters,
    budget: &Mutex<LogBudget>,
) {
    let mut checked_file = Instant::now();
    let mut batch = Vec::with_capacity(BATCH_MAX);
    loop {
        if checked_file.elapsed() >= FILE_CHECK_EVERY {
            check_file(&mut replay);
            checked_file = Instant::now();
        }
        match from_readers.recv_timeout(FILE_CHECK_EVERY) {
            Ok(first) => batch.push(first),
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => {
                check_file(&mut replay);
                return;
            }
        }
        while batch.len() < BATCH_MAX {
            match from_readers.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let now = unix_now();
        let judged: Vec<(Verdict, IpAddr, Instant)> = batch
            .drain(..)
            .map(|c| {
                let verdict = verifier.conclude(c.checked, c.source, now, &mut replay);
                (verdict, c.source, c.received)
            })
            .collect();
        let committed = replay.commit(now);
        if let Err(e) = &committed {
            error!(error = %e, "spa replay cache commit failed: refusing this batch's packets");
        }
        for (verdict, source, received) in judged {
            let verdict = match verdict {
                Verdict::Accept(_) if committed.is_err() => Verdict::Reject(Rejected {
                    reason: RejectReason::ReplayCacheFailed,
                    stanza: None,
                    message: None,
                }),
                v => v,
            };
            match verdict {
                Verdict::Accept(accepted) => {
                    counters.accepted.fetch_add(1, Relaxed);
                    let plan = GrantPlan::for_accepted(&accepted);
                    let line = verifier.stanzas().get(accepted.stanza).map(|s| s.line);
                    info!(
                        %source,
                        allow_ip = %plan.ip,
                        ports = %join(&accepted.ports),
                        timeout_secs = plan.ttl.as_secs(),
                        stanza_line = line,
                        user = ?accepted.message.username,
                        "spa packet accepted"
                    );
                    if plans.blocking_send((plan, received)).is_err() {
                        return;
                    }
                }
                Verdict::Reject(rejected) => {
                    counters.rejected.fetch_add(1, Relaxed);
                    let mut budget = budget.lock().unwrap_or_else(|p| p.into_inner());
                    log_rejection(verifier, &rejected, source, &mut budget);
                }
            }
        }
    }
}

fn check_file(replay: &mut ReplayCache) {
    if let Err(e) = replay.check_file() {
        error!(error = %e, "spa replay cache file cannot be rewritten");
    }
}
