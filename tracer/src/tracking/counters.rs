//! The counters of one process (or of the processes of one comm) as `/metrics` and the series
//! budget add them up: faults by region, syscalls and their failures by kind. Counters only
//! grow; a process that changes its comm keeps what it counted under the earlier ones apart.

/// The counter figures of one process (or of the processes of one comm).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CounterTotals {
    pub faults_minor: [u64; 5],
    pub faults_major: [u64; 5],
    pub syscalls: [u64; 6],
    pub syscall_errors: [u64; 6],
}

impl CounterTotals {
    pub fn subtract(&mut self, other: &CounterTotals) {
        self.combine(other, u64::saturating_sub);
    }

    pub fn add(&mut self, other: &CounterTotals) {
        self.combine(other, |mine, theirs| mine + theirs);
    }

    /// Applies `f` to every counter of `self` with the same counter of `other`.
    fn combine(&mut self, other: &CounterTotals, f: impl Fn(u64, u64) -> u64) {
        let pairs = [
            (&mut self.faults_minor[..], &other.faults_minor[..]),
            (&mut self.faults_major[..], &other.faults_major[..]),
            (&mut self.syscalls[..], &other.syscalls[..]),
            (&mut self.syscall_errors[..], &other.syscall_errors[..]),
        ];
        for (mine, theirs) in pairs {
            for (m, t) in mine.iter_mut().zip(theirs) {
                *m = f(*m, *t);
            }
        }
    }
}
