//! The dependency rules of ARCHITECTURE.md, checked against the source: a module that
//! imports one its row forbids fails here, and so does any cycle between modules, or
//! between sibling files of one folder.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Each module's row of the code map: its name, and what it must never import (`None`:
/// anything of ours).
fn rules() -> BTreeMap<String, Option<BTreeSet<String>>> {
    let map =
        std::fs::read_to_string(Path::new(ROOT).join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    map.lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            // | `module` | owns | never imports |
            let [_, module, _, never, _] = cells[..] else {
                return None;
            };
            let module = module.strip_prefix('`')?.strip_suffix('`')?;
            let never = match never {
                "anything of ours" => None,
                _ => Some(backticked(never)),
            };
            Some((module.to_owned(), never))
        })
        .collect()
}

fn backticked(text: &str) -> BTreeSet<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The crate's top-level modules, each with its source files.
fn modules() -> BTreeMap<String, Vec<PathBuf>> {
    let src = Path::new(ROOT).join("src");
    let mut modules = BTreeMap::new();
    for entry in std::fs::read_dir(&src).expect("src") {
        let path = entry.expect("entry").path();
        let name = path
            .file_stem()
            .and_then(|n| n.to_str())
            .expect("a name")
            .to_owned();
        if path.is_dir() {
            modules.insert(name, rust_files(&path));
        } else if !["lib", "main"].contains(&name.as_str()) {
            modules.insert(name, vec![path]);
        }
    }
    modules
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("a source folder") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// The code of `file`, without comments.
fn code(file: &Path) -> String {
    std::fs::read_to_string(file)
        .expect("source")
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The names after each `prefix` in `code`: `crate::wechat::…` gives `wechat`.
fn paths_after(code: &str, prefix: &str) -> BTreeSet<String> {
    code.match_indices(prefix)
        .filter(|(at, _)| !code[..*at].ends_with(|c: char| c.is_alphanumeric() || c == '_'))
        .map(|(at, _)| {
            code[at + prefix.len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|name| !name.is_empty())
        .collect()
}

/// Which of our modules each module uses.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    modules()
        .into_iter()
        .map(|(module, files)| {
            let used = files
                .iter()
                .flat_map(|file| paths_after(&code(file), "crate::"))
                .filter(|used| *used != module)
                .collect();
            (module, used)
        })
        .collect()
}

fn assert_acyclic(what: &str, graph: &BTreeMap<String, BTreeSet<String>>) {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if let Some(at) = path.iter().position(|n| n == node) {
            panic!(
                "a cycle among {node}'s neighbours: {}",
                path[at..].join(" → ")
            );
        }
        if done.contains(node) {
            return;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            visit(next, graph, path, done);
        }
        path.pop();
        done.insert(node.to_owned());
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        let mut path = Vec::new();
        visit(node, graph, &mut path, &mut done);
    }
    assert!(!graph.is_empty(), "no {what} found");
}

#[test]
fn every_module_has_a_row_in_the_code_map() {
    let rules = rules();
    let modules = modules();
    let missing: Vec<_> = modules.keys().filter(|m| !rules.contains_key(*m)).collect();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md has no row for {missing:?}"
    );
    let phantom: Vec<_> = rules.keys().filter(|m| !modules.contains_key(*m)).collect();
    assert!(
        phantom.is_empty(),
        "ARCHITECTURE.md names no module {phantom:?}"
    );
}

#[test]
fn no_module_imports_what_its_row_forbids() {
    let rules = rules();
    let mut broken = Vec::new();
    for (module, used) in imports() {
        let Some(never) = rules.get(&module) else {
            continue;
        };
        for import in used {
            let forbidden = match never {
                None => true,
                Some(never) => never.contains(&import),
            };
            if forbidden {
                broken.push(format!("{module} imports {import}"));
            }
        }
    }
    assert!(broken.is_empty(), "against ARCHITECTURE.md: {broken:?}");
}

#[test]
fn modules_do_not_import_each_other_in_a_circle() {
    assert_acyclic("modules", &imports());
}

#[test]
fn sibling_files_do_not_import_each_other_in_a_circle() {
    let src = Path::new(ROOT).join("src");
    let mut folders = vec![src];
    while let Some(folder) = folders.pop() {
        let mut siblings = BTreeMap::new();
        for entry in std::fs::read_dir(&folder).expect("a source folder") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                folders.push(path);
                continue;
            }
            let name = path.file_stem().and_then(|n| n.to_str()).expect("a name");
            if path.extension().is_some_and(|e| e == "rs")
                && !["mod", "lib", "main"].contains(&name)
            {
                siblings.insert(name.to_owned(), path);
            }
        }
        // A file names a sibling as `super::sibling`; at the top, as `crate::sibling`.
        let prefix = if folder.ends_with("src") {
            "crate::"
        } else {
            "super::"
        };
        let graph: BTreeMap<String, BTreeSet<String>> = siblings
            .iter()
            .map(|(name, path)| {
                let used = paths_after(&code(path), prefix)
                    .into_iter()
                    .filter(|used| used != name && siblings.contains_key(used))
                    .collect();
                (name.clone(), used)
            })
            .collect();
        if !graph.is_empty() {
            assert_acyclic("files", &graph);
        }
    }
}

#[test]
fn the_rules_see_imports_that_are_there() {
    // A guard on the parser itself: these imports exist, so a reader that misses them
    // would pass every rule above without checking anything.
    let imports = imports();
    assert!(imports["http"].contains("session"), "{imports:?}");
    assert!(imports["session"].contains("domain"), "{imports:?}");
    assert!(rules()["domain"].is_none());
}
