//! Where the kernel's BTF blob is kept while `btf.rs` looks offsets up in it.

/// The blob's bytes: on the heap, or (the kernel's, at start-up) in a mapping of their own.
pub(super) enum Blob {
    Heap(Vec<u8>),
    Mapped(Anon),
}

impl std::ops::Deref for Blob {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Blob::Heap(v) => v,
            Blob::Mapped(m) => m.bytes(),
        }
    }
}

/// Anonymous memory from `mmap`, returned with `munmap`, outside the allocator.
///
/// Why not a `Vec`: glibc serves a 5 MiB `Vec` with a mapping too, but freeing it raises its
/// mmap threshold to 5 MiB for good; aya then reads and parses the same BTF (in
/// `EbpfLoader::new`, unavoidably) into the heap in steps below the new threshold, and the
/// heap it leaves behind made the daemon's peak 38-39 MiB instead of 29-30 MiB (`VmHWM`, 100
/// traced processes).
pub(super) struct Anon {
    ptr: *mut u8,
    len: usize,
}

impl Anon {
    /// The whole file at `path` if its size is known up front (sysfs gives BTF's); None
    /// otherwise, or when the memory cannot be had.
    pub(super) fn read(path: &std::path::Path) -> std::io::Result<Option<Anon>> {
        use std::io::Read as _;
        let mut file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        let Ok(len) = usize::try_from(len) else {
            return Ok(None);
        };
        if len == 0 {
            return Ok(None);
        }
        // SAFETY: a fresh private anonymous mapping; no existing memory is touched.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Ok(None);
        }
        let mut anon = Anon {
            ptr: ptr.cast(),
            len,
        };
        // SAFETY: `len` writable bytes at `ptr`, owned by `anon` alone.
        let buf = unsafe { std::slice::from_raw_parts_mut(anon.ptr, anon.len) };
        let mut filled = 0;
        while filled < len {
            match file.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        // A file that shrank is parsed as far as it goes (and refused if that is not BTF);
        // one that grew past its size is not what the size said: read it the usual way.
        let mut probe = [0u8; 1];
        if file.read(&mut probe)? != 0 {
            return Ok(None);
        }
        anon.len = filled;
        Ok(Some(anon))
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `len` initialised bytes at `ptr`, alive until drop.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for Anon {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `read`; `len` may have shrunk, and munmap unmaps every
        // page the range touches, which are all ours.
        unsafe { libc::munmap(self.ptr.cast(), self.len.max(1)) };
    }
}
