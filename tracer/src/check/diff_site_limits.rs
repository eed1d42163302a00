//! `tracer diff --fail-if-site NAME EXPR`: thresholds on the growth of call sites (`--stacks`)
//! between two reports, per pair of processes. The sites measured are those whose name
//! contains NAME, summed, as in a check file's `[process.sites.NAME]`. Pure.

use crate::output::figures::Unit;
use crate::output::report::{ProcessReport, Report};

use super::growth::{Change, Growth, Scope, Violation, format_change, parse_growth};
use super::sites::{SITE_FIGURES, measure, valid_site_name};

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

/// Checks one site threshold on a pair of processes (`p` of `old`, `q` of `new`). A site
/// missing from a report counts from zero only when that report lists all its sites: one
/// left out of a report's top sites has an unknown figure, and a threshold must not pass on
/// a guess (nor on a typo: a name that neither report has fails).
pub fn check(
    t: &SiteThreshold,
    subject: &str,
    (old, p): (&Report, &ProcessReport),
    (new, q): (&Report, &ProcessReport),
    violations: &mut Vec<Violation>,
) {
    let fail = |detail: String, violations: &mut Vec<Violation>| {
        violations.push(Violation {
            threshold: t.text.clone(),
            subject: subject.to_string(),
            detail,
        });
    };
    let was = measure(&old.call_sites, p, &t.site, t.figure);
    let is = measure(&new.call_sites, q, &t.site, t.figure);
    // A report that lists every site of its process has none of that name: zero.
    let known = |m: Result<(u64, String), String>, report: &Report, r: &ProcessReport| match m {
        Ok((value, _)) => Ok(value),
        Err(_) if report.call_sites.enabled && r.call_sites_omitted == 0 => Ok(0),
        Err(e) => Err(e),
    };
    let names = match (&was, &is) {
        (_, Ok((_, names))) | (Ok((_, names)), _) => names.clone(),
        (Err(_), Err(e)) => return fail(format!("in neither report: {e}"), violations),
    };
    let (old_value, new_value) = match (known(was, old, p), known(is, new, q)) {
        (Ok(o), Ok(n)) => (o, n),
        (Err(e), _) => return fail(format!("the old report: {e}"), violations),
        (_, Err(e)) => return fail(format!("the new report: {e}"), violations),
    };
    let change = Change {
        figure: t.figure.to_string(),
        old: old_value,
        new: new_value,
    };
    if change.exceeds(&t.growth) {
        fail(
            format!(
                "{} (sites {names})",
                format_change(&change, unit_of(t.figure))
            ),
            violations,
        );
    }
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

    fn violations(t: &str, name: &str, old: &Report, new: &Report) -> Vec<Violation> {
        let t = parse(name, t).unwrap();
        let mut v = Vec::new();
        check(
            &t,
            "process app",
            (old, &old.processes[0]),
            (new, &new.processes[0]),
            &mut v,
        );
        v
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
        assert!(v[0].detail.contains("grow_brk_more"), "{v:?}");
        // A site new in NEW counts from zero when OLD listed all its sites.
        let new_site = report(&[("grow_brk", 100), ("fresh", 1)], 0);
        assert_eq!(
            violations("inuse_space>+0", "fresh", &old, &new_site).len(),
            1
        );
    }

    #[test]
    fn unknown_figures_fail_rather_than_pass() {
        let old = report(&[("grow_brk", 100)], 0);
        // A typo: in neither report.
        assert_eq!(
            violations("inuse_space>+0", "grow_bkr", &old, &old).len(),
            1
        );
        // Left out of the old report's top sites: its old figure is unknown.
        let cut = report(&[("big", 1000)], 3);
        let v = violations("inuse_space>10%", "grow_brk", &cut, &old);
        assert!(v[0].detail.contains("old report"), "{v:?}");
        // Call sites off in one report.
        let mut off = report(&[], 0);
        off.call_sites.enabled = false;
        let v = violations("inuse_space>10%", "grow_brk", &old, &off);
        assert!(v[0].detail.contains("--stacks"), "{v:?}");
    }
}
