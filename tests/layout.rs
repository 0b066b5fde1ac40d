//! The layout says what the code is: no module imports a module that imports
//! it back (directly or around a longer cycle), `lib.rs`'s map names every
//! module of the library, and the layout table (`docs/layout.md`) names
//! every file under `src/`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The module a file holds, as a path of names: `src/node/mod.rs` is
/// `node`, `src/node/inbound.rs` is `node::inbound`; the binary's modules
/// (under `src/cli/`, and `main.rs`) start with `bin`, since they are another crate.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut names: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
    if names.last().is_some_and(|n| n == "mod" || n == "lib") {
        names.pop();
    }
    if names.first().is_some_and(|n| n == "cli" || n == "main") {
        names.retain(|n| n != "main");
        names.insert(0, "bin".into());
    }
    names
}

/// The paths a file's `use` items and inline `crate::`/`super::`/`hotline::`
/// paths name, with braces expanded one level deep.
fn paths_named(text: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    for item in code.split(';') {
        let item = item.trim();
        let Some(rest) = item
            .strip_prefix("use ")
            .or_else(|| item.strip_prefix("pub use "))
            .or_else(|| item.strip_prefix("pub(crate) use "))
        else {
            continue;
        };
        let rest: String = rest.split_whitespace().collect();
        match rest.split_once("::{") {
            Some((base, group)) => {
                for part in group.trim_end_matches('}').split(',') {
                    let part = part.split("::{").next().unwrap_or("");
                    paths.push(format!("{base}::{part}"));
                }
            }
            None => paths.push(rest),
        }
    }
    for prefix in ["crate::", "super::", "hotline::"] {
        for (i, _) in code.match_indices(prefix) {
            let tail: String = code[i..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            paths.push(tail);
        }
    }
    paths
}

/// The module graph of the library and of the binary: who imports whom.
fn import_graph(src: &Path) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let files = rust_files(src);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(src, f)).collect();
    let mut graph = BTreeMap::new();
    for file in &files {
        let me = module_of(src, file);
        let is_mod_file = file
            .file_name()
            .is_some_and(|n| n == "mod.rs" || n == "lib.rs" || n == "main.rs");
        // The module `super::` and relative paths start from.
        let here = if is_mod_file {
            me.clone()
        } else {
            me[..me.len().saturating_sub(1)].to_vec()
        };
        let crate_root: Vec<String> = if me.first().is_some_and(|n| n == "bin") {
            vec!["bin".into()]
        } else {
            vec![]
        };
        let text = std::fs::read_to_string(file).unwrap();
        let mut named = paths_named(&text);
        // A parent also uses a child through inline paths such as `courier::run(...)`.
        for child in modules.iter().filter(|m| m.len() == me.len() + 1 && m.starts_with(&me)) {
            let name = &child[child.len() - 1];
            if text.contains(&format!(" {name}::")) || text.contains(&format!("({name}::")) {
                named.push(name.clone());
            }
        }
        let mut edges = BTreeSet::new();
        for path in named {
            let segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
            let (mut base, rest) = match segs.first() {
                Some(&"crate") => (crate_root.clone(), &segs[1..]),
                Some(&"hotline") => (vec![], &segs[1..]),
                Some(&"super") => {
                    let mut up = here.clone();
                    let mut rest = &segs[1..];
                    while rest.first() == Some(&"super") {
                        up.pop();
                        rest = &rest[1..];
                    }
                    if !is_mod_file || segs.len() > 1 {
                        // `super` of a mod.rs is its parent; of a.rs, the folder's module.
                        if is_mod_file {
                            up.pop();
                        }
                    }
                    (up, rest)
                }
                Some(first) if modules.contains(&[here.clone(), vec![first.to_string()]].concat()) => {
                    (here.clone(), &segs[..])
                }
                _ => continue,
            };
            let mut target = base.clone();
            for seg in rest {
                base.push(seg.to_string());
                if modules.contains(&base) {
                    target = base.clone();
                } else {
                    break;
                }
            }
            if target != me && modules.contains(&target) {
                edges.insert(target);
            }
        }
        graph.insert(me, edges);
    }
    graph
}

/// A cycle through `start`, if one exists.
fn cycle_from(
    graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
    start: &Vec<String>,
    at: &Vec<String>,
    trail: &mut Vec<Vec<String>>,
    seen: &mut BTreeSet<Vec<String>>,
) -> Option<Vec<Vec<String>>> {
    for next in graph.get(at).into_iter().flatten() {
        if next == start {
            let mut cycle = trail.clone();
            cycle.push(next.clone());
            return Some(cycle);
        }
        if seen.insert(next.clone()) {
            trail.push(next.clone());
            if let Some(c) = cycle_from(graph, start, next, trail, seen) {
                return Some(c);
            }
            trail.pop();
        }
    }
    None
}

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    let graph = import_graph(Path::new("src"));
    assert!(graph.len() > 30, "the graph lists every module: {:?}", graph.keys());
    if let Some(inbound) = graph.get(&vec!["node".to_string(), "inbound".to_string()]) {
        assert!(
            inbound.contains(&vec!["node".to_string()]),
            "the graph sees super:: imports"
        );
    }
    let mut cycles = Vec::new();
    for module in graph.keys() {
        let mut trail = vec![module.clone()];
        if let Some(cycle) = cycle_from(&graph, module, module, &mut trail, &mut BTreeSet::new()) {
            cycles.push(cycle.iter().map(|m| m.join("::")).collect::<Vec<_>>().join(" -> "));
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_library_map_names_every_module() {
    let lib = std::fs::read_to_string("src/lib.rs").unwrap();
    for line in lib.lines() {
        if let Some(name) = line.strip_prefix("pub mod ").and_then(|l| l.strip_suffix(';')) {
            assert!(
                lib.contains(&format!("[`{name}`]")),
                "lib.rs's map does not name module {name}"
            );
        }
    }
}

#[test]
fn the_layout_table_names_every_source_file() {
    let table = std::fs::read_to_string("docs/layout.md").unwrap();
    let mut unnamed = Vec::new();
    for file in rust_files(Path::new("src")) {
        let rel = file.to_string_lossy().into_owned();
        let (dir, name) = rel.rsplit_once('/').unwrap();
        let named = table.contains(&format!("`{rel}`"))
            || (table.contains(&format!("`{dir}/`")) && table.contains(&format!("`{name}`")));
        if !named {
            unnamed.push(rel);
        }
    }
    assert!(unnamed.is_empty(), "docs/layout.md does not name: {unnamed:?}");
}
