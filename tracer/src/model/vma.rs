//! One VMA: a `[start, end)` range with permissions, offset and what backs it, as
//! `/proc/PID/maps` prints it.

use std::{fmt, sync::Arc};

/// Access permissions and sharing (the `rwxp` / `rwxs` column).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Perms {
    pub read: bool,
    pub write: bool,
    pub exec: bool,
    pub shared: bool,
}

impl Perms {
    /// From mmap/mprotect `prot` bits (PROT_READ=1, PROT_WRITE=2, PROT_EXEC=4).
    pub fn from_prot(prot: u64, shared: bool) -> Perms {
        Perms {
            read: prot & 1 != 0,
            write: prot & 2 != 0,
            exec: prot & 4 != 0,
            shared,
        }
    }

    /// Parses `r-xp`.
    pub fn parse(text: &str) -> Option<Perms> {
        let b = text.as_bytes();
        if b.len() != 4 {
            return None;
        }
        let flag = |i: usize, c: u8| match b[i] {
            x if x == c => Some(true),
            b'-' => Some(false),
            _ => None,
        };
        Some(Perms {
            read: flag(0, b'r')?,
            write: flag(1, b'w')?,
            exec: flag(2, b'x')?,
            shared: match b[3] {
                b's' => true,
                b'p' => false,
                _ => return None,
            },
        })
    }
}

impl fmt::Display for Perms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = |on: bool, ch: char| if on { ch } else { '-' };
        write!(
            f,
            "{}{}{}{}",
            c(self.read, 'r'),
            c(self.write, 'w'),
            c(self.exec, 'x'),
            if self.shared { 's' } else { 'p' }
        )
    }
}

/// The file behind a mapping. Names come from /proc (seed, `map_files`, `fd`); until one is
/// known the path is None and the fd it was mapped from is kept to resolve it later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRef {
    pub path: Option<Arc<str>>,
    /// `major:minor` device numbers, 0 when unknown.
    pub dev: (u32, u32),
    /// Inode number, 0 when unknown.
    pub inode: u64,
    /// The descriptor passed to mmap, while the path is unknown.
    pub fd: Option<i32>,
}

/// What backs a VMA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backing {
    /// Anonymous memory. `[heap]` and `[stack]` are anonymous too: the kernel names them by
    /// their position (`mm->start_brk`, `mm->start_stack`), and so does the model.
    Anonymous,
    File(FileRef),
    /// A kernel-provided or named area: `[vdso]`, `[vvar]`, `[vvar_vclock]`, `[vsyscall]`,
    /// `[anon:name]`, `[uprobes]`...
    Special(Arc<str>),
}

impl Backing {
    pub fn is_anonymous(&self) -> bool {
        matches!(self, Backing::Anonymous)
    }
}

/// A virtual memory area.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    pub perms: Perms,
    /// File offset of `start` (0 for anonymous memory, as /proc shows it).
    pub offset: u64,
    pub backing: Backing,
    /// madvise(MADV_DONTFORK): not copied into a forked child.
    pub dont_fork: bool,
}

impl Vma {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Never true for a VMA the model holds (the model keeps `start < end`); here for the
    /// property tests that check exactly that.
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// The part of this VMA inside `[start, end)` (which must overlap it), with the file
    /// offset moved along.
    pub fn slice(&self, start: u64, end: u64) -> Vma {
        let start = start.max(self.start);
        let end = end.min(self.end);
        let mut piece = self.clone();
        if let Backing::File(_) = self.backing {
            piece.offset = self.offset + (start - self.start);
        }
        piece.start = start;
        piece.end = end;
        piece
    }
}
