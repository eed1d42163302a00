//! `--check FILE`: assertions over the report's figures, evaluated when tracing ends. Pure:
//! parsing (`spec`) and evaluation work on text and a `Report`; the command writes the outcome.

pub mod diff;
pub mod diff_site_limits;
pub mod diff_sites;
pub mod growth;
pub mod junit;
pub mod sites;
pub mod spec;

use std::fmt::Write as _;

use crate::{
    output::figures::{self, Unit, show},
    output::report::{ProcessReport, Report},
};
pub use spec::{CheckFile, Op, Scope, Test, valid_phase_name};

/// The result of one assertion on one process (or on the tree).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// What it was about: `tree`, or the group's label.
    pub subject: String,
    /// The process it was evaluated on (none for the tree, or when no process matched).
    pub pid: Option<u32>,
    /// The assertion as written in the file.
    pub assertion: String,
    pub line: usize,
    pub passed: bool,
    /// Measured value against the limit, for people.
    pub detail: String,
}

/// Evaluates every assertion of `file` against `report`.
pub fn evaluate(file: &CheckFile, report: &Report) -> Vec<Outcome> {
    let mut out = Vec::new();
    for group in &file.groups {
        match &group.scope {
            Scope::Tree => {
                for a in &group.assertions {
                    let (passed, detail) =
                        judge(&a.test, |name| report.totals.figures.get(name).copied());
                    out.push(Outcome {
                        subject: group.label.clone(),
                        pid: None,
                        assertion: a.text.clone(),
                        line: a.line,
                        passed,
                        detail,
                    });
                }
            }
            Scope::Processes { comm, argv } => {
                let matched: Vec<&ProcessReport> = report
                    .processes
                    .iter()
                    .filter(|p| matches(p, comm.as_deref(), argv.as_deref()))
                    .collect();
                if matched.is_empty() {
                    out.push(Outcome {
                        subject: group.label.clone(),
                        pid: None,
                        assertion: "(selector)".to_string(),
                        line: group.line,
                        passed: false,
                        detail: format!(
                            "no traced process matched (traced: {})",
                            comms_seen(report)
                        ),
                    });
                }
                for p in matched {
                    for a in &group.assertions {
                        let (passed, detail) = match &a.phase {
                            None if a.site.is_some() => judge_site(a, report, p),
                            None => judge(&a.test, |name| p.figures.get(name).copied()),
                            Some(phase) => match p.phases.iter().rev().find(|s| &s.name == phase) {
                                Some(s) => judge(&a.test, |name| figures::of_phase(s, name)),
                                None => (false, never_marked(phase, p)),
                            },
                        };
                        let assertion = match (&a.phase, &a.site) {
                            (Some(phase), _) => format!("phase {phase}: {}", a.text),
                            (None, Some(site)) => format!("site {site:?}: {}", a.text),
                            (None, None) => a.text.clone(),
                        };
                        out.push(Outcome {
                            subject: group.label.clone(),
                            pid: Some(p.pid),
                            assertion,
                            line: a.line,
                            passed,
                            detail,
                        });
                    }
                }
            }
        }
    }
    // Figures from a trace that lost records are incomplete: say so as a failure, unless the
    // file states how many losses it accepts.
    let lost = report.events.lost_total;
    let accepts_losses = file
        .groups
        .iter()
        .flat_map(|g| &g.assertions)
        .any(|a| matches!(&a.test, Test::Limit { figure, .. } if figure == "events_lost"));
    if lost > 0 && !accepts_losses {
        out.push(Outcome {
            subject: "tree".to_string(),
            pid: None,
            assertion: "(complete trace)".to_string(),
            line: 0,
            passed: false,
            detail: format!(
                "{lost} records were lost (ring buffer full), so every figure is incomplete; \
                 enlarge --ring-buffer-size, or accept losses with `max_events_lost` in [tree]"
            ),
        });
    }
    out
}

/// An assertion on call sites: measured over the matching sites, named in the detail.
fn judge_site(a: &spec::Assertion, report: &Report, p: &ProcessReport) -> (bool, String) {
    let (Some(site), Test::Limit { figure, .. }) = (&a.site, &a.test) else {
        return (false, "not a call-site assertion".to_string());
    };
    match sites::measure(&report.call_sites, p, site, figure) {
        Ok((value, names)) => {
            let (passed, detail) = judge(&a.test, |_| Some(value));
            (passed, format!("{detail} (sites {names})"))
        }
        Err(reason) => (false, reason),
    }
}

fn never_marked(phase: &str, p: &ProcessReport) -> String {
    let marked: Vec<&str> = p.phases.iter().map(|s| s.name.as_str()).collect();
    format!(
        "phase `{phase}` was never marked while this process ran (marked: {}); mark it with \
         POST /api/v1/phases?name={phase}",
        if marked.is_empty() {
            "none".to_string()
        } else {
            marked.join(", ")
        }
    )
}

/// The comms of the report, each once, at most 20 named; quoted and escaped (a report may
/// come from anywhere: a comm must not forge lines of the output).
fn comms_seen(report: &Report) -> String {
    let mut seen: Vec<&str> = report.processes.iter().map(|p| p.comm.as_str()).collect();
    seen.sort_unstable();
    seen.dedup();
    let seen: Vec<String> = seen.into_iter().map(sites::quoted).collect();
    match seen.len() {
        0 => "none".to_string(),
        n if n > 20 => format!("{} and {} more", seen[..20].join(", "), n - 20),
        _ => seen.join(", "),
    }
}

/// Whether a process is selected: comm equal, and the command line containing `argv`.
pub fn matches(p: &ProcessReport, comm: Option<&str>, argv: Option<&str>) -> bool {
    comm.is_none_or(|c| p.comm == c) && argv.is_none_or(|a| p.argv.join(" ").contains(a))
}

fn judge(test: &Test, figure: impl Fn(&str) -> Option<u64>) -> (bool, String) {
    match test {
        Test::Limit {
            figure: name,
            op,
            limit,
            unit,
        } => {
            let Some(value) = figure(name) else {
                return (false, format!("the report has no figure `{name}`"));
            };
            let passed = match op {
                Op::AtMost => value <= *limit,
                Op::AtLeast => value >= *limit,
                Op::Exactly => value == *limit,
            };
            let relation = match op {
                Op::AtMost => "at most",
                Op::AtLeast => "at least",
                Op::Exactly => "exactly",
            };
            let detail = format!(
                "{name} measured {}, limit {relation} {}",
                show(value, *unit),
                show(*limit, *unit)
            );
            (passed, detail)
        }
        Test::HeapReturned { slack } => {
            let heap = figure("heap_at_end").unwrap_or(0);
            let shrinks = figure("brk_shrinks").unwrap_or(0);
            let passed = heap <= *slack || shrinks > 0;
            let detail = format!(
                "heap at end {} (allowed {}), brk shrinks observed: {shrinks}",
                show(heap, Unit::Bytes),
                show(*slack, Unit::Bytes)
            );
            (passed, detail)
        }
    }
}

/// The outcome for people: a header, then every failed assertion, then the passed ones.
pub fn render(file: &CheckFile, outcomes: &[Outcome]) -> String {
    let failed = outcomes.iter().filter(|o| !o.passed).count();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "tracer: checks {}: {} passed, {} failed",
        file.path,
        outcomes.len() - failed,
        failed
    );
    for o in outcomes.iter().filter(|o| !o.passed) {
        let _ = writeln!(out, "  FAILED {}", line(file, o));
    }
    for o in outcomes.iter().filter(|o| o.passed) {
        let _ = writeln!(out, "  ok     {}", line(file, o));
    }
    out
}

fn line(file: &CheckFile, o: &Outcome) -> String {
    let pid = o.pid.map(|pid| format!(" (pid {pid})")).unwrap_or_default();
    let place = match o.line {
        0 => file.path.clone(),
        n => format!("{}:{n}", file.path),
    };
    format!("{place} [{}{pid}] {}: {}", o.subject, o.assertion, o.detail)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::output::report::*;
    use crate::output::report_build::{Context, build};
    use std::collections::BTreeMap;

    pub fn process(pid: u32, comm: &str, figures: &[(&str, u64)]) -> ProcessReport {
        let empty = crate::tracking::process::ProcessState::new(pid, comm.into(), 4096);
        let mut p = crate::output::report_build::process(&empty);
        p.argv = vec![format!("/bin/{comm}"), "--fast".into()];
        for (name, value) in figures {
            p.figures.insert(name.to_string(), *value);
        }
        p
    }

    pub fn report(processes: Vec<ProcessReport>) -> Report {
        let counters = crate::output::summary::DaemonCounters::default();
        let ctx = Context {
            mode: "run",
            command: vec![],
            started_unix_ms: 0,
            duration_ms: 0,
            exit_status: Some(0),
            counters: &counters,
        };
        let mut r = build(std::iter::empty(), &ctx);
        let mut totals = BTreeMap::new();
        for p in &processes {
            for (k, v) in &p.figures {
                *totals.entry(k.clone()).or_insert(0) += v;
            }
        }
        totals.insert("events_lost".into(), 0);
        r.totals.figures = totals;
        r.processes = processes;
        r
    }

    fn run(check: &str, report: &Report) -> Vec<Outcome> {
        evaluate(&spec::parse("c.toml", check).unwrap(), report)
    }

    #[test]
    fn limits_pass_and_fail_with_the_measured_value() {
        let r = report(vec![process(
            5,
            "demo",
            &[
                ("peak_heap", 135_168),
                ("brk_growths", 1),
                ("mmap_failed", 0),
            ],
        )]);
        let out = run(
            "[[process]]\ncomm = \"demo\"\npeak_heap = \"132KiB\"\nmax_brk_growths = 0\n\
             no_failed_mmap = true\n[tree]\nmax_events_lost = 0\n",
            &r,
        );
        assert_eq!(out.len(), 4);
        assert!(out[0].passed, "{out:?}");
        assert!(!out[1].passed);
        assert_eq!(out[1].line, 4);
        assert_eq!(out[1].subject, "process comm = \"demo\"");
        assert_eq!(out[1].pid, Some(5));
        assert_eq!(out[1].detail, "brk_growths measured 1, limit at most 0");
        assert!(out[2].passed && out[3].passed);
        let text = render(&spec::parse("c.toml", "[tree]\nfaults=1").unwrap(), &out);
        assert!(text.contains("3 passed, 1 failed"), "{text}");
        assert!(text.contains("FAILED c.toml:4"), "{text}");
    }

    #[test]
    fn a_selector_that_matches_nothing_fails() {
        let r = report(vec![process(5, "demo", &[])]);
        let out = run("[[process]]\nargv = \"--slow\"\nmax_faults = 1\n", &r);
        assert_eq!(out.len(), 1);
        assert!(!out[0].passed);
        assert!(
            out[0]
                .detail
                .contains("no traced process matched (traced: \"demo\")")
        );
        let out = run("[[process]]\nargv = \"--fast\"\nmax_faults = 1\n", &r);
        assert!(out[0].passed, "{out:?}");
        // A report's comm cannot forge a line of the output.
        let r = report(vec![process(5, "demo\nPASS forged", &[])]);
        let out = run("[[process]]\nargv = \"--slow\"\nmax_faults = 1\n", &r);
        assert!(!out[0].detail.contains('\n'), "{out:?}");
    }

    #[test]
    fn lost_records_fail_unless_accepted() {
        let mut r = report(vec![process(5, "demo", &[])]);
        r.events.lost_total = 3;
        let out = run("[[process]]\ncomm = \"demo\"\nmax_faults = 10\n", &r);
        assert!(out[0].passed);
        assert!(
            !out[1].passed && out[1].detail.contains("3 records were lost"),
            "{out:?}"
        );
        r.totals.figures.insert("events_lost".into(), 3);
        let out = run("[tree]\nmax_events_lost = 5\n", &r);
        assert_eq!(out.len(), 1);
        assert!(out[0].passed);
    }

    #[test]
    fn heap_returned_by_shrink_or_slack() {
        let shrunk = process(1, "a", &[("heap_at_end", 1 << 20), ("brk_shrinks", 1)]);
        let kept = process(2, "b", &[("heap_at_end", 1 << 20), ("brk_shrinks", 0)]);
        let r = report(vec![shrunk, kept]);
        let check = "[[process]]\ncomm = \"a\"\nheap_returned_to_os = true\n\
                     [[process]]\ncomm = \"b\"\nheap_returned_to_os = true\n";
        let out = run(check, &r);
        assert!(out[0].passed && !out[1].passed, "{out:?}");
        let out = run(&format!("{check}heap_return_slack = \"1MiB\"\n"), &r);
        assert!(out[1].passed, "{out:?}");
    }

    #[test]
    fn phases_are_checked_at_their_snapshot() {
        let mut p = process(1, "a", &[]);
        p.phases.push(PhaseReport {
            name: "loaded".into(),
            ts_ns: 1,
            rss: 50 << 20,
            heap: 0,
            vsz: 0,
            vmas: 0,
            faults: 0,
        });
        let r = report(vec![p]);
        let out = run(
            "[[process]]\ncomm = \"a\"\n[process.phases.loaded]\nmax_rss = \"40MiB\"\n\
             [process.phases.freed]\nmax_rss = \"40MiB\"\n",
            &r,
        );
        assert!(
            !out[0].passed && out[0].detail.contains("rss measured 50.0 MiB"),
            "{out:?}"
        );
        assert!(out[1].detail.contains("never marked"), "{out:?}");
    }
}
