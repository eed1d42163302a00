//! Check outcomes as JUnit XML (`--junit PATH`), the format CI systems (GitHub Actions test
//! reporters, GitLab, Jenkins) display: one test suite per subject, one test case per
//! assertion, a `<failure>` with the measured value and the limit for each failed one.

use std::fmt::Write as _;

use super::{CheckFile, Outcome};

/// Escapes text for XML attribute values and character data.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 cannot carry at all (control characters other than tab and
            // newlines) could come from a process's argv: replace them.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// The XML document; `duration_s` is the tracing time (shown as the suites' time).
pub fn render(file: &CheckFile, outcomes: &[Outcome], duration_s: f64) -> String {
    // Suites in order of first appearance.
    let mut subjects: Vec<&str> = Vec::new();
    for o in outcomes {
        if !subjects.contains(&o.subject.as_str()) {
            subjects.push(&o.subject);
        }
    }
    let failures = outcomes.iter().filter(|o| !o.passed).count();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        "<testsuites name=\"tracer checks {}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" \
         time=\"{duration_s:.3}\">",
        escape(&file.path),
        outcomes.len()
    );
    for subject in subjects {
        let cases: Vec<&Outcome> = outcomes.iter().filter(|o| o.subject == subject).collect();
        let failed = cases.iter().filter(|o| !o.passed).count();
        // Several processes matched: the pid tells their test cases apart.
        let mut pids: Vec<u32> = cases.iter().filter_map(|o| o.pid).collect();
        pids.sort_unstable();
        pids.dedup();
        let classname: String = subject
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let _ = writeln!(
            xml,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failed}\" errors=\"0\" \
             skipped=\"0\" time=\"0\">",
            escape(subject),
            cases.len()
        );
        for o in cases {
            let name = match o.pid {
                Some(pid) if pids.len() > 1 => format!("{} [pid {pid}]", o.assertion),
                _ => o.assertion.clone(),
            };
            let _ = write!(
                xml,
                "    <testcase classname=\"tracer.{classname}\" name=\"{}\" file=\"{}\" \
                 line=\"{}\" time=\"0\">",
                escape(&name),
                escape(&file.path),
                o.line
            );
            let detail = match o.pid {
                Some(pid) => format!("pid {pid}: {}", o.detail),
                None => o.detail.clone(),
            };
            if o.passed {
                let _ = writeln!(xml, "\n      <system-out>{}</system-out>", escape(&detail));
            } else {
                let _ = writeln!(
                    xml,
                    "\n      <failure message=\"{}\" type=\"tracer.check\">{}:{}: {}</failure>",
                    escape(&detail),
                    escape(&file.path),
                    o.line,
                    escape(&detail)
                );
            }
            let _ = writeln!(xml, "    </testcase>");
        }
        let _ = writeln!(xml, "  </testsuite>");
    }
    xml.push_str("</testsuites>\n");
    xml
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_and_special_characters() {
        let file = super::super::spec::parse("c&.toml", "[tree]\nfaults = 1\n").unwrap();
        let outcomes = vec![
            Outcome {
                subject: "process argv ~ \"<x>\"".into(),
                pid: Some(3),
                assertion: "max_faults = 1".into(),
                line: 4,
                passed: false,
                detail: "faults measured 2, limit at most 1".into(),
            },
            Outcome {
                subject: "tree".into(),
                pid: None,
                assertion: "faults = 1".into(),
                line: 2,
                passed: true,
                detail: "ok\u{1}".into(),
            },
        ];
        let xml = render(&file, &outcomes, 1.5);
        assert!(xml.contains("tests=\"2\" failures=\"1\""), "{xml}");
        assert!(
            xml.contains("name=\"process argv ~ &quot;&lt;x&gt;&quot;\""),
            "{xml}"
        );
        assert!(xml.contains("<failure message=\"pid 3: faults measured 2, limit at most 1\""));
        assert!(xml.contains("c&amp;.toml:4"), "{xml}");
        assert!(xml.contains("ok\u{FFFD}"), "{xml}");
    }
}
