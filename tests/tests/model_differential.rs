//! The reconstructed address space against the kernel's own /proc/PID/maps: a helper performs
//! seeded random mmap/munmap/mprotect/mremap/brk/madvise sequences and stops itself at
//! checkpoints, where the two must be equal after coalescing.
//!
//! CI runs 20 seeds x 500 operations. A longer run: TRACER_FUZZ_SEEDS=200
//! TRACER_FUZZ_OPS=5000 cargo xtask test -- --test model_differential

use std::time::Duration;

use tests::*;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs one seed; returns how many checkpoints were compared.
fn run_seed(seed: u64, ops: u64, every: u64) -> usize {
    let dir = scratch(&format!("fuzz-{seed}"));
    let args = [
        seed.to_string(),
        ops.to_string(),
        every.to_string(),
        dir.display().to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (mut daemon, pid) = Daemon::run_workload(&[], "vma_fuzz", &args);
    let mut checkpoints = 0;
    while wait_stopped(pid, Duration::from_secs(60)) {
        checkpoints += 1;
        if let Err(diff) = compare_maps(&daemon, pid) {
            panic!("seed {seed}, checkpoint {checkpoints}: the model differs from /proc\n{diff}");
        }
        let check = daemon.post_json(&format!("/api/v1/processes/{pid}/check"));
        assert_eq!(
            check["differences"], 0,
            "seed {seed}: the drift check disagrees: {check}"
        );
        let detail = daemon.get_json(&format!("/api/v1/processes/{pid}"));
        assert_eq!(
            detail["virtual_memory_bytes"].as_u64().unwrap(),
            vm_size(pid),
            "seed {seed}: VSZ"
        );
        resume(pid);
    }
    let out = daemon.wait(Duration::from_secs(60));
    assert!(
        out.status.success(),
        "seed {seed}: {}",
        daemon.stderr_so_far()
    );
    checkpoints
}

fn run_seeds(range: std::ops::Range<u64>) {
    if !kernel_available() {
        return;
    }
    let ops = env_or("TRACER_FUZZ_OPS", 500);
    let every = env_or("TRACER_FUZZ_EVERY", 50);
    let mut total = 0;
    for seed in range.clone() {
        total += run_seed(seed, ops, every);
    }
    println!("seeds {range:?} x {ops} operations: {total} checkpoints, all equal to /proc");
}

#[test]
fn model_equals_proc_maps_seeds_1_to_10() {
    let seeds = env_or("TRACER_FUZZ_SEEDS", 20);
    run_seeds(1..1 + seeds.div_ceil(2));
}

#[test]
fn model_equals_proc_maps_seeds_11_to_20() {
    let seeds = env_or("TRACER_FUZZ_SEEDS", 20);
    run_seeds(1 + seeds.div_ceil(2)..1 + seeds);
}
