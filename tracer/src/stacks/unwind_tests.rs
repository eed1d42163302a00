use super::*;
use crate::model::vma::{FileRef, Perms, Vma};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// A copy of `from` (an ELF with a build id on every Linux distribution that ships one) at
/// `name` in a scratch directory, with `edit` applied to its bytes and `mode`.
fn copy_of(from: &str, dir: &Path, name: &str, mode: u32, edit: impl Fn(&mut [u8])) -> PathBuf {
    let mut bytes = std::fs::read(from).expect(from);
    edit(&mut bytes);
    let path = dir.join(name);
    std::fs::write(&path, &bytes).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

fn copy(dir: &Path, name: &str, mode: u32, edit: impl Fn(&mut [u8])) -> PathBuf {
    copy_of("/bin/true", dir, name, mode, edit)
}

fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tracer-unwind-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn dev_ino(path: &Path) -> ((u32, u32), u64) {
    let meta = std::fs::metadata(path).unwrap();
    let dev = meta.dev();
    ((libc::major(dev), libc::minor(dev)), meta.ino())
}

/// Maps `path` executable into this process (at `at` when given, replacing what is there),
/// as a traced process would: the range of the mapping (left mapped).
fn map_exec(path: &Path, at: Option<std::ops::Range<u64>>) -> std::ops::Range<u64> {
    let file = std::fs::File::open(path).unwrap();
    let (addr, flags, len) = match at {
        Some(r) => (
            r.start as *mut libc::c_void,
            libc::MAP_PRIVATE | libc::MAP_FIXED,
            (r.end - r.start) as usize,
        ),
        None => (
            std::ptr::null_mut(),
            libc::MAP_PRIVATE,
            file.metadata().unwrap().len() as usize,
        ),
    };
    // SAFETY: a new private mapping of a file, or one replacing a mapping this test made.
    let p = unsafe {
        libc::mmap(
            addr,
            len,
            libc::PROT_READ | libc::PROT_EXEC,
            flags,
            std::os::fd::AsRawFd::as_raw_fd(&file),
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    let start = p as u64;
    start..start + (len as u64).next_multiple_of(4096)
}

/// Interns `path` mapped into this process, as `refresh` does.
fn intern(files: &mut FileTable, path: &Path) -> u32 {
    let range = map_exec(path, None);
    let (dev, ino) = dev_ino(path);
    let name: Arc<str> = path.to_string_lossy().into();
    files.intern((dev.0, dev.1, ino, name), std::process::id(), range)
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

/// An address space with one executable mapping of `path` at `range`, with the file's
/// device and inode as the model would have recorded them.
fn space_with(
    path: &str,
    range: std::ops::Range<u64>,
    dev: (u32, u32),
    inode: u64,
) -> AddressSpace {
    let mut space = AddressSpace::new(4096);
    space.map(Vma {
        start: range.start,
        end: range.end,
        perms: Perms::from_prot(5, false),
        offset: 0,
        backing: Backing::File(FileRef {
            path: Some(path.into()),
            dev,
            inode,
            fd: None,
        }),
        dont_fork: false,
    });
    space
}

#[test]
fn a_path_the_process_named_is_never_opened() {
    // The process mapped x.so at a range it has since unmapped (no map_files entry), and its
    // owner replaced x.so with a symlink to a file only root may read, a FIFO, /dev/zero.
    let dir = scratch("path");
    let secret = copy(&dir, "secret", 0o600, |_| {});
    let (dev, ino) = dev_ino(&secret);
    let link = dir.join("x.so");
    std::os::unix::fs::symlink(&secret, &link).unwrap();
    let fifo = dir.join("fifo.so");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0);
    let zero = dir.join("zero.so");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let unmapped = 0x1000..0x3000; // never mapped in this process
    for path in [&link, &fifo, &zero] {
        let mut files = FileTable::default();
        let space = space_with(path.to_str().unwrap(), unmapped.clone(), dev, ino);
        let u = ProcessUnwinder::refresh(None, std::process::id(), &space, &mut files);
        assert_eq!(u.mapped.len(), 1, "the frame keeps its file name");
        assert!(
            files.unwind(u.mapped[0].file).is_none(),
            "{path:?} was read"
        );
        assert_eq!(files.reads, 0);
        let mut symbols = super::super::symbols::Symbols::default();
        let name = symbols.name(
            &files,
            Frame {
                file: u.mapped[0].file,
                offset: 0x1040,
            },
        );
        assert!(name.starts_with('['), "{path:?} named a frame: {name}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_mapping_of_another_file_at_the_range_is_refused() {
    let dir = scratch("refuse");
    let a = copy(&dir, "a", 0o755, |_| {});
    let b = copy(&dir, "b", 0o755, other_build_id);
    let range = map_exec(&a, None);
    let (dev_a, ino_a) = dev_ino(&a);
    let (dev_b, ino_b) = dev_ino(&b);
    let pid = std::process::id();
    assert!(elffile::open_mapped(pid, range.clone(), dev_a, ino_a).is_some());
    // The model says b is mapped there (the process replaced the mapping since): refused.
    assert!(elffile::open_mapped(pid, range, dev_b, ino_b).is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tables_are_read_from_the_descriptor_checked_when_interned() {
    // A process maps a, whose tables are read; it then maps another ELF at the same range
    // (MAP_FIXED) and the tables are evicted: they must be read again from a, not from what
    // the process's map_files entry points to now.
    let dir = scratch("same");
    let a = copy(&dir, "a", 0o755, |_| {});
    let other = copy_of("/bin/ls", &dir, "other", 0o755, |_| {});
    let spare = copy(&dir, "spare", 0o755, other_build_id);
    let mut files = FileTable::with_limits(1, usize::MAX);
    let range = map_exec(&a, None);
    let (dev, ino) = dev_ino(&a);
    let id = files.intern(
        (dev.0, dev.1, ino, "a".into()),
        std::process::id(),
        range.clone(),
    );
    let first = files.unwind(id).expect("tables");
    let eh_frame = first.eh_frame.as_ref().expect(".eh_frame").1.to_vec();
    drop(first);
    map_exec(&other, Some(range.clone()));
    intern(&mut files, &spare);
    files.unwind(files.next_file - 1); // evicts a's tables
    assert_eq!(files.reads, 2);
    let again = files.unwind(id).expect("tables");
    assert_eq!(files.reads, 3, "read again");
    assert_eq!(
        again.eh_frame.as_ref().unwrap().1.to_vec(),
        eh_frame,
        "a's tables"
    );
    let _ = std::fs::remove_dir_all(&dir);
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
        files.get(ia).unwrap().content,
        files.get(ib).unwrap().content
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
    let contents = ids.map(|i| files.get(i).unwrap().content);
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

#[test]
fn live_tables_are_bounded_in_all() {
    let dir = scratch("budget");
    let a = copy(&dir, "a", 0o755, |_| {});
    let b = copy(&dir, "b", 0o755, other_build_id);
    let mut files = FileTable::with_limits(10, usize::MAX);
    files.limits.2 = 1; // room for nothing more once one file's tables are alive
    let (ia, ib) = (intern(&mut files, &a), intern(&mut files, &b));
    let held = files.unwind(ia).expect("the first file's tables"); // as a live unwinder
    assert!(files.unwind(ib).is_none(), "tables beyond the bound");
    assert_eq!(files.over_budget, 1);
    drop(held);
    // No longer used by an unwinder: evicted from the cache to make room.
    assert!(files.unwind(ib).is_some());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn files_no_stack_or_unwinder_uses_are_forgotten() {
    let dir = scratch("sweep");
    let a = copy(&dir, "a", 0o755, |_| {});
    let b = copy(&dir, "b", 0o755, other_build_id);
    let mut files = FileTable::default();
    files.limits.4 = 1;
    let (ia, ib) = (intern(&mut files, &a), intern(&mut files, &b));
    files.unwind(ib);
    assert!(files.over_bound());
    files.sweep(&[ia].into());
    assert_eq!(files.len(), 1);
    assert!(files.get(ia).is_some() && files.get(ib).is_none());
    assert_eq!(
        (files.contents.len(), files.held.len(), files.cache.len()),
        (1, 1, 0)
    );
    assert_eq!(files.cached_bytes, 0);
    // Seen again: a new id, never the old one (stacks may still hold it).
    let again = intern(&mut files, &b);
    assert!(again != ib && again != ia);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_file_its_owner_truncates_while_symbolized_does_not_crash_the_daemon() {
    // A file others may write (here: anyone) is symbolized from a copy in memory: blazesym
    // maps what it reads, and a truncation under that mapping would kill the reader (SIGBUS).
    let dir = scratch("truncate");
    let lib = copy_of(
        "/lib/x86_64-linux-gnu/libc.so.6",
        &dir,
        "libc.so.6",
        0o666,
        |_| {},
    );
    let len = std::fs::metadata(&lib).unwrap().len();
    let mut files = FileTable::default();
    let id = intern(&mut files, &lib);
    let mut symbols = super::super::symbols::Symbols::default();
    let mut named = 0;
    let mut offset = 0;
    while offset < len / 2 {
        let name = symbols.name(&files, Frame { file: id, offset });
        named += usize::from(!name.starts_with('['));
        offset += 4096;
    }
    assert!(named > 0, "libc's exported functions are named");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&lib)
        .unwrap()
        .set_len(0)
        .unwrap();
    while offset < len {
        symbols.name(&files, Frame { file: id, offset });
        offset += 4096;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn without_map_files_the_path_is_opened_only_safely() {
    // As a daemon without CAP_SYS_ADMIN sees it: the model's range has no map_files entry
    // (here: a range this process never mapped), so the file is looked up by its path.
    let dir = scratch("bypath");
    let a = copy(&dir, "a", 0o755, |_| {});
    let unmapped = 0x1000..0x3000;
    let (dev, ino) = dev_ino(&a);
    let pid = std::process::id();
    let by_path = |path: &Path| elffile::open_by_path(pid, path.to_str().unwrap(), dev, ino);
    // Not mapped by the process: its inode number could be another file's by now.
    assert!(by_path(&a).is_none(), "a file the process does not map");
    map_exec(&a, None);
    assert!(
        by_path(&a).is_some(),
        "the file the process maps, at its path"
    );
    // A symlink anywhere in the path is not followed.
    std::os::unix::fs::symlink(&dir, dir.join("up")).unwrap();
    assert!(
        by_path(&dir.join("up").join("a")).is_none(),
        "through a symlinked directory"
    );
    std::os::unix::fs::symlink(&a, dir.join("link")).unwrap();
    assert!(
        by_path(&dir.join("link")).is_none(),
        "a symlink to the file"
    );
    // Through the unwinder: tables read by path while the process maps the file.
    let mut files = FileTable::default();
    let space = space_with(a.to_str().unwrap(), unmapped, dev, ino);
    let u = ProcessUnwinder::refresh(None, pid, &space, &mut files);
    assert!(files.unwind(u.mapped[0].file).is_some());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn descriptors_of_files_no_kept_process_uses_are_closed() {
    let dir = scratch("release");
    let a = copy(&dir, "a", 0o755, |_| {});
    let b = copy(&dir, "b", 0o755, other_build_id);
    let mut files = FileTable::default();
    let (ia, ib) = (intern(&mut files, &a), intern(&mut files, &b));
    let (ca, cb) = (
        files.get(ia).unwrap().content,
        files.get(ib).unwrap().content,
    );
    assert!(files.descriptor(cb).is_some());
    let live = files.release(&[ia].into());
    assert_eq!(live, [ca].into());
    assert!(files.descriptor(ca).is_some());
    assert!(
        files.descriptor(cb).is_none(),
        "b's descriptor is still open"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
