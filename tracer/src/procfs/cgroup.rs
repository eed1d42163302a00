//! Cgroup identity of a traced process: its cgroup v2 path and what the path says about it
//! (systemd unit, container id and runtime, Kubernetes pod UID), and the cgroup subtree of
//! `attach --cgroup`.
//!
//! The path is read from `/proc/PID/cgroup` (its `0::` line) when a process is first traced
//! and when it execs (container runtimes move their init into the container's cgroup and
//! then exec the entrypoint), never on the hot path; a forked child inherits its parent's
//! path (a child starts in its parent's cgroup). Paths are untrusted bytes: read bounded,
//! lossily decoded, never panicking.

use std::{
    io::Read,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

/// Longest path kept (a cgroup path has at most a few hundred bytes in practice).
const MAX_PATH: usize = 4096;

/// The cgroup v2 path of `pid` (e.g. `/system.slice/nginx.service`), or None if the process
/// is gone or only on cgroup v1.
pub fn of_pid(pid: u32) -> Option<String> {
    let file = std::fs::File::open(format!("/proc/{pid}/cgroup")).ok()?;
    let mut bytes = Vec::new();
    file.take(MAX_PATH as u64 * 4)
        .read_to_end(&mut bytes)
        .ok()?;
    v2_path(&bytes)
}

/// The path of the `0::` line of a `/proc/PID/cgroup` text.
pub fn v2_path(text: &[u8]) -> Option<String> {
    text.split(|&b| b == b'\n')
        .find_map(|line| line.strip_prefix(b"0::"))
        .filter(|path| path.first() == Some(&b'/') && path.len() <= MAX_PATH)
        .map(|path| String::from_utf8_lossy(path).into_owned())
}

/// What a cgroup path says about the workload in it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Identity {
    /// The innermost systemd unit (`*.service` or `*.scope`), if any.
    pub unit: Option<String>,
    /// The container id (hex), if the path is a container runtime's.
    pub container: Option<String>,
    /// `containerd`, `cri-o`, `docker` or `podman` when the path names it.
    pub runtime: Option<String>,
    /// The Kubernetes pod UID (with dashes), if under `kubepods`.
    pub pod: Option<String>,
}

fn is_hex_id(s: &str) -> bool {
    (12..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A container id in one path segment, with its runtime when the segment names it.
fn container_of(segment: &str) -> Option<(String, Option<&'static str>)> {
    // systemd driver: `<prefix><id>.scope`.
    if let Some(stem) = segment.strip_suffix(".scope") {
        for (prefix, runtime) in [
            ("cri-containerd-", "containerd"),
            ("crio-", "cri-o"),
            ("docker-", "docker"),
            ("libpod-", "podman"),
        ] {
            if let Some(id) = stem.strip_prefix(prefix)
                && is_hex_id(id)
            {
                return Some((id.to_owned(), Some(runtime)));
            }
        }
        return None;
    }
    // cgroupfs driver: the bare id (`/kubepods/besteffort/pod<uid>/<id>`, `/docker/<id>`).
    (segment.len() == 64 && is_hex_id(segment)).then(|| (segment.to_owned(), None))
}

/// A pod UID in one path segment: `kubepods-<qos>-pod<uid>.slice` (systemd driver, dashes of
/// the UID written as `_`) or `pod<uid>` (cgroupfs driver).
fn pod_of(segment: &str) -> Option<String> {
    let uid = if let Some(stem) = segment.strip_suffix(".slice") {
        stem.rsplit_once("-pod")?.1.replace('_', "-")
    } else {
        segment.strip_prefix("pod")?.to_owned()
    };
    let valid =
        (32..=36).contains(&uid.len()) && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    valid.then_some(uid)
}

impl Identity {
    pub fn parse(path: &str) -> Identity {
        let mut id = Identity::default();
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        // Not only at the root: nested nodes (kind, k3s in a container) have
        // `/kubelet.slice/kubelet-kubepods.slice/...` or `/docker/<id>/kubepods/...`.
        let kubernetes = segments.iter().any(|s| s.contains("kubepods"));
        for (i, segment) in segments.iter().enumerate().rev() {
            if id.container.is_none()
                && let Some((container, runtime)) = container_of(segment)
            {
                id.container = Some(container);
                // cgroupfs driver: a bare id under `docker` is Docker's.
                let docker = i > 0 && segments[i - 1] == "docker";
                id.runtime = runtime.or(docker.then_some("docker")).map(str::to_owned);
            }
            if id.unit.is_none() && (segment.ends_with(".service") || segment.ends_with(".scope")) {
                id.unit = Some((*segment).to_owned());
            }
            if kubernetes && id.pod.is_none() {
                id.pod = pod_of(segment);
            }
            // What lies above a pod is the node's, not the workload's.
            if id.pod.is_some() {
                break;
            }
        }
        id
    }
}

/// Where cgroup v2 is mounted (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on hybrid hosts),
/// from `/proc/self/mountinfo`.
pub fn mount_point() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mount_point_in(&text)
}

fn mount_point_in(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let fstype = right.split_whitespace().next()?;
        let mount = left.split_whitespace().nth(4)?;
        (fstype == "cgroup2").then(|| PathBuf::from(unescape_mount(mount)))
    })
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape_mount(text: &str) -> String {
    text.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// The cgroup path (relative to the v2 root, starting with `/`) of `arg`: either such a path
/// or a directory under the mount point.
pub fn normalize(arg: &Path, mount: &Path) -> PathBuf {
    let rel = arg.strip_prefix(mount).unwrap_or(arg);
    Path::new("/").join(rel.strip_prefix("/").unwrap_or(rel))
}

/// Whether cgroup `path` lies in the subtree rooted at `root` (both relative to the v2 root).
pub fn is_under(path: &str, root: &str) -> bool {
    let root = root.trim_end_matches('/');
    root.is_empty()
        || path == root
        || path
            .strip_prefix(root)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The cgroups of `attach --cgroup`'s subtree already handed to the exec probe.
#[derive(Debug)]
pub struct Subtree {
    pub dir: PathBuf,
    known: std::collections::HashSet<u64>,
    /// No scan before this: a scan costs about 0.1 ms per cgroup (kernfs readdir), so a large
    /// subtree is scanned less often than once a second, keeping scans under 1 % of a core.
    next_scan: std::time::Instant,
}

impl Subtree {
    pub fn new(dir: PathBuf) -> Subtree {
        Subtree {
            dir,
            known: Default::default(),
            next_scan: std::time::Instant::now(),
        }
    }

    /// The ids of cgroups in the subtree not seen before (removed ones stay known: the kernel
    /// never reuses a cgroup id during a boot, so a stale entry matches nothing). Empty when
    /// the last scan was too recent.
    pub fn scan(&mut self) -> Vec<u64> {
        let start = std::time::Instant::now();
        if start < self.next_scan {
            return Vec::new();
        }
        let new = self.scan_now();
        self.next_scan = start + (start.elapsed() * 100).max(std::time::Duration::from_millis(900));
        new
    }

    fn scan_now(&mut self) -> Vec<u64> {
        let room = (tracer_common::config::MAX_CGROUPS as usize).saturating_sub(self.known.len());
        let ids = subtree_ids(&self.dir, tracer_common::config::MAX_CGROUPS as usize);
        let new: Vec<u64> = ids
            .into_iter()
            .filter(|id| !self.known.contains(id))
            .take(room)
            .collect();
        self.known.extend(&new);
        new
    }
}

/// The ids (inode numbers of the directories: what `bpf_get_current_cgroup_id` returns on
/// cgroup v2) of `dir` and every cgroup below it, at most `limit`.
pub fn subtree_ids(dir: &Path, limit: usize) -> Vec<u64> {
    use std::os::unix::fs::DirEntryExt;
    let Ok(meta) = std::fs::metadata(dir) else {
        return Vec::new();
    };
    let mut ids = vec![meta.ino()];
    let mut stack = vec![dir.to_path_buf()];
    // The inode numbers come from the directory entries (d_ino): no stat per cgroup, and the
    // entry type (d_type) tells directories from the interface files.
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            if ids.len() >= limit {
                return ids;
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                ids.push(e.ino());
                stack.push(e.path());
            }
        }
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f2a9c1b7d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8";

    #[test]
    fn runtime_paths() {
        let uid = "1a2b3c4d-5e6f-7081-92a3-b4c5d6e7f809";
        let sd_uid = uid.replace('-', "_");
        let cases: Vec<(String, Identity)> = vec![
            (
                format!(
                    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{sd_uid}.slice/cri-containerd-{ID}.scope"
                ),
                Identity {
                    unit: Some(format!("cri-containerd-{ID}.scope")),
                    container: Some(ID.into()),
                    runtime: Some("containerd".into()),
                    pod: Some(uid.into()),
                },
            ),
            (
                format!("/kubepods.slice/kubepods-pod{sd_uid}.slice/crio-{ID}.scope"),
                Identity {
                    unit: Some(format!("crio-{ID}.scope")),
                    container: Some(ID.into()),
                    runtime: Some("cri-o".into()),
                    pod: Some(uid.into()),
                },
            ),
            (
                format!("/kubepods/besteffort/pod{uid}/{ID}"),
                Identity {
                    unit: None,
                    container: Some(ID.into()),
                    runtime: None,
                    pod: Some(uid.into()),
                },
            ),
            (
                format!("/system.slice/docker-{ID}.scope"),
                Identity {
                    unit: Some(format!("docker-{ID}.scope")),
                    container: Some(ID.into()),
                    runtime: Some("docker".into()),
                    pod: None,
                },
            ),
            (
                format!("/docker/{ID}"),
                Identity {
                    container: Some(ID.into()),
                    runtime: Some("docker".into()),
                    ..Identity::default()
                },
            ),
            (
                "/machine.slice/libpod-5d1e3c.scope".into(),
                Identity::default(),
            ),
            (
                "/machine.slice/libpod-5d1e3c2b9a8f.scope".into(),
                Identity {
                    unit: Some("libpod-5d1e3c2b9a8f.scope".into()),
                    container: Some("5d1e3c2b9a8f".into()),
                    runtime: Some("podman".into()),
                    pod: None,
                },
            ),
            (
                "/system.slice/nginx.service".into(),
                Identity {
                    unit: Some("nginx.service".into()),
                    ..Identity::default()
                },
            ),
            (
                "/user.slice/user-1000.slice/session-3.scope".into(),
                Identity {
                    unit: Some("session-3.scope".into()),
                    ..Identity::default()
                },
            ),
            ("/".into(), Identity::default()),
            // Not under kubepods: a directory named like a pod is not a pod.
            (format!("/pod{uid}"), Identity::default()),
            // A node in a container (kind): the outer container is not the workload's.
            (
                format!("/docker/{ID}/kubepods/burstable/pod{uid}/{}0", &ID[..63]),
                Identity {
                    container: Some(format!("{}0", &ID[..63])),
                    pod: Some(uid.into()),
                    ..Identity::default()
                },
            ),
        ];
        for (path, want) in cases {
            let got = Identity::parse(&path);
            // "libpod-5d1e3c" is too short to be an id, but it is still a unit.
            let want = if path == "/machine.slice/libpod-5d1e3c.scope" {
                Identity {
                    unit: Some("libpod-5d1e3c.scope".into()),
                    ..want
                }
            } else {
                want
            };
            assert_eq!(got, want, "{path}");
        }
    }

    #[test]
    fn proc_cgroup_lines_and_hostile_bytes() {
        assert_eq!(
            v2_path(b"12:memory:/foo\n0::/system.slice/a b.service\n").as_deref(),
            Some("/system.slice/a b.service")
        );
        assert_eq!(v2_path(b"1:name=systemd:/x\n"), None, "v1 only");
        assert_eq!(v2_path(b"0::relative\n"), None);
        assert_eq!(
            v2_path(b"0::/\xff\xfe\n").as_deref(),
            Some("/\u{fffd}\u{fffd}")
        );
        let long = [b"0::/".as_slice(), &vec![b'a'; MAX_PATH + 1]].concat();
        assert_eq!(v2_path(&long), None);
        // Nothing in a hostile path panics the parser.
        let _ = Identity::parse("/kubepods.slice/-pod.slice/\u{fffd}.scope//-pod");
    }

    #[test]
    fn mount_subtree_and_normalization() {
        let mi = "25 1 0:23 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n\
                  30 25 0:26 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw\n";
        let mount = mount_point_in(mi).unwrap();
        assert_eq!(mount, PathBuf::from("/sys/fs/cgroup/unified"));
        assert_eq!(
            normalize(Path::new("/sys/fs/cgroup/unified/a/b"), &mount),
            PathBuf::from("/a/b")
        );
        assert_eq!(normalize(Path::new("/a/b"), &mount), PathBuf::from("/a/b"));
        assert!(is_under("/a/b/c", "/a/b"));
        assert!(is_under("/a/b", "/a/b/"));
        assert!(!is_under("/a/bc", "/a/b"));
        assert!(is_under("/x", "/"));
    }
}
