//! Threads racing on one address space (issue 21): the kernel applies the changes in the order
//! the threads take `mmap_lock` for writing, but the records reach the ring buffer in the
//! order the threads reach `sys_exit`. A block one thread unmaps is handed at once to another
//! thread's `mmap`, which may report first; applied in arrival order, the model would lose
//! a live mapping. With the drift check off (nothing heals behind the test), the rebuilt maps
//! must equal /proc/PID/maps at every SIGSTOP checkpoint.

use std::time::{Duration, Instant};

use tests::*;

/// Checkpoints per thread count: 4 x 50 = 200 in all.
const CHECKPOINTS: u32 = 50;
/// Time the threads race between checkpoints.
const INTERVAL_US: u32 = 20_000;

/// Waits until every thread of `pid` is stopped (a group stop reaches each thread on its way
/// back to user space, so the main thread can show `T` while others are still in a syscall).
/// Returns false when the process is gone.
fn wait_all_stopped(pid: u32, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return false;
        };
        let mut all = true;
        for task in tasks.flatten() {
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                continue;
            };
            match stat[stat.rfind(')').unwrap() + 2..].chars().next() {
                Some('T') | Some('t') => {}
                Some('Z') | Some('X') => return false,
                _ => all = false,
            }
        }
        if all {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    panic!("process {pid} neither stopped nor exited within {limit:?}")
}

/// What one run found.
struct Race {
    checkpoints: u32,
    /// Checkpoints where the model differed from /proc, and the first difference.
    mismatches: u32,
    first: Option<String>,
    /// Records applied in the kernel's rather than the ring buffer's order.
    reorders: u64,
    /// Changes found out of order, for which the model resynced from /proc.
    conflicts: u64,
    /// Whether the kernel side numbers the changes (feature `mmap_lock_order`).
    ordered: bool,
}

fn race(threads: u32, seed: u32) -> Race {
    let args = [
        threads.to_string(),
        CHECKPOINTS.to_string(),
        INTERVAL_US.to_string(),
        seed.to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (mut daemon, pid) =
        Daemon::run_workload(&["--drift-check-interval", "0"], "thread_race", &args);
    let ordered = daemon
        .get("/metrics")
        .contains("tracer_kernel_feature_enabled{feature=\"mmap_lock_order\"} 1");
    let mut r = Race {
        checkpoints: 0,
        mismatches: 0,
        first: None,
        reorders: 0,
        conflicts: 0,
        ordered,
    };
    while wait_all_stopped(pid, Duration::from_secs(30)) {
        r.checkpoints += 1;
        if let Err(diff) = compare_maps(&daemon, pid) {
            r.mismatches += 1;
            let at = r.checkpoints;
            r.first
                .get_or_insert(format!("{threads} threads, checkpoint {at}: {diff}"));
        }
        let daemon_json = &daemon.get_json("/api/v1/processes")["daemon"];
        r.reorders = daemon_json["model_reorders"].as_u64().unwrap_or(0);
        r.conflicts = daemon_json["order_conflicts"].as_u64().unwrap_or(0);
        resume(pid);
    }
    let out = daemon.wait(Duration::from_secs(30));
    assert!(
        out.status.success(),
        "{threads} threads: {}",
        daemon.stderr_so_far()
    );
    r
}

#[test]
fn racing_threads_model_equals_proc_at_every_checkpoint() {
    if !kernel_available() {
        return;
    }
    let started = Instant::now();
    let (mut total, mut bad, mut first) = (0, 0, None);
    for (seed, threads) in [2, 4, 8, 16].into_iter().enumerate() {
        let r = race(threads, seed as u32 + 1);
        println!(
            "{threads} threads: {} checkpoints, {} differ from /proc, {} records applied in \
             the kernel's order rather than their arrival order, {} changes out of order \
             (resynced){}",
            r.checkpoints,
            r.mismatches,
            r.reorders,
            r.conflicts,
            if r.ordered {
                ""
            } else {
                " [mmap_lock_order off]"
            }
        );
        assert_eq!(
            r.checkpoints, CHECKPOINTS,
            "{threads} threads: the workload stopped too few times"
        );
        if r.ordered {
            // In the kernel's order nothing conflicts: a resync from /proc would hide an
            // ordering error from the comparison.
            assert_eq!(r.conflicts, 0, "{threads} threads: changes out of order");
        }
        total += r.checkpoints;
        bad += r.mismatches;
        if first.is_none() {
            first = r.first;
        }
    }
    println!(
        "{total} checkpoints in {:.1} s, {bad} differ from /proc",
        started.elapsed().as_secs_f64()
    );
    if let Some(diff) = first {
        panic!("{bad} of {total} checkpoints differ from /proc; the first:\n{diff}");
    }
}
