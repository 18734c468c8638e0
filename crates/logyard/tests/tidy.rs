//! Tidy checks (as rust-analyzer keeps them): the boundaries ARCHITECTURE.md states, checked
//! by reading the sources. Each failure names the file and line that crosses a boundary.
//!
//! - Only the binary (`crates/logyard/src`) reads the process environment.
//! - Only `logyard-server` (and the binary, which wires it) knows the HTTP server's types.
//! - No two modules of a crate import each other (no cycle among a crate's modules).
//! - Every crate's `logyard-*` dependencies are the ones the layering allows, and
//!   ARCHITECTURE.md's code map names every crate.
//! - Every source file opens with a `//!` comment saying what it owns.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The crates under `crates/`, by directory name.
fn crates() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(workspace().join("crates"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().join("Cargo.toml").exists())
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Every `.rs` file under `dir`, sorted.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The lines of code of a file (comments left out), numbered from 1.
fn code_lines(path: &Path) -> Vec<(usize, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
        .map(|(i, l)| (i + 1, l.to_owned()))
        .collect()
}

fn relative(path: &Path) -> String {
    path.strip_prefix(workspace()).unwrap_or(path).display().to_string()
}

/// Lines of `files` that contain one of `needles`, as `file:line: text`.
fn find(files: &[PathBuf], needles: &[&str]) -> Vec<String> {
    let mut hits = Vec::new();
    for f in files {
        for (n, line) in code_lines(f) {
            if needles.iter().any(|needle| line.contains(needle)) {
                hits.push(format!("{}:{n}: {}", relative(f), line.trim()));
            }
        }
    }
    hits
}

#[test]
fn only_the_binary_reads_the_environment() {
    let mut files = Vec::new();
    for name in crates().iter().filter(|n| *n != "logyard") {
        files.extend(sources(&workspace().join("crates").join(name).join("src")));
    }
    let hits = find(&files, &["env::var", "env::vars", "env::var_os", "env!(\"HOME"]);
    assert!(
        hits.is_empty(),
        "only crates/logyard reads the process environment (pass what a library needs in its settings):\n{}",
        hits.join("\n")
    );
}

#[test]
fn only_the_server_knows_http_server_types() {
    let mut files = Vec::new();
    for name in crates().iter().filter(|n| !matches!(n.as_str(), "logyard" | "logyard-server")) {
        files.extend(sources(&workspace().join("crates").join(name).join("src")));
    }
    let hits = find(&files, &["axum", "tower::", "tower_http", "hyper::", "StatusCode"]);
    assert!(
        hits.is_empty(),
        "only crates/logyard-server knows HTTP (statuses come from logyard_core::ErrorKind):\n{}",
        hits.join("\n")
    );
}

/// The top-level module a source file belongs to (`None` for the crate root).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next()?.as_os_str().to_str().unwrap().to_owned();
    match first.strip_suffix(".rs") {
        Some("lib" | "main") => None,
        Some(name) => Some(name.to_owned()),
        None => Some(first),
    }
}

/// The top-level modules a text names through `crate::` (also in `use crate::{a, b}`,
/// over several lines), with the byte offset of each.
fn crate_references(text: &str) -> Vec<(usize, String)> {
    let ident = |s: &str| -> String { s.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect() };
    let mut out = Vec::new();
    for (at, _) in text.match_indices("crate::") {
        if text[..at].chars().last().is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `logyard_crate::`, not `crate::`
        }
        let rest = &text[at + "crate::".len()..];
        let heads: Vec<String> = match rest.strip_prefix('{') {
            Some(group) => group[..group.find('}').unwrap_or(group.len())].split(',').map(ident).collect(),
            None => vec![ident(rest)],
        };
        out.extend(heads.into_iter().filter(|h| !h.is_empty()).map(|h| (at, h)));
    }
    out
}

#[test]
fn no_two_modules_of_a_crate_import_each_other() {
    let mut cycles = Vec::new();
    for name in crates() {
        let src = workspace().join("crates").join(&name).join("src");
        let files = sources(&src);
        let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(&src, f)).collect();
        // module -> module it imports -> where
        let mut edges: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for f in &files {
            let Some(from) = module_of(&src, f) else { continue };
            // The code of the file as one text (a `use` may span lines), with where each line starts.
            let lines = code_lines(f);
            let mut text = String::new();
            let mut starts = Vec::new();
            for (n, line) in &lines {
                starts.push((text.len(), *n));
                text.push_str(line);
                text.push('\n');
            }
            for (at, to) in crate_references(&text) {
                if to != from && modules.contains(&to) {
                    let line = starts.iter().rev().find(|(start, _)| *start <= at).map_or(0, |(_, n)| *n);
                    edges
                        .entry(from.clone())
                        .or_default()
                        .entry(to)
                        .or_insert_with(|| format!("{}:{line}", relative(f)));
                }
            }
        }
        // A cycle is a path back to where it started.
        for start in &modules {
            let mut stack = vec![(start.clone(), vec![start.clone()])];
            while let Some((at, path)) = stack.pop() {
                for next in edges.get(&at).map(|e| e.keys().cloned().collect::<Vec<_>>()).unwrap_or_default() {
                    if next == *start {
                        let mut steps = Vec::new();
                        for pair in path.iter().chain([start]).collect::<Vec<_>>().windows(2) {
                            steps.push(format!("{} -> {} ({})", pair[0], pair[1], edges[pair[0]][pair[1]]));
                        }
                        // Report each cycle once, from its smallest module.
                        if path.iter().all(|m| m >= start) {
                            cycles.push(format!("crates/{name}: {}", steps.join(", ")));
                        }
                    } else if !path.contains(&next) {
                        let mut longer = path.clone();
                        longer.push(next.clone());
                        stack.push((next, longer));
                    }
                }
            }
        }
    }
    cycles.sort();
    cycles.dedup();
    assert!(cycles.is_empty(), "modules that import each other:\n{}", cycles.join("\n"));
}

/// The `logyard-*` crates each crate may depend on: dependencies point one way.
const LAYERS: &[(&str, &[&str])] = &[
    ("logyard-core", &[]),
    ("logyard-auth", &["logyard-core"]),
    ("logyard-protocols", &["logyard-core"]),
    ("logyard-storage", &["logyard-core"]),
    ("logyard-pg", &["logyard-core"]),
    ("logyard-search", &["logyard-core"]),
    ("logyard-ingest", &["logyard-core", "logyard-protocols", "logyard-storage"]),
    ("logyard-query", &["logyard-core", "logyard-auth", "logyard-search", "logyard-storage"]),
    ("logyard-report", &["logyard-core", "logyard-query", "logyard-storage"]),
    ("logyard-alerts", &["logyard-core", "logyard-auth", "logyard-ingest", "logyard-query", "logyard-storage"]),
    (
        "logyard-server",
        &[
            "logyard-core",
            "logyard-auth",
            "logyard-protocols",
            "logyard-storage",
            "logyard-ingest",
            "logyard-query",
            "logyard-report",
            "logyard-search",
            "logyard-alerts",
        ],
    ),
    (
        "logyard",
        &[
            "logyard-core",
            "logyard-auth",
            "logyard-protocols",
            "logyard-storage",
            "logyard-ingest",
            "logyard-query",
            "logyard-pg",
            "logyard-report",
            "logyard-server",
            "logyard-alerts",
        ],
    ),
    ("logyard-bench", &["logyard-core", "logyard-protocols"]),
];

#[test]
fn crates_depend_only_on_the_layers_below_them_and_are_all_in_the_code_map() {
    let architecture = std::fs::read_to_string(workspace().join("ARCHITECTURE.md")).unwrap();
    let mut problems = Vec::new();
    for name in crates() {
        if !architecture.contains(&format!("`crates/{name}`")) {
            problems.push(format!("ARCHITECTURE.md's code map does not name `crates/{name}`"));
        }
        let Some((_, allowed)) = LAYERS.iter().find(|(n, _)| *n == name) else {
            problems.push(format!("crates/{name} has no place in the layers of this test"));
            continue;
        };
        let manifest: toml::Table = std::fs::read_to_string(workspace().join("crates").join(&name).join("Cargo.toml"))
            .unwrap()
            .parse()
            .unwrap();
        let deps = manifest.get("dependencies").and_then(|d| d.as_table()).cloned().unwrap_or_default();
        for dep in deps.keys().filter(|d| d.starts_with("logyard")) {
            if !allowed.contains(&dep.as_str()) {
                problems.push(format!("crates/{name}/Cargo.toml: depends on {dep}, which the layering does not allow"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_source_file_says_what_it_owns() {
    let mut missing = Vec::new();
    for name in crates() {
        for f in sources(&workspace().join("crates").join(&name).join("src")) {
            let text = std::fs::read_to_string(&f).unwrap();
            if !text.trim_start().starts_with("//!") {
                missing.push(relative(&f));
            }
        }
    }
    assert!(missing.is_empty(), "files without a //! comment at the top:\n{}", missing.join("\n"));
}
