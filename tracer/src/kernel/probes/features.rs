//! What the running kernel offers, detected at start-up rather than assumed: the tracepoints
//! and their layouts (tracefs `format` files), BTF, and the kernel behaviours that change what
//! the figures mean. The result is the probes' `Config`, the list of tracepoints to attach,
//! and the optional features that are on or off (exported as
//! `tracer_kernel_feature_enabled{feature}`).
//!
//! Required features fail start-up with a message naming what is missing; optional ones that
//! are missing turn a part of the output off, with a one-line notice.

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
};

use tracer_common::{
    config::{
        COMM_FILTER_ALL, COMM_FILTER_CGROUP, COMM_FILTER_EXCLUDE, COMM_FILTER_TRACE,
        CONFIG_SYSCALL_LAYOUT_FIXED, Config, SYSCALL_RECORD_ARGS,
    },
    record::MAX_ARGS,
};

use super::{
    btf::Btf,
    fields::{expect_size, field, lookup, mmap_lock_layout},
    options::{MmapLockOrder, ProbeError, ProbeOptions, RssSource},
    syscall_source,
};
use crate::{
    kernel::syscalls::{SYSCALLS, Syscall},
    kernel::tracefs::Tracefs,
};

use super::known::{ARCH_HAS_FORK, CLONE_SYSCALLS};
pub use super::known::{
    BTF, CLONE_TRACEPOINTS, EXIT_GROUP_DEAD, Feature, MMAP_LOCK_ORDER, MMAP_LOCK_TRACEPOINT,
    MREMAP_CHECKS_FIRST, RSS_STAT, RSS_STAT_EXACT,
};

/// Where the kernel publishes its BTF.
const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

/// What the start-up experiment found (see `preflight::mremap_unmaps_before_checking`).
static MREMAP_UNMAPS_FIRST: AtomicBool = AtomicBool::new(false);

/// Whether this kernel's failed `mremap(MREMAP_FIXED)` may already have unmapped its
/// destination (before Linux 6.17): then such a record does not tell the new state, and the
/// address-space model must take it from /proc.
#[allow(
    dead_code,
    reason = "for the address-space model (model/apply.rs), which decides how to apply a \
              failed mremap"
)]
pub fn mremap_unmaps_before_checking() -> bool {
    MREMAP_UNMAPS_FIRST.load(Ordering::Relaxed)
}

/// Everything start-up learned about the kernel.
#[derive(Debug, Clone)]
pub struct Detected {
    pub config: Config,
    /// Tracepoints to attach a probe of the same name to: (group, name).
    pub tracepoints: Vec<(&'static str, String)>,
    /// The per-syscall tracepoints (same form): attached unless `raw_syscalls` is.
    pub syscall_tracepoints: Vec<(&'static str, String)>,
    /// Whether to probe syscalls on `raw_syscalls:sys_enter/sys_exit` (syscall_source.rs).
    pub raw_syscalls: bool,
    /// Whether to probe syscalls with kprobes (else `raw_syscalls` is the choice).
    pub syscall_kprobes: bool,
    pub features: Vec<Feature>,
    /// One line each: what is off and what that changes (printed as warnings).
    pub notices: Vec<String>,
    /// How a feature is provided, or a documented change in precision (printed with `-v`).
    pub details: Vec<String>,
    /// The program that numbers each process's changes, for the raw tracepoint
    /// `MMAP_LOCK_TRACEPOINT` (None: feature `mmap_lock_order` is off).
    pub order_program: Option<&'static str>,
    /// Whether faults are counted on the `page-faults-min`/`-maj` perf events (no
    /// `exceptions:*`).
    pub fault_events: bool,
    /// Whether resident memory comes from `kmem:rss_stat` (attached), else from /proc.
    pub rss_events: bool,
}

/// Inputs of the detection that tests replace.
pub struct Sources<'a> {
    pub tracefs: &'a Tracefs,
    /// The kernel's BTF (`/sys/kernel/btf/vmlinux`, or `TRACER_BTF` in tests).
    pub btf_path: PathBuf,
    /// `uname -r`, for the behaviours no file describes.
    pub release: String,
    /// Whether a failed `mremap(MREMAP_FIXED)` unmaps its destination (tried at start-up).
    pub mremap_unmaps_first: bool,
    /// `TRACER_SYSCALL_PROBES`: kprobes, raw or per-syscall tracepoints.
    pub syscall_probes: Option<syscall_source::Forced>,
    pub kprobes: bool, // Whether the kernel can attach kprobes (`CONFIG_KPROBES`).
}

impl Sources<'_> {
    pub fn system(tracefs: &Tracefs) -> Sources<'_> {
        Sources {
            tracefs,
            btf_path: crate::kernel::preflight::debug_env("TRACER_BTF")
                .map_or_else(|| PathBuf::from(KERNEL_BTF), PathBuf::from),
            release: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            mremap_unmaps_first: crate::kernel::preflight::mremap_unmaps_before_checking(),
            syscall_probes: syscall_source::forced(),
            kprobes: syscall_source::kernel_has_kprobes(),
        }
    }
}

/// Reads the kernel's BTF, if it has any (needed only where no tracepoint field says enough).
fn load_btf(path: &Path) -> Result<Btf, String> {
    Btf::read(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// `(major, minor)` of a release string such as `6.1.0-50-cloud-amd64`.
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Detects what the kernel offers and builds the probes' configuration from it.
pub fn detect(src: &Sources, opts: &ProbeOptions) -> Result<Detected, ProbeError> {
    let tracefs = src.tracefs;
    let mut d = Detected {
        config: Config::zeroed(),
        tracepoints: Vec::new(),
        syscall_tracepoints: Vec::new(),
        raw_syscalls: false,
        syscall_kprobes: false,
        features: Vec::new(),
        notices: Vec::new(),
        details: Vec::new(),
        order_program: None,
        fault_events: false,
        rss_events: false,
    };
    (d.syscall_kprobes, d.raw_syscalls) = syscall_source::decide(
        tracefs,
        (src.kprobes, src.syscall_probes),
        opts.raw_syscalls,
        &mut d.details,
        &mut d.features,
    );
    syscall_offsets(tracefs, &mut d)?;
    fault_offsets(tracefs, &mut d)?;
    let config = &mut d.config;
    config.fork_child_pid = field(tracefs, "sched", "sched_process_fork", "child_pid", 4)?;
    config.exec_filename = tracefs.offset("sched", "sched_process_exec", "filename")?;
    config.exec_old_pid = field(tracefs, "sched", "sched_process_exec", "old_pid", 4)?;
    for name in [
        "sched_process_fork",
        "sched_process_exec",
        "sched_process_exit",
    ] {
        d.tracepoints.push(("sched", name.to_owned()));
    }
    // `tracer run` starts counting its child at execve.
    for name in ["sys_enter_execve", "sys_enter_execveat"] {
        tracefs.format("syscalls", name)?;
        d.syscall_tracepoints.push(("syscalls", name.to_owned()));
    }

    // BTF is read only when a tracepoint does not say enough by itself.
    let exit_format = tracefs.format("sched", "sched_process_exit")?;
    let mut btf = None;
    let group_dead = exit_format.fields.get("group_dead");
    let rss_source = match opts.rss_source {
        // Before 6.16 the exit probe runs after the mm is gone: only `signal->maxrss` is left,
        // which after an exec still holds the previous image's peak (for `tracer run`'s
        // command, the tracer's own), so a process that exits between two reads of /proc
        // would be given a peak too low. The counters' events see every change instead.
        RssSource::Auto if group_dead.is_none() => RssSource::Events,
        RssSource::Auto => RssSource::Procfs,
        chosen => chosen,
    };
    // RSS from /proc needs `signal->maxrss` for the peak of a process that has exited.
    if group_dead.is_none() || rss_source == RssSource::Procfs {
        btf = Some(load_btf(&src.btf_path));
    }
    exit_detection(&mut d, group_dead, btf.as_ref(), &src.btf_path)?;
    d.features.push(Feature {
        name: BTF,
        enabled: match &btf {
            Some(parsed) => parsed.is_ok(),
            None => src.btf_path.is_file(),
        },
    });
    let parsed_btf = btf.as_ref().and_then(|b| b.as_ref().ok());
    rss_stat(tracefs, &mut d, parsed_btf, src, rss_source)?;
    d.details.push(if d.rss_events {
        "resident memory from kmem:rss_stat events (--rss-source events)".to_owned()
    } else {
        "resident memory read from /proc/PID/status when a figure is needed (--rss-source \
         procfs)"
            .to_owned()
    });
    if rss_source == RssSource::Procfs {
        exit_maxrss(&mut d, parsed_btf);
    }
    clone_tracepoints(tracefs, &mut d)?;
    MREMAP_UNMAPS_FIRST.store(src.mremap_unmaps_first, Ordering::Relaxed);
    d.features.push(Feature {
        name: MREMAP_CHECKS_FIRST,
        enabled: !src.mremap_unmaps_first,
    });
    if src.mremap_unmaps_first {
        d.details.push(
            "kernel feature mremap_checks_first is off (before Linux 6.17): a failed \
             mremap(MREMAP_FIXED) may have unmapped its destination; the model takes the \
             address space from /proc after one"
                .to_owned(),
        );
    }

    mmap_lock_order(tracefs, &mut d, opts.mmap_lock_order);

    let config = &mut d.config;
    config.wakeup_bytes = opts.wakeup_bytes;
    if !opts.trace_comms.is_empty() {
        config.comm_filter |= COMM_FILTER_TRACE;
    }
    if !opts.exclude_comms.is_empty() {
        config.comm_filter |= COMM_FILTER_EXCLUDE;
    }
    if opts.trace_all {
        config.comm_filter |= COMM_FILTER_ALL;
    }
    if opts.trace_cgroup {
        // `--cgroup` alone: everything in the subtree; with `--comm`: those comms in it.
        config.comm_filter |= COMM_FILTER_CGROUP;
        if opts.trace_comms.is_empty() {
            config.comm_filter |= COMM_FILTER_ALL;
        }
    }
    d.features.sort_by_key(|f| f.name);
    Ok(d)
}

/// `syscalls:sys_{enter,exit}_<name>` of the traced syscalls: required.
fn syscall_offsets(tracefs: &Tracefs, d: &mut Detected) -> Result<(), ProbeError> {
    for Syscall {
        kind, name, args, ..
    } in SYSCALLS
    {
        let enter = format!("sys_enter_{name}");
        let format = tracefs.format("syscalls", &enter)?;
        for (i, arg) in args.iter().enumerate() {
            let f = lookup(tracefs, &format, "syscalls", &enter, arg)?;
            expect_size(&format!("syscalls:{enter}.{arg}"), f.size, 8)?;
            d.config.syscall_args[*kind as usize][i] = f.offset;
        }
        debug_assert!(args.len() <= MAX_ARGS);
        d.config.syscall_nargs[*kind as usize] = args.len() as u16;
        let exit = format!("sys_exit_{name}");
        d.config.syscall_ret[*kind as usize] = field(tracefs, "syscalls", &exit, "ret", 8)?;
        d.syscall_tracepoints.push(("syscalls", enter));
        d.syscall_tracepoints.push(("syscalls", exit));
    }
    if syscall_layout_is_fixed(&d.config) {
        d.config.flags |= CONFIG_SYSCALL_LAYOUT_FIXED;
    }
    Ok(())
}

/// Whether the syscall records have the layout every kernel has had since the syscall
/// tracepoints exist (`CONFIG_SYSCALL_LAYOUT_FIXED`), so the probes can read them directly.
fn syscall_layout_is_fixed(config: &Config) -> bool {
    SYSCALLS.iter().all(|Syscall { kind, args, .. }| {
        let k = *kind as usize;
        config.syscall_ret[k] == SYSCALL_RECORD_ARGS
            && (0..args.len())
                .all(|i| config.syscall_args[k][i] == SYSCALL_RECORD_ARGS + 8 * i as u16)
    })
}

/// `exceptions:page_fault_{user,kernel}` (x86), or else the `page-faults-min`/`-maj` perf
/// events.
fn fault_offsets(tracefs: &Tracefs, d: &mut Detected) -> Result<(), ProbeError> {
    let perf = super::fault_events::perf_events_reason(tracefs);
    d.features.push(Feature {
        name: super::fault_events::FAULT_TRACEPOINTS,
        enabled: perf.is_none(),
    });
    if let Some(reason) = perf {
        d.details.push(super::fault_events::detail(&reason));
        d.fault_events = true;
        return Ok(());
    }
    let group = "exceptions";
    d.config.fault_address = field(tracefs, group, "page_fault_user", "address", 8)?;
    d.config.fault_error_code = field(tracefs, group, "page_fault_user", "error_code", 8)?;
    // page_fault_kernel shares the event class with page_fault_user; check it all the same.
    for (name, expected) in [
        ("address", d.config.fault_address),
        ("error_code", d.config.fault_error_code),
    ] {
        let kernel = field(tracefs, group, "page_fault_kernel", name, 8)?;
        if kernel != expected {
            return Err(ProbeError::FieldSize {
                what: format!("exceptions:page_fault_kernel.{name} offset"),
                size: kernel,
                expected,
            });
        }
    }
    for name in ["page_fault_user", "page_fault_kernel"] {
        d.tracepoints.push((group, name.to_owned()));
    }
    Ok(())
}

/// How the exit probe tells the exit of a process from that of one of its threads: required.
///
/// Linux 6.16 added `group_dead` to `sched:sched_process_exit`. Before it, the probe reads
/// `current->signal->live`, the count of live threads that `do_exit()` decrements (with
/// `atomic_dec_and_test`, which is where `group_dead` comes from) before it fires the
/// tracepoint. A count of 0 there means that every thread of the group has passed that point:
/// the process is dead. Two threads can both see 0 (one decremented first but reached the
/// tracepoint last), so the probe also needs to be the one that removes the process from the
/// traced set, which succeeds once: exactly one exit record per process, sent once no thread
/// of it runs user code any more. Reading the count needs two struct offsets, which vary with
/// the kernel's configuration: they come from BTF (no CO-RE in these probes).
///
/// Counting threads in a map of our own, from the fork and exit probes, would need the count
/// at attach time (racing with thread creation) and clone flags the fork probe does not always
/// have; a process's own counter has neither problem.
fn exit_detection(
    d: &mut Detected,
    group_dead: Option<&crate::kernel::tracefs::Field>,
    btf: Option<&Result<Btf, String>>,
    btf_path: &Path,
) -> Result<(), ProbeError> {
    if let Some(f) = group_dead {
        expect_size("sched:sched_process_exit.group_dead", f.size, 1)?;
        d.config.exit_group_dead = f.offset;
        d.features.push(Feature {
            name: EXIT_GROUP_DEAD,
            enabled: true,
        });
        return Ok(());
    }
    let missing = |why: String| ProbeError::MissingFeature {
        feature: "a way to tell a process's exit from a thread's".into(),
        need: format!(
            "sched:sched_process_exit has no `group_dead` field (Linux 6.16+) and {why}; one \
             of the two is needed (BTF: CONFIG_DEBUG_INFO_BTF=y)"
        ),
    };
    let btf = match btf {
        Some(Ok(btf)) => btf,
        Some(Err(err)) => return Err(missing(format!("the kernel's BTF is unusable: {err}"))),
        None => return Err(missing(format!("{} was not read", btf_path.display()))),
    };
    let signal = btf
        .member("task_struct", "signal")
        .filter(|m| m.is_pointer)
        .ok_or_else(|| missing("BTF has no pointer task_struct.signal".into()))?;
    let live = btf
        .member("signal_struct", "live")
        .filter(|m| m.size == 4)
        .ok_or_else(|| missing("BTF has no 4-byte signal_struct.live".into()))?;
    let offset = |v: u32, what: &str| {
        u16::try_from(v).map_err(|_| missing(format!("{what} is at offset {v}, beyond 65535")))
    };
    d.config.task_signal = offset(signal.offset, "task_struct.signal")?;
    d.config.signal_live = offset(live.offset, "signal_struct.live")?;
    d.features.push(Feature {
        name: EXIT_GROUP_DEAD,
        enabled: false,
    });
    d.details.push(format!(
        "process exits are told from thread exits by signal_struct.live (task_struct.signal at \
         {}, live at {}, from BTF): sched_process_exit has no group_dead before Linux 6.16",
        signal.offset, live.offset
    ));
    Ok(())
}

/// `kmem:rss_stat`: optional (RSS metrics), with the layout every kernel since 5.5 has.
fn rss_stat(
    tracefs: &Tracefs,
    d: &mut Detected,
    btf: Option<&Btf>,
    src: &Sources,
    source: RssSource,
) -> Result<(), ProbeError> {
    let layout = if tracefs.has("kmem", "rss_stat") {
        let rss = |name: &str, size: u16| field(tracefs, "kmem", "rss_stat", name, size);
        (|| -> Result<[u16; 4], ProbeError> {
            Ok([
                rss("mm_id", 4)?,
                rss("curr", 4)?,
                rss("member", 4)?,
                rss("size", 8)?,
            ])
        })()
        .map_err(|e| format!("has a layout the probe does not know ({e})"))
    } else {
        Err("is missing".to_owned())
    };
    match layout {
        Ok([mm_id, curr, member, size]) => {
            let c = &mut d.config;
            (c.rss_mm_id, c.rss_curr, c.rss_member, c.rss_size) = (mm_id, curr, member, size);
            // Attached only when asked for: it runs on nearly every page fault.
            if source == RssSource::Events {
                d.tracepoints.push(("kmem", "rss_stat".to_owned()));
                d.rss_events = true;
            }
            d.features.push(Feature {
                name: RSS_STAT,
                enabled: true,
            });
        }
        Err(why) => {
            // Nothing changes for the default source, which does not use it.
            if source == RssSource::Events {
                d.notices.push(format!(
                    "kernel feature {RSS_STAT} is off: kmem:rss_stat {why}; RSS metrics \
                     (tracer_rss_bytes, tracer_rss_peak_bytes) are read from /proc/PID/status \
                     instead (--rss-source procfs)"
                ));
            }
            d.features.push(Feature {
                name: RSS_STAT,
                enabled: false,
            });
        }
    }
    // Before Linux 6.2 (SPLIT_RSS_COUNTING) each thread counts its own faults and adds them to
    // the mm's counters, which raise the event, every 64 faults: the event (like
    // /proc/PID/status) lags by up to 64 pages per thread. 6.2 made the counters per-CPU and
    // the event reports their sum. BTF tells it (task_struct.rss_stat exists only then), else
    // the version does.
    let batched = match btf {
        Some(btf) => btf.member("task_struct", "rss_stat").is_some(),
        None => kernel_version(&src.release).is_some_and(|v| v < (6, 2)),
    };
    d.features.push(Feature {
        name: RSS_STAT_EXACT,
        enabled: !batched,
    });
    if batched {
        d.details.push(
            "kernel feature rss_stat_exact is off (before Linux 6.2): resident memory is \
             reported as the kernel counts it, up to 64 pages per thread behind, like \
             /proc/PID/status"
                .to_owned(),
        );
    }
    Ok(())
}

/// `signal_struct.maxrss` from BTF, so the exit probe can tell the peak resident memory of a
/// process whose mm is gone (RSS from /proc). Without it the peak of an exited process is the
/// last VmHWM read.
fn exit_maxrss(d: &mut Detected, btf: Option<&Btf>) {
    let found = btf.and_then(|btf| {
        let signal = btf
            .member("task_struct", "signal")
            .filter(|m| m.is_pointer)?;
        let maxrss = btf
            .member("signal_struct", "maxrss")
            .filter(|m| m.size == 8)?;
        let mm = btf.member("task_struct", "mm").filter(|m| m.is_pointer)?;
        let hiwater = btf
            .member("mm_struct", "hiwater_rss")
            .filter(|m| m.size == 8)?;
        Some([signal, maxrss, mm, hiwater].map(|m| u16::try_from(m.offset).unwrap_or(0)))
    });
    match found {
        Some([signal, maxrss, mm, hiwater]) if maxrss != 0 && signal != 0 => {
            d.config.task_signal = signal;
            d.config.signal_maxrss = maxrss;
            (d.config.task_mm, d.config.mm_hiwater_rss) = (mm, hiwater);
        }
        _ => d.details.push(
            "the peak resident memory of an exited process is the last VmHWM read: \
             signal_struct.maxrss was not found in the kernel's BTF"
                .to_owned(),
        ),
    }
}

/// `syscalls:sys_enter_{clone,clone3,fork,vfork}`: optional (thread or process at fork).
fn clone_tracepoints(tracefs: &Tracefs, d: &mut Detected) -> Result<(), ProbeError> {
    let mut missing = Vec::new();
    for name in CLONE_SYSCALLS {
        let tp = format!("sys_enter_{name}");
        if !ARCH_HAS_FORK && matches!(name, "fork" | "vfork") {
            continue;
        }
        if !tracefs.has("syscalls", &tp) {
            missing.push(format!("syscalls:{tp}"));
            continue;
        }
        let offset = match name {
            "clone" => Some((field(tracefs, "syscalls", &tp, "clone_flags", 8), 0)),
            "clone3" => Some((field(tracefs, "syscalls", &tp, "uargs", 8), 1)),
            _ => None,
        };
        match offset {
            Some((Err(err), _)) => {
                missing.push(format!("syscalls:{tp} (unknown layout: {err})"));
                continue;
            }
            Some((Ok(offset), 0)) => d.config.clone_flags = offset,
            Some((Ok(offset), _)) => d.config.clone3_uargs = offset,
            None => {}
        }
        d.syscall_tracepoints.push(("syscalls", tp));
    }
    // The raw sys_enter probe (and the kprobes' entry) reads the flags of every clone itself.
    let own = d.raw_syscalls || d.syscall_kprobes;
    if !missing.is_empty() && !own {
        d.notices.push(format!(
            "kernel feature {CLONE_TRACEPOINTS} is off: {} missing; new tasks are classified \
             from /proc and reported as \"child\": \"unknown\"",
            missing.join(", ")
        ));
    }
    d.features.push(Feature {
        name: CLONE_TRACEPOINTS,
        enabled: missing.is_empty() || own,
    });
    Ok(())
}

/// `mmap_lock:mmap_lock_acquire_returned`: optional (records of a process in the kernel's order
/// of its changes, not in their arrival order).
fn mmap_lock_order(tracefs: &Tracefs, d: &mut Detected, want: MmapLockOrder) {
    let off = |d: &mut Detected| {
        d.features.push(Feature {
            name: MMAP_LOCK_ORDER,
            enabled: false,
        });
    };
    let fallback = "records of a multi-threaded process are applied in the order they arrive, \
                    and a change found out of order makes the model resync from /proc \
                    (tracer_model_order_conflicts_total)";
    if want == MmapLockOrder::Off {
        d.details.push(format!(
            "kernel feature {MMAP_LOCK_ORDER} is off (--mmap-lock-order off): {fallback}"
        ));
        return off(d);
    }
    let layout = if tracefs.has("mmap_lock", MMAP_LOCK_TRACEPOINT) {
        tracefs
            .format("mmap_lock", MMAP_LOCK_TRACEPOINT)
            .map_err(|e| e.to_string())
            .and_then(|format| mmap_lock_layout(&format))
    } else {
        Err("is missing (Linux 5.10+ with CONFIG_TRACING)".into())
    };
    match layout {
        Err(why) => {
            d.notices.push(format!(
                "kernel feature {MMAP_LOCK_ORDER} is off: mmap_lock:{MMAP_LOCK_TRACEPOINT} \
                 {why}; {fallback}"
            ));
            off(d);
        }
        // Off by choice, not missing: a documented difference (`-v`), not a warning.
        Ok((_, true)) if want == MmapLockOrder::Auto => {
            d.details.push(format!(
                "kernel feature {MMAP_LOCK_ORDER} is off: before Linux 6.14 the kernel computes \
                 a memory cgroup path for every mmap_lock acquisition of every process while \
                 mmap_lock:{MMAP_LOCK_TRACEPOINT} has a probe (--mmap-lock-order on accepts \
                 that cost); {fallback}"
            ));
            off(d);
        }
        Ok((program, costly)) => {
            if costly {
                d.details.push(format!(
                    "kernel feature {MMAP_LOCK_ORDER} is on (--mmap-lock-order on): every \
                     mmap_lock acquisition of every process computes a memory cgroup path \
                     while the probe is attached (before Linux 6.14)"
                ));
            }
            d.order_program = Some(program);
            d.features.push(Feature {
                name: MMAP_LOCK_ORDER,
                enabled: true,
            });
        }
    }
}

#[cfg(test)]
mod tests;
