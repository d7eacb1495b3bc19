//! Property tests of the core: random knock streams against the rules.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::{KnockTracker, Verdict};
use crate::config::{KnockRules, Sequence};

/// One generated knock: source, port, milliseconds since the previous knock.
type Step = (u8, u16, u64);

fn rules(sequence: Vec<u16>, max_tracked: usize) -> KnockRules {
    KnockRules {
        sequence: Sequence::new(sequence).unwrap(),
        window: Duration::from_millis(2_000),
        access: Duration::from_millis(5_000),
        lockout: Duration::from_millis(1_000),
        max_tracked,
    }
}

fn strategy() -> impl Strategy<Value = (Vec<u16>, Vec<Step>)> {
    let sequence = prop::collection::vec(1000u16..1003, 1..5);
    sequence.prop_flat_map(|seq| {
        let ports = prop::sample::select(vec![1000u16, 1001, 1002, 1]);
        let steps = prop::collection::vec((1u8..7, ports, 0u64..800), 0..300);
        (Just(seq), steps)
    })
}

/// The rules of DESIGN.md written as plainly as possible, with no bound.
#[derive(Default)]
struct Model {
    progress: HashMap<IpAddr, (usize, Instant)>,
    locked_until: HashMap<IpAddr, Instant>,
}

impl Model {
    fn knock(&mut self, rules: &KnockRules, ip: IpAddr, port: u16, now: Instant) -> Verdict {
        if let Some(&until) = self.locked_until.get(&ip) {
            if now < until {
                return Verdict::Ignored { ip, until };
            }
            self.locked_until.remove(&ip);
        }
        if let Some(&(_, first)) = self.progress.get(&ip) {
            if now.duration_since(first) > rules.window {
                self.progress.remove(&ip);
            }
        }
        let seq = rules.sequence.ports();
        let (matched, first) = match self.progress.get(&ip).copied() {
            // Completed: a copy of the last knock is a duplicate.
            Some((done, _)) if done == seq.len() => {
                if port == seq[done - 1] && port != seq[0] {
                    return Verdict::Progress {
                        ip,
                        matched: done,
                        total: seq.len(),
                    };
                }
                (0, now)
            }
            other => other.unwrap_or((0, now)),
        };
        if port == seq[matched] {
            if matched + 1 == seq.len() {
                if seq.len() > 1 {
                    self.progress.insert(ip, (seq.len(), first));
                } else {
                    self.progress.remove(&ip);
                }
                return Verdict::Grant {
                    ip,
                    until: now + rules.access,
                };
            }
            self.progress.insert(ip, (matched + 1, first));
            return Verdict::Progress {
                ip,
                matched: matched + 1,
                total: seq.len(),
            };
        }
        if matched > 0 && port == seq[matched - 1] {
            // A duplicate of the knock just matched (knockd PR #90).
            return Verdict::Progress {
                ip,
                matched,
                total: seq.len(),
            };
        }
        self.progress.remove(&ip);
        let until = now + rules.lockout;
        self.locked_until.insert(ip, until);
        Verdict::LockedOut { ip, until }
    }
}

fn run(rules: &KnockRules, steps: &[Step]) -> Vec<(IpAddr, u16, Instant, Verdict)> {
    run_until_lossy(rules, steps, false)
}

/// Runs `steps`; with `stop_at_loss`, stops before the first knock after
/// the tracker lost state to its bound (a lockout dropped, progress the
/// ledger forgot, or a completed sequence dropped), the only way eviction may change a verdict.
fn run_until_lossy(
    rules: &KnockRules,
    steps: &[Step],
    stop_at_loss: bool,
) -> Vec<(IpAddr, u16, Instant, Verdict)> {
    let mut tracker = KnockTracker::new(rules);
    let mut now = Instant::now();
    let mut out = Vec::new();
    for &(host, port, delta) in steps {
        let stats = tracker.stats();
        if stop_at_loss && stats.forgotten + stats.lockouts_evicted + stats.completed_dropped > 0 {
            break;
        }
        now += Duration::from_millis(delta);
        let ip = IpAddr::from([127, 0, 0, host]);
        let verdict = tracker.knock(ip, port, now);
        assert!(
            tracker.tracked() <= rules.max_tracked,
            "table over its bound"
        );
        out.push((ip, port, now, verdict));
    }
    out
}

/// A client knocking `seq` with `gaps[i]` spoofed sources (first or wrong
/// knocks, `wrong` choosing) arriving between its knocks, `spacing_us`
/// apart; returns the client's verdicts.
fn client_in_flood(
    seq: &[u16],
    bound: usize,
    gaps: &[usize],
    wrong: &[bool],
    spacing_us: u64,
) -> Vec<Verdict> {
    let rules = rules(seq.to_vec(), bound);
    let mut tracker = KnockTracker::new(&rules);
    let mut now = Instant::now();
    let client = IpAddr::from([192, 0, 2, 7]);
    let mut spoofed = 0u32;
    let mut verdicts = Vec::new();
    for (i, &port) in seq.iter().enumerate() {
        verdicts.push(tracker.knock(client, port, now));
        for _ in 0..gaps.get(i).copied().unwrap_or(0) {
            let source = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + spoofed));
            let port = if wrong[spoofed as usize % wrong.len()] {
                1
            } else {
                seq[0]
            };
            now += Duration::from_micros(spacing_us);
            tracker.knock(source, port, now);
            spoofed += 1;
            assert!(tracker.tracked() <= bound, "table over its bound");
        }
    }
    verdicts
}

proptest! {
    /// Eviction changes no verdict: with any bound, the tracker decides
    /// exactly as the unbounded plain model until it first loses state (a
    /// lockout dropped, or progress the ledger had to forget).
    #[test]
    fn eviction_changes_no_verdict_while_the_ledger_remembers(
        (seq, steps) in strategy(),
        bound in 1usize..5,
    ) {
        let rules = rules(seq, bound);
        let mut model = Model::default();
        for (ip, port, now, verdict) in run_until_lossy(&rules, &steps, true) {
            prop_assert_eq!(verdict, model.knock(&rules, ip, port, now));
        }
    }

    /// A client is never locked out by a flood of spoofed sources (first or
    /// wrong knocks, any pace) as long as fewer than twice the bound of them
    /// arrive between two of its knocks: the ledger holds its progress.
    #[test]
    fn a_flood_below_the_ledger_never_locks_a_client_out(
        seq in prop::collection::vec(1000u16..1003, 2..5),
        bound in 1usize..40,
        gaps in prop::collection::vec(0.0f64..1.0, 4),
        wrong in prop::collection::vec(any::<bool>(), 1..8),
        spacing_us in prop::sample::select(vec![0u64, 10, 1_000, 5_000]),
    ) {
        let gaps: Vec<usize> = gaps.iter().map(|f| (f * (2 * bound - 1) as f64) as usize).collect();
        let verdicts = client_in_flood(&seq, bound, &gaps, &wrong, spacing_us);
        // At most 3 gaps of 78 sources 5 ms apart: within the 2 s window.
        let last = verdicts.len() - 1;
        for (i, verdict) in verdicts.iter().enumerate() {
            if i == last {
                prop_assert!(matches!(verdict, Verdict::Grant { .. }), "{:?}", verdicts);
            } else {
                prop_assert!(matches!(verdict, Verdict::Progress { .. }), "{:?}", verdicts);
            }
        }
    }

    /// Without eviction, the tracker decides exactly as the plain model.
    #[test]
    fn the_tracker_matches_the_plain_rules((seq, steps) in strategy()) {
        let rules = rules(seq, 1_000);
        let mut model = Model::default();
        for (ip, port, now, verdict) in run(&rules, &steps) {
            prop_assert_eq!(verdict, model.knock(&rules, ip, port, now));
        }
    }

    /// Whatever the bound: no grant without the whole sequence, in order,
    /// unrefused, within the window; the table never exceeds its bound
    /// (checked inside `run`). A bound of at least the six generated sources
    /// never evicts, so a locked-out IP must never advance; below it, the
    /// last-resort eviction of a lockout may let one through (see module doc).
    #[test]
    fn grants_need_the_sequence_and_lockouts_hold((seq, steps) in strategy(), bound in 1usize..9) {
        let evicting = bound < 6;
        let rules = rules(seq.clone(), bound);
        let mut history: HashMap<IpAddr, Vec<(u16, Instant, Verdict)>> = HashMap::new();
        let mut locked: HashMap<IpAddr, Instant> = HashMap::new();
        for (ip, port, now, verdict) in run(&rules, &steps) {
            let mine = history.entry(ip).or_default();
            // A progress at the count already reached is a tolerated
            // duplicate (or a fresh start after the window, on the same
            // port): it replaces the knock it repeats.
            let repeat = matches!(
                (mine.last(), verdict),
                (Some((_, _, Verdict::Progress { matched: a, .. })), Verdict::Progress { matched: b, .. }) if *a == b
            );
            if repeat {
                mine.pop();
            }
            mine.push((port, now, verdict));
            match verdict {
                Verdict::Progress { .. } | Verdict::Grant { .. } => {
                    if let Some(&until) = locked.get(&ip) {
                        prop_assert!(evicting || now >= until, "advanced while locked out");
                    }
                }
                Verdict::LockedOut { until, .. } => {
                    let ended = locked.get(&ip).is_none_or(|&old| now >= old);
                    prop_assert!(evicting || ended, "lockout extended");
                    locked.insert(ip, until);
                }
                Verdict::Ignored { until, .. } => {
                    prop_assert_eq!(Some(&until), locked.get(&ip), "ignored by a lockout never given");
                    prop_assert!(now < until);
                }
                Verdict::NotAllowed { .. } => prop_assert!(false, "one door allows everyone"),
            }
            if let Verdict::Grant { until, .. } = verdict {
                prop_assert_eq!(until, now + rules.access);
                prop_assert!(mine.len() >= seq.len());
                let tail = &mine[mine.len() - seq.len()..];
                let ports: Vec<u16> = tail.iter().map(|k| k.0).collect();
                prop_assert_eq!(&ports, &seq);
                let unrefused = tail
                    .iter()
                    .all(|k| matches!(k.2, Verdict::Progress { .. } | Verdict::Grant { .. }));
                prop_assert!(unrefused, "a refused knock inside a granted sequence");
                prop_assert!(now.duration_since(tail[0].1) <= rules.window);
            }
        }
    }
}
