//! Rotation of the `--events` file (PATH to PATH.1, a new PATH) inside the directory the file
//! was opened in. The directory is held open from the start: an attacker who owns a directory
//! on the way to PATH and can time the rotation (the events are theirs) cannot swap it for a
//! symlink to make root rename or create files elsewhere. Every name is looked up relative to
//! the held directory, and the new file is created with O_EXCL | O_NOFOLLOW.

use std::{
    ffi::CString,
    fs::File,
    io,
    os::{
        fd::{AsRawFd as _, FromRawFd as _},
        unix::ffi::OsStrExt as _,
    },
    path::Path,
};

pub struct Rotation {
    /// The directory of PATH (O_PATH: used only to look names up in).
    dir: File,
    name: CString,
    old: CString,
    tmp: CString,
}

fn c_name(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a name"))
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

impl Rotation {
    /// Pins the directory of `path` (which the caller has just created).
    pub fn new(path: &Path) -> io::Result<Rotation> {
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
        let dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let dir_c = c_name(dir.as_os_str().as_bytes())?;
        // SAFETY: a NUL-terminated path; the descriptor is owned by the File below.
        let fd = check(unsafe {
            libc::open(
                dir_c.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        })?;
        // SAFETY: a descriptor just opened and owned by nothing else.
        let dir = unsafe { File::from_raw_fd(fd) };
        let name = name.as_bytes();
        Ok(Rotation {
            dir,
            name: c_name(name)?,
            old: c_name(&[name, b".1"].concat())?,
            tmp: c_name(&[b".", name, b".rotating"].concat())?,
        })
    }

    /// PATH becomes PATH.1 (replacing what was there, a symlink itself and never its target)
    /// and a new, empty PATH (mode 0600) is returned.
    pub fn rotate(&self) -> io::Result<File> {
        let dir = self.dir.as_raw_fd();
        // SAFETY (all calls below): NUL-terminated names relative to a directory we hold open.
        check(unsafe { libc::renameat(dir, self.name.as_ptr(), dir, self.old.as_ptr()) })?;
        // A leftover of an interrupted rotation: unlinkat removes a symlink, not its target.
        unsafe { libc::unlinkat(dir, self.tmp.as_ptr(), 0) };
        let fd = check(unsafe {
            libc::openat(
                dir,
                self.tmp.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o600,
            )
        })?;
        // SAFETY: a descriptor just opened and owned by nothing else.
        let file = unsafe { File::from_raw_fd(fd) };
        check(unsafe { libc::renameat(dir, self.tmp.as_ptr(), dir, self.name.as_ptr()) })?;
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn rotation_stays_in_the_directory_it_began_in() {
        let base = std::env::temp_dir().join(format!("tracer-rotation-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let (work, moved, elsewhere) = (base.join("work"), base.join("moved"), base.join("etc"));
        for dir in [&work, &elsewhere] {
            std::fs::create_dir_all(dir).unwrap();
        }
        let path = work.join("events.jsonl");
        std::fs::write(&path, b"first\n").unwrap();
        let rotation = Rotation::new(&path).unwrap();
        // The owner of `work` swaps it for a link to a directory of root's.
        std::fs::rename(&work, &moved).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &work).unwrap();
        let mut file = rotation.rotate().unwrap();
        file.write_all(b"second\n").unwrap();
        let in_elsewhere: Vec<_> = std::fs::read_dir(&elsewhere).unwrap().collect();
        assert!(
            in_elsewhere.is_empty(),
            "a file was created through the link"
        );
        assert_eq!(
            std::fs::read(moved.join("events.jsonl.1")).unwrap(),
            b"first\n"
        );
        assert_eq!(
            std::fs::read(moved.join("events.jsonl")).unwrap(),
            b"second\n"
        );
        std::fs::remove_dir_all(&base).unwrap();
    }
}
