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
    /// The file's directory and name, for rotation (None: stdout).
    rotation: Option<crate::output::rotation::Rotation>,
    /// `--events-max-size`.
    max_size: Option<u64>,
    /// Bytes and lines in the current file (or on stdout).
    written: u64,
    lines: u64,
    /// Lines in PATH.1, dropped when it is replaced.
    old_lines: u64,
    dropped: u64,
    line: Vec<u8>,
}

/// Smallest `--events-max-size`: below a few lines, every line would rotate the file.
pub const MIN_MAX_SIZE: u64 = 4096;

/// `--events-max-size SIZE`: a size (`units`), at least `MIN_MAX_SIZE`.
pub fn parse_max_size(text: &str) -> Result<u64, String> {
    let size = crate::units::parse_size(text)?;
    if size < MIN_MAX_SIZE {
        return Err(format!("`{text}` is less than {MIN_MAX_SIZE} bytes"));
    }
    Ok(size)
}

impl EventSink {
    /// Creates PATH (replacing a regular file there, never following a symlink: see
    /// `outfile`), or writes to stdout for `-`. Unbounded until `max_size`.
    pub fn open(path: &Path) -> Result<EventSink, crate::output::outfile::OutputError> {
        let (out, rotation): (Box<dyn Write + Send>, _) = if crate::output::outfile::is_stdout(path)
        {
            (Box::new(io::stdout()), None)
        } else {
            let file = crate::output::outfile::create_stream(path)?;
            (
                Box::new(file),
                Some(crate::output::rotation::Rotation::new(path)?),
            )
        };
        Ok(EventSink {
            out: BufWriter::new(out),
            rotation,
            max_size: None,
            written: 0,
            lines: 0,
            old_lines: 0,
            dropped: 0,
            line: Vec::new(),
        })
    }

    /// `--events-max-size`: a file that would grow past it is renamed to PATH.1 and begun
    /// again; on stdout the lines past it are dropped.
    pub fn max_size(mut self, max_size: Option<u64>) -> EventSink {
        self.max_size = max_size;
        self
    }

    pub fn write(&mut self, value: &Value) -> io::Result<()> {
        self.write_line(value, true)
    }

    /// The closing `end` line: on stdout it is written even past the limit, so that a reader
    /// learns how many lines were dropped.
    pub fn write_end(&mut self, value: &Value) -> io::Result<()> {
        self.write_line(value, false)
    }

    fn write_line(&mut self, value: &Value, droppable: bool) -> io::Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, value)?;
        self.line.push(b'\n');
        let len = self.line.len() as u64;
        if let Some(max) = self.max_size
            && self.written.saturating_add(len) > max
        {
            if self.rotation.is_some() {
                // A line longer than the limit still goes into a file of its own.
                if self.written > 0 {
                    self.rotate()?;
                }
            } else if droppable {
                self.dropped += 1;
                return Ok(());
            }
        }
        self.out.write_all(&self.line)?;
        self.written += len;
        self.lines += 1;
        Ok(())
    }

    /// PATH becomes PATH.1 (what PATH.1 held is dropped) and a new PATH begins.
    fn rotate(&mut self) -> io::Result<()> {
        let Some(rotation) = &self.rotation else {
            return Ok(());
        };
        self.out.flush()?;
        let file = rotation.rotate()?;
        self.out = BufWriter::new(Box::new(file));
        self.dropped += self.old_lines;
        self.old_lines = self.lines;
        self.lines = 0;
        self.written = 0;
        Ok(())
    }

    /// Lines no longer kept: past the limit on stdout, or in a PATH.1 that rotation replaced.
    pub fn dropped(&self) -> u64 {
        self.dropped
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

    fn lines(path: &Path) -> Vec<u64> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["n"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn a_size_limited_file_rotates_and_counts_what_it_lets_go() {
        let dir = std::env::temp_dir().join(format!("tracer-jsonl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("events.jsonl");
        let mut sink = EventSink::open(&path).unwrap().max_size(Some(MIN_MAX_SIZE));
        let pad = "x".repeat(100);
        let total = 200;
        for n in 0..total {
            sink.write(&json!({"n": n, "pad": pad})).unwrap();
        }
        sink.flush().unwrap();
        let (old, new) = (lines(&dir.join("events.jsonl.1")), lines(&path));
        for file in [&path, &dir.join("events.jsonl.1")] {
            let size = std::fs::metadata(file).unwrap().len();
            assert!(size <= MIN_MAX_SIZE, "{} is {size} bytes", file.display());
        }
        assert!(!old.is_empty() && !new.is_empty());
        // The newest lines are kept, in order, without a gap; the others are counted.
        let kept: Vec<u64> = old.iter().chain(&new).copied().collect();
        let first = total - kept.len() as u64;
        assert_eq!(kept, (first..total).collect::<Vec<_>>());
        assert_eq!(sink.dropped(), first);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn failures_carry_the_errno() {
        let v = event_json(&mmap(-12), None);
        assert_eq!(v["ok"], false);
        assert_eq!(v["ret"], -12);
        assert_eq!(v["errno"], "ENOMEM");
    }
}
