//! tracefs: where it is (mounting it if needed) and the field layout of each tracepoint, read
//! from its `format` file so no offset that varies between kernels is compiled in.

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum TracefsError {
    #[error(
        "tracefs is not available: none of /sys/kernel/tracing, /sys/kernel/debug/tracing is \
         mounted and mounting it failed ({0}); mount it with `mount -t tracefs nodev \
         /sys/kernel/tracing` (kernel option CONFIG_FTRACE)"
    )]
    NotMounted(String),
    #[error("{0} is not a tracefs: it has no events/ directory")]
    NotTracefs(PathBuf),
    #[error("the kernel has no tracepoint {group}:{name} ({path} is missing); {hint}")]
    MissingTracepoint {
        group: String,
        name: String,
        path: PathBuf,
        hint: &'static str,
    },
    #[error("tracepoint {group}:{name} has no field `{field}` in {path}")]
    MissingField {
        group: String,
        name: String,
        field: String,
        path: PathBuf,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("malformed line in {path}: {line:?}")]
    Malformed { path: PathBuf, line: String },
}

/// One field of a tracepoint record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    /// The C declaration before the name, e.g. `unsigned long` or `__data_loc char[]`.
    pub c_type: String,
    pub offset: u16,
    pub size: u16,
}

/// The parsed `format` file of one tracepoint.
#[derive(Debug, Clone, Default)]
pub struct Format {
    pub fields: HashMap<String, Field>,
}

impl Format {
    /// Parses the text of a tracefs `format` file. Lines that are not field lines (name, ID,
    /// print fmt) are ignored; a field line that does not parse is an error.
    pub fn parse(text: &str) -> Result<Format, String> {
        let mut fields = HashMap::new();
        for line in text.lines() {
            let line = line.trim();
            let Some(rest) = line.strip_prefix("field:") else {
                continue;
            };
            let field = parse_field(rest).ok_or_else(|| line.to_string())?;
            fields.insert(field.name.clone(), field);
        }
        Ok(Format { fields })
    }
}

/// `unsigned long addr;\toffset:16;\tsize:8;\tsigned:0;` (after the `field:` prefix).
fn parse_field(rest: &str) -> Option<Field> {
    let mut parts = rest.split(';').map(str::trim);
    let decl = parts.next()?;
    let mut offset = None;
    let mut size = None;
    for part in parts {
        if let Some(v) = part.strip_prefix("offset:") {
            offset = v.trim().parse().ok();
        } else if let Some(v) = part.strip_prefix("size:") {
            size = v.trim().parse().ok();
        }
    }
    // The name is the last identifier of the declaration: `char comm[16]` -> `comm`,
    // `__data_loc char[] filename` -> `filename`.
    let decl_no_array = match decl.rfind('[') {
        Some(i) if decl.ends_with(']') && !decl[..i].ends_with(char::is_whitespace) => &decl[..i],
        _ => decl,
    };
    // By char, not byte: a separator may be a multi-byte character (U+00A0 is whitespace), and
    // slicing at its first byte plus one would split it.
    let (split, separator) = decl_no_array
        .char_indices()
        .rfind(|&(_, c)| c.is_whitespace() || c == '*')?;
    let after = split + separator.len_utf8();
    let name = decl_no_array[after..].trim();
    if name.is_empty() {
        return None;
    }
    Some(Field {
        name: name.to_string(),
        c_type: decl_no_array[..after].trim().to_string(),
        offset: offset?,
        size: size?,
    })
}

/// A mounted tracefs.
#[derive(Debug, Clone)]
pub struct Tracefs {
    root: PathBuf,
}

impl Tracefs {
    /// Uses `root` as the tracefs (tests point this at a fake tree).
    pub fn at(root: impl Into<PathBuf>) -> Tracefs {
        Tracefs { root: root.into() }
    }

    /// Uses a tracefs given by the user, checking that it looks like one.
    pub fn user_given(root: &Path) -> Result<Tracefs, TracefsError> {
        if root.join("events").is_dir() {
            Ok(Tracefs::at(root))
        } else {
            Err(TracefsError::NotTracefs(root.to_path_buf()))
        }
    }

    /// Finds the system tracefs, mounting it at /sys/kernel/tracing if nothing is mounted.
    pub fn system() -> Result<Tracefs, TracefsError> {
        const CANDIDATES: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];
        if let Some(found) = CANDIDATES
            .iter()
            .find(|p| Path::new(p).join("events").is_dir())
        {
            return Ok(Tracefs::at(*found));
        }
        mount_tracefs(CANDIDATES[0]).map_err(TracefsError::NotMounted)?;
        Ok(Tracefs::at(CANDIDATES[0]))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn has(&self, group: &str, name: &str) -> bool {
        self.event_dir(group, name).join("format").is_file()
    }

    fn event_dir(&self, group: &str, name: &str) -> PathBuf {
        self.root.join("events").join(group).join(name)
    }

    /// Reads and parses `events/<group>/<name>/format`.
    pub fn format(&self, group: &str, name: &str) -> Result<Format, TracefsError> {
        let path = self.event_dir(group, name).join("format");
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(TracefsError::MissingTracepoint {
                    group: group.into(),
                    name: name.into(),
                    path,
                    hint: hint_for(group),
                });
            }
            Err(source) => return Err(TracefsError::Read { path, source }),
        };
        Format::parse(&text).map_err(|line| TracefsError::Malformed { path, line })
    }

    /// Offset of `field` in `group:name`.
    pub fn offset(&self, group: &str, name: &str, field: &str) -> Result<u16, TracefsError> {
        let format = self.format(group, name)?;
        format
            .fields
            .get(field)
            .map(|f| f.offset)
            .ok_or_else(|| TracefsError::MissingField {
                group: group.into(),
                name: name.into(),
                field: field.into(),
                path: self.event_dir(group, name).join("format"),
            })
    }
}

fn hint_for(group: &str) -> &'static str {
    match group {
        "syscalls" => "syscall tracepoints need a kernel built with CONFIG_FTRACE_SYSCALLS",
        "exceptions" => {
            "exceptions:page_fault_* exist only on x86 kernels (CONFIG_X86, with tracing enabled)"
        }
        "sched" => "sched tracepoints need a kernel built with CONFIG_TRACEPOINTS",
        _ => "the kernel must be built with CONFIG_TRACEPOINTS",
    }
}

fn mount_tracefs(target: &str) -> Result<(), String> {
    let target_c = std::ffi::CString::new(target).map_err(|e| e.to_string())?;
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            c"nodev".as_ptr(),
            target_c.as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    log::info!("mounted tracefs at {target}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORK_618: &str = "name: sched_process_fork
ID: 366
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:__data_loc char[] parent_comm;\toffset:8;\tsize:4;\tsigned:0;
\tfield:pid_t parent_pid;\toffset:12;\tsize:4;\tsigned:1;
\tfield:__data_loc char[] child_comm;\toffset:16;\tsize:4;\tsigned:0;
\tfield:pid_t child_pid;\toffset:20;\tsize:4;\tsigned:1;

print fmt: \"comm=%s pid=%d child_comm=%s child_pid=%d\", __get_str(parent_comm)
";

    const FORK_61: &str = "format:
\tfield:char parent_comm[16];\toffset:8;\tsize:16;\tsigned:0;
\tfield:pid_t parent_pid;\toffset:24;\tsize:4;\tsigned:1;
\tfield:char child_comm[16];\toffset:28;\tsize:16;\tsigned:0;
\tfield:pid_t child_pid;\toffset:44;\tsize:4;\tsigned:1;
";

    /// Multi-byte characters anywhere in a field line are parsed or refused, never a panic.
    #[test]
    fn multi_byte_characters_in_field_lines_do_not_panic() {
        let f = Format::parse("\tfield:int\u{a0}x;\toffset:0;\tsize:4;\tsigned:1;\n").unwrap();
        assert_eq!(f.fields["x"].c_type, "int");
        let f = Format::parse("\tfield:char *\u{e9}t\u{e9};\toffset:8;\tsize:8;\n").unwrap();
        assert_eq!(f.fields["\u{e9}t\u{e9}"].c_type, "char *");
        for line in [
            "field:\u{3000};offset:0;size:4;",
            "field:\u{a0}[\u{e9}];offset:0;size:4;",
            "field:int \u{1f600}[1];offset:\u{e9};size:4;",
            "field:\u{e9}\u{a0}\u{e9}\u{a0};offset:0;size:4;",
        ] {
            // Any answer will do; reaching the next line is the test.
            let _ = Format::parse(line);
        }
    }

    #[test]
    fn parses_data_loc_layout_of_recent_kernels() {
        let f = Format::parse(FORK_618).unwrap();
        assert_eq!(f.fields["child_pid"].offset, 20);
        assert_eq!(f.fields["child_comm"].c_type, "__data_loc char[]");
        assert_eq!(f.fields["child_comm"].size, 4);
        assert_eq!(f.fields["common_pid"].offset, 4);
    }

    #[test]
    fn parses_fixed_array_layout_of_older_kernels() {
        let f = Format::parse(FORK_61).unwrap();
        assert_eq!(f.fields["child_pid"].offset, 44);
        assert_eq!(f.fields["parent_comm"].size, 16);
        assert_eq!(f.fields["parent_comm"].c_type, "char");
    }

    #[test]
    fn parses_pointer_and_bool_fields() {
        let text = "\tfield:struct clone_args * uargs;\toffset:16;\tsize:8;\tsigned:0;\n\
                    \tfield:bool group_dead;\toffset:32;\tsize:1;\tsigned:0;\n";
        let f = Format::parse(text).unwrap();
        assert_eq!(f.fields["uargs"].offset, 16);
        assert_eq!(f.fields["group_dead"].size, 1);
    }

    #[test]
    fn rejects_a_field_line_without_offset() {
        assert!(Format::parse("\tfield:int x;\tsize:4;\n").is_err());
    }

    #[test]
    fn names_the_missing_tracepoint_and_how_to_get_it() {
        let dir = std::env::temp_dir().join(format!("tracer-tracefs-{}", std::process::id()));
        fs::create_dir_all(dir.join("events")).unwrap();
        let err = Tracefs::at(&dir)
            .format("exceptions", "page_fault_user")
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("exceptions:page_fault_user"), "{msg}");
        assert!(msg.contains("x86"), "{msg}");
        fs::remove_dir_all(dir).unwrap();
    }
}
