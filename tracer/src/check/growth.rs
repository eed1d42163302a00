//! What grew between two reports and by how much, and the limits of a threshold
//! (`--fail-if`, `--fail-if-site`): shared by the figure and the call-site thresholds of
//! `tracer diff`. Pure.

use serde::Serialize;

use crate::output::figures::{Unit, show};

/// Which figures a threshold is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    Tree,
    /// Processes with this comm (paired between the reports).
    Comm(String),
    /// Every paired process.
    EveryProcess,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Growth {
    /// New exceeds old by more than this many units.
    Absolute(u64),
    /// New exceeds old by more than this percentage of old (any growth from 0 counts).
    Percent(f64),
}

/// The LIMIT of `FIGURE>LIMIT` (`text`, for messages): `10%`, `+4MiB` or `+100` by `unit`.
pub fn parse_growth(text: &str, limit: &str, unit: Unit) -> Result<Growth, String> {
    let limit = limit.trim().trim_start_matches('+');
    Ok(if let Some(percent) = limit.strip_suffix('%') {
        let value: f64 = percent
            .trim()
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| format!("`{text}`: `{limit}` is not a percentage"))?;
        Growth::Percent(value)
    } else {
        let value = match unit {
            Unit::Bytes => crate::units::parse_size(limit).map_err(|e| format!("`{text}`: {e}"))?,
            Unit::Count => limit
                .parse()
                .map_err(|_| format!("`{text}`: `{limit}` is not a whole number"))?,
        };
        Growth::Absolute(value)
    })
}

/// One figure compared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    pub figure: String,
    pub old: u64,
    pub new: u64,
}

impl Change {
    pub fn percent(&self) -> Option<f64> {
        (self.old > 0).then(|| (self.new as f64 - self.old as f64) * 100.0 / self.old as f64)
    }

    pub fn exceeds(&self, growth: &Growth) -> bool {
        let grown = self.new.saturating_sub(self.old);
        match growth {
            Growth::Absolute(limit) => grown > *limit,
            Growth::Percent(limit) => match self.percent() {
                Some(p) => p > *limit,
                None => grown > 0,
            },
        }
    }
}

/// A threshold exceeded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// The option and its value(s) as given, e.g. `--fail-if 'peak_rss>10%'`.
    pub threshold: String,
    pub subject: String,
    /// The change that exceeded it, or why it could not be checked.
    pub detail: String,
}

pub fn format_change(c: &Change, unit: Unit) -> String {
    let delta = if c.new >= c.old {
        format!("+{}", show(c.new - c.old, unit))
    } else {
        format!("-{}", show(c.old - c.new, unit))
    };
    let percent = match c.percent() {
        _ if c.old == c.new => "unchanged".to_string(),
        Some(p) => format!("{p:+.1}%"),
        None => "new".to_string(),
    };
    format!(
        "{} -> {} ({delta}, {percent})",
        show(c.old, unit),
        show(c.new, unit)
    )
}
