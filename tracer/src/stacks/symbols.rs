//! Names of frames, from the ELF symbol tables of the mapped files (blazesym), Rust and C++
//! names demangled, cached per (file, offset): a profile asks again for the same frames.

use std::collections::HashMap;

use blazesym::symbolize::{Input, Symbolizer, source::Elf, source::Source};

use super::{
    sites::{Frame, UNKNOWN_FILE},
    unwind::FileTable,
};

pub struct Symbols {
    symbolizer: Symbolizer,
    names: HashMap<Frame, std::sync::Arc<str>>,
}

impl Default for Symbols {
    fn default() -> Self {
        Symbols {
            symbolizer: Symbolizer::builder()
                .enable_demangling(true)
                .enable_code_info(false)
                .enable_inlined_fns(false)
                .build(),
            names: HashMap::new(),
        }
    }
}

/// Most names cached before the cache starts over.
const MAX_NAMES: usize = 1 << 20;

impl Symbols {
    /// The function name of `frame`; `[file+0xoffset]` when the file has no symbol there,
    /// `[0xaddress]` outside every known file.
    pub fn name(&mut self, files: &FileTable, frame: Frame) -> std::sync::Arc<str> {
        if let Some(name) = self.names.get(&frame) {
            return name.clone();
        }
        let name: std::sync::Arc<str> = match files.get(frame.file) {
            _ if frame.file == UNKNOWN_FILE => format!("[{:#x}]", frame.offset).into(),
            None => format!("[{:#x}]", frame.offset).into(),
            Some(file) => {
                // The process's map_files entry is gone once it exited: its path then.
                let path = if file.open.exists() {
                    file.open.clone()
                } else {
                    std::path::PathBuf::from(&*file.name)
                };
                let src = Source::Elf(Elf::new(path));
                match self
                    .symbolizer
                    .symbolize_single(&src, Input::FileOffset(frame.offset))
                {
                    Ok(sym) => match sym.as_sym() {
                        Some(sym) => sym.name.to_string().into(),
                        None => format!("[{}+{:#x}]", short(&file.name), frame.offset).into(),
                    },
                    Err(err) => {
                        log::debug!("symbolizing {}: {err}", file.open.display());
                        format!("[{}+{:#x}]", short(&file.name), frame.offset).into()
                    }
                }
            }
        };
        if self.names.len() >= MAX_NAMES {
            self.names.clear();
        }
        self.names.insert(frame, name.clone());
        name
    }
}

/// The last path component.
pub fn short(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}
