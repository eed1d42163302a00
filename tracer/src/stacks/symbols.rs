//! Names of frames, from the ELF symbol tables of the mapped files (blazesym), Rust and C++
//! names demangled, cached per (file contents, offset): a profile asks again for the same
//! frames, and the same library (one build id) mapped by many processes, at many paths, is
//! symbolized from one of its paths only.

use std::{collections::HashMap, path::PathBuf, sync::Arc};

use blazesym::symbolize::{Input, Symbolizer, source::Elf, source::Source};

use super::{
    sites::{Frame, UNKNOWN_FILE},
    unwind::{FileEntry, FileTable},
};

pub struct Symbols {
    symbolizer: Symbolizer,
    /// Per (content id, file offset): the symbol's name, None when the file has none there.
    names: HashMap<(u32, u64), Option<Arc<str>>>,
    /// Per content id, the path it was last symbolized from: blazesym keeps each file it
    /// parsed by path, so asking through the same path again reuses that.
    paths: HashMap<u32, PathBuf>,
    /// Distinct paths given to `symbolizer` since it was made.
    parsed: usize,
}

fn symbolizer() -> Symbolizer {
    Symbolizer::builder()
        .enable_demangling(true)
        .enable_code_info(false)
        .enable_inlined_fns(false)
        .build()
}

impl Default for Symbols {
    fn default() -> Self {
        Symbols {
            symbolizer: symbolizer(),
            names: HashMap::new(),
            paths: HashMap::new(),
            parsed: 0,
        }
    }
}

/// Most names cached before the cache starts over.
const MAX_NAMES: usize = 1 << 20;
/// Most files blazesym keeps parsed (its cache has no bound of its own): beyond it the
/// symbolizer starts over.
const MAX_PARSED_FILES: usize = 256;

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
                let found = self.lookup(file, frame.offset);
                if self.names.len() >= MAX_NAMES {
                    self.names.clear();
                }
                self.names.insert(key, found.clone());
                found
            }
        };
        found.unwrap_or_else(|| format!("[{}+{:#x}]", short(&file.name), frame.offset).into())
    }

    /// Names cached, and paths given to blazesym.
    #[cfg(test)]
    pub fn cached(&self) -> (usize, usize) {
        (self.names.len(), self.paths.len())
    }

    fn lookup(&mut self, file: &FileEntry, offset: u64) -> Option<Arc<str>> {
        // The path this content was read from before, while it is there (another process of
        // the same library may have exited), else this file's: its map_files entry, or once
        // its process exited, its path.
        let path = match self.paths.get(&file.content) {
            Some(p) if p.exists() => p.clone(),
            _ if file.open.exists() => file.open.clone(),
            _ => PathBuf::from(&*file.name),
        };
        if self.paths.get(&file.content) != Some(&path) {
            self.parsed += 1;
            if self.parsed > MAX_PARSED_FILES {
                self.symbolizer = symbolizer();
                self.paths.clear();
                self.parsed = 1;
            }
            self.paths.insert(file.content, path.clone());
        }
        let src = Source::Elf(Elf::new(path));
        match self
            .symbolizer
            .symbolize_single(&src, Input::FileOffset(offset))
        {
            Ok(sym) => sym.as_sym().map(|sym| sym.name.to_string().into()),
            Err(err) => {
                log::debug!("symbolizing {}: {err}", file.open.display());
                None
            }
        }
    }
}

/// The last path component.
pub fn short(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}
