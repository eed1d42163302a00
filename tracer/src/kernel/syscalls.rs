//! The traced syscalls: names, argument names (as in the tracefs `format` files, which is also
//! how they are named in the JSON event stream) and what counts as failure.

use tracer_common::record::{
    SYS_BRK, SYS_MADVISE, SYS_MMAP, SYS_MPROTECT, SYS_MREMAP, SYS_MUNMAP, SYSCALL_KINDS,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SyscallKind {
    Brk,
    Mmap,
    Munmap,
    Mremap,
    Mprotect,
    Madvise,
}

/// Static description of one traced syscall.
#[derive(Debug)]
pub struct Syscall {
    pub kind: u32,
    pub name: &'static str,
    /// Argument field names in `sys_enter_<name>`, in `SyscallRecord::args` order.
    pub args: &'static [&'static str],
    /// Whether a successful call returns an address (printed in hex).
    pub returns_address: bool,
}

/// Indexed by `SYS_*`.
pub const SYSCALLS: &[Syscall; SYSCALL_KINDS] = &[
    Syscall {
        kind: SYS_BRK,
        name: "brk",
        args: &["brk"],
        returns_address: true,
    },
    Syscall {
        kind: SYS_MMAP,
        name: "mmap",
        args: &["addr", "len", "prot", "flags", "fd", "off"],
        returns_address: true,
    },
    Syscall {
        kind: SYS_MUNMAP,
        name: "munmap",
        args: &["addr", "len"],
        returns_address: false,
    },
    Syscall {
        kind: SYS_MREMAP,
        name: "mremap",
        args: &["addr", "old_len", "new_len", "flags", "new_addr"],
        returns_address: true,
    },
    Syscall {
        kind: SYS_MPROTECT,
        name: "mprotect",
        args: &["start", "len", "prot"],
        returns_address: false,
    },
    Syscall {
        kind: SYS_MADVISE,
        name: "madvise",
        args: &["start", "len_in", "behavior"],
        returns_address: false,
    },
];

impl SyscallKind {
    pub const ALL: [SyscallKind; SYSCALL_KINDS] = [
        SyscallKind::Brk,
        SyscallKind::Mmap,
        SyscallKind::Munmap,
        SyscallKind::Mremap,
        SyscallKind::Mprotect,
        SyscallKind::Madvise,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn describe(self) -> &'static Syscall {
        &SYSCALLS[self.index()]
    }

    pub fn name(self) -> &'static str {
        self.describe().name
    }
}

impl TryFrom<u32> for SyscallKind {
    type Error = u32;

    fn try_from(value: u32) -> Result<Self, u32> {
        SyscallKind::ALL.get(value as usize).copied().ok_or(value)
    }
}

/// Linux returns -errno in [-4095, -1] from failing syscalls.
const MAX_ERRNO: i64 = 4095;

/// How a completed syscall ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Failed with this errno. brk reports failure by returning the old break, not an errno;
    /// it is reported as ENOMEM, which is what glibc's `brk()` sets.
    Failed(i32),
}

/// Decides success from the raw arguments and return value.
pub fn outcome(kind: SyscallKind, args: &[u64], ret: i64) -> Outcome {
    match kind {
        SyscallKind::Brk => {
            let requested = args.first().copied().unwrap_or(0);
            // brk(0) only asks for the break; any other brk succeeds iff it returns the request.
            if requested == 0 || ret as u64 == requested {
                Outcome::Ok
            } else {
                Outcome::Failed(libc::ENOMEM)
            }
        }
        _ if (-MAX_ERRNO..0).contains(&ret) => Outcome::Failed(-ret as i32),
        _ => Outcome::Ok,
    }
}

/// Symbolic name of an errno (for the event stream and the summary).
pub fn errno_name(errno: i32) -> String {
    let name = match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::EMFILE => "EMFILE",
        libc::ETXTBSY => "ETXTBSY",
        libc::EFBIG => "EFBIG",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::ENOSYS => "ENOSYS",
        _ => return format!("E{errno}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_indexed_by_kind() {
        for (i, s) in SYSCALLS.iter().enumerate() {
            assert_eq!(s.kind as usize, i);
            assert_eq!(SyscallKind::try_from(s.kind).unwrap().name(), s.name);
        }
        assert_eq!(SyscallKind::try_from(6), Err(6));
    }

    #[test]
    fn errno_returns_are_failures() {
        assert_eq!(
            outcome(SyscallKind::Munmap, &[1, 4096], -22),
            Outcome::Failed(libc::EINVAL)
        );
        assert_eq!(outcome(SyscallKind::Munmap, &[4096, 4096], 0), Outcome::Ok);
        // A high mmap address is not an errno even though it is negative as i64 on some layouts.
        assert_eq!(outcome(SyscallKind::Mmap, &[0; 6], -4096 * 2), Outcome::Ok);
        assert_eq!(
            outcome(SyscallKind::Mmap, &[0; 6], -12),
            Outcome::Failed(libc::ENOMEM)
        );
    }

    #[test]
    fn brk_fails_by_returning_the_old_break() {
        assert_eq!(outcome(SyscallKind::Brk, &[0], 0x5000), Outcome::Ok);
        assert_eq!(outcome(SyscallKind::Brk, &[0x6000], 0x6000), Outcome::Ok);
        assert_eq!(
            outcome(SyscallKind::Brk, &[0x1000], 0x5000),
            Outcome::Failed(libc::ENOMEM)
        );
    }
}
