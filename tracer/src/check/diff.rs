//! `tracer diff OLD NEW`: what grew between two reports (say main's and a pull request's), and
//! thresholds (`--fail-if`, `--fail-if-site`) that fail the job. Pure: reports in, a
//! comparison out (text or JSON).

use std::{collections::BTreeMap, fmt::Write as _};

use serde::Serialize;

use super::diff_site_limits::{SiteThreshold, check as site_check, sites_off as site_check_off};
use super::diff_sites::{SitesGrown, sites_grown};
pub use super::growth::{Change, Growth, Scope, Violation};
use super::growth::{format_change, parse_growth};
use crate::{
    output::figures::{self, Unit},
    output::report::{ProcessReport, Report},
};

/// `--fail-if [SCOPE:]FIGURE>LIMIT`.
#[derive(Clone, Debug, PartialEq)]
pub struct Threshold {
    pub text: String,
    pub scope: Scope,
    pub figure: String,
    pub growth: Growth,
}

/// Parses `peak_rss>10%`, `tree:faults>1000`, `myprog:peak_heap>+4MiB`, `*:mmap_calls>0`.
pub fn parse_threshold(text: &str) -> Result<Threshold, String> {
    let (lhs, limit) = text.split_once('>').ok_or_else(|| {
        format!("`{text}`: write FIGURE>LIMIT, e.g. `peak_rss>10%` or `tree:faults>+1000`")
    })?;
    let lhs = lhs.trim();
    let (scope, figure) = match lhs.rsplit_once(':') {
        None => (Scope::Tree, lhs),
        Some(("tree", f)) => (Scope::Tree, f),
        Some(("*", f)) => (Scope::EveryProcess, f),
        Some((comm, f)) => (Scope::Comm(comm.to_string()), f),
    };
    let unit = figures::unit_of(figure).ok_or_else(|| {
        format!("`{text}`: unknown figure `{figure}` (see \"Check files\" in docs/ci.md)")
    })?;
    if scope != Scope::Tree && figures::TREE_FIGURES.iter().any(|f| f.0 == figure) {
        return Err(format!(
            "`{text}`: `{figure}` is a figure of the whole tree: write `tree:{figure}>...`"
        ));
    }
    if figures::PHASE_FIGURES.iter().any(|f| f.0 == figure) && figures::find(figure).is_none() {
        return Err(format!(
            "`{text}`: `{figure}` is a phase figure; diff compares report figures"
        ));
    }
    Ok(Threshold {
        text: text.to_string(),
        scope,
        figure: figure.to_string(),
        growth: parse_growth(text, limit, unit)?,
    })
}

/// The processes of two reports, paired.
pub struct Pairing<'a> {
    /// Key (comm, `comm#n` for the n-th), old and new process.
    pub pairs: Vec<(String, &'a ProcessReport, &'a ProcessReport)>,
    pub only_old: Vec<Unpaired>,
    pub only_new: Vec<Unpaired>,
}

/// Processes of the two reports paired by comm and order of pid (the n-th `cc1` of the old run
/// with the n-th of the new one): pids differ between runs. The pairing key is the pair
/// (comm, n), never the text `comm#n`: a process may well be named `cc#2` itself.
pub fn pair<'a>(old: &'a Report, new: &'a Report) -> Pairing<'a> {
    type Key<'r> = (&'r str, usize);
    let keyed = |r: &'a Report| {
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        let mut out: BTreeMap<Key<'a>, &'a ProcessReport> = BTreeMap::new();
        let mut by_pid: Vec<&ProcessReport> = r.processes.iter().collect();
        by_pid.sort_by_key(|p| p.pid);
        for p in by_pid {
            let n = seen.entry(&p.comm).or_default();
            *n += 1;
            out.insert((p.comm.as_str(), *n), p);
        }
        out
    };
    let show = |&(comm, n): &Key| {
        if n == 1 {
            comm.to_string()
        } else {
            format!("{comm}#{n}")
        }
    };
    let (old_keyed, new_keyed) = (keyed(old), keyed(new));
    let mut pairs = Vec::new();
    let mut only_old = Vec::new();
    for (key, p) in &old_keyed {
        match new_keyed.get(key) {
            Some(q) => pairs.push((show(key), *p, *q)),
            None => only_old.push(Unpaired {
                key: show(key),
                pid: p.pid,
            }),
        }
    }
    let only_new = new_keyed
        .iter()
        .filter(|(k, _)| !old_keyed.contains_key(*k))
        .map(|(k, p)| Unpaired {
            key: show(k),
            pid: p.pid,
        })
        .collect();
    Pairing {
        pairs,
        only_old,
        only_new,
    }
}

fn changes(old: &BTreeMap<String, u64>, new: &BTreeMap<String, u64>) -> Vec<Change> {
    old.iter()
        .filter_map(|(figure, &o)| {
            new.get(figure).map(|&n| Change {
                figure: figure.clone(),
                old: o,
                new: n,
            })
        })
        .collect()
}

/// Two reports compared: every figure of the tree and of each pair of processes, the sites
/// that grew, and the thresholds exceeded. `text` renders it for people, serde as JSON
/// (`tracer diff --json`, docs/ci.md).
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub old: String,
    pub new: String,
    pub tree: Vec<Change>,
    pub processes: Vec<ProcessComparison>,
    pub only_old: Vec<Unpaired>,
    pub only_new: Vec<Unpaired>,
    pub events_lost: EventsLost,
    /// Thresholds given (`--fail-if` and `--fail-if-site`).
    pub thresholds: usize,
    pub violations: Vec<Violation>,
}

/// A pair of processes: `key` is the comm, `comm#n` for the n-th of that comm.
#[derive(Clone, Debug, Serialize)]
pub struct ProcessComparison {
    pub key: String,
    pub old_pid: u32,
    pub new_pid: u32,
    pub figures: Vec<Change>,
    /// `None` when neither report has call sites.
    pub call_sites: Option<SitesGrown>,
}

/// A process of one report only.
#[derive(Clone, Debug, Serialize)]
pub struct Unpaired {
    pub key: String,
    pub pid: u32,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct EventsLost {
    pub old: u64,
    pub new: u64,
}

/// Compares two reports under the thresholds.
pub fn compare(
    old_name: &str,
    old: &Report,
    new_name: &str,
    new: &Report,
    thresholds: &[Threshold],
    site_thresholds: &[SiteThreshold],
) -> Comparison {
    let mut violations = Vec::new();
    for t in thresholds.iter().filter(|t| t.scope == Scope::Tree) {
        check(
            t,
            "tree",
            &old.totals.figures,
            &new.totals.figures,
            &mut violations,
        );
    }
    let Pairing {
        pairs,
        only_old,
        only_new,
    } = pair(old, new);
    let mut processes = Vec::new();
    // Per site threshold: whether some pair it applies to has a site of its name. Without call
    // sites in a report, each fails once, and no pair is judged.
    let given = thresholds.len() + site_thresholds.len();
    let sites_off = site_check_off(old, new);
    if let Some(detail) = &sites_off {
        for t in site_thresholds {
            violations.push(Violation {
                threshold: t.text.clone(),
                subject: "call sites".to_string(),
                detail: detail.clone(),
            });
        }
    }
    let site_thresholds = if sites_off.is_some() {
        &[]
    } else {
        site_thresholds
    };
    let mut site_found = vec![false; site_thresholds.len()];
    for (key, p, q) in &pairs {
        let subject = format!("process {key} (pid {} -> {})", p.pid, q.pid);
        for t in thresholds {
            let applies = match &t.scope {
                Scope::Tree => false,
                Scope::EveryProcess => true,
                Scope::Comm(comm) => &p.comm == comm,
            };
            if applies {
                check(t, &subject, &p.figures, &q.figures, &mut violations);
            }
        }
        for (t, found) in site_thresholds.iter().zip(&mut site_found) {
            if t.applies_to(p) && site_check(t, &subject, (old, p), (new, q), &mut violations) {
                *found = true;
            }
        }
        processes.push(ProcessComparison {
            key: key.clone(),
            old_pid: p.pid,
            new_pid: q.pid,
            figures: changes(&p.figures, &q.figures),
            call_sites: sites_grown(p, q),
        });
    }
    let scopes = thresholds
        .iter()
        .map(|t| (&t.scope, format!("--fail-if '{}'", t.text)))
        .chain(site_thresholds.iter().map(|t| (&t.scope, t.text.clone())));
    // A threshold that judged nothing fails: it would pass every pull request.
    for (scope, threshold) in scopes {
        let (subject, detail) = match scope {
            Scope::Comm(comm) if !pairs.iter().any(|(_, p, _)| &p.comm == comm) => (
                format!("process {comm}"),
                "no process with this comm in both reports",
            ),
            Scope::EveryProcess if pairs.is_empty() => {
                ("processes".to_string(), "no process in both reports")
            }
            _ => continue,
        };
        violations.push(Violation {
            threshold,
            subject,
            detail: detail.to_string(),
        });
    }
    for (t, _) in site_thresholds
        .iter()
        .zip(&site_found)
        .filter(|(t, found)| !**found && pairs.iter().any(|(_, p, _)| t.applies_to(p)))
    {
        violations.push(Violation {
            threshold: t.text.clone(),
            subject: "call sites".to_string(),
            detail: format!(
                "no call site named {:?} in the processes it applies to, in either report",
                t.site
            ),
        });
    }
    Comparison {
        old: old_name.to_string(),
        new: new_name.to_string(),
        tree: changes(&old.totals.figures, &new.totals.figures),
        processes,
        only_old,
        only_new,
        events_lost: EventsLost {
            old: old.events.lost_total,
            new: new.events.lost_total,
        },
        thresholds: given,
        violations,
    }
}

impl Comparison {
    /// The comparison for people; `all` shows unchanged figures too.
    pub fn text(&self, all: bool) -> String {
        let mut text = String::new();
        let _ = writeln!(text, "tracer diff: {} -> {}", self.old, self.new);
        section(&mut text, "tree", &self.tree, all);
        for p in &self.processes {
            let subject = format!(
                "process {} (pid {} -> {})",
                shown_name(&p.key),
                p.old_pid,
                p.new_pid
            );
            section(&mut text, &subject, &p.figures, all);
            if let Some(sites) = &p.call_sites {
                super::diff_sites::section(&mut text, sites);
            }
        }
        let unpaired = |list: &[Unpaired]| {
            list.iter()
                .map(|u| format!("{} (pid {})", shown_name(&u.key), u.pid))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !self.only_old.is_empty() {
            let _ = writeln!(text, "only in {}: {}", self.old, unpaired(&self.only_old));
        }
        if !self.only_new.is_empty() {
            let _ = writeln!(text, "only in {}: {}", self.new, unpaired(&self.only_new));
        }
        let lost = self.events_lost;
        if lost.old > 0 || lost.new > 0 {
            let _ = writeln!(
                text,
                "WARNING: events were lost (old {}, new {}): the figures are incomplete",
                lost.old, lost.new
            );
        }
        if self.thresholds == 0 {
            let _ = writeln!(text, "no --fail-if thresholds given");
        } else if self.violations.is_empty() {
            let _ = writeln!(text, "within every threshold ({})", self.thresholds);
        } else {
            for v in &self.violations {
                let _ = writeln!(
                    text,
                    "FAILED {}: {}: {}",
                    v.threshold,
                    shown_name(&v.subject),
                    v.detail
                );
            }
        }
        text
    }
}

/// Longest comm, pairing key or figure name shown in the text (a report may hold anything).
const SHOWN: usize = 256;

/// A name from a report as the text shows it: control characters escaped (a report must not
/// forge or erase lines of a CI log), cut to `SHOWN` characters. JSON escapes by itself.
fn shown_name(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars().take(SHOWN) {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Checks one threshold on one subject; a figure missing from either report is a violation
/// (a threshold that silently checks nothing would pass every pull request).
fn check(
    t: &Threshold,
    subject: &str,
    old: &BTreeMap<String, u64>,
    new: &BTreeMap<String, u64>,
    violations: &mut Vec<Violation>,
) {
    let unit = figures::unit_of(&t.figure).unwrap_or(Unit::Count);
    let detail = match (old.get(&t.figure), new.get(&t.figure)) {
        (Some(&o), Some(&n)) => {
            let c = Change {
                figure: t.figure.clone(),
                old: o,
                new: n,
            };
            if !c.exceeds(&t.growth) {
                return;
            }
            format_change(&c, unit)
        }
        (None, _) => format!("the old report has no figure `{}`", t.figure),
        (_, None) => format!("the new report has no figure `{}`", t.figure),
    };
    violations.push(Violation {
        threshold: format!("--fail-if '{}'", t.text),
        subject: subject.to_string(),
        detail,
    });
}

fn section(text: &mut String, subject: &str, changes: &[Change], all: bool) {
    let shown: Vec<&Change> = changes.iter().filter(|c| all || c.old != c.new).collect();
    let _ = writeln!(text, "{subject}:");
    if shown.is_empty() {
        let _ = writeln!(text, "  no change");
        return;
    }
    // Growth first, largest relative growth at the top.
    let mut shown = shown;
    shown.sort_by(|a, b| {
        let key = |c: &Change| {
            c.percent()
                .unwrap_or(if c.new > 0 { f64::MAX } else { 0.0 })
        };
        key(b).total_cmp(&key(a))
    });
    for c in shown {
        let unit = figures::unit_of(&c.figure).unwrap_or(Unit::Count);
        let _ = writeln!(
            text,
            "  {:<26} {}",
            shown_name(&c.figure),
            format_change(c, unit)
        );
    }
}

#[cfg(test)]
mod tests;
