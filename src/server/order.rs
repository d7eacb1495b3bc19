//! Putting knocks from several sockets back in the order they arrived.
//!
//! The server has one socket per knock port and address family, but the
//! core must see one source's knocks in the order they were sent: a knock
//! on the third port judged before the one on the first is a wrong knock
//! and locks a legitimate client out. The receiver therefore stamps each
//! datagram with the kernel's receive time (`SO_TIMESTAMPNS`, nanoseconds
//! of `CLOCK_REALTIME`, taken when the packet entered the stack, before it
//! was queued on its socket) and collects every socket's datagrams of one
//! pass here; [`KnockOrder`] sorts them by that stamp and releases those
//! no later datagram can overtake any more.
//!
//! # The ordering guarantee
//!
//! A pass reads the clock (`start`), then takes at most one batch from each
//! ready socket. Knocks are released (judged) in stamp order, ties in the
//! order they were read, and only once nothing stamped earlier can still be
//! waiting in a socket:
//!
//! - A knock stamped at or after `start` is held to the next pass: a knock
//!   on a socket already read this pass may have arrived just before it.
//!   The next pass reads every socket again, so anything stamped before
//!   the held knock has been queued by then and is merged with it.
//! - A socket that gave a full batch may hold more: knocks stamped at or
//!   after its last one read are held too (its queue is in stamp order, so
//!   everything left in it is stamped later), which is why a flooded port
//!   cannot make the knocks on the other ports be judged ahead of it, out
//!   of order, nor starve them: it only holds back what arrived after the
//!   point it has been read up to.
//! - Across passes, everything released before was stamped before what is
//!   released now (by the two rules above).
//!
//! So two knocks are judged in the order the kernel stamped them, unless
//! they were stamped closer together than the kernel takes to move a
//! packet from its stamp to its socket queue (microseconds). Two limits
//! keep the buffer bounded and the server live: at most [`HOLD`] knocks are
//! held (past that the oldest are judged anyway), and a pass that finds
//! every socket empty releases everything it holds (a wall clock stepped
//! backwards could otherwise hold a knock forever).
//!
//! The kernel switches arrival stamps on through deferred work when the
//! first socket asks for them (at bind), so datagrams in the first moments
//! after start-up may be stamped when read instead, and keep read order.
//!
//! The stamp also tells the core *when* the knock arrived
//! ([`PassClock::instant_of`]): the time it waited in the socket does not
//! count against the client's window.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::config::{KnockPort, Proto};

/// Most knocks held back from one pass to the next.
pub const HOLD: usize = 4096;
/// Largest age given to a knock from its stamp; a longer one means the
/// wall clock was stepped, not that the knock waited (the receive buffers
/// hold milliseconds of traffic at loopback rates).
pub const MAX_AGE: Duration = Duration::from_secs(1);

/// One received knock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Knock {
    /// Who sent it.
    pub source: IpAddr,
    /// The knock port it arrived on.
    pub port: u16,
    /// UDP (bound sockets, capture) or TCP (capture: a SYN without ACK).
    pub proto: Proto,
    /// Kernel receive time, nanoseconds of `CLOCK_REALTIME`.
    pub stamp: u64,
    /// Order of reading, to break ties (makes the unstable sort stable).
    seq: u64,
}

impl Knock {
    /// A UDP knock judged on its own, outside a [`KnockOrder`].
    pub fn new(source: IpAddr, port: u16, stamp: u64) -> Self {
        Self {
            source,
            port,
            proto: Proto::Udp,
            stamp,
            seq: 0,
        }
    }

    /// The port and protocol knocked.
    pub fn knock_port(&self) -> KnockPort {
        KnockPort {
            port: self.port,
            proto: self.proto,
        }
    }
}

/// The two clocks read together at the start of a pass: the wall clock the
/// kernel stamps with, and the monotonic clock the core runs on.
#[derive(Debug, Clone, Copy)]
pub struct PassClock {
    /// `CLOCK_REALTIME` now, in nanoseconds.
    pub real: u64,
    /// The server's monotonic clock now.
    pub mono: Instant,
}

impl PassClock {
    /// Both clocks now; `mono` is the server's (possibly paused) clock.
    pub fn now(mono: Instant) -> Self {
        Self {
            real: realtime_ns(),
            mono,
        }
    }

    /// The monotonic instant a knock stamped `stamp` arrived at: `mono`
    /// less its age, the age clamped to `0..=MAX_AGE`.
    pub fn instant_of(&self, stamp: u64) -> Instant {
        let age = Duration::from_nanos(self.real.saturating_sub(stamp)).min(MAX_AGE);
        self.mono.checked_sub(age).unwrap_or(self.mono)
    }
}

/// `CLOCK_REALTIME` in nanoseconds, the clock of `SO_TIMESTAMPNS`.
pub fn realtime_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    timespec_ns(&ts)
}

/// A timespec as nanoseconds (0 for times before 1970).
pub fn timespec_ns(ts: &libc::timespec) -> u64 {
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// The knocks of the current pass and those held from earlier ones, in a
/// buffer allocated once.
#[derive(Debug)]
pub struct KnockOrder {
    pending: Vec<Knock>,
    next_seq: u64,
    horizon: u64,
    read_any: bool,
}

impl KnockOrder {
    /// A buffer for passes of up to `per_pass` knocks.
    pub fn new(per_pass: usize) -> Self {
        Self {
            pending: Vec::with_capacity(HOLD + per_pass),
            next_seq: 0,
            horizon: u64::MAX,
            read_any: false,
        }
    }

    /// Starts a pass whose clock read `start` (wall clock, nanoseconds).
    pub fn begin(&mut self, start: u64) {
        self.horizon = start;
        self.read_any = false;
    }

    /// Knocks that can still be added in this pass without growing the
    /// buffer.
    pub fn room(&self) -> usize {
        self.pending.capacity() - self.pending.len()
    }

    /// Adds a UDP knock read in this pass.
    pub fn push(&mut self, source: IpAddr, port: u16, stamp: u64) {
        self.push_knock(source, KnockPort::udp(port), stamp);
    }

    /// Adds a knock of either protocol read in this pass.
    pub fn push_knock(&mut self, source: IpAddr, knock: KnockPort, stamp: u64) {
        debug_assert!(self.room() > 0, "a pass read more than it has room for");
        self.read_any = true;
        self.pending.push(Knock {
            source,
            port: knock.port,
            proto: knock.proto,
            stamp,
            seq: self.next_seq,
        });
        self.next_seq += 1;
    }

    /// A socket gave a full batch whose last knock was stamped `last`: it
    /// may hold more, stamped from `last` on.
    pub fn more_after(&mut self, last: u64) {
        self.horizon = self.horizon.min(last);
    }

    /// Ends the pass: sorts what is pending and returns how many knocks,
    /// from the front of [`KnockOrder::pending`], may be judged now.
    pub fn release(&mut self) -> usize {
        self.pending.sort_unstable_by_key(|k| (k.stamp, k.seq));
        if !self.read_any {
            return self.pending.len();
        }
        let safe = self.pending.partition_point(|k| k.stamp < self.horizon);
        safe.max(self.pending.len().saturating_sub(HOLD))
    }

    /// The pending knocks, in stamp order after [`KnockOrder::release`].
    pub fn pending(&self) -> &[Knock] {
        &self.pending
    }

    /// Forgets the first `n` pending knocks (the judged ones).
    pub fn consume(&mut self, n: usize) {
        self.pending.drain(..n);
    }

    /// Knocks held for a later pass.
    pub fn held(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    fn ports(order: &KnockOrder, n: usize) -> Vec<(u8, u16)> {
        order.pending()[..n]
            .iter()
            .map(|k| match k.source {
                IpAddr::V4(v4) => (v4.octets()[3], k.port),
                IpAddr::V6(_) => unreachable!(),
            })
            .collect()
    }

    #[test]
    fn a_pass_read_socket_by_socket_is_judged_in_stamp_order() {
        let mut order = KnockOrder::new(64);
        order.begin(1_000);
        // Read the third port's socket first, then the second, then the first.
        order.push(ip(2), 3, 30);
        order.push(ip(3), 3, 31);
        order.push(ip(2), 2, 20);
        order.push(ip(3), 2, 21);
        order.push(ip(2), 1, 10);
        order.push(ip(3), 1, 11);
        assert_eq!(order.release(), 6);
        assert_eq!(
            ports(&order, 6),
            vec![(2, 1), (3, 1), (2, 2), (3, 2), (2, 3), (3, 3)]
        );
        order.consume(6);
        assert_eq!(order.held(), 0);
    }

    #[test]
    fn equal_stamps_keep_the_order_they_were_read_in() {
        let mut order = KnockOrder::new(64);
        order.begin(1_000);
        for last in [5, 4, 3, 2] {
            order.push(ip(last), 1, 7);
        }
        assert_eq!(order.release(), 4);
        assert_eq!(ports(&order, 4), vec![(5, 1), (4, 1), (3, 1), (2, 1)]);
    }

    #[test]
    fn knocks_stamped_after_the_pass_began_wait_for_the_next_pass() {
        let mut order = KnockOrder::new(64);
        order.begin(100);
        // Port 1's socket was read while empty; then port 2's gave a knock
        // that arrived after the pass began (held), and one from before.
        order.push(ip(2), 2, 150);
        order.push(ip(3), 2, 90);
        assert_eq!(order.release(), 1);
        assert_eq!(ports(&order, 1), vec![(3, 2)]);
        order.consume(1);
        assert_eq!(order.held(), 1);

        // Next pass: port 1 now yields the same source's earlier knock, which
        // arrived while port 2 was being read; it is judged first.
        order.begin(200);
        order.push(ip(2), 1, 140);
        assert_eq!(order.release(), 2);
        assert_eq!(ports(&order, 2), vec![(2, 1), (2, 2)]);
    }

    #[test]
    fn a_full_socket_holds_back_what_arrived_after_its_last_knock_read() {
        let mut order = KnockOrder::new(64);
        order.begin(1_000);
        // A flooded port: a full batch up to stamp 50, more still queued.
        for stamp in 10..=50 {
            order.push(ip(9), 1, stamp);
        }
        order.more_after(50);
        // Another port's knocks, some after that point.
        order.push(ip(2), 2, 45);
        order.push(ip(2), 2, 60);
        let n = order.release();
        assert!(order.pending()[..n].iter().all(|k| k.stamp < 50));
        assert_eq!(n, 41, "10..50 and the knock at 45");
        order.consume(n);
        assert_eq!(
            order.pending().iter().map(|k| k.stamp).collect::<Vec<_>>(),
            vec![50, 60]
        );
    }

    #[test]
    fn an_empty_pass_releases_everything_held_even_if_the_clock_went_back() {
        let mut order = KnockOrder::new(64);
        order.begin(100);
        order.push(ip(2), 1, 500);
        assert_eq!(order.release(), 0);
        order.begin(50); // wall clock stepped back
        assert_eq!(order.release(), 1);
    }

    #[test]
    fn the_hold_is_bounded_and_the_oldest_go_first() {
        let mut order = KnockOrder::new(HOLD + 10);
        order.begin(0); // everything is "after the start"
        for i in 0..(HOLD as u64 + 10) {
            order.push(ip(2), 1, 1_000 + i);
        }
        assert_eq!(order.release(), 10);
        assert_eq!(order.pending()[0].stamp, 1_000);
        order.consume(10);
        assert_eq!(order.held(), HOLD);
        assert!(
            order.room() >= HOLD,
            "room for the next pass without growing"
        );
    }

    #[test]
    fn a_knock_is_dated_by_its_stamp_within_bounds() {
        let mono = Instant::now();
        let clock = PassClock {
            real: 10_000_000_000,
            mono,
        };
        assert_eq!(
            clock.instant_of(10_000_000_000 - 3_000_000),
            mono - Duration::from_millis(3)
        );
        assert_eq!(clock.instant_of(20_000_000_000), mono, "from the future");
        assert_eq!(clock.instant_of(0), mono - MAX_AGE, "clock stepped");
    }
}
