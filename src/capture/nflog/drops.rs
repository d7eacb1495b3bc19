//! Counting what the kernel dropped for an NFLOG reader, from the two
//! signs it gives (pure; `tests.rs` covers it).
//!
//! - `ENOBUFS` on a read: the socket's receive buffer was full when the
//!   kernel tried to deliver; at least one message was lost since the last
//!   read (netlink(7)). One event, an unknown number of packets.
//! - Gaps in `NFULA_SEQ`: the instance numbers every message it builds
//!   (`NFULNL_CFG_F_SEQ`), so a jump from 7 to 10 means 8 and 9 were built
//!   and never arrived: exact, but only known when the next one arrives.
//!
//! [`Drops::total`] is the larger of the two, a lower bound of the true
//! loss that never goes down.

/// Drop counters of one reader.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drops {
    /// The last sequence number seen.
    last: Option<u32>,
    /// Messages missing between sequence numbers seen.
    gaps: u64,
    /// `ENOBUFS` reads.
    overruns: u64,
}

impl Drops {
    /// Notes a message numbered `seq` (wrapping at `u32::MAX`). An older or
    /// repeated number (which the kernel never sends) counts nothing and
    /// restarts the count from it.
    pub fn seen(&mut self, seq: u32) {
        if let Some(last) = self.last {
            let step = seq.wrapping_sub(last);
            // A step past half the range is a number from the past.
            if step > 1 && step < 1 << 31 {
                self.gaps += u64::from(step - 1);
            }
        }
        self.last = Some(seq);
    }

    /// Notes one `ENOBUFS` read.
    pub fn overrun(&mut self) {
        self.overruns += 1;
    }

    /// Messages known lost: the larger of the sequence gaps and the
    /// overrun events (each lost at least one).
    pub fn total(&self) -> u64 {
        self.gaps.max(self.overruns)
    }

    /// `ENOBUFS` reads so far.
    pub fn overruns(&self) -> u64 {
        self.overruns
    }
}
