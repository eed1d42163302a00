//! The call sites in the JSON report (`--report`, `GET /api/v1/report`): per process the top
//! sites by name, summed over their stacks, with the heaviest stack symbolized.

use std::collections::HashMap;

use crate::output::report::{CallSiteReport, Report};
use crate::tracking::table::ProcessTable;

use super::{Collector, site_name};

/// The report with its call sites filled in when stacks are on (else as built: off).
pub fn with_sites(
    mut report: Report,
    collector: Option<&mut Collector>,
    table: &ProcessTable,
) -> Report {
    if let Some(c) = collector {
        c.fill_report(&mut report, table);
    }
    report
}

impl Collector {
    /// Fills the report's call sites: the session's counters and every process's top sites.
    pub fn fill_report(&mut self, report: &mut Report, table: &ProcessTable) {
        let c = self.counters;
        let info = &mut report.call_sites;
        info.enabled = true;
        info.reason = None;
        info.limit = u32::try_from(self.report_sites).unwrap_or(u32::MAX);
        info.samples = c.samples;
        info.fault_samples = c.fault_samples;
        info.without_stack = c.unjoined;
        // An exited process whose pid a new one has now (kept in the report, before the new
        // one: `ProcessTable::all`) shows no sites: the collector has only those of the
        // process the table has under the pid now, the last one of the pid.
        let mut last: HashMap<u32, usize> = HashMap::new();
        for (i, p) in report.processes.iter().enumerate() {
            last.insert(p.pid, i);
        }
        for (i, p) in report.processes.iter_mut().enumerate() {
            if last.get(&p.pid) != Some(&i) {
                continue;
            }
            let (sites, omitted) = self.sites_of(table, p.pid, self.report_sites);
            p.call_sites = sites;
            p.call_sites_omitted = omitted;
        }
    }

    /// The `n` largest sites of `pid` and how many more there were.
    pub fn sites_of(
        &mut self,
        table: &ProcessTable,
        pid: u32,
        n: usize,
    ) -> (Vec<CallSiteReport>, u64) {
        if self.current_pids(table, Some(pid)).is_empty() {
            return (Vec::new(), 0);
        }
        let Some(proc) = self.processes.get(&pid) else {
            return (Vec::new(), 0);
        };
        // Per site name: the sum, and the heaviest stack with its weight (alloc_space, faults);
        // only the stacks kept are symbolized whole.
        type Entry<'a> = (CallSiteReport, &'a [super::sites::Frame], (u64, u64));
        let mut by_name: HashMap<std::sync::Arc<str>, Entry> = HashMap::new();
        for (stack, s) in proc.sites.iter() {
            if s.alloc_space == 0 && s.faults == 0 {
                continue;
            }
            let name = site_name(&mut self.symbols, &self.files, stack);
            let weight = (s.alloc_space, s.faults);
            let (site, heaviest, most) = by_name.entry(name.clone()).or_insert_with(|| {
                let site = CallSiteReport {
                    site: name.to_string(),
                    ..Default::default()
                };
                (site, stack, weight)
            });
            if weight > *most {
                (*heaviest, *most) = (stack, weight);
            }
            site.stacks += 1;
            site.alloc_space += s.alloc_space;
            site.alloc_objects += s.alloc_objects;
            site.inuse_space += s.inuse_space;
            site.inuse_objects += s.inuse_objects;
            site.faults += s.faults;
        }
        let mut list: Vec<Entry> = by_name.into_values().collect();
        list.sort_by(|(a, ..), (b, ..)| {
            (b.alloc_space, b.inuse_space, b.faults)
                .cmp(&(a.alloc_space, a.inuse_space, a.faults))
                .then_with(|| a.site.cmp(&b.site))
        });
        let omitted = list.len().saturating_sub(n) as u64;
        list.truncate(n);
        let sites = list
            .into_iter()
            .map(|(mut site, stack, _)| {
                site.stack = stack
                    .iter()
                    .map(|&f| self.symbols.name(&self.files, f).to_string())
                    .collect();
                if site.stack.is_empty() {
                    site.stack.push("[no stack]".to_string());
                }
                site
            })
            .collect();
        (sites, omitted)
    }
}
