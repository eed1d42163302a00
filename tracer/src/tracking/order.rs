//! Puts each process's syscall records back in the kernel's order of its address-space changes.
//!
//! The threads of a process change its address space one at a time, under `mmap_lock`, but
//! their records reach the ring buffer in the order the threads reach `sys_exit`. When the
//! kernel side numbers the changes (feature `mmap_lock_order`, `SyscallRecord::seq`: the n-th
//! traced syscall of a process to take the write lock gets n), a record that comes before an
//! earlier number is held until that number arrives, and then applied after it. Every numbered
//! syscall sends one record, so a missing number is a record still on its way, unless the ring
//! buffer lost it: then the wait ends at the next lost-record check, at an exec or exit of the
//! process, or after `MAX_WAIT_NS`, and the gap is counted. A record whose number comes after
//! later ones were applied is counted and not applied (its process resyncs from /proc).
//!
//! Records without a number (0: the syscall failed before it took the lock, took it only for
//! reading, or nothing numbers them) change nothing that depends on the order of changes, or
//! cannot be ordered: they are applied as they come.
//!
//! Pure: the caller passes the time and does what the steps say.

use std::collections::{BTreeMap, HashMap};

use crate::kernel::events::SyscallEvent;

/// How long a record waits for an earlier number before its gap is given up (the record that
/// would fill it was lost). A record on its way is late by the time its thread spends between
/// the lock and `sys_exit`: a preemption at worst.
pub const MAX_WAIT_NS: u64 = 1_000_000_000;

/// What the caller does next, in this order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Apply this record: its turn has come.
    Apply(SyscallEvent),
    /// This record came after a later change of its process was applied: count the call, do
    /// not apply it, resync the process from /proc.
    Late(SyscallEvent),
    /// Records of this process are missing before the next ones (lost): what the model holds
    /// may lack their changes, resync it from /proc.
    Gap(u32),
}

/// Daemon-wide counts (summary, report, metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OrderCounters {
    /// Records that arrived before an earlier change of their process and were held back so
    /// that they are applied in the kernel's order.
    pub reordered: u64,
    /// Changes given up on: their number never arrived (the record was lost).
    pub gaps: u64,
    /// Records that arrived after a later change of their process was applied.
    pub late: u64,
}

/// A held record and when it began to wait (the caller's clock).
#[derive(Debug)]
struct Held {
    event: SyscallEvent,
    seq: u32,
    since_ns: u64,
}

/// One process: the next number to apply, and the records that came before it was.
#[derive(Debug)]
struct Process {
    /// The number of the next change to apply (the kernel side counts from 1).
    next: u32,
    /// `next` on a scale that does not wrap: the keys of `held`.
    next_key: u64,
    held: BTreeMap<u64, Held>,
}

impl Default for Process {
    fn default() -> Self {
        Process {
            next: 1,
            next_key: 1,
            held: BTreeMap::new(),
        }
    }
}

/// The number after `seq` (the kernel side skips 0 when its counter wraps).
fn successor(seq: u32) -> u32 {
    match seq.wrapping_add(1) {
        0 => 1,
        next => next,
    }
}

/// How many numbers `to` comes after `from` (negative: before), on the cycle 1..=u32::MAX.
fn distance(from: u32, to: u32) -> i64 {
    let cycle = i64::from(u32::MAX);
    let d = (i64::from(to) - i64::from(from)).rem_euclid(cycle);
    if d > cycle / 2 { d - cycle } else { d }
}

/// The per-process reorder buffers.
#[derive(Debug, Default)]
pub struct Reorder {
    processes: HashMap<u32, Process>,
    pub counters: OrderCounters,
}

impl Reorder {
    /// Takes one record; pushes what is ready to `out`.
    pub fn admit(&mut self, event: SyscallEvent, now_ns: u64, out: &mut Vec<Step>) {
        let seq = event.seq;
        if seq == 0 {
            out.push(Step::Apply(event));
            return;
        }
        let p = self.processes.entry(event.tgid).or_default();
        let d = distance(p.next, seq);
        if d < 0 {
            self.counters.late += 1;
            out.push(Step::Late(event));
        } else if d == 0 {
            out.push(Step::Apply(event));
            p.next = successor(seq);
            p.next_key += 1;
            release_run(p, out);
        } else {
            self.counters.reordered += 1;
            let key = p.next_key + d as u64;
            let held = Held {
                event,
                seq,
                since_ns: now_ns,
            };
            if let Some(twice) = p.held.insert(key, held) {
                // The same number twice cannot come from the kernel side; keep both.
                self.counters.late += 1;
                out.push(Step::Late(twice.event));
            }
        }
    }

    /// Gives up the gaps that records have waited behind for `max_wait_ns` or more.
    pub fn expire(&mut self, now_ns: u64, max_wait_ns: u64, out: &mut Vec<Step>) {
        for (&tgid, p) in &mut self.processes {
            while p
                .held
                .first_key_value()
                .is_some_and(|(_, h)| now_ns.saturating_sub(h.since_ns) >= max_wait_ns)
            {
                skip_gap(tgid, p, &mut self.counters, out);
            }
        }
    }

    /// Applies everything `tgid` holds, giving up its gaps: nothing older can come any more
    /// (its exec or exit record came, or records were lost).
    pub fn release(&mut self, tgid: u32, out: &mut Vec<Step>) {
        if let Some(p) = self.processes.get_mut(&tgid) {
            while !p.held.is_empty() {
                skip_gap(tgid, p, &mut self.counters, out);
            }
        }
    }

    /// `release` for every process.
    pub fn release_all(&mut self, out: &mut Vec<Step>) {
        let tgids: Vec<u32> = self
            .processes
            .iter()
            .filter(|(_, p)| !p.held.is_empty())
            .map(|(&t, _)| t)
            .collect();
        for tgid in tgids {
            self.release(tgid, out);
        }
    }

    /// Forgets an exited process (after `release`): a new process with its pid counts from 1.
    pub fn forget(&mut self, tgid: u32) {
        self.processes.remove(&tgid);
    }

    /// Records held, over all processes.
    pub fn held(&self) -> usize {
        self.processes.values().map(|p| p.held.len()).sum()
    }
}

/// Applies the held records that follow `next` without a gap.
fn release_run(p: &mut Process, out: &mut Vec<Step>) {
    while let Some(entry) = p.held.first_entry() {
        if *entry.key() != p.next_key {
            break;
        }
        let held = entry.remove();
        p.next = successor(held.seq);
        p.next_key += 1;
        out.push(Step::Apply(held.event));
    }
}

/// Gives up the numbers missing before the first held record, then applies the run from it.
fn skip_gap(tgid: u32, p: &mut Process, counters: &mut OrderCounters, out: &mut Vec<Step>) {
    let Some((&key, held)) = p.held.first_key_value() else {
        return;
    };
    counters.gaps += key.saturating_sub(p.next_key);
    out.push(Step::Gap(tgid));
    p.next = held.seq;
    p.next_key = key;
    release_run(p, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::syscalls::SyscallKind;

    fn rec(tgid: u32, seq: u32) -> SyscallEvent {
        SyscallEvent {
            ts_ns: 0,
            enter_ns: 0,
            tgid,
            tid: tgid,
            kind: SyscallKind::Munmap,
            args: [u64::from(seq), 0, 0, 0, 0, 0],
            ret: 0,
            seq,
        }
    }

    /// The numbers of the records applied, and `L<n>` for late ones, `G<tgid>` for gaps.
    fn show(out: &[Step]) -> Vec<String> {
        out.iter()
            .map(|s| match s {
                Step::Apply(e) => e.seq.to_string(),
                Step::Late(e) => format!("L{}", e.seq),
                Step::Gap(t) => format!("G{t}"),
            })
            .collect()
    }

    fn feed(r: &mut Reorder, seqs: &[u32]) -> Vec<String> {
        let mut out = Vec::new();
        for &s in seqs {
            r.admit(rec(7, s), 0, &mut out);
        }
        show(&out)
    }

    #[test]
    fn records_in_order_pass_at_once() {
        let mut r = Reorder::default();
        assert_eq!(feed(&mut r, &[1, 2, 3]), ["1", "2", "3"]);
        assert_eq!(r.counters, OrderCounters::default());
        assert_eq!(r.held(), 0);
    }

    #[test]
    fn a_record_ahead_of_an_earlier_change_waits_for_it() {
        let mut r = Reorder::default();
        // The race: munmap(X) is change 2, the mmap handed X is change 3 but reports
        // first.
        assert_eq!(feed(&mut r, &[1, 3, 4]), ["1"]);
        assert_eq!(r.held(), 2);
        assert_eq!(feed(&mut r, &[2, 5]), ["2", "3", "4", "5"]);
        assert_eq!(r.counters.reordered, 2);
        assert_eq!((r.counters.gaps, r.counters.late), (0, 0));
    }

    #[test]
    fn unnumbered_records_are_not_held() {
        let mut r = Reorder::default();
        assert_eq!(feed(&mut r, &[2, 0, 1]), ["0", "1", "2"]);
    }

    #[test]
    fn processes_are_ordered_separately() {
        let mut r = Reorder::default();
        let mut out = Vec::new();
        r.admit(rec(1, 2), 0, &mut out);
        r.admit(rec(2, 1), 0, &mut out);
        r.admit(rec(1, 1), 0, &mut out);
        let order: Vec<(u32, u32)> = out
            .iter()
            .map(|s| match s {
                Step::Apply(e) => (e.tgid, e.seq),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(order, [(2, 1), (1, 1), (1, 2)]);
    }

    #[test]
    fn a_gap_is_given_up_after_the_wait_and_counted() {
        let mut r = Reorder::default();
        let mut out = Vec::new();
        r.admit(rec(7, 1), 0, &mut out);
        r.admit(rec(7, 4), 100, &mut out);
        r.admit(rec(7, 5), 200, &mut out);
        r.admit(rec(7, 7), 300, &mut out);
        out.clear();
        r.expire(1099, 1000, &mut out);
        assert!(out.is_empty(), "nothing waited long enough: {out:?}");
        r.expire(1100, 1000, &mut out);
        // Numbers 2 and 3 are given up; 7 waits behind 6 (its own wait is not over).
        assert_eq!(show(&out), ["G7", "4", "5"]);
        assert_eq!(r.counters.gaps, 2);
        out.clear();
        r.expire(1300, 1000, &mut out);
        assert_eq!(show(&out), ["G7", "7"]);
        assert_eq!(r.counters.gaps, 3);
        // The lost record comes after all: too late to apply.
        assert_eq!(feed(&mut r, &[3, 8]), ["L3", "8"]);
        assert_eq!(r.counters.late, 1);
    }

    #[test]
    fn release_applies_everything_held_in_order() {
        let mut r = Reorder::default();
        assert_eq!(feed(&mut r, &[5, 3]), Vec::<String>::new());
        let mut out = Vec::new();
        r.release(7, &mut out);
        assert_eq!(show(&out), ["G7", "3", "G7", "5"]);
        assert_eq!(r.counters.gaps, 3);
        r.forget(7);
        assert_eq!(feed(&mut r, &[1]), ["1"], "a new process counts from 1");
        let mut out = Vec::new();
        r.release_all(&mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn numbers_wrap_past_zero() {
        assert_eq!(successor(u32::MAX), 1);
        assert_eq!(distance(u32::MAX, 1), 1);
        assert_eq!(distance(1, u32::MAX), -1);
        assert_eq!(distance(u32::MAX - 1, 2), 3);
        let mut r = Reorder::default();
        r.processes.insert(
            7,
            Process {
                next: u32::MAX - 1,
                next_key: 10,
                held: BTreeMap::new(),
            },
        );
        assert_eq!(
            feed(&mut r, &[1, u32::MAX, u32::MAX - 1]),
            [(u32::MAX - 1).to_string(), u32::MAX.to_string(), "1".into()]
        );
    }
}
