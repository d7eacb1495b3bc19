//! Property tests of several doors: random doors (shared ports, repeats,
//! both protocols, allow lists, different windows and lockouts) and random
//! knock streams, against a plain model of the rules in knock.rs's module
//! doc that has no bound and no cleverness.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::{DoorId, Judged, KnockTracker, Verdict};
use crate::config::door::parse_network;
use crate::config::{AllowList, Door, KnockPort, ProtectedPort, Proto, Timing};

/// A generated door: knocks as (port, tcp?), allow only 127.0.0.0/30?,
/// window and lockout in 100 ms steps.
type DoorSpec = (Vec<(u16, bool)>, bool, u64, u64);
/// One generated knock: source, port, tcp?, milliseconds since the previous.
type Step = (u8, u16, bool, u64);

fn knock_port((port, tcp): (u16, bool)) -> KnockPort {
    let proto = if tcp { Proto::Tcp } else { Proto::Udp };
    KnockPort { port, proto }
}

fn build(specs: &[DoorSpec]) -> Vec<Door> {
    specs
        .iter()
        .enumerate()
        .map(|(i, (seq, narrow, window, lockout))| {
            let allow = if *narrow {
                AllowList::new(vec![parse_network("127.0.0.0/30").unwrap()]).unwrap()
            } else {
                AllowList::everything()
            };
            let timing = Timing {
                window: Duration::from_millis(100 * window),
                access: Duration::from_secs(5),
                lockout: Duration::from_millis(100 * lockout),
            };
            let sequence = seq.iter().copied().map(knock_port).collect();
            let name = format!("d{i}").parse().unwrap();
            Door::new(name, sequence, timing, vec![ProtectedPort::tcp(22)], allow).unwrap()
        })
        .collect()
}

fn strategy() -> impl Strategy<Value = (Vec<DoorSpec>, Vec<Step>)> {
    let knock = (1000u16..1004, prop::bool::weighted(0.2));
    let door = (
        prop::collection::vec(knock, 1..5),
        prop::bool::weighted(0.3),
        5u64..30,
        1u64..15,
    );
    let doors = prop::collection::vec(door, 1..4);
    let ports = prop::sample::select(vec![1000u16, 1001, 1002, 1003, 1]);
    let steps = prop::collection::vec(
        (0u8..7, ports, prop::bool::weighted(0.2), 0u64..900),
        0..300,
    );
    (doors, steps)
}

/// The rules, written as plainly as possible.
#[derive(Default)]
struct Model {
    progress: HashMap<(IpAddr, usize), (usize, Instant)>,
    locked_until: HashMap<IpAddr, Instant>,
}

impl Model {
    fn judge(&mut self, doors: &[Door], ip: IpAddr, knock: KnockPort, now: Instant) -> Vec<Judged> {
        let mut out = Vec::new();
        let id = |d: usize| d as DoorId;
        let using: Vec<usize> = (0..doors.len())
            .filter(|&d| doors[d].sequence().contains(&knock))
            .collect();
        let allowed: Vec<usize> = using
            .iter()
            .copied()
            .filter(|&d| doors[d].contains(ip))
            .collect();
        for &d in using.iter().filter(|d| !allowed.contains(d)) {
            out.push(Judged {
                door: id(d),
                verdict: Verdict::NotAllowed { ip },
            });
        }
        let stray = using.is_empty();
        let first = if stray {
            (0..doors.len()).find(|&d| doors[d].contains(ip))
        } else {
            allowed.first().copied()
        };
        let Some(first) = first else {
            if stray {
                out.push(Judged {
                    door: 0,
                    verdict: Verdict::NotAllowed { ip },
                });
            }
            return out;
        };
        if let Some(&until) = self.locked_until.get(&ip) {
            if now < until {
                out.push(Judged {
                    door: id(first),
                    verdict: Verdict::Ignored { ip, until },
                });
                return out;
            }
            self.locked_until.remove(&ip);
        }
        let mut taken = false;
        let mut lockout = if stray {
            doors.iter().map(|d| d.timing().lockout).max().unwrap()
        } else {
            Duration::ZERO
        };
        for &d in &allowed {
            let seq = doors[d].sequence();
            let timing = doors[d].timing();
            let key = (ip, d);
            if let Some(&(_, start)) = self.progress.get(&key) {
                if now.duration_since(start) > timing.window {
                    self.progress.remove(&key);
                }
            }
            let total = seq.len();
            let (matched, start) = match self.progress.get(&key).copied() {
                Some((done, _)) if done == total => {
                    if knock == seq[total - 1] && knock != seq[0] {
                        taken = true;
                        let verdict = Verdict::Progress {
                            ip,
                            matched: total,
                            total,
                        };
                        out.push(Judged {
                            door: id(d),
                            verdict,
                        });
                        continue;
                    }
                    (0, now)
                }
                other => other.unwrap_or((0, now)),
            };
            let verdict = if knock == seq[matched] {
                if matched + 1 == total {
                    if total > 1 {
                        self.progress.insert(key, (total, start));
                    } else {
                        self.progress.remove(&key);
                    }
                    Verdict::Grant {
                        ip,
                        until: now + timing.access,
                    }
                } else {
                    self.progress.insert(key, (matched + 1, start));
                    Verdict::Progress {
                        ip,
                        matched: matched + 1,
                        total,
                    }
                }
            } else if matched > 0 && knock == seq[matched - 1] {
                Verdict::Progress { ip, matched, total }
            } else {
                self.progress.remove(&key);
                lockout = lockout.max(timing.lockout);
                continue;
            };
            taken = true;
            out.push(Judged {
                door: id(d),
                verdict,
            });
        }
        if !taken {
            if stray && doors.len() == 1 {
                // One door: the lockout lives in the door's own entry.
                self.progress.remove(&(ip, 0));
            }
            let until = now + lockout;
            self.locked_until.insert(ip, until);
            out.push(Judged {
                door: id(first),
                verdict: Verdict::LockedOut { ip, until },
            });
        }
        out
    }
}

/// Runs `steps` through a tracker bounded by `bound` and the model side by
/// side; with `stop_at_loss`, stops before the first knock after the
/// tracker lost state to its bound (the only way eviction may change a
/// verdict).
fn compare(specs: &[DoorSpec], steps: &[Step], bound: usize) -> Result<(), TestCaseError> {
    let doors = build(specs);
    let mut tracker = KnockTracker::for_doors(&doors, bound);
    let mut model = Model::default();
    let mut now = Instant::now();
    let mut out = Vec::new();
    for &(host, port, tcp, delta) in steps {
        let stats = tracker.stats();
        if stats.forgotten + stats.lockouts_evicted + stats.completed_dropped > 0 {
            break;
        }
        now += Duration::from_millis(delta);
        let ip = IpAddr::from([127, 0, 0, host]);
        let knock = knock_port((port, tcp));
        out.clear();
        tracker.judge(ip, knock, now, &mut out);
        prop_assert!(tracker.tracked() <= bound, "table over its bound");
        prop_assert_eq!(
            &out,
            &model.judge(&doors, ip, knock, now),
            "{:?} {:?}",
            ip,
            knock
        );
    }
    Ok(())
}

proptest! {
    /// Without eviction, the tracker decides exactly as the plain model,
    /// for every door.
    #[test]
    fn several_doors_match_the_plain_rules((specs, steps) in strategy()) {
        compare(&specs, &steps, 10_000)?;
    }

    /// With any bound, eviction changes no verdict until the tracker first
    /// loses state (a lockout dropped, or progress the ledger forgot).
    #[test]
    fn several_doors_eviction_changes_no_verdict_while_the_ledger_remembers(
        (specs, steps) in strategy(),
        bound in 1usize..8,
    ) {
        compare(&specs, &steps, bound)?;
    }
}
