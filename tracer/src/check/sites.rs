//! Assertions on call sites (`[process.sites.NAME]` in a check file): the figures of the
//! sites of a process whose name contains NAME, summed, from the report's `call_sites`.

use crate::output::report::{CallSiteReport, CallSitesInfo, ProcessReport};

/// The figures of a call site, as in the report's `call_sites`.
pub const SITE_FIGURES: &[&str] = &[
    "alloc_space",
    "alloc_objects",
    "inuse_space",
    "inuse_objects",
    "faults",
];

/// Site names a check file may give: function names are long, but bounded, and one line.
pub fn valid_site_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 256 && !name.chars().any(char::is_control)
}

/// One of `SITE_FIGURES` of a site (`faults` for any other name).
pub fn figure_of(s: &CallSiteReport, figure: &str) -> u64 {
    match figure {
        "alloc_space" => s.alloc_space,
        "alloc_objects" => s.alloc_objects,
        "inuse_space" => s.inuse_space,
        "inuse_objects" => s.inuse_objects,
        _ => s.faults,
    }
}

/// Most characters of a site name quoted in a message (a report may hold any name).
const QUOTED: usize = 256;

/// A site name as a message quotes it: escaped, and cut.
pub fn quoted(name: &str) -> String {
    let cut: String = name.chars().take(QUOTED).collect();
    format!("{cut:?}")
}

/// Most matching site names quoted in a message.
pub const NAMED: usize = 5;

/// Why a report has no call sites, as a message quotes it. The report file may come from
/// anywhere: its reason is quoted and escaped like the site names, and cut, so it can neither
/// forge lines of the output nor flood it.
pub fn off_reason(info: &CallSitesInfo) -> String {
    match info.reason.as_deref() {
        Some(r) => format!("{:?}", r.chars().take(200).collect::<String>()),
        None => "not collected".to_string(),
    }
}

/// `figure` summed over the sites of `p` whose name contains `site`, and the sites matched
/// (for the message); an error when there is nothing to measure: call sites off, or no site
/// of that name among those the report lists (a bound on a typo must not pass).
pub fn measure(
    info: &CallSitesInfo,
    p: &ProcessReport,
    site: &str,
    figure: &str,
) -> Result<(u64, String), String> {
    if !info.enabled {
        return Err(format!(
            "no call sites in the report ({}): the check on site `{site}` needs --stacks",
            off_reason(info)
        ));
    }
    let matched: Vec<_> = p
        .call_sites
        .iter()
        .filter(|s| s.site.contains(site))
        .collect();
    if matched.is_empty() {
        let seen: Vec<String> = p
            .call_sites
            .iter()
            .take(NAMED)
            .map(|s| quoted(&s.site))
            .collect();
        let omitted = match p.call_sites_omitted {
            0 => String::new(),
            n => format!(
                "; {n} smaller sites are not in the report (it lists the {} that mapped most: \
                 raise --report-sites)",
                info.limit
            ),
        };
        return Err(format!(
            "no call site named `{site}` (sites: {}{omitted})",
            if seen.is_empty() {
                "none".to_string()
            } else {
                seen.join(", ")
            }
        ));
    }
    let value = matched
        .iter()
        .fold(0u64, |sum, s| sum.saturating_add(figure_of(s, figure)));
    let mut names: Vec<String> = matched
        .iter()
        .take(NAMED)
        .map(|s| quoted(&s.site))
        .collect();
    if matched.len() > NAMED {
        names.push(format!("and {} more", matched.len() - NAMED));
    }
    Ok((value, names.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(enabled: bool) -> CallSitesInfo {
        CallSitesInfo {
            enabled,
            limit: 20,
            ..Default::default()
        }
    }

    fn process() -> ProcessReport {
        let site = |name: &str, inuse| CallSiteReport {
            site: name.to_string(),
            inuse_space: inuse,
            faults: 3,
            ..Default::default()
        };
        ProcessReport {
            call_sites: vec![site("grow_brk", 100), site("app::grow_brk_more", 10)],
            ..Default::default()
        }
    }

    #[test]
    fn matching_sites_are_summed_and_named() {
        let (v, names) = measure(&info(true), &process(), "grow_brk", "inuse_space").unwrap();
        assert_eq!(v, 110);
        assert!(names.contains("app::grow_brk_more"), "{names}");
        let (v, _) = measure(&info(true), &process(), "more", "faults").unwrap();
        assert_eq!(v, 3);
    }

    #[test]
    fn no_stacks_or_no_such_site_is_an_error() {
        let e = measure(&info(false), &process(), "grow_brk", "inuse_space").unwrap_err();
        assert!(e.contains("--stacks"), "{e}");
        let e = measure(&info(true), &process(), "grow_mmap", "inuse_space").unwrap_err();
        assert!(e.contains("no call site named `grow_mmap`"), "{e}");
    }

    #[test]
    fn a_hostile_reason_is_escaped() {
        let mut i = info(false);
        i.reason = Some(format!("off\nok: forged line\x1b[2J{}", "x".repeat(10_000)));
        let e = measure(&i, &process(), "grow_brk", "inuse_space").unwrap_err();
        assert!(!e.chars().any(char::is_control), "{e:?}");
        assert!(e.len() < 400, "{} bytes", e.len());
    }
}
