//! The per-process history of the program break, bounded twice: each process keeps its last
//! `PER_PROCESS` changes (a ring: the newest matter most to someone watching a leak), and all
//! processes together hold at most `GLOBAL` changes (one `BrkChange` is 24 bytes: 24 MiB). Past
//! the global budget a process's new change takes the place of its own oldest, and every
//! process may still keep its last `FLOOR` changes, so processes that call `brk` in a loop
//! cannot take all the history of the others. What a ring lets go is counted (`history_dropped` in the report and API).

use std::{
    collections::VecDeque,
    sync::atomic::{AtomicUsize, Ordering},
};

/// One change of the program break.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BrkChange {
    pub ts_ns: u64,
    pub brk: u64,
    /// The heap size then: the break minus that image's `start_brk` (0 if unknown).
    pub size: u64,
}

/// Changes kept per process.
pub const PER_PROCESS: usize = 10_000;
/// Changes kept by all the processes of the daemon together.
pub const GLOBAL: usize = 1_000_000;
/// Changes every ring may keep even with the budget spent, so that a few processes looping on
/// `brk` cannot leave every other process without any history. Overdraws the budget by at
/// most this many per process (bounded by `--max-processes`).
pub const FLOOR: usize = 64;

/// How many changes the rings sharing it hold, and how many they may.
#[derive(Debug)]
pub struct Budget {
    held: AtomicUsize,
    limit: usize,
}

impl Budget {
    pub const fn new(limit: usize) -> Budget {
        Budget {
            held: AtomicUsize::new(0),
            limit,
        }
    }

    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Takes one change from the budget; false when none is left.
    fn take(&self) -> bool {
        self.held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                (held < self.limit).then_some(held + 1)
            })
            .is_ok()
    }

    /// Takes one change past the limit (see `FLOOR`).
    fn overdraw(&self) {
        self.held.fetch_add(1, Ordering::Relaxed);
    }

    fn give_back(&self, n: usize) {
        self.held.fetch_sub(n, Ordering::Relaxed);
    }
}

/// The daemon's one budget.
pub static DAEMON: Budget = Budget::new(GLOBAL);

#[derive(Debug)]
pub struct BrkRing {
    changes: VecDeque<BrkChange>,
    capacity: usize,
    budget: &'static Budget,
}

impl Default for BrkRing {
    fn default() -> BrkRing {
        BrkRing::new(PER_PROCESS, &DAEMON)
    }
}

impl BrkRing {
    pub fn new(capacity: usize, budget: &'static Budget) -> BrkRing {
        BrkRing {
            changes: VecDeque::new(),
            capacity,
            budget,
        }
    }

    /// Records a change; true when a change was let go for it (the oldest, or this one when
    /// the ring may hold none).
    pub fn push(&mut self, change: BrkChange) -> bool {
        if self.changes.len() < self.capacity && self.budget.take() {
            self.changes.push_back(change);
            return false;
        }
        if self.changes.len() < FLOOR.min(self.capacity) {
            self.budget.overdraw();
            self.changes.push_back(change);
            return false;
        }
        if self.changes.pop_front().is_none() {
            return true;
        }
        self.changes.push_back(change);
        true
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = &BrkChange> {
        self.changes.iter()
    }

    pub fn len(&self) -> usize {
        self.changes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// A forked child starts with its parent's history (same heap until then): it counts against
/// the budget like any other, even when that overdraws it for a while (the child's own
/// changes then replace its oldest).
impl Clone for BrkRing {
    fn clone(&self) -> BrkRing {
        self.budget
            .held
            .fetch_add(self.changes.len(), Ordering::Relaxed);
        BrkRing {
            changes: self.changes.clone(),
            capacity: self.capacity,
            budget: self.budget,
        }
    }
}

impl Drop for BrkRing {
    fn drop(&mut self) {
        self.budget.give_back(self.changes.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(i: u64) -> BrkChange {
        BrkChange {
            ts_ns: i,
            brk: 0x1000 * i,
            size: 0,
        }
    }

    fn times(ring: &BrkRing) -> Vec<u64> {
        ring.iter().map(|c| c.ts_ns).collect()
    }

    #[test]
    fn a_ring_keeps_the_newest_and_counts_the_rest() {
        static BUDGET: Budget = Budget::new(1000);
        let mut ring = BrkRing::new(4, &BUDGET);
        let dropped = (1..=10).filter(|&i| ring.push(change(i))).count();
        assert_eq!(times(&ring), [7, 8, 9, 10]);
        assert_eq!(dropped, 6);
        assert_eq!(BUDGET.held(), 4);
    }

    #[test]
    fn a_spent_budget_still_leaves_every_ring_its_floor() {
        static BUDGET: Budget = Budget::new(10);
        let mut greedy = BrkRing::new(1000, &BUDGET);
        for ts_ns in 0..200 {
            greedy.push(change(ts_ns));
        }
        let mut quiet = BrkRing::new(1000, &BUDGET);
        for ts_ns in 0..3 {
            assert!(!quiet.push(change(ts_ns)), "nothing let go below the floor");
        }
        assert_eq!(quiet.iter().count(), 3);
        assert_eq!(greedy.iter().count(), FLOOR);
        drop(greedy);
        drop(quiet);
        assert_eq!(BUDGET.held(), 0, "everything given back");
    }

    #[test]
    fn the_budget_is_shared_and_given_back() {
        static BUDGET: Budget = Budget::new(100);
        let mut greedy = BrkRing::new(1000, &BUDGET);
        let dropped = (1..=300).filter(|&i| greedy.push(change(i))).count();
        assert_eq!(
            dropped, 200,
            "the whole budget, then its own oldest make room"
        );
        assert_eq!(times(&greedy).first(), Some(&201));
        let child = greedy.clone();
        assert_eq!(BUDGET.held(), 200, "a fork copy is charged");
        drop(child);
        drop(greedy);
        assert_eq!(BUDGET.held(), 0);
        let mut late = BrkRing::new(1000, &BUDGET);
        let dropped = (1..=150).filter(|&i| late.push(change(i))).count();
        assert_eq!(dropped, 50, "what exited is free again");
    }
}
