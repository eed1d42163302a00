//! JSON views of the tracer's state for the HTTP API (`/api/v1/...`). Pure: built from the
//! process table, no I/O.

use serde::{Serialize, Serializer};
use serde_json::{Map, Value, json};

use crate::{
    kernel::syscalls::SyscallKind,
    model::{
        region::{Region, classified},
        vma::Perms,
    },
    output::jsonl::{faults_json, hex},
    output::summary::DaemonCounters,
    tracking::process::{Lifecycle, ProcessState},
    tracking::process_figures::RSS_TYPES,
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
    let exited_ns = match p.lifecycle {
        Lifecycle::Running => None,
        Lifecycle::Exited { ts_ns } => Some(ts_ns),
    };
    json!({
        "pid": p.tgid,
        "parent": p.parent,
        "comm": p.comm,
        "exe": p.exe,
        "cgroup": p.cgroup,
        "cgroup_identity": p.cgroup.as_deref().map(crate::procfs::cgroup::Identity::parse),
        "state": p.state_name(),
        "exited_ts_ns": exited_ns,
        "exit_status": p.exit_status,
        "virtual_memory_bytes": p.space.virtual_size(),
        "vmas": p.space.vma_count(),
        "heap_bytes": p.heap_size(),
        // For the live page's table (sorted by these) and its fault rate.
        "rss_bytes": p.resident(),
        "page_faults": p.faults.total(),
        "syscalls": syscalls_json(p),
    })
}

/// An address in the JSON views' `"0x..."` form, written without a JSON tree node.
struct Hex(u64);

impl Serialize for Hex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{:#x}", self.0))
    }
}

struct PermsText(Perms);

impl Serialize for PermsText {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// One row of `vma_list`.
#[derive(Serialize)]
struct VmaJson {
    start: Hex,
    end: Hex,
    size: u64,
    perms: PermsText,
    offset: Hex,
    name: String,
    region: Region,
    faults: u64,
}

/// Everything about one process for `/api/v1/processes/{pid}`: the figures as a JSON object
/// and the VMAs as rows serialised straight to text (a big process has tens of thousands; a
/// JSON tree of them cost more than the rest of the view, on the loop that drains the ring
/// buffer).
#[derive(Serialize)]
pub struct ProcessDetail {
    #[serde(flatten)]
    pub figures: Value,
    vma_list: Vec<VmaJson>,
}

/// Everything about one process for `/api/v1/processes/{pid}`.
pub fn process_detail(p: &ProcessState) -> ProcessDetail {
    let mut out = process_summary(p);
    let vmas: Vec<VmaJson> = p
        .vma_rows()
        .into_iter()
        .map(|row| VmaJson {
            start: Hex(row.vma.start),
            end: Hex(row.vma.end),
            size: row.vma.len(),
            perms: PermsText(row.vma.perms),
            offset: Hex(row.vma.offset),
            name: row.name,
            region: row.region,
            faults: row.faults,
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
        "size": p.heap_size(),
        "peak_size": p.heap_peak(),
        "moves": p.heap.moves,
        "history": history,
        "history_dropped": p.brk_history_dropped,
    });
    out["virtual_memory_by_region"] = Value::Object(by_region);
    out["peaks"] = json!({"virtual_memory_bytes": p.peak_vsz, "vmas": p.peak_vmas});
    out["bytes_mapped"] = json!(p.bytes_mapped);
    out["bytes_unmapped"] = json!(p.bytes_unmapped);
    out["page_faults"] = faults_json(&p.faults);
    let now = p.rss_now();
    let mut rss: Map<String, Value> = RSS_TYPES
        .iter()
        .map(|&(name, kind)| (name.to_string(), json!(now[kind])))
        .collect();
    rss.insert("peak_resident".into(), json!(p.rss_peak()));
    out["rss"] = Value::Object(rss);
    out["threads_created"] = json!(p.threads_created);
    out["drift"] = json!({
        "resyncs": p.drift.resyncs,
        "differences": p.drift.differences,
        "reseeds": p.seed.retaken,
    });
    out["seeded_at_ns"] = json!(p.seed.at_ns);
    out["recent_changes"] = p.recent.to_json();
    out["phases"] = serde_json::to_value(&p.phases).unwrap_or(Value::Null);
    ProcessDetail {
        figures: out,
        vma_list: vmas,
    }
}

/// The daemon's own counters.
pub fn daemon_json(d: &DaemonCounters) -> Value {
    let by_kind = |counts| -> Map<String, Value> {
        DaemonCounters::by_kind(counts)
            .into_iter()
            .map(|(name, n)| (name.to_string(), json!(n)))
            .collect()
    };
    json!({
        "records": by_kind(&d.records),
        "lost": by_kind(&d.lost),
        "decode_errors": d.decode_errors,
        "exits_without_enter": d.exits_without_enter,
        "inflight_full": d.inflight_full,
        "traced_full": d.traced_full,
        "model_reorders": d.model_reorders,
        "order_conflicts": d.order_conflicts,
    })
}
