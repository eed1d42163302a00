//! `tracer attach --pid PID...`: trace running processes from now on.

use tokio::signal::unix::{SignalKind, signal};

use super::{api_policy, bind_api, ci::Outputs, print_summary, remove_socket, start_session};
use crate::{
    cli::exit::{EXIT_CHECK_FAILED, TracerError},
    cli::{AttachArgs, DEFAULT_ATTACH_LISTEN},
    launch, procfs,
};

/// A validated attach target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub tgid: u32,
    pub comm: String,
}

/// Checks each pid before any probe is loaded: it must exist, be alive and be a user process.
/// A thread id stands for its whole process.
pub fn resolve_targets(pids: &[u32]) -> Result<Vec<Target>, TracerError> {
    let mut targets: Vec<Target> = Vec::new();
    for &pid in pids {
        let stat = procfs::read_stat(pid).map_err(|_| TracerError::NoSuchProcess(pid))?;
        if stat.is_kernel_thread() {
            return Err(TracerError::KernelThread(pid));
        }
        if stat.is_zombie() {
            return Err(TracerError::ExitedDuringAttach(pid));
        }
        let tgid = procfs::read_tgid(pid).map_err(|_| TracerError::ExitedDuringAttach(pid))?;
        if tgid != pid {
            eprintln!("tracer: {pid} is a thread of process {tgid}: tracing process {tgid}");
        }
        if !targets.iter().any(|t| t.tgid == tgid) {
            let comm = procfs::read_stat(tgid).map(|s| s.comm).unwrap_or(stat.comm);
            targets.push(Target { tgid, comm });
        }
    }
    Ok(targets)
}

/// Running processes selected by `--comm`, `--all` or `--cgroup` (whose path relative to the
/// cgroup v2 root is `cgroup`): user processes only, never the tracer itself, none whose comm
/// is excluded.
fn discover(args: &AttachArgs, cgroup: Option<&str>) -> Vec<Target> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = procfs::read_stat(pid) else {
            continue;
        };
        if pid == me || stat.is_kernel_thread() || stat.is_zombie() {
            continue;
        }
        if args.exclude_comms.contains(&stat.comm) {
            continue;
        }
        let by_comm = args.comms.contains(&stat.comm);
        let wanted = match cgroup {
            Some(root) => {
                (args.comms.is_empty() || by_comm)
                    && crate::procfs::cgroup::of_pid(pid)
                        .is_some_and(|p| crate::procfs::cgroup::is_under(&p, root))
            }
            None => args.all || by_comm,
        };
        if wanted {
            found.push(Target {
                tgid: pid,
                comm: stat.comm,
            });
        }
    }
    found
}

/// The directory of `--cgroup PATH` under the cgroup v2 mount, and its path relative to the
/// v2 root (as `/proc/PID/cgroup` writes it).
fn resolve_cgroup(arg: &std::path::Path) -> Result<(std::path::PathBuf, String), TracerError> {
    let mount = crate::procfs::cgroup::mount_point().ok_or_else(|| {
        TracerError::BadInput("--cgroup: no cgroup v2 hierarchy is mounted".to_owned())
    })?;
    let rel = crate::procfs::cgroup::normalize(arg, &mount);
    let dir = mount.join(rel.strip_prefix("/").unwrap_or(&rel));
    if !dir.join("cgroup.procs").is_file() {
        return Err(TracerError::BadInput(format!(
            "--cgroup {}: {} is not a cgroup v2 directory",
            arg.display(),
            dir.display()
        )));
    }
    let rel = rel.to_string_lossy().trim_end_matches('/').to_owned();
    Ok((dir, if rel.is_empty() { "/".to_owned() } else { rel }))
}

pub async fn attach(args: AttachArgs) -> Result<i32, TracerError> {
    let mut targets = resolve_targets(&args.pids)?;
    let subtree = args.cgroup.as_deref().map(resolve_cgroup).transpose()?;
    let follow_new = args.all || !args.comms.is_empty() || subtree.is_some();
    if follow_new {
        let root = subtree.as_ref().map(|(_, rel)| rel.as_str());
        for found in discover(&args, root) {
            if !targets.iter().any(|t| t.tgid == found.tgid) {
                targets.push(found);
            }
        }
    }
    let listen = match (args.no_listen, args.common.listen.clone()) {
        (true, _) => None,
        (false, Some(addr)) => Some(addr),
        (false, None) => Some(
            DEFAULT_ATTACH_LISTEN
                .parse()
                .expect("a valid socket address"),
        ),
    };
    let outputs = Outputs::prepare(&args.common, listen.is_some())?;
    let policy = api_policy(&args.common, None)?;
    let api = bind_api(listen.as_ref(), policy)?;
    let filter = crate::session::ExecFilter {
        trace_comms: &args.comms,
        exclude_comms: &args.exclude_comms,
        all: args.all,
        cgroup: subtree.as_ref().map(|(dir, _)| dir.as_path()),
        beside_others: true,
    };
    let mut session = start_session(&args.common, &filter)?;
    session.tracker.follow_new_cgroups();
    // A daemon may run for days: exited processes are forgotten after the grace period
    // (unless a report is to describe them all: `keep_exited`).
    session.tracker.evict_exited = true;
    session.tracker.report_info.mode = "attach".into();
    session.tracker.report_info.command = std::env::args().collect();
    if let Some((queries, _)) = api {
        session.serve_queries(queries);
    }
    let explicit = |tgid: u32| args.pids.contains(&tgid);
    let mut attached = Vec::new();
    for target in &targets {
        match session.tracker.trace(target.tgid, target.comm.clone()) {
            Ok(()) => attached.push(target.clone()),
            // The traced set is full (--max-processes): count the refusal and go on.
            Err(TracerError::Probes(err)) if !explicit(target.tgid) || !attached.is_empty() => {
                session.tracker.counters.refused += 1;
                log::warn!("not tracing {} ({}): {err}", target.tgid, target.comm);
            }
            Err(err) => return Err(err),
        }
    }
    // A target that died while the probes were loading is not traced: say so.
    for target in &attached {
        let alive = procfs::read_stat(target.tgid).is_ok_and(|s| !s.is_zombie());
        if !alive {
            session.tracker.probes.untrace(target.tgid);
            if explicit(target.tgid) {
                return Err(TracerError::ExitedDuringAttach(target.tgid));
            }
            continue;
        }
        session.tracker.seed(target.tgid, false);
    }
    let names: Vec<String> = attached
        .iter()
        .take(10)
        .map(|t| format!("{} ({})", t.tgid, t.comm))
        .collect();
    let more = attached.len().saturating_sub(names.len());
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    let new = if follow_new {
        "; new matching processes are traced as they exec"
    } else {
        ""
    };
    // Installed before "attached" is printed: a signal sent as soon as that line is seen
    // must find the handlers, not the default action (death without a report).
    let mut sigint =
        signal(SignalKind::interrupt()).map_err(TracerError::os("cannot handle SIGINT"))?;
    let mut sigterm =
        signal(SignalKind::terminate()).map_err(TracerError::os("cannot handle SIGTERM"))?;
    // A closed terminal or a HUP ends the daemon like SIGTERM, with its report, instead of
    // killing it silently; unless it was started ignoring HUP (`nohup`), which stays so.
    let mut sighup = if launch::was_ignored(libc::SIGHUP) {
        None
    } else {
        Some(signal(SignalKind::hangup()).map_err(TracerError::os("cannot handle SIGHUP"))?)
    };
    let stop = async move {
        let hangup = async {
            match &mut sighup {
                Some(sighup) => sighup.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sigint.recv() => "SIGINT",
            _ = sigterm.recv() => "SIGTERM",
            _ = hangup => "SIGHUP",
        }
    };
    eprintln!(
        "tracer: attached to {}{more}{new}; stop with Ctrl-C",
        names.join(", ")
    );

    // With --comm/--all, processes to trace may come at any time: run until a signal.
    match session
        .pump(stop, !follow_new)
        .await
        .map_err(TracerError::os("cannot read the ring buffer"))?
    {
        crate::session::Stopped::Finished(signal) => log::info!("{signal}: detaching"),
        crate::session::Stopped::AllExited => log::info!("every traced process has exited"),
    }
    session.drain();
    session.tracker.finish();
    remove_socket(listen.as_ref());
    print_summary(&session, args.common.quiet);
    super::finish_stacks(
        session.tracker.stacks.as_mut(),
        &session.tracker.table,
        &args.common.stacks,
        args.common.quiet,
    )?;
    if !outputs.finish(&mut session.tracker, None)? {
        eprintln!("tracer: a check failed: exit status {EXIT_CHECK_FAILED}");
        return Ok(EXIT_CHECK_FAILED);
    }
    Ok(0)
}
