//! The CI outputs of `run` and `attach` (`--report`, `--check`, `--junit`), and the offline
//! commands that work on saved reports (`diff`, `check-report`).

use std::path::{Path, PathBuf};

use crate::{
    check::{self, CheckFile},
    cli::{CheckReportArgs, CommonArgs, DiffArgs},
    diff,
    exit::{EXIT_CHECK_FAILED, TracerError},
    report::{self, Report},
    session::Tracker,
};

/// What to produce when tracing ends, validated before anything starts.
pub struct Outputs {
    report: Option<PathBuf>,
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

/// Fails now, not after a long run, when an output file could not be written.
fn ensure_writable(path: &Path, what: &str) -> Result<(), TracerError> {
    let probe = path.with_extension("tmp-tracer");
    std::fs::write(&probe, b"")
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| {
            TracerError::BadInput(format!(
                "cannot write the {what} to {}: {e}",
                path.display()
            ))
        })
}

impl Outputs {
    pub fn prepare(common: &CommonArgs) -> Result<Outputs, TracerError> {
        let checks = common.check.as_deref().map(load_checks).transpose()?;
        if let Some(path) = &common.report {
            ensure_writable(path, "report")?;
        }
        if let Some(path) = &common.junit {
            ensure_writable(path, "JUnit results")?;
        }
        Ok(Outputs {
            report: common.report.clone(),
            checks,
            junit: common.junit.clone(),
        })
    }

    pub fn wanted(&self) -> bool {
        self.report.is_some() || self.checks.is_some()
    }

    /// Writes the report and evaluates the checks. Returns false when an assertion failed.
    pub fn finish(
        &self,
        tracker: &mut Tracker,
        exit_status: Option<i32>,
    ) -> Result<bool, TracerError> {
        if !self.wanted() {
            return Ok(true);
        }
        let report = tracker.report(exit_status);
        if let Some(path) = &self.report {
            report::write(&report, path).map_err(|e| {
                TracerError::Io(format!(
                    "cannot write the report to {}: {e}",
                    path.display()
                ))
            })?;
            eprintln!("tracer: report written to {}", path.display());
        }
        match &self.checks {
            Some(checks) => evaluate(checks, &report, self.junit.as_deref()),
            None => Ok(true),
        }
    }
}

/// Evaluates, prints the outcome to stderr, writes JUnit XML if asked. True if all passed.
fn evaluate(
    checks: &CheckFile,
    report: &Report,
    junit: Option<&Path>,
) -> Result<bool, TracerError> {
    let outcomes = check::evaluate(checks, report);
    eprint!("{}", check::render(checks, &outcomes));
    if report.events.lost_total > 0 {
        eprintln!(
            "tracer: WARNING: {} records were lost: the figures checked are incomplete",
            report.events.lost_total
        );
    }
    if let Some(path) = junit {
        let xml = check::junit::render(checks, &outcomes, report.tracer.duration_ms as f64 / 1e3);
        std::fs::write(path, xml).map_err(|e| {
            TracerError::Io(format!(
                "cannot write JUnit results to {}: {e}",
                path.display()
            ))
        })?;
    }
    Ok(outcomes.iter().all(|o| o.passed))
}

fn read_report(path: &Path) -> Result<Report, TracerError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        TracerError::BadInput(format!("cannot read report {}: {e}", path.display()))
    })?;
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
    let old = read_report(&args.old)?;
    let new = read_report(&args.new)?;
    let result = diff::compare(
        &args.old.display().to_string(),
        &old,
        &args.new.display().to_string(),
        &new,
        &thresholds,
        args.all,
    );
    print!("{}", result.text);
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
    let passed = evaluate(&checks, &report, args.junit.as_deref())?;
    Ok(if passed { 0 } else { EXIT_CHECK_FAILED })
}
