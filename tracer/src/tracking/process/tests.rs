use super::*;
use crate::kernel::events::{Event, ExitEvent, ForkEvent, SyscallEvent, TaskKind};
use crate::tracking::table::{FollowUp, ProcessTable};

fn syscall(tgid: u32, kind: SyscallKind, args: &[u64], ret: i64) -> Event {
    let mut a = [0; 6];
    a[..args.len()].copy_from_slice(args);
    Event::Syscall(SyscallEvent {
        ts_ns: 1,
        enter_ns: 0,
        tgid,
        tid: tgid,
        kind,
        args: a,
        ret,
        seq: 0,
    })
}

#[test]
fn counts_calls_failures_and_bytes() {
    let mut t = ProcessTable::new(4096);
    t.add(5, "w".into());
    t.apply(&syscall(
        5,
        SyscallKind::Mmap,
        &[0, 100, 3, 0x22, u64::MAX, 0],
        0x7000_0000,
    ));
    t.apply(&syscall(
        5,
        SyscallKind::Mmap,
        &[0, 8192, 3, 0x22, u64::MAX, 0],
        -12,
    ));
    t.apply(&syscall(5, SyscallKind::Munmap, &[0x7000_0000, 4096], 0));
    t.apply(&syscall(5, SyscallKind::Munmap, &[0x7000_0001, 4096], -22));
    t.apply(&syscall(
        5,
        SyscallKind::Mremap,
        &[0x1000, 4096, 3 * 4096, 1, 0],
        0x9000,
    ));
    let p = t.get(5).unwrap();
    assert_eq!(
        p.stats(SyscallKind::Mmap),
        SyscallStats {
            calls: 2,
            failed: 1
        }
    );
    assert_eq!(
        p.stats(SyscallKind::Munmap),
        SyscallStats {
            calls: 2,
            failed: 1
        }
    );
    assert_eq!(p.bytes_mapped, 4096 + 2 * 4096);
    assert_eq!(p.bytes_unmapped, 4096);
}

#[test]
fn brk_tracks_start_end_peak_even_when_refused() {
    let mut t = ProcessTable::new(4096);
    t.apply(&syscall(7, SyscallKind::Brk, &[0], 0x55_0000));
    t.apply(&syscall(7, SyscallKind::Brk, &[0x57_1000], 0x57_1000));
    t.apply(&syscall(7, SyscallKind::Brk, &[0x56_0000], 0x56_0000));
    t.apply(&syscall(7, SyscallKind::Brk, &[0x10], 0x56_0000)); // refused
    let p = t.get(7).unwrap();
    assert_eq!(p.heap.start, Some(0x55_0000));
    assert_eq!(p.heap.end, Some(0x56_0000));
    assert_eq!(p.heap.peak, Some(0x57_1000));
    assert_eq!(p.heap.peak_size(), Some(0x2_1000));
    assert_eq!(p.heap.moves, 2);
    assert_eq!(
        p.stats(SyscallKind::Brk),
        SyscallStats {
            calls: 4,
            failed: 1
        }
    );
}

#[test]
fn fork_copies_the_break_and_exit_is_reported() {
    let mut t = ProcessTable::new(4096);
    t.apply(&syscall(7, SyscallKind::Brk, &[0], 0x55_0000));
    let fork = Event::Fork(ForkEvent {
        ts_ns: 2,
        parent_tgid: 7,
        parent_tid: 7,
        child_pid: 8,
        child: TaskKind::Process,
        clone_flags: 0,
        comm: "w".into(),
    });
    assert_eq!(t.apply(&fork), FollowUp::None);
    assert_eq!(t.get(8).unwrap().heap.end, Some(0x55_0000));
    assert_eq!(t.get(8).unwrap().parent, Some(7));
    let exit = Event::Exit(ExitEvent {
        ts_ns: 3,
        tgid: 8,
        tid: 8,
        comm: "w".into(),
        maxrss_pages: 0,
        hiwater_pages: 0,
    });
    assert_eq!(t.apply(&exit), FollowUp::Exited(8));
    assert_eq!(t.running().map(|p| p.tgid).collect::<Vec<_>>(), vec![7]);
}

#[test]
fn exited_models_are_freed_after_the_grace_period_but_their_drawing_stays() {
    let mut t = ProcessTable::new(4096);
    t.add(5, "w".into());
    t.apply(&syscall(
        5,
        SyscallKind::Mmap,
        &[0, 4096, 3, 0x22, u64::MAX, 0],
        0x7000_0000,
    ));
    let exit = Event::Exit(ExitEvent {
        ts_ns: 100,
        tgid: 5,
        tid: 5,
        comm: "w".into(),
        maxrss_pages: 0,
        hiwater_pages: 0,
    });
    t.apply(&exit);
    let p = t.get_mut(5).unwrap();
    p.final_layout = Some("its drawing at exit".into());
    assert_eq!(
        t.drop_models_exited_before(100),
        0,
        "not yet past the grace period"
    );
    assert_eq!(t.drop_models_exited_before(101), 1);
    let p = t.get(5).unwrap();
    assert_eq!(p.space.vma_count(), 0);
    assert!(p.model_dropped);
    assert_eq!(p.final_layout.as_deref(), Some("its drawing at exit"));
    assert_eq!(t.drop_models_exited_before(u64::MAX), 0, "only once");
    assert_eq!(t.evict_exited_before(100).len(), 0);
    assert_eq!(t.evict_exited_before(101).len(), 1);
    assert!(t.get(5).is_none());
}

#[test]
fn threads_are_counted_not_tracked() {
    let mut t = ProcessTable::new(4096);
    let fork = Event::Fork(ForkEvent {
        ts_ns: 2,
        parent_tgid: 7,
        parent_tid: 7,
        child_pid: 9,
        child: TaskKind::Thread,
        clone_flags: 0x10000,
        comm: "w".into(),
    });
    t.apply(&fork);
    assert!(t.get(9).is_none());
    assert_eq!(t.get(7).unwrap().threads_created, 1);
}

#[test]
fn changes_out_of_order_are_counted_and_resynced_not_applied_blindly() {
    let mut t = ProcessTable::new(4096);
    t.add(5, "w".into());
    let mmap = |ret| syscall(5, SyscallKind::Mmap, &[0, 8192, 3, 0x22, u64::MAX, 0], ret);
    t.apply(&mmap(0x7000_0000));
    assert_eq!(
        (t.order_conflicts, t.get(5).unwrap().seed.needed_again),
        (0, false)
    );
    // Handed out again while the model still has it: another thread's munmap is missing.
    t.apply(&mmap(0x7000_0000));
    let p = t.get(5).unwrap();
    assert_eq!(
        (t.order_conflicts, p.order_conflicts, p.seed.needed_again),
        (1, 1, true)
    );
    // A late munmap is counted as a call but leaves the model alone.
    let Event::Syscall(late) = syscall(5, SyscallKind::Munmap, &[0x7000_0000, 8192], 0) else {
        unreachable!()
    };
    t.apply_late(&late);
    let p = t.get(5).unwrap();
    assert_eq!(p.stats(SyscallKind::Munmap).calls, 1);
    assert_eq!(p.space.vma_count(), 1);
    assert_eq!(t.order_conflicts, 2);
    t.order_gap(5);
    assert_eq!(t.get(5).unwrap().order_conflicts, 3);
}
