//! Cgroup identity on the real kernel: processes in runtime-shaped cgroup v2 directories
//! carry their cgroup, container and pod in `/metrics`, the API and the report, and
//! `attach --cgroup` traces what starts in its subtree after the attach (also in a cgroup
//! created after it), and nothing outside.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use tests::*;

/// The cgroup v2 mount point, from mountinfo (`/sys/fs/cgroup` or `/sys/fs/cgroup/unified`).
fn cgroup2_mount() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mount = left.split_whitespace().nth(4)?;
        (right.split_whitespace().next()? == "cgroup2").then(|| PathBuf::from(mount))
    })
}

/// A test's cgroup tree; removed (innermost first) when dropped.
struct Tree {
    root: PathBuf,
    dirs: Vec<PathBuf>,
}

impl Tree {
    fn mkdir(&mut self, rel: &str) -> PathBuf {
        let mut dir = self.root.clone();
        for part in rel.split('/') {
            dir.push(part);
            if !dir.exists() {
                std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {dir:?}: {e}"));
                self.dirs.push(dir.clone());
            }
        }
        dir
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        for dir in self.dirs.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
        let _ = std::fs::remove_dir(&self.root);
    }
}

/// A process of the test, killed when dropped (also when the test fails, so that its cgroup
/// can be removed).
struct Proc(Child);

impl Proc {
    fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `sleep` started inside cgroup `dir` (the shell moves itself in, then execs).
fn start_in(dir: &Path) -> Proc {
    let script = format!(
        "echo $$ > '{}/cgroup.procs' && exec sleep 120",
        dir.display()
    );
    Proc(
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .spawn()
            .expect("sh"),
    )
}

const CONTAINERD: &str = "3f2a9c1b7d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8";
const DOCKER: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";
const POD: &str = "1a2b3c4d-5e6f-7081-92a3-b4c5d6e7f809";

fn process(list: &Value, pid: u32) -> Option<&Value> {
    list["processes"]
        .as_array()?
        .iter()
        .find(|p| p["pid"].as_u64() == Some(u64::from(pid)))
}

/// Waits until the shell of `start_in` has moved into its cgroup and exec'd sleep.
fn wait_exec(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read(format!("/proc/{pid}/comm")).ok().as_deref() != Some(b"sleep\n") {
        assert!(Instant::now() < deadline, "{pid} never exec'd sleep");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `/api/v1/processes` until `pid` is listed (a process started after the attach is
/// traced from its exec, whose record takes a drain to arrive).
fn wait_listed(daemon: &Daemon, pid: u32) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list = daemon.get_json("/api/v1/processes");
        if let Some(p) = process(&list, pid) {
            return p.clone();
        }
        assert!(
            Instant::now() < deadline,
            "process {pid} never traced: {list}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn cgroup_and_container_labels_and_attach_cgroup_follows_new_processes() {
    if !kernel_available() {
        return;
    }
    let mount = cgroup2_mount().expect("cgroup v2 is mounted");
    let mut tree = Tree {
        root: mount.join(format!("tracer-it-{}", std::process::id())),
        dirs: Vec::new(),
    };
    std::fs::create_dir_all(&tree.root).unwrap();
    let pod_slice = format!(
        "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice",
        POD.replace('-', "_")
    );
    let containerd = tree.mkdir(&format!("{pod_slice}/cri-containerd-{CONTAINERD}.scope"));
    let docker_rel = format!("system.slice/docker-{DOCKER}.scope");
    let docker = tree.mkdir(&docker_rel);
    let mut other = Tree {
        root: mount.join(format!("tracer-it-{}-outside", std::process::id())),
        dirs: Vec::new(),
    };
    std::fs::create_dir_all(&other.root).unwrap();
    let outside = other.mkdir("other.service");

    // Running before the attach, in the subtree.
    let before = start_in(&containerd);
    wait_exec(before.id());
    let mut daemon = Daemon::start(&[
        "attach",
        "--cgroup",
        tree.root.to_str().unwrap(),
        "--group-by",
        "container",
        "--listen",
        "127.0.0.1:0",
    ]);
    let listed = wait_listed(&daemon, before.id());
    let rel_root = format!("/{}", tree.root.strip_prefix(&mount).unwrap().display());
    assert_eq!(
        listed["cgroup"].as_str(),
        Some(format!("{rel_root}/{pod_slice}/cri-containerd-{CONTAINERD}.scope").as_str()),
        "{listed}"
    );
    assert_eq!(
        listed["cgroup_identity"]["container"], CONTAINERD,
        "{listed}"
    );
    assert_eq!(listed["cgroup_identity"]["pod"], POD, "{listed}");
    assert_eq!(
        listed["cgroup_identity"]["runtime"], "containerd",
        "{listed}"
    );

    // Started after the attach: in the subtree (traced at its exec), outside (not traced).
    let after = start_in(&docker);
    let stranger = start_in(&outside);
    // A cgroup created after the attach: the daemon looks for new ones once a second. A
    // process started there before the daemon's look is rightly not traced (it exec'd in a
    // cgroup not yet followed), so one is started every 3 s until one is traced.
    let late = tree.mkdir(&format!("{pod_slice}/crio-{}.scope", &DOCKER[..63]));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut late_children = Vec::new();
    let late_listed = loop {
        std::thread::sleep(Duration::from_millis(3000));
        let child = start_in(&late);
        wait_exec(child.id());
        let pid = child.id();
        late_children.push(child);
        let seen = Instant::now() + Duration::from_secs(3);
        let listed = loop {
            let list = daemon.get_json("/api/v1/processes");
            if let Some(p) = process(&list, pid) {
                break Some(p.clone());
            }
            if Instant::now() > seen {
                break None;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        if let Some(listed) = listed {
            break listed;
        }
        assert!(
            Instant::now() < deadline,
            "no process in a cgroup made after the attach was traced"
        );
    };
    let listed = wait_listed(&daemon, after.id());
    assert_eq!(listed["cgroup_identity"]["container"], DOCKER, "{listed}");
    assert_eq!(
        listed["cgroup_identity"]["unit"],
        format!("docker-{DOCKER}.scope")
    );
    assert_eq!(
        late_listed["cgroup_identity"]["runtime"], "cri-o",
        "{late_listed}"
    );

    let metrics = daemon.get("/metrics");
    for id in [CONTAINERD, DOCKER] {
        let series = format!("tracer_rss_bytes{{container=\"{id}\",type=\"anon\"}}");
        assert!(metrics.contains(&series), "no {series} in:\n{metrics}");
    }
    assert!(
        !metrics.contains("pid=\""),
        "grouped by container:\n{metrics}"
    );

    let report = daemon.get_json("/api/v1/report");
    let in_report = |pid: u32| process(&report, pid).cloned();
    let r = in_report(after.id()).expect("the later process is in the report");
    assert_eq!(r["cgroup"], format!("{rel_root}/{docker_rel}"), "{r}");
    assert_eq!(r["cgroup_identity"]["container"], DOCKER, "{r}");

    // The stranger ran outside the subtree all along: never traced.
    wait_exec(stranger.id());
    let list = daemon.get_json("/api/v1/processes");
    assert!(
        process(&list, stranger.id()).is_none(),
        "{} is outside the subtree: {list}",
        stranger.id()
    );
    drop((before, after, stranger, late_children));
    // SAFETY: signalling the tracer this test started.
    unsafe { libc::kill(daemon.child.id() as i32, libc::SIGINT) };
    let out = daemon.wait(Duration::from_secs(30));
    assert!(out.status.success(), "{}", daemon.stderr_so_far());
    drop(tree);
    drop(other);
}
