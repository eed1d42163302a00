//! Command-line interface.

pub mod exit;
pub mod stacks;

use std::{ffi::OsString, path::PathBuf};

use clap::{Args, Parser, Subcommand};

use crate::cli::exit::EXIT_CODES_HELP;

pub use crate::kernel::probes::options::{MmapLockOrder, RssSource};
pub use crate::views::groups::GroupBy;

/// Live allocation tracer: follows brk/mmap/munmap/mremap/mprotect/madvise and page faults of
/// processes with eBPF, and tells where their memory goes.
#[derive(Debug, Parser)]
#[command(name = "tracer", version, after_long_help = EXIT_CODES_HELP)]
pub struct Cli {
    /// More log output (-v: info, -vv: debug). RUST_LOG overrides it.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start CMD traced from its first instruction, follow the processes it forks, and print
    /// a summary per process when it exits. Exits with CMD's own status.
    #[command(after_long_help = EXIT_CODES_HELP)]
    Run(RunArgs),
    /// Trace running processes (and the processes they fork from then on) until SIGINT or
    /// SIGTERM, or until all of them have exited; then print the summary. With --comm or
    /// --all, also the processes that start later, until a signal: the daemon mode.
    #[command(after_long_help = EXIT_CODES_HELP)]
    Attach(AttachArgs),
    /// Compare two reports (written with --report), e.g. main's and a pull request's: print
    /// what changed, and fail (exit 123) when a --fail-if or --fail-if-site threshold is exceeded.
    #[command(after_long_help = DIFF_HELP)]
    Diff(DiffArgs),
    /// Evaluate a check file against a saved report, as --check does when tracing ends (to
    /// write or tune checks without tracing again). Exit 123 when an assertion fails.
    CheckReport(CheckReportArgs),
    /// Internal: the guard `tracer run` starts, which continues the processes below CMD_PID
    /// that are left stopped should the tracer die (see watchdog.rs).
    #[command(name = crate::launch::watchdog::SUBCOMMAND, hide = true)]
    ResumeOnDeath {
        #[arg(value_name = "CMD_PID")]
        cmd: u32,
    },
}

const DIFF_HELP: &str = "\
Processes are paired by comm, in pid order (the 2nd `cc` of OLD with the 2nd of NEW).
Examples:
  tracer diff main.json pr.json
  tracer diff main.json pr.json --fail-if 'peak_rss>10%' --fail-if 'myapp:peak_heap>+4MiB'
  tracer diff main.json pr.json --fail-if-site parse_input 'myapp:inuse_space>+1MiB'
  tracer diff main.json pr.json --json | jq '.violations'
Exit status: 0 within the thresholds, 123 a threshold exceeded, 2 unreadable report or bad
--fail-if or --fail-if-site.";

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The baseline report.
    #[arg(value_name = "OLD.json")]
    pub old: PathBuf,

    /// The report to compare with it.
    #[arg(value_name = "NEW.json")]
    pub new: PathBuf,

    /// Fail (exit 123) when a figure grew beyond a limit: `[SCOPE:]FIGURE>LIMIT`. SCOPE is
    /// `tree` (the default), a comm, or `*` (every process); LIMIT is a growth in percent
    /// (`10%`), in bytes (`+4MiB`) or a count (`+100`). Repeat for several.
    #[arg(long = "fail-if", value_name = "EXPR")]
    pub fail_if: Vec<String>,

    /// Fail (exit 123) when the call sites (`--stacks`) whose name contains NAME grew beyond a
    /// limit in a pair of processes: `[COMM:]FIGURE>LIMIT`, FIGURE one of alloc_space,
    /// alloc_objects, inuse_space, inuse_objects, faults; every pair unless a comm is given.
    /// Fails too when no pair has such a site, or a report left it out of its top sites
    /// (`--report-sites`). Repeat for several.
    #[arg(long = "fail-if-site", num_args = 2, value_names = ["NAME", "EXPR"])]
    pub fail_if_site: Vec<String>,

    /// Show unchanged figures too.
    #[arg(long)]
    pub all: bool,

    /// Print the comparison as JSON (every figure both reports have, changed or not; the
    /// schema is in docs/ci.md) instead of text. The exit status is the same.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CheckReportArgs {
    /// A report written with --report.
    #[arg(value_name = "REPORT.json")]
    pub report: PathBuf,

    /// The check file (TOML; see "Check files" in docs/ci.md).
    #[arg(long, value_name = "FILE")]
    pub check: PathBuf,

    /// Also write the results as JUnit XML to PATH.
    #[arg(long, value_name = "PATH")]
    pub junit: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Start CMD with address-space randomization off (personality ADDR_NO_RANDOMIZE), for
    /// layouts and fault counts that repeat exactly from run to run.
    #[arg(long)]
    pub no_aslr: bool,

    /// Do not stop CMD and its descendants for a moment at each exec. By default the tracer
    /// stops each new image before its first instruction, reads it from /proc and resumes it,
    /// so the address space is known exactly from the start even for short-lived programs.
    /// (A parent that waits with WUNTRACED would see those brief stops.)
    #[arg(long)]
    pub no_exec_stop: bool,

    /// The command to run, with its arguments (after `--`).
    #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

#[derive(Debug, Args)]
pub struct AttachArgs {
    #[command(flatten)]
    pub common: CommonArgs,

    /// A process to trace (repeat for several). A thread id selects its whole process.
    /// 1 to 4194304 (the kernel's PID_MAX_LIMIT).
    #[arg(short, long = "pid", value_name = "PID", required_unless_present_any = ["comms", "all", "cgroup"],
          value_parser = clap::value_parser!(u32).range(1..=PID_MAX_LIMIT))]
    pub pids: Vec<u32>,

    /// Trace every process whose command name (comm, as `ps -o comm` shows it) is NAME: those
    /// running now and those that exec it later. Repeat for several names.
    #[arg(long = "comm", value_name = "NAME", value_parser = parse_comm)]
    pub comms: Vec<String>,

    /// Trace every user process on the machine, now and later (except --exclude-comm ones and
    /// the tracer itself). Runs until SIGINT/SIGTERM.
    #[arg(long)]
    pub all: bool,

    /// Trace every process in this cgroup v2 subtree (a path like `/kubepods.slice`, or its
    /// directory under the cgroup2 mount), now and later: processes that exec in it or in a
    /// cgroup created below it are traced from their exec on. With --comm, only those comms.
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<PathBuf>,

    /// Do not trace processes with this command name: skipped at start, and a traced process
    /// that execs it stops being traced. Repeat for several names.
    #[arg(long = "exclude-comm", value_name = "NAME", value_parser = parse_comm)]
    pub exclude_comms: Vec<String>,

    /// Do not serve the HTTP API (attach serves it on 127.0.0.1:19410 by default).
    #[arg(long, conflicts_with = "listen")]
    pub no_listen: bool,
}

/// Where `attach` serves its API by default: loopback only. 19410 lies outside the
/// Prometheus exporter port allocations (9100-9999, full; then sequential from 10000).
pub const DEFAULT_ATTACH_LISTEN: &str = "127.0.0.1:19410";

#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Call sites (`--stacks`, `--pprof`): see src/stacks/.
    #[command(flatten)]
    pub stacks: stacks::StackArgs,

    /// Write every decoded record as one JSON object per line to PATH (`-` for stdout).
    /// Addresses, lengths and flags are hex strings; see docs/events.md for the fields.
    #[arg(long, value_name = "PATH|-")]
    pub events: Option<PathBuf>,

    /// Bound --events to SIZE (bytes, or with a unit: `512MiB`; at least 4096): a file that
    /// would grow past it is renamed to PATH.1 (replacing the previous PATH.1) and begun
    /// again, so the stream takes at most twice SIZE on disk; on stdout the lines past SIZE
    /// are dropped. The `end` line counts the lines no longer kept (`events_dropped`).
    #[arg(long, value_name = "SIZE", requires = "events", value_parser = crate::output::jsonl::parse_max_size)]
    pub events_max_size: Option<u64>,

    /// Ring buffer size between the probes and the daemon: a power of two from 4K to 1G, in
    /// bytes or with a K/M/G (or KiB/MiB/GiB) suffix. Records that do not fit are counted as
    /// lost, never dropped silently.
    #[arg(long, value_name = "SIZE", default_value = "4M", value_parser = crate::units::parse_ring_size)]
    pub ring_buffer_size: u32,

    /// Wake the daemon only once this many bytes of records wait in the ring buffer (it also
    /// drains every --drain-interval-ms). 0 wakes it for every record. Capped at a quarter of
    /// the ring buffer, so a wakeup always comes before it fills. At most 256M (a quarter of
    /// the largest ring buffer).
    #[arg(long, value_name = "BYTES", default_value_t = 256 * 1024,
          value_parser = clap::value_parser!(u32).range(0..=(1 << 28)))]
    pub wakeup_bytes: u32,

    /// How often the daemon drains the ring buffer when no wakeup came (milliseconds, 1 to
    /// 10000).
    #[arg(long, value_name = "MS", default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub drain_interval_ms: u64,

    /// Apply each process's records in the order its threads changed its address space
    /// (numbered by a probe on mmap_lock:mmap_lock_acquire_returned), not in the order they
    /// reach the ring buffer. `auto`: where that probe is cheap (Linux 6.14+). Before 6.14 the
    /// kernel computes a memory cgroup path for every mmap_lock acquisition of every process
    /// while the probe is attached, so `on` must ask for it there. `off`: arrival order; a
    /// change found out of order then makes the model resync from /proc (counted).
    #[arg(long, value_name = "WHEN", default_value = "auto")]
    pub mmap_lock_order: MmapLockOrder,

    /// Where resident memory (tracer_rss_bytes, peaks, phases) comes from. `procfs`: read
    /// from /proc/PID/status when a figure is needed, the peak from VmHWM and, at exit, from
    /// the mm's hiwater mark that the exit probe reads (Linux 6.16+); nothing runs per page
    /// fault. `events`: kmem:rss_stat, a probe on every change of the counters (exact between
    /// reads, at a cost on every fault). `auto`: procfs on 6.16+, events before (where the
    /// exit probe no longer sees the mm, a short-lived process's peak needs the events).
    #[arg(long, value_name = "SOURCE", default_value = "auto")]
    pub rss_source: RssSource,

    /// Read the tracepoint formats (field offsets) from this tracefs instead of the system's.
    /// For testing how the tracer handles other kernels' layouts: the probes still attach
    /// through the system tracefs (/sys/kernel/tracing).
    #[arg(long, value_name = "DIR")]
    pub tracefs: Option<PathBuf>,

    /// Serve the HTTP API (/metrics for Prometheus, /api/v1/processes, /healthz) on this
    /// address: IP:PORT (port 0: any free port) or unix:PATH (a Unix-domain socket, where each
    /// request is checked against the caller's credentials). `attach` listens on
    /// 127.0.0.1:19410 unless told otherwise (see --no-listen); `run` only when given. Over
    /// TCP, address spaces, file names, argv, reports and POSTs need authorization (see
    /// --trust-tcp-clients and "Security" in the README).
    #[arg(long, value_name = "ADDR|unix:PATH")]
    pub listen: Option<crate::server::listener::ListenAddr>,

    /// Serve everything to every TCP client of --listen: address spaces (ASLR bases), file
    /// names, command lines, reports, and state-changing POSTs. Only for a loopback listener
    /// on a machine where every local user may see every traced process (a CI runner, a
    /// single-user container). A POST must still carry Content-Type: application/json (or an
    /// Authorization header), so that no web page can send one.
    #[arg(long)]
    pub trust_tcp_clients: bool,

    /// A web configuration file as the Prometheus exporter toolkit reads it
    /// (`--web.config.file`): `tls_server_config` (cert_file, key_file, client_auth_type,
    /// client_ca_file) serves the TCP API over TLS, and `basic_auth_users` (bcrypt hashes)
    /// requires one of those users on every request. A client that passes basic auth, or
    /// presents a certificate the client CA verified, sees everything. See "Security" in the
    /// README.
    #[arg(long, alias = "web.config.file", value_name = "FILE")]
    pub web_config: Option<PathBuf>,

    /// Compare each traced process's rebuilt address space with /proc/PID/maps every SECS
    /// seconds; differences are counted, logged and healed by a resync. 0 turns it off; at
    /// most 86400 (a day).
    #[arg(long, value_name = "SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(0..=MAX_INTERVAL_SECS))]
    pub drift_check_interval: u64,

    /// Trace at most this many processes at once. A process beyond it (a new child, or a
    /// process found by --comm/--all) is not traced; refusals are counted
    /// (`tracer_processes_refused_total`) and logged. 1 to 1000000.
    #[arg(long, value_name = "N", default_value_t = 16384, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_processes: u32,

    /// Label per-process metrics by `pid` (and comm), or only by `comm`, `cgroup` (v2 path),
    /// `container` (id), `pod` (UID) or `unit` (systemd), summing the processes that share it
    /// (under the same series budget, --max-series-groups). Default: `comm` for `attach --all` and `attach --comm` (a node agent's
    /// series must not grow with every short-lived process), `pid` otherwise. The API always
    /// has per-process detail.
    #[arg(long, value_name = "LABEL", value_enum)]
    pub group_by: Option<GroupBy>,

    /// With `--group-by` other than pid: at most N comms (cgroups, containers, ...) get series
    /// of their own; processes of further ones count under "(other processes)". A comm with no live process gives its place
    /// up to a new one when all are taken (its counts continue under "(other processes)";
    /// `tracer_series_groups_folded_total` counts such folds). Per-process series are then at
    /// most about 37 x (N + 1).
    #[arg(long, value_name = "N", default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_series_groups: u32,

    /// Keep an exited process whole this many seconds (its metrics series and its address
    /// space in the API). Then `attach` forgets it entirely, and `run` frees its address space
    /// but keeps its counters and final layout for the summary. 0 to 604800 (a week).
    #[arg(long, value_name = "SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(0..=MAX_GRACE_SECS))]
    pub exited_grace: u64,

    /// Do not print the per-process summary at the end.
    #[arg(short, long)]
    pub quiet: bool,

    /// Write the JSON report to PATH when tracing ends: per process its identity, syscall
    /// counts, mmap sizes, heap history, peaks, faults, phases and final address space, and
    /// totals over the tree (schema in docs/ci.md; `schema_version` says which).
    #[arg(long, value_name = "PATH")]
    pub report: Option<PathBuf>,

    /// Write one self-contained HTML page to PATH when tracing ends: the address space of each
    /// process as the textbooks draw it, its heap (brk) history and phase snapshots; the live
    /// page of `--listen` (GET /), offline, with the report's data inside.
    #[arg(long, value_name = "PATH")]
    pub html: Option<PathBuf>,

    /// Check the assertions of this TOML file when tracing ends (limits on peak RSS, heap,
    /// faults, syscalls, ...; see "Check files" in docs/ci.md). The file is validated before
    /// anything starts; a failed assertion makes the exit status 123.
    #[arg(long, value_name = "FILE")]
    pub check: Option<PathBuf>,

    /// Also write the check results as JUnit XML to PATH, for CI test reporters.
    #[arg(long, value_name = "PATH", requires = "check")]
    pub junit: Option<PathBuf>,
}

/// The kernel's PID_MAX_LIMIT (include/linux/threads.h): no pid is larger.
pub const PID_MAX_LIMIT: i64 = 4 * 1024 * 1024;

/// Longest `--drift-check-interval`: durations stay far from what `Instant` arithmetic can
/// hold, and a longer period is as good as off (0).
pub const MAX_INTERVAL_SECS: u64 = 86_400;

/// Longest `--exited-grace`: an exited process is kept at most a week.
pub const MAX_GRACE_SECS: u64 = 7 * 86_400;

/// A command name as the kernel keeps it: at most 15 bytes. Bytes that are not UTF-8 or are
/// control characters are written as the tracer shows them, `\ooo` in octal (`\377evil`),
/// each counting as one byte.
fn parse_comm(text: &str) -> Result<String, String> {
    let octal = |s: &str| s.len() == 3 && s.bytes().all(|b| (b'0'..=b'7').contains(&b));
    let mut bytes = 0;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        let step = if c == '\\' && rest.get(1..4).is_some_and(octal) {
            bytes += 1;
            4
        } else {
            bytes += c.len_utf8();
            c.len_utf8()
        };
        rest = &rest[step..];
    }
    if bytes == 0 || bytes > 15 || text.contains('\0') {
        return Err(format!("`{text}`: a command name (comm) has 1 to 15 bytes"));
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn comms_count_escaped_bytes_as_one() {
        assert!(parse_comm("\\377evil").is_ok());
        assert!(parse_comm("\\377\\377\\377\\377\\377\\377\\377\\377").is_ok());
        assert!(parse_comm("0123456789abcde").is_ok());
        assert!(parse_comm("\\377123456789abcd").is_ok());
        assert!(parse_comm("0123456789abcdef").is_err());
        assert!(parse_comm("\\377123456789abcdef").is_err());
        assert!(parse_comm("").is_err());
    }

    /// Every numeric option refuses values beyond its documented range (clap's status 2).
    #[test]
    fn numeric_options_have_ranges() {
        let parse = |opt: &str, value: &str| {
            Cli::try_parse_from(["tracer", "run", opt, value, "--", "true"]).map(|_| ())
        };
        for (opt, ok, too_big) in [
            ("--drift-check-interval", "86400", "86401"),
            ("--exited-grace", "604800", "604801"),
            ("--wakeup-bytes", "268435456", "268435457"),
            ("--drain-interval-ms", "10000", "10001"),
            ("--max-processes", "1000000", "1000001"),
        ] {
            assert!(parse(opt, ok).is_ok(), "{opt} {ok}");
            let err = parse(opt, too_big).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{opt} {too_big}");
            assert!(parse(opt, "18446744073709551615").is_err(), "{opt}");
            assert!(parse(opt, "-1").is_err(), "{opt}");
        }
        let attach = |pid: &str| Cli::try_parse_from(["tracer", "attach", "--pid", pid]);
        assert!(attach("4194304").is_ok());
        assert!(attach("4194305").is_err());
        assert!(attach("0").is_err());
    }

    #[test]
    fn ring_sizes() {
        assert_eq!(crate::units::parse_ring_size("8M"), Ok(8 << 20));
        assert_eq!(crate::units::parse_ring_size("4096"), Ok(4096));
        assert_eq!(crate::units::parse_ring_size("256KiB"), Ok(256 << 10));
        assert!(crate::units::parse_ring_size("3M").is_err());
        assert!(crate::units::parse_ring_size("8Q").is_err());
        assert!(crate::units::parse_ring_size("1K").is_err());
    }

    #[test]
    fn run_takes_the_command_after_double_dash() {
        let cli =
            Cli::try_parse_from(["tracer", "run", "--events", "-", "--", "ls", "-l"]).unwrap();
        let Command::Run(run) = cli.command else {
            panic!()
        };
        assert_eq!(
            run.command,
            vec![OsString::from("ls"), OsString::from("-l")]
        );
    }
}
