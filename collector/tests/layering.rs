//! The collector's imports flow one way. This test reads the source and fails
//! on any import cycle, either between top-level modules (`store`, `rules`,
//! `incidents`, …) or between the files of one module (`assets/model.rs` and
//! `assets/identity.rs`), and on `domain` importing anything of the crate.
//! Test code (`tests.rs`, `tests/`, `properties.rs` and `#[cfg(test)] mod tests`) is left
//! out: tests may reach across.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One source file: its top-level module, its directory module (if inside
/// one) and its own module name.
struct SourceFile {
    top: String,
    /// For `assets/model.rs`: `Some("assets")`.
    parent_dir: Option<String>,
    name: String,
    text: String,
}

fn source_files() -> Vec<SourceFile> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect(&root, &root, &mut files);
    files
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<SourceFile>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path: PathBuf = entry.unwrap().path();
        if path.is_dir() {
            // A `tests/` folder is a test module split into files.
            if path.file_name().is_some_and(|name| name != "tests") {
                collect(root, &path, out);
            }
            continue;
        }
        if path.extension().is_none_or(|ext| ext != "rs") {
            continue;
        }
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if name == "tests" || name == "properties" {
            continue;
        }
        let relative = path.strip_prefix(root).unwrap();
        let parts: Vec<String> = relative
            .iter()
            .map(|part| part.to_string_lossy().trim_end_matches(".rs").to_string())
            .collect();
        let top = parts[0].clone();
        let parent_dir = (parts.len() == 2).then(|| parts[0].clone());
        let text = std::fs::read_to_string(&path).unwrap();
        let text = match text.find("#[cfg(test)]\nmod tests") {
            Some(cut) => text[..cut].to_string(),
            None => text,
        };
        let text = text
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        out.push(SourceFile {
            top,
            parent_dir,
            name,
            text,
        });
    }
}

/// Every path written after `prefix` (`crate::` or `super::`), with brace
/// groups expanded: `crate::{a::{b, c}, d}` gives `a::b`, `a::c`, `d`.
fn paths_after(text: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(prefix) {
        let before = rest[..at].chars().last();
        rest = &rest[at + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let (paths, _) = parse_tree(rest);
        out.extend(paths);
    }
    out
}

/// Parses `a::b::{c, d::e}` at the start of `text`; returns the paths and
/// how many bytes were read.
fn parse_tree(text: &str) -> (Vec<Vec<String>>, usize) {
    let mut position = 0;
    let mut prefix = Vec::new();
    loop {
        let rest = &text[position..];
        let trimmed = rest.trim_start();
        position += rest.len() - trimmed.len();
        if let Some(inner) = trimmed.strip_prefix('{') {
            position += 1;
            let mut paths = Vec::new();
            let mut consumed = 0;
            loop {
                let inner_rest = &inner[consumed..];
                let skipped =
                    inner_rest.len() - inner_rest.trim_start_matches([' ', '\n', ',']).len();
                consumed += skipped;
                if inner[consumed..].starts_with('}') || consumed >= inner.len() {
                    consumed += 1;
                    break;
                }
                let (sub, used) = parse_tree(&inner[consumed..]);
                for path in sub {
                    paths.push(prefix.iter().cloned().chain(path).collect());
                }
                consumed += used.max(1);
            }
            return (paths, position + consumed);
        }
        let ident: String = trimmed
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if ident.is_empty() {
            return (vec![prefix], position);
        }
        position += ident.len();
        prefix.push(ident);
        if text[position..].starts_with("::") {
            position += 2;
        } else {
            return (vec![prefix], position);
        }
    }
}

/// Items a directory module's `mod.rs` re-exports from its files:
/// `pub use model::{Asset, Disposal};` maps `Asset` and `Disposal` to `model`.
fn reexports(mod_rs: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for path in paths_after(mod_rs, "pub use ") {
        if let [file, .., item] = path.as_slice() {
            map.insert(item.clone(), file.clone());
        }
    }
    map
}

/// The first cycle in `edges`, as a list of nodes, if any.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = stack.iter().position(|seen| seen == node) {
            let mut cycle = stack[start..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|node| visit(node, edges, &mut Vec::new(), &mut done))
}

fn module_graph(files: &[SourceFile]) -> BTreeMap<String, BTreeSet<String>> {
    let tops: BTreeSet<&str> = files.iter().map(|file| file.top.as_str()).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        for path in paths_after(&file.text, "crate::") {
            if let Some(target) = path.first()
                && tops.contains(target.as_str())
                && *target != file.top
            {
                edges
                    .entry(file.top.clone())
                    .or_default()
                    .insert(target.clone());
            }
        }
    }
    edges
}

#[test]
fn top_level_modules_import_without_cycles() {
    let edges = module_graph(&source_files());
    assert!(
        edges.contains_key("api") && edges.contains_key("incidents"),
        "the scan found the imports: {edges:?}"
    );
    if let Some(cycle) = find_cycle(&edges) {
        panic!("import cycle between modules: {}", cycle.join(" -> "));
    }
}

#[test]
fn domain_imports_nothing_of_the_crate() {
    let edges = module_graph(&source_files());
    assert_eq!(edges.get("domain"), None, "domain must stay at the bottom");
}

#[test]
fn files_within_a_module_import_without_cycles() {
    let files = source_files();
    let mut by_dir: BTreeMap<&str, Vec<&SourceFile>> = BTreeMap::new();
    for file in &files {
        if let Some(dir) = &file.parent_dir {
            by_dir.entry(dir).or_default().push(file);
        }
    }
    let mut checked = 0;
    for (dir, members) in by_dir {
        let names: BTreeSet<&str> = members
            .iter()
            .map(|file| file.name.as_str())
            .filter(|name| *name != "mod")
            .collect();
        let exported = members
            .iter()
            .find(|file| file.name == "mod")
            .map(|file| reexports(&file.text))
            .unwrap_or_default();
        let sibling = |path: &[String]| -> Option<String> {
            let first = path.first()?;
            if names.contains(first.as_str()) {
                return Some(first.clone());
            }
            exported.get(first).cloned()
        };
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for file in members.iter().filter(|file| file.name != "mod") {
            let mut targets: Vec<String> = paths_after(&file.text, "super::")
                .iter()
                .filter_map(|path| sibling(path))
                .collect();
            for path in paths_after(&file.text, "crate::") {
                if path.first().map(String::as_str) == Some(dir) {
                    targets.extend(sibling(&path[1..]));
                }
            }
            for target in targets {
                if target != file.name {
                    edges.entry(file.name.clone()).or_default().insert(target);
                }
            }
        }
        checked += edges.len();
        if let Some(cycle) = find_cycle(&edges) {
            panic!(
                "import cycle between files of `{dir}`: {}",
                cycle.join(" -> ")
            );
        }
    }
    assert!(checked > 10, "the scan found sibling imports");
}

#[test]
fn the_scanner_sees_nested_groups_and_finds_cycles() {
    let paths = paths_after(
        "use crate::{a::{b, c}, d};\nlet x = crate::e::f(); notcrate::g;",
        "crate::",
    );
    let joined: Vec<String> = paths.iter().map(|path| path.join("::")).collect();
    assert_eq!(joined, ["a::b", "a::c", "d", "e::f"]);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    edges.entry("x".into()).or_default().insert("y".into());
    assert_eq!(find_cycle(&edges), None);
    edges.entry("y".into()).or_default().insert("x".into());
    assert_eq!(
        find_cycle(&edges),
        Some(vec!["x".into(), "y".into(), "x".into()])
    );
}
