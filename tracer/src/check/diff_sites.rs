//! `tracer diff`: the call sites (`--stacks`) that grew between two reports of a process, by
//! site name, the largest growth of bytes mapped first.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::output::figures::{Unit, show};
use crate::output::report::{CallSiteReport, ProcessReport};

/// Most grown sites shown per process.
pub const MAX_GROWN_SITES: usize = 10;

/// One site in both reports (a site absent from the old one counts from zero).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SiteChange {
    pub site: String,
    pub old_alloc: u64,
    pub new_alloc: u64,
    pub old_inuse: u64,
    pub new_inuse: u64,
}

fn delta(old: u64, new: u64) -> i128 {
    i128::from(new) - i128::from(old)
}

impl SiteChange {
    fn grew(&self) -> bool {
        self.new_alloc > self.old_alloc || self.new_inuse > self.old_inuse
    }
}

/// The sites of `new` whose `alloc_space` or `inuse_space` grew over `old`, largest growth of
/// `alloc_space` first (then of `inuse_space`, then by name), and how many more grew than the
/// `MAX_GROWN_SITES` returned.
pub fn grown(old: &ProcessReport, new: &ProcessReport) -> (Vec<SiteChange>, usize) {
    let by_name = |sites: &[CallSiteReport]| -> BTreeMap<String, (u64, u64)> {
        let mut m: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for s in sites {
            let e = m.entry(s.site.clone()).or_default();
            e.0 = e.0.saturating_add(s.alloc_space);
            e.1 = e.1.saturating_add(s.inuse_space);
        }
        m
    };
    let before = by_name(&old.call_sites);
    let mut list: Vec<SiteChange> = by_name(&new.call_sites)
        .into_iter()
        .map(|(site, (new_alloc, new_inuse))| {
            let (old_alloc, old_inuse) = before.get(&site).copied().unwrap_or_default();
            SiteChange {
                site,
                old_alloc,
                new_alloc,
                old_inuse,
                new_inuse,
            }
        })
        .filter(SiteChange::grew)
        .collect();
    list.sort_by(|a, b| {
        let key = |c: &SiteChange| {
            (
                delta(c.old_alloc, c.new_alloc),
                delta(c.old_inuse, c.new_inuse),
            )
        };
        key(b).cmp(&key(a)).then_with(|| a.site.cmp(&b.site))
    });
    let more = list.len().saturating_sub(MAX_GROWN_SITES);
    list.truncate(MAX_GROWN_SITES);
    (list, more)
}

fn signed(old: u64, new: u64) -> String {
    if new >= old {
        format!("+{}", show(new - old, Unit::Bytes))
    } else {
        format!("-{}", show(old - new, Unit::Bytes))
    }
}

/// The call sites that grew in a pair of processes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SitesGrown {
    /// At most `MAX_GROWN_SITES`, the largest growth of `alloc_space` first.
    pub grown: Vec<SiteChange>,
    /// How many more grew.
    pub more: usize,
    /// Sites the old report left out of its top N: such a site counts from 0 here.
    pub old_omitted: u64,
}

/// The sites that grew from `old` to `new`; `None` when neither report has call sites.
pub fn sites_grown(old: &ProcessReport, new: &ProcessReport) -> Option<SitesGrown> {
    if old.call_sites.is_empty() && new.call_sites.is_empty() {
        return None;
    }
    let (grown, more) = grown(old, new);
    Some(SitesGrown {
        grown,
        more,
        old_omitted: old.call_sites_omitted,
    })
}

/// The grown sites of a pair of processes, under its section.
pub fn section(text: &mut String, sites: &SitesGrown) {
    if sites.grown.is_empty() {
        let _ = writeln!(text, "  call sites: none grew");
        return;
    }
    let _ = writeln!(text, "  call sites that grew (alloc_space, inuse_space):");
    for c in &sites.grown {
        let _ = writeln!(
            text,
            "    {}: alloc_space {} -> {} ({}), inuse_space {} -> {} ({})",
            c.site.escape_debug(),
            show(c.old_alloc, Unit::Bytes),
            show(c.new_alloc, Unit::Bytes),
            signed(c.old_alloc, c.new_alloc),
            show(c.old_inuse, Unit::Bytes),
            show(c.new_inuse, Unit::Bytes),
            signed(c.old_inuse, c.new_inuse),
        );
    }
    if sites.more > 0 {
        let _ = writeln!(text, "    ... and {} more", sites.more);
    }
    if sites.old_omitted > 0 {
        let _ = writeln!(
            text,
            "    (the old report left {} smaller sites out: a site it does not list counts from 0 \
             here; --report-sites lists more)",
            sites.old_omitted
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(name: &str, alloc: u64, inuse: u64) -> CallSiteReport {
        CallSiteReport {
            site: name.to_string(),
            alloc_space: alloc,
            inuse_space: inuse,
            ..Default::default()
        }
    }

    fn process(sites: Vec<CallSiteReport>) -> ProcessReport {
        ProcessReport {
            call_sites: sites,
            ..Default::default()
        }
    }

    #[test]
    fn grown_sites_are_sorted_by_growth_and_bounded() {
        let old = process(vec![
            site("a", 100, 100),
            site("b", 50, 0),
            site("c", 10, 10),
        ]);
        let mut sites = vec![site("a", 100, 100), site("b", 500, 0), site("c", 20, 30)];
        sites.extend((0..20).map(|i| site(&format!("new{i:02}"), 1, 0)));
        let new = process(sites);
        let (list, more) = grown(&old, &new);
        assert_eq!(list[0].site, "b");
        assert_eq!(list[1].site, "c");
        assert!(!list.iter().any(|c| c.site == "a"), "a did not grow");
        assert_eq!(list.len(), MAX_GROWN_SITES);
        assert_eq!(more, 22 - MAX_GROWN_SITES);
        let mut text = String::new();
        section(&mut text, &sites_grown(&old, &new).unwrap());
        assert!(text.contains("b: alloc_space"), "{text}");
        assert!(text.contains("and 12 more"), "{text}");
        assert!(!text.contains("left"), "{text}");
        // A site the old report may have left out is said to count from 0.
        let old = ProcessReport {
            call_sites_omitted: 4,
            ..old
        };
        let mut text = String::new();
        section(&mut text, &sites_grown(&old, &new).unwrap());
        assert!(text.contains("left 4 smaller sites out"), "{text}");
    }

    #[test]
    fn a_hostile_site_name_stays_on_its_line() {
        let old = process(vec![]);
        let new = process(vec![site("evil\nFAILED --fail-if", 1, 1)]);
        let mut text = String::new();
        section(&mut text, &sites_grown(&old, &new).unwrap());
        assert_eq!(text.lines().count(), 2, "{text}");
    }
}
