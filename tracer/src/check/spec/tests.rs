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
