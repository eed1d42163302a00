//! Unwinding a copied user stack from `.eh_frame` (framehop), with the process's executable
//! file mappings taken from the model (so a process that exited meanwhile still unwinds, as
//! long as its files are there), and turning frames into (file, file offset) pairs that are
//! symbolized later.

use std::{
    collections::HashMap,
    ops::Range,
    path::{Path, PathBuf},
    sync::Arc,
};

use framehop::{
    ExplicitModuleSectionInfo, FrameAddress, Module, Unwinder,
    x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64},
};
use object::{Object as _, ObjectSection as _, ObjectSegment as _};

use super::sites::{Frame, UNKNOWN_FILE};
use crate::model::{AddressSpace, vma::Backing};

/// Deepest stack kept.
pub const MAX_FRAMES: usize = 128;
/// Largest file read for its unwind tables.
const MAX_FILE_BYTES: u64 = 1 << 30;

/// What unwinding needs from one ELF file, shared by every process that maps it.
struct UnwindData {
    eh_frame: Option<(Range<u64>, Arc<[u8]>)>,
    eh_frame_hdr: Option<(Range<u64>, Arc<[u8]>)>,
    text: Option<(Range<u64>, Arc<[u8]>)>,
    got: Option<Range<u64>>,
    /// PT_LOAD segments: (file offset, file size, virtual address).
    segments: Vec<(u64, u64, u64)>,
}

/// A file seen in a stack.
pub struct FileEntry {
    /// The name to show (as the process mapped it).
    pub name: Arc<str>,
    /// Where the daemon opens it.
    pub open: PathBuf,
    unwind: Option<Arc<UnwindData>>,
}

/// Files seen in stacks, shared by every process (by device and inode, or path).
#[derive(Default)]
pub struct FileTable {
    pub files: Vec<FileEntry>,
    by_key: HashMap<(u32, u32, u64, Arc<str>), u32>,
}

impl FileTable {
    pub fn get(&self, id: u32) -> Option<&FileEntry> {
        self.files.get(id as usize)
    }

    fn intern(&mut self, key: (u32, u32, u64, Arc<str>), open: PathBuf) -> u32 {
        if let Some(&id) = self.by_key.get(&key) {
            return id;
        }
        let unwind = load_unwind_data(&open).map(Arc::new);
        log::debug!(
            "file {} ({}): unwind tables {}",
            key.3,
            open.display(),
            if unwind.is_some() { "read" } else { "missing" }
        );
        let id = self.files.len() as u32;
        self.files.push(FileEntry {
            name: key.3.clone(),
            open,
            unwind,
        });
        self.by_key.insert(key, id);
        id
    }
}

fn section(file: &object::File<'_>, name: &str) -> Option<(Range<u64>, Arc<[u8]>)> {
    let s = file.section_by_name(name)?;
    let data = s.data().ok()?;
    Some((s.address()..s.address() + s.size(), Arc::from(data)))
}

fn load_unwind_data(path: &Path) -> Option<UnwindData> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.len() > MAX_FILE_BYTES {
        return None;
    }
    let bytes = std::fs::read(path).ok()?;
    let file = object::File::parse(&*bytes).ok()?;
    let segments = file
        .segments()
        .map(|s| {
            let (offset, size) = s.file_range();
            (offset, size, s.address())
        })
        .collect();
    Some(UnwindData {
        eh_frame: section(&file, ".eh_frame"),
        eh_frame_hdr: section(&file, ".eh_frame_hdr"),
        text: section(&file, ".text"),
        got: file
            .section_by_name(".got")
            .map(|s| s.address()..s.address() + s.size()),
        segments,
    })
}

/// An executable file mapping of a process.
#[derive(Clone, Debug)]
struct Mapped {
    start: u64,
    end: u64,
    file: u32,
    offset: u64,
}

/// The unwinder of one process, rebuilt when its executable mappings change.
pub struct ProcessUnwinder {
    signature: u64,
    unwinder: UnwinderX86_64<Arc<[u8]>>,
    cache: CacheX86_64,
    mapped: Vec<Mapped>,
}

/// A fingerprint of the executable file mappings of `space`.
fn signature(space: &AddressSpace) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for v in space.vmas() {
        if v.perms.exec
            && let Backing::File(file) = &v.backing
        {
            // A name resolved since counts as a change: the file can be read now.
            let named = file.path.as_ref().map_or(0, |p| p.len() as u64 + 1);
            for x in [v.start, v.end, v.offset, named] {
                h = (h ^ x).wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    h
}

impl ProcessUnwinder {
    /// The unwinder for `space`, reusing `old` when the executable mappings are the same.
    pub fn refresh(
        old: Option<ProcessUnwinder>,
        tgid: u32,
        space: &AddressSpace,
        files: &mut FileTable,
    ) -> ProcessUnwinder {
        let sig = signature(space);
        if let Some(old) = old
            && old.signature == sig
        {
            return old;
        }
        let mut unwinder = UnwinderX86_64::new();
        let mut mapped = Vec::new();
        for v in space.vmas() {
            let Backing::File(file) = &v.backing else {
                continue;
            };
            if !v.perms.exec {
                continue;
            }
            // map_files reaches deleted files and files of another mount namespace while the
            // process lives, and names files the model has not resolved yet (mapped by fd);
            // the path is the fallback once it has exited.
            let by_fd = PathBuf::from(format!("/proc/{tgid}/map_files/{:x}-{:x}", v.start, v.end));
            let path: Arc<str> = match (&file.path, std::fs::read_link(&by_fd)) {
                (Some(path), _) => path.clone(),
                (None, Ok(target)) => target.to_string_lossy().into(),
                (None, Err(_)) => continue,
            };
            let open = if by_fd.exists() {
                by_fd
            } else {
                PathBuf::from(&*path)
            };
            let id = files.intern((file.dev.0, file.dev.1, file.inode, path.clone()), open);
            mapped.push(Mapped {
                start: v.start,
                end: v.end,
                file: id,
                offset: v.offset,
            });
            let Some(data) = files.files[id as usize].unwind.clone() else {
                continue;
            };
            // The load bias: where the segment holding this mapping's file offset landed.
            let Some(&(seg_off, _, seg_vaddr)) = data
                .segments
                .iter()
                .find(|(off, size, _)| *off <= v.offset && v.offset < off + size)
            else {
                continue;
            };
            let svma_start = seg_vaddr + (v.offset - seg_off);
            let bias = v.start.wrapping_sub(svma_start);
            let info = ExplicitModuleSectionInfo {
                base_svma: 0,
                text_svma: data.text.as_ref().map(|t| t.0.clone()),
                text: data.text.as_ref().map(|t| t.1.clone()),
                got_svma: data.got.clone(),
                eh_frame_svma: data.eh_frame.as_ref().map(|t| t.0.clone()),
                eh_frame: data.eh_frame.as_ref().map(|t| t.1.clone()),
                eh_frame_hdr_svma: data.eh_frame_hdr.as_ref().map(|t| t.0.clone()),
                eh_frame_hdr: data.eh_frame_hdr.as_ref().map(|t| t.1.clone()),
                ..Default::default()
            };
            unwinder.add_module(Module::new(path.to_string(), v.start..v.end, bias, info));
        }
        ProcessUnwinder {
            signature: sig,
            unwinder,
            cache: CacheX86_64::new(),
            mapped,
        }
    }

    /// The frame of an address (for a return address, the call instruction before it).
    fn frame(&self, lookup: u64) -> Frame {
        let i = self.mapped.partition_point(|m| m.end <= lookup);
        match self.mapped.get(i) {
            Some(m) if m.start <= lookup => Frame {
                file: m.file,
                offset: lookup - m.start + m.offset,
            },
            _ => Frame {
                file: UNKNOWN_FILE,
                offset: lookup,
            },
        }
    }

    /// Unwinds `stack` (copied from `sp` up) starting at `ip`; leaf first.
    pub fn unwind(&mut self, ip: u64, sp: u64, bp: u64, stack: &[u8], out: &mut Vec<Frame>) {
        out.clear();
        let mut read_stack = |addr: u64| -> Result<u64, ()> {
            let off = addr.checked_sub(sp).ok_or(())? as usize;
            let bytes = stack.get(off..off.checked_add(8).ok_or(())?).ok_or(())?;
            Ok(u64::from_le_bytes(bytes.try_into().map_err(|_| ())?))
        };
        let regs = UnwindRegsX86_64::new(ip, sp, bp);
        let mut lookups = [0u64; MAX_FRAMES];
        let mut n = 0;
        let mut frames = self
            .unwinder
            .iter_frames(ip, regs, &mut self.cache, &mut read_stack);
        while n < MAX_FRAMES {
            match frames.next() {
                Ok(Some(address)) => {
                    lookups[n] = match address {
                        FrameAddress::InstructionPointer(a) => a,
                        FrameAddress::ReturnAddress(a) => a.get() - 1,
                    };
                    n += 1;
                }
                Ok(None) => break,
                Err(err) => {
                    log::debug!(
                        "unwinding stopped after {n} frames (ip {ip:#x}, {} stack bytes, {} \
                         modules): {err}",
                        stack.len(),
                        self.mapped.len()
                    );
                    break;
                }
            }
        }
        log::trace!("{n} frames from ip {ip:#x} ({} stack bytes)", stack.len());
        for &lookup in &lookups[..n] {
            out.push(self.frame(lookup));
        }
        if out.is_empty() {
            out.push(self.frame(ip));
        }
    }
}
