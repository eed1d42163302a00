//! Region classes: what a VMA is, as the seeds draw an address space.

use serde::Serialize;

use super::{
    space::AddressSpace,
    vma::{Backing, Vma},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Region {
    /// Executable file mapping (program or library code).
    Text,
    /// Writable private file mapping (initialised data).
    Data,
    /// Anonymous memory right after a data mapping (zero-initialised data).
    Bss,
    Heap,
    Stack,
    Anon,
    /// Other file mappings (read-only data, shared files, /dev/zero).
    File,
    /// vdso, vvar, vsyscall, named areas.
    Other,
}

impl Region {
    pub const ALL: [Region; 8] = [
        Region::Text,
        Region::Data,
        Region::Bss,
        Region::Heap,
        Region::Stack,
        Region::Anon,
        Region::File,
        Region::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Region::Text => "text",
            Region::Data => "data",
            Region::Bss => "bss",
            Region::Heap => "heap",
            Region::Stack => "stack",
            Region::Anon => "anon",
            Region::File => "file",
            Region::Other => "other",
        }
    }
}

/// Classifies `vma`; `prev` is the VMA just below it, if any.
pub fn classify(space: &AddressSpace, vma: &Vma, prev: Option<&Vma>) -> Region {
    if space.is_heap(vma) {
        return Region::Heap;
    }
    if space.is_stack(vma) {
        return Region::Stack;
    }
    match &vma.backing {
        Backing::Special(_) => Region::Other,
        Backing::File(_) if vma.perms.exec => Region::Text,
        Backing::File(_) if vma.perms.write && !vma.perms.shared => Region::Data,
        Backing::File(_) => Region::File,
        Backing::Anonymous => match prev {
            Some(p)
                if p.end == vma.start
                    && matches!(p.backing, Backing::File(_))
                    && p.perms.write
                    && !p.perms.shared =>
            {
                Region::Bss
            }
            _ => Region::Anon,
        },
    }
}

/// Each VMA with its region, in address order.
pub fn classified(space: &AddressSpace) -> Vec<(&Vma, Region)> {
    let mut prev: Option<&Vma> = None;
    space
        .vmas()
        .map(|v| {
            let region = classify(space, v, prev);
            prev = Some(v);
            (v, region)
        })
        .collect()
}
