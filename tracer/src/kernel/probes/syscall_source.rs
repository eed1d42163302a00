//! Which probes see the syscalls (feature `raw_syscalls`): the two raw tracepoints
//! `raw_syscalls:sys_enter` / `sys_exit` (tracer-ebpf/src/probes/raw_syscalls.rs), or the
//! per-syscall tracepoints `syscalls:sys_{enter,exit}_*` as the fallback.
//!
//! The raw ones build no perf record per event and detach without the RCU grace period each
//! closed perf tracepoint waits for; their programs read the arguments from `pt_regs`, whose
//! layout and syscall numbers the probe knows for x86_64 and aarch64 only.
//! `TRACER_SYSCALL_PROBES=tracepoints` forces the fallback (tests run both).

use crate::kernel::tracefs::Tracefs;

/// The `feature` label.
pub const RAW_SYSCALLS: &str = "raw_syscalls";

/// The environment variable that picks the fallback (`tracepoints`).
pub const FORCE_ENV: &str = "TRACER_SYSCALL_PROBES";

/// (program, raw tracepoint) of the entry and exit probes.
pub const RAW_PROGRAMS: [(&str, &str); 2] =
    [("raw_sys_enter", "sys_enter"), ("raw_sys_exit", "sys_exit")];

/// Whether the probe has syscall numbers and a `pt_regs` layout for this architecture.
const ARCH_KNOWN: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

/// Whether `TRACER_SYSCALL_PROBES` asks for the per-syscall tracepoints.
pub fn forced_tracepoints() -> bool {
    std::env::var_os(FORCE_ENV).is_some_and(|v| v == "tracepoints")
}

/// Decides between the raw tracepoints (true) and the fallback, with a line for `-v` saying
/// which and why.
pub fn choose(tracefs: &Tracefs, forced_tracepoints: bool) -> (bool, String) {
    let missing: Vec<&str> = ["sys_enter", "sys_exit"]
        .into_iter()
        .filter(|name| !tracefs.has("raw_syscalls", name))
        .collect();
    let why = if forced_tracepoints {
        format!("{FORCE_ENV}=tracepoints")
    } else if !ARCH_KNOWN {
        format!("no syscall numbers for {}", std::env::consts::ARCH)
    } else if !missing.is_empty() {
        format!("raw_syscalls:{} missing", missing.join(", raw_syscalls:"))
    } else {
        return (
            true,
            format!(
                "kernel feature {RAW_SYSCALLS} is on: syscalls are probed on the raw tracepoints \
                 raw_syscalls:sys_enter/sys_exit"
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
    fn raw_tracepoints_unless_missing_or_forced() {
        let (both, root) = tracefs_with("both", &["sys_enter", "sys_exit"]);
        assert_eq!(choose(&both, false).0, ARCH_KNOWN);
        let (forced, why) = choose(&both, true);
        assert!(!forced);
        assert!(why.contains("TRACER_SYSCALL_PROBES=tracepoints"), "{why}");
        let _ = std::fs::remove_dir_all(root);
        let (half, root) = tracefs_with("half", &["sys_enter"]);
        let (raw, why) = choose(&half, false);
        assert!(!raw);
        if ARCH_KNOWN {
            assert!(why.contains("raw_syscalls:sys_exit missing"), "{why}");
        }
        let _ = std::fs::remove_dir_all(root);
    }
}
