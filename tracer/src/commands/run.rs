//! `tracer run -- CMD`: trace a command from its first instruction.

use std::os::unix::ffi::OsStrExt;

use tokio::signal::unix::{SignalKind, signal};

use super::{api_policy, bind_api, ci::Outputs, print_summary, remove_socket, start_session};
use crate::{
    cli::RunArgs,
    cli::exit::{EXIT_CHECK_FAILED, TracerError},
    launch, procfs,
    session::Stopped,
};

pub async fn run(args: RunArgs) -> Result<i32, TracerError> {
    // Resolve CMD first: a typo gets "command not found" before any probe is loaded.
    let mut prepared = launch::Prepared::new(&args.command, args.no_aslr)?;
    // A malformed check file is reported before CMD runs.
    let outputs = Outputs::prepare(&args.common, args.common.listen.is_some())?;
    // CMD may mark phases (and read its own layout) over TCP with this token, which only it
    // and the tracer know: its environment is readable by its owner and root alone.
    let token = args.common.listen.as_ref().map(|_| random_token());
    let policy = api_policy(&args.common, token.clone())?;
    let api = bind_api(args.common.listen.as_ref(), policy)?;
    let mut session = start_session(&args.common, &Default::default())?;
    session.tracker.report_info.mode = "run".into();
    session.tracker.report_info.command = args
        .command
        .iter()
        .map(|a| procfs::escape(a.as_bytes()))
        .collect();
    if let Some((queries, bound)) = api {
        session.serve_queries(queries);
        // CMD (or its test harness) marks phases with POST $TRACER_API_URL/api/v1/phases.
        prepared.set_env("TRACER_API_URL", &bound.url())?;
        if let Some(token) = &token {
            prepared.set_env("TRACER_API_TOKEN", token)?;
        }
    }

    let gated = prepared.spawn_gated()?;
    let pid = gated.pid();
    // Pinned while CMD is our unreaped child: a signal forwarded after it is reaped then fails
    // instead of reaching whatever process gets its pid next.
    let cmd_fd = crate::launch::pidfd::PidFd::open(pid).ok();
    // Started before CMD may stop at an exec, so that the tracer's death cannot leave any
    // process below CMD stopped.
    let guard = (!args.no_exec_stop)
        .then(|| crate::launch::watchdog::Guard::start(pid))
        .flatten();
    let program = args.command[0].as_bytes();
    let comm = procfs::escape(program.rsplit(|&b| b == b'/').next().unwrap_or_default());
    if let Err(err) = session
        .tracker
        .trace_from_exec(pid, comm, !args.no_exec_stop)
    {
        gated.abort();
        return Err(err);
    }
    // The child is in the traced set before it executes anything of CMD.
    let pid = gated.release()?;
    log::info!("started {} as pid {pid}", prepared.display);

    let waiter = tokio::task::spawn_blocking(move || launch::wait_status(pid));
    let mut sigterm =
        signal(SignalKind::terminate()).map_err(TracerError::os("cannot handle SIGTERM"))?;
    let mut sighup =
        signal(SignalKind::hangup()).map_err(TracerError::os("cannot handle SIGHUP"))?;
    // SIGINT from the terminal reaches CMD directly (same process group); the tracer keeps
    // tracing until CMD exits, then prints what it saw.
    let mut sigint =
        signal(SignalKind::interrupt()).map_err(TracerError::os("cannot handle SIGINT"))?;
    let until_cmd_exits = async move {
        tokio::pin!(waiter);
        loop {
            tokio::select! {
                status = &mut waiter => return status.unwrap_or(125),
                _ = sigterm.recv() => crate::launch::pidfd::send(cmd_fd.as_ref(), pid, libc::SIGTERM),
                _ = sighup.recv() => crate::launch::pidfd::send(cmd_fd.as_ref(), pid, libc::SIGHUP),
                _ = sigint.recv() => log::info!("SIGINT: waiting for {pid} to exit"),
            }
        }
    };
    let status = match session
        .pump(until_cmd_exits, false)
        .await
        .map_err(TracerError::os("cannot read the ring buffer"))?
    {
        Stopped::Finished(status) => status,
        Stopped::AllExited => unreachable!("run stops only when CMD exits"),
    };
    // Descendants that exec from now on must not be stopped: nothing would resume them. The
    // drain below resumes any stopped before this.
    session.tracker.probes.clear_exec_stops();
    session.drain();
    if let Some(guard) = guard {
        guard.disarm();
    }
    if let Some(p) = session.tracker.table.get_mut(pid) {
        p.exit_status = Some(status);
    }
    session.tracker.finish();
    remove_socket(args.common.listen.as_ref());
    print_summary(&session, args.common.quiet);
    super::finish_stacks(
        session.tracker.stacks.as_mut(),
        &session.tracker.table,
        &args.common.stacks,
        args.common.quiet,
    )?;
    let passed = outputs.finish(&mut session.tracker, Some(status))?;
    if !passed {
        if status != 0 {
            eprintln!(
                "tracer: {} itself exited with status {status}",
                prepared.display
            );
        }
        eprintln!("tracer: a check failed: exit status {EXIT_CHECK_FAILED}");
        return Ok(EXIT_CHECK_FAILED);
    }
    Ok(status)
}

/// 128 random bits in hex.
fn random_token() -> String {
    let mut bytes = [0u8; 16];
    // SAFETY: writes at most `bytes.len()` bytes into the buffer.
    let got = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    assert_eq!(got, bytes.len() as isize, "getrandom failed");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
