//! Reading a check file (TOML) into assertions, before anything is traced: every mistake is
//! reported with its line and what would have been valid.

use toml::{
    Spanned,
    de::{DeTable, DeValue},
};

use crate::output::figures::{self, PHASE_FIGURES, TREE_FIGURES, Unit};

/// A check file, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckFile {
    /// How messages name the file.
    pub path: String,
    pub groups: Vec<Group>,
}

/// What a group of assertions is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The whole traced tree (`[tree]`): figures summed (or the largest, for peaks).
    Tree,
    /// Each traced process that matches (`[[process]]`).
    Processes {
        comm: Option<String>,
        argv: Option<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub scope: Scope,
    /// The `name` given in the file, else one made from the selector.
    pub label: String,
    pub line: usize,
    pub assertions: Vec<Assertion>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    AtMost,
    AtLeast,
    Exactly,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Test {
    /// figure OP limit.
    Limit {
        figure: String,
        op: Op,
        limit: u64,
        unit: Unit,
    },
    /// The break ended within `slack` of start_brk, or a brk shrink was observed.
    HeapReturned { slack: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assertion {
    pub line: usize,
    /// The line as the user wrote it, for messages: `max_peak_rss = "64MiB"`.
    pub text: String,
    /// `Some(name)`: about the snapshot taken when phase `name` was marked.
    pub phase: Option<String>,
    /// `Some(name)`: about the call sites whose name contains `name` (`check::sites`).
    pub site: Option<String>,
    pub test: Test,
}

/// Booleans that stand for "this figure is zero".
const NO_FAILED: &[(&str, &str)] = &[
    ("no_failed_mmap", "mmap_failed"),
    ("no_failed_brk", "brk_failed"),
    ("no_failed_munmap", "munmap_failed"),
    ("no_failed_mremap", "mremap_failed"),
    ("no_failed_mprotect", "mprotect_failed"),
    ("no_failed_madvise", "madvise_failed"),
    ("no_failed_syscalls", "failed_syscalls"),
];

const SELECTORS: &[&str] = &["name", "comm", "argv"];

/// Where the figures of an assertion come from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    Process,
    Tree,
    Phase,
    Site,
}

impl Context {
    fn figure_names(self) -> Vec<&'static str> {
        match self {
            Context::Process => figures::FIGURES.iter().map(|f| f.name).collect(),
            Context::Tree => figures::FIGURES
                .iter()
                .map(|f| f.name)
                .chain(TREE_FIGURES.iter().map(|f| f.0))
                .collect(),
            Context::Phase => PHASE_FIGURES.iter().map(|f| f.0).collect(),
            Context::Site => super::sites::SITE_FIGURES.to_vec(),
        }
    }

    /// Every key valid here (for "did you mean").
    fn keys(self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .figure_names()
            .into_iter()
            .flat_map(|f| [f.to_string(), format!("max_{f}"), format!("min_{f}")])
            .collect();
        if self == Context::Process {
            keys.extend(NO_FAILED.iter().map(|(k, _)| k.to_string()));
            keys.extend(
                [
                    "heap_returned_to_os",
                    "heap_return_slack",
                    "phases",
                    "sites",
                ]
                .iter()
                .chain(SELECTORS)
                .map(|k| k.to_string()),
            );
        }
        if self == Context::Tree {
            keys.extend(NO_FAILED.iter().map(|(k, _)| k.to_string()));
        }
        keys
    }
}

/// An error with the line it is about.
struct Located {
    line: usize,
    message: String,
}

struct Parser<'a> {
    text: &'a str,
}

impl Parser<'_> {
    fn line_of(&self, span: std::ops::Range<usize>) -> usize {
        self.text[..span.start.min(self.text.len())]
            .bytes()
            .filter(|&b| b == b'\n')
            .count()
            + 1
    }

    fn err<T>(
        &self,
        span: std::ops::Range<usize>,
        message: impl Into<String>,
    ) -> Result<T, Located> {
        Err(Located {
            line: self.line_of(span),
            message: message.into(),
        })
    }

    /// The source text of a span (for echoing what the user wrote), on one line.
    fn source(&self, span: std::ops::Range<usize>) -> String {
        let text = self.text.get(span).unwrap_or("");
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

/// Parses and validates a check file. The error names the file, the line and the reason.
pub fn parse(path: &str, text: &str) -> Result<CheckFile, String> {
    let parser = Parser { text };
    let located = |e: Located| format!("check file {path}, line {}: {}", e.line, e.message);
    let root = DeTable::parse(text).map_err(|e| {
        let line = e.span().map_or(1, |s| parser.line_of(s));
        located(Located {
            line,
            message: format!("not valid TOML: {}", e.message().trim()),
        })
    })?;
    let mut groups = Vec::new();
    for (key, value) in root.get_ref() {
        match (key.get_ref().as_ref(), value.get_ref()) {
            ("tree", DeValue::Table(table)) => {
                groups.push(group(&parser, Scope::Tree, key.span(), table).map_err(located)?);
            }
            ("process", DeValue::Array(items)) => {
                for item in items.iter() {
                    let DeValue::Table(table) = item.get_ref() else {
                        return Err(located(Located {
                            line: parser.line_of(item.span()),
                            message: "`process` must be tables: write `[[process]]`".into(),
                        }));
                    };
                    let scope = Scope::Processes {
                        comm: None,
                        argv: None,
                    };
                    groups.push(group(&parser, scope, item.span(), table).map_err(located)?);
                }
            }
            ("process", DeValue::Table(_)) => {
                return Err(located(Located {
                    line: parser.line_of(key.span()),
                    message: "write `[[process]]` (double brackets: there can be several)".into(),
                }));
            }
            ("tree", _) => {
                return Err(located(Located {
                    line: parser.line_of(key.span()),
                    message: "`tree` must be a table: write `[tree]`".into(),
                }));
            }
            (other, _) => {
                return Err(located(Located {
                    line: parser.line_of(key.span()),
                    message: format!(
                        "unknown section `{other}`{} (a check file has [tree] and [[process]] \
                         sections)",
                        did_you_mean(other, ["tree", "process"].iter().map(|s| s.to_string()))
                    ),
                }));
            }
        }
    }
    // The TOML map is ordered by key: put groups and assertions back in file order.
    groups.sort_by_key(|g| g.line);
    // Sections are told apart by their labels (in the output, JUnit suites): make them unique.
    let labels: Vec<String> = groups.iter().map(|g| g.label.clone()).collect();
    for g in &mut groups {
        if labels.iter().filter(|l| **l == g.label).count() > 1 {
            g.label = format!("{} (line {})", g.label, g.line);
        }
    }
    if groups.is_empty() {
        return Err(format!(
            "check file {path}: no assertions (add a [tree] or [[process]] section)"
        ));
    }
    Ok(CheckFile {
        path: path.to_string(),
        groups,
    })
}

fn group(
    p: &Parser,
    mut scope: Scope,
    header: std::ops::Range<usize>,
    table: &DeTable,
) -> Result<Group, Located> {
    let context = match scope {
        Scope::Tree => Context::Tree,
        Scope::Processes { .. } => Context::Process,
    };
    let mut label = None;
    let mut assertions = Vec::new();
    let mut slack: Option<(u64, std::ops::Range<usize>)> = None;
    let mut heap_returned_at = None;
    for (key, value) in table {
        let name = key.get_ref().as_ref();
        let span = key.span().start..value.span().end;
        match (context, name) {
            (Context::Process, "name") => label = Some(string(p, value, "name")?),
            (Context::Process, "comm") => {
                let comm = string(p, value, "comm")?;
                if comm.is_empty() || comm.len() > 15 {
                    return p.err(
                        span,
                        format!(
                            "comm `{comm}` can never match: the kernel keeps 1 to 15 bytes of a \
                             command name (match longer names with `argv`)"
                        ),
                    );
                }
                if let Scope::Processes { comm: slot, .. } = &mut scope {
                    *slot = Some(comm);
                }
            }
            (Context::Process, "argv") => {
                let argv = string(p, value, "argv")?;
                if argv.is_empty() {
                    return p.err(span, "`argv = \"\"` would match every process");
                }
                if let Scope::Processes { argv: slot, .. } = &mut scope {
                    *slot = Some(argv);
                }
            }
            (Context::Process, "phases" | "sites") => {
                let DeValue::Table(phases) = value.get_ref() else {
                    return p.err(
                        span,
                        format!("write {name} as `[process.{name}.NAME]` tables"),
                    );
                };
                let what = &name[..name.len() - 1];
                for (phase, body) in phases {
                    let DeValue::Table(body) = body.get_ref() else {
                        return p.err(
                            phase.span(),
                            format!(
                                "`{}` is not a {what}: name the {what} in the table header, \
                                 `[process.{name}.NAME]`",
                                phase.get_ref()
                            ),
                        );
                    };
                    if name == "sites" {
                        if !super::sites::valid_site_name(phase.get_ref()) {
                            return p.err(
                                phase.span(),
                                "site name: 1 to 256 characters, no control characters",
                            );
                        }
                    } else if !valid_phase_name(phase.get_ref()) {
                        return p.err(
                            phase.span(),
                            format!(
                                "phase name `{}`: use 1 to 64 letters, digits, `_`, `-` or `.` \
                                 (as POST /api/v1/phases accepts)",
                                phase.get_ref()
                            ),
                        );
                    }
                    if body.is_empty() {
                        return p.err(
                            phase.span(),
                            format!("no assertions for {what} `{}`", phase.get_ref()),
                        );
                    }
                    for (key, value) in body {
                        let site = name == "sites";
                        let context = if site { Context::Site } else { Context::Phase };
                        let mut a = assertion(p, context, key, value)?;
                        *(if site { &mut a.site } else { &mut a.phase }) =
                            Some(phase.get_ref().to_string());
                        assertions.push(a);
                    }
                }
            }
            (Context::Process, "heap_return_slack") => {
                let bytes = limit(p, value, name, Unit::Bytes)?;
                slack = Some((bytes, span));
            }
            (Context::Process, "heap_returned_to_os") => {
                must_be_true(p, value, name)?;
                heap_returned_at = Some(assertions.len());
                assertions.push(Assertion {
                    line: p.line_of(span.clone()),
                    text: p.source(span),
                    phase: None,
                    site: None,
                    test: Test::HeapReturned { slack: 0 },
                });
            }
            _ => assertions.push(assertion(p, context, key, value)?),
        }
    }
    match (heap_returned_at, slack) {
        (Some(i), Some((bytes, _))) => {
            assertions[i].test = Test::HeapReturned { slack: bytes };
            assertions[i].text += &format!(" (slack {})", crate::units::human_bytes(bytes));
        }
        (None, Some((_, span))) => {
            return p.err(span, "heap_return_slack needs `heap_returned_to_os = true`");
        }
        _ => {}
    }
    let label = match (&scope, label) {
        (_, Some(label)) => label,
        (Scope::Tree, None) => "tree".to_string(),
        (Scope::Processes { comm, argv }, None) => {
            let mut parts = Vec::new();
            if let Some(comm) = comm {
                parts.push(format!("comm = \"{comm}\""));
            }
            if let Some(argv) = argv {
                parts.push(format!("argv ~ \"{argv}\""));
            }
            format!("process {}", parts.join(", "))
        }
    };
    if let Scope::Processes {
        comm: None,
        argv: None,
    } = scope
    {
        return p.err(
            header,
            "a [[process]] section needs `comm` or `argv` to say which processes it is about \
             (use [tree] for the whole tree)",
        );
    }
    if assertions.is_empty() {
        return p.err(header, format!("no assertions in [{label}]"));
    }
    assertions.sort_by_key(|a| a.line);
    Ok(Group {
        scope,
        label,
        line: p.line_of(header),
        assertions,
    })
}

fn assertion(
    p: &Parser,
    context: Context,
    key: &Spanned<std::borrow::Cow<'_, str>>,
    value: &Spanned<DeValue>,
) -> Result<Assertion, Located> {
    let name = key.get_ref().as_ref();
    let span = key.span().start..value.span().end;
    let text = p.source(span.clone());
    let line = p.line_of(span.clone());
    let make = |test| Assertion {
        line,
        text: text.clone(),
        phase: None,
        site: None,
        test,
    };
    if !matches!(context, Context::Phase | Context::Site)
        && let Some((_, figure)) = NO_FAILED.iter().find(|(k, _)| *k == name)
    {
        must_be_true(p, value, name)?;
        return Ok(make(Test::Limit {
            figure: figure.to_string(),
            op: Op::Exactly,
            limit: 0,
            unit: Unit::Count,
        }));
    }
    let names = context.figure_names();
    let (op, figure) = if let Some(f) = name.strip_prefix("max_").filter(|f| names.contains(f)) {
        (Op::AtMost, f)
    } else if let Some(f) = name.strip_prefix("min_").filter(|f| names.contains(f)) {
        (Op::AtLeast, f)
    } else if names.contains(&name) {
        (Op::Exactly, name)
    } else {
        let base = name
            .strip_prefix("max_")
            .or(name.strip_prefix("min_"))
            .unwrap_or(name);
        if context == Context::Tree && ["heap_returned_to_os", "heap_return_slack"].contains(&name)
        {
            return p.err(
                span,
                format!("`{name}` is about one process: put it under [[process]]"),
            );
        }
        if context == Context::Process && TREE_FIGURES.iter().any(|f| f.0 == base) {
            return p.err(
                span,
                format!("`{base}` is a figure of the whole tree: put `{name}` under [tree]"),
            );
        }
        let what = match context {
            Context::Phase => "phase assertion",
            Context::Site => "call-site assertion",
            _ => "assertion",
        };
        return p.err(
            key.span(),
            format!(
                "unknown {what} `{name}`{} (see \"Check files\" in docs/ci.md for the figures)",
                did_you_mean(name, context.keys().into_iter())
            ),
        );
    };
    let unit = match context {
        Context::Site if figure.ends_with("_space") => Unit::Bytes,
        Context::Site => Unit::Count,
        _ => figures::unit_of(figure).unwrap_or(Unit::Count),
    };
    Ok(make(Test::Limit {
        figure: figure.to_string(),
        op,
        limit: limit(p, value, name, unit)?,
        unit,
    }))
}

fn string(p: &Parser, value: &Spanned<DeValue>, key: &str) -> Result<String, Located> {
    match value.get_ref() {
        DeValue::String(s) => Ok(s.to_string()),
        other => p.err(
            value.span(),
            format!("`{key}` must be a string, not {}", other.type_str()),
        ),
    }
}

fn must_be_true(p: &Parser, value: &Spanned<DeValue>, key: &str) -> Result<(), Located> {
    match value.get_ref() {
        DeValue::Boolean(true) => Ok(()),
        DeValue::Boolean(false) => p.err(
            value.span(),
            format!("`{key} = false` asserts nothing: set it to true or remove the line"),
        ),
        other => p.err(
            value.span(),
            format!("`{key}` takes `true`, not {}", other.type_str()),
        ),
    }
}

/// The limit of an assertion: a count (integer) or a size (integer bytes, or a string with a
/// unit).
fn limit(p: &Parser, value: &Spanned<DeValue>, key: &str, unit: Unit) -> Result<u64, Located> {
    match (value.get_ref(), unit) {
        (DeValue::Integer(i), _) => {
            let digits = i.as_str().replace('_', "");
            match i64::from_str_radix(&digits, i.radix()) {
                Ok(v) if v >= 0 => Ok(v as u64),
                Ok(_) => p.err(value.span(), format!("`{key}` cannot be negative")),
                Err(_) => p.err(value.span(), format!("`{key}`: {digits} is too large")),
            }
        }
        (DeValue::String(s), Unit::Bytes) => {
            crate::units::parse_size(s).or_else(|e| p.err(value.span(), format!("`{key}`: {e}")))
        }
        (DeValue::String(s), Unit::Count) => p.err(
            value.span(),
            format!("`{key}` is a count: write a number without quotes or unit, not \"{s}\""),
        ),
        (other, Unit::Bytes) => p.err(
            value.span(),
            format!(
                "`{key}` is a size: write bytes (4096) or a string with a unit (\"64MiB\"), not \
                 {}",
                other.type_str()
            ),
        ),
        (other, Unit::Count) => p.err(
            value.span(),
            format!(
                "`{key}` is a count: write a whole number, not {}",
                other.type_str()
            ),
        ),
    }
}

/// `; did you mean `x`?` for the closest candidate, if one is close.
fn did_you_mean(word: &str, candidates: impl Iterator<Item = String>) -> String {
    let best = candidates
        .map(|c| (edit_distance(word, &c), c))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((d, c)) if d <= 3.max(word.len() / 4) => format!("; did you mean `{c}`?"),
        _ => String::new(),
    }
}

/// Levenshtein distance.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let next = (row[j + 1] + 1)
                .min(row[j] + 1)
                .min(prev + usize::from(ca != cb));
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// Phase names: what `POST /api/v1/phases` accepts, and a check file may refer to.
pub fn valid_phase_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

#[cfg(test)]
mod tests;
