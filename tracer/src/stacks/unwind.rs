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

use super::buildid::{self, ContentKey};
use super::sites::{Frame, UNKNOWN_FILE};
use crate::model::{AddressSpace, vma::Backing};

/// Deepest stack kept.
pub const MAX_FRAMES: usize = 128;
/// Largest file read for its unwind tables.
const MAX_FILE_BYTES: u64 = 1 << 30;
/// Unwind tables kept for files no process unwinder uses any more: at most this many files
/// and this many bytes of sections, least recently used evicted first (a file needed again
/// is read again). Unwinders of live processes hold the tables of the files they map.
const MAX_CACHED_FILES: usize = 1024;
const MAX_CACHED_BYTES: usize = 512 << 20;

/// What unwinding needs from one ELF file, shared by every process that maps it.
struct UnwindData {
    eh_frame: Option<(Range<u64>, Arc<[u8]>)>,
    eh_frame_hdr: Option<(Range<u64>, Arc<[u8]>)>,
    text: Option<(Range<u64>, Arc<[u8]>)>,
    got: Option<Range<u64>>,
    /// PT_LOAD segments: (file offset, file size, virtual address).
    segments: Vec<(u64, u64, u64)>,
}

impl UnwindData {
    fn bytes(&self) -> usize {
        [&self.eh_frame, &self.eh_frame_hdr, &self.text]
            .iter()
            .filter_map(|s| s.as_ref().map(|(_, data)| data.len()))
            .sum::<usize>()
            + self.segments.len() * 24
    }
}

/// A file seen in a stack.
pub struct FileEntry {
    /// The name to show (as the process mapped it).
    pub name: Arc<str>,
    /// Where the daemon opens it.
    pub open: PathBuf,
    /// Its contents' id in the table (`FileTable::content`): files with the same build id
    /// share it, and with it their unwind tables and symbol names.
    pub content: u32,
}

/// Unwind tables read, per content id, and when last used.
struct Cached {
    data: Option<Arc<UnwindData>>,
    bytes: usize,
    used: u64,
}

/// Files seen in stacks, shared by every process (by device, inode and path), and their
/// contents (by build id, else by device and inode: buildid.rs).
pub struct FileTable {
    pub files: Vec<FileEntry>,
    by_key: HashMap<(u32, u32, u64, Arc<str>), u32>,
    contents: HashMap<ContentKey, u32>,
    cache: HashMap<u32, Cached>,
    cached_bytes: usize,
    clock: u64,
    /// Bounds of `cache`: files, bytes.
    limits: (usize, usize),
    /// Files whose unwind tables were read (not found in the cache).
    pub reads: u64,
}

impl Default for FileTable {
    fn default() -> Self {
        FileTable::with_limits(MAX_CACHED_FILES, MAX_CACHED_BYTES)
    }
}

impl FileTable {
    fn with_limits(files: usize, bytes: usize) -> FileTable {
        FileTable {
            files: Vec::new(),
            by_key: HashMap::new(),
            contents: HashMap::new(),
            cache: HashMap::new(),
            cached_bytes: 0,
            clock: 0,
            limits: (files.max(1), bytes),
            reads: 0,
        }
    }

    pub fn get(&self, id: u32) -> Option<&FileEntry> {
        self.files.get(id as usize)
    }

    /// The file of `key` (device major, minor, inode, path) opened at `open`.
    fn intern(&mut self, key: (u32, u32, u64, Arc<str>), open: PathBuf) -> u32 {
        if let Some(&id) = self.by_key.get(&key) {
            return id;
        }
        let by_inode = ContentKey::Inode(key.0, key.1, key.2);
        let content_key = match std::fs::File::open(&open) {
            Ok(file) => buildid::content_key(&file, (key.0, key.1), key.2),
            Err(_) => by_inode,
        };
        let next = self.contents.len() as u32;
        let content = *self.contents.entry(content_key).or_insert(next);
        let id = self.files.len() as u32;
        self.files.push(FileEntry {
            name: key.3.clone(),
            open,
            content,
        });
        self.by_key.insert(key, id);
        id
    }

    /// The unwind tables of file `id`, read once per content while cached.
    fn unwind(&mut self, id: u32) -> Option<Arc<UnwindData>> {
        let file = self.files.get(id as usize)?;
        let content = file.content;
        self.clock += 1;
        if let Some(c) = self.cache.get_mut(&content) {
            c.used = self.clock;
            return c.data.clone();
        }
        let data = load_unwind_data(&file.open).map(Arc::new);
        self.reads += 1;
        log::debug!(
            "file {} ({}): unwind tables {}",
            file.name,
            file.open.display(),
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
        self.evict(content);
        data
    }

    /// Drops the least recently used tables, but never `keep`, until within the limits.
    fn evict(&mut self, keep: u32) {
        while self.cache.len() > self.limits.0 || self.cached_bytes > self.limits.1 {
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
            let Some(data) = files.unwind(id) else {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    /// A copy of /bin/true (an ELF with a build id on every Linux distribution that ships
    /// one) at `name` in a scratch directory, with `edit` applied to its bytes and `mode`.
    fn copy(dir: &Path, name: &str, mode: u32, edit: impl Fn(&mut [u8])) -> PathBuf {
        let mut bytes = std::fs::read("/bin/true").expect("/bin/true");
        edit(&mut bytes);
        let path = dir.join(name);
        std::fs::write(&path, &bytes).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    fn scratch(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tracer-unwind-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Interns `path` as its own device and inode would, as `refresh` does.
    fn intern(files: &mut FileTable, path: &Path) -> u32 {
        use std::os::unix::fs::MetadataExt as _;
        let meta = std::fs::metadata(path).unwrap();
        let dev = meta.dev();
        let name: Arc<str> = path.to_string_lossy().into();
        files.intern(
            (libc::major(dev), libc::minor(dev), meta.ino(), name),
            path.to_owned(),
        )
    }

    fn other_build_id(bytes: &mut [u8]) {
        let file = std::fs::File::open("/bin/true").unwrap();
        let id = buildid::read(&file).expect("/bin/true has a build id");
        let at = bytes
            .windows(id.len())
            .position(|w| w == id.as_slice())
            .expect("the build id in the file");
        bytes[at] ^= 0xff;
    }

    #[test]
    fn copies_of_one_build_id_share_their_unwind_tables() {
        let dir = scratch("share");
        let a = copy(&dir, "a", 0o755, |_| {});
        let b = copy(&dir, "b", 0o755, |_| {});
        let mut files = FileTable::default();
        let (ia, ib) = (intern(&mut files, &a), intern(&mut files, &b));
        assert_ne!(ia, ib, "two files (paths, inodes)");
        assert_eq!(
            files.files[ia as usize].content,
            files.files[ib as usize].content
        );
        let (da, db) = (
            files.unwind(ia).expect("tables"),
            files.unwind(ib).expect("tables"),
        );
        assert!(Arc::ptr_eq(&da, &db), "read once");
        assert_eq!(files.reads, 1);
        // Symbolized once too: the same offset of either is one cached name, from one path.
        let mut symbols = super::super::symbols::Symbols::default();
        let offset = da.segments.iter().map(|s| s.0 + s.1 / 2).max().unwrap_or(0);
        for file in [ia, ib] {
            symbols.name(&files, Frame { file, offset });
        }
        assert_eq!(symbols.cached(), (1, 1));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn another_build_id_or_a_writable_file_is_read_apart() {
        let dir = scratch("apart");
        let a = copy(&dir, "a", 0o755, |_| {});
        let other = copy(&dir, "other", 0o755, other_build_id);
        // Same build id as `a`, but anyone may write it: it cannot stand for libraries.
        let writable = copy(&dir, "writable", 0o777, |_| {});
        let mut files = FileTable::default();
        let ids = [&a, &other, &writable].map(|p| intern(&mut files, p));
        let contents = ids.map(|i| files.files[i as usize].content);
        assert!(
            contents[0] != contents[1] && contents[0] != contents[2],
            "{contents:?}"
        );
        for id in ids {
            files.unwind(id).expect("tables");
        }
        assert_eq!(files.reads, 3);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_cache_is_bounded_and_evicts_the_least_recently_used() {
        let dir = scratch("evict");
        let paths = [0u8, 1, 2].map(|i| {
            copy(&dir, &format!("f{i}"), 0o755, |b| {
                other_build_id(b);
                // A distinct build id each: flip one more byte, a different one per file.
                let file = std::fs::File::open("/bin/true").unwrap();
                let id = buildid::read(&file).unwrap();
                let at = b.windows(id.len() - 1).position(|w| w == &id[1..]).unwrap();
                b[at + usize::from(i)] ^= 0x55;
            })
        });
        let mut files = FileTable::with_limits(2, usize::MAX);
        let ids = paths.each_ref().map(|p| intern(&mut files, p));
        files.unwind(ids[0]);
        files.unwind(ids[1]);
        files.unwind(ids[0]); // f1 is now the least recently used
        files.unwind(ids[2]); // evicts f1
        assert_eq!(files.reads, 3);
        assert_eq!(files.cache.len(), 2);
        files.unwind(ids[0]);
        assert_eq!(files.reads, 3, "f0 still cached");
        files.unwind(ids[1]);
        assert_eq!(files.reads, 4, "f1 read again");
        // By bytes: one file's tables over the limit keep only the newest.
        let mut files = FileTable::with_limits(10, 1);
        let ids = paths.each_ref().map(|p| intern(&mut files, p));
        for id in ids {
            files.unwind(id);
        }
        assert_eq!(files.cache.len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
