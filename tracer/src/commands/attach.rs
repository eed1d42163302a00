//! `tracer attach --pid PID...`: trace running processes from now on.

use tokio::signal::unix::{SignalKind, signal};

use super::{bind_api, print_summary, start_session};
use crate::{
    cli::{AttachArgs, DEFAULT_ATTACH_LISTEN},
    exit::TracerError,
    procfs,
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

pub async fn attach(args: AttachArgs) -> Result<i32, TracerError> {
    let targets = resolve_targets(&args.pids)?;
    let listen = match (args.no_listen, args.common.listen) {
        (true, _) => None,
        (false, Some(addr)) => Some(addr),
        (false, None) => Some(
            DEFAULT_ATTACH_LISTEN
                .parse()
                .expect("a valid socket address"),
        ),
    };
    let api = bind_api(listen).await?;
    let mut session = start_session(&args.common)?;
    // A daemon may run for days: exited processes are forgotten after the grace period.
    session.tracker.evict_exited = true;
    if let Some(queries) = api {
        session.serve_queries(queries);
    }
    for target in &targets {
        session.tracker.trace(target.tgid, target.comm.clone())?;
    }
    // A target that died while the probes were loading is not traced: say so.
    for target in &targets {
        let alive = procfs::read_stat(target.tgid).is_ok_and(|s| !s.is_zombie());
        if !alive {
            session.tracker.probes.untrace(target.tgid);
            return Err(TracerError::ExitedDuringAttach(target.tgid));
        }
        session.tracker.seed(target.tgid, false);
    }
    let names: Vec<String> = targets
        .iter()
        .map(|t| format!("{} ({})", t.tgid, t.comm))
        .collect();
    eprintln!("tracer: attached to {}; stop with Ctrl-C", names.join(", "));

    let mut sigint = signal(SignalKind::interrupt()).map_err(io_error)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(io_error)?;
    let stop = async move {
        tokio::select! {
            _ = sigint.recv() => "SIGINT",
            _ = sigterm.recv() => "SIGTERM",
        }
    };
    match session.pump(stop, true).await.map_err(io_error)? {
        crate::session::Stopped::Finished(signal) => log::info!("{signal}: detaching"),
        crate::session::Stopped::AllExited => log::info!("every traced process has exited"),
    }
    session.drain();
    session.tracker.finish();
    print_summary(&session, args.common.quiet);
    Ok(0)
}

fn io_error(err: std::io::Error) -> TracerError {
    TracerError::Io(err.to_string())
}
