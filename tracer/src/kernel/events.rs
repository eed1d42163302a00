//! Safe decoding of ring-buffer records into events: the length is checked against the record
//! kind, bytes are read unaligned, and kinds are turned into enums. An unknown or short record
//! is an error the caller counts, never undefined behaviour.

use thiserror::Error;
use tracer_common::{
    COMM_LEN,
    record::{
        EXEC_FILENAME_LEN, EXEC_STARTED, EXEC_STOPPED, EXEC_UNTRACED, ExecRecord, ExitRecord,
        FORK_FLAGS_UNKNOWN, FORK_REFUSED, FORK_THREAD, ForkRecord, Header, MAX_ARGS, RECORD_EXEC,
        RECORD_EXIT, RECORD_FORK, RECORD_SYSCALL, SyscallRecord,
    },
};

use crate::kernel::syscalls::{Outcome, SyscallKind, outcome};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {len} bytes is shorter than its {needed}-byte {what}")]
    Short {
        what: &'static str,
        len: usize,
        needed: usize,
    },
    #[error("unknown record kind {0}")]
    UnknownKind(u32),
    #[error("unknown syscall number {0} in a syscall record")]
    UnknownSyscall(u32),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyscallEvent {
    pub ts_ns: u64,
    pub enter_ns: u64,
    pub tgid: u32,
    pub tid: u32,
    pub kind: SyscallKind,
    pub args: [u64; MAX_ARGS],
    pub ret: i64,
    /// The process's change number (`SyscallRecord::seq`; 0: none).
    pub seq: u32,
}

impl SyscallEvent {
    pub fn outcome(&self) -> Outcome {
        outcome(self.kind, &self.args, self.ret)
    }
}

/// How the fork probe classified a new task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskKind {
    Process,
    /// A process the kernel side could not trace (the traced set is full).
    Refused,
    Thread,
    /// No clone flags were seen (e.g. a kernel-created io worker): decide from /proc.
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForkEvent {
    pub ts_ns: u64,
    pub parent_tgid: u32,
    pub parent_tid: u32,
    pub child_pid: u32,
    pub child: TaskKind,
    pub clone_flags: u64,
    pub comm: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecEvent {
    pub ts_ns: u64,
    pub tgid: u32,
    pub old_tid: u32,
    /// The probe stopped the process at the start of its new image; the daemon resumes it
    /// once it has read the image from /proc.
    pub stopped: bool,
    /// Tracing began at this exec (`--comm` matched).
    pub started: bool,
    /// Tracing ended at this exec (`--exclude-comm` matched).
    pub untraced: bool,
    pub comm: String,
    pub filename: String,
    /// `ExecRecord::maxrss_pages`.
    pub maxrss_pages: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExitEvent {
    pub ts_ns: u64,
    pub tgid: u32,
    pub tid: u32,
    pub comm: String,
    /// `ExitRecord::maxrss_pages`, `ExitRecord::hiwater_pages`.
    pub maxrss_pages: u32,
    pub hiwater_pages: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Syscall(SyscallEvent),
    Fork(ForkEvent),
    Exec(ExecEvent),
    Exit(ExitEvent),
}

fn read<T: Copy>(bytes: &[u8], what: &'static str) -> Result<T, DecodeError> {
    let needed = size_of::<T>();
    if bytes.len() < needed {
        return Err(DecodeError::Short {
            what,
            len: bytes.len(),
            needed,
        });
    }
    // SAFETY: the length is checked above; T is a plain #[repr(C)] integer record for which
    // every bit pattern is valid; read_unaligned makes no alignment assumption.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// Text up to the first NUL, escaped like the same name read from /proc (a comm or a path
/// is bytes: lossy decoding would make it differ from /proc's and merge distinct names).
pub fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    crate::procfs::escape(&bytes[..end])
}

/// Decodes one ring-buffer record.
pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    let header: Header = read(bytes, "header")?;
    match header.kind {
        RECORD_SYSCALL => {
            let r: SyscallRecord = read(bytes, "syscall record")?;
            let kind = SyscallKind::try_from(r.syscall).map_err(DecodeError::UnknownSyscall)?;
            Ok(Event::Syscall(SyscallEvent {
                ts_ns: header.ts_ns,
                enter_ns: r.enter_ns,
                tgid: header.tgid,
                tid: header.tid,
                kind,
                args: r.args,
                ret: r.ret,
                seq: r.seq,
            }))
        }
        RECORD_FORK => {
            let r: ForkRecord = read(bytes, "fork record")?;
            let child = if r.flags & FORK_REFUSED != 0 {
                TaskKind::Refused
            } else if r.flags & FORK_FLAGS_UNKNOWN != 0 {
                TaskKind::Unknown
            } else if r.flags & FORK_THREAD != 0 {
                TaskKind::Thread
            } else {
                TaskKind::Process
            };
            Ok(Event::Fork(ForkEvent {
                ts_ns: header.ts_ns,
                parent_tgid: header.tgid,
                parent_tid: header.tid,
                child_pid: r.child_pid,
                child,
                clone_flags: r.clone_flags,
                comm: c_string(&r.comm),
            }))
        }
        RECORD_EXEC => {
            let r: ExecRecord = read(bytes, "exec record")?;
            let len = (r.filename_len as usize).min(EXEC_FILENAME_LEN);
            Ok(Event::Exec(ExecEvent {
                ts_ns: header.ts_ns,
                tgid: header.tgid,
                old_tid: r.old_tid,
                stopped: r.flags & EXEC_STOPPED != 0,
                started: r.flags & EXEC_STARTED != 0,
                untraced: r.flags & EXEC_UNTRACED != 0,
                comm: c_string(&r.comm),
                filename: c_string(&r.filename[..len]),
                maxrss_pages: r.maxrss_pages,
            }))
        }
        RECORD_EXIT => {
            let r: ExitRecord = read(bytes, "exit record")?;
            Ok(Event::Exit(ExitEvent {
                ts_ns: header.ts_ns,
                tgid: header.tgid,
                tid: header.tid,
                comm: c_string(&r.comm[..COMM_LEN]),
                maxrss_pages: r.maxrss_pages,
                hiwater_pages: r.hiwater_pages,
            }))
        }
        other => Err(DecodeError::UnknownKind(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_of<T>(value: &T) -> Vec<u8> {
        // SAFETY: reading the bytes of a plain #[repr(C)] value.
        unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }
            .to_vec()
    }

    fn header(kind: u32) -> Header {
        Header {
            kind,
            tgid: 10,
            tid: 11,
            _pad: 0,
            ts_ns: 99,
        }
    }

    #[test]
    fn decodes_a_syscall_record() {
        let r = SyscallRecord {
            header: header(RECORD_SYSCALL),
            syscall: 1,
            seq: 0,
            args: [0, 4096, 3, 0x22, u64::MAX, 0],
            ret: 0x7f00_0000_0000,
            enter_ns: 90,
        };
        let Event::Syscall(e) = decode(&bytes_of(&r)).unwrap() else {
            panic!()
        };
        assert_eq!(e.kind, SyscallKind::Mmap);
        assert_eq!((e.tgid, e.tid, e.ts_ns, e.enter_ns), (10, 11, 99, 90));
        assert_eq!(e.args[1], 4096);
        assert_eq!(e.outcome(), Outcome::Ok);
    }

    #[test]
    fn decodes_from_an_unaligned_buffer() {
        let r = ExitRecord {
            header: header(RECORD_EXIT),
            group_dead: 1,
            maxrss_pages: 0,
            comm: *b"worker\0\0\0\0\0\0\0\0\0\0",
            hiwater_pages: 0,
            _pad: 0,
        };
        let mut buf = vec![0u8];
        buf.extend(bytes_of(&r));
        let Event::Exit(e) = decode(&buf[1..]).unwrap() else {
            panic!()
        };
        assert_eq!(e.comm, "worker");
    }

    #[test]
    fn short_and_unknown_records_are_errors() {
        let r = SyscallRecord {
            header: header(RECORD_SYSCALL),
            ..Default::default()
        };
        let bytes = bytes_of(&r);
        assert!(matches!(
            decode(&bytes[..40]),
            Err(DecodeError::Short { .. })
        ));
        assert!(matches!(
            decode(&bytes[..8]),
            Err(DecodeError::Short { what: "header", .. })
        ));
        assert_eq!(
            decode(&bytes_of(&header(77))),
            Err(DecodeError::UnknownKind(77))
        );
        let bad = SyscallRecord { syscall: 9, ..r };
        assert_eq!(decode(&bytes_of(&bad)), Err(DecodeError::UnknownSyscall(9)));
    }

    #[test]
    fn fork_flags_become_task_kinds() {
        let mut r = ForkRecord {
            header: header(RECORD_FORK),
            child_pid: 12,
            ..Default::default()
        };
        let kind = |r: &ForkRecord| match decode(&bytes_of(r)).unwrap() {
            Event::Fork(f) => f.child,
            _ => panic!(),
        };
        assert_eq!(kind(&r), TaskKind::Process);
        r.flags = FORK_THREAD;
        assert_eq!(kind(&r), TaskKind::Thread);
        r.flags = FORK_FLAGS_UNKNOWN;
        assert_eq!(kind(&r), TaskKind::Unknown);
    }

    #[test]
    fn exec_filename_is_bounded_by_its_length() {
        let mut r = ExecRecord {
            header: header(RECORD_EXEC),
            old_tid: 10,
            filename_len: 9,
            flags: EXEC_STOPPED,
            maxrss_pages: 0,
            comm: [0; COMM_LEN],
            filename: [0; EXEC_FILENAME_LEN],
        };
        r.filename[..9].copy_from_slice(b"/bin/true");
        r.filename[9] = b'X'; // past the length: must not leak into the name
        let Event::Exec(e) = decode(&bytes_of(&r)).unwrap() else {
            panic!()
        };
        assert_eq!(e.filename, "/bin/true");
    }
}
