//! Opening the files traced processes map, and reading their unwind tables, without trusting
//! the processes: a traced process may belong to another user, who controls its paths (a
//! symlink to a secret, a FIFO, `/dev/zero`) and its files' contents (hostile ELF headers).
//!
//! A file is only ever opened through `/proc/PID/map_files/START-END` while the process maps
//! it (the kernel's own reference to the mapped file, never a path lookup), and the descriptor
//! is kept only if it is a regular file with the device and inode of the mapping: a path the
//! process named is never opened. Everything read afterwards (build id, unwind tables,
//! symbols) is read from that one descriptor, in bounded amounts.

use std::{
    fs::File,
    ops::{Deref, Range},
    os::unix::fs::{FileExt as _, MetadataExt as _, OpenOptionsExt as _},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use object::{Object as _, ObjectSection as _, ObjectSegment as _};

/// Largest `.eh_frame` read (the biggest binaries known have a few tens of MiB).
pub const MAX_EH_FRAME: u64 = 64 << 20;
/// Largest `.eh_frame_hdr` read.
pub const MAX_EH_FRAME_HDR: u64 = 16 << 20;
/// Largest `.text` read: it only helps unwinding a leaf in a prologue or epilogue, so a
/// bigger one is left out (the module still unwinds from `.eh_frame`).
pub const MAX_TEXT: u64 = 16 << 20;
/// Most bytes of headers (ELF, section and program headers, section names) read per file.
const MAX_HEADER_BYTES: u64 = 4 << 20;

/// Opens the file that process `tgid` maps at `range`, through its `map_files` entry, and
/// returns it only if it is a regular file with device `dev` (major, minor) and inode `inode`
/// (what the model recorded for the mapping: a process that replaced the mapping meanwhile
/// gets nothing).
pub fn open_mapped(tgid: u32, range: Range<u64>, dev: (u32, u32), inode: u64) -> Option<File> {
    let path = format!("/proc/{tgid}/map_files/{:x}-{:x}", range.start, range.end);
    // O_NONBLOCK: never wait on a FIFO (map_files only leads to mapped files, which cannot be
    // FIFOs, but the check below comes after the open).
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
        .ok()?;
    is_mapped_file(&file, dev, inode).then_some(file)
}

/// Opens the file process `tgid` maps from device `dev` and inode `inode` by the path it
/// mapped, for a daemon without the capability `map_files` needs (`CAP_SYS_ADMIN` or
/// `CAP_CHECKPOINT_RESTORE`: the shipped systemd unit and DaemonSet lack both).
///
/// The path is the process's owner's to change, so: it is looked up from the process's root
/// without following any symlink (`openat2`, `RESOLVE_NO_SYMLINKS`, `RESOLVE_IN_ROOT`), as an
/// `O_PATH` descriptor that opens nothing (no FIFO, no device); only a regular file with that
/// device and inode is then opened for reading (through the `O_PATH` descriptor); and only if
/// the process still maps that inode afterwards: the mapping pins the inode, so its number
/// cannot have been given to another file (a secret created after the process unmapped and
/// deleted its own). A process that exited gets nothing.
pub fn open_by_path(tgid: u32, path: &str, dev: (u32, u32), inode: u64) -> Option<File> {
    use std::os::fd::{AsRawFd as _, FromRawFd as _};
    let rel = path.strip_prefix('/')?;
    if rel.is_empty() || rel.contains('\0') {
        return None;
    }
    let root = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(format!("/proc/{tgid}/root"))
        .ok()?;
    let c_rel = std::ffi::CString::new(rel).ok()?;
    // SAFETY: open_how is plain data; zeroed is its documented default.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS | libc::RESOLVE_IN_ROOT;
    // SAFETY: valid descriptor, C string and open_how of the size given.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            c_rel.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: a new descriptor nothing else owns.
    let located = unsafe { File::from_raw_fd(fd as i32) };
    if !is_mapped_file(&located, dev, inode) {
        return None;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(format!("/proc/self/fd/{}", located.as_raw_fd()))
        .ok()?;
    (is_mapped_file(&file, dev, inode) && maps_inode(tgid, dev, inode)).then_some(file)
}

/// Whether process `tgid` maps device `dev`, inode `inode` now (its `/proc/PID/maps`).
fn maps_inode(tgid: u32, dev: (u32, u32), inode: u64) -> bool {
    use std::io::BufRead as _;
    let Ok(maps) = File::open(format!("/proc/{tgid}/maps")) else {
        return false;
    };
    let want_dev = format!("{:02x}:{:02x}", dev.0, dev.1);
    let want_inode = inode.to_string();
    std::io::BufReader::new(maps).split(b'\n').any(|line| {
        let Ok(line) = line else { return false };
        // start-end perms offset dev inode path
        let mut fields = line.split(|&b| b == b' ').filter(|f| !f.is_empty()).skip(3);
        fields.next() == Some(want_dev.as_bytes()) && fields.next() == Some(want_inode.as_bytes())
    })
}

/// Whether `file` is a regular file with device `dev` and inode `inode`.
pub fn is_mapped_file(file: &File, dev: (u32, u32), inode: u64) -> bool {
    let Ok(meta) = file.metadata() else {
        return false;
    };
    let d = meta.dev();
    meta.file_type().is_file()
        && (libc::major(d), libc::minor(d), meta.ino()) == (dev.0, dev.1, inode)
}

/// Bytes of unwind tables alive (cached, or held by process unwinders), shared with every
/// `Section` so that dropping the last user gives its bytes back.
#[derive(Clone, Default)]
pub struct Budget(Arc<AtomicUsize>);

impl Budget {
    pub fn used(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// A section's bytes, counted in the budget while alive.
#[derive(Clone)]
pub struct Section(Arc<Counted>);

struct Counted {
    bytes: Box<[u8]>,
    budget: Budget,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.budget.0.fetch_sub(self.bytes.len(), Ordering::Relaxed);
    }
}

impl Default for Section {
    fn default() -> Self {
        Section(Arc::new(Counted {
            bytes: Box::default(),
            budget: Budget::default(),
        }))
    }
}

impl Deref for Section {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0.bytes
    }
}

/// What unwinding needs from one ELF file, shared by every process that maps it.
pub struct UnwindData {
    pub eh_frame: Option<(Range<u64>, Section)>,
    pub eh_frame_hdr: Option<(Range<u64>, Section)>,
    pub text: Option<(Range<u64>, Section)>,
    pub got: Option<Range<u64>>,
    /// PT_LOAD segments: (file offset, file size, virtual address).
    pub segments: Vec<(u64, u64, u64)>,
}

impl UnwindData {
    pub fn bytes(&self) -> usize {
        [&self.eh_frame, &self.eh_frame_hdr, &self.text]
            .iter()
            .filter_map(|s| s.as_ref().map(|(_, data)| data.len()))
            .sum::<usize>()
            + self.segments.len() * 24
    }
}

/// Reads of the ELF headers through `object`'s cache, at most `left` bytes in all: a hostile
/// header cannot make the daemon read (or allocate) the whole file.
pub struct HeaderReads<'a> {
    file: &'a File,
    len: u64,
    pos: u64,
    left: u64,
}

impl<'a> HeaderReads<'a> {
    /// Reads of `file`, at most `budget` bytes; None when its length cannot be had.
    pub fn new(file: &'a File, budget: u64) -> Option<HeaderReads<'a>> {
        Some(HeaderReads {
            file,
            len: file.metadata().ok()?.len(),
            pos: 0,
            left: budget,
        })
    }
}

impl object::read::ReadCacheOps for HeaderReads<'_> {
    fn len(&mut self) -> Result<u64, ()> {
        Ok(self.len)
    }
    fn seek(&mut self, pos: u64) -> Result<u64, ()> {
        self.pos = pos;
        Ok(pos)
    }
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ()> {
        let want = (buf.len() as u64).min(self.left) as usize;
        if want == 0 && !buf.is_empty() {
            return Err(());
        }
        let n = self
            .file
            .read_at(&mut buf[..want], self.pos)
            .map_err(|_| ())?;
        self.pos += n as u64;
        self.left -= n as u64;
        Ok(n)
    }
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), ()> {
        if buf.len() as u64 > self.left {
            return Err(());
        }
        self.file.read_exact_at(buf, self.pos).map_err(|_| ())?;
        self.pos += buf.len() as u64;
        self.left -= buf.len() as u64;
        Ok(())
    }
}

/// The unwind tables of the ELF file open at `file`, each section read from its own byte
/// range (at most its cap, checked before anything is allocated) and counted in `budget`;
/// None when the file is not an ELF file, or claims impossible ranges.
pub fn load_unwind_data(file: &File, budget: &Budget) -> Option<UnwindData> {
    let reads = HeaderReads::new(file, MAX_HEADER_BYTES)?;
    let len = reads.len;
    let cache = object::read::ReadCache::new(reads);
    let elf = object::File::parse(&cache).ok()?;
    let section = |name: &str, cap: u64| -> Option<(Range<u64>, Section)> {
        let s = elf.section_by_name(name)?;
        let svma = s.address()..s.address().checked_add(s.size())?;
        let (offset, size) = s.file_range()?;
        if size > cap || offset.checked_add(size)? > len {
            log::debug!("section {name}: {size} bytes at {offset:#x}, not read (cap {cap})");
            return None;
        }
        let mut bytes = vec![0u8; usize::try_from(size).ok()?].into_boxed_slice();
        file.read_exact_at(&mut bytes, offset).ok()?;
        budget.0.fetch_add(bytes.len(), Ordering::Relaxed);
        let counted = Counted {
            bytes,
            budget: budget.clone(),
        };
        Some((svma, Section(Arc::new(counted))))
    };
    let segments = elf
        .segments()
        .map(|s| {
            let (offset, size) = s.file_range();
            (offset, size, s.address())
        })
        .collect();
    let got = match elf.section_by_name(".got") {
        Some(s) => Some(s.address()..s.address().checked_add(s.size())?),
        None => None,
    };
    Some(UnwindData {
        eh_frame: section(".eh_frame", MAX_EH_FRAME),
        eh_frame_hdr: section(".eh_frame_hdr", MAX_EH_FRAME_HDR),
        text: section(".text", MAX_TEXT),
        got,
        segments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ELF64 file with one section `.eh_frame` of `size` bytes at file offset `offset`
    /// and address `addr` (the file is sparse: its length is `len`).
    fn elf_with_eh_frame(name: &str, addr: u64, offset: u64, size: u64, len: u64) -> File {
        let names = b"\0.shstrtab\0.eh_frame\0";
        let shoff = 64 + names.len() as u64;
        let mut b = vec![0u8; shoff as usize + 3 * 64];
        b[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
        b[0x10..0x12].copy_from_slice(&3u16.to_le_bytes()); // ET_DYN
        b[0x12..0x14].copy_from_slice(&62u16.to_le_bytes()); // x86-64
        b[0x14..0x18].copy_from_slice(&1u32.to_le_bytes());
        b[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
        b[0x34..0x36].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
        b[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes()); // e_shentsize
        b[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes()); // e_shnum
        b[0x3e..0x40].copy_from_slice(&1u16.to_le_bytes()); // e_shstrndx
        b[64..64 + names.len()].copy_from_slice(names);
        let mut section = |i: usize, name: u32, kind: u32, addr: u64, off: u64, size: u64| {
            let h = &mut b[shoff as usize + i * 64..][..64];
            h[..4].copy_from_slice(&name.to_le_bytes());
            h[4..8].copy_from_slice(&kind.to_le_bytes());
            h[0x10..0x18].copy_from_slice(&addr.to_le_bytes());
            h[0x18..0x20].copy_from_slice(&off.to_le_bytes());
            h[0x20..0x28].copy_from_slice(&size.to_le_bytes());
        };
        section(1, 1, 3, 0, 64, names.len() as u64); // .shstrtab, SHT_STRTAB
        section(2, 11, 1, addr, offset, size); // .eh_frame, SHT_PROGBITS
        let path =
            std::env::temp_dir().join(format!("tracer-elffile-{}-{name}", std::process::id()));
        std::fs::write(&path, &b).unwrap();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        f.set_len(len.max(b.len() as u64)).unwrap();
        let _ = std::fs::remove_file(&path);
        f
    }

    #[test]
    fn a_section_over_its_cap_is_not_read() {
        // An 80 MiB .eh_frame (a sparse file of 100 MiB): left out, nothing allocated.
        let f = elf_with_eh_frame("big", 0x1000, 4096, 80 << 20, 100 << 20);
        let budget = Budget::default();
        let data = load_unwind_data(&f, &budget).expect("an ELF file");
        assert!(data.eh_frame.is_none(), "an 80 MiB .eh_frame was read");
        assert_eq!(budget.used(), 0);
        // Within the cap it is read, and counted while alive.
        let f = elf_with_eh_frame("small", 0x1000, 4096, 8192, 16384);
        let data = load_unwind_data(&f, &budget).expect("an ELF file");
        assert_eq!(data.eh_frame.as_ref().map(|s| s.1.len()), Some(8192));
        assert_eq!(budget.used(), 8192);
        drop(data);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn hostile_addresses_do_not_overflow() {
        for (addr, offset, size) in [
            (u64::MAX - 10, 4096, 100),
            (0x1000, u64::MAX - 10, 100),
            (0x1000, 4096, u64::MAX),
        ] {
            let f = elf_with_eh_frame("overflow", addr, offset, size, 16384);
            if let Some(data) = load_unwind_data(&f, &Budget::default()) {
                assert!(data.eh_frame.is_none(), "{addr:#x} {offset:#x} {size:#x}");
            }
        }
    }
}
