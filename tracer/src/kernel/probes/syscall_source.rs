//! Which probes see the syscalls (feature `raw_syscalls`): the two raw tracepoints
//! `raw_syscalls:sys_enter` / `sys_exit` (tracer-ebpf/src/probes/raw_syscalls.rs), or the
//! per-syscall tracepoints `syscalls:sys_{enter,exit}_*` as the fallback.
//!
//! The raw ones build no perf record per event and detach without the RCU grace period each
//! closed perf tracepoint waits for (under the kernel's `event_mutex`, so one after another):
//! `tracer run -- true` took 0.3-0.4 s with them, 0.3-1.1 s without. But their programs run
//! for every syscall of every process, about 95 ns each way on a 2-core VM with retpolines
//! (an untraced `getppid` loop: 160 -> 355 ns per call), where the per-syscall tracepoints
//! cost nothing to syscalls they do not trace. Hence the default: raw for `tracer run` (short,
//! started and stopped often, e.g. per CI test binary), per-syscall tracepoints for `attach`
//! (long-lived, beside the rest of the machine). `TRACER_SYSCALL_PROBES=raw|tracepoints`
//! overrides it (tests and the bench run both). The probe knows the `pt_regs` layout and
//! syscall numbers of x86_64 and aarch64 only.

use crate::kernel::tracefs::Tracefs;

/// The `feature` label.
pub const RAW_SYSCALLS: &str = "raw_syscalls";

/// The environment variable that picks the syscall probes (`raw` or `tracepoints`).
pub const FORCE_ENV: &str = "TRACER_SYSCALL_PROBES";

/// (program, raw tracepoint) of the entry and exit probes.
pub const RAW_PROGRAMS: [(&str, &str); 2] =
    [("raw_sys_enter", "sys_enter"), ("raw_sys_exit", "sys_exit")];

/// Whether the probe has syscall numbers and a `pt_regs` layout for this architecture.
const ARCH_KNOWN: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

/// What `TRACER_SYSCALL_PROBES` asks for: Some(true) raw, Some(false) per-syscall tracepoints.
pub fn forced() -> Option<bool> {
    match crate::kernel::preflight::debug_env(FORCE_ENV)?.to_str()? {
        "raw" => Some(true),
        "tracepoints" => Some(false),
        _ => None,
    }
}

/// Decides between the raw tracepoints (true) and the per-syscall ones: `want` is the
/// session's preference, `forced` the environment's, which wins. Returns the decision and a
/// line for `-v`.
pub fn choose(tracefs: &Tracefs, want: bool, forced: Option<bool>) -> (bool, String) {
    let want = forced.unwrap_or(want);
    let missing: Vec<&str> = ["sys_enter", "sys_exit"]
        .into_iter()
        .filter(|name| !tracefs.has("raw_syscalls", name))
        .collect();
    let why = if forced == Some(false) {
        format!("{FORCE_ENV}=tracepoints")
    } else if !want {
        "tracer attach: untraced processes pay nothing for the syscalls these do not trace;          TRACER_SYSCALL_PROBES=raw changes that"
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
        assert_eq!(choose(&both, false, Some(true)).0, ARCH_KNOWN);
        let (forced, why) = choose(&both, true, Some(false));
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
}
