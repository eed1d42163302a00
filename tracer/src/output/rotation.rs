//! Rotation of the `--events` file (PATH to PATH.1, a new PATH) inside the directory the file
//! was opened in. The directory is held open from the start (`outfile::check` opened it): an
//! attacker who owns a directory on the way to PATH and can time the rotation (the events are
//! theirs) cannot swap it for a symlink to make root rename or create files elsewhere. Every
//! name is looked up relative to the held directory, and the new file is created with
//! O_EXCL | O_NOFOLLOW.

use std::{ffi::CString, fs::File, io, os::unix::ffi::OsStrExt as _, path::Path, sync::Arc};

use crate::output::{
    held_dir::{self, HeldDir, c_name},
    outfile,
};

pub struct Rotation {
    dir: Arc<HeldDir>,
    name: CString,
    old: CString,
    tmp: CString,
}

impl Rotation {
    /// Pins the directory of `path` (which the caller has just created).
    pub fn new(path: &Path) -> io::Result<Rotation> {
        let name = held_dir::split(path)?.1.as_bytes();
        Ok(Rotation {
            dir: outfile::dir_of(path)?,
            name: c_name(name)?,
            old: c_name(&[name, b".1"].concat())?,
            tmp: c_name(&[b".", name, b".rotating"].concat())?,
        })
    }

    /// PATH becomes PATH.1 (replacing what was there, a symlink itself and never its target)
    /// and a new, empty PATH (mode 0600) is returned.
    pub fn rotate(&self) -> io::Result<File> {
        self.dir.rename(&self.name, &self.old)?;
        // A leftover of an interrupted rotation: unlinkat removes a symlink, not its target.
        let _ = self.dir.unlink(&self.tmp);
        let file = self.dir.create_new(&self.tmp, 0o600)?;
        self.dir.rename(&self.tmp, &self.name)?;
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
