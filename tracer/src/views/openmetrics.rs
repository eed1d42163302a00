//! The OpenMetrics 1.0 exposition, for scrapers that ask for it
//! (`Accept: application/openmetrics-text`); the Prometheus text format stays the default.
//!
//! The prometheus crate only writes the text format, so the gathered families are encoded
//! here. What differs from the text format: a counter family is named without its `_total`
//! suffix (its samples keep it), `tracer_build_info` is an `info` family, counters that exist
//! since the daemon started carry `_created`, and the exposition ends with `# EOF`.

use std::fmt::Write;

use prometheus::proto::{MetricFamily, MetricType};

/// The Content-Type of the OpenMetrics exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Whether an `Accept` header asks for OpenMetrics (Prometheus sends it first, with a
/// q-value, when its scrape protocols allow it).
pub fn wanted(accept: &[u8]) -> bool {
    accept.split(|&b| b == b',').any(|part| {
        let media = part.split(|&b| b == b';').next().unwrap_or_default();
        media
            .trim_ascii()
            .eq_ignore_ascii_case(b"application/openmetrics-text")
    })
}

/// Encodes `families`. Counters without labels (daemon-wide: they start with the daemon) get
/// `_created` = `daemon_started_unix_s`. Per-process and per-group counters get none: a group's
/// series can be folded away and come back later from zero, and a pid's series starts when
/// tracing of it starts, which the daemon does not keep per series; a missing `_created` is
/// allowed and means "unknown", so rate() still works from the samples.
pub fn encode(families: &[MetricFamily], daemon_started_unix_s: f64) -> String {
    let mut out = String::new();
    for mf in families {
        let name = mf.name();
        let (family, kind) = match mf.get_field_type() {
            MetricType::COUNTER => (name.strip_suffix("_total").unwrap_or(name), "counter"),
            MetricType::GAUGE if name == "tracer_build_info" => ("tracer_build", "info"),
            MetricType::GAUGE => (name, "gauge"),
            // The tracer exports no histograms or summaries.
            _ => continue,
        };
        let _ = writeln!(out, "# TYPE {family} {kind}");
        if !mf.help().is_empty() {
            let _ = writeln!(out, "# HELP {family} {}", escape(mf.help(), false));
        }
        for m in mf.get_metric() {
            let mut labels = String::new();
            for (i, pair) in m.get_label().iter().enumerate() {
                let sep = if i == 0 { "" } else { "," };
                let _ = write!(
                    labels,
                    "{sep}{}=\"{}\"",
                    pair.name(),
                    escape(pair.value(), true)
                );
            }
            let labels = if labels.is_empty() {
                String::new()
            } else {
                format!("{{{labels}}}")
            };
            match kind {
                "counter" => {
                    let value = m.get_counter().get_value();
                    let _ = writeln!(out, "{family}_total{labels} {}", number(value));
                    if m.get_label().is_empty() {
                        let _ = writeln!(
                            out,
                            "{family}_created{labels} {}",
                            number(daemon_started_unix_s)
                        );
                    }
                }
                "info" => {
                    let _ = writeln!(out, "{family}_info{labels} 1");
                }
                _ => {
                    let _ = writeln!(
                        out,
                        "{family}{labels} {}",
                        number(m.get_gauge().get_value())
                    );
                }
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

/// Escapes a label value (`\`, `"`, newline) or a help text (`\`, newline).
fn escape(text: &str, quote: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out
}

/// Integral values as integers (what they are: counts and bytes), others as floats.
fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 9.0e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

    fn families() -> Vec<MetricFamily> {
        let registry = Registry::new();
        let per = IntCounterVec::new(Opts::new("t_faults_total", "Faults"), &["comm"]).unwrap();
        per.with_label_values(&["a\"b\\c\nd"]).inc_by(3);
        let lost = IntCounterVec::new(Opts::new("t_lost_total", "Lost"), &[]).unwrap();
        lost.with_label_values(&[] as &[&str]).inc_by(2);
        let build =
            IntGaugeVec::new(Opts::new("tracer_build_info", "Version"), &["version"]).unwrap();
        build.with_label_values(&["1.2.3"]).set(1);
        let rss = IntGaugeVec::new(Opts::new("t_rss_bytes", "RSS"), &["pid"]).unwrap();
        rss.with_label_values(&["7"]).set(4096);
        registry.register(Box::new(per)).unwrap();
        registry.register(Box::new(lost)).unwrap();
        registry.register(Box::new(build)).unwrap();
        registry.register(Box::new(rss)).unwrap();
        registry.gather()
    }

    #[test]
    fn counters_info_created_and_eof() {
        let text = encode(&families(), 1700000000.5);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.last(), Some(&"# EOF"), "{text}");
        assert!(lines.contains(&"# TYPE t_faults counter"), "{text}");
        assert!(
            lines.contains(&r#"t_faults_total{comm="a\"b\\c\nd"} 3"#),
            "{text}"
        );
        assert!(lines.contains(&"# TYPE t_lost counter"), "{text}");
        assert!(lines.contains(&"t_lost_total 2"), "{text}");
        assert!(lines.contains(&"t_lost_created 1700000000.5"), "{text}");
        assert!(
            !text.contains("t_faults_created"),
            "per-group counters have no known creation time: {text}"
        );
        assert!(lines.contains(&"# TYPE tracer_build info"), "{text}");
        assert!(
            lines.contains(&r#"tracer_build_info{version="1.2.3"} 1"#),
            "{text}"
        );
        assert!(lines.contains(&r#"t_rss_bytes{pid="7"} 4096"#), "{text}");
        // Every family's TYPE comes before its samples, and no sample name is a bare family
        // name of a counter.
        assert!(!lines.iter().any(|l| l.starts_with("t_faults{")), "{text}");
    }

    #[test]
    fn accept_header_negotiation() {
        assert!(wanted(
            b"application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        ));
        assert!(wanted(b" Application/OpenMetrics-Text "));
        assert!(!wanted(b"text/plain;version=0.0.4"));
        assert!(!wanted(b""));
        assert!(!wanted(b"\xff\xfe,;;"));
    }
}
