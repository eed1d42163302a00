//! Property test: the address-space model, driven through `apply` by random mmap, munmap,
//! mprotect, mremap and brk calls (with the results the kernel would give), agrees page by
//! page with a plain reference model that keeps one entry per page, and its VMAs never
//! overlap, are never empty and are page-aligned.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::tests::ev;
use super::{
    apply::apply,
    space::AddressSpace,
    vma::{Backing, Perms},
};
use crate::kernel::syscalls::SyscallKind;

const P: u64 = 4096;
/// Calls land in a window of `WINDOW` pages at `BASE`; the heap lives in its own window above.
const BASE: u64 = 0x7000_0000_0000;
const WINDOW: u64 = 48;
const HEAP: u64 = BASE + 0x1000_0000;
const HEAP_PAGES: u64 = 24;

const MAP_PRIVATE: u64 = 0x02;
const MAP_FIXED: u64 = 0x10;
const MAP_ANONYMOUS: u64 = 0x20;
const MREMAP_MAYMOVE: u64 = 1;
const MREMAP_FIXED: u64 = 2;

/// What one page holds: permissions and either anonymous memory or (fd, page of the file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Page {
    perms: Perms,
    file: Option<(i32, u64)>,
}

#[derive(Clone, Debug)]
enum Op {
    /// MAP_FIXED mapping of `pages` at page `at`: anonymous, or of file `fd` from page `off`.
    Mmap {
        at: u64,
        pages: u64,
        prot: u64,
        file: Option<(i32, u64)>,
    },
    Munmap {
        at: u64,
        pages: u64,
    },
    Mprotect {
        at: u64,
        pages: u64,
        prot: u64,
    },
    /// In place (`to` None) or MREMAP_FIXED to page `to`.
    Mremap {
        at: u64,
        old: u64,
        new: u64,
        to: Option<u64>,
    },
    /// A new break, in bytes above the start of the heap.
    Brk {
        offset: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let at = 0..WINDOW;
    let pages = 1..8u64;
    prop_oneof![
        (
            at.clone(),
            pages.clone(),
            0..8u64,
            proptest::option::of((3..6i32, 0..16u64))
        )
            .prop_map(|(at, pages, prot, file)| Op::Mmap {
                at,
                pages,
                prot,
                file
            }),
        (at.clone(), pages.clone()).prop_map(|(at, pages)| Op::Munmap { at, pages }),
        (at.clone(), pages.clone(), 0..8u64).prop_map(|(at, pages, prot)| Op::Mprotect {
            at,
            pages,
            prot
        }),
        (at.clone(), pages.clone(), pages, proptest::option::of(at))
            .prop_map(|(at, old, new, to)| Op::Mremap { at, old, new, to }),
        (0..HEAP_PAGES * P).prop_map(|offset| Op::Brk { offset }),
    ]
}

/// The reference: one entry per mapped page, keyed by address, and the break.
struct Reference {
    pages: BTreeMap<u64, Page>,
    brk: u64,
}

impl Reference {
    fn range(&self, start: u64, pages: u64) -> Vec<Option<Page>> {
        (0..pages)
            .map(|i| self.pages.get(&(start + i * P)).copied())
            .collect()
    }

    /// Whether `[start, start + pages)` is one VMA as the kernel would have it: mapped, the
    /// same permissions and backing, file pages consecutive. mremap needs that.
    fn one_vma(&self, start: u64, pages: u64) -> bool {
        let range = self.range(start, pages);
        let Some(Some(first)) = range.first().copied() else {
            return false;
        };
        range.iter().enumerate().all(|(i, page)| {
            page.is_some_and(|p| {
                p.perms == first.perms && p.file == first.file.map(|(fd, off)| (fd, off + i as u64))
            })
        })
    }

    fn free(&self, start: u64, pages: u64) -> bool {
        self.range(start, pages).iter().all(Option::is_none)
    }

    fn heap_end(&self) -> u64 {
        self.brk.div_ceil(P) * P
    }
}

/// Applies `op` to the model as the kernel's answer to it would, and to the reference.
/// Calls the kernel would refuse in a way the model is not built to follow are not made.
fn step(space: &mut AddressSpace, reference: &mut Reference, op: &Op) {
    match *op {
        Op::Mmap {
            at,
            pages,
            prot,
            file,
        } => {
            let start = BASE + at * P;
            let (flags, fd, off) = match file {
                None => (MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS, u64::MAX, 0),
                Some((fd, off)) => (MAP_PRIVATE | MAP_FIXED, fd as u64, off * P),
            };
            let e = ev(
                SyscallKind::Mmap,
                &[start, pages * P, prot, flags, fd, off],
                start as i64,
            );
            apply(space, &e);
            for i in 0..pages {
                reference.pages.insert(
                    start + i * P,
                    Page {
                        perms: Perms::from_prot(prot, false),
                        file: file.map(|(fd, off)| (fd, off + i)),
                    },
                );
            }
        }
        Op::Munmap { at, pages } => {
            let start = BASE + at * P;
            apply(space, &ev(SyscallKind::Munmap, &[start, pages * P], 0));
            for i in 0..pages {
                reference.pages.remove(&(start + i * P));
            }
        }
        Op::Mprotect { at, pages, prot } => {
            let start = BASE + at * P;
            // The kernel changes page after page up to the first hole, then fails ENOMEM.
            let mut changed = 0;
            while changed < pages {
                let Some(page) = reference.pages.get_mut(&(start + changed * P)) else {
                    break;
                };
                page.perms = Perms::from_prot(prot, page.perms.shared);
                changed += 1;
            }
            let ret = if changed == pages {
                0
            } else {
                -(libc::ENOMEM as i64)
            };
            apply(
                space,
                &ev(SyscallKind::Mprotect, &[start, pages * P, prot], ret),
            );
        }
        Op::Mremap { at, old, new, to } => {
            let start = BASE + at * P;
            if !reference.one_vma(start, old) {
                return;
            }
            let dest = match to {
                None if new > old && !reference.free(start + old * P, new - old) => return,
                None if new > old && at + new > WINDOW => return,
                None => start,
                Some(to) => {
                    let dest = BASE + to * P;
                    // Source and destination may not overlap; the destination stays inside.
                    if to + new > WINDOW || (to < at + old && at < to + new) {
                        return;
                    }
                    dest
                }
            };
            let flags = if to.is_some() {
                MREMAP_MAYMOVE | MREMAP_FIXED
            } else {
                0
            };
            apply(
                space,
                &ev(
                    SyscallKind::Mremap,
                    &[start, old * P, new * P, flags, dest],
                    dest as i64,
                ),
            );
            let moved: Vec<Page> = reference
                .range(start, old)
                .into_iter()
                .map(|p| p.expect("one_vma: mapped"))
                .collect();
            for i in 0..old {
                reference.pages.remove(&(start + i * P));
            }
            for i in 0..new {
                reference.pages.remove(&(dest + i * P));
            }
            let last = *moved.last().unwrap();
            for i in 0..new {
                let page = match moved.get(i as usize) {
                    Some(&page) => page,
                    // Grown: the tail continues the last page (and its file).
                    None => Page {
                        perms: last.perms,
                        file: last.file.map(|(fd, off)| (fd, off + i + 1 - old)),
                    },
                };
                reference.pages.insert(dest + i * P, page);
            }
        }
        Op::Brk { offset } => {
            let new_brk = HEAP + offset;
            apply(space, &ev(SyscallKind::Brk, &[new_brk], new_brk as i64));
            let (old_end, new_brk_end) = (reference.heap_end(), new_brk.div_ceil(P) * P);
            for page in (old_end.min(new_brk_end)..old_end.max(new_brk_end)).step_by(P as usize) {
                if new_brk_end > old_end {
                    reference.pages.insert(
                        page,
                        Page {
                            perms: Perms::from_prot(3, false),
                            file: None,
                        },
                    );
                } else {
                    reference.pages.remove(&page);
                }
            }
            reference.brk = new_brk;
        }
    }
}

/// The model's pages, checking its invariants on the way.
fn model_pages(space: &AddressSpace) -> Result<BTreeMap<u64, Page>, String> {
    let mut pages = BTreeMap::new();
    let mut previous_end = 0;
    for vma in space.vmas() {
        if vma.start >= vma.end {
            return Err(format!("empty VMA {:x}-{:x}", vma.start, vma.end));
        }
        if vma.start % P != 0 || vma.end % P != 0 {
            return Err(format!("unaligned VMA {:x}-{:x}", vma.start, vma.end));
        }
        if vma.start < previous_end {
            return Err(format!(
                "VMA {:x}-{:x} overlaps the one before",
                vma.start, vma.end
            ));
        }
        previous_end = vma.end;
        for (i, addr) in (vma.start..vma.end).step_by(P as usize).enumerate() {
            let file = match &vma.backing {
                Backing::Anonymous => None,
                Backing::File(f) => {
                    Some((f.fd.ok_or("a file without fd")?, vma.offset / P + i as u64))
                }
                Backing::Special(name) => return Err(format!("unexpected {name}")),
            };
            pages.insert(
                addr,
                Page {
                    perms: vma.perms,
                    file,
                },
            );
        }
    }
    Ok(pages)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn model_agrees_with_a_page_level_reference(ops in proptest::collection::vec(op(), 1..40)) {
        let mut space = AddressSpace::new(P);
        space.start_brk = Some(HEAP);
        space.brk = Some(HEAP);
        let mut reference = Reference { pages: BTreeMap::new(), brk: HEAP };
        for (n, op) in ops.iter().enumerate() {
            step(&mut space, &mut reference, op);
            let pages = model_pages(&space).map_err(|e| TestCaseError::fail(format!("after op {n} {op:?}: {e}")))?;
            prop_assert_eq!(&pages, &reference.pages, "after op {} {:?}", n, op);
            // VSZ is a running total kept by every insert and removal: it must stay the sum.
            prop_assert_eq!(space.virtual_size(), reference.pages.len() as u64 * P, "VSZ after op {} {:?}", n, op);
            let fork = space.fork_copy();
            prop_assert_eq!(fork.virtual_size(), fork.vmas().map(|v| v.len()).sum::<u64>(), "fork VSZ after op {} {:?}", n, op);
        }
    }
}
