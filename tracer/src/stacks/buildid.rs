//! What a mapped file's contents are known by, so the same library mapped by many processes
//! (or by many containers, at other paths and on other devices) is parsed once: its GNU build
//! id when it has one and can be trusted to stand for its contents, else its device and inode.
//!
//! The files are untrusted: the build id is read by `object` through the same bounded reads as
//! the unwind tables (`elffile::HeaderReads`), the headers and notes only, never the whole
//! file, and a file that is not well-formed ELF simply has none.

use std::{fs::File, os::unix::fs::MetadataExt as _, sync::Arc};

use object::Object as _;

use super::elffile::HeaderReads;

/// Most bytes read to find a build id: the ELF header, the section (or program) headers, the
/// section names and the notes of a library are a few KiB.
const MAX_READ: u64 = 256 << 10;
/// Longest build id accepted (GNU ld writes 20 bytes, SHA-1; `--build-id=0x...` up to this).
const MAX_BUILD_ID: usize = 64;

/// The identity of a file's contents.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ContentKey {
    /// The GNU build id and the file's length: the same library wherever it is.
    BuildId(Arc<[u8]>, u64),
    /// Device (major, minor) and inode as the process mapped it.
    Inode(u32, u32, u64),
}

/// The key of the file open at `file`, mapped from device `dev` and inode `inode`.
///
/// A build id is only an assertion of the file's builder: a process could map a file of its
/// own carrying the build id of a system library, and the daemon would then unwind and name
/// that library's frames in every process from the other file. So the build id stands for
/// the contents only of files that only root (or the daemon's own user, root when it
/// traces) can write: owner uid 0 or the daemon's, mode without group or other write. Those
/// are system libraries and executables, and those of container images; other files are
/// keyed by device and inode.
pub fn content_key(file: &File, dev: (u32, u32), inode: u64) -> ContentKey {
    let by_inode = ContentKey::Inode(dev.0, dev.1, inode);
    let Ok(meta) = file.metadata() else {
        return by_inode;
    };
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if (meta.uid() != 0 && meta.uid() != euid) || meta.mode() & 0o022 != 0 {
        return by_inode;
    }
    match read(file) {
        Some(id) => ContentKey::BuildId(id.into(), meta.len()),
        None => by_inode,
    }
}

/// The GNU build id of the ELF file, from its note sections (or, without section headers,
/// its `PT_NOTE` segments), read through `object` within `MAX_READ` bytes.
pub fn read(file: &File) -> Option<Vec<u8>> {
    let cache = object::read::ReadCache::new(HeaderReads::new(file, MAX_READ)?);
    let elf = object::File::parse(&cache).ok()?;
    let id = elf.build_id().ok()??;
    (1..=MAX_BUILD_ID).contains(&id.len()).then(|| id.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PT_NOTE: u32 = 4;
    const NT_GNU_BUILD_ID: u32 = 3;

    /// A minimal ELF64 file: the header, one PT_NOTE program header, then `notes`.
    fn elf(notes: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 64 + 56];
        b[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
        b[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        b[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        b[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        let ph = &mut b[64..];
        ph[..4].copy_from_slice(&PT_NOTE.to_le_bytes());
        ph[8..16].copy_from_slice(&120u64.to_le_bytes());
        ph[32..40].copy_from_slice(&(notes.len() as u64).to_le_bytes());
        ph[48..56].copy_from_slice(&4u64.to_le_bytes());
        b.extend_from_slice(notes);
        b
    }

    fn note(kind: u32, name: &[u8], desc: &[u8]) -> Vec<u8> {
        let mut n = Vec::new();
        n.extend((name.len() as u32).to_le_bytes());
        n.extend((desc.len() as u32).to_le_bytes());
        n.extend(kind.to_le_bytes());
        n.extend(name);
        n.resize(n.len().next_multiple_of(4), 0);
        n.extend(desc);
        n.resize(n.len().next_multiple_of(4), 0);
        n
    }

    fn file_with(bytes: &[u8], name: &str) -> File {
        let path =
            std::env::temp_dir().join(format!("tracer-buildid-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        let f = File::open(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        f
    }

    #[test]
    fn the_build_id_note_is_found_after_other_notes() {
        let mut notes = note(1, b"GNU\0", &[0; 16]);
        notes.extend(note(NT_GNU_BUILD_ID, b"GNU\0", b"\x01\x02\x03\x04\x05"));
        let f = file_with(&elf(&notes), "found");
        assert_eq!(read(&f), Some(vec![1, 2, 3, 4, 5]));
        // Another vendor's note of the same type is not a build id.
        let f = file_with(&elf(&note(NT_GNU_BUILD_ID, b"XYZ\0", b"\x01")), "vendor");
        assert_eq!(read(&f), None);
    }

    #[test]
    fn malformed_files_have_no_build_id_and_do_not_panic() {
        let good = elf(&note(NT_GNU_BUILD_ID, b"GNU\0", &[7; 20]));
        assert_eq!(read(&file_with(&good, "good")), Some(vec![7; 20]));
        // Every truncation, and every byte of the headers and note set to 0xff.
        for len in 0..good.len() {
            let _ = read(&file_with(&good[..len], "cut"));
        }
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] = 0xff;
            let _ = read(&file_with(&bad, "bad"));
        }
        // A note claiming 4 GiB of descriptor.
        let mut huge = note(NT_GNU_BUILD_ID, b"GNU\0", &[1; 4]);
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(read(&file_with(&elf(&huge), "huge")), None);
        assert_eq!(read(&file_with(b"#!/bin/sh\n", "script")), None);
    }
}
