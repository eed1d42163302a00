//! JSON views of the tracer's state for the HTTP API (`/api/v1/...`). Pure: built from the
//! process table, no I/O.

use serde_json::{Map, Value, json};
use tracer_common::counters::{RSS_ANON, RSS_FILE, RSS_SHMEM, RSS_SWAP};

use crate::{
    jsonl::{faults_json, hex},
    model::{
        maps::name_of,
        region::{Region, classified},
    },
    process::{Lifecycle, ProcessState},
    summary::DaemonCounters,
    syscalls::SyscallKind,
};

fn opt_hex(v: Option<u64>) -> Value {
    v.map_or(Value::Null, hex)
}

fn syscalls_json(p: &ProcessState) -> Value {
    let mut map = Map::new();
    for kind in SyscallKind::ALL {
        let s = p.stats(kind);
        map.insert(
            kind.name().into(),
            json!({"calls": s.calls, "failed": s.failed}),
        );
    }
    Value::Object(map)
}

/// Bytes mapped per region class.
pub fn vsz_by_region(p: &ProcessState) -> Vec<(Region, u64)> {
    let mut totals: Vec<(Region, u64)> = Region::ALL.iter().map(|&r| (r, 0)).collect();
    for (vma, region) in classified(&p.space) {
        if let Some(slot) = totals.iter_mut().find(|(r, _)| *r == region) {
            slot.1 += vma.len();
        }
    }
    totals
}

/// One line per process for `/api/v1/processes`.
pub fn process_summary(p: &ProcessState) -> Value {
    let (state, exited_ns) = match p.lifecycle {
        Lifecycle::Running => ("running", None),
        Lifecycle::Exited { ts_ns } => ("exited", Some(ts_ns)),
    };
    json!({
        "pid": p.tgid,
        "parent": p.parent,
        "comm": p.comm,
        "exe": p.exe,
        "cgroup": p.cgroup,
        "cgroup_identity": p.cgroup.as_deref().map(crate::cgroup::Identity::parse),
        "state": state,
        "exited_ts_ns": exited_ns,
        "exit_status": p.exit_status,
        "virtual_memory_bytes": p.space.virtual_size(),
        "vmas": p.space.vma_count(),
        "heap_bytes": p.heap.size(),
        "syscalls": syscalls_json(p),
    })
}

/// Everything about one process for `/api/v1/processes/{pid}`.
pub fn process_detail(p: &ProcessState) -> Value {
    let mut out = process_summary(p);
    let vmas: Vec<Value> = classified(&p.space)
        .into_iter()
        .map(|(v, region)| {
            json!({
                "start": hex(v.start),
                "end": hex(v.end),
                "size": v.len(),
                "perms": v.perms.to_string(),
                "offset": hex(v.offset),
                "name": name_of(&p.space, v),
                "region": region,
                "faults": p.fault_regions.faults_in(v.start, v.end),
            })
        })
        .collect();
    let by_region: Map<String, Value> = vsz_by_region(p)
        .into_iter()
        .map(|(r, b)| (r.name().to_string(), json!(b)))
        .collect();
    let history: Vec<Value> = p
        .brk_history
        .iter()
        .map(|c| json!({"ts_ns": c.ts_ns, "brk": hex(c.brk)}))
        .collect();
    out["heap"] = json!({
        "start_brk": opt_hex(p.heap.start),
        "brk": opt_hex(p.heap.end),
        "peak_brk": opt_hex(p.heap.peak),
        "size": p.heap.size(),
        "peak_size": p.heap.peak_size(),
        "moves": p.heap.moves,
        "history": history,
        "history_dropped": p.brk_history_dropped,
    });
    out["virtual_memory_by_region"] = Value::Object(by_region);
    out["peaks"] = json!({"virtual_memory_bytes": p.peak_vsz, "vmas": p.peak_vmas});
    out["bytes_mapped"] = json!(p.bytes_mapped);
    out["bytes_unmapped"] = json!(p.bytes_unmapped);
    out["page_faults"] = faults_json(&p.faults);
    out["rss"] = json!({
        "file": p.rss.bytes[RSS_FILE],
        "anon": p.rss.bytes[RSS_ANON],
        "swap": p.rss.bytes[RSS_SWAP],
        "shmem": p.rss.bytes[RSS_SHMEM],
        "peak_resident": p.rss.peak_resident,
    });
    out["threads_created"] = json!(p.threads_created);
    out["drift"] = json!({
        "resyncs": p.resyncs,
        "differences": p.drift_differences,
        "reseeds": p.reseeds,
    });
    out["seeded_at_ns"] = json!(p.seeded_at_ns);
    out["vma_list"] = Value::Array(vmas);
    out
}

/// The daemon's own counters.
pub fn daemon_json(d: &DaemonCounters) -> Value {
    json!({
        "records": {"syscall": d.records[1], "fork": d.records[2], "exec": d.records[3], "exit": d.records[4]},
        "lost": {"syscall": d.lost[1], "fork": d.lost[2], "exec": d.lost[3], "exit": d.lost[4]},
        "decode_errors": d.decode_errors,
        "exits_without_enter": d.exits_without_enter,
        "inflight_full": d.inflight_full,
        "traced_full": d.traced_full,
    })
}
