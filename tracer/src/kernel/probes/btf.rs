//! Just enough of a BTF reader (Documentation/bpf/btf.rst) to find where a member of a kernel
//! struct sits, from the running kernel's `/sys/kernel/btf/vmlinux`. The probes are not CO-RE:
//! the few kernel struct offsets they need are looked up here and handed to them in `Config`,
//! like the tracepoint offsets read from tracefs.

use super::btf_blob::{Anon, Blob};

const MAGIC: u16 = 0xeb9f;

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

/// Deepest nesting of arrays or anonymous structs followed; the kernel's own types nest a few
/// levels, a cycle in a malformed blob would nest forever.
const MAX_DEPTH: u32 = 32;
/// Members looked at in one search: with a depth limit alone, a struct whose anonymous members
/// are itself, several times over, takes exponential time (found by the `btf` fuzz target).
const MAX_MEMBERS_VISITED: u32 = 100_000;

/// A type as stored in the blob: its 12-byte header, and where its kind-specific data starts.
#[derive(Debug, Clone, Copy)]
struct Type {
    name: u32,
    kind: u32,
    vlen: usize,
    bitfields: bool,
    /// `size` for INT, STRUCT, UNION, ENUM; the referenced type for PTR, TYPEDEF, CONST...
    size_or_type: u32,
    /// Byte offset of what follows the header in the type section (members, array...).
    body: usize,
}

/// A member of a struct or union.
struct Member {
    name: u32,
    type_id: u32,
    /// Offset in bits from the start of the struct.
    bit_offset: u32,
}

/// Where a member sits and what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberInfo {
    pub offset: u32,
    /// Its size in bytes, after typedefs and qualifiers (pointers: 8).
    pub size: u32,
    pub is_pointer: bool,
}

/// The blob and where each type starts in it; types are decoded when a lookup reaches them.
///
/// Why not decoded up front: the kernel's BTF has some 150,000 types, and a vector per struct
/// for its members plus a copy of the strings took about 9 MiB more of the daemon's peak
/// memory (its `VmHWM` with 100 traced processes went from 30 to 39 MiB) for the handful of
/// offsets the probes need. The index is 4 bytes a type and goes with the blob once the
/// offsets are found.
pub struct Btf {
    data: Blob,
    /// The type and string sections, as byte ranges of `data`.
    types: std::ops::Range<usize>,
    strings: std::ops::Range<usize>,
    /// Offset of each type's header in the type section; index 0 (`void`) is unused.
    offsets: Vec<u32>,
}

fn u32_at(data: &[u8], at: usize) -> Result<u32, String> {
    data.get(at..at.saturating_add(4))
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| format!("truncated at byte {at}"))
}

/// The byte range `at..at + len` if it lies within `data`.
fn section(data: &[u8], at: usize, len: usize) -> Option<std::ops::Range<usize>> {
    let end = at.checked_add(len)?;
    (end <= data.len()).then_some(at..end)
}

impl Btf {
    pub fn parse(data: &[u8]) -> Result<Btf, String> {
        Btf::from_vec(data.to_vec())
    }

    /// Reads the BTF file at `path` (e.g. `/sys/kernel/btf/vmlinux`), then indexes it (the
    /// inner error: not BTF).
    pub fn read(path: &std::path::Path) -> std::io::Result<Result<Btf, String>> {
        let data = match Anon::read(path)? {
            Some(anon) => Blob::Mapped(anon),
            None => Blob::Heap(std::fs::read(path)?),
        };
        Ok(Btf::index(data))
    }

    /// Indexes the blob `data`, keeping it.
    pub fn from_vec(data: Vec<u8>) -> Result<Btf, String> {
        Btf::index(Blob::Heap(data))
    }

    fn index(data: Blob) -> Result<Btf, String> {
        let magic = data
            .get(0..2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .ok_or("empty")?;
        if magic != MAGIC {
            return Err(format!("bad magic {magic:#x} (not little-endian BTF)"));
        }
        let hdr_len = u32_at(&data, 4)? as usize;
        let type_off = u32_at(&data, 8)? as usize;
        let type_len = u32_at(&data, 12)? as usize;
        let str_off = u32_at(&data, 16)? as usize;
        let str_len = u32_at(&data, 20)? as usize;
        let types = section(&data, hdr_len.saturating_add(type_off), type_len)
            .ok_or("type section out of bounds")?;
        let strings = section(&data, hdr_len.saturating_add(str_off), str_len)
            .ok_or("string section out of bounds")?;
        let types_data = &data[types.clone()];
        let mut offsets = vec![0];
        let mut at = 0;
        while at < types_data.len() {
            let info = u32_at(types_data, at + 4)?;
            u32_at(types_data, at + 8)?;
            offsets.push(u32::try_from(at).map_err(|_| "type section too large")?);
            at += 12;
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let body = match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION => 12 * vlen,
                KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen,
                KIND_DATASEC | KIND_ENUM64 => 12 * vlen,
                0 | KIND_PTR | 7 | KIND_TYPEDEF..=KIND_RESTRICT | 12 | 16 | KIND_TYPE_TAG => 0,
                other => return Err(format!("unknown BTF kind {other}")),
            };
            // What a lookup reads must be there: the members and the array's words.
            if matches!(kind, KIND_ARRAY | KIND_STRUCT | KIND_UNION) && body > 0 {
                u32_at(types_data, at + body - 4)?;
            }
            at += body;
        }
        Ok(Btf {
            data,
            types,
            strings,
            offsets,
        })
    }

    fn types_data(&self) -> &[u8] {
        &self.data[self.types.clone()]
    }

    fn name_bytes(&self, offset: u32) -> &[u8] {
        let strings = &self.data[self.strings.clone()];
        let rest = strings.get(offset as usize..).unwrap_or_default();
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        &rest[..end]
    }

    /// Type `id` (0, `void`, has none). Checked at parse time, so reads within it succeed.
    fn get(&self, id: u32) -> Option<Type> {
        if id == 0 {
            return Some(Type {
                name: 0,
                kind: 0,
                vlen: 0,
                bitfields: false,
                size_or_type: 0,
                body: 0,
            });
        }
        let at = *self.offsets.get(id as usize)? as usize;
        let data = self.types_data();
        let info = u32_at(data, at + 4).ok()?;
        Some(Type {
            name: u32_at(data, at).ok()?,
            kind: (info >> 24) & 0x1f,
            vlen: (info & 0xffff) as usize,
            bitfields: info >> 31 == 1,
            size_or_type: u32_at(data, at + 8).ok()?,
            body: at + 12,
        })
    }

    /// Member `i` of a struct or union.
    fn member_of(&self, t: &Type, i: usize) -> Option<Member> {
        let data = self.types_data();
        let at = t.body + 12 * i;
        let offset = u32_at(data, at + 8).ok()?;
        Some(Member {
            name: u32_at(data, at).ok()?,
            type_id: u32_at(data, at + 4).ok()?,
            // With bitfields, the top 8 bits are the field's width.
            bit_offset: if t.bitfields {
                offset & 0xff_ffff
            } else {
                offset
            },
        })
    }

    /// ARRAY: element type and count.
    fn array_of(&self, t: &Type) -> Option<(u32, u32)> {
        if t.kind != KIND_ARRAY {
            return None;
        }
        let data = self.types_data();
        Some((u32_at(data, t.body).ok()?, u32_at(data, t.body + 8).ok()?))
    }

    /// The first struct named `name` that has members (a forward declaration has none).
    fn find_struct(&self, name: &str) -> Option<u32> {
        (1..self.offsets.len() as u32).find(|&id| {
            self.get(id).is_some_and(|t| {
                t.kind == KIND_STRUCT && t.vlen > 0 && self.name_bytes(t.name) == name.as_bytes()
            })
        })
    }

    /// Names of the structs with members (tests).
    #[cfg(test)]
    fn struct_names(&self) -> Vec<String> {
        (1..self.offsets.len() as u32)
            .filter_map(|id| self.get(id))
            .filter(|t| t.kind == KIND_STRUCT && t.vlen > 0)
            .map(|t| String::from_utf8_lossy(self.name_bytes(t.name)).into_owned())
            .collect()
    }

    /// Follows typedefs and qualifiers to the type that has a layout.
    fn resolve(&self, mut id: u32) -> Option<Type> {
        for _ in 0..32 {
            let t = self.get(id)?;
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.size_or_type
                }
                _ => return Some(t),
            }
        }
        None
    }

    /// Size in bytes; `None` past `MAX_DEPTH` nested arrays (a malformed or hostile blob may
    /// make an array its own element) or when the size does not fit.
    fn size_of(&self, id: u32, depth: u32) -> Option<u32> {
        let depth = depth.checked_sub(1)?;
        let t = self.resolve(id)?;
        match t.kind {
            KIND_PTR => Some(8),
            KIND_ARRAY => {
                let (elem, n) = self.array_of(&t)?;
                self.size_of(elem, depth)?.checked_mul(n)
            }
            _ => Some(t.size_or_type),
        }
    }

    /// The member `member` of `struct name`, looking into anonymous structs and unions.
    pub fn member(&self, name: &str, member: &str) -> Option<MemberInfo> {
        let id = self.find_struct(name)?;
        let mut visits = MAX_MEMBERS_VISITED;
        self.find_member(id, member, 0, MAX_DEPTH, &mut visits)
    }

    /// Looks for `member` at most `depth` anonymous structs deep and `visits` members in all: a
    /// struct that contains itself (malformed BTF) must end the search, not the stack or the
    /// daemon's start-up.
    fn find_member(
        &self,
        id: u32,
        member: &str,
        base_bits: u32,
        depth: u32,
        visits: &mut u32,
    ) -> Option<MemberInfo> {
        let depth = depth.checked_sub(1)?;
        let t = self.resolve(id)?;
        if !matches!(t.kind, KIND_STRUCT | KIND_UNION) {
            return None;
        }
        for i in 0..t.vlen {
            let m = self.member_of(&t, i)?;
            *visits = visits.checked_sub(1)?;
            let bits = base_bits.checked_add(m.bit_offset)?;
            if m.name == 0 {
                // An anonymous struct or union: its members belong to the outer struct.
                if let Some(found) = self.find_member(m.type_id, member, bits, depth, visits) {
                    return Some(found);
                }
            } else if self.name_bytes(m.name) == member.as_bytes() {
                if !bits.is_multiple_of(8) {
                    return None; // a bitfield: not something a probe can read whole
                }
                let resolved = self.resolve(m.type_id)?;
                return Some(MemberInfo {
                    offset: bits / 8,
                    size: self.size_of(m.type_id, MAX_DEPTH)?,
                    is_pointer: resolved.kind == KIND_PTR,
                });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `btf` fuzz target (a timeout): a struct whose anonymous members are
    /// itself. The lookup must answer at once, not after 2^32 steps.
    #[test]
    fn a_struct_made_of_itself_many_times_is_searched_in_bounded_time() {
        use base64::Engine as _;
        let blob = base64::engine::general_purpose::STANDARD
            .decode(
                "n+sBABgAAAAAAAAApAAAAKQAAABDAAAAAQAAAAAAAAEEAAAAIAAAACsAAAAAAAABCAAAAEAAAGFza19z\
                 dHJ1Y3QAAAABAQAAAAAAAAAAAAAwAAAAAAAACAMAAAAYAAAAAQAABAgmAAAAAAAABAAAAAAAAAAAAAAA\
                 AQAABAgAAIARAAAABgAAAAAAAAAFAAAAAgAABBAAAAAAAAAABwAAAAAAAAAAAAAABwAAAAAAAAA5AAAA\
                 BAAAAEAAAAAAaW50AHRhc2tfc3RydWN0AHNpZ25hbABzaWduYWxfc3RydWN0AGxpdmUAbG9uZwBhdG9t\
                 aWNfdAByc3Nfc3RhdAAA",
            )
            .unwrap();
        let btf = Btf::parse(&blob).unwrap();
        let started = std::time::Instant::now();
        for (name, member) in [
            ("task_struct", "signal"),
            ("task_struct", "rss_stat"),
            ("signal_struct", "live"),
        ] {
            let _ = btf.member(name, member);
        }
        // Not a timing test: before the visit budget this did not end within minutes.
        assert!(started.elapsed() < std::time::Duration::from_secs(60));
    }

    /// Builds a small BTF blob: `struct inner { int a; int b; }` and
    /// `struct outer { long x; struct { int pad; struct inner *p; }; atomic_t live; }`.
    fn sample() -> Vec<u8> {
        let mut strings = b"\0int\0inner\0a\0b\0outer\0x\0pad\0p\0live\0long\0atomic_t\0".to_vec();
        let off = |s: &str| -> u32 {
            let needle = format!("\0{s}\0");
            (strings_find(&strings, needle.as_bytes()) + 1) as u32
        };
        fn strings_find(h: &[u8], n: &[u8]) -> usize {
            h.windows(n.len()).position(|w| w == n).unwrap()
        }
        let mut types = Vec::new();
        let mut push = |words: &[u32]| {
            for w in words {
                types.extend_from_slice(&w.to_le_bytes());
            }
        };
        let info = |kind: u32, vlen: u32| (kind << 24) | vlen;
        // 1: int (4 bytes)
        push(&[off("int"), info(KIND_INT, 0), 4, 32]);
        // 2: long (8 bytes)
        push(&[off("long"), info(KIND_INT, 0), 8, 64]);
        // 3: struct inner
        push(&[off("inner"), info(KIND_STRUCT, 2), 8]);
        push(&[off("a"), 1, 0, off("b"), 1, 32]);
        // 4: struct inner *
        push(&[0, info(KIND_PTR, 0), 3]);
        // 5: anonymous struct { int pad; struct inner *p; }
        push(&[0, info(KIND_STRUCT, 2), 16]);
        push(&[off("pad"), 1, 0, off("p"), 4, 64]);
        // 6: struct { int counter } as atomic_t, via 7: typedef atomic_t
        push(&[0, info(KIND_STRUCT, 1), 4]);
        push(&[off("int"), 1, 0]);
        push(&[off("atomic_t"), info(KIND_TYPEDEF, 0), 6]);
        // 8: struct outer
        push(&[off("outer"), info(KIND_STRUCT, 3), 32]);
        push(&[off("x"), 2, 0, 0, 5, 64, off("live"), 7, 192]);
        strings.push(0);
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC.to_le_bytes());
        out.extend_from_slice(&[1, 0]);
        for w in [
            24u32,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out.extend_from_slice(&types);
        out.extend_from_slice(&strings);
        out
    }

    #[test]
    fn finds_members_through_anonymous_structs_and_typedefs() {
        let btf = Btf::parse(&sample()).unwrap();
        let p = btf.member("outer", "p").unwrap();
        assert_eq!((p.offset, p.size, p.is_pointer), (16, 8, true));
        let live = btf.member("outer", "live").unwrap();
        assert_eq!((live.offset, live.size, live.is_pointer), (24, 4, false));
        assert_eq!(btf.member("inner", "b").unwrap().offset, 4);
        assert!(btf.member("outer", "missing").is_none());
        assert!(btf.member("nosuch", "x").is_none());
    }

    /// A blob whose types refer to themselves: `struct loop { struct loop; }` (anonymous
    /// member), `struct arr { arr_t a; }` with `arr_t` an array of itself, and an array whose
    /// size overflows. Lookups end with `None` instead of overflowing the stack or a u32.
    fn cyclic() -> Vec<u8> {
        let strings = b"\0loop\0arr\0a\0big\0b\0int\0".to_vec();
        let off = |s: &str| -> u32 {
            let needle = format!("\0{s}\0");
            (strings
                .windows(needle.len())
                .position(|w| w == needle.as_bytes())
                .unwrap()
                + 1) as u32
        };
        let mut types = Vec::new();
        let mut push = |words: &[u32]| {
            for w in words {
                types.extend_from_slice(&w.to_le_bytes());
            }
        };
        let info = |kind: u32, vlen: u32| (kind << 24) | vlen;
        // 1: struct loop { <anonymous> struct loop; }
        push(&[off("loop"), info(KIND_STRUCT, 1), 4]);
        push(&[0, 1, 0]);
        // 2: array of 2 x type 2
        push(&[0, info(KIND_ARRAY, 0), 0]);
        push(&[2, 4, 2]);
        // 3: struct arr { type-2 a; }
        push(&[off("arr"), info(KIND_STRUCT, 1), 8]);
        push(&[off("a"), 2, 0]);
        // 4: int; 5: int[0x8000_0000]; 6: struct big { type-5 b; }
        push(&[off("int"), info(KIND_INT, 0), 4, 32]);
        push(&[0, info(KIND_ARRAY, 0), 0]);
        push(&[4, 4, 0x8000_0000]);
        push(&[off("big"), info(KIND_STRUCT, 1), 8]);
        push(&[off("b"), 5, 0]);
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC.to_le_bytes());
        out.extend_from_slice(&[1, 0]);
        for w in [
            24u32,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out.extend_from_slice(&types);
        out.extend_from_slice(&strings);
        out
    }

    #[test]
    fn self_referring_types_end_the_lookup() {
        let btf = Btf::parse(&cyclic()).unwrap();
        assert!(btf.member("loop", "x").is_none());
        assert!(btf.member("arr", "a").is_none());
        assert!(btf.member("big", "b").is_none());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Random type graphs (small ids, so types refer to each other and to themselves):
        /// parsing and every member lookup end without a panic.
        #[test]
        fn random_type_graphs_never_panic(
            types in proptest::collection::vec(
                (proptest::sample::select(&[1u32, 2, 3, 4, 5, 8, 9, 10, 18, 30][..]), 0..3u32,
                 0..10u32, proptest::collection::vec(0..10u32, 9)),
                0..12,
            ),
            tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..8),
        ) {
            let strings = b"\0s\0a\0b\0".to_vec();
            let mut section = Vec::new();
            for (kind, vlen, size_or_type, words) in &types {
                let mut push = |w: u32| section.extend_from_slice(&w.to_le_bytes());
                push(1 + (words[0] % 3) * 2);
                push((kind << 24) | vlen);
                push(*size_or_type);
                let extra = match *kind {
                    KIND_INT => 1,
                    KIND_ARRAY => 3,
                    KIND_STRUCT | KIND_UNION => 3 * vlen,
                    _ => 0,
                };
                for i in 0..extra as usize {
                    // Member names 0 (anonymous) to 5, types and offsets small.
                    push(if i % 3 == 0 { words[1 + i % 8] % 6 } else { words[1 + i % 8] });
                }
            }
            section.extend_from_slice(&tail);
            let mut blob = Vec::new();
            blob.extend_from_slice(&MAGIC.to_le_bytes());
            blob.extend_from_slice(&[1, 0]);
            for w in [24u32, 0, section.len() as u32, section.len() as u32, strings.len() as u32] {
                blob.extend_from_slice(&w.to_le_bytes());
            }
            blob.extend_from_slice(&section);
            blob.extend_from_slice(&strings);
            if let Ok(btf) = Btf::parse(&blob) {
                let names: Vec<String> = btf.struct_names();
                for name in names {
                    for member in ["a", "b", "s", ""] {
                        let _ = btf.member(&name, member);
                    }
                }
            }
        }
    }

    /// A file read into its own mapping answers as the same bytes on the heap; a truncated one
    /// is refused, and a missing one is an I/O error.
    #[test]
    fn reads_a_file_into_its_own_mapping() {
        let dir = std::env::temp_dir().join(format!("tracer-btf-read-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let whole = dir.join("whole");
        std::fs::write(&whole, sample()).unwrap();
        let btf = Btf::read(&whole).unwrap().unwrap();
        assert!(matches!(btf.data, Blob::Mapped(_)));
        assert_eq!(btf.member("outer", "live").unwrap().offset, 24);
        let mut truncated = sample();
        truncated.truncate(40);
        let short = dir.join("short");
        std::fs::write(&short, truncated).unwrap();
        assert!(Btf::read(&short).unwrap().is_err());
        assert!(Btf::read(&dir.join("missing")).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn rejects_what_is_not_btf() {
        assert!(Btf::parse(b"").is_err());
        assert!(Btf::parse(&[0u8; 64]).is_err());
        let mut truncated = sample();
        truncated.truncate(40);
        assert!(Btf::parse(&truncated).is_err());
    }

    #[test]
    fn reads_the_running_kernels_task_struct() {
        let Ok(data) = std::fs::read("/sys/kernel/btf/vmlinux") else {
            return; // a kernel without BTF: nothing to check
        };
        let btf = Btf::parse(&data).unwrap();
        let mapped = Btf::read(std::path::Path::new("/sys/kernel/btf/vmlinux"))
            .unwrap()
            .unwrap();
        assert!(matches!(mapped.data, Blob::Mapped(_)));
        assert_eq!(
            mapped.member("task_struct", "signal"),
            btf.member("task_struct", "signal")
        );
        let signal = btf.member("task_struct", "signal").unwrap();
        assert!(signal.is_pointer && signal.offset > 0, "{signal:?}");
        let live = btf.member("signal_struct", "live").unwrap();
        assert_eq!(live.size, 4);
    }
}
