//! Property tests of everything that parses untrusted input (records from the kernel, /proc
//! texts, tracefs formats, check files, reports, option values): arbitrary input never
//! panics, and what the tracer renders it parses back. Run with the unit tests, so CI runs
//! them on every change (a bounded number of cases each).

use proptest::prelude::*;

use crate::{
    kernel::events,
    kernel::tracefs,
    model::{
        AddressSpace, maps,
        vma::{Backing, FileRef, Perms, Vma},
    },
    procfs,
};

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(2000)
}

/// Text that looks like what it is meant to parse often enough to get past the first check:
/// a few fixed fragments mixed with arbitrary characters.
fn texty(fragments: &'static [&'static str]) -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            proptest::sample::select(fragments).prop_map(str::to_owned),
            any::<char>().prop_map(String::from),
            // Multi-byte whitespace and letters: byte-index arithmetic breaks on them.
            proptest::sample::select(&["\u{a0}", "\u{3000}", "\u{e9}", "\u{1f600}"][..])
                .prop_map(str::to_owned),
            "[ -~]{0,6}",
        ],
        0..40,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn records_of_any_bytes_decode_or_fail(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = events::decode(&bytes);
    }

    #[test]
    fn stat_of_any_bytes_parses_or_fails(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = procfs::parse_stat(&bytes);
    }

    #[test]
    fn stat_keeps_any_comm(pid in 1..4_194_304u32, comm in proptest::collection::vec(1..=255u8, 0..16), state in "[RSDTtZXI]") {
        let mut line = format!("{pid} (").into_bytes();
        line.extend_from_slice(&comm);
        line.extend_from_slice(format!(") {state} 1 2 3 4 5 6 7 8 9 10 11 12\n").as_bytes());
        let stat = procfs::parse_stat(&line).unwrap();
        prop_assert_eq!(stat.pid, pid);
        prop_assert_eq!(stat.comm, procfs::escape(&comm));
        prop_assert_eq!(stat.state.to_string(), state);
    }

    #[test]
    fn escaped_text_has_no_control_characters(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let shown = procfs::escape(&bytes);
        prop_assert!(!shown.chars().any(char::is_control), "{:?}", shown);
        if let Ok(text) = std::str::from_utf8(&bytes)
            && !text.chars().any(char::is_control)
        {
            prop_assert_eq!(shown, text);
        }
    }

    #[test]
    fn status_of_any_text_parses_or_fails(text in texty(&["Tgid:", "RssAnon:", "RssFile:", "VmSwap:", "RssShmem:", " kB", "\n", "CapEff:\t"])) {
        let _ = procfs::parse_tgid(&text);
        let _ = procfs::parse_rss(&text);
        let _ = procfs::parse_cap_eff(&text);
    }

    #[test]
    fn maps_of_any_text_parse_or_fail(text in texty(&["7f00-7f01 ", "rw-p ", "r-xs ", "00001000 ", "08:01 ", "1234 ", "[heap]", "\n", "/lib/x.so", " (deleted)"])) {
        let _ = maps::parse(&text);
        let _ = maps::proc_lines(&text);
    }

    #[test]
    fn tracefs_formats_of_any_text_parse_or_fail(text in texty(&["\tfield:", "unsigned long ", "char ", "[16]", " addr;", "\toffset:", "\tsize:", ";", "\n", "__data_loc "])) {
        let _ = tracefs::Format::parse(&text);
    }

    #[test]
    fn sizes_thresholds_and_ring_sizes_of_any_text_parse_or_fail(text in texty(&["4", "096", "K", "MiB", "G", "%", "+", ">", ":", "*", "peak_rss", "tree", ".5", "18446744073709551615"])) {
        let _ = crate::units::parse_size(&text);
        let _ = crate::units::parse_ring_size(&text);
        let _ = crate::check::diff::parse_threshold(&text);
    }

    #[test]
    fn check_files_and_reports_of_any_text_parse_or_fail(text in texty(&["[[process]]\n", "comm = \"a\"\n", "max_peak_rss = \"1MiB\"\n", "[tree]\n", "max_faults = 3\n", "{\"schema_version\": 1, ", "\"processes\": [", "{\"pid\": 3, \"comm\": \"a\"}", "]}", "\"", "=", "\n"])) {
        if let Ok(file) = crate::check::spec::parse("fuzz.toml", &text)
            && let Ok(report) = crate::output::report::parse(r#"{"schema_version": 1, "processes": [{"pid": 3, "comm": "a"}]}"#)
        {
            let _ = crate::check::evaluate(&file, &report);
        }
        if let Ok(report) = crate::output::report::parse(&text) {
            let _ = crate::check::diff::compare("a", &report, "b", &report, &[], &[]).text(true);
        }
    }
}

/// A random address space: non-overlapping VMAs with names that need escaping.
fn space() -> impl Strategy<Value = AddressSpace> {
    let vma = (
        1..16u64,
        1..8u64,
        0..16u8,
        0..64u64,
        proptest::option::of(proptest::collection::vec(any::<u8>(), 1..20)),
        any::<bool>(),
    );
    proptest::collection::vec(vma, 0..20).prop_map(|specs| {
        let mut space = AddressSpace::new(4096);
        let mut at = 0x5555_0000_0000u64;
        let mut vmas = Vec::new();
        for (gap, pages, perms, offset, name, special) in specs {
            let start = at + gap * 4096;
            let end = start + pages * 4096;
            at = end;
            let perms = Perms {
                read: perms & 1 != 0,
                write: perms & 2 != 0,
                exec: perms & 4 != 0,
                shared: perms & 8 != 0,
            };
            let backing = match name {
                None => Backing::Anonymous,
                Some(_) if special => Backing::Special("[anon:x y]".into()),
                Some(bytes) => {
                    let mut path = b"/".to_vec();
                    path.extend(bytes);
                    Backing::File(FileRef {
                        path: Some(procfs::escape(&path).into()),
                        dev: (8, 1),
                        inode: 42,
                        fd: None,
                    })
                }
            };
            let offset = if matches!(backing, Backing::File(_)) {
                offset * 4096
            } else {
                0
            };
            vmas.push(Vma {
                start,
                end,
                perms,
                offset,
                backing,
                dont_fork: false,
            });
        }
        space.replace_vmas(vmas);
        space
    })
}

proptest! {
    #![proptest_config(config())]

    /// What the API's `/maps` renders parses back to the same VMAs (file names included, even
    /// names that needed escaping or hold spaces).
    #[test]
    fn rendered_maps_parse_back(space in space()) {
        let text = maps::render(&space);
        let parsed = maps::parse(&text).unwrap();
        let original: Vec<Vma> = space.vmas().cloned().collect();
        prop_assert_eq!(parsed, original, "{}", text);
    }
}
