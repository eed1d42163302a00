//! Which probes see the syscalls, in order of preference where the kernel offers them:
//!
//! - kprobes on the kernel functions behind the syscalls (feature `syscall_kprobes`,
//!   tracer-ebpf/src/probes/kprobes.rs): `__x64_sys_*` (`__arm64_sys_*`) of the six traced
//!   syscalls (entry and return) and of clone, clone3, fork, vfork, execve, execveat (entry).
//!   Any enabled syscall tracepoint puts every thread of the machine on the kernel's slow
//!   syscall path (an untraced `getppid` loop: +26 % beside `attach` on the per-syscall
//!   tracepoints, +131 % beside `run` on the raw ones); a kprobe costs only the calls of its
//!   function, so an untraced process pays nothing for the syscalls the tracer does not trace.
//!   The default for `attach` (long-lived, beside the rest of the machine) where the kernel has
//!   kprobes (`CONFIG_KPROBES`, the `kprobe` perf PMU) and the architecture is x86_64 or
//!   aarch64. Not for `run`: closing each kprobe at teardown waits for the kernel under its
//!   `event_mutex`, one after another, like the per-syscall tracepoints (`tracer run -q --
//!   true` in the TCG VMs of `cargo xtask vmtest`: 1.8-1.9 s on the raw ones, 2.8-3.0 s on
//!   kprobes on 6.1 and 6.12; 1.6-2.4 s and 2.1-2.3 s on 5.10).
//! - the two raw tracepoints `raw_syscalls:sys_enter` / `sys_exit` (feature `raw_syscalls`,
//!   tracer-ebpf/src/probes/raw_syscalls.rs): the default for `run`;
//! - the per-syscall tracepoints `syscalls:sys_{enter,exit}_*`: the fallback.
//!
//! The raw ones build no perf record per event and detach without the RCU grace period each
//! closed perf tracepoint waits for (under the kernel's `event_mutex`, so one after another):
//! `tracer run -- true` took 0.3-0.4 s with them, 0.3-1.1 s without. But their programs run
//! for every syscall of every process, about 95 ns each way on a 2-core VM with retpolines
//! (an untraced `getppid` loop: 160 -> 355 ns per call), where the per-syscall tracepoints
//! cost only the slow path to syscalls they do not trace. Hence raw for `tracer run` (short,
//! started and stopped often, e.g. per CI test binary); for `attach` kprobes, or where the
//! kernel has none the per-syscall tracepoints. Should the kernel refuse the kprobes at attach,
//! the tracer says so and takes the choice it would have made without them.
//! `TRACER_SYSCALL_PROBES=kprobes|raw|tracepoints` overrides it (tests and the bench run all
//! three). The probes know the `pt_regs` layout and syscall numbers of x86_64 and aarch64 only.

use super::known::Feature;
use crate::kernel::tracefs::Tracefs;

/// The `feature` labels.
pub const RAW_SYSCALLS: &str = "raw_syscalls";
pub const SYSCALL_KPROBES: &str = "syscall_kprobes";

/// The environment variable that picks the syscall probes (`kprobes`, `raw` or
/// `tracepoints`).
pub const FORCE_ENV: &str = "TRACER_SYSCALL_PROBES";

/// What `TRACER_SYSCALL_PROBES` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forced {
    Kprobes,
    Raw,
    Tracepoints,
}

/// The kprobes' entry program, attached to every function of `KPROBE_FUNCTIONS`.
pub const KPROBE_ENTRY: &str = "kp_sys_enter";

/// The syscalls whose kernel functions get the entry kprobe, with the return program of those
/// whose exit is traced (tracer-ebpf/src/probes/kprobes.rs).
pub const KPROBE_FUNCTIONS: [(&str, Option<&str>); 12] = [
    ("brk", Some("kr_sys_brk")),
    ("mmap", Some("kr_sys_mmap")),
    ("munmap", Some("kr_sys_munmap")),
    ("mremap", Some("kr_sys_mremap")),
    ("mprotect", Some("kr_sys_mprotect")),
    ("madvise", Some("kr_sys_madvise")),
    ("clone", None),
    ("clone3", None),
    ("fork", None),
    ("vfork", None),
    ("execve", None),
    ("execveat", None),
];

/// The prefix of the syscall wrappers' names (`CONFIG_ARCH_HAS_SYSCALL_WRAPPER`).
const WRAPPER_PREFIX: &str = if cfg!(target_arch = "aarch64") {
    "__arm64_sys_"
} else {
    "__x64_sys_"
};

/// The kernel function behind syscall `name`, or None where the architecture lacks the syscall
/// (fork and vfork on arm64).
pub fn kernel_function(name: &str) -> Option<String> {
    if !super::known::ARCH_HAS_FORK && matches!(name, "fork" | "vfork") {
        return None;
    }
    Some(format!("{WRAPPER_PREFIX}{name}"))
}

/// Whether the kernel can attach kprobes through perf_event_open (the `kprobe` PMU, which
/// `CONFIG_KPROBE_EVENTS` provides and which needs `CONFIG_KPROBES`).
pub fn kernel_has_kprobes() -> bool {
    std::path::Path::new("/sys/bus/event_source/devices/kprobe/type").exists()
}

/// (program, raw tracepoint) of the entry and exit probes.
pub const RAW_PROGRAMS: [(&str, &str); 2] =
    [("raw_sys_enter", "sys_enter"), ("raw_sys_exit", "sys_exit")];

/// Whether the probe has syscall numbers and a `pt_regs` layout for this architecture.
const ARCH_KNOWN: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

/// What `TRACER_SYSCALL_PROBES` asks for.
pub fn forced() -> Option<Forced> {
    match crate::kernel::preflight::debug_env(FORCE_ENV)?.to_str()? {
        "kprobes" => Some(Forced::Kprobes),
        "raw" => Some(Forced::Raw),
        "tracepoints" => Some(Forced::Tracepoints),
        _ => None,
    }
}

/// Decides how syscalls are probed: returns (kprobes, raw), with the raw tracepoints the choice
/// should the kernel refuse the kprobes. `want_raw` is the session's preference (`run`; `attach`
/// prefers kprobes); `has_kprobes` and `forced` are `kernel_has_kprobes()` and `forced()`.
/// Adds the `-v` lines to `details` and both features to `features`.
pub fn decide(
    tracefs: &Tracefs,
    (has_kprobes, forced): (bool, Option<Forced>),
    want_raw: bool,
    details: &mut Vec<String>,
    features: &mut Vec<Feature>,
) -> (bool, bool) {
    let (raw, detail) = choose(tracefs, want_raw, forced);
    let (kprobes, kprobe_detail) = choose_kprobes(has_kprobes, !want_raw, forced);
    details.push(kprobe_detail);
    // With kprobes, the raw tracepoints are only the fallback (announced if taken).
    if !kprobes {
        details.push(detail);
    }
    features.push(Feature {
        name: RAW_SYSCALLS,
        enabled: raw && !kprobes,
    });
    features.push(Feature {
        name: SYSCALL_KPROBES,
        enabled: kprobes,
    });
    (kprobes, raw)
}

/// Decides whether to probe syscalls with kprobes: `want` is the session's preference
/// (`attach`), `forced` the environment's, which wins; `has_kprobes` whether the kernel can.
/// Returns the decision and a line for `-v`.
pub fn choose_kprobes(has_kprobes: bool, want: bool, forced: Option<Forced>) -> (bool, String) {
    let why = match forced {
        Some(Forced::Raw) => format!("{FORCE_ENV}=raw"),
        Some(Forced::Tracepoints) => format!("{FORCE_ENV}=tracepoints"),
        _ if !want && forced.is_none() => format!(
            "tracer run: closing a kprobe at teardown waits for the kernel, one after another; \
             {FORCE_ENV}=kprobes changes that"
        ),
        _ if !ARCH_KNOWN => format!("no syscall numbers for {}", std::env::consts::ARCH),
        _ if !has_kprobes => "the kernel has no kprobes: no kprobe perf PMU in \
                              /sys/bus/event_source/devices, CONFIG_KPROBES is not set"
            .to_owned(),
        _ => {
            return (
                true,
                format!(
                    "kernel feature {SYSCALL_KPROBES} is on: syscalls are probed by kprobes on \
                     the kernel functions {WRAPPER_PREFIX}{{brk,mmap,munmap,mremap,mprotect,\
                     madvise}} (entry and return) and those of clone, fork and execve (entry): \
                     untraced processes pay nothing for the syscalls the tracer does not trace"
                ),
            );
        }
    };
    (
        false,
        format!("kernel feature {SYSCALL_KPROBES} is off ({why})"),
    )
}

/// Decides between the raw tracepoints (true) and the per-syscall ones: `want` is the
/// session's preference, `forced` the environment's, which wins (for `kprobes`, this is the
/// choice should the kernel refuse them). Returns the decision and a
/// line for `-v`.
pub fn choose(tracefs: &Tracefs, want: bool, forced: Option<Forced>) -> (bool, String) {
    let forced = match forced {
        Some(Forced::Raw) => Some(true),
        Some(Forced::Tracepoints) => Some(false),
        // Kprobes (or the choice should the kernel refuse them): the session's preference.
        Some(Forced::Kprobes) | None => None,
    };
    let want = forced.unwrap_or(want);
    let missing: Vec<&str> = ["sys_enter", "sys_exit"]
        .into_iter()
        .filter(|name| !tracefs.has("raw_syscalls", name))
        .collect();
    let why = if forced == Some(false) {
        format!("{FORCE_ENV}=tracepoints")
    } else if !want {
        "tracer attach: untraced processes pay nothing for the syscalls these do not trace; \
         TRACER_SYSCALL_PROBES=raw changes that"
            .to_owned()
    } else if !ARCH_KNOWN {
        format!("no syscall numbers for {}", std::env::consts::ARCH)
    } else if !missing.is_empty() {
        format!("raw_syscalls:{} missing", missing.join(", raw_syscalls:"))
    } else {
        return (
            true,
            format!(
                "kernel feature {RAW_SYSCALLS} is on: syscalls are probed on the raw tracepoints \
                 raw_syscalls:sys_enter/sys_exit (every syscall of every process runs their \
                 programs; TRACER_SYSCALL_PROBES=tracepoints changes that)"
            ),
        );
    };
    (
        false,
        format!(
            "kernel feature {RAW_SYSCALLS} is off ({why}): syscalls are probed on the \
             per-syscall tracepoints syscalls:sys_{{enter,exit}}_*, which build a perf record \
             per event and make teardown wait for the kernel once per tracepoint"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tracefs tree with the raw_syscalls events listed.
    fn tracefs_with(test: &str, events: &[&str]) -> (Tracefs, std::path::PathBuf) {
        let root = std::env::temp_dir().join(format!(
            "tracer-syscall-source-{test}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&root);
        for event in events {
            let dir = root.join("events/raw_syscalls").join(event);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("format"), "name: x\nformat:\n").unwrap();
        }
        (Tracefs::at(&root), root)
    }

    #[test]
    fn raw_tracepoints_for_run_unless_missing_or_forced() {
        let (both, root) = tracefs_with("both", &["sys_enter", "sys_exit"]);
        assert_eq!(choose(&both, true, None).0, ARCH_KNOWN);
        assert_eq!(choose(&both, false, Some(Forced::Raw)).0, ARCH_KNOWN);
        let (forced, why) = choose(&both, true, Some(Forced::Tracepoints));
        assert!(!forced);
        assert!(why.contains("TRACER_SYSCALL_PROBES=tracepoints"), "{why}");
        let (attach, why) = choose(&both, false, None);
        assert!(!attach);
        assert!(why.contains("tracer attach"), "{why}");
        let _ = std::fs::remove_dir_all(root);
        let (half, root) = tracefs_with("half", &["sys_enter"]);
        let (raw, why) = choose(&half, true, None);
        assert!(!raw);
        if ARCH_KNOWN {
            assert!(why.contains("raw_syscalls:sys_exit missing"), "{why}");
        }
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn kprobes_for_attach_where_the_kernel_has_them_else_the_fallback_says_why() {
        let (on, why) = choose_kprobes(true, true, None);
        assert_eq!(on, ARCH_KNOWN, "{why}");
        assert_eq!(
            choose_kprobes(true, false, Some(Forced::Kprobes)).0,
            ARCH_KNOWN
        );
        // `run`, or another source forced: off, and the line says why.
        let (on, why) = choose_kprobes(true, false, None);
        assert!(!on);
        assert!(why.contains("tracer run"), "{why}");
        let (on, why) = choose_kprobes(true, true, Some(Forced::Raw));
        assert!(!on);
        assert!(why.contains("TRACER_SYSCALL_PROBES=raw"), "{why}");
        // A kernel without kprobes (CONFIG_KPROBES unset): off, named, even when forced.
        for forced in [None, Some(Forced::Kprobes)] {
            let (on, why) = choose_kprobes(false, true, forced);
            assert!(!on);
            assert!(why.contains("syscall_kprobes is off"), "{why}");
            if ARCH_KNOWN {
                assert!(why.contains("the kernel has no kprobes"), "{why}");
            }
        }
        // Forced kprobes leave the fallback to the session's own choice.
        let (both, root) = tracefs_with("kprobes", &["sys_enter", "sys_exit"]);
        assert_eq!(choose(&both, true, Some(Forced::Kprobes)).0, ARCH_KNOWN);
        assert!(!choose(&both, false, Some(Forced::Kprobes)).0);
        let _ = std::fs::remove_dir_all(root);
        assert!(kernel_function("mmap").unwrap().ends_with("_sys_mmap"));
    }
}
