//! The series budget of `--group-by comm` (and of `cgroup`, `container`, `pod`, `unit`: the
//! same rules for any group key; "comm" below stands for the key): which group a process's
//! metrics are labelled with, and what is left of the processes already forgotten.
//!
//! A node agent must not mint series without bound: any program can exec itself under a new
//! name. At most `cap` comms have series of their own; beyond that, processes are counted under
//! [`OTHER`]. A comm keeps its place while it has a live process; the comm idle for the longest
//! gives its place up to a new one, and what its processes counted is folded into [`OTHER`]
//! (counted in [`CommGroups::folded`]). So every counter only grows while its series exists, and
//! memory is bounded by `cap` plus the traced processes. Pure logic: no I/O.

use std::collections::HashMap;

use crate::{
    procfs::cgroup::Identity, tracking::counters::CounterTotals, tracking::process::ProcessState,
};

/// How per-process metrics are labelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GroupBy {
    Pid,
    Comm,
    /// The cgroup v2 path.
    Cgroup,
    /// The container id the cgroup path names (empty outside containers).
    Container,
    /// The Kubernetes pod UID the cgroup path names (empty outside pods).
    Pod,
    /// The innermost systemd unit (`*.service`, `*.scope`) of the cgroup path.
    Unit,
}

/// The label that names a process's group under `by` (None for `--group-by pid`).
pub fn label_name(by: GroupBy) -> Option<&'static str> {
    match by {
        GroupBy::Pid => None,
        GroupBy::Comm => Some("comm"),
        GroupBy::Cgroup => Some("cgroup"),
        GroupBy::Container => Some("container"),
        GroupBy::Pod => Some("pod"),
        GroupBy::Unit => Some("unit"),
    }
}

/// The group key of a process with `comm` in cgroup `cgroup` under `by`: empty when the
/// cgroup is unknown or names no container, pod or unit (Prometheus reads an empty label as
/// an absent one).
pub fn key(by: GroupBy, comm: &str, cgroup: Option<&str>) -> String {
    let identity = || cgroup.map(Identity::parse).unwrap_or_default();
    match by {
        GroupBy::Pid | GroupBy::Comm => comm.to_owned(),
        GroupBy::Cgroup => cgroup.unwrap_or_default().to_owned(),
        GroupBy::Container => identity().container.unwrap_or_default(),
        GroupBy::Pod => identity().pod.unwrap_or_default(),
        GroupBy::Unit => identity().unit.unwrap_or_default(),
    }
}

/// The group key of `p` under `by`.
pub fn key_of(by: GroupBy, p: &ProcessState) -> String {
    key(by, &p.comm, p.cgroup.as_deref())
}

/// The label value of the folded group: 17 bytes, so no comm (at most 15) can be named so.
pub const OTHER: &str = "(other processes)";

/// A comm with a series of its own.
#[derive(Debug, Default)]
struct Group {
    /// What its forgotten processes counted (and its processes under earlier comms).
    retired: CounterTotals,
    /// Live members.
    live: u32,
    /// When it last gained or lost a member (a tick of `CommGroups::clock`).
    last_active: u64,
}

/// Which group each traced process counts toward, and the groups' retired totals.
#[derive(Debug)]
pub struct CommGroups {
    cap: usize,
    groups: HashMap<String, Group>,
    /// tgid -> its comm's group, or None when it counts under OTHER.
    members: HashMap<u32, Option<String>>,
    other: CounterTotals,
    /// Processes counted under OTHER, for its gauges.
    folded: u64,
    clock: u64,
}

impl CommGroups {
    /// At most `cap` comms with series of their own (at least 1).
    pub fn new(cap: usize) -> CommGroups {
        CommGroups {
            cap: cap.max(1),
            groups: HashMap::new(),
            members: HashMap::new(),
            other: CounterTotals::default(),
            folded: 0,
            clock: 0,
        }
    }

    /// Admits `tgid` to `comm`'s group on first sight (or to OTHER when every place is taken
    /// by a comm with live processes). Done for every process before a scrape reads labels.
    pub fn join(&mut self, tgid: u32, comm: &str) {
        if !self.members.contains_key(&tgid) {
            let group = self.admit(comm).then(|| comm.to_owned());
            self.members.insert(tgid, group);
        }
    }

    /// The label of a member's series (OTHER for one that never joined).
    pub fn label(&self, tgid: u32) -> &str {
        match self.members.get(&tgid) {
            Some(Some(comm)) => comm,
            _ => OTHER,
        }
    }

    #[cfg(test)]
    fn label_of(&mut self, tgid: u32, comm: &str) -> &str {
        self.join(tgid, comm);
        self.label(tgid)
    }

    /// `tgid` stops counting under its current comm (it exited and is forgotten, or it exec'd
    /// another comm): what it counted there stays with that comm's group (or OTHER).
    pub fn retire(&mut self, tgid: u32, comm: &str, counted: &CounterTotals) {
        self.clock += 1;
        let group = match self.members.remove(&tgid) {
            Some(group) => group,
            // Never scraped: it counts where a scrape would have put it.
            None => self.admit(comm).then(|| comm.to_owned()),
        };
        match group.and_then(|comm| self.groups.get_mut(&comm)) {
            Some(g) => {
                g.retired.add(counted);
                g.live = g.live.saturating_sub(1);
                g.last_active = self.clock;
            }
            None => self.other.add(counted),
        }
    }

    /// Each group's retired totals, OTHER's included (under its label) when it has any.
    pub fn retired(&self) -> impl Iterator<Item = (&str, &CounterTotals)> {
        let other = (self.other != CounterTotals::default()).then_some((OTHER, &self.other));
        self.groups
            .iter()
            .map(|(comm, g)| (comm.as_str(), &g.retired))
            .chain(other)
    }

    /// How many comms gave their place up to a newer one.
    pub fn folded(&self) -> u64 {
        self.folded
    }

    /// Comms with a series of their own now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.groups.len()
    }

    /// Whether `comm` gets (or has) a group; adds a live member to it.
    fn admit(&mut self, comm: &str) -> bool {
        self.clock += 1;
        if !self.groups.contains_key(comm) && self.groups.len() >= self.cap && !self.fold_idlest() {
            return false;
        }
        let clock = self.clock;
        let g = self.groups.entry(comm.to_owned()).or_default();
        g.live += 1;
        g.last_active = clock;
        true
    }

    /// Folds the group without live members that was idle longest into OTHER; false when
    /// every group has live members.
    fn fold_idlest(&mut self) -> bool {
        let Some(idlest) = self
            .groups
            .iter()
            .filter(|(_, g)| g.live == 0)
            .min_by_key(|(comm, g)| (g.last_active, comm.as_str()))
            .map(|(comm, _)| comm.clone())
        else {
            return false;
        };
        if let Some(g) = self.groups.remove(&idlest) {
            self.other.add(&g.retired);
            self.folded += 1;
        }
        // A burst leaves a large table behind: give the memory back once it is mostly empty.
        if self.groups.capacity() > 4 * self.groups.len().max(16) {
            self.groups.shrink_to_fit();
        }
        true
    }

    /// Gives back the memory of a burst of members (called after exited ones are forgotten).
    pub fn shrink(&mut self) {
        if self.members.capacity() > 4 * self.members.len().max(64) {
            self.members.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calls(n: u64) -> CounterTotals {
        let mut t = CounterTotals::default();
        t.syscalls[0] = n;
        t
    }

    fn retired_of<'a>(g: &'a CommGroups, label: &str) -> Option<&'a CounterTotals> {
        g.retired().find(|(l, _)| *l == label).map(|(_, t)| t)
    }

    #[test]
    fn comms_beyond_the_cap_count_under_other_while_every_place_is_live() {
        let mut g = CommGroups::new(2);
        assert_eq!(g.label_of(1, "a"), "a");
        assert_eq!(g.label_of(2, "b"), "b");
        assert_eq!(g.label_of(3, "c"), OTHER, "both places have live members");
        assert_eq!(g.label_of(4, "a"), "a", "a known comm always has its place");
        assert_eq!(g.len(), 2);
        g.retire(3, "c", &calls(5));
        assert_eq!(retired_of(&g, OTHER), Some(&calls(5)));
        assert_eq!(g.folded(), 0);
    }

    #[test]
    fn the_idlest_comm_without_live_members_gives_its_place_up() {
        let mut g = CommGroups::new(2);
        g.label_of(1, "a");
        g.label_of(2, "b");
        g.retire(1, "a", &calls(3));
        g.retire(2, "b", &calls(4));
        // "a" went idle first: it is folded, and its counts move to OTHER, never lost.
        assert_eq!(g.label_of(5, "c"), "c");
        assert_eq!(g.folded(), 1);
        assert_eq!(retired_of(&g, "a"), None);
        assert_eq!(retired_of(&g, "b"), Some(&calls(4)));
        assert_eq!(retired_of(&g, OTHER), Some(&calls(3)));
        assert_eq!(g.len(), 2);
    }

    #[test]
    fn a_burst_of_distinct_comms_stays_within_the_cap() {
        let mut g = CommGroups::new(10);
        let mut total = 0;
        for tgid in 0..10_000u32 {
            let comm = format!("c{tgid}");
            let label = g.label_of(tgid, &comm).to_owned();
            assert!(label == comm || label == OTHER);
            g.retire(tgid, &comm, &calls(1));
            total += 1;
        }
        assert!(g.len() <= 10);
        let counted: u64 = g.retired().map(|(_, t)| t.syscalls[0]).sum();
        assert_eq!(counted, total, "every count is in some group");
        assert!(g.members.is_empty());
    }

    #[test]
    fn group_keys_come_from_the_comm_or_the_cgroup_path() {
        let hex = "ab".repeat(32);
        let path = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1a2b3c4d_5e6f_7081_92a3_b4c5d6e7f809.slice/cri-containerd-{hex}.scope"
        );
        let cg = Some(path.as_str());
        assert_eq!(key(GroupBy::Comm, "nginx", cg), "nginx");
        assert_eq!(key(GroupBy::Cgroup, "nginx", cg), path);
        assert_eq!(key(GroupBy::Container, "nginx", cg), hex);
        assert_eq!(
            key(GroupBy::Pod, "nginx", cg),
            "1a2b3c4d-5e6f-7081-92a3-b4c5d6e7f809"
        );
        assert_eq!(
            key(GroupBy::Unit, "x", Some("/system.slice/nginx.service")),
            "nginx.service"
        );
        // Unknown cgroup, or one that names no container: the empty (absent) label.
        assert_eq!(key(GroupBy::Container, "x", None), "");
        assert_eq!(
            key(GroupBy::Pod, "x", Some("/system.slice/nginx.service")),
            ""
        );
        assert_eq!(label_name(GroupBy::Pod), Some("pod"));
        assert_eq!(label_name(GroupBy::Pid), None);
    }

    #[test]
    fn an_exec_moves_a_process_to_its_new_comm() {
        let mut g = CommGroups::new(4);
        assert_eq!(g.label_of(7, "sh"), "sh");
        g.retire(7, "sh", &calls(2));
        assert_eq!(g.label_of(7, "worker"), "worker");
        assert_eq!(retired_of(&g, "sh"), Some(&calls(2)));
    }
}
