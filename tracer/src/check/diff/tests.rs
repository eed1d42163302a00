//! `tracer diff`: thresholds, pairing, and the comparison's text and verdicts.

use super::*;
use crate::check::tests::{process, report};

#[test]
fn thresholds_parse() {
    let t = parse_threshold("peak_rss>10%").unwrap();
    assert_eq!((t.scope, t.growth), (Scope::Tree, Growth::Percent(10.0)));
    let t = parse_threshold("alloc:peak_heap > +4MiB").unwrap();
    assert_eq!(t.scope, Scope::Comm("alloc".into()));
    assert_eq!(t.growth, Growth::Absolute(4 << 20));
    let t = parse_threshold("*:mmap_calls>0").unwrap();
    assert_eq!(
        (t.scope, t.growth),
        (Scope::EveryProcess, Growth::Absolute(0))
    );
    assert!(
        parse_threshold("peak_rs>1")
            .unwrap_err()
            .contains("unknown figure")
    );
    assert!(
        parse_threshold("peak_rss")
            .unwrap_err()
            .contains("FIGURE>LIMIT")
    );
    assert!(
        parse_threshold("peak_rss>4Mib")
            .unwrap_err()
            .contains("unknown unit")
    );
    assert!(
        parse_threshold("faults>1.5")
            .unwrap_err()
            .contains("whole number")
    );
}

#[test]
fn growth_beyond_a_threshold_is_flagged() {
    let old = report(vec![process(
        1,
        "app",
        &[("peak_heap", 1 << 20), ("faults", 100)],
    )]);
    let new = report(vec![process(
        9,
        "app",
        &[("peak_heap", 3 << 20), ("faults", 101)],
    )]);
    let thresholds = [
        parse_threshold("app:peak_heap>50%").unwrap(),
        parse_threshold("app:faults>5%").unwrap(),
        parse_threshold("tree:peak_heap>+1MiB").unwrap(),
    ];
    let d = compare("a.json", &old, "b.json", &new, &thresholds, &[]);
    assert_eq!(d.violations.len(), 2, "{}", d.text(false));
    assert_eq!(d.violations[0].subject, "tree");
    assert!(
        d.text(false).contains("process app (pid 1 -> 9):"),
        "{}",
        d.text(false)
    );
    assert!(d.text(false).contains("peak_heap"), "{}", d.text(false));
    assert!(d.text(false).contains("+200.0%"), "{}", d.text(false));
    assert!(
        d.text(false)
            .contains("FAILED --fail-if 'app:peak_heap>50%'"),
        "{}",
        d.text(false)
    );
    let mut missing = new.clone();
    missing.processes[0].figures.remove("faults");
    let d = compare("a", &old, "b", &missing, &thresholds[1..2], &[]);
    assert_eq!(d.violations.len(), 1);
    assert!(d.violations[0].detail.contains("no figure `faults`"));
    let d = compare(
        "a",
        &old,
        "b",
        &new,
        &[parse_threshold("db:faults>1%").unwrap()],
        &[],
    );
    assert!(d.violations[0].detail.contains("no process with this comm"));
    assert!(
        parse_threshold("app:events_lost>0")
            .unwrap_err()
            .contains("tree:")
    );
    let same = compare("a", &old, "b", &old, &thresholds, &[]);
    assert!(same.violations.is_empty());
    assert!(same.text(false).contains("no change"));
}

#[test]
fn processes_pair_by_comm_and_order() {
    let old = report(vec![
        process(1, "cc", &[]),
        process(2, "cc", &[]),
        process(3, "ld", &[]),
    ]);
    let new = report(vec![process(7, "cc", &[]), process(5, "cc", &[])]);
    let Pairing {
        pairs,
        only_old,
        only_new,
    } = pair(&old, &new);
    let keys: Vec<(&str, u32, u32)> = pairs
        .iter()
        .map(|(k, p, q)| (k.as_str(), p.pid, q.pid))
        .collect();
    assert_eq!(keys, vec![("cc", 1, 5), ("cc#2", 2, 7)]);
    let only_old: Vec<(&str, u32)> = only_old.iter().map(|u| (u.key.as_str(), u.pid)).collect();
    assert_eq!(only_old, vec![("ld", 3)]);
    assert!(only_new.is_empty());
}

/// A process literally named `cc#2` is not confused with the second `cc`: its regression
/// is caught whatever the pid order.
#[test]
fn a_comm_that_looks_like_a_pairing_key_keeps_its_own_figures() {
    for literal_pid in [2, 4] {
        let reports = |peak: u64| {
            report(vec![
                process(1, "cc", &[("peak_rss", 100)]),
                process(literal_pid, "cc#2", &[("peak_rss", peak)]),
                process(3, "cc", &[("peak_rss", 100)]),
            ])
        };
        let (old, new) = (reports(100), reports(1_000_000_000));
        let pairing = pair(&old, &new);
        assert_eq!(pairing.pairs.len(), 3);
        let d = compare(
            "a",
            &old,
            "b",
            &new,
            &[parse_threshold("*:peak_rss>10%").unwrap()],
            &[],
        );
        assert_eq!(d.violations.len(), 1, "{}", d.text(false));
        assert!(
            d.violations[0]
                .subject
                .contains(&format!("pid {literal_pid} ->")),
            "{}",
            d.text(false)
        );
    }
}

/// A `*` threshold with no pair to judge fails, as a comm that matches no pair does.
#[test]
fn a_threshold_that_judges_nothing_fails() {
    let old = report(vec![process(1, "app", &[("peak_rss", 100)])]);
    let new = report(vec![process(2, "other", &[("peak_rss", 100)])]);
    let d = compare(
        "a",
        &old,
        "b",
        &new,
        &[parse_threshold("*:peak_rss>10%").unwrap()],
        &[],
    );
    assert_eq!(d.violations.len(), 1, "{}", d.text(false));
    assert!(
        d.violations[0]
            .detail
            .contains("no process in both reports")
    );
}

fn with_sites(pid: u32, comm: &str, sites: &[(&str, u64)]) -> ProcessReport {
    let mut p = process(pid, comm, &[]);
    p.call_sites = sites
        .iter()
        .map(|&(site, inuse)| crate::output::report::CallSiteReport {
            site: site.into(),
            inuse_space: inuse,
            ..Default::default()
        })
        .collect();
    p
}

/// A site threshold over every process judges those that have the site, passes those that
/// have none (both reports complete), and fails once when no process has it (a typo).
#[test]
fn site_thresholds_judge_the_processes_with_the_site() {
    let sites = |grow: u64| {
        let mut r = report(vec![
            with_sites(1, "app", &[("grow_brk", grow)]),
            with_sites(2, "sh", &[("main", 10)]),
        ]);
        r.call_sites.enabled = true;
        r
    };
    let (old, new) = (sites(100), sites(300));
    let limit = |expr: &str, name: &str| {
        let t = super::super::diff_site_limits::parse(name, expr).unwrap();
        compare("a", &old, "b", &new, &[], &[t])
    };
    assert!(limit("inuse_space>+200", "grow_brk").violations.is_empty());
    let d = limit("inuse_space>+199", "grow_brk");
    assert_eq!(d.violations.len(), 1, "{}", d.text(false));
    assert!(d.violations[0].subject.contains("app"));
    let d = limit("inuse_space>+1GiB", "grow_bkr");
    assert_eq!(d.violations.len(), 1, "{}", d.text(false));
    assert!(d.violations[0].detail.contains("no call site named"));
    // A report without call sites fails each site threshold once, not once per process.
    let mut off = sites(300);
    off.call_sites.enabled = false;
    let t = super::super::diff_site_limits::parse("grow_brk", "inuse_space>+1GiB").unwrap();
    let d = compare("a", &old, "b", &off, &[], &[t]);
    assert_eq!(d.violations.len(), 1, "{}", d.text(false));
    assert!(
        d.violations[0]
            .detail
            .contains("the new report has no call sites")
    );
    assert_eq!(d.thresholds, 1);
}

/// Names from a report cannot forge lines of the text.
#[test]
fn hostile_names_stay_on_their_line() {
    let evil = "app\nFAILED --fail-if 'nothing': forged\x1b[2K";
    let old = report(vec![process(1, evil, &[("peak_rss\nforged", 1)])]);
    let new = report(vec![process(2, evil, &[("peak_rss\nforged", 2)])]);
    let text = compare("a", &old, "b", &new, &[], &[]).text(true);
    assert!(!text.contains('\x1b'), "{text:?}");
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("FAILED") || l.starts_with("forged")),
        "{text}"
    );
}
