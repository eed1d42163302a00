//! The shape of `tracer/src`, checked on every test run: no import circles, between the
//! top-level modules (the folders by concern) nor between files, and no file over 600 lines.
//!
//! It reads the source as text: every `crate::`, `super::` and `self::` path, in `use` lines
//! (groups expanded) and inline, is resolved to the module file that defines it (the longest
//! prefix of the path that is a module). `mod` declarations are not imports; a parent that
//! `use`s its child and a child that `use`s its parent are a circle like any other.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 600;

/// A module path (`["tracking", "process"]`) for every `.rs` file under `src`.
fn module_files(src: &Path) -> BTreeMap<Vec<String>, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).expect("read tracer/src") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|ext| ext != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).expect("under src");
            let mut segments: Vec<String> = rel
                .iter()
                .map(|part| part.to_string_lossy().trim_end_matches(".rs").to_string())
                .collect();
            if matches!(
                segments.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                segments.pop();
            }
            out.insert(segments, path);
        }
    }
    out
}

/// The text without comments, string literals (which may mention paths that are not imports)
/// and inline `#[cfg(test)]` modules: what tests import is not the architecture.
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim_start() == "#[cfg(test)]"
            && lines
                .peek()
                .is_some_and(|next| next.trim_start().starts_with("mod ") && next.ends_with('{'))
        {
            // Skip to the module's closing brace, at the indentation of its `mod` line.
            let opening = lines.next().unwrap_or_default();
            let indent = opening.len() - opening.trim_start().len();
            let closing = format!("{}}}", " ".repeat(indent));
            for inner in lines.by_ref() {
                if inner == closing {
                    break;
                }
            }
            continue;
        }
        let mut in_string = false;
        let mut escaped = false;
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            if in_string {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => in_string = false,
                    _ => {}
                }
                continue;
            }
            match c {
                '"' => in_string = true,
                '/' if chars.peek() == Some(&'/') => break,
                _ => out.push(c),
            }
        }
        out.push('\n');
    }
    out
}

/// Expands a use tree at `text[at..]` (after `crate::`/`super::`/`self::`) into full paths.
fn parse_tree(text: &[u8], at: &mut usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let mut path = prefix;
    loop {
        while *at < text.len() && text[*at].is_ascii_whitespace() {
            *at += 1;
        }
        if *at < text.len() && text[*at] == b'{' {
            *at += 1;
            loop {
                parse_tree(text, at, path.clone(), out);
                while *at < text.len() && text[*at].is_ascii_whitespace() {
                    *at += 1;
                }
                match text.get(*at) {
                    Some(b',') => *at += 1,
                    Some(b'}') => {
                        *at += 1;
                        return;
                    }
                    _ => return,
                }
                while *at < text.len() && text[*at].is_ascii_whitespace() {
                    *at += 1;
                }
                if text.get(*at) == Some(&b'}') {
                    *at += 1;
                    return;
                }
            }
        }
        let start = *at;
        while *at < text.len() && (text[*at].is_ascii_alphanumeric() || text[*at] == b'_') {
            *at += 1;
        }
        if start == *at {
            out.push(path);
            return;
        }
        path.push(String::from_utf8_lossy(&text[start..*at]).into_owned());
        if text[*at..].starts_with(b"::") {
            *at += 2;
        } else {
            out.push(path);
            return;
        }
    }
}

/// Every path the file names, as absolute module paths: from `crate::`, `super::`, `self::`,
/// and from the bare name of one of its child modules (`features::X` in `probes/mod.rs`).
fn imported_paths(
    module: &[String],
    is_dir_module: bool,
    children: &[String],
    code: &str,
) -> Vec<Vec<String>> {
    let bytes = code.as_bytes();
    let mut out = Vec::new();
    let child_keywords = children.iter().map(|child| {
        let mut path = module.to_vec();
        path.push(child.clone());
        (format!("{child}::"), path)
    });
    for (keyword, base) in [
        ("crate::".to_string(), Vec::new()),
        ("super::".to_string(), {
            let mut parent = module.to_vec();
            if !is_dir_module || !parent.is_empty() {
                parent.pop();
            }
            parent
        }),
        ("self::".to_string(), module.to_vec()),
    ]
    .into_iter()
    .chain(child_keywords)
    {
        let keyword = keyword.as_str();
        let mut from = 0;
        while let Some(found) = code[from..].find(keyword) {
            let start = from + found;
            from = start + keyword.len();
            let preceded_by_ident = start > 0
                && (bytes[start - 1].is_ascii_alphanumeric()
                    || bytes[start - 1] == b'_'
                    || bytes[start - 1] == b':');
            if preceded_by_ident {
                continue;
            }
            let mut at = from;
            let mut base = base.clone();
            if !keyword.starts_with("crate")
                && !keyword.starts_with("super")
                && !keyword.starts_with("self")
            {
                // A child's name: the path continues from the child itself.
                base.truncate(module.len() + 1);
            }
            parse_tree(bytes, &mut at, base, &mut out);
        }
    }
    out
}

/// The module file that defines `path`: its longest prefix that is a module.
fn resolve<'a>(
    path: &[String],
    modules: &'a BTreeMap<Vec<String>, PathBuf>,
) -> Option<&'a Vec<String>> {
    (1..=path.len())
        .rev()
        .find_map(|len| modules.get_key_value(&path[..len]).map(|(key, _)| key))
}

/// Strongly connected components with more than one member (Tarjan).
fn circles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        on_stack: BTreeSet<&'a str>,
        stack: Vec<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(state: &mut State<'a>, node: &'a str) {
        let next = state.index.len();
        state.index.insert(node, next);
        state.low.insert(node, next);
        state.stack.push(node);
        state.on_stack.insert(node);
        let targets: Vec<&'a str> = state
            .edges
            .get(node)
            .map(|set| set.iter().map(String::as_str).collect())
            .unwrap_or_default();
        for target in targets {
            if !state.index.contains_key(target) {
                visit(state, target);
                let low = state.low[node].min(state.low[target]);
                state.low.insert(node, low);
            } else if state.on_stack.contains(target) {
                let low = state.low[node].min(state.index[target]);
                state.low.insert(node, low);
            }
        }
        if state.low[node] == state.index[node] {
            let mut component = Vec::new();
            while let Some(member) = state.stack.pop() {
                state.on_stack.remove(member);
                component.push(member.to_string());
                if member == node {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                state.out.push(component);
            }
        }
    }
    let mut state = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        on_stack: BTreeSet::new(),
        stack: Vec::new(),
        out: Vec::new(),
    };
    for node in edges.keys() {
        if !state.index.contains_key(node.as_str()) {
            visit(&mut state, node);
        }
    }
    state.out
}

struct Graph {
    files: BTreeMap<String, BTreeSet<String>>,
    folders: BTreeMap<String, BTreeSet<String>>,
}

fn graph(src: &Path) -> Graph {
    let modules = module_files(src);
    let name = |module: &[String]| {
        if module.is_empty() {
            "crate".to_string()
        } else {
            module.join("::")
        }
    };
    let mut files: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut folders: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, path) in &modules {
        let is_dir_module = path.file_name().is_some_and(|f| f == "mod.rs");
        let code = code_only(&fs::read_to_string(path).expect("read source"));
        let from = name(module);
        files.entry(from.clone()).or_default();
        let children: Vec<String> = modules
            .keys()
            .filter(|other| other.len() == module.len() + 1 && other.starts_with(module))
            .filter_map(|other| other.last().cloned())
            .collect();
        for imported in imported_paths(module, is_dir_module, &children, &code) {
            let Some(target) = resolve(&imported, &modules) else {
                continue;
            };
            if target == module {
                continue;
            }
            files.entry(from.clone()).or_default().insert(name(target));
            if let (Some(a), Some(b)) = (module.first(), target.first())
                && a != b
            {
                folders.entry(a.clone()).or_default().insert(b.clone());
            }
        }
    }
    Graph { files, folders }
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn describe(circles: &[Vec<String>], edges: &BTreeMap<String, BTreeSet<String>>) -> String {
    let mut text = String::new();
    for circle in circles {
        text.push_str(&format!("circle: {}\n", circle.join(", ")));
        for from in circle {
            for to in edges[from].iter().filter(|to| circle.contains(to)) {
                text.push_str(&format!("  {from} -> {to}\n"));
            }
        }
    }
    text
}

#[test]
fn no_import_circles_between_folders() {
    let graph = graph(&src_dir());
    let found = circles(&graph.folders);
    assert!(found.is_empty(), "{}", describe(&found, &graph.folders));
}

#[test]
fn no_import_circles_between_files() {
    let graph = graph(&src_dir());
    let found = circles(&graph.files);
    assert!(found.is_empty(), "{}", describe(&found, &graph.files));
}

#[test]
fn no_file_over_600_lines() {
    let long: Vec<String> = module_files(&src_dir())
        .values()
        .filter_map(|path| {
            let lines = fs::read_to_string(path)
                .expect("read source")
                .lines()
                .count();
            (lines > MAX_LINES).then(|| format!("{}: {lines} lines", path.display()))
        })
        .collect();
    assert!(long.is_empty(), "split these files:\n{}", long.join("\n"));
}

/// The checker itself sees a circle when there is one (two files that use each other), through
/// a group import and a `super::` path.
#[test]
fn the_checker_finds_a_planted_circle() {
    let dir = std::env::temp_dir().join(format!("module-graph-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("a")).unwrap();
    fs::write(dir.join("lib.rs"), "pub mod a;\npub mod b;\n").unwrap();
    fs::write(
        dir.join("a/mod.rs"),
        "pub mod x;\nfn f() -> x::X { todo!() }\n",
    )
    .unwrap();
    fs::write(dir.join("a/x.rs"), "use super::{Y, z};\n// use crate::b;\n").unwrap();
    fs::write(
        dir.join("b.rs"),
        "fn f() { let s = \"crate::a\"; }\n#[cfg(test)]\nmod tests {\n    use crate::a;\n}\n",
    )
    .unwrap();
    let found = graph(&dir);
    let files = circles(&found.files);
    assert_eq!(files, vec![vec!["a".to_string(), "a::x".to_string()]]);
    assert!(circles(&found.folders).is_empty());
    fs::write(dir.join("b.rs"), "use crate::{a::x::X, c};\n").unwrap();
    fs::write(dir.join("a/x.rs"), "fn f() { crate::b::g(); }\n").unwrap();
    let found = graph(&dir);
    assert_eq!(
        circles(&found.folders),
        vec![vec!["a".to_string(), "b".to_string()]]
    );
    fs::remove_dir_all(&dir).unwrap();
}
