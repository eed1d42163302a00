//! A writer of "newc" cpio archives, the format the kernel unpacks as an initramfs
//! (Documentation/driver-api/early-userspace/buffer-format.rst).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

enum Entry {
    Dir,
    /// A file copied from the host, with its mode bits.
    Copy(PathBuf, u32),
    /// A file given in full, with its mode bits.
    Data(Vec<u8>, u32),
    Symlink(String),
}

/// The archive's contents by path (relative, without a leading `/`). Sorted, so every
/// directory is written before what it holds.
#[derive(Default)]
pub struct Archive {
    entries: BTreeMap<String, Entry>,
}

impl Archive {
    fn insert(&mut self, path: &str, entry: Entry) {
        let path = path.trim_start_matches('/');
        let mut parent = Path::new(path).parent();
        while let Some(dir) = parent.filter(|d| !d.as_os_str().is_empty()) {
            self.entries
                .entry(dir.to_string_lossy().into_owned())
                .or_insert(Entry::Dir);
            parent = dir.parent();
        }
        self.entries.insert(path.to_owned(), entry);
    }

    pub fn contains(&self, path: &str) -> bool {
        self.entries.contains_key(path.trim_start_matches('/'))
    }

    pub fn dir(&mut self, path: &str) {
        self.insert(path, Entry::Dir);
    }

    pub fn copy(&mut self, path: &str, source: &Path, mode: u32) {
        self.insert(path, Entry::Copy(source.to_path_buf(), mode));
    }

    pub fn data(&mut self, path: &str, data: impl Into<Vec<u8>>, mode: u32) {
        self.insert(path, Entry::Data(data.into(), mode));
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        self.insert(path, Entry::Symlink(target.to_owned()));
    }

    /// Writes the archive; returns its size in bytes.
    pub fn write(&self, out: &Path) -> Result<u64> {
        let file = File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
        let mut w = Counting {
            inner: BufWriter::new(file),
            written: 0,
        };
        for (ino, (path, entry)) in self.entries.iter().enumerate() {
            let ino = ino as u32 + 1;
            match entry {
                Entry::Dir => header(&mut w, ino, S_IFDIR | 0o755, 2, 0, path)?,
                Entry::Symlink(target) => {
                    header(&mut w, ino, S_IFLNK | 0o777, 1, target.len() as u32, path)?;
                    w.write_all(target.as_bytes())?;
                    pad(&mut w)?;
                }
                Entry::Data(data, mode) => {
                    header(&mut w, ino, S_IFREG | mode, 1, data.len() as u32, path)?;
                    w.write_all(data)?;
                    pad(&mut w)?;
                }
                Entry::Copy(source, mode) => {
                    let mut file = File::open(source)
                        .with_context(|| format!("cannot read {}", source.display()))?;
                    let len = file.metadata()?.len();
                    let len32 = u32::try_from(len)
                        .with_context(|| format!("{} is too large for cpio", source.display()))?;
                    header(&mut w, ino, S_IFREG | mode, 1, len32, path)?;
                    let copied = io::copy(&mut file, &mut w)?;
                    anyhow::ensure!(copied == len, "{} changed while copied", source.display());
                    pad(&mut w)?;
                }
            }
        }
        header(&mut w, 0, 0, 1, 0, "TRAILER!!!")?;
        w.inner.flush()?;
        Ok(w.written)
    }
}

/// Counts bytes, for the 4-byte alignment the format wants.
struct Counting<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn pad<W: Write>(w: &mut Counting<W>) -> io::Result<()> {
    let rem = (w.written % 4) as usize;
    if rem != 0 {
        w.write_all(&[0; 4][..4 - rem])?;
    }
    Ok(())
}

fn header<W: Write>(
    w: &mut Counting<W>,
    ino: u32,
    mode: u32,
    nlink: u32,
    size: u32,
    name: &str,
) -> io::Result<()> {
    // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor,
    // rdevminor, namesize (with its NUL), check.
    let fields = [
        ino,
        mode,
        0,
        0,
        nlink,
        0,
        size,
        0,
        0,
        0,
        0,
        name.len() as u32 + 1,
        0,
    ];
    let mut text = String::from("070701");
    for f in fields {
        text.push_str(&format!("{f:08x}"));
    }
    w.write_all(text.as_bytes())?;
    w.write_all(name.as_bytes())?;
    w.write_all(&[0])?;
    pad(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_aligned_and_parents_come_first() {
        let dir = std::env::temp_dir().join(format!("xtask-cpio-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("a.cpio");
        let mut a = Archive::default();
        a.data("/x/y/file", "hello", 0o644);
        a.symlink("/bin/sh", "busybox");
        let size = a.write(&out).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        assert_eq!(size as usize, bytes.len());
        assert_eq!(bytes.len() % 4, 0);
        let text = String::from_utf8_lossy(&bytes);
        let names: Vec<usize> = ["bin\0", "bin/sh\0", "x\0", "x/y\0", "x/y/file\0", "TRAILER"]
            .iter()
            .map(|n| text.find(n).unwrap_or_else(|| panic!("{n:?} missing")))
            .collect();
        assert!(names.windows(2).all(|w| w[0] < w[1]), "{names:?}");
        // Every header starts on a 4-byte boundary.
        for (i, _) in text.match_indices("070701") {
            assert_eq!(i % 4, 0);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
