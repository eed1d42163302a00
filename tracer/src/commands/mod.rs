//! The subcommands: each validates its input, starts a session and prints the summary.
pub mod attach;
pub mod ci;
pub mod run;

use crate::{
    cli::exit::TracerError, kernel::preflight, output::summary, server::access::Policy,
    server::http, server::listener::ListenAddr, session::Session,
};

/// The HTTP API once bound: the session's query stream and the address actually bound.
type BoundApi = (tokio::sync::mpsc::Receiver<http::Query>, ListenAddr);

/// The access policy of the API: `--trust-tcp-clients`, `--web-config` (read and checked now:
/// a mistake is a usage error), and `token` (`run` gives CMD one).
fn api_policy(
    common: &crate::cli::CommonArgs,
    token: Option<String>,
) -> Result<Policy, TracerError> {
    let web = common
        .web_config
        .as_deref()
        .map(crate::server::webconfig::load)
        .transpose()
        .map_err(TracerError::BadInput)?;
    Ok(Policy {
        web,
        trust_tcp: common.trust_tcp_clients,
        token,
        hidepid: common.listen.as_ref().and_then(|_| proc_hidepid()),
    })
}

/// The `hidepid=` of the `/proc` the tracer sees, said once: on such a host the process list
/// and `/metrics` need authorization.
fn proc_hidepid() -> Option<String> {
    match crate::procfs::mounts::proc_hidepid() {
        Ok(Some(mode)) => {
            eprintln!(
                "tracer: /proc is mounted hidepid={mode}: the API lists traced processes \
                 (/metrics, /api/v1/processes) only to authorised clients"
            );
            Some(mode)
        }
        Ok(None) => None,
        // Fails closed: not knowing, the lists are restricted as on a hiding host.
        Err(err) => {
            eprintln!(
                "tracer: cannot tell whether /proc hides processes ({err}): the API lists traced \
                 processes only to authorised clients"
            );
            Some("unknown".into())
        }
    }
}

/// Binds the HTTP API before anything else is started, so a busy port fails fast.
fn bind_api(listen: Option<&ListenAddr>, policy: Policy) -> Result<Option<BoundApi>, TracerError> {
    let Some(addr) = listen else { return Ok(None) };
    let policy_tls = policy.web.as_ref().is_some_and(|w| w.tls.is_some());
    let (queries, bound) = http::serve(addr, policy).map_err(|err| TracerError::Listen {
        addr: addr.clone(),
        err,
    })?;
    let url = match &bound {
        ListenAddr::Tcp(_) if policy_tls => {
            format!("{}/", bound.url().replacen("http", "https", 1))
        }
        ListenAddr::Tcp(_) => format!("{}/", bound.url()),
        ListenAddr::Unix(_) => bound.url(),
    };
    eprintln!("tracer: serving the API on {url}");
    Ok(Some((queries, bound)))
}

/// Removes the API's Unix socket when tracing has ended (a socket left behind by a crash is
/// replaced at the next start).
fn remove_socket(listen: Option<&ListenAddr>) {
    if let Some(ListenAddr::Unix(path)) = listen {
        let _ = std::fs::remove_file(path);
    }
}

/// Checks privileges and loads the probes.
fn start_session(
    common: &crate::cli::CommonArgs,
    filter: &crate::session::ExecFilter,
) -> Result<Session, TracerError> {
    let missing = preflight::own_missing_capabilities().map_err(|source| TracerError::Os {
        what: "cannot read this process's capabilities from /proc/self/status".into(),
        source,
    })?;
    if let Some(missing) = missing {
        return Err(TracerError::MissingCapability { missing });
    }
    preflight::raise_memlock_limit();
    Session::start(common, filter)
}

/// Prints the per-process summary to stderr (stdout belongs to the traced command and to
/// `--events -`).
fn print_summary(session: &Session, quiet: bool) {
    let tracker = &session.tracker;
    if !quiet {
        eprint!(
            "{}",
            summary::render(tracker.table.iter(), &tracker.counters)
        );
    } else if tracker.counters.lost_total() > 0 {
        eprintln!(
            "tracer: WARNING: {} records were lost",
            tracker.counters.lost_total()
        );
    }
}

/// At the end of `run` and `attach` with `--stacks`: the top call sites on stderr (unless
/// quiet), the profile written to `--pprof PATH` and the folded stacks to `--folded PATH`.
fn finish_stacks(
    collector: Option<&mut crate::stacks::Collector>,
    table: &crate::tracking::table::ProcessTable,
    args: &crate::cli::stacks::StackArgs,
    quiet: bool,
) -> Result<(), TracerError> {
    let Some(collector) = collector else {
        return Ok(());
    };
    if !quiet {
        crate::stacks::print_top_sites(collector);
    }
    if let Some(path) = &args.pprof {
        let bytes = collector.profile(table, None, "inuse_space");
        crate::output::outfile::write(path, &bytes).map_err(|e| TracerError::Write {
            what: format!("cannot write the pprof profile to {}", path.display()),
            source: e.into(),
        })?;
    }
    if let Some(path) = &args.folded {
        let text = collector.folded(table, None, args.folded_type);
        crate::output::outfile::write(path, text.as_bytes()).map_err(|e| TracerError::Write {
            what: format!("cannot write the folded stacks to {}", path.display()),
            source: e.into(),
        })?;
    }
    Ok(())
}
