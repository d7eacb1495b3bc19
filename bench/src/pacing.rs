//! Pacing: when each knock of a load is due, as pure arithmetic.
//!
//! A load is a list of sequences, each from its own source. Sequence `i`
//! starts at `i / rate`; its knock `j` goes `j * gap` later (a real client
//! leaves a gap between knocks, and the gap keeps knocks of one source from
//! overtaking each other across the server's per-port sockets). The
//! [`Schedule`] yields `(due, sequence, knock)` in time order by merging the
//! per-knock streams, so the sender never sorts or allocates per packet.

use std::time::Duration;

/// One knock to send: when, which sequence (= which source), which knock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// Time since the start of the load.
    pub at: Duration,
    /// Index of the sequence (and of its source address).
    pub sequence: u32,
    /// Index of the knock within the sequence.
    pub knock: usize,
}

/// The knocks of `sequences` sequences of `knocks` knocks, in time order.
#[derive(Debug, Clone)]
pub struct Schedule {
    sequences: u32,
    interval: Duration,
    gap: Duration,
    /// For each knock index, the next sequence whose knock is not yet out.
    cursors: Vec<u32>,
}

impl Schedule {
    /// Sequences started every `interval` (zero: all at once), knocks of a
    /// sequence `gap` apart.
    pub fn new(sequences: u32, knocks: usize, interval: Duration, gap: Duration) -> Self {
        Self {
            sequences,
            interval,
            gap,
            cursors: vec![0; knocks.max(1)],
        }
    }

    /// The interval between sequence starts for `rate` sequences a second
    /// (0 or less: no pacing).
    pub fn interval_for(rate: f64) -> Duration {
        if rate > 0.0 {
            Duration::from_secs_f64(1.0 / rate)
        } else {
            Duration::ZERO
        }
    }

    /// Total knocks in the schedule.
    pub fn len(&self) -> u64 {
        u64::from(self.sequences) * self.cursors.len() as u64
    }

    /// Whether the schedule has no knocks at all.
    pub fn is_empty(&self) -> bool {
        self.sequences == 0
    }

    fn due_of(&self, sequence: u32, knock: usize) -> Duration {
        self.interval * sequence + self.gap * knock as u32
    }

    /// When the next knock is due, without taking it.
    pub fn peek(&self) -> Option<Due> {
        let mut best: Option<Due> = None;
        for (knock, &sequence) in self.cursors.iter().enumerate() {
            if sequence >= self.sequences {
                continue;
            }
            let at = self.due_of(sequence, knock);
            // Ties go to the later knock: a sequence's knock j+1 is never
            // scheduled before its knock j, and at equal times finishing
            // sequences first keeps the table small.
            if best.is_none_or(|b| at < b.at || (at == b.at && knock > b.knock)) {
                best = Some(Due {
                    at,
                    sequence,
                    knock,
                });
            }
        }
        best
    }
}

impl Iterator for Schedule {
    type Item = Due;

    fn next(&mut self) -> Option<Due> {
        let due = self.peek()?;
        self.cursors[due.knock] += 1;
        Some(due)
    }
}

/// How many of `total` packets a flood paced at `rate` a second (0: full
/// rate) may have sent by `elapsed`.
pub fn flood_allowance(total: u64, rate: f64, elapsed: Duration) -> u64 {
    if rate <= 0.0 {
        return total;
    }
    let allowed = (elapsed.as_secs_f64() * rate).floor() as u64 + 1;
    allowed.min(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn paced_sequences_interleave_by_time_and_each_keeps_its_order() {
        let all: Vec<Due> = Schedule::new(3, 3, MS, 2 * MS).collect();
        assert_eq!(all.len(), 9);
        assert!(all.windows(2).all(|w| w[0].at <= w[1].at), "{all:?}");
        for seq in 0..3 {
            let knocks: Vec<usize> = all
                .iter()
                .filter(|d| d.sequence == seq)
                .map(|d| d.knock)
                .collect();
            assert_eq!(knocks, vec![0, 1, 2]);
        }
        let last = all.last().unwrap();
        assert_eq!((last.at, last.sequence, last.knock), (6 * MS, 2, 2));
    }

    #[test]
    fn a_huge_gap_sends_all_first_knocks_then_all_second_interleaved() {
        let all: Vec<(u32, usize)> = Schedule::new(3, 2, Duration::ZERO, MS)
            .map(|d| (d.sequence, d.knock))
            .collect();
        assert_eq!(all, vec![(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)]);
    }

    #[test]
    fn rate_turns_into_an_interval_and_zero_means_unpaced() {
        assert_eq!(Schedule::interval_for(1000.0), MS);
        assert_eq!(Schedule::interval_for(0.0), Duration::ZERO);
        assert_eq!(Schedule::new(10, 3, MS, MS).len(), 30);
        assert!(Schedule::new(0, 3, MS, MS).next().is_none());
    }

    #[test]
    fn flood_allowance_grows_with_time_up_to_the_total() {
        assert_eq!(flood_allowance(100, 0.0, Duration::ZERO), 100);
        assert_eq!(flood_allowance(100, 1000.0, Duration::ZERO), 1);
        assert_eq!(flood_allowance(100, 1000.0, 10 * MS), 11);
        assert_eq!(flood_allowance(100, 1000.0, Duration::from_secs(5)), 100);
    }
}
