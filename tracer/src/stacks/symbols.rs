//! Names of frames, from the ELF symbol tables of the mapped files (blazesym), Rust and C++
//! names demangled, cached per (file contents, offset): a profile asks again for the same
//! frames, and the same library (one build id) mapped by many processes, at many paths, is
//! symbolized from one of its paths only.

use std::{
    collections::HashMap,
    fs::File,
    io::Write as _,
    os::{
        fd::{AsRawFd as _, FromRawFd as _},
        unix::fs::{FileExt as _, MetadataExt as _},
    },
    path::PathBuf,
    sync::Arc,
};

use blazesym::symbolize::{Input, Symbolizer, source::Elf, source::Source};

use super::{
    sites::{Frame, UNKNOWN_FILE},
    unwind::{FileEntry, FileTable},
};

pub struct Symbols {
    symbolizer: Symbolizer,
    /// Per (content id, file offset): the symbol's name, None when the file has none there.
    names: HashMap<(u32, u64), Option<Arc<str>>>,
    /// Bytes of the names in `names`.
    name_bytes: usize,
    /// Per content id, the descriptor given to blazesym as `/proc/self/fd/N`. Held here as
    /// long as `symbolizer` lives: blazesym (auto reload off) keeps what it parsed by path,
    /// so the number N must not name another file while it could ask for it again.
    paths: HashMap<u32, (Arc<File>, PathBuf)>,
    /// Bytes of the in-memory copies among them (`mappable`).
    copied: usize,
}

fn symbolizer() -> Symbolizer {
    Symbolizer::builder()
        .enable_demangling(true)
        .enable_code_info(false)
        .enable_inlined_fns(false)
        // Never re-open a path to see whether the file changed: the path is one of the
        // daemon's own descriptors, which does not change.
        .enable_auto_reload(false)
        .build()
}

impl Default for Symbols {
    fn default() -> Self {
        Symbols {
            symbolizer: symbolizer(),
            names: HashMap::new(),
            name_bytes: 0,
            paths: HashMap::new(),
            copied: 0,
        }
    }
}

/// Most bytes of names cached before the cache starts over.
const MAX_NAME_BYTES: usize = 64 << 20;
/// Longest name kept (a hostile symbol table may hold names of any length).
const MAX_NAME: usize = 1024;
/// Most files blazesym keeps parsed (its cache has no bound of its own, and holds a
/// descriptor and a mapping of each): beyond it the symbolizer starts over.
const MAX_PARSED_FILES: usize = 256;

/// Largest file copied to memory to be symbolized (see `mappable`), and most bytes of such
/// copies alive.
const MAX_COPY: u64 = 64 << 20;
const MAX_COPIES: usize = 256 << 20;

/// Whether only root (the daemon's user) can change `file`: owner root or the daemon's user,
/// no group or other write.
fn only_root_writes(meta: &std::fs::Metadata) -> bool {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    (meta.uid() == 0 || meta.uid() == euid) && meta.mode() & 0o022 == 0
}

/// A copy of `file` (at most `MAX_COPY` bytes) in a memfd, read with `pread` (which a
/// truncation only shortens).
fn memory_copy(file: &File) -> Option<(File, usize)> {
    // SAFETY: a valid C string; the descriptor returned is owned by the File below.
    let fd = unsafe { libc::memfd_create(c"tracer-symbols".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    // SAFETY: fd is a new descriptor nothing else owns.
    let mut copy = unsafe { File::from_raw_fd(fd) };
    let mut buf = vec![0u8; 1 << 16];
    let mut at = 0u64;
    while at < MAX_COPY {
        let n = file.read_at(&mut buf, at).ok()?;
        if n == 0 {
            break;
        }
        let n = n.min((MAX_COPY - at) as usize);
        copy.write_all(&buf[..n]).ok()?;
        at += n as u64;
    }
    Some((copy, at as usize))
}

/// `name` cut at `MAX_NAME` bytes, on a character boundary.
fn bounded(name: &str) -> &str {
    if name.len() <= MAX_NAME {
        return name;
    }
    let mut end = MAX_NAME;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

impl Symbols {
    /// The function name of `frame`; `[file+0xoffset]` when the file has no symbol there,
    /// `[0xaddress]` outside every known file.
    pub fn name(&mut self, files: &FileTable, frame: Frame) -> Arc<str> {
        let file = match files.get(frame.file) {
            Some(file) if frame.file != UNKNOWN_FILE => file,
            _ => return format!("[{:#x}]", frame.offset).into(),
        };
        let key = (file.content, frame.offset);
        let found = match self.names.get(&key) {
            Some(found) => found.clone(),
            None => {
                let found = self.lookup(files, file, frame.offset);
                let bytes = 64 + found.as_ref().map_or(0, |n| n.len());
                if self.name_bytes + bytes > MAX_NAME_BYTES {
                    self.names.clear();
                    self.name_bytes = 0;
                }
                self.name_bytes += bytes;
                self.names.insert(key, found.clone());
                found
            }
        };
        found.unwrap_or_else(|| {
            format!("[{}+{:#x}]", bounded(short(&file.name)), frame.offset).into()
        })
    }

    /// Names cached, and descriptors given to blazesym.
    #[cfg(test)]
    pub fn cached(&self) -> (usize, usize) {
        (self.names.len(), self.paths.len())
    }

    /// Forgets the descriptors of contents not in `live`: blazesym keeps what it parsed by
    /// descriptor number, so it starts over (names already found stay cached).
    pub fn release(&mut self, live: &std::collections::HashSet<u32>) {
        if self.paths.keys().any(|c| !live.contains(c)) {
            self.symbolizer = symbolizer();
            self.paths.clear();
            self.copied = 0;
        }
    }

    fn lookup(&mut self, files: &FileTable, file: &FileEntry, offset: u64) -> Option<Arc<str>> {
        // Through the descriptor the contents was checked on (never a path: a traced process
        // controls its paths); none once it was closed (its processes exited long ago).
        let path = match self.paths.get(&file.content) {
            Some((_, path)) => path.clone(),
            None => {
                let mut fd = files.descriptor(file.content)?;
                let meta = fd.metadata().ok()?;
                // blazesym maps the file it reads: the owner of a file could truncate it under
                // the mapping, and the daemon would die of SIGBUS. Files only root can change
                // are read in place; others from a copy in memory.
                let copy = if only_root_writes(&meta) {
                    0
                } else if meta.len() <= MAX_COPY {
                    meta.len() as usize
                } else {
                    log::debug!("not symbolizing {}: {} bytes", file.name, meta.len());
                    return None;
                };
                if self.paths.len() >= MAX_PARSED_FILES || self.copied + copy > MAX_COPIES {
                    self.symbolizer = symbolizer();
                    self.paths.clear();
                    self.copied = 0;
                }
                if copy > 0 {
                    let (copy, len) = memory_copy(&fd)?;
                    self.copied += len;
                    fd = Arc::new(copy);
                }
                let path = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
                self.paths.insert(file.content, (fd, path.clone()));
                path
            }
        };
        let mut elf = Elf::new(path);
        elf.debug_syms = false;
        match self
            .symbolizer
            .symbolize_single(&Source::Elf(elf), Input::FileOffset(offset))
        {
            Ok(sym) => sym.as_sym().map(|sym| bounded(&sym.name).into()),
            Err(err) => {
                log::debug!("symbolizing {}: {err}", file.name);
                None
            }
        }
    }
}

/// The last path component.
pub fn short(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cut_on_a_character_boundary() {
        let long = "é".repeat(4000);
        let cut = bounded(&long);
        assert!(
            cut.len() <= MAX_NAME && cut.len() >= MAX_NAME - 3,
            "{}",
            cut.len()
        );
        assert!(long.starts_with(cut));
        assert_eq!(bounded("main"), "main");
    }
}
