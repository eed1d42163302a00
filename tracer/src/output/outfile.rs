//! Every file the tracer writes (`--report`, `--junit`, `--html`, `--pprof`, `--events`) goes
//! through here.
//!
//! The tracer runs as root and the output path often lies in a directory other users can write
//! to (`/tmp`, a CI workspace). So the path's last component is never followed: a symlink, a
//! FIFO, a device or a directory there is refused (exit 2) instead of being written through,
//! and the data goes to a temporary file created exclusively (`O_EXCL|O_NOFOLLOW`, random
//! name, mode 0600 while it is written) beside the target, which is fsync'd and renamed over
//! it. A rename replaces the directory entry itself, so a symlink planted between the check
//! and the rename is replaced, never followed.
//!
//! The directory is resolved once: `check`, run on every output path before the traced command
//! starts, opens it and keeps it open (`held_dir`), and the write at the end of the run works
//! relative to that descriptor, so swapping the directory (or one above it) for a symlink
//! during a long run sends nothing elsewhere.
//!
//! The final file gets the mode of the regular file it replaces, or `0666 & ~umask` when it is
//! new (what a plain `open(O_CREAT)` would give). `-` means stdout and is written as is.

use std::{
    ffi::{CString, OsStr},
    fs::File,
    io::{self, Write},
    os::unix::{ffi::OsStrExt, fs::PermissionsExt},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use thiserror::Error;

use crate::output::held_dir::{self, HeldDir, c_name};

#[derive(Debug, Error)]
pub enum OutputError {
    /// Something other than a regular file is at the path: refused before anything is written.
    #[error(
        "it is {0}, not a regular file: refusing to write through it (give a regular file's path, or `-` for stdout)"
    )]
    NotRegular(&'static str),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Whether the path means stdout.
pub fn is_stdout(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// An output's directory, held open, and the target's name in it.
struct Target {
    dir: Arc<HeldDir>,
    name: CString,
    /// The target's name as given, for temporary names beside it.
    base: Vec<u8>,
}

/// The directories `check` opened, by the output path they were opened for. A handful of
/// entries (one per output flag), kept for the life of the process.
static HELD: Mutex<Vec<(PathBuf, Arc<HeldDir>)>> = Mutex::new(Vec::new());

/// The directory of `path` as `check` held it, or opened now for a path never checked.
pub fn dir_of(path: &Path) -> io::Result<Arc<HeldDir>> {
    let held = HELD
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .iter()
        .find(|(p, _)| p == path)
        .map(|(_, dir)| Arc::clone(dir));
    match held {
        Some(dir) => Ok(dir),
        None => Ok(Arc::new(HeldDir::open(held_dir::split(path)?.0)?)),
    }
}

impl Target {
    /// The target at `path`, in its held directory.
    fn of(path: &Path) -> io::Result<Target> {
        Target::in_dir(dir_of(path)?, held_dir::split(path)?.1)
    }

    fn in_dir(dir: Arc<HeldDir>, name: &OsStr) -> io::Result<Target> {
        Ok(Target {
            dir,
            name: c_name(name.as_bytes())?,
            base: name.as_bytes().to_vec(),
        })
    }

    /// The `lstat` of the existing regular file at the target (None when there is none); an
    /// error for anything else.
    fn existing(&self) -> Result<Option<libc::stat>, OutputError> {
        match self.dir.stat_nofollow(&self.name)? {
            Some(st) => match held_dir::non_regular(st.st_mode) {
                Some(kind) => Err(OutputError::NotRegular(kind)),
                None => Ok(Some(st)),
            },
            None => Ok(None),
        }
    }

    /// A temporary file beside the target, created exclusively with mode 0600.
    fn create_temp(&self) -> io::Result<(File, CString)> {
        let mut last = None;
        for _ in 0..16 {
            // Keep the name short enough for NAME_MAX whatever the target's length.
            let base = &self.base[..self.base.len().min(200)];
            let name = [
                b".",
                base,
                format!(".tracer-{}.tmp", random_suffix()).as_bytes(),
            ]
            .concat();
            let name = c_name(&name)?;
            match self.dir.create_new(&name, 0o600) {
                Ok(file) => return Ok((file, name)),
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => last = Some(err),
                Err(err) => return Err(err),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no free temporary name")))
    }

    /// Gives the temporary file its final mode, syncs it and renames it over the target;
    /// removes it on failure.
    fn install(&self, file: &File, tmp: &CString, mode: u32) -> Result<(), OutputError> {
        let done = (|| -> Result<(), OutputError> {
            // Checked again just before the rename: a directory, FIFO or device that appeared
            // since the start is still refused (a symlink would merely be replaced).
            self.existing()?;
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
            file.sync_all()?;
            self.dir.rename(tmp, &self.name)?;
            // The rename itself is durable once the directory is synced; failing that is no
            // reason to fail the run.
            let _ = self.dir.sync();
            Ok(())
        })();
        if done.is_err() {
            let _ = self.dir.unlink(tmp);
        }
        done
    }
}

/// 64 random bits in hex, for a temporary name nobody can predict.
fn random_suffix() -> String {
    let mut bytes = [0u8; 8];
    // SAFETY: writes at most `bytes.len()` bytes into the buffer.
    let got = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if got != bytes.len() as isize {
        // getrandom(2) exists since Linux 3.17; the tracer needs far newer kernels. Still,
        // O_EXCL keeps a predictable name safe; only the retry loop would run longer.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        bytes = (nanos ^ u64::from(std::process::id()).rotate_left(32)).to_ne_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The process's umask, read without changing it (`umask(2)` can only set it, and other
/// threads create files).
fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

/// The mode the finished file gets: `0666 & ~umask`, or the permission bits of the file it
/// replaces when the tracer's user owns it (a file someone else planted must not lend its
/// mode, e.g. set-uid or world-writable, to a file root now owns). Never set-id or sticky.
fn final_mode(replaced: Option<&libc::stat>) -> u32 {
    // SAFETY: a plain getter.
    let euid = unsafe { libc::geteuid() };
    match replaced {
        Some(st) if st.st_uid == euid => st.st_mode & 0o777,
        _ => 0o666 & !umask(),
    }
}

/// Fails now, not after a long run, when `path` could not be written at the end: it is not a
/// regular file, or its directory does not take a new file. Holds the directory open for the
/// write at the end.
pub fn check(path: &Path) -> Result<(), OutputError> {
    if is_stdout(path) {
        return Ok(());
    }
    let (dir_path, name) = held_dir::split(path)?;
    let target = Target::in_dir(Arc::new(HeldDir::open(dir_path)?), name)?;
    target.existing()?;
    let (file, tmp) = target.create_temp()?;
    drop(file);
    target.dir.unlink(&tmp)?;
    let mut held = HELD.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    held.retain(|(p, _)| p != path);
    held.push((path.to_path_buf(), target.dir));
    Ok(())
}

/// Replaces `path` with `bytes` (see the module comment); `-` writes them to stdout.
pub fn write(path: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    if is_stdout(path) {
        let mut out = io::stdout().lock();
        out.write_all(bytes)?;
        out.flush()?;
        return Ok(());
    }
    let target = Target::of(path)?;
    let replaced = target.existing()?;
    let (mut file, tmp) = target.create_temp()?;
    if let Err(err) = file.write_all(bytes) {
        let _ = target.dir.unlink(&tmp);
        return Err(err.into());
    }
    target.install(&file, &tmp, final_mode(replaced.as_ref()))
}

/// A file written as a stream (`--events`): created as `write` creates one, but renamed into
/// place at once (still empty), so that a reader can follow it while the tracer writes.
pub fn create_stream(path: &Path) -> Result<File, OutputError> {
    let target = Target::of(path)?;
    let replaced = target.existing()?;
    let (file, tmp) = target.create_temp()?;
    target.install(&file, &tmp, final_mode(replaced.as_ref()))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt as _;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("tracer-outfile-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Files in `dir` other than those named.
    fn leftovers(dir: &Path, expected: &[&str]) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !expected.contains(&n.as_str()))
            .collect()
    }

    fn lstat(path: &Path) -> libc::stat {
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: a NUL-terminated path and a buffer of the right type.
        assert_eq!(unsafe { libc::lstat(c.as_ptr(), st.as_mut_ptr()) }, 0);
        // SAFETY: lstat succeeded.
        unsafe { st.assume_init() }
    }

    #[test]
    fn the_write_at_the_end_stays_in_the_directory_checked_at_the_start() {
        let base = scratch("swap");
        let (work, moved, elsewhere) = (base.join("work"), base.join("moved"), base.join("etc"));
        for dir in [&work, &elsewhere] {
            std::fs::create_dir_all(dir).unwrap();
        }
        let path = work.join("report.json");
        check(&path).unwrap();
        // During the run, the owner of `work` swaps it for a link to a directory of root's.
        std::fs::rename(&work, &moved).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &work).unwrap();
        write(&path, b"report").unwrap();
        assert!(
            leftovers(&elsewhere, &[]).is_empty(),
            "a file was created through the link"
        );
        assert_eq!(std::fs::read(moved.join("report.json")).unwrap(), b"report");
        assert!(leftovers(&moved, &["report.json"]).is_empty());
    }

    #[test]
    fn a_planted_file_lends_the_output_neither_its_mode_nor_set_id_bits() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch("mode");
        let planted = dir.join("planted");
        std::fs::write(&planted, b"x").unwrap();
        std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o6777)).unwrap();
        let own = lstat(&planted);
        assert_eq!(
            final_mode(Some(&own)),
            0o777,
            "our own file: its permission bits only"
        );
        // Someone else's file (as a planted one would be): the default mode.
        // SAFETY: plain getters and chown on our own scratch file.
        let other = unsafe { libc::geteuid() }.wrapping_add(1);
        let c = std::ffi::CString::new(planted.as_os_str().as_encoded_bytes()).unwrap();
        if unsafe { libc::chown(c.as_ptr(), other, u32::MAX) } == 0 {
            let theirs = lstat(&planted);
            assert_eq!(final_mode(Some(&theirs)), 0o666 & !umask());
        }
        assert_eq!(final_mode(None) & 0o7000, 0);
    }

    #[test]
    fn a_symlink_is_refused_and_its_target_untouched() {
        let dir = scratch("symlink");
        let victim = dir.join("victim");
        std::fs::write(&victim, "secret").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.join("report.json");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        for result in [
            check(&link),
            write(&link, b"x"),
            create_stream(&link).map(drop),
        ] {
            assert!(
                matches!(result, Err(OutputError::NotRegular(_))),
                "{result:?}"
            );
        }
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "secret");
        let meta = std::fs::metadata(&victim).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(leftovers(&dir, &["victim", "report.json"]).is_empty());
    }

    #[test]
    fn a_fifo_and_a_directory_are_refused() {
        let dir = scratch("fifo");
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // Opening a FIFO for writing would block without a reader: refusing must not open it.
        assert!(matches!(
            check(&fifo),
            Err(OutputError::NotRegular("a FIFO"))
        ));
        assert!(matches!(
            write(&fifo, b"x"),
            Err(OutputError::NotRegular(_))
        ));
        let sub = dir.join("sub");
        std::fs::create_dir(&sub).unwrap();
        assert!(matches!(
            write(&sub, b"x"),
            Err(OutputError::NotRegular("a directory"))
        ));
        assert!(leftovers(&dir, &["fifo", "sub"]).is_empty());
    }

    #[test]
    fn a_regular_file_is_replaced_keeping_its_mode() {
        let dir = scratch("regular");
        let path = dir.join("out.json");
        std::fs::write(&path, "old contents that are longer").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let before = std::fs::metadata(&path).unwrap().ino();
        write(&path, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o640);
        // Replaced by rename, not rewritten in place: a hard link to the old file keeps it.
        assert_ne!(meta.ino(), before);
        assert!(leftovers(&dir, &["out.json"]).is_empty());

        let new = dir.join("new.json");
        write(&new, b"fresh").unwrap();
        let mode = std::fs::metadata(&new).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o666 & !umask());

        let mut stream = create_stream(&dir.join("events.jsonl")).unwrap();
        stream.write_all(b"line\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("events.jsonl")).unwrap(),
            "line\n"
        );
        assert!(leftovers(&dir, &["out.json", "new.json", "events.jsonl"]).is_empty());
    }

    #[test]
    fn a_missing_directory_fails_the_check() {
        let dir = scratch("missing");
        assert!(matches!(
            check(&dir.join("no/such/file")),
            Err(OutputError::Io(_))
        ));
        assert!(check(Path::new("-")).is_ok());
    }
}
