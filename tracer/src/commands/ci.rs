//! The CI outputs of `run` and `attach` (`--report`, `--check`, `--junit`), and the offline
//! commands that work on saved reports (`diff`, `check-report`).

use std::path::{Path, PathBuf};

use crate::{
    check::{self, CheckFile},
    check::{diff, diff_site_limits},
    cli::exit::{EXIT_CHECK_FAILED, TracerError},
    cli::{CheckReportArgs, CommonArgs, DiffArgs},
    output::outfile,
    output::report::{self, Report},
    session::Tracker,
};

/// What to produce when tracing ends, validated before anything starts.
pub struct Outputs {
    report: Option<PathBuf>,
    html: Option<PathBuf>,
    checks: Option<CheckFile>,
    junit: Option<PathBuf>,
}

/// Reads and validates a check file: a mistake is reported with its line.
fn load_checks(path: &Path) -> Result<CheckFile, TracerError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        TracerError::BadInput(format!("cannot read check file {}: {e}", path.display()))
    })?;
    check::spec::parse(&path.display().to_string(), &text).map_err(TracerError::BadInput)
}

/// Fails now, not after a long run, when an output file could not be written: not a regular
/// file (a symlink, FIFO, device or directory is refused, never written through), or in a
/// directory that does not take a new file (`outfile` replaces it through a temporary file
/// beside it).
fn ensure_writable(path: &Path, what: &str) -> Result<(), TracerError> {
    outfile::check(path).map_err(|e| {
        TracerError::BadInput(format!(
            "cannot write the {what} to {}: {e}",
            path.display()
        ))
    })
}

impl Outputs {
    /// Reads the check file and tries the output paths. `listening`: the HTTP API will be
    /// served (phases are marked through it).
    pub fn prepare(common: &CommonArgs, listening: bool) -> Result<Outputs, TracerError> {
        let checks = common.check.as_deref().map(load_checks).transpose()?;
        if let Some(checks) = &checks
            && !listening
            && let Some(a) = checks
                .groups
                .iter()
                .flat_map(|g| &g.assertions)
                .find(|a| a.phase.is_some())
        {
            return Err(TracerError::BadInput(format!(
                "check file {}, line {}: phase assertions need the HTTP API, through which \
                 phases are marked: add --listen 127.0.0.1:0 (CMD finds it in $TRACER_API_URL)",
                checks.path, a.line
            )));
        }
        if let Some(checks) = &checks
            && common.stacks.settings().is_none()
            && let Some(a) = checks
                .groups
                .iter()
                .flat_map(|g| &g.assertions)
                .find(|a| a.site.is_some())
        {
            return Err(TracerError::BadInput(format!(
                "check file {}, line {}: call-site assertions need the call sites: add --stacks",
                checks.path, a.line
            )));
        }
        if common.stacks.settings().is_some()
            && !cfg!(any(target_arch = "x86_64", target_arch = "aarch64"))
        {
            // The stack programs read the pt_regs of x86-64 and arm64 only: elsewhere they
            // would send wrong registers, and wrong stacks are worse than none.
            return Err(TracerError::BadInput(format!(
                "--stacks (and --pprof, --folded): call sites are implemented on x86-64 and \
                 arm64 only, not on {} yet (docs/callsites.md)",
                std::env::consts::ARCH
            )));
        }
        if common.stacks.settings().is_none()
            && common.stacks.report_sites as usize != crate::output::report::REPORT_SITES
        {
            return Err(TracerError::BadInput(
                "--report-sites sets how many call sites the report lists: add --stacks".into(),
            ));
        }
        if let Some(path) = &common.report {
            ensure_writable(path, "report")?;
        }
        if let Some(path) = &common.junit {
            ensure_writable(path, "JUnit results")?;
        }
        if let Some(path) = &common.events {
            ensure_writable(path, "event stream")?;
        }
        if let Some(path) = &common.html {
            ensure_writable(path, "HTML page")?;
        }
        if let Some(path) = &common.stacks.pprof {
            ensure_writable(path, "pprof profile")?;
        }
        if let Some(path) = &common.stacks.folded {
            ensure_writable(path, "folded stacks")?;
        }
        Ok(Outputs {
            report: common.report.clone(),
            html: common.html.clone(),
            checks,
            junit: common.junit.clone(),
        })
    }

    pub fn wanted(&self) -> bool {
        self.report.is_some() || self.checks.is_some() || self.html.is_some()
    }

    /// Writes the report and evaluates the checks. Returns false when an assertion failed;
    /// an output that could not be written is an error only if every assertion passed (the
    /// checks are evaluated and printed either way).
    pub fn finish(
        &self,
        tracker: &mut Tracker,
        exit_status: Option<i32>,
    ) -> Result<bool, TracerError> {
        if !self.wanted() {
            return Ok(true);
        }
        let report = tracker.report(exit_status);
        let mut failure = None;
        if let Some(path) = &self.report {
            match report::write(&report, path) {
                Ok(()) => eprintln!("tracer: report written to {}", path.display()),
                Err(e) => {
                    let err = TracerError::Write {
                        what: format!("cannot write the report to {}", path.display()),
                        source: e.into(),
                    };
                    eprintln!("tracer: {}", crate::error_chain(&err));
                    failure = Some(err);
                }
            }
        }
        if let Some(path) = &self.html {
            let written = crate::views::page::offline(&report)
                .map_err(Box::<dyn std::error::Error + Send + Sync>::from)
                .and_then(|page| Ok(crate::output::outfile::write(path, page.as_bytes())?));
            match written {
                Ok(()) => eprintln!("tracer: HTML page written to {}", path.display()),
                Err(source) => {
                    let err = TracerError::Write {
                        what: format!("cannot write the HTML page to {}", path.display()),
                        source,
                    };
                    eprintln!("tracer: {}", crate::error_chain(&err));
                    failure = Some(err);
                }
            }
        }
        let passed = match &self.checks {
            Some(checks) => {
                let (passed, junit_written) = evaluate(checks, &report, self.junit.as_deref());
                if let Err(err) = junit_written {
                    eprintln!("tracer: {}", crate::error_chain(&err));
                    failure = Some(err);
                }
                passed
            }
            None => true,
        };
        match failure {
            Some(err) if passed => Err(err),
            _ => Ok(passed),
        }
    }
}

/// Evaluates, prints the outcome to stderr, writes JUnit XML if asked. True if all passed.
/// Evaluates and prints the checks: whether every assertion passed, and whether the JUnit
/// file (if asked for) was written; the two are separate, so that a file that could not be
/// written is not taken for a failed assertion.
fn evaluate(
    checks: &CheckFile,
    report: &Report,
    junit: Option<&Path>,
) -> (bool, Result<(), TracerError>) {
    let outcomes = check::evaluate(checks, report);
    eprint!("{}", check::render(checks, &outcomes));
    let passed = outcomes.iter().all(|o| o.passed);
    let Some(path) = junit else {
        return (passed, Ok(()));
    };
    let xml = check::junit::render(checks, &outcomes, report.tracer.duration_ms as f64 / 1e3);
    let written = outfile::write(path, xml.as_bytes()).map_err(|e| TracerError::Write {
        what: format!("cannot write JUnit results to {}", path.display()),
        source: e.into(),
    });
    (passed, written)
}

/// Largest report `diff` and `check-report` read: a report may come from anywhere (another
/// job's artifact), and memory stays bounded. Reports of thousands of processes with call
/// sites stay far below it.
const REPORT_BYTES_MAX: u64 = 256 << 20;

fn read_report(path: &Path) -> Result<Report, TracerError> {
    use std::io::Read as _;
    let cannot = |e: std::io::Error| {
        TracerError::BadInput(format!("cannot read report {}: {e}", path.display()))
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(cannot)?
        .take(REPORT_BYTES_MAX + 1)
        .read_to_string(&mut text)
        .map_err(cannot)?;
    if text.len() as u64 > REPORT_BYTES_MAX {
        return Err(TracerError::BadInput(format!(
            "report {}: larger than {} MiB",
            path.display(),
            REPORT_BYTES_MAX >> 20
        )));
    }
    report::parse(&text)
        .map_err(|e| TracerError::BadInput(format!("report {}: {e}", path.display())))
}

/// `tracer diff OLD NEW [--fail-if ...]`.
pub fn diff(args: DiffArgs) -> Result<i32, TracerError> {
    let thresholds = args
        .fail_if
        .iter()
        .map(|t| {
            diff::parse_threshold(t).map_err(|e| TracerError::BadInput(format!("--fail-if {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    // clap gives the NAME EXPR pairs one after the other.
    let site_thresholds = args
        .fail_if_site
        .chunks(2)
        .map(|pair| match pair {
            [name, expr] => diff_site_limits::parse(name, expr).map_err(TracerError::BadInput),
            _ => Err(TracerError::BadInput(
                "--fail-if-site takes NAME and EXPR".to_string(),
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let old = read_report(&args.old)?;
    let new = read_report(&args.new)?;
    let result = diff::compare(
        &args.old.display().to_string(),
        &old,
        &args.new.display().to_string(),
        &new,
        &thresholds,
        &site_thresholds,
    );
    if args.json {
        let json = serde_json::to_string_pretty(&result).map_err(|e| {
            TracerError::BadInput(format!("cannot render the comparison as JSON: {e}"))
        })?;
        println!("{json}");
    } else {
        print!("{}", result.text(args.all));
    }
    Ok(if result.violations.is_empty() {
        0
    } else {
        EXIT_CHECK_FAILED
    })
}

/// `tracer check-report REPORT --check FILE [--junit PATH]`.
pub fn check_report(args: CheckReportArgs) -> Result<i32, TracerError> {
    let checks = load_checks(&args.check)?;
    let report = read_report(&args.report)?;
    if let Some(path) = &args.junit {
        ensure_writable(path, "JUnit results")?;
    }
    let (passed, junit_written) = evaluate(&checks, &report, args.junit.as_deref());
    junit_written?;
    Ok(if passed { 0 } else { EXIT_CHECK_FAILED })
}
