//! Folded stacks for flame graphs (`--folded PATH`, `GET /debug/pprof/heap?format=folded`):
//! Brendan Gregg's format, one line per stack, `frame;frame;frame value`, outermost frame
//! first, the process (`comm (pid)`) as the root frame.
//!
//! Frame names come from the traced programs' files and process names: untrusted bytes. A
//! name with `;` would split into two frames and one with a newline would forge a line, so
//! `;`, `%`, and control characters are written as `%XX` (which keeps the escaping
//! reversible and unambiguous); spaces stay (the value is after the last space).

use std::fmt::Write as _;

use crate::tracking::table::ProcessTable;

use super::Collector;

/// The value a folded line carries: one of the profile's sample types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum SampleType {
    AllocSpace,
    AllocObjects,
    InuseSpace,
    InuseObjects,
    Faults,
}

impl SampleType {
    pub const ALL: [SampleType; 5] = [
        SampleType::AllocSpace,
        SampleType::AllocObjects,
        SampleType::InuseSpace,
        SampleType::InuseObjects,
        SampleType::Faults,
    ];

    /// Its name, as pprof's sample types (`inuse_space`, ...).
    pub fn name(self) -> &'static str {
        match self {
            SampleType::AllocSpace => "alloc_space",
            SampleType::AllocObjects => "alloc_objects",
            SampleType::InuseSpace => "inuse_space",
            SampleType::InuseObjects => "inuse_objects",
            SampleType::Faults => "faults",
        }
    }

    pub fn from_name(name: &str) -> Option<SampleType> {
        SampleType::ALL.into_iter().find(|t| t.name() == name)
    }

    fn of(self, s: &super::sites::SiteStats) -> u64 {
        match self {
            SampleType::AllocSpace => s.alloc_space,
            SampleType::AllocObjects => s.alloc_objects,
            SampleType::InuseSpace => s.inuse_space,
            SampleType::InuseObjects => s.inuse_objects,
            SampleType::Faults => s.faults,
        }
    }
}

/// Writes `name` as one frame of a folded line (see the module's comment).
pub fn escape_frame(name: &str, out: &mut String) {
    for c in name.chars() {
        if c == ';' || c == '%' || c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "%{b:02X}");
            }
        } else {
            out.push(c);
        }
    }
}

impl Collector {
    /// The folded stacks of `pid` (every process when None), lines with a zero value left
    /// out, processes in pid order.
    pub fn folded(&mut self, table: &ProcessTable, pid: Option<u32>, kind: SampleType) -> String {
        let mut out = String::new();
        for tgid in self.current_pids(table, pid) {
            let comm = table.get(tgid).map(|p| p.comm.clone()).unwrap_or_default();
            let mut root = String::new();
            escape_frame(&format!("{comm} ({tgid})"), &mut root);
            let proc = &self.processes[&tgid];
            for (stack, s) in proc.sites.iter() {
                let value = kind.of(s);
                if value == 0 {
                    continue;
                }
                out.push_str(&root);
                if stack.is_empty() {
                    out.push_str(";[no stack]");
                }
                for &frame in stack.iter().rev() {
                    out.push(';');
                    escape_frame(&self.symbols.name(&self.files, frame), &mut out);
                }
                let _ = writeln!(out, " {value}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(name: &str) -> String {
        let mut out = String::new();
        escape_frame(name, &mut out);
        out
    }

    #[test]
    fn hostile_names_cannot_forge_frames_or_lines() {
        let hostile = "a;b\nmain;evil 999\r\u{1b}[2J%3B\u{85}";
        let e = escaped(hostile);
        assert!(!e.contains(';'), "{e}");
        assert!(!e.chars().any(char::is_control), "{e}");
        // Reversible: decoding the %XX gives the name back.
        let mut bytes = Vec::new();
        let mut it = e.bytes();
        while let Some(b) = it.next() {
            if b == b'%' {
                let hex: Vec<u8> = it.by_ref().take(2).collect();
                let s = std::str::from_utf8(&hex).unwrap();
                bytes.push(u8::from_str_radix(s, 16).unwrap());
            } else {
                bytes.push(b);
            }
        }
        assert_eq!(String::from_utf8(bytes).unwrap(), hostile);
        assert_eq!(escaped("plain name::f<T>"), "plain name::f<T>");
    }

    #[test]
    fn sample_type_names_round_trip() {
        for t in SampleType::ALL {
            assert_eq!(SampleType::from_name(t.name()), Some(t));
        }
        assert_eq!(SampleType::from_name("heap"), None);
    }
}
