//! The `/proc/PID/maps` text: parsing it (to seed and to check the model), rendering the
//! model in the same format, and comparing the two after coalescing.

use std::{fmt::Write as _, sync::Arc};

use super::{
    space::AddressSpace,
    vma::{Backing, FileRef, Perms, Vma},
};

/// Parses one line: `start-end perms offset major:minor inode [name]`. The name is the rest
/// of the line after the inode and its padding, so paths with spaces and ` (deleted)` survive.
pub fn parse_line(line: &str) -> Option<Vma> {
    parse_named(line).map(|(vma, _)| vma)
}

/// Parses a line into its VMA and the name exactly as printed.
fn parse_named(line: &str) -> Option<(Vma, &str)> {
    let mut rest = line;
    let mut field = || {
        let trimmed = rest.trim_start_matches(' ');
        let end = trimmed.find(' ').unwrap_or(trimmed.len());
        let (f, r) = trimmed.split_at(end);
        rest = r;
        f
    };
    let (range, perms, offset, dev, inode) = (field(), field(), field(), field(), field());
    let name = rest.trim_start_matches(' ');
    let (start, end) = range.split_once('-')?;
    let start = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    let perms = Perms::parse(perms)?;
    let offset = u64::from_str_radix(offset, 16).ok()?;
    let (major, minor) = dev.split_once(':')?;
    let dev = (
        u32::from_str_radix(major, 16).ok()?,
        u32::from_str_radix(minor, 16).ok()?,
    );
    let inode: u64 = inode.parse().ok()?;
    if start >= end {
        return None;
    }
    let backing = match name {
        "" | "[heap]" | "[stack]" => Backing::Anonymous,
        n if n.starts_with('[') && n.ends_with(']') => Backing::Special(Arc::from(n)),
        n => Backing::File(FileRef {
            path: Some(Arc::from(n)),
            dev,
            inode,
            fd: None,
        }),
    };
    let offset = if matches!(backing, Backing::File(_)) {
        offset
    } else {
        0
    };
    Some((
        Vma {
            start,
            end,
            perms,
            offset,
            backing,
            dont_fork: false,
        },
        name,
    ))
}

/// Parses a whole maps file; malformed lines are reported with their number.
pub fn parse(text: &str) -> Result<Vec<Vma>, String> {
    // Split on `\n` only: `lines()` would also take a `\r` that ends a file name.
    text.split('\n')
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| parse_line(l).ok_or_else(|| format!("line {}: {l:?}", i + 1)))
        .collect()
}

/// The name /proc would print for a VMA of this space.
pub fn name_of(space: &AddressSpace, vma: &Vma) -> String {
    match &vma.backing {
        Backing::Anonymous if space.is_heap(vma) => "[heap]".into(),
        Backing::Anonymous if space.is_stack(vma) => "[stack]".into(),
        Backing::Anonymous => String::new(),
        Backing::Special(name) => name.to_string(),
        Backing::File(f) => f.path.as_deref().unwrap_or("?").to_string(),
    }
}

/// A line of the comparison: what /proc shows, with names already decided.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Line {
    pub start: u64,
    pub end: u64,
    pub perms: Perms,
    pub offset: u64,
    pub name: String,
    pub is_file: bool,
}

impl Line {
    fn continued_by(&self, next: &Line) -> bool {
        self.end == next.start
            && self.perms == next.perms
            && self.name == next.name
            && self.is_file == next.is_file
            && (!self.is_file || self.offset + (self.end - self.start) == next.offset)
    }
}

impl std::fmt::Display for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:x}-{:x} {} {:08x} {}",
            self.start, self.end, self.perms, self.offset, self.name
        )
    }
}

fn line_of(space: &AddressSpace, vma: &Vma) -> Line {
    Line {
        start: vma.start,
        end: vma.end,
        perms: vma.perms,
        offset: vma.offset,
        name: name_of(space, vma),
        is_file: matches!(vma.backing, Backing::File(_)),
    }
}

/// Merges adjacent lines with the same permissions, name and contiguous offset: the kernel
/// merges anonymous VMAs by rules that depend on fault history, so only this form is stable.
pub fn coalesce(lines: impl IntoIterator<Item = Line>) -> Vec<Line> {
    let mut out: Vec<Line> = Vec::new();
    for line in lines {
        match out.last_mut() {
            Some(last) if last.continued_by(&line) => last.end = line.end,
            _ => out.push(line),
        }
    }
    out
}

/// The model's lines, coalesced.
pub fn model_lines(space: &AddressSpace) -> Vec<Line> {
    coalesce(space.vmas().map(|v| line_of(space, v)))
}

/// Lines of a /proc maps text, coalesced, with `[heap]`/`[stack]` as the kernel named them.
pub fn proc_lines(text: &str) -> Result<Vec<Line>, String> {
    let mut lines = Vec::new();
    for (i, raw) in text
        .split('\n')
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let (vma, name) = parse_named(raw).ok_or_else(|| format!("line {}: {raw:?}", i + 1))?;
        lines.push(Line {
            start: vma.start,
            end: vma.end,
            perms: vma.perms,
            offset: vma.offset,
            name: name.to_string(),
            is_file: matches!(vma.backing, Backing::File(_)),
        });
    }
    Ok(coalesce(lines))
}

/// `lines` in address order (as they normally come).
fn by_start(lines: &[Line]) -> Vec<&Line> {
    let mut lines: Vec<&Line> = lines.iter().collect();
    if !lines.is_sorted_by_key(|l| l.start) {
        lines.sort_by_key(|l| l.start);
    }
    lines
}

/// The differences between two coalesced lists: lines only in `model`, lines only in `kernel`.
/// One sweep over both in address order (a line's start identifies it within a list: the lines
/// of one list do not overlap), linear in the number of lines.
pub fn diff(model: &[Line], kernel: &[Line]) -> (Vec<Line>, Vec<Line>) {
    let (model, kernel) = (by_start(model), by_start(kernel));
    let (mut only_model, mut only_kernel) = (Vec::new(), Vec::new());
    let (mut m, mut k) = (model.into_iter().peekable(), kernel.into_iter().peekable());
    loop {
        match (m.peek(), k.peek()) {
            (None, None) => break,
            (Some(_), None) => only_model.extend(m.by_ref().cloned()),
            (None, Some(_)) => only_kernel.extend(k.by_ref().cloned()),
            (Some(a), Some(b)) => match a.start.cmp(&b.start) {
                std::cmp::Ordering::Less => only_model.extend(m.next().cloned()),
                std::cmp::Ordering::Greater => only_kernel.extend(k.next().cloned()),
                std::cmp::Ordering::Equal => {
                    let (a, b) = (m.next(), k.next());
                    if a != b {
                        only_model.extend(a.cloned());
                        only_kernel.extend(b.cloned());
                    }
                }
            },
        }
    }
    (only_model, only_kernel)
}

/// Renders the model in the `/proc/PID/maps` format (name column padded like the kernel's).
pub fn render(space: &AddressSpace) -> String {
    let mut out = String::new();
    for vma in space.vmas() {
        let (dev, inode) = match &vma.backing {
            Backing::File(f) => (f.dev, f.inode),
            _ => ((0, 0), 0),
        };
        let mut line = format!(
            "{:08x}-{:08x} {} {:08x} {:02x}:{:02x} {} ",
            vma.start, vma.end, vma.perms, vma.offset, dev.0, dev.1, inode
        );
        let name = name_of(space, vma);
        if !name.is_empty() {
            // fs/proc/task_mmu.c pads to 25 + 6 * sizeof(void *) - 1 columns.
            while line.len() < 73 {
                line.push(' ');
            }
            line.push_str(&name);
        }
        let _ = writeln!(out, "{line}");
    }
    out
}

/// Fills in unresolved file names (and device, inode) from /proc's view of the same ranges
/// (`kernel` in address order, as /proc lists it).
pub fn resolve_names(space: &mut AddressSpace, kernel: &[Vma]) -> usize {
    let mut resolved = 0;
    for vma in space.vmas_mut() {
        let Backing::File(file) = &mut vma.backing else {
            continue;
        };
        if file.path.is_some() && file.inode != 0 {
            continue;
        }
        // The kernel's VMA holding this start (kernel VMAs are sorted and do not overlap).
        let Some(k) = kernel[..kernel.partition_point(|k| k.start <= vma.start)]
            .last()
            .filter(|k| vma.start < k.end)
        else {
            continue;
        };
        if let Backing::File(kf) = &k.backing
            && k.offset + (vma.start - k.start) == vma.offset
            && file
                .path
                .as_ref()
                .is_none_or(|p| Some(p) == kf.path.as_ref())
        {
            file.path = kf.path.clone();
            file.dev = kf.dev;
            file.inode = kf.inode;
            file.fd = None;
            resolved += 1;
        }
    }
    resolved
}

#[cfg(test)]
mod diff_tests {
    use super::*;

    /// Found by the fuzz target `proc_maps`: a file name ending in `\r` lost it (`lines()`
    /// splits on `\r\n` too), so the model's rendering parsed to another name.
    #[test]
    fn a_name_ending_in_a_carriage_return_keeps_it() {
        let text = "55d81d620000-55d81d63c000 r-xp 00000000 fe:00 308270     name\r\r\n";
        let vmas = parse(text).unwrap();
        let Backing::File(f) = &vmas[0].backing else {
            panic!("{vmas:?}")
        };
        assert_eq!(f.path.as_deref(), Some("name\r\r"));
        assert_eq!(proc_lines(text).unwrap()[0].name, "name\r\r");
        let mut space = AddressSpace::new(4096);
        space.replace_vmas(vmas.clone());
        assert_eq!(parse(&render(&space)).unwrap(), vmas);
    }

    /// The definition `diff` must keep: every line of one list absent from the other.
    fn naive(model: &[Line], kernel: &[Line]) -> (Vec<Line>, Vec<Line>) {
        let only = |a: &[Line], b: &[Line]| a.iter().filter(|l| !b.contains(l)).cloned().collect();
        (only(model, kernel), only(kernel, model))
    }

    #[test]
    fn the_sweep_finds_what_the_definition_finds() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..200 {
            let mut text = [String::new(), String::new()];
            let mut at = 0x1000u64;
            for _ in 0..(next() % 40) {
                at += (next() % 4) * 0x1000;
                let end = at + (1 + next() % 3) * 0x1000;
                let line = format!("{at:x}-{end:x} rw-p 00000000 00:00 0 \n");
                // Most lines in both, some in one only, some renamed.
                match next() % 6 {
                    0 => text[0].push_str(&line),
                    1 => text[1].push_str(&line),
                    2 => {
                        text[0].push_str(&line);
                        text[1].push_str(&line.replace(" 0 \n", " 0 [heap]\n"));
                    }
                    _ => {
                        text[0].push_str(&line);
                        text[1].push_str(&line);
                    }
                }
                at = end + 0x1000;
            }
            let model = proc_lines(&text[0]).unwrap();
            let kernel = proc_lines(&text[1]).unwrap();
            assert_eq!(diff(&model, &kernel), naive(&model, &kernel), "{text:?}");
        }
    }
}
