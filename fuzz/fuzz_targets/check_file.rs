//! A --check file, parsed, then evaluated against a real report and rendered.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use tracer::check;
use tracer::output::report;

/// A report the tracer wrote (`tracer run --report` of a small C program).
static REPORT: LazyLock<report::Report> = LazyLock::new(|| {
    report::parse(include_str!("../seeds/report_diff/report.json")).expect("the fixture parses")
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(file) = check::spec::parse("fuzz.toml", text) else {
        return;
    };
    let outcomes = check::evaluate(&file, &REPORT);
    let _ = check::render(&file, &outcomes);
    let _ = check::junit::render(&file, &outcomes, 1.0);
});
