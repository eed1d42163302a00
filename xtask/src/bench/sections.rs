//! Sections of `cargo xtask bench` that answer one issue each, after the main tables: what
//! the mmap_lock ordering costs (issue 21), how fast the live page loads (issue 16) and a soak
//! of `attach --all --group-by comm` (issue 13). Each can run alone (`--section NAME`): its
//! part of BENCHMARKS.md is then replaced and the rest of the file kept.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use super::modes::Tools;
use super::{ordering, pageload, soak};
use crate::util::say;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Section {
    /// `tracer run --mmap-lock-order on` against `off` on churn and multi-threaded churn.
    Ordering,
    /// The live page's load time with 200 processes and with one process of 30k VMAs.
    Page,
    /// `attach --all --group-by comm` while 10,000 short-lived processes come and go.
    Soak,
}

impl Section {
    const ALL: [Section; 3] = [Section::Ordering, Section::Page, Section::Soak];

    fn name(self) -> &'static str {
        match self {
            Section::Ordering => "ordering",
            Section::Page => "page",
            Section::Soak => "soak",
        }
    }
}

#[derive(clap::Args)]
pub struct SectionArgs {
    /// Run only this section (ordering, page, soak) and replace only its part of the output
    /// file; repeatable. Without it every section runs after the main tables.
    #[arg(long = "section", value_name = "NAME")]
    pub sections: Vec<Section>,
    /// Leave out the sections (ordering, page, soak).
    #[arg(long, conflicts_with = "sections")]
    pub no_sections: bool,
    /// Short-lived processes started by the soak section.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(100..=100_000))]
    pub soak_processes: u32,
    /// How long the soak section spreads them over (seconds).
    #[arg(long, default_value_t = 150, value_parser = clap::value_parser!(u64).range(20..=3600))]
    pub soak_seconds: u64,
}

/// What every section needs from the bench.
pub struct Context<'a> {
    pub tools: &'a Tools,
    pub workloads: &'a Path,
    pub scratch: &'a Path,
    pub quick: bool,
    pub args: &'a SectionArgs,
}

impl SectionArgs {
    /// Whether only some sections run (not the main tables).
    pub fn alone(&self) -> bool {
        !self.sections.is_empty()
    }
}

/// Runs the chosen sections (all of them unless `--section` or `--no-sections`) and returns
/// their Markdown, each between its own markers.
pub fn run(cx: &Context) -> Result<String> {
    if cx.args.no_sections {
        return Ok(String::new());
    }
    let mut text = String::new();
    for section in Section::ALL {
        if cx.args.alone() && !cx.args.sections.contains(&section) {
            continue;
        }
        say(format_args!("bench: section {}", section.name()));
        let body = match section {
            Section::Ordering => ordering::run(cx)?,
            Section::Page => pageload::run(cx)?,
            Section::Soak => soak::run(cx)?,
        };
        text.push_str(&wrap(section, &body));
        text.push('\n');
    }
    Ok(text)
}

fn begin(section: Section) -> String {
    format!(
        "<!-- section {}: `cargo xtask bench --section {}` -->",
        section.name(),
        section.name()
    )
}

fn end(section: Section) -> String {
    format!("<!-- end of section {} -->", section.name())
}

fn wrap(section: Section, body: &str) -> String {
    format!(
        "{}\n{}\n{}\n",
        begin(section),
        body.trim_end(),
        end(section)
    )
}

/// `old` with each section of `new` (as `run` writes them) put in the place of the same
/// section, or, for one not there yet, before `marker` (the part measured apart), else at the
/// end.
pub fn splice(old: &str, new: &str, marker: &str) -> String {
    let mut out = old.to_owned();
    for section in Section::ALL {
        let (b, e) = (begin(section), end(section));
        let Some(from) = new.find(&b) else { continue };
        let Some(to) = new[from..].find(&e).map(|at| from + at + e.len()) else {
            continue;
        };
        let block = &new[from..to];
        match (out.find(&b), out.find(&e)) {
            (Some(x), Some(y)) if y > x => out.replace_range(x..y + e.len(), block),
            _ => {
                let at = out.find(marker).unwrap_or(out.len());
                out.insert_str(at, &format!("{block}\n\n"));
            }
        }
    }
    out
}

/// Prints `new` sections and writes them into `output` (keeping everything else in it), unless
/// `output` is `-`.
pub fn write_alone(output: &Path, new: &str, marker: &str) -> Result<()> {
    println!("{new}");
    if output == Path::new("-") {
        return Ok(());
    }
    let old = fs::read_to_string(output).unwrap_or_default();
    fs::write(output, splice(&old, new, marker))
        .with_context(|| format!("cannot write {}", output.display()))?;
    say(format_args!(
        "bench: sections written to {}",
        output.display()
    ));
    Ok(())
}

/// The median of `values` (None when empty).
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// `median (min–max)` of ratios, or `n/a`.
pub fn ratio_cell(values: &[f64]) -> String {
    let Some(m) = median(values) else {
        return "n/a".to_owned();
    };
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("**{m:.2}×** ({min:.2}–{max:.2})")
}

/// Where a tracer started with `--listen 127.0.0.1:0` serves its API, from its stderr lines.
pub fn api_address(stderr: &str) -> Option<String> {
    stderr
        .lines()
        .find_map(|line| line.strip_prefix("tracer: serving the API on http://"))
        .map(|rest| rest.trim().trim_end_matches('/').to_owned())
}

/// The first number after `"key":` in JSON text (xtask has no JSON parser; the API's field
/// names are fixed).
pub fn json_number(json: &str, key: &str) -> Option<u64> {
    let pattern = format!("\"{key}\":");
    let at = json.find(&pattern)? + pattern.len();
    json[at..]
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// GET over plain HTTP/1.0: the time to the whole answer, and its body.
pub fn http_get(addr: &str, path: &str) -> Result<(Duration, String)> {
    let start = Instant::now();
    let mut stream =
        TcpStream::connect(addr).with_context(|| format!("cannot connect to the API at {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let took = start.elapsed();
    let text = String::from_utf8_lossy(&response);
    if !text.starts_with("HTTP/1.") || !text.lines().next().unwrap_or("").contains(" 200 ") {
        bail!("GET {path}: {}", text.lines().next().unwrap_or("no answer"));
    }
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Ok((took, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARK: &str = "<!-- Measured apart: -->";

    #[test]
    fn a_section_run_alone_replaces_only_its_own_part() {
        let first = format!(
            "{}\n{}\n",
            wrap(Section::Ordering, "old ordering"),
            wrap(Section::Soak, "old soak")
        );
        let old = format!("# Benchmarks\n\ntables\n\n{first}\n{MARK}\n\nby hand\n");
        let new = wrap(Section::Soak, "new soak");
        let out = splice(&old, &new, MARK);
        assert!(out.contains("old ordering"));
        assert!(out.contains("new soak") && !out.contains("old soak"));
        assert!(out.ends_with(&format!("{MARK}\n\nby hand\n")));
        // A section not in the file yet goes above the part measured apart.
        let out = splice(&out, &wrap(Section::Page, "page"), MARK);
        assert!(out.find("page").unwrap() < out.find(MARK).unwrap());
        assert!(out.contains("new soak") && out.contains("old ordering"));
    }

    #[test]
    fn numbers_come_out_of_the_api_json() {
        let json = r#"[{"pid":12,"comm":"a","vmas": 30012,"rss_bytes":4096}]"#;
        assert_eq!(json_number(json, "vmas"), Some(30012));
        assert_eq!(json_number(json, "pid"), Some(12));
        assert_eq!(json_number(json, "absent"), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[]), None);
    }
}
