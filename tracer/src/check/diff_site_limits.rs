//! `tracer diff --fail-if-site NAME EXPR`: thresholds on the growth of call sites (`--stacks`)
//! between two reports, per pair of processes. The sites measured are those whose name
//! contains NAME, summed, as in a check file's `[process.sites.NAME]`. Pure.

use std::collections::BTreeMap;

use crate::output::figures::Unit;
use crate::output::report::{ProcessReport, Report};

use super::growth::{Change, Growth, Scope, Violation, format_change, parse_growth};
use super::sites::{NAMED, SITE_FIGURES, figure_of, off_reason, quoted, valid_site_name};

/// `--fail-if-site NAME [SCOPE:]FIGURE>LIMIT`.
#[derive(Clone, Debug, PartialEq)]
pub struct SiteThreshold {
    /// The option as given, for messages.
    pub text: String,
    pub site: String,
    /// A comm, or every paired process (the default): sites belong to processes.
    pub scope: Scope,
    pub figure: &'static str,
    pub growth: Growth,
}

/// Parses NAME and `alloc_space>+1MiB`, `myapp:inuse_space>10%`, `*:faults>+1000`.
pub fn parse(site: &str, expr: &str) -> Result<SiteThreshold, String> {
    let text = format!("--fail-if-site {site:?} '{}'", expr.escape_debug());
    if !valid_site_name(site) {
        return Err(format!("{text}: a site name is 1 to 256 bytes on one line"));
    }
    let (lhs, limit) = expr.split_once('>').ok_or_else(|| {
        format!("{text}: write FIGURE>LIMIT, e.g. `inuse_space>+1MiB` or `myapp:faults>10%`")
    })?;
    let lhs = lhs.trim();
    let (scope, figure) = match lhs.rsplit_once(':') {
        None => (Scope::EveryProcess, lhs),
        Some(("*", f)) => (Scope::EveryProcess, f),
        Some(("tree", _)) => {
            return Err(format!(
                "{text}: call sites belong to processes: give a comm or `*`, not `tree`"
            ));
        }
        Some((comm, f)) => (Scope::Comm(comm.to_string()), f),
    };
    let figure = SITE_FIGURES
        .iter()
        .copied()
        .find(|f| *f == figure)
        .ok_or_else(|| {
            format!(
                "{text}: `{figure}` is not a call-site figure ({})",
                SITE_FIGURES.join(", ")
            )
        })?;
    Ok(SiteThreshold {
        growth: parse_growth(&text, limit, unit_of(figure))?,
        text,
        site: site.to_string(),
        scope,
        figure,
    })
}

impl SiteThreshold {
    pub fn applies_to(&self, p: &ProcessReport) -> bool {
        match &self.scope {
            Scope::Comm(comm) => &p.comm == comm,
            _ => true,
        }
    }
}

/// Bytes for the `_space` figures, a count for the others.
fn unit_of(figure: &str) -> Unit {
    if figure.ends_with("_space") {
        Unit::Bytes
    } else {
        Unit::Count
    }
}

/// Why site thresholds cannot be judged at all: a report without call sites (a report-wide
/// failure, said once per threshold rather than once per process).
pub fn sites_off(old: &Report, new: &Report) -> Option<String> {
    [("old", old), ("new", new)]
        .into_iter()
        .find(|(_, r)| !r.call_sites.enabled)
        .map(|(which, r)| {
            format!(
                "the {which} report has no call sites ({}): --fail-if-site needs reports \
                 written with --stacks",
                off_reason(&r.call_sites)
            )
        })
}

/// The figure of each site of `r` whose name contains `site`.
fn matching<'r>(r: &'r ProcessReport, site: &str, figure: &str) -> BTreeMap<&'r str, u64> {
    let mut sites: BTreeMap<&str, u64> = BTreeMap::new();
    for s in r.call_sites.iter().filter(|s| s.site.contains(site)) {
        let sum = sites.entry(s.site.as_str()).or_default();
        *sum = sum.saturating_add(figure_of(s, figure));
    }
    sites
}

/// A site of `listed` that `other` lacks, when `other`'s report `r` left sites out: that site's
/// figure there is unknown.
fn first_unlisted<'a>(
    listed: &BTreeMap<&'a str, u64>,
    other: &BTreeMap<&str, u64>,
    r: &ProcessReport,
) -> Option<&'a str> {
    if r.call_sites_omitted == 0 {
        return None;
    }
    listed
        .keys()
        .find(|name| !other.contains_key(*name))
        .copied()
}

/// Checks one site threshold on a pair of processes (`p` of `old`, `q` of `new`); false when
/// neither report of the pair has a site of that name, both listing all their sites (the
/// caller fails a threshold that no pair has: a typo must not pass).
///
/// A site listed in one report and not in the other counts from zero only when that other
/// report lists all its sites: one left out of its top sites (`--report-sites`) has an
/// unknown figure, and a threshold must not pass on a guess.
pub fn check(
    t: &SiteThreshold,
    subject: &str,
    (old, p): (&Report, &ProcessReport),
    (new, q): (&Report, &ProcessReport),
    violations: &mut Vec<Violation>,
) -> bool {
    let fail = |detail: String, violations: &mut Vec<Violation>| {
        violations.push(Violation {
            threshold: t.text.clone(),
            subject: subject.to_string(),
            detail,
        });
        true
    };
    if let Some(detail) = sites_off(old, new) {
        return fail(detail, violations);
    }
    let (was, is) = (
        matching(p, &t.site, t.figure),
        matching(q, &t.site, t.figure),
    );
    let left_out = |which: &str, r: &ProcessReport, name: &str| {
        format!(
            "site {} is not among the {which} report's listed sites, which left {} smaller ones \
             out: its figure there is unknown (write both reports with a larger --report-sites)",
            quoted(name),
            r.call_sites_omitted
        )
    };
    if let Some(name) = first_unlisted(&was, &is, q) {
        return fail(left_out("new", q, name), violations);
    }
    if let Some(name) = first_unlisted(&is, &was, p) {
        return fail(left_out("old", p, name), violations);
    }
    if was.is_empty() && is.is_empty() {
        return match [("old", p), ("new", q)]
            .into_iter()
            .find(|(_, r)| r.call_sites_omitted > 0)
        {
            Some((which, r)) => fail(
                format!(
                    "no listed site named {}, but the {which} report left {} smaller sites out \
                     (write both reports with a larger --report-sites)",
                    quoted(&t.site),
                    r.call_sites_omitted
                ),
                violations,
            ),
            None => false,
        };
    }
    let change = Change {
        figure: t.figure.to_string(),
        old: was.values().fold(0u64, |a, v| a.saturating_add(*v)),
        new: is.values().fold(0u64, |a, v| a.saturating_add(*v)),
    };
    if change.exceeds(&t.growth) {
        let mut names: Vec<&str> = is.keys().chain(was.keys()).copied().collect();
        names.sort_unstable();
        names.dedup();
        let mut shown: Vec<String> = names.iter().take(NAMED).map(|n| quoted(n)).collect();
        if names.len() > NAMED {
            shown.push(format!("and {} more", names.len() - NAMED));
        }
        fail(
            format!(
                "{} (sites {})",
                format_change(&change, unit_of(t.figure)),
                shown.join(", ")
            ),
            violations,
        );
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::report::{CallSiteReport, CallSitesInfo};

    fn report(sites: &[(&str, u64)], omitted: u64) -> Report {
        Report {
            call_sites: CallSitesInfo {
                enabled: true,
                limit: 20,
                ..Default::default()
            },
            processes: vec![ProcessReport {
                comm: "app".into(),
                call_sites: sites
                    .iter()
                    .map(|&(site, inuse)| CallSiteReport {
                        site: site.into(),
                        inuse_space: inuse,
                        ..Default::default()
                    })
                    .collect(),
                call_sites_omitted: omitted,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    /// The violations of one threshold on the pair, and whether it found a site.
    fn judge(t: &str, name: &str, old: &Report, new: &Report) -> (Vec<Violation>, bool) {
        let t = parse(name, t).unwrap();
        let mut v = Vec::new();
        let found = check(
            &t,
            "process app",
            (old, &old.processes[0]),
            (new, &new.processes[0]),
            &mut v,
        );
        (v, found)
    }

    fn violations(t: &str, name: &str, old: &Report, new: &Report) -> Vec<Violation> {
        judge(t, name, old, new).0
    }

    #[test]
    fn thresholds_parse_with_scope_figure_and_unit() {
        let t = parse("grow_brk", "inuse_space>+1MiB").unwrap();
        assert_eq!(
            (t.scope, t.figure, t.growth),
            (
                Scope::EveryProcess,
                "inuse_space",
                Growth::Absolute(1 << 20)
            )
        );
        let t = parse("Vec<T>::push", "app:faults>10%").unwrap();
        assert_eq!(
            (t.scope, t.growth),
            (Scope::Comm("app".into()), Growth::Percent(10.0))
        );
        assert_eq!(
            parse("x", "*:alloc_objects>+5").unwrap().scope,
            Scope::EveryProcess
        );
        for (name, bad) in [
            ("x", "peak_rss>1"),
            ("x", "tree:inuse_space>1"),
            ("x", "inuse_space"),
            ("x", "inuse_space>lots"),
            ("", "inuse_space>1"),
            ("a\nb", "inuse_space>1"),
        ] {
            assert!(parse(name, bad).is_err(), "{name:?} {bad:?}");
        }
    }

    #[test]
    fn growth_of_the_matching_sites_is_judged() {
        let old = report(
            &[("grow_brk", 100), ("app::grow_brk_more", 10), ("other", 0)],
            0,
        );
        let grew = report(
            &[
                ("grow_brk", 200),
                ("app::grow_brk_more", 10),
                ("other", 1000),
            ],
            0,
        );
        assert!(violations("inuse_space>+100", "grow_brk", &old, &grew).is_empty());
        let v = violations("inuse_space>+99", "grow_brk", &old, &grew);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].detail.contains("\"app::grow_brk_more\""), "{v:?}");
        // A site new in NEW counts from zero when OLD listed all its sites.
        let new_site = report(&[("grow_brk", 100), ("fresh", 1)], 0);
        assert_eq!(
            violations("inuse_space>+0", "fresh", &old, &new_site).len(),
            1
        );
        // Names from a report are quoted and cut in messages.
        let long = "grow_brk".repeat(100);
        let v = violations(
            "inuse_space>+0",
            "grow_brk",
            &old,
            &report(&[(&long, 500)], 0),
        );
        assert!(v[0].detail.len() < 600, "{v:?}");
    }

    #[test]
    fn unknown_figures_fail_rather_than_pass() {
        let old = report(&[("grow_brk", 100)], 0);
        // In neither complete report: nothing to judge here, and no site found (the caller
        // fails a threshold that found none in any pair).
        assert_eq!(
            judge("inuse_space>+0", "grow_bkr", &old, &old),
            (vec![], false)
        );
        // In neither report, but one left sites out: unknown.
        let cut = report(&[("big", 1000)], 3);
        let (v, _) = judge("inuse_space>+0", "grow_brk", &cut, &cut);
        assert!(v[0].detail.contains("left 3 smaller sites out"), "{v:?}");
        // One of several matching sites fell out of the new report's top sites: the sum
        // there would look like a shrink.
        let both = report(&[("grow_brk", 5), ("grow_brk_more", 10)], 0);
        let one = report(&[("grow_brk_more", 10), ("big", 1000)], 2);
        let v = violations("inuse_space>+1", "grow_brk", &both, &one);
        assert!(
            v.len() == 1
                && v[0]
                    .detail
                    .contains("\"grow_brk\" is not among the new report"),
            "{v:?}"
        );
        // Left out of the old report's top sites: its old figure is unknown.
        let v = violations("inuse_space>10%", "grow_brk", &cut, &old);
        assert!(v[0].detail.contains("old report"), "{v:?}");
        // Call sites off in one report.
        let mut off = report(&[], 0);
        off.call_sites.enabled = false;
        let v = violations("inuse_space>10%", "grow_brk", &old, &off);
        assert!(v[0].detail.contains("--stacks"), "{v:?}");
    }
}
