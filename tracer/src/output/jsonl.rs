//! The `--events` stream: one JSON object per line per decoded record, plus a closing `end`
//! line with the daemon's counters. Addresses, lengths, protections and flags are hex strings
//! (`"0x7f..."`), so 64-bit values survive JSON consumers that use doubles.

use std::{
    io::{self, BufWriter, Write},
    path::Path,
};

use serde_json::{Map, Value, json};
use tracer_common::counters::FaultCounters;

use crate::{
    kernel::events::{Event, TaskKind},
    kernel::syscalls::{Outcome, SyscallKind, errno_name},
};

pub struct EventSink {
    out: BufWriter<Box<dyn Write + Send>>,
}

impl EventSink {
    /// Creates PATH (replacing a regular file there, never following a symlink: see
    /// `outfile`), or writes to stdout for `-`.
    pub fn open(path: &Path) -> Result<EventSink, crate::output::outfile::OutputError> {
        let out: Box<dyn Write + Send> = if crate::output::outfile::is_stdout(path) {
            Box::new(io::stdout())
        } else {
            Box::new(crate::output::outfile::create_stream(path)?)
        };
        Ok(EventSink {
            out: BufWriter::new(out),
        })
    }

    pub fn write(&mut self, value: &Value) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, value)?;
        self.out.write_all(b"\n")
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

pub fn hex(value: u64) -> Value {
    Value::String(format!("{value:#x}"))
}

/// Arguments that are small signed integers rather than bit patterns or addresses.
fn is_signed_arg(kind: SyscallKind, name: &str) -> bool {
    matches!(
        (kind, name),
        (SyscallKind::Mmap, "fd") | (SyscallKind::Madvise, "behavior")
    )
}

/// The JSON object of one event. `faults` goes with exit events (the final counters).
pub fn event_json(event: &Event, faults: Option<&FaultCounters>) -> Value {
    match event {
        Event::Syscall(e) => {
            let describe = e.kind.describe();
            let mut args = Map::new();
            for (name, value) in describe.args.iter().zip(e.args) {
                let v = if is_signed_arg(e.kind, name) {
                    json!(value as i64 as i32)
                } else {
                    hex(value)
                };
                args.insert((*name).to_string(), v);
            }
            let outcome = e.outcome();
            let ret = match outcome {
                Outcome::Ok if describe.returns_address => hex(e.ret as u64),
                _ if e.kind == SyscallKind::Brk => hex(e.ret as u64),
                _ => json!(e.ret),
            };
            let mut obj = json!({
                "type": "syscall",
                "ts_ns": e.ts_ns,
                "duration_ns": e.ts_ns.saturating_sub(e.enter_ns),
                "pid": e.tgid,
                "tid": e.tid,
                "syscall": describe.name,
                "args": args,
                "ret": ret,
                "ok": outcome == Outcome::Ok,
            });
            if let Outcome::Failed(errno) = outcome {
                obj["errno"] = json!(errno_name(errno));
            }
            obj
        }
        Event::Fork(e) => json!({
            "type": "fork",
            "ts_ns": e.ts_ns,
            "pid": e.parent_tgid,
            "tid": e.parent_tid,
            "child_pid": e.child_pid,
            "child": match e.child {
                TaskKind::Process => "process",
                TaskKind::Refused => "refused",
                TaskKind::Thread => "thread",
                TaskKind::Unknown => "unknown",
            },
            "clone_flags": hex(e.clone_flags),
            "comm": e.comm,
        }),
        Event::Exec(e) => json!({
            "type": "exec",
            "ts_ns": e.ts_ns,
            "pid": e.tgid,
            "old_tid": e.old_tid,
            "stopped": e.stopped,
            "started": e.started,
            "untraced": e.untraced,
            "comm": e.comm,
            "filename": e.filename,
        }),
        Event::Exit(e) => {
            let mut obj = json!({
                "type": "exit",
                "ts_ns": e.ts_ns,
                "pid": e.tgid,
                "tid": e.tid,
                "comm": e.comm,
            });
            if let Some(f) = faults {
                obj["faults"] = faults_json(f);
            }
            obj
        }
    }
}

pub fn faults_json(f: &FaultCounters) -> Value {
    use tracer_common::counters::*;
    let total = f.total();
    json!({
        "total": total,
        "major": f.major,
        "minor": total.saturating_sub(f.major),
        "user_read": f.by_access[ACCESS_USER_READ],
        "user_write": f.by_access[ACCESS_USER_WRITE],
        "user_exec": f.by_access[ACCESS_USER_EXEC],
        "kernel_read": f.by_access[ACCESS_KERNEL_READ],
        "kernel_write": f.by_access[ACCESS_KERNEL_WRITE],
        "kernel_exec": f.by_access[ACCESS_KERNEL_EXEC],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::events::SyscallEvent;

    fn mmap(ret: i64) -> Event {
        Event::Syscall(SyscallEvent {
            ts_ns: 10,
            enter_ns: 4,
            tgid: 3,
            tid: 4,
            kind: SyscallKind::Mmap,
            args: [0, 0x32000, 3, 0x22, u64::MAX, 0],
            ret,
            seq: 0,
        })
    }

    #[test]
    fn syscall_lines_use_hex_for_addresses_and_ints_for_fds() {
        let v = event_json(&mmap(0x7f00_0000_1000), None);
        assert_eq!(v["type"], "syscall");
        assert_eq!(v["syscall"], "mmap");
        assert_eq!(v["args"]["len"], "0x32000");
        assert_eq!(v["args"]["fd"], -1);
        assert_eq!(v["ret"], "0x7f0000001000");
        assert_eq!(v["ok"], true);
        assert_eq!(v["duration_ns"], 6);
        assert!(v.get("errno").is_none());
    }

    #[test]
    fn failures_carry_the_errno() {
        let v = event_json(&mmap(-12), None);
        assert_eq!(v["ok"], false);
        assert_eq!(v["ret"], -12);
        assert_eq!(v["errno"], "ENOMEM");
    }
}
