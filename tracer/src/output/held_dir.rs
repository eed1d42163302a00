//! A directory held open, in which every name is looked up relative to the descriptor.
//!
//! The tracer runs as root and writes into directories that other users may own (`/tmp/ci`, a
//! CI workspace). Resolving the directory's path again at the end of a long run would let its
//! owner swap it (or a directory above it) for a symlink and have root create or rename files
//! elsewhere. So the directory of an output is opened once, when the paths are checked at
//! start-up, and every later operation (`fstatat`, `openat`, `renameat`, `unlinkat`) goes
//! through that descriptor with names of one component.

use std::{
    ffi::{CStr, CString, OsStr},
    fs::File,
    io,
    mem::MaybeUninit,
    os::{
        fd::{AsRawFd as _, FromRawFd as _},
        unix::ffi::OsStrExt as _,
    },
    path::Path,
};

/// A name of one component, as the kernel takes it.
pub fn c_name(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a name"))
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// The directory a path's last component lies in (`.` for a bare name), and that component.
pub fn split(path: &Path) -> io::Result<(&Path, &OsStr)> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"))?;
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    Ok((dir, name))
}

#[derive(Debug)]
pub struct HeldDir {
    /// Opened read-only (not O_PATH) so that it can be fsync'd after a rename.
    dir: File,
}

impl HeldDir {
    /// Opens the directory at `path` (following symlinks there, as the operator's path
    /// means: it is resolved now, once).
    pub fn open(path: &Path) -> io::Result<HeldDir> {
        let path_c = c_name(path.as_os_str().as_bytes())?;
        // SAFETY: a NUL-terminated path; the descriptor is owned by the File below.
        let fd = check(unsafe {
            libc::open(
                path_c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        })?;
        // SAFETY: a descriptor just opened and owned by nothing else.
        Ok(HeldDir {
            dir: unsafe { File::from_raw_fd(fd) },
        })
    }

    /// `lstat` of `name` in this directory: None when nothing is there.
    pub fn stat_nofollow(&self, name: &CStr) -> io::Result<Option<libc::stat>> {
        let mut st = MaybeUninit::<libc::stat>::uninit();
        // SAFETY: a NUL-terminated name and a buffer of the right type.
        let ret = unsafe {
            libc::fstatat(
                self.dir.as_raw_fd(),
                name.as_ptr(),
                st.as_mut_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if ret < 0 {
            let err = io::Error::last_os_error();
            return if err.kind() == io::ErrorKind::NotFound {
                Ok(None)
            } else {
                Err(err)
            };
        }
        // SAFETY: fstatat succeeded, so it filled the buffer.
        Ok(Some(unsafe { st.assume_init() }))
    }

    /// Creates `name` exclusively (never through a symlink), write-only, with `mode`.
    pub fn create_new(&self, name: &CStr, mode: libc::mode_t) -> io::Result<File> {
        // SAFETY: a NUL-terminated name relative to a directory we hold open.
        let fd = check(unsafe {
            libc::openat(
                self.dir.as_raw_fd(),
                name.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                mode,
            )
        })?;
        // SAFETY: a descriptor just opened and owned by nothing else.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// Renames `from` to `to`, both in this directory (a symlink at `to` is replaced, never
    /// followed).
    pub fn rename(&self, from: &CStr, to: &CStr) -> io::Result<()> {
        let dir = self.dir.as_raw_fd();
        // SAFETY: NUL-terminated names relative to a directory we hold open.
        check(unsafe { libc::renameat(dir, from.as_ptr(), dir, to.as_ptr()) }).map(drop)
    }

    /// Removes `name` (a symlink itself, never its target).
    pub fn unlink(&self, name: &CStr) -> io::Result<()> {
        // SAFETY: a NUL-terminated name relative to a directory we hold open.
        check(unsafe { libc::unlinkat(self.dir.as_raw_fd(), name.as_ptr(), 0) }).map(drop)
    }

    /// Makes renames in the directory durable.
    pub fn sync(&self) -> io::Result<()> {
        self.dir.sync_all()
    }
}

/// What kind of non-regular file a `stat` mode describes, if it is one.
pub fn non_regular(mode: libc::mode_t) -> Option<&'static str> {
    match mode & libc::S_IFMT {
        libc::S_IFREG => None,
        libc::S_IFLNK => Some("a symbolic link"),
        libc::S_IFDIR => Some("a directory"),
        libc::S_IFIFO => Some("a FIFO"),
        libc::S_IFCHR => Some("a character device"),
        libc::S_IFBLK => Some("a block device"),
        libc::S_IFSOCK => Some("a socket"),
        _ => Some("not a regular file"),
    }
}
