//! What one turn of the session loop may do, so that an API question waits a bounded time
//! whatever the load: at most a `Budget::TURN` of records (a count and a time) is applied
//! before the loop looks at questions and timers again (the rest stay in the ring buffer, readiness kept, and are
//! applied on the next turns: none is dropped), and the periodic drift check walks the running
//! processes a slice per turn (`DriftSweep`) instead of all of them in one turn.
//!
//! Under `attach --all` a storm of short-lived processes (each exec stops the new image until
//! its /proc/PID/maps is read) kept the old loop in one unbounded drain for seconds, and a
//! drift check of every process (two drains each) for tens of seconds: a scrape waited for all
//! of it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How much of the ring buffer one drain may take: a number of records and a time. Records
/// differ in cost by a hundredfold (an exec record stops the new image and reads its
/// /proc/PID/maps; a syscall record updates a tree), so the time is what bounds a turn.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    pub records: usize,
    pub time: Option<Duration>,
}

impl Budget {
    /// One loop turn: then the loop looks at API questions and timers again. Large enough
    /// that a quiet system drains in one turn.
    pub const TURN: Budget = Budget {
        records: 16_384,
        time: Some(Duration::from_millis(50)),
    };
    /// Before an answer: a view sees everything the traced processes did before it asked,
    /// unless they produce records faster than the daemon applies them; then it answers with
    /// what it has after this long.
    pub const ANSWER: Budget = Budget {
        records: usize::MAX,
        time: Some(Duration::from_millis(500)),
    };
    /// At the end: nothing may be left behind.
    pub const ALL: Budget = Budget {
        records: usize::MAX,
        time: None,
    };
}

/// Processes the periodic drift check compares with /proc per loop turn (at most; fewer if
/// they take more than `SWEEP_TIME`).
pub const DRIFT_CHECKS_PER_TURN: usize = 8;

/// Time a loop turn gives the drift check (at least one process is looked at).
pub const SWEEP_TIME: Duration = Duration::from_millis(50);

/// A phase of a loop turn that took at least this long is logged (debug level), so a stall
/// can be traced to its phase with `RUST_LOG=tracer=debug`.
const SLOW_PHASE: Duration = Duration::from_millis(100);

/// How far a bounded drain got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drained {
    /// The ring buffer was empty when the drain ended.
    All,
    /// The budget ran out: records may still wait.
    More,
}

/// Calls `apply_next` (which applies the next record and says whether there was one) until
/// the source runs dry or `budget` is spent (`clock` says how long it has run); returns how
/// many records it applied and whether the source ran dry. Kept apart from the ring buffer so
/// that the bound is testable.
pub fn take_records(
    budget: Budget,
    mut clock: impl FnMut() -> Duration,
    mut apply_next: impl FnMut() -> bool,
) -> (usize, Drained) {
    let mut read = 0;
    while read < budget.records && budget.time.is_none_or(|limit| clock() < limit) {
        if !apply_next() {
            return (read, Drained::All);
        }
        read += 1;
    }
    (read, Drained::More)
}

/// The processes the periodic drift check has still to look at.
#[derive(Debug, Default)]
pub struct DriftSweep {
    pending: VecDeque<u32>,
    /// A sweep was asked for: it starts when the one under way (if any) has ended, so a
    /// process that came after the current one began is looked at too.
    asked: bool,
}

impl DriftSweep {
    /// Asks for a sweep over every running process.
    pub fn ask(&mut self) {
        self.asked = true;
    }

    /// The next slice of at most `n` processes to check; `running` lists the processes of a
    /// sweep that starts now.
    pub fn next_slice(&mut self, n: usize, running: impl FnOnce() -> Vec<u32>) -> Vec<u32> {
        if self.pending.is_empty() && std::mem::take(&mut self.asked) {
            self.pending.extend(running());
        }
        let n = n.min(self.pending.len());
        self.pending.drain(..n).collect()
    }

    /// Whether a sweep is under way or asked for.
    pub fn busy(&self) -> bool {
        self.asked || !self.pending.is_empty()
    }
}

/// Times the phases of a loop turn and logs the slow ones.
pub struct Stopwatch {
    lap: Instant,
}

impl Stopwatch {
    pub fn start() -> Stopwatch {
        Stopwatch {
            lap: Instant::now(),
        }
    }

    /// Ends the phase `what` (logged if slow) and starts the next one.
    pub fn lap(&mut self, what: std::fmt::Arguments) {
        let took = self.lap.elapsed();
        if took >= SLOW_PHASE {
            log::debug!("slow loop phase: {what} took {} ms", took.as_millis());
        }
        self.lap = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(n: usize) -> Budget {
        Budget {
            records: n,
            time: None,
        }
    }

    #[test]
    fn a_turn_stops_after_its_budget_and_leaves_the_rest() {
        let mut source: VecDeque<u32> = (0..10).collect();
        let mut applied = Vec::new();
        let take = |source: &mut VecDeque<u32>, applied: &mut Vec<u32>| {
            take_records(records(4), Duration::default, || {
                source.pop_front().map(|r| applied.push(r)).is_some()
            })
        };
        assert_eq!(take(&mut source, &mut applied), (4, Drained::More));
        assert_eq!(applied, [0, 1, 2, 3]);
        assert_eq!(source.len(), 6, "the rest is left where it was");
        // The following turns take the rest, in order: nothing is dropped.
        while take(&mut source, &mut applied).1 == Drained::More {}
        assert_eq!(applied, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn a_turn_stops_when_its_time_is_spent() {
        // Each record "takes" 10 ms: a 50 ms turn applies 5 of an endless source.
        let mut now = Duration::ZERO;
        let budget = Budget {
            records: usize::MAX,
            time: Some(Duration::from_millis(50)),
        };
        let clock = std::cell::Cell::new(Duration::ZERO);
        let (read, drained) = take_records(
            budget,
            || clock.get(),
            || {
                now += Duration::from_millis(10);
                clock.set(now);
                true
            },
        );
        assert_eq!((read, drained), (5, Drained::More));
    }

    #[test]
    fn a_dry_source_ends_the_drain() {
        let mut source: VecDeque<u32> = (0..3).collect();
        let (read, drained) = take_records(Budget::ALL, Duration::default, || {
            source.pop_front().is_some()
        });
        assert_eq!((read, drained), (3, Drained::All));
    }

    #[test]
    fn a_sweep_hands_out_slices_and_a_second_ask_waits_for_the_first() {
        let mut sweep = DriftSweep::default();
        assert!(!sweep.busy());
        assert!(sweep.next_slice(2, || vec![99]).is_empty(), "nothing asked");
        sweep.ask();
        assert_eq!(sweep.next_slice(2, || (1..=5).collect()), [1, 2]);
        // Asked again midway (a tick, lost records): the rest of this sweep goes first, then
        // a new one over the processes running at that time.
        sweep.ask();
        assert_eq!(sweep.next_slice(10, || panic!("not yet")), [3, 4, 5]);
        assert!(sweep.busy());
        assert_eq!(sweep.next_slice(2, || vec![7]), [7]);
        assert!(!sweep.busy());
    }
}
