//! Call sites (`--stacks`): a C program built `-O2 -fomit-frame-pointer` without debug info
//! (tests/workloads/callsites.c) grows memory through glibc's brk path, its mmap path and a
//! direct mmap, each from its own noinline function, and touches the direct mapping page by
//! page. The pprof profile the tracer writes (read here by the test's own protobuf decoder)
//! must name those functions as the first frames outside the C library, with their byte
//! amounts within 1 %, `inuse_space` gone for the memory freed, and the faults of the
//! touching function.

use std::{
    collections::HashMap,
    io::Read as _,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use tests::{Daemon, kernel_available, run_tracer, scratch, workload};

const MIB: f64 = (1u64 << 20) as f64;

// --- a minimal protobuf reader for profile.proto -------------------------------------------

fn varint(b: &[u8], i: &mut usize) -> u64 {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let byte = b[*i];
        *i += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return v;
        }
        shift += 7;
    }
}

/// The fields of one message: (field number, varint value or bytes).
enum Field<'a> {
    Int(u64),
    Bytes(&'a [u8]),
}

fn fields(b: &[u8]) -> Vec<(u64, Field<'_>)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let key = varint(b, &mut i);
        match key & 7 {
            0 => out.push((key >> 3, Field::Int(varint(b, &mut i)))),
            2 => {
                let len = varint(b, &mut i) as usize;
                out.push((key >> 3, Field::Bytes(&b[i..i + len])));
                i += len;
            }
            1 => i += 8,
            5 => i += 4,
            other => panic!("wire type {other} in a profile"),
        }
    }
    out
}

/// Repeated integers, packed or not.
fn ints(f: &Field<'_>) -> Vec<u64> {
    match f {
        Field::Int(v) => vec![*v],
        Field::Bytes(b) => {
            let mut i = 0;
            let mut out = Vec::new();
            while i < b.len() {
                out.push(varint(b, &mut i));
            }
            out
        }
    }
}

fn int_field(b: &[u8], n: u64) -> u64 {
    fields(b)
        .iter()
        .find(|(k, _)| *k == n)
        .map_or(0, |(_, f)| ints(f)[0])
}

/// A stack as (function, file) pairs, leaf first.
type Stack = Vec<(String, String)>;

/// A profile as the test needs it: per sample, its stack and its values by sample type name.
struct Profile {
    samples: Vec<(Stack, HashMap<String, i64>)>,
}

fn read_profile(path: &Path) -> Profile {
    let gz = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut raw)
        .expect("the profile is gzip'ed");
    let top = fields(&raw);
    let strings: Vec<String> = top
        .iter()
        .filter(|(k, _)| *k == 6)
        .map(|(_, f)| match f {
            Field::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
            Field::Int(_) => panic!("string_table entry is not bytes"),
        })
        .collect();
    let bytes_of = |n: u64| {
        top.iter()
            .filter(move |(k, _)| *k == n)
            .map(move |(_, f)| match f {
                Field::Bytes(b) => *b,
                Field::Int(_) => panic!("field {n} is not a message"),
            })
    };
    let types: Vec<String> = bytes_of(1)
        .map(|b| strings[int_field(b, 1) as usize].clone())
        .collect();
    let functions: HashMap<u64, String> = bytes_of(5)
        .map(|b| (int_field(b, 1), strings[int_field(b, 2) as usize].clone()))
        .collect();
    let mappings: HashMap<u64, String> = bytes_of(3)
        .map(|b| (int_field(b, 1), strings[int_field(b, 5) as usize].clone()))
        .collect();
    let locations: HashMap<u64, (String, String)> = bytes_of(4)
        .map(|b| {
            let line = fields(b)
                .into_iter()
                .find(|(k, _)| *k == 4)
                .map(|(_, f)| match f {
                    Field::Bytes(l) => int_field(l, 1),
                    Field::Int(_) => 0,
                })
                .unwrap_or(0);
            let file = mappings.get(&int_field(b, 2)).cloned().unwrap_or_default();
            let function = functions.get(&line).cloned().unwrap_or_default();
            (int_field(b, 1), (function, file))
        })
        .collect();
    let samples = bytes_of(2)
        .map(|b| {
            let mut stack = Vec::new();
            let mut values = Vec::new();
            for (k, f) in fields(b) {
                match k {
                    1 => stack.extend(ints(&f).iter().map(|id| locations[id].clone())),
                    2 => values.extend(ints(&f).iter().map(|v| *v as i64)),
                    _ => {}
                }
            }
            assert_eq!(values.len(), types.len(), "one value per sample type");
            (stack, types.iter().cloned().zip(values).collect())
        })
        .collect();
    Profile { samples }
}

/// Values per site: the first frame outside the C library, the dynamic loader and jemalloc.
fn by_site(p: &Profile) -> HashMap<String, HashMap<String, i64>> {
    let mut sites: HashMap<String, HashMap<String, i64>> = HashMap::new();
    for (stack, values) in &p.samples {
        let site = stack
            .iter()
            .find(|(_, file)| {
                let name = file.rsplit('/').next().unwrap_or(file);
                !["libc.so", "ld-linux", "libjemalloc"]
                    .iter()
                    .any(|p| name.starts_with(p))
            })
            .map_or("[none]".to_string(), |(f, _)| f.clone());
        let entry = sites.entry(site).or_default();
        for (k, v) in values {
            *entry.entry(k.clone()).or_default() += v;
        }
    }
    sites
}

fn within(what: &str, got: i64, want: f64, tolerance: f64) {
    let err = (got as f64 - want).abs() / want;
    assert!(
        err <= tolerance,
        "{what}: {got} bytes ({:.2} MiB), expected {:.2} MiB within {:.0} % (off by {:.2} %)",
        got as f64 / MIB,
        want / MIB,
        tolerance * 100.0,
        err * 100.0
    );
}

/// The known amounts of tests/workloads/callsites.c.
fn check_sites(p: &Profile) {
    let sites = by_site(p);
    let summary: Vec<String> = sites.iter().map(|(k, v)| format!("{k}: {v:?}")).collect();
    println!("sites:\n{}", summary.join("\n"));
    let get = |site: &str, ty: &str| -> i64 {
        sites
            .get(site)
            .unwrap_or_else(|| {
                panic!(
                    "no site {site} in the profile; sites:\n{}",
                    summary.join("\n")
                )
            })
            .get(ty)
            .copied()
            .unwrap_or(0)
    };
    within(
        "grow_brk alloc_space",
        get("grow_brk", "alloc_space"),
        32.0 * MIB,
        0.01,
    );
    within(
        "grow_brk inuse_space",
        get("grow_brk", "inuse_space"),
        32.0 * MIB,
        0.01,
    );
    within(
        "grow_mmap alloc_space",
        get("grow_mmap", "alloc_space"),
        64.0 * MIB,
        0.01,
    );
    assert_eq!(
        get("grow_mmap", "alloc_objects"),
        16,
        "one mmap per 4 MiB malloc"
    );
    assert!(
        (get("grow_mmap", "inuse_space") as f64) < 0.01 * 64.0 * MIB,
        "grow_mmap's memory was freed (munmap): inuse_space {}",
        get("grow_mmap", "inuse_space")
    );
    assert_eq!(get("grow_mmap", "inuse_objects"), 0);
    within(
        "grow_direct alloc_space",
        get("grow_direct", "alloc_space"),
        24.0 * MIB,
        0.01,
    );
    within(
        "grow_direct inuse_space",
        get("grow_direct", "inuse_space"),
        24.0 * MIB,
        0.01,
    );
    // Faults are sampled (one in 64 per CPU): an estimate, so a looser bound. 24 MiB in
    // 4 KiB pages.
    let pages = 24.0 * MIB / 4096.0;
    let faults = get("touch_pages", "faults") as f64;
    assert!(
        (faults - pages).abs() <= 0.2 * pages,
        "touch_pages faults {faults}, expected about {pages}"
    );
}

/// A profile written by `tracer run OPTIONS --pprof PATH -- COMMAND...` in a fresh scratch
/// directory named `test`, once the run succeeded.
struct Written {
    dir: PathBuf,
    path: PathBuf,
    stderr: String,
}

impl Written {
    fn profile(&self) -> Profile {
        read_profile(&self.path)
    }
}

fn run_pprof(test: &str, options: &[&str], command: &[&str]) -> Written {
    let dir = scratch(test);
    let path = dir.join(format!("{test}.pb.gz"));
    let mut args = vec!["run"];
    args.extend(options);
    args.extend(["--pprof", path.to_str().unwrap(), "--"]);
    args.extend(command);
    let out = run_tracer(&args, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "tracer failed: {stderr}");
    Written { dir, path, stderr }
}

/// The profile served at `route` for `pid` (saved under `dir` for the reader).
fn served(api: &str, route: &str, pid: u32, dir: &Path) -> Profile {
    let url = format!("{api}/debug/pprof/{route}?pid={pid}");
    let mut response = ureq::get(&url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let body = response.body_mut().read_to_vec().expect("body");
    let path = dir.join(format!("{route}.pb.gz"));
    std::fs::write(&path, &body).unwrap();
    read_profile(&path)
}

/// Whether the workload's work is over in `p`: the pages touched, the mmap'd blocks freed.
fn work_done(p: &Profile) -> bool {
    let sites = by_site(p);
    sites
        .get("touch_pages")
        .is_some_and(|s| s.get("faults").is_some_and(|&f| f > 4000))
        && sites
            .get("grow_mmap")
            .is_some_and(|s| s.get("inuse_space") == Some(&0))
}

#[test]
fn sites_of_a_run_name_the_functions_with_their_bytes() {
    if !kernel_available() {
        return;
    }
    let bin = workload("callsites");
    let run = run_pprof("callsites-run", &["--stacks"], &[bin.to_str().unwrap()]);
    // The summary's top sites name the functions too.
    for name in ["grow_brk", "grow_mmap", "grow_direct", "touch_pages"] {
        assert!(
            run.stderr.contains(name),
            "{name} missing from the summary:\n{}",
            run.stderr
        );
    }
    check_sites(&run.profile());
}

/// Kills a `hold` workload when the test ends, passed or not (it would wait forever).
struct Reap(u32);

impl Drop for Reap {
    fn drop(&mut self) {
        // SAFETY: kill takes no pointers.
        unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
    }
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill takes no pointers.
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0, "kill {pid}");
}

/// Polls until `done` holds for what `fetch` returns, or panics after 20 s.
fn poll<T>(mut fetch: impl FnMut() -> T, done: impl Fn(&T) -> bool) -> T {
    let start = std::time::Instant::now();
    loop {
        let v = fetch();
        if done(&v) || start.elapsed() > Duration::from_secs(20) {
            return v;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_served_profile_of_a_running_process_has_the_sites() {
    if !kernel_available() {
        return;
    }
    let dir = scratch("callsites-served");
    let (daemon, pid) = Daemon::run_workload(&["--stacks"], "callsites", &["hold"]);
    let _reap = Reap(pid);
    signal(pid, libc::SIGUSR1);
    let profile = poll(|| served(&daemon.api, "heap", pid, &dir), work_done);
    check_sites(&profile);
    // Another process's profile is not there.
    let url = format!("{}/debug/pprof/heap?pid=1", daemon.api);
    assert!(ureq::get(&url).call().is_err(), "pid 1 is not traced: 404");
    // `_reap` ends the workload (still waiting for its second signal).
}

#[test]
fn sites_of_an_attached_process() {
    if !kernel_available() {
        return;
    }
    use std::io::BufRead as _;
    let dir = scratch("callsites-attach");
    let mut target = Command::new(workload("callsites"))
        .arg("hold")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the workload");
    let mut line = String::new();
    let mut stdout = std::io::BufReader::new(target.stdout.take().unwrap());
    stdout.read_line(&mut line).unwrap();
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let pid = target.id();
    let reap = Reap(pid);
    let profile = dir.join("attach.pb.gz");
    let pid_text = pid.to_string();
    let mut daemon = Daemon::start(&[
        "attach",
        "--pid",
        &pid_text,
        "--listen",
        "127.0.0.1:0",
        "--stacks",
        "--pprof",
        profile.to_str().unwrap(),
    ]);
    signal(pid, libc::SIGUSR1);
    // Wait until the work is done (the served profile shows the freed site), then let it exit.
    poll(|| served(&daemon.api, "allocs", pid, &dir), work_done);
    signal(pid, libc::SIGUSR1);
    let _ = target.wait();
    // Reaped: its pid may be reused from now on.
    std::mem::forget(reap);
    let out = daemon.wait(Duration::from_secs(30));
    assert!(out.status.success(), "tracer attach failed");
    check_sites(&read_profile(&profile));
}

/// `go tool pprof -top` on the served profile, fetched by Go itself from the route, as a user
/// would point it at a running daemon.
#[test]
fn go_tool_pprof_reads_the_served_profile() {
    if !kernel_available() {
        return;
    }
    let dir = scratch("callsites-go-served");
    let (daemon, pid) = Daemon::run_workload(&["--stacks"], "callsites", &["hold"]);
    let _reap = Reap(pid);
    signal(pid, libc::SIGUSR1);
    poll(|| served(&daemon.api, "heap", pid, &dir), work_done);
    let url = format!("{}/debug/pprof/heap?pid={pid}", daemon.api);
    let go = Command::new("go")
        .args(["tool", "pprof", "-top", "-sample_index=inuse_space"])
        .arg(&url)
        .env("HOME", &dir)
        .env("PPROF_TMPDIR", &dir)
        .output()
        .expect("run `go tool pprof` (Debian package golang-go)");
    let text = String::from_utf8_lossy(&go.stdout);
    println!("{text}\n{}", String::from_utf8_lossy(&go.stderr));
    assert!(go.status.success(), "go tool pprof {url} failed");
    assert!(
        text.contains("Type: inuse_space"),
        "the sample type Go shows"
    );
    // Go names the profile after its first mapping: the executable's, not a library's.
    assert!(
        text.lines().any(|l| l == "File: callsites"),
        "the main binary goes first"
    );
    // In use now: the brk growth and the direct mapping; the freed mmap-path site is not.
    for name in ["grow_brk", "grow_direct"] {
        assert!(
            text.contains(name),
            "{name} missing from `go tool pprof -top {url}`"
        );
    }
}

#[test]
fn go_tool_pprof_reads_the_written_profile() {
    if !kernel_available() {
        return;
    }
    // golang-go (Debian) provides `go tool pprof`; a missing Go is a failure, not a skip.
    let bin = workload("callsites");
    let run = run_pprof("callsites-go", &["-q"], &[bin.to_str().unwrap()]);
    let go = Command::new("go")
        .args(["tool", "pprof", "-top", "-sample_index=alloc_space"])
        .arg(&run.path)
        .env("HOME", &run.dir)
        .env("PPROF_TMPDIR", &run.dir)
        .output()
        .expect("run `go tool pprof` (Debian package golang-go)");
    let text = String::from_utf8_lossy(&go.stdout);
    println!("{text}\n{}", String::from_utf8_lossy(&go.stderr));
    assert!(go.status.success(), "go tool pprof failed");
    // -top lists functions by flat and cumulative bytes: every site function is in it.
    for name in ["grow_brk", "grow_mmap", "grow_direct", "main"] {
        assert!(
            text.contains(name),
            "{name} missing from `go tool pprof -top`"
        );
    }
    assert!(
        text.contains("Type: alloc_space"),
        "the sample type Go shows"
    );
}

#[test]
fn sites_of_a_rust_program_are_demangled() {
    if !kernel_available() {
        return;
    }
    let dir = scratch("callsites-rust");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/rust/callsites_rs.rs");
    let bin = dir.join("callsites_rs");
    // Release-like: optimized, no frame pointers, no debug info (the default of rustc -O).
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let status = Command::new(&rustc)
        .args([
            "-O",
            "-C",
            "force-frame-pointers=no",
            "-C",
            "debuginfo=0",
            "-o",
        ])
        .arg(&bin)
        .arg(&source)
        .status()
        .expect("run rustc");
    assert!(status.success(), "compiling {}", source.display());
    let p = run_pprof("callsites-rust-run", &["-q"], &[bin.to_str().unwrap()]).profile();
    // Rust's allocation glue (alloc::raw_vec, __rdl_alloc) sits between malloc and the
    // function: the site is the first frame named after one of the functions.
    let mut sites: HashMap<&str, HashMap<String, i64>> = HashMap::new();
    let mut names = Vec::new();
    for (stack, values) in &p.samples {
        names.extend(stack.iter().map(|(f, _)| f.clone()));
        let Some(site) = stack.iter().find_map(|(f, _)| {
            ["grow_vec_brk", "grow_vec_mmap"]
                .into_iter()
                .find(|name| f.contains(name))
        }) else {
            continue;
        };
        let entry = sites.entry(site).or_default();
        for (k, v) in values {
            *entry.entry(k.clone()).or_default() += v;
        }
    }
    println!("sites: {sites:?}");
    assert!(
        names
            .iter()
            .all(|n| !n.starts_with("_ZN") && !n.starts_with("_R")),
        "mangled names left: {:?}",
        names
            .iter()
            .filter(|n| n.starts_with("_ZN") || n.starts_with("_R"))
            .collect::<Vec<_>>()
    );
    assert!(
        names
            .iter()
            .any(|n| n.contains("callsites_rs::grow_vec_brk")),
        "no demangled path callsites_rs::grow_vec_brk"
    );
    let get = |site: &str, ty: &str| {
        sites
            .get(site)
            .and_then(|s| s.get(ty))
            .copied()
            .unwrap_or(0)
    };
    within(
        "grow_vec_brk alloc_space",
        get("grow_vec_brk", "alloc_space"),
        32.0 * MIB,
        0.01,
    );
    within(
        "grow_vec_brk inuse_space",
        get("grow_vec_brk", "inuse_space"),
        32.0 * MIB,
        0.01,
    );
    within(
        "grow_vec_mmap alloc_space",
        get("grow_vec_mmap", "alloc_space"),
        64.0 * MIB,
        0.01,
    );
    assert_eq!(
        get("grow_vec_mmap", "inuse_space"),
        0,
        "the large vectors were dropped"
    );
}

#[test]
fn profiles_follow_the_api_access_rules() {
    if !kernel_available() {
        return;
    }
    // No --trust-tcp-clients and no token: a TCP client may see only the public routes.
    let bin = workload("callsites");
    let mut daemon = Daemon::start_as_is(&[
        "run",
        "-q",
        "--listen",
        "127.0.0.1:0",
        "--stacks",
        "--",
        bin.to_str().unwrap(),
        "hold",
    ]);
    let list: serde_json::Value = poll(
        || serde_json::from_str(&daemon.get("/api/v1/processes")).expect("JSON"),
        |v: &serde_json::Value| v["processes"].as_array().is_some_and(|l| !l.is_empty()),
    );
    let pid = list["processes"][0]["pid"].as_u64().expect("a traced pid") as u32;
    let _reap = Reap(pid);
    // The folded stacks are as private as the profile they are drawn from.
    for path in [
        format!("/debug/pprof/heap?pid={pid}"),
        "/debug/pprof/allocs".to_string(),
        format!("/debug/pprof/heap?pid={pid}&format=folded"),
        "/debug/pprof/allocs?format=folded".to_string(),
    ] {
        let url = format!("{}{path}", daemon.api);
        match ureq::get(&url).call() {
            Err(ureq::Error::StatusCode(code)) => assert_eq!(code, 403, "{path}"),
            other => panic!("{path}: expected 403, got {other:?}"),
        }
    }
    signal(pid, libc::SIGKILL);
    let _ = daemon.wait(Duration::from_secs(30));
}

/// jemalloc's options that make its address-space behaviour follow the requests
/// (docs/callsites.md): each extent its own mmap of its exact size (`retain:false`: no
/// reserved address space grown by doubling), freed extents unmapped at once (both decays 0:
/// no dirty or muzzy pages kept for reuse), and no thread cache (it takes small regions in
/// batches ahead of the requests).
const JEMALLOC_CONF: &str = "retain:false,dirty_decay_ms:0,muzzy_decay_ms:0,tcache:false";

#[test]
fn sites_under_preloaded_jemalloc_have_the_known_bytes() {
    if !kernel_available() {
        return;
    }
    let jemalloc = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2";
    assert!(
        Path::new(jemalloc).exists(),
        "{jemalloc} (Debian libjemalloc2) is missing"
    );
    let bin = workload("callsites");
    let preload = format!("LD_PRELOAD={jemalloc}");
    let conf = format!("MALLOC_CONF={JEMALLOC_CONF}");
    // Without address randomization (`setarch -R`): jemalloc maps a 2 MiB radix-tree leaf
    // for each GiB of address space its extents first reach, from inside the malloc that
    // reached it; with ASLR, the workload's 120 MiB cross into a new GiB in about one run in
    // eight, and that malloc's site gets 4 to 6 MiB more. Unrandomized, the mappings start at
    // the same address every run, about 900 MiB above the next GiB boundary.
    let run = run_pprof(
        "callsites-jemalloc",
        &["-q"],
        &[
            "setarch",
            std::env::consts::ARCH,
            "-R",
            "env",
            &preload,
            &conf,
            bin.to_str().unwrap(),
        ],
    );
    // The same bounds as under glibc: grow_brk's 14 KiB mallocs fill jemalloc slabs of 28 KiB
    // (two regions each, mapped one by one), grow_mmap's 4 MiB ones map 4 MiB and a page each
    // (jemalloc's cache-oblivious offset), unmapped at free.
    check_sites(&run.profile());
}
