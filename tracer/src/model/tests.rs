//! Unit tests of the model's rules, including the awkward cases.

use std::sync::Arc;

use super::{
    apply::{Effect, apply},
    maps::{self, model_lines, proc_lines},
    region::{Region, classified},
    space::AddressSpace,
    vma::{Backing, FileRef, Perms, Vma},
};
use crate::{kernel::events::SyscallEvent, kernel::syscalls::SyscallKind};

const P: u64 = 4096;
const RW: u64 = 3;
const R: u64 = 1;
const PRIVATE_ANON: u64 = 0x22;
const FIXED: u64 = 0x10;
const FIXED_NOREPLACE: u64 = 0x100000;

/// A syscall record of tgid 1 (also the property tests' builder).
pub(super) fn ev(kind: SyscallKind, args: &[u64], ret: i64) -> SyscallEvent {
    let mut a = [0; 6];
    a[..args.len()].copy_from_slice(args);
    SyscallEvent {
        ts_ns: 0,
        enter_ns: 0,
        tgid: 1,
        tid: 1,
        kind,
        args: a,
        ret,
        seq: 0,
    }
}

fn mmap(space: &mut AddressSpace, addr: u64, pages: u64, prot: u64, flags: u64) {
    let e = ev(
        SyscallKind::Mmap,
        &[addr, pages * P, prot, flags, u64::MAX, 0],
        addr as i64,
    );
    apply(space, &e);
}

/// The layout as (start page, end page, perms) triples, relative to `base`.
fn layout(space: &AddressSpace, base: u64) -> Vec<(u64, u64, String)> {
    space
        .vmas()
        .map(|v| {
            (
                (v.start - base) / P,
                (v.end - base) / P,
                v.perms.to_string(),
            )
        })
        .collect()
}

const BASE: u64 = 0x7000_0000_0000;

#[test]
fn map_fixed_over_the_middle_of_two_vmas_splits_both() {
    let mut s = AddressSpace::new(P);
    mmap(&mut s, BASE, 4, RW, PRIVATE_ANON);
    mmap(&mut s, BASE + 4 * P, 4, R, PRIVATE_ANON);
    mmap(&mut s, BASE + 2 * P, 4, 0, PRIVATE_ANON | FIXED);
    assert_eq!(
        layout(&s, BASE),
        vec![
            (0, 2, "rw-p".into()),
            (2, 6, "---p".into()),
            (6, 8, "r--p".into())
        ]
    );
}

#[test]
fn map_fixed_noreplace_success_is_a_plain_mapping() {
    let mut s = AddressSpace::new(P);
    mmap(&mut s, BASE, 2, RW, PRIVATE_ANON | FIXED_NOREPLACE);
    // A refused one (EEXIST) changes nothing.
    apply(
        &mut s,
        &ev(
            SyscallKind::Mmap,
            &[BASE, P, R, PRIVATE_ANON | FIXED_NOREPLACE, u64::MAX, 0],
            -17,
        ),
    );
    assert_eq!(layout(&s, BASE), vec![(0, 2, "rw-p".into())]);
}

#[test]
fn munmap_spanning_holes_removes_only_what_is_mapped() {
    let mut s = AddressSpace::new(P);
    mmap(&mut s, BASE, 2, RW, PRIVATE_ANON);
    mmap(&mut s, BASE + 4 * P, 2, RW, PRIVATE_ANON);
    mmap(&mut s, BASE + 8 * P, 2, RW, PRIVATE_ANON);
    apply(&mut s, &ev(SyscallKind::Munmap, &[BASE + P, 8 * P], 0));
    assert_eq!(
        layout(&s, BASE),
        vec![(0, 1, "rw-p".into()), (9, 10, "rw-p".into())]
    );
}

#[test]
fn failed_calls_change_nothing() {
    let mut s = AddressSpace::new(P);
    mmap(&mut s, BASE, 2, RW, PRIVATE_ANON);
    let before = layout(&s, BASE);
    apply(&mut s, &ev(SyscallKind::Munmap, &[BASE + 1, P], -22));
    apply(&mut s, &ev(SyscallKind::Mprotect, &[BASE + 1, P, R], -22));
    apply(
        &mut s,
        &ev(SyscallKind::Mremap, &[BASE, P, 4 * P, 0, 0], -12),
    );
    assert_eq!(layout(&s, BASE), before);
}

#[test]
fn mprotect_on_a_sub_range_splits_in_three() {
    let mut s = AddressSpace::new(P);
    mmap(&mut s, BASE, 6, RW, PRIVATE_ANON);
    apply(
        &mut s,
        &ev(SyscallKind::Mprotect, &[BASE + 2 * P, 2 * P, R], 0),
    );
    assert_eq!(
        layout(&s, BASE),
        vec![
            (0, 2, "rw-p".into()),
            (2, 4, "r--p".into()),
            (4, 6, "rw-p".into())
        ]
    );
}

#[test]
fn mprotect_hitting_a_hole_has_changed_what_came_before_it() {
    let mut s = AddressSpace::new(P);
    mmap(&mut s, BASE, 2, RW, PRIVATE_ANON);
    mmap(&mut s, BASE + 3 * P, 2, RW, PRIVATE_ANON);
    apply(
        &mut s,
        &ev(SyscallKind::Mprotect, &[BASE + P, 4 * P, R], -12),
    );
    assert_eq!(
        layout(&s, BASE),
        vec![
            (0, 1, "rw-p".into()),
            (1, 2, "r--p".into()),
            (3, 5, "rw-p".into())
        ]
    );
}

#[test]
fn mremap_shrinks_and_grows_in_place() {
    let mut s = AddressSpace::new(P);
    mmap(&mut s, BASE, 4, RW, PRIVATE_ANON);
    apply(
        &mut s,
        &ev(
            SyscallKind::Mremap,
            &[BASE, 4 * P, 2 * P, 0, 0],
            BASE as i64,
        ),
    );
    assert_eq!(layout(&s, BASE), vec![(0, 2, "rw-p".into())]);
    apply(
        &mut s,
        &ev(
            SyscallKind::Mremap,
            &[BASE, 2 * P, 5 * P, 0, 0],
            BASE as i64,
        ),
    );
    assert_eq!(layout(&s, BASE), vec![(0, 5, "rw-p".into())]);
}

#[test]
fn mremap_move_onto_an_existing_mapping_replaces_it() {
    let mut s = AddressSpace::new(P);
    mmap(&mut s, BASE, 2, RW, PRIVATE_ANON);
    mmap(&mut s, BASE + 10 * P, 6, R, PRIVATE_ANON);
    // MREMAP_MAYMOVE|MREMAP_FIXED to the middle of the read-only mapping, growing to 3 pages.
    let to = BASE + 11 * P;
    apply(
        &mut s,
        &ev(SyscallKind::Mremap, &[BASE, 2 * P, 3 * P, 3, to], to as i64),
    );
    assert_eq!(
        layout(&s, BASE),
        vec![
            (10, 11, "r--p".into()),
            (11, 14, "rw-p".into()),
            (14, 16, "r--p".into())
        ]
    );
}

#[test]
fn mremap_dontunmap_keeps_the_source() {
    let mut s = AddressSpace::new(P);
    mmap(&mut s, BASE, 2, RW, PRIVATE_ANON);
    let to = BASE + 8 * P;
    apply(
        &mut s,
        &ev(
            SyscallKind::Mremap,
            &[BASE, 2 * P, 2 * P, 1 | 4, 0],
            to as i64,
        ),
    );
    assert_eq!(
        layout(&s, BASE),
        vec![(0, 2, "rw-p".into()), (8, 10, "rw-p".into())]
    );
}

#[test]
fn mremap_of_a_file_mapping_keeps_offsets() {
    let mut s = AddressSpace::new(P);
    let file = |off: u64| Vma {
        start: BASE,
        end: BASE + 2 * P,
        perms: Perms::from_prot(R, false),
        offset: off,
        backing: Backing::File(FileRef {
            path: Some(Arc::from("/f")),
            dev: (1, 2),
            inode: 9,
            fd: None,
        }),
        dont_fork: false,
    };
    s.map(file(0x5000));
    let to = BASE + 20 * P;
    apply(
        &mut s,
        &ev(SyscallKind::Mremap, &[BASE + P, P, 3 * P, 3, to], to as i64),
    );
    let v: Vec<(u64, u64, u64)> = s
        .vmas()
        .map(|v| ((v.start - BASE) / P, (v.end - BASE) / P, v.offset))
        .collect();
    // The moved page keeps its offset and the VMA grows over the next pages of the file.
    assert_eq!(v, vec![(0, 1, 0x5000), (20, 23, 0x6000)]);
}

#[test]
fn brk_grows_shrinks_below_a_page_boundary_and_is_named_heap() {
    let mut s = AddressSpace::new(P);
    let start = 0x5555_0000_0000;
    s.start_brk = Some(start);
    apply(&mut s, &ev(SyscallKind::Brk, &[0], start as i64));
    apply(
        &mut s,
        &ev(
            SyscallKind::Brk,
            &[start + 0x21000],
            (start + 0x21000) as i64,
        ),
    );
    assert_eq!(layout(&s, start), vec![(0, 0x21, "rw-p".into())]);
    // Shrink to 4 bytes past a page boundary: the VMA keeps that page.
    apply(
        &mut s,
        &ev(SyscallKind::Brk, &[start + 0x3004], (start + 0x3004) as i64),
    );
    assert_eq!(layout(&s, start), vec![(0, 4, "rw-p".into())]);
    // A refused request changes nothing.
    apply(&mut s, &ev(SyscallKind::Brk, &[1], (start + 0x3004) as i64));
    assert_eq!(layout(&s, start), vec![(0, 4, "rw-p".into())]);
    assert!(maps::render(&s).contains("[heap]"));
    apply(&mut s, &ev(SyscallKind::Brk, &[start], start as i64));
    assert_eq!(
        s.vma_count(),
        0,
        "shrunk back to its start, the heap VMA is gone"
    );
}

#[test]
fn madvise_changes_no_vma_but_dontfork_is_not_inherited() {
    let mut s = AddressSpace::new(P);
    mmap(&mut s, BASE, 4, RW, PRIVATE_ANON);
    apply(&mut s, &ev(SyscallKind::Madvise, &[BASE, 4 * P, 4], 0)); // DONTNEED
    apply(
        &mut s,
        &ev(SyscallKind::Madvise, &[BASE + 2 * P, 2 * P, 10], 0),
    ); // DONTFORK
    assert_eq!(
        model_lines(&s).len(),
        1,
        "invisible in /proc after coalescing"
    );
    let child = s.fork_copy();
    assert_eq!(layout(&child, BASE), vec![(0, 2, "rw-p".into())]);
}

#[test]
fn parses_awkward_proc_lines_and_renders_them_back() {
    let text = "\
559a1c2e5000-559a1c2e7000 r--p 00000000 fe:00 247030                     /usr/bin/my prog
7f0000000000-7f0000002000 rw-s 00000000 00:01 1025                       /dev/zero (deleted)
7f0000003000-7f0000004000 r--p fffffffffffff000 fe:00 12                 /huge offset
7f0000004000-7f0000005000 rw-p 00000000 00:00 0                          [anon:jemalloc]
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
";
    let vmas = maps::parse(text).unwrap();
    assert_eq!(vmas.len(), 6);
    let Backing::File(f) = &vmas[0].backing else {
        panic!()
    };
    assert_eq!(f.path.as_deref(), Some("/usr/bin/my prog"));
    assert_eq!((f.dev, f.inode), ((0xfe, 0), 247030));
    let Backing::File(z) = &vmas[1].backing else {
        panic!()
    };
    assert_eq!(z.path.as_deref(), Some("/dev/zero (deleted)"));
    assert_eq!(vmas[2].offset, 0xffff_ffff_ffff_f000);
    assert!(matches!(&vmas[3].backing, Backing::Special(n) if &**n == "[anon:jemalloc]"));
    assert!(vmas[4].backing.is_anonymous());
    let mut s = AddressSpace::new(P);
    s.start_stack = Some(0x7ffd_0000_1000);
    s.replace_vmas(vmas);
    assert_eq!(maps::render(&s), text);
    assert_eq!(model_lines(&s), proc_lines(text).unwrap());
    assert_eq!(s.virtual_size(), 2 * P + 2 * P + P + P + 0x21000);
    assert!(maps::parse("garbage line").is_err());
}

#[test]
fn coalescing_merges_what_the_kernel_may_or_may_not_merge() {
    let text = "\
7f0000000000-7f0000001000 rw-p 00000000 00:00 0 
7f0000001000-7f0000003000 rw-p 00000000 00:00 0 
7f0000003000-7f0000004000 r--p 00001000 fe:00 5                          /lib
7f0000004000-7f0000005000 r--p 00002000 fe:00 5                          /lib
7f0000005000-7f0000006000 r--p 00009000 fe:00 5                          /lib
";
    let lines = proc_lines(text).unwrap();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(
        (lines[1].start, lines[1].end),
        (0x7f0000003000, 0x7f0000005000)
    );
}

#[test]
fn stack_grows_down_to_the_lowest_fault_but_not_over_a_mapping() {
    let mut s = AddressSpace::new(P);
    let top = 0x7ffd_0010_0000;
    s.replace_vmas([Vma {
        start: top - 0x21000,
        end: top,
        perms: Perms::from_prot(RW, false),
        offset: 0,
        backing: Backing::Anonymous,
        dont_fork: false,
    }]);
    s.start_stack = Some(top - 0x100);
    assert!(s.grow_stack_to(top - 0x40000 + 12));
    assert_eq!(s.vmas().next().unwrap().start, top - 0x40000);
    mmap(&mut s, top - 0x50000, 1, RW, PRIVATE_ANON | FIXED);
    assert!(!s.grow_stack_to(top - 0x60000), "a mapping is in the way");
}

#[test]
fn regions_as_the_seeds_draw_them() {
    let text = "\
555500000000-555500001000 r--p 00000000 fe:00 1                          /bin/prog
555500001000-555500002000 r-xp 00001000 fe:00 1                          /bin/prog
555500002000-555500003000 rw-p 00002000 fe:00 1                          /bin/prog
555500003000-555500004000 rw-p 00000000 00:00 0 
555500100000-555500121000 rw-p 00000000 00:00 0                          [heap]
7f0000000000-7f0000010000 rw-p 00000000 00:00 0 
7f0000010000-7f0000012000 r-xp 00000000 00:00 0                          [vdso]
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
";
    let mut s = AddressSpace::new(P);
    s.replace_vmas(maps::parse(text).unwrap());
    s.start_brk = Some(0x555500100000);
    s.brk = Some(0x555500121000);
    s.start_stack = Some(0x7ffd00020000);
    let regions: Vec<Region> = classified(&s).into_iter().map(|(_, r)| r).collect();
    use Region::*;
    assert_eq!(
        regions,
        vec![File, Text, Data, Bss, Heap, Anon, Other, Stack]
    );
}

#[test]
fn mremap_moving_several_vmas_leaves_what_faces_a_hole() {
    // Linux 6.17+: MREMAP_MAYMOVE|MREMAP_FIXED over rw- [0,4) hole [4,6) r-- [6,8) onto an
    // r-x mapping [32,40): the r-x pages facing the hole stay.
    let mut s = AddressSpace::new(P);
    mmap(&mut s, BASE, 4, RW, PRIVATE_ANON);
    mmap(&mut s, BASE + 6 * P, 2, R, PRIVATE_ANON);
    mmap(&mut s, BASE + 32 * P, 8, 5, PRIVATE_ANON);
    let to = BASE + 32 * P;
    apply(
        &mut s,
        &ev(SyscallKind::Mremap, &[BASE, 8 * P, 8 * P, 3, to], to as i64),
    );
    assert_eq!(
        layout(&s, BASE),
        vec![
            (32, 36, "rw-p".into()),
            (36, 38, "r-xp".into()),
            (38, 40, "r--p".into())
        ]
    );
}

#[test]
fn an_mprotect_refused_midway_is_uncertain() {
    let mut s = AddressSpace::new(P);
    mmap(&mut s, BASE, 2, RW, PRIVATE_ANON);
    let effect = apply(&mut s, &ev(SyscallKind::Mprotect, &[BASE, 2 * P, R], -13));
    assert_eq!(
        effect,
        Effect {
            needs_name: None,
            uncertain: true,
            conflict: false
        }
    );
    let ok = apply(&mut s, &ev(SyscallKind::Mprotect, &[BASE, 2 * P, R], 0));
    assert!(!ok.uncertain);
}

#[test]
fn memory_handed_out_where_the_model_has_some_is_a_conflict() {
    let mut space = AddressSpace::new(P);
    mmap(&mut space, BASE, 4, RW, PRIVATE_ANON);
    // Another thread's munmap of BASE..+2 pages has not been applied yet, and this mmap
    // without MAP_FIXED was given that range: the kernel hands out free ranges only.
    let e = ev(
        SyscallKind::Mmap,
        &[0, 2 * P, RW, PRIVATE_ANON, u64::MAX, 0],
        BASE as i64,
    );
    assert!(apply(&mut space, &e).conflict);
    // With MAP_FIXED, replacing what is there is what was asked.
    let e = ev(
        SyscallKind::Mmap,
        &[BASE, 2 * P, R, PRIVATE_ANON | FIXED, u64::MAX, 0],
        BASE as i64,
    );
    assert!(!apply(&mut space, &e).conflict);
    // A free range is no conflict; nor is a failed call.
    let e = ev(
        SyscallKind::Mmap,
        &[0, P, RW, PRIVATE_ANON, u64::MAX, 0],
        (BASE + 8 * P) as i64,
    );
    assert!(!apply(&mut space, &e).conflict);
    let e = ev(
        SyscallKind::Mmap,
        &[0, P, RW, PRIVATE_ANON, u64::MAX, 0],
        -12,
    );
    assert!(!apply(&mut space, &e).conflict);
    // mremap growing in place over the mapping at BASE + 8 pages, and moving onto BASE.
    let grow = ev(
        SyscallKind::Mremap,
        &[BASE + 6 * P, P, 3 * P, 0, 0],
        (BASE + 6 * P) as i64,
    );
    mmap(&mut space, BASE + 6 * P, 1, RW, PRIVATE_ANON | FIXED);
    assert!(apply(&mut space, &grow).conflict);
    let shrink = ev(
        SyscallKind::Mremap,
        &[BASE + 6 * P, 3 * P, P, 0, 0],
        (BASE + 6 * P) as i64,
    );
    assert!(!apply(&mut space, &shrink).conflict);
    let moved = ev(
        SyscallKind::Mremap,
        &[BASE + 6 * P, P, 2 * P, 1, 0],
        BASE as i64,
    );
    assert!(apply(&mut space, &moved).conflict);
}

#[test]
fn virtual_size_is_kept_through_splits_vsyscall_forks_and_reseeds() {
    let text = "\
7f0000000000-7f0000004000 rw-p 00000000 00:00 0 
7f0000010000-7f0000012000 r--p 00000000 00:00 0 
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
";
    let sum = |s: &AddressSpace| -> u64 {
        s.vmas()
            .filter(|v| !matches!(&v.backing, Backing::Special(n) if &**n == "[vsyscall]"))
            .map(|v| v.len())
            .sum()
    };
    let mut s = AddressSpace::new(P);
    s.replace_vmas(maps::parse(text).unwrap());
    assert_eq!(s.virtual_size(), sum(&s));
    assert_eq!(s.virtual_size(), 6 * P);
    // A hole punched in the middle splits a VMA in three, then it is mapped again.
    s.unmap(0x7f00_0000_1000, 0x7f00_0000_2000);
    assert_eq!(s.virtual_size(), sum(&s));
    s.protect(0x7f00_0000_0000, 0x7f00_0001_1000, Perms::default());
    assert_eq!(s.virtual_size(), sum(&s));
    s.set_dont_fork(0x7f00_0001_0000, 0x7f00_0001_2000, true);
    s.remap(0x7f00_0000_2000, 2 * P, 5 * P, false, 0x7f00_0002_0000);
    assert_eq!(s.virtual_size(), sum(&s));
    let child = s.fork_copy();
    assert_eq!(child.virtual_size(), sum(&child));
    assert!(child.virtual_size() < s.virtual_size());
    assert_eq!(s.virtual_size(), sum(&s));
}
