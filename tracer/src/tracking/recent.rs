//! The last few address-space changes of a process (mmap, munmap, mremap, mprotect, brk moves),
//! for the live page's event list. A fixed-size ring: a process that maps a million times
//! costs the same memory as one that maps once; older changes are only counted.

use std::collections::VecDeque;

use serde_json::{Value, json};

use crate::{
    kernel::events::SyscallEvent,
    kernel::syscalls::{Outcome, SyscallKind},
    units::hex,
};

/// Changes kept per process.
pub const RECENT_LIMIT: usize = 32;

/// One change as the event list shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    pub ts_ns: u64,
    pub kind: SyscallKind,
    /// The address the change is about: the new mapping (mmap, mremap), the range (munmap,
    /// mprotect) or the new break (brk).
    pub addr: u64,
    /// Bytes asked for (the new length for mremap); 0 for brk.
    pub len: u64,
    /// The kernel's answer: 0 or an address on success, -errno on failure.
    pub ret: i64,
}

#[derive(Clone, Debug, Default)]
pub struct RecentChanges {
    ring: VecDeque<Change>,
    /// Every change seen, kept or not.
    pub total: u64,
}

impl RecentChanges {
    /// Notes `e` if it may have changed the address space. `moved_break`: a brk call that moved
    /// the break (other brk calls only ask where it is).
    pub fn note(&mut self, e: &SyscallEvent, moved_break: bool) {
        let ok = e.outcome() == Outcome::Ok;
        let (addr, len) = match e.kind {
            SyscallKind::Brk if moved_break || !ok => (e.ret as u64, 0),
            SyscallKind::Mmap | SyscallKind::Mremap if ok => {
                let len = if e.kind == SyscallKind::Mmap {
                    e.args[1]
                } else {
                    e.args[2]
                };
                (e.ret as u64, len)
            }
            SyscallKind::Mmap
            | SyscallKind::Mremap
            | SyscallKind::Munmap
            | SyscallKind::Mprotect => {
                let len = if e.kind == SyscallKind::Mremap {
                    e.args[2]
                } else {
                    e.args[1]
                };
                (e.args[0], len)
            }
            _ => return,
        };
        if self.ring.len() == RECENT_LIMIT {
            self.ring.pop_front();
        }
        self.ring.push_back(Change {
            ts_ns: e.ts_ns,
            kind: e.kind,
            addr,
            len,
            ret: e.ret,
        });
        self.total += 1;
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Change> {
        self.ring.iter()
    }

    /// Newest first, as the API serves them.
    pub fn to_json(&self) -> Value {
        let list: Vec<Value> = self
            .iter()
            .rev()
            .map(|c| {
                json!({
                    "ts_ns": c.ts_ns,
                    "kind": c.kind.name(),
                    "addr": hex(c.addr),
                    "len": c.len,
                    "ok": c.ret >= 0,
                    "ret": c.ret,
                })
            })
            .collect();
        json!({"total": self.total, "kept": list.len(), "list": list})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(kind: SyscallKind, args: [u64; 6], ret: i64) -> SyscallEvent {
        SyscallEvent {
            ts_ns: 1,
            enter_ns: 0,
            tgid: 1,
            tid: 1,
            kind,
            args,
            ret,
            seq: 0,
        }
    }

    #[test]
    fn keeps_the_newest_changes_only() {
        let mut r = RecentChanges::default();
        for i in 0..(RECENT_LIMIT as u64 + 10) {
            r.note(
                &call(SyscallKind::Munmap, [0x1000 * i, 4096, 0, 0, 0, 0], 0),
                false,
            );
        }
        assert_eq!(r.iter().count(), RECENT_LIMIT);
        assert_eq!(r.total, RECENT_LIMIT as u64 + 10);
        assert_eq!(r.iter().next().unwrap().addr, 0x1000 * 10);
        let json = r.to_json();
        assert_eq!(
            json["list"][0]["addr"],
            hex(0x1000 * (RECENT_LIMIT as u64 + 9))
        );
    }

    #[test]
    fn only_changes_are_noted() {
        let mut r = RecentChanges::default();
        // brk(0) asks where the break is; madvise does not change the layout.
        r.note(&call(SyscallKind::Brk, [0; 6], 0x55_0000), false);
        r.note(
            &call(SyscallKind::Madvise, [0x1000, 4096, 4, 0, 0, 0], 0),
            false,
        );
        assert_eq!(r.total, 0);
        r.note(
            &call(SyscallKind::Brk, [0x57_0000, 0, 0, 0, 0, 0], 0x57_0000),
            true,
        );
        r.note(
            &call(
                SyscallKind::Mmap,
                [0, 8192, 3, 0x22, u64::MAX, 0],
                0x7f00_0000,
            ),
            false,
        );
        r.note(
            &call(SyscallKind::Mmap, [0, 8192, 3, 0x22, u64::MAX, 0], -12),
            false,
        );
        let kept: Vec<_> = r.iter().map(|c| (c.kind, c.addr, c.len)).collect();
        assert_eq!(
            kept,
            [
                (SyscallKind::Brk, 0x57_0000, 0),
                (SyscallKind::Mmap, 0x7f00_0000, 8192),
                (SyscallKind::Mmap, 0, 8192)
            ]
        );
    }
}
