//! The live page (`GET /`) and the `--html` file, looked at in a real browser: headless
//! Chromium loads them while the tracer traces a known workload, and the test reads the DOM
//! the page's script built: the process is listed, the heap band sits where /proc/PID/maps puts
//! [heap], the program break is inside it, the series have points, and a hostile process name
//! stays text. Screenshots are kept in target/artifacts/.

use std::{
    collections::HashMap,
    io::BufRead,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use tests::{
    Daemon, coalesced_maps, kernel_available, resume, scratch, wait_stopped, wait_with_deadline,
    workload,
};

/// A file name that is markup: the process's comm and exe (15 bytes, as comm keeps it).
const HOSTILE: &str = "<i id=pwned>x&";

/// Where screenshots are kept after the test.
fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs headless Chromium on `url`: a screenshot to `shot`, then the DOM after the page's
/// script ran (5 s of virtual time: about five polls of the live page).
fn browse(url: &str, shot: &Path, profile: &Path) -> String {
    // Output to files: a DOM is larger than a pipe holds, and nobody reads the pipe until
    // Chromium exits.
    let (dom_path, log_path) = (profile.with_extension("dom"), profile.with_extension("log"));
    let run = |extra: &[String]| {
        let _ = std::fs::remove_dir_all(profile);
        let file = |p: &Path| std::fs::File::create(p).unwrap();
        let child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--virtual-time-budget=5000",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(file(&dom_path))
            .stderr(file(&log_path))
            .spawn()
            .expect("chromium (Debian package `chromium`) is installed by setup");
        let out = wait_with_deadline(child, Duration::from_secs(90));
        assert!(
            out.status.success(),
            "chromium on {url} failed: {}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        std::fs::read_to_string(&dom_path).unwrap()
    };
    run(&[
        "--window-size=1280,900".into(),
        format!("--screenshot={}", shot.display()),
    ]);
    let png = std::fs::read(shot).expect("the screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "no real screenshot"
    );
    run(&["--dump-dom".into()])
}

/// The attributes of every `<tag ...>` in a serialized DOM (Chromium writes attribute values
/// in double quotes with `&quot;`, `&amp;`, `&lt;`, `&gt;` escaped).
fn elements(dom: &str, tag: &str) -> Vec<HashMap<String, String>> {
    let open = format!("<{tag} ");
    let mut out = Vec::new();
    for (at, _) in dom.match_indices(&open) {
        let rest = &dom[at + open.len()..];
        let mut attrs = HashMap::new();
        let mut s = rest;
        loop {
            s = s.trim_start();
            if s.is_empty() || s.starts_with('>') || s.starts_with("/>") {
                break;
            }
            let name_end = s.find(|c: char| c == '=' || c == '>' || c.is_whitespace());
            let Some(name_end) = name_end else { break };
            let name = s[..name_end].to_string();
            s = &s[name_end..];
            if let Some(v) = s.strip_prefix("=\"") {
                let end = v.find('"').expect("closing quote");
                let value = v[..end]
                    .replace("&quot;", "\"")
                    .replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&amp;", "&");
                attrs.insert(name, value);
                s = &v[end + 1..];
            } else {
                attrs.insert(name, String::new());
            }
        }
        out.push(attrs);
    }
    out
}

fn hex(text: &str) -> u64 {
    u64::from_str_radix(text.trim_start_matches("0x"), 16)
        .unwrap_or_else(|_| panic!("not a hex address: {text:?}"))
}

/// [start, end) of [heap] in a maps text, after coalescing.
fn heap_of(maps: &str) -> (u64, u64) {
    let heap: Vec<_> = coalesced_maps(maps)
        .into_iter()
        .filter(|l| l.4 == "[heap]")
        .collect();
    assert_eq!(heap.len(), 1, "one [heap] in\n{maps}");
    (heap[0].0, heap[0].1)
}

/// What every rendering of the workload must show; `live`: the live page (with its time
/// series and change list) rather than the report file.
fn check_page(dom: &str, pid: u32, heap: (u64, u64), live: bool) {
    let body = &elements(dom, "body")[0];
    assert_eq!(
        body.get("data-state").map(String::as_str),
        Some("ok"),
        "the page did not render: {body:?}\n{dom}"
    );
    let renders: u32 = body["data-renders"].parse().unwrap();
    // Live: polled and redrawn again and again within the 5 s.
    assert!(renders >= if live { 3 } else { 1 }, "{renders} renders");

    // The process is listed, under its hostile name, as text.
    let rows = elements(dom, "tr");
    assert!(
        rows.iter()
            .any(|r| r.get("data-pid") == Some(&pid.to_string())),
        "pid {pid} is not in the table"
    );
    assert!(
        dom.contains("&lt;i id=pwned&gt;x&amp;"),
        "the name is not shown as text"
    );
    assert!(
        !dom.contains("<i id=\"pwned\">"),
        "the process name became markup"
    );

    // The heap band is where the kernel puts [heap]; the break is inside it.
    let rects = elements(dom, "rect");
    let bands: Vec<_> = rects
        .iter()
        .filter(|r| r.get("class").map(String::as_str) == Some("band"))
        .filter(|r| r.get("data-region").map(String::as_str) == Some("heap"))
        .collect();
    assert_eq!(bands.len(), 1, "one heap band: {bands:?}");
    let band = (hex(&bands[0]["data-start"]), hex(&bands[0]["data-end"]));
    assert_eq!(
        band, heap,
        "heap band {:#x}-{:#x}, /proc says {:#x}-{:#x}",
        band.0, band.1, heap.0, heap.1
    );
    let brk = elements(dom, "line")
        .into_iter()
        .find_map(|l| l.get("data-brk").map(|b| hex(b)))
        .expect("the program break is marked");
    assert!(
        heap.0 < brk && brk <= heap.1,
        "brk {brk:#x} outside the heap"
    );
    let vmas: usize = rects
        .iter()
        .filter(|r| r.get("class").map(String::as_str) == Some("vma"))
        .map(|r| r["data-count"].parse::<usize>().unwrap())
        .sum();
    let svg = elements(dom, "svg")
        .into_iter()
        .find(|s| s.get("id").map(String::as_str) == Some("space-svg"))
        .expect("the address-space drawing");
    assert_eq!(
        vmas,
        svg["data-vmas"].parse::<usize>().unwrap(),
        "every VMA is drawn once"
    );

    // The series have points.
    let points = |series: &str| -> usize {
        elements(dom, "polyline")
            .iter()
            .find(|p| p.get("data-series").map(String::as_str) == Some(series))
            .unwrap_or_else(|| panic!("no {series} series"))["data-points"]
            .parse()
            .unwrap()
    };
    assert!(points("heap (brk history)") >= 2);
    if live {
        for series in ["anon", "file", "VSZ", "heap", "minor"] {
            assert!(points(series) >= 2, "{series}: {} points", points(series));
        }
        let changes = elements(dom, "tr")
            .into_iter()
            .filter(|r| r.contains_key("data-kind"))
            .count();
        assert!(changes > 0, "no recent address-space changes listed");
    }
}

#[test]
fn the_live_page_and_the_html_file_show_the_address_space() {
    if !kernel_available() {
        return;
    }
    let dir = scratch("live-page");
    // The workload under a file name that is markup.
    let bin = dir.join(HOSTILE);
    std::fs::copy(workload("malloc_churn"), &bin).unwrap();
    let html = dir.join("page.html");
    let mut daemon = Daemon::start(&[
        "run",
        "-q",
        "--listen",
        "127.0.0.1:0",
        "--html",
        html.to_str().unwrap(),
        "--",
        bin.to_str().unwrap(),
        "4",
        "40",
        "40",
    ]);
    let mut line = String::new();
    std::io::BufReader::new(daemon.child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let pid: u32 = line.trim().strip_prefix("pid ").unwrap().parse().unwrap();

    // Stopped after its 40 rounds: the layout holds still while the browser looks.
    assert!(wait_stopped(pid, Duration::from_secs(60)));
    let heap = heap_of(&std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap());
    let dom = browse(
        &format!("{}/?pid={pid}", daemon.api),
        &artifacts().join("live-page.png"),
        &dir.join("profile"),
    );
    check_page(&dom, pid, heap, true);

    // It frees everything and stops once more, then exits: the file has the final layout.
    resume(pid);
    assert!(wait_stopped(pid, Duration::from_secs(60)));
    let heap = heap_of(&std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap());
    resume(pid);
    let out = daemon.wait(Duration::from_secs(60));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&html).expect("the --html file");
    assert!(!text.contains(HOSTILE), "the name is embedded unescaped");
    let dom = browse(
        &format!("file://{}", html.display()),
        &artifacts().join("html-report.png"),
        &dir.join("profile"),
    );
    check_page(&dom, pid, heap, false);
}

/// A `--html` path that cannot be written is refused before anything runs, not after a long
/// trace.
#[test]
fn an_html_path_that_cannot_be_written_is_refused_up_front() {
    let dir = scratch("html-dir");
    let out = tests::run_tracer(
        &["run", "--html", dir.to_str().unwrap(), "--", "/bin/true"],
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot write the HTML page to") && stderr.contains("is a directory"),
        "{stderr}"
    );
}
