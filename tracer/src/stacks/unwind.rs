//! Unwinding a copied user stack from `.eh_frame` (framehop), with the process's executable
//! file mappings taken from the model (so a process that exited meanwhile still unwinds, as
//! long as its files are there), and turning frames into (file, file offset) pairs that are
//! symbolized later.

use std::{
    collections::{HashMap, HashSet},
    fs::File,
    sync::Arc,
};

use framehop::{ExplicitModuleSectionInfo, FrameAddress, Module, Unwinder};

use super::buildid::{self, ContentKey};
use super::elffile::{self, Budget, Section, UnwindData};
use super::sites::{Frame, UNKNOWN_FILE};
use crate::model::{AddressSpace, vma::Backing};

/// framehop's unwinder for the architecture the daemon runs on, whose user registers the
/// samples carry. (Other architectures get x86-64's so that the daemon builds; `--stacks` is
/// refused there before anything starts, commands/ci.rs.)
#[cfg(not(target_arch = "aarch64"))]
mod arch {
    use framehop::x86_64::UnwindRegsX86_64;
    pub use framehop::x86_64::{CacheX86_64 as Cache, UnwinderX86_64 as ArchUnwinder};

    /// framehop's registers from a sample's (ip, sp, bp, lr); x86-64 has no link register.
    pub fn regs([ip, sp, bp, _lr]: [u64; 4], _highest_code: u64) -> UnwindRegsX86_64 {
        UnwindRegsX86_64::new(ip, sp, bp)
    }
}

#[cfg(target_arch = "aarch64")]
mod arch {
    pub use framehop::aarch64::{CacheAarch64 as Cache, UnwinderAarch64 as ArchUnwinder};
    use framehop::aarch64::{PtrAuthMask, UnwindRegsAarch64};

    /// framehop's registers from a sample's (pc, sp, fp = x29, lr = x30): a leaf function's
    /// return address is only in lr. Return addresses signed by pointer authentication
    /// (`-mbranch-protection`, on cores that have it) carry the signature in the bits above
    /// the highest code address of the process: those bits are stripped.
    pub fn regs([_pc, sp, fp, lr]: [u64; 4], highest_code: u64) -> UnwindRegsAarch64 {
        let mask = match highest_code {
            0 => PtrAuthMask::new_no_strip(),
            high => PtrAuthMask::from_max_known_address(high),
        };
        UnwindRegsAarch64::new_with_ptr_auth_mask(mask, lr, sp, fp)
    }
}

/// Deepest stack kept.
pub const MAX_FRAMES: usize = 128;
/// Unwind tables kept for files no process unwinder uses any more: at most this many files
/// and this many bytes of sections, least recently used evicted first (a file needed again
/// is read again). Unwinders of live processes hold the tables of the files they map.
const MAX_CACHED_FILES: usize = 1024;
const MAX_CACHED_BYTES: usize = 512 << 20;
/// All unwind tables alive, cached or held by live unwinders: beyond it a module gets no
/// unwind tables (counted in `over_budget`, said once).
const MAX_LIVE_BYTES: usize = 1 << 30;
/// Files (device, inode, path) known before those no unwinder or stack uses are forgotten.
const MAX_FILES: usize = 16384;
/// The most one file's tables take (elffile.rs caps).
const MAX_FILE_TABLES: usize =
    (elffile::MAX_EH_FRAME + elffile::MAX_EH_FRAME_HDR + elffile::MAX_TEXT) as usize;
/// Descriptors held open (one per contents, for its unwind tables and names), least recently
/// used closed first: the names of a closed contents whose processes all exited are lost.
const MAX_HELD_FILES: usize = 4096;

/// A file seen in a stack.
pub struct FileEntry {
    /// The name to show (as the process mapped it).
    pub name: Arc<str>,
    /// Its contents' id in the table (`FileTable::content`): files with the same build id
    /// share it, and with it their unwind tables and symbol names.
    pub content: u32,
}

/// The file of `key` mapped by `tgid` at `range`: through `map_files`, else (without the
/// capability it needs) by the mapped path, looked up safely (elffile.rs).
fn open(tgid: u32, range: std::ops::Range<u64>, key: &(u32, u32, u64, Arc<str>)) -> Option<File> {
    elffile::open_mapped(tgid, range, (key.0, key.1), key.2)
        .or_else(|| elffile::open_by_path(tgid, &key.3, (key.0, key.1), key.2))
}

/// Unwind tables read, per content id, and when last used.
struct Cached {
    data: Option<Arc<UnwindData>>,
    bytes: usize,
    used: u64,
}

/// The descriptor a contents is read through, and when last used.
struct Held {
    file: Arc<File>,
    used: u64,
}

/// Files seen in stacks, shared by every process (by device, inode and path), and their
/// contents (by build id, else by device and inode: buildid.rs).
pub struct FileTable {
    /// By id (never reused: the frames of sites keep ids).
    files: HashMap<u32, FileEntry>,
    next_file: u32,
    next_content: u32,
    by_key: HashMap<(u32, u32, u64, Arc<str>), u32>,
    contents: HashMap<ContentKey, u32>,
    /// Per content id, the descriptor opened through `/proc/PID/map_files` and checked to be
    /// the mapped file (elffile.rs): every later read of the contents goes through it, never
    /// through a path (which the process, or a process that reused its pid, could change).
    held: HashMap<u32, Held>,
    cache: HashMap<u32, Cached>,
    cached_bytes: usize,
    budget: Budget,
    clock: u64,
    /// Bounds of `cache`: files, bytes; of all tables alive; of `held`; of `files` (swept
    /// beyond it).
    limits: (usize, usize, usize, usize, usize),
    /// Files whose unwind tables were read (not found in the cache).
    pub reads: u64,
    /// Modules left without unwind tables because all tables alive reached their bound.
    pub over_budget: u64,
}

impl Default for FileTable {
    fn default() -> Self {
        FileTable::with_limits(MAX_CACHED_FILES, MAX_CACHED_BYTES)
    }
}

impl FileTable {
    fn with_limits(files: usize, bytes: usize) -> FileTable {
        FileTable {
            files: HashMap::new(),
            next_file: 0,
            next_content: 0,
            by_key: HashMap::new(),
            contents: HashMap::new(),
            held: HashMap::new(),
            cache: HashMap::new(),
            cached_bytes: 0,
            budget: Budget::default(),
            clock: 0,
            limits: (
                files.max(1),
                bytes,
                MAX_LIVE_BYTES,
                MAX_HELD_FILES,
                MAX_FILES,
            ),
            reads: 0,
            over_budget: 0,
        }
    }

    pub fn get(&self, id: u32) -> Option<&FileEntry> {
        self.files.get(&id)
    }

    /// Files known.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether there are more files than kept for good: `sweep` them.
    pub fn over_bound(&self) -> bool {
        self.files.len() > self.limits.4
    }

    /// Closes the descriptors of the contents no file in `used` has (a descriptor keeps a
    /// deleted file's space on disk), and returns the contents still used.
    pub fn release(&mut self, used: &HashSet<u32>) -> HashSet<u32> {
        let live: HashSet<u32> = used
            .iter()
            .filter_map(|id| self.files.get(id))
            .map(|f| f.content)
            .collect();
        self.held.retain(|c, _| live.contains(c));
        live
    }

    /// Forgets the files whose ids are not in `used` (ids of the unwinders and stacks still
    /// kept), with their contents' descriptors and tables when no file left has them.
    pub fn sweep(&mut self, used: &HashSet<u32>) {
        self.files.retain(|id, _| used.contains(id));
        let files = &self.files;
        self.by_key.retain(|_, id| files.contains_key(id));
        let live: HashSet<u32> = files.values().map(|f| f.content).collect();
        self.contents.retain(|_, c| live.contains(c));
        self.held.retain(|c, _| live.contains(c));
        let mut freed = 0;
        self.cache.retain(|c, cached| {
            let keep = live.contains(c);
            if !keep {
                freed += cached.bytes;
            }
            keep
        });
        self.cached_bytes -= freed;
    }

    /// The descriptor of a contents, while held.
    pub fn descriptor(&self, content: u32) -> Option<Arc<File>> {
        self.held.get(&content).map(|h| h.file.clone())
    }

    /// The file of `key` (device major, minor, inode, path), mapped by process `tgid` at
    /// `range`: opened through its `map_files` entry when its contents has no descriptor.
    fn intern(
        &mut self,
        key: (u32, u32, u64, Arc<str>),
        tgid: u32,
        range: std::ops::Range<u64>,
    ) -> u32 {
        self.clock += 1;
        if let Some(&id) = self.by_key.get(&key) {
            let content = self.files[&id].content;
            match self.held.get_mut(&content) {
                Some(h) => h.used = self.clock,
                None => {
                    if let Some(file) = open(tgid, range, &key) {
                        self.hold(content, file);
                    }
                }
            }
            return id;
        }
        let opened = open(tgid, range, &key);
        let by_inode = ContentKey::Inode(key.0, key.1, key.2);
        let content_key = match &opened {
            Some(file) => buildid::content_key(file, (key.0, key.1), key.2),
            None => by_inode,
        };
        let next = self.next_content;
        let content = *self.contents.entry(content_key).or_insert(next);
        if content == next {
            self.next_content = self.next_content.saturating_add(1);
        }
        if let Some(file) = opened
            && !self.held.contains_key(&content)
        {
            self.hold(content, file);
        }
        // Ids are never reused (4 billion files: beyond, frames are left unknown).
        let id = self.next_file;
        if id == UNKNOWN_FILE {
            return UNKNOWN_FILE;
        }
        self.next_file += 1;
        self.files.insert(
            id,
            FileEntry {
                name: key.3.clone(),
                content,
            },
        );
        self.by_key.insert(key, id);
        id
    }

    fn hold(&mut self, content: u32, file: File) {
        while self.held.len() >= self.limits.3 {
            let Some((&oldest, _)) = self.held.iter().min_by_key(|(_, h)| h.used) else {
                break;
            };
            self.held.remove(&oldest);
        }
        let used = self.clock;
        self.held.insert(
            content,
            Held {
                file: Arc::new(file),
                used,
            },
        );
    }

    /// The unwind tables of file `id`, read once per content while cached.
    fn unwind(&mut self, id: u32) -> Option<Arc<UnwindData>> {
        let file = self.files.get(&id)?;
        let (content, name) = (file.content, file.name.clone());
        self.clock += 1;
        if let Some(c) = self.cache.get_mut(&content) {
            c.used = self.clock;
            return c.data.clone();
        }
        let held = self.held.get(&content)?.file.clone();
        // Room for one more file's largest tables: drop unused cached ones first.
        let room = self.limits.2.saturating_sub(MAX_FILE_TABLES);
        self.evict(content, room);
        if self.budget.used() > room {
            self.over_budget += 1;
            if self.over_budget == 1 {
                log::warn!(
                    "unwind tables: {} MiB in use, the bound: {name} and later files get none",
                    self.budget.used() >> 20
                );
            }
            return None;
        }
        let data = elffile::load_unwind_data(&held, &self.budget).map(Arc::new);
        self.reads += 1;
        log::debug!(
            "file {name}: unwind tables {}",
            if data.is_some() { "read" } else { "missing" }
        );
        let bytes = data.as_ref().map_or(0, |d| d.bytes());
        self.cached_bytes += bytes;
        self.cache.insert(
            content,
            Cached {
                data: data.clone(),
                bytes,
                used: self.clock,
            },
        );
        self.evict(content, usize::MAX);
        data
    }

    /// Drops the least recently used tables, but never `keep`, until within the limits of
    /// the cache and until all tables alive are at most `live`.
    fn evict(&mut self, keep: u32, live: usize) {
        while self.cache.len() > self.limits.0
            || self.cached_bytes > self.limits.1
            || self.budget.used() > live
        {
            let Some((&oldest, _)) = self
                .cache
                .iter()
                .filter(|(k, _)| **k != keep)
                .min_by_key(|(_, c)| c.used)
            else {
                return;
            };
            if let Some(c) = self.cache.remove(&oldest) {
                self.cached_bytes -= c.bytes;
            }
        }
    }
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
    unwinder: arch::ArchUnwinder<Section>,
    cache: arch::Cache,
    mapped: Vec<Mapped>,
    /// The highest address of its mapped code (0: none): above it, return addresses carry
    /// pointer-authentication bits (arm64, `arch::regs`).
    highest_code: u64,
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
        let mut unwinder = arch::ArchUnwinder::new();
        let mut mapped = Vec::new();
        for v in space.vmas() {
            let Backing::File(file) = &v.backing else {
                continue;
            };
            if !v.perms.exec {
                continue;
            }
            // The file is opened through map_files only (deleted files and files of another
            // mount namespace included), and only while the process maps it there: never by
            // the path, which the process's owner controls (elffile.rs). The name is the
            // model's, else the link's (mapped by fd, not resolved yet).
            let name: Arc<str> = match &file.path {
                Some(path) => path.clone(),
                None => {
                    let link = format!("/proc/{tgid}/map_files/{:x}-{:x}", v.start, v.end);
                    match std::fs::read_link(link) {
                        Ok(target) => target.to_string_lossy().into(),
                        Err(_) => continue,
                    }
                }
            };
            let id = files.intern(
                (file.dev.0, file.dev.1, file.inode, name.clone()),
                tgid,
                v.start..v.end,
            );
            mapped.push(Mapped {
                start: v.start,
                end: v.end,
                file: id,
                offset: v.offset,
            });
            let Some(data) = files.unwind(id) else {
                continue;
            };
            // The load bias: where the segment holding this mapping's file offset landed.
            let Some(&(seg_off, _, seg_vaddr)) = data.segments.iter().find(|(off, size, _)| {
                *off <= v.offset && off.checked_add(*size).is_some_and(|end| v.offset < end)
            }) else {
                continue;
            };
            // Hostile headers may make this overflow: no unwinding through such a module.
            let Some(svma_start) = seg_vaddr.checked_add(v.offset - seg_off) else {
                continue;
            };
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
            unwinder.add_module(Module::new(name.to_string(), v.start..v.end, bias, info));
        }
        ProcessUnwinder {
            signature: sig,
            unwinder,
            cache: arch::Cache::new(),
            highest_code: mapped.iter().map(|m| m.end).max().unwrap_or(0),
            mapped,
        }
    }

    /// The ids of the files it maps.
    pub fn file_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.mapped.iter().map(|m| m.file)
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

    /// Unwinds `stack` (copied from `sp` up) from the sample's registers (ip, sp, bp, lr),
    /// starting at `ip`; leaf first.
    pub fn unwind(&mut self, sample_regs: [u64; 4], stack: &[u8], out: &mut Vec<Frame>) {
        out.clear();
        let [ip, sp, _, _] = sample_regs;
        let mut read_stack = |addr: u64| -> Result<u64, ()> {
            let off = addr.checked_sub(sp).ok_or(())? as usize;
            let bytes = stack.get(off..off.checked_add(8).ok_or(())?).ok_or(())?;
            Ok(u64::from_le_bytes(bytes.try_into().map_err(|_| ())?))
        };
        let regs = arch::regs(sample_regs, self.highest_code);
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

#[cfg(test)]
#[path = "unwind_tests.rs"]
mod tests;
