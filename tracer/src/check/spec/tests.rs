use super::*;

fn err(text: &str) -> String {
    parse("c.toml", text).unwrap_err()
}

#[test]
fn a_full_file_parses() {
    let file = parse(
        "c.toml",
        r#"
[tree]
max_events_lost = 0

[[process]]
name = "the demo"
comm = "seed_demo"
peak_heap = "132KiB"
brk_growths = 1
max_peak_rss = "64 MiB"
min_faults = 10
no_failed_mmap = true
heap_returned_to_os = true
heap_return_slack = "4KiB"

[process.phases.loaded]
max_rss = "1GiB"
"#,
    )
    .unwrap();
    assert_eq!(file.groups.len(), 2);
    let demo = &file.groups[1];
    assert_eq!(demo.label, "the demo");
    assert_eq!(demo.line, 5);
    let find = |text: &str| demo.assertions.iter().find(|a| a.text.starts_with(text));
    let heap = find("peak_heap").unwrap();
    assert_eq!(heap.line, 8);
    assert_eq!(
        heap.test,
        Test::Limit {
            figure: "peak_heap".into(),
            op: Op::Exactly,
            limit: 132 * 1024,
            unit: Unit::Bytes
        }
    );
    assert_eq!(
        find("heap_returned_to_os").unwrap().test,
        Test::HeapReturned { slack: 4096 }
    );
    let phase = find("max_rss").unwrap();
    assert_eq!(phase.phase.as_deref(), Some("loaded"));
    assert_eq!(
        find("no_failed_mmap").unwrap().test,
        Test::Limit {
            figure: "mmap_failed".into(),
            op: Op::Exactly,
            limit: 0,
            unit: Unit::Count
        }
    );
}

#[test]
fn mistakes_name_the_line_and_the_fix() {
    let e = err("[[process]]\ncomm = \"x\"\nmax_peak_rs = \"1MiB\"\n");
    assert!(e.contains("line 3"), "{e}");
    assert!(e.contains("unknown assertion `max_peak_rs`"), "{e}");
    assert!(e.contains("did you mean `max_peak_rss`"), "{e}");

    let e = err("[[process]]\ncomm = \"x\"\nmax_peak_rss = \"64Mib\"\n");
    assert!(
        e.contains("line 3") && e.contains("unknown unit `Mib`"),
        "{e}"
    );

    let e = err("[[process]]\ncomm = \"x\"\nmax_peak_rss = \n");
    assert!(e.contains("line 3") && e.contains("not valid TOML"), "{e}");

    let e = err("[[process]]\nmax_faults = 3\n");
    assert!(
        e.contains("line 1") && e.contains("needs `comm` or `argv`"),
        "{e}"
    );

    let e = err("[[process]]\ncomm = \"x\"\nmax_faults = \"3\"\n");
    assert!(e.contains("is a count"), "{e}");

    let e = err("[[process]]\ncomm = \"x\"\nmax_events_lost = 0\n");
    assert!(e.contains("put `max_events_lost` under [tree]"), "{e}");

    let e = err("[process]\ncomm = \"x\"\n");
    assert!(e.contains("[[process]]"), "{e}");

    let e = err("[procces]\n");
    assert!(e.contains("did you mean `process`"), "{e}");

    let e = err("[[process]]\ncomm = \"x\"\nno_failed_brk = false\n");
    assert!(e.contains("asserts nothing"), "{e}");

    let e = err("[[process]]\ncomm = \"a_very_long_command_name\"\nmax_faults = 1\n");
    assert!(e.contains("can never match"), "{e}");

    let e = err("[[process]]\ncomm = \"x\"\n[process.phases.p]\nmax_rsss = 1\n");
    assert!(e.contains("unknown phase assertion `max_rsss`"), "{e}");
    assert!(e.contains("did you mean `max_rss`"), "{e}");

    let e = err("");
    assert!(e.contains("no assertions"), "{e}");

    let e = err("[[process]]\ncomm = \"x\"\n[process.phases.\"warmed up\"]\nmax_rss = 1\n");
    assert!(
        e.contains("line 3") && e.contains("phase name `warmed up`"),
        "{e}"
    );

    let e = err("[[process]]\ncomm = \"x\"\n[process.phases]\nmax_rss = 1\n");
    assert!(e.contains("`max_rss` is not a phase"), "{e}");

    let e = err("[[process]]\nargv = \"\"\nmax_faults = 1\n");
    assert!(e.contains("would match every process"), "{e}");

    let e = err("[tree]\nheap_returned_to_os = true\n");
    assert!(e.contains("put it under [[process]]"), "{e}");

    let e = err("[tree]\nmax_faults = 99999999999999999999\n");
    assert!(e.contains("too large"), "{e}");
}

#[test]
fn site_bounds_parse_with_their_units() {
    let file = parse(
        "c.toml",
        r#"
[[process]]
comm = "callsites"

[process.sites.grow_brk]
max_inuse_space = "40MiB"
min_alloc_objects = 2

[process.sites."ns::Vec<T>::push"]
max_faults = 100
"#,
    )
    .unwrap();
    let a = &file.groups[0].assertions;
    assert_eq!(a.len(), 3);
    let inuse = a.iter().find(|a| a.text.starts_with("max_inuse")).unwrap();
    assert_eq!(inuse.site.as_deref(), Some("grow_brk"));
    assert_eq!(inuse.phase, None);
    assert_eq!(
        inuse.test,
        Test::Limit {
            figure: "inuse_space".into(),
            op: Op::AtMost,
            limit: 40 << 20,
            unit: Unit::Bytes
        }
    );
    let faults = a.iter().find(|a| a.text.starts_with("max_faults")).unwrap();
    assert_eq!(faults.site.as_deref(), Some("ns::Vec<T>::push"));
    assert!(matches!(
        &faults.test,
        Test::Limit {
            unit: Unit::Count,
            limit: 100,
            ..
        }
    ));
}

#[test]
fn site_mistakes_are_errors_not_panics() {
    let head = "[[process]]\ncomm = \"x\"\n";
    for (body, expect) in [
        (
            "[process.sites.f]\nmax_rss = 1\n",
            "unknown call-site assertion `max_rss`",
        ),
        (
            "[process.sites.f]\nmax_inuse_space = 5\nno_failed_mmap = true\n",
            "unknown",
        ),
        ("[process.sites.f]\nmax_faults = \"3MiB\"\n", "is a count"),
        (
            "[process.sites.f]\nmax_alloc_space = -1\n",
            "cannot be negative",
        ),
        ("[process.sites.f]\n", "no assertions for site `f`"),
        ("[process.sites]\nf = 1\n", "is not a site"),
        (
            "sites = 3\n",
            "write sites as `[process.sites.NAME]` tables",
        ),
        ("[process.sites.\"a\\nb\"]\nmax_faults = 1\n", "site name"),
        ("[process.sites.\"\"]\nmax_faults = 1\n", "site name"),
    ] {
        let e = err(&format!("{head}{body}"));
        assert!(e.contains(expect), "{body:?}: {e}");
    }
    let long = "f".repeat(300);
    assert!(err(&format!("{head}[process.sites.{long}]\nmax_faults = 1\n")).contains("site name"));
    // [tree] has no sites.
    assert!(err("[tree.sites.f]\nmax_faults = 1\n").contains("unknown assertion"));
    // Arbitrary bytes around the grammar: errors, never a panic.
    for text in [
        "[process.sites.\u{0}]",
        "[[process]]\ncomm=\"x\"\n[process.sites.f]\nmax_inuse_space=\"\u{202e}9EiB\"",
        "[[process]]\ncomm=\"x\"\n[process.sites.f]\nmax_inuse_space=\"99999999999999999999GiB\"",
        "[[process]]\ncomm=\"x\"\n[[process.sites.f]]\nmax_faults=1",
        "[[process]]\ncomm=\"x\"\n[process.sites.f.g]\nmax_faults=1",
    ] {
        let _ = parse("c.toml", text);
    }
}
