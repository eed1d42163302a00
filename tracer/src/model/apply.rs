//! How each traced syscall changes an address space, from its arguments and result.

use std::sync::Arc;

use super::{
    space::AddressSpace,
    vma::{Backing, FileRef, Perms, Vma},
};
use crate::{
    kernel::events::SyscallEvent,
    kernel::syscalls::{Outcome, SyscallKind},
};

const MAP_SHARED: u64 = 0x01;
const MAP_SHARED_VALIDATE: u64 = 0x03;
const MAP_TYPE: u64 = 0x0f;
const MAP_ANONYMOUS: u64 = 0x20;
const MAP_FIXED: u64 = 0x10;
const MREMAP_FIXED: u64 = 2;
const MREMAP_DONTUNMAP: u64 = 4;
const MADV_DONTFORK: u64 = 10;
const MADV_DOFORK: u64 = 11;

/// A file on a filesystem, as opposed to shared anonymous memory (shown as /dev/zero).
fn is_real_file(backing: &Backing) -> bool {
    match backing {
        Backing::File(f) => f.path.as_deref() != Some(SHARED_ANON_NAME),
        _ => false,
    }
}

/// How /proc names shared anonymous memory (a shmem file set up by shmem_zero_setup()).
const SHARED_ANON_NAME: &str = "/dev/zero (deleted)";

/// A file mapping whose file name the caller should resolve from /proc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeedsName {
    pub start: u64,
    pub end: u64,
    pub fd: i32,
}

/// What applying a record did besides changing the space.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Effect {
    /// A file was mapped whose name the caller should resolve.
    pub needs_name: Option<NeedsName>,
    /// The record does not determine the new state (it depends on something no record
    /// carries): the caller should take the state from /proc.
    pub uncertain: bool,
    /// The kernel cannot have made this change to the space as the model holds it: an `mmap`
    /// without `MAP_FIXED` (or an `mremap` that is not `MREMAP_FIXED`) got a range the model
    /// has mapped, and the kernel only hands out free ranges. A change the kernel made before
    /// (another thread's `munmap`) is missing: the caller should take the state from /proc.
    pub conflict: bool,
}

/// Applies one completed syscall. Failed calls change nothing, except the partial cases the
/// kernel has: a refused brk still reports the break, and an mprotect that hits a hole
/// (ENOMEM) or a VMA it may not change (EACCES) has already changed the VMAs before it.
pub fn apply(space: &mut AddressSpace, e: &SyscallEvent) -> Effect {
    let mut uncertain = false;
    let conflict = lands_on_mapped_memory(space, e);
    let needs_name = apply_inner(space, e, &mut uncertain);
    Effect {
        needs_name,
        uncertain,
        conflict,
    }
}

/// Whether `e` placed memory where the model has some, though the kernel only places it in
/// free ranges there (see `Effect::conflict`).
fn lands_on_mapped_memory(space: &AddressSpace, e: &SyscallEvent) -> bool {
    if e.outcome() != Outcome::Ok {
        return false;
    }
    let a = e.args;
    let align = |len: u64| space.page_align_up(len);
    let new = e.ret as u64;
    let occupied =
        |start: u64, end: u64| start < end && space.first_overlapping(start, end).is_some();
    match e.kind {
        SyscallKind::Mmap if a[3] & MAP_FIXED == 0 => {
            occupied(new, new.saturating_add(align(a[1])))
        }
        SyscallKind::Mremap if a[3] & MREMAP_FIXED == 0 => {
            let (old, old_len, new_len) = (a[0], align(a[1]), align(a[2]));
            if new == old {
                // In place: only growth takes new memory, right after the old end.
                new_len > old_len && occupied(old + old_len, old + new_len)
            } else {
                occupied(new, new.saturating_add(new_len))
            }
        }
        _ => false,
    }
}

fn apply_inner(
    space: &mut AddressSpace,
    e: &SyscallEvent,
    uncertain: &mut bool,
) -> Option<NeedsName> {
    let outcome = e.outcome();
    let ok = outcome == Outcome::Ok;
    let a = e.args;
    let align = |len: u64| space.page_align_up(len);
    match e.kind {
        SyscallKind::Mmap if ok => {
            let (len, prot, flags, fd, off) = (a[1], a[2], a[3], a[4] as i32, a[5]);
            let start = e.ret as u64;
            let end = start + align(len);
            let shared = matches!(flags & MAP_TYPE, MAP_SHARED | MAP_SHARED_VALIDATE);
            let anonymous = flags & MAP_ANONYMOUS != 0;
            let backing = match (anonymous, shared) {
                (true, false) => Backing::Anonymous,
                // Shared anonymous memory is a shmem file the kernel shows as /dev/zero.
                (true, true) => Backing::File(FileRef {
                    path: Some(Arc::from(SHARED_ANON_NAME)),
                    dev: (0, 0),
                    inode: 0,
                    fd: None,
                }),
                (false, _) => Backing::File(FileRef {
                    path: None,
                    dev: (0, 0),
                    inode: 0,
                    fd: Some(fd),
                }),
            };
            space.map(Vma {
                start,
                end,
                perms: Perms::from_prot(prot, shared),
                offset: if anonymous { 0 } else { off },
                backing,
                dont_fork: false,
            });
            (!anonymous).then_some(NeedsName { start, end, fd })
        }
        SyscallKind::Munmap if ok => {
            space.unmap(a[0], a[0].saturating_add(align(a[1])));
            None
        }
        SyscallKind::Mprotect => {
            let (start, end) = (a[0], a[0].saturating_add(align(a[1])));
            let perms = Perms::from_prot(a[2], false);
            match outcome {
                Outcome::Ok => space.protect(start, end, perms),
                Outcome::Failed(libc::ENOMEM) => {
                    let stop = space.contiguous_end(start, end);
                    space.protect(start, stop, perms);
                }
                // The kernel changes VMA after VMA and stops at the first one that may not get
                // the new permissions: typically a shared mapping of a file opened read-only
                // asked for PROT_WRITE (no VM_MAYWRITE). Which one that is depends on how each
                // file was opened, which no record says: apply the likeliest prefix and let the
                // caller confirm from /proc.
                Outcome::Failed(libc::EACCES) => {
                    let stop = space
                        .first_where(start, end, |v| {
                            v.perms.shared && !v.perms.write && is_real_file(&v.backing)
                        })
                        .unwrap_or(start);
                    space.protect(start, stop.min(space.contiguous_end(start, end)), perms);
                    *uncertain = true;
                }
                Outcome::Failed(_) => {}
            }
            None
        }
        SyscallKind::Mremap if ok => {
            let keep_source = a[3] & MREMAP_DONTUNMAP != 0;
            space.remap(a[0], align(a[1]), align(a[2]), keep_source, e.ret as u64);
            None
        }
        // A failed MREMAP_FIXED. Before Linux 6.17 the kernel unmaps the destination (and
        // the tail a shrinking move leaves behind) before it checks the source, and a failed
        // check keeps them unmapped; since then it checks first and changes nothing. On the
        // older kernels, which checks failed (some come before the unmapping, and they vary
        // between versions) is not in the record: take the state from /proc.
        SyscallKind::Mremap
            if a[3] & MREMAP_FIXED != 0
                && crate::kernel::probes::features::mremap_unmaps_before_checking() =>
        {
            *uncertain = true;
            None
        }
        SyscallKind::Madvise if ok => {
            let (start, end) = (a[0], a[0].saturating_add(align(a[1])));
            match a[2] {
                MADV_DONTFORK => space.set_dont_fork(start, end, true),
                MADV_DOFORK => space.set_dont_fork(start, end, false),
                _ => {}
            }
            None
        }
        SyscallKind::Brk => {
            let requested = a[0];
            if ok && requested != 0 {
                space.set_break(e.ret as u64);
            } else {
                // brk(0) and refused calls both answer with the current break.
                space.brk = Some(e.ret as u64);
            }
            None
        }
        _ => None,
    }
}
