//! The README and the guides under `docs/` say what the server does today: every sample
//! `{"error": …, "message": …}` has its message written in the source, word for word;
//! every kind the errors table lists is one the source sends; and every relative link
//! leads to a file that exists and, with a `#fragment`, to one of its headings.

use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

fn source_text(dir: &Path, into: &mut String) {
    for entry in std::fs::read_dir(dir).expect("a source directory") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            source_text(&path, into);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            into.push_str(&read(&path));
        }
    }
}

fn source() -> String {
    let mut source = String::new();
    source_text(&root().join("src"), &mut source);
    source
}

fn guides() -> Vec<PathBuf> {
    let mut guides: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/")
        .map(|entry| entry.expect("an entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    guides.sort();
    guides
}

/// The README, the guides and the other documents that link to them.
fn documents() -> Vec<PathBuf> {
    let mut documents: Vec<PathBuf> = ["README.md", "ARCHITECTURE.md", "BENCHMARKS.md"]
        .iter()
        .map(|name| root().join(name))
        .collect();
    documents.push(root().join("clients/miniprogram/README.md"));
    documents.extend(guides());
    documents
}

/// The lines of `text` outside fenced code blocks.
fn prose(text: &str) -> Vec<&str> {
    let mut in_code = false;
    text.lines()
        .filter(|line| {
            if line.trim_start().starts_with("```") {
                in_code = !in_code;
                return false;
            }
            !in_code
        })
        .collect()
}

/// GitHub's anchor for a heading: lower case, punctuation but `-` and `_` dropped, spaces
/// made hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(text: &str) -> Vec<String> {
    prose(text)
        .into_iter()
        .filter_map(|line| line.strip_prefix('#'))
        .map(|heading| anchor(heading.trim_start_matches('#')))
        .collect()
}

/// Every `[label](target)` of `line`.
fn link_targets(line: &str) -> Vec<&str> {
    line.match_indices("](")
        .filter_map(|(at, _)| {
            let rest = &line[at + 2..];
            rest.find(')').map(|end| &rest[..end])
        })
        .collect()
}

#[test]
fn every_relative_link_of_the_readme_and_the_guides_resolves() {
    let mut checked = 0;
    for document in documents() {
        let text = read(&document);
        let dir = document.parent().expect("a folder");
        for line in prose(&text) {
            for target in link_targets(line) {
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                let (file, fragment) = target.split_once('#').unwrap_or((target, ""));
                let linked = if file.is_empty() {
                    document.clone()
                } else {
                    dir.join(file)
                };
                assert!(
                    linked.exists(),
                    "{} links to {target}, which does not exist",
                    document.display()
                );
                if !fragment.is_empty() {
                    assert!(
                        anchors(&read(&linked)).iter().any(|a| a == fragment),
                        "{} links to {target}: no such heading",
                        document.display()
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 20,
        "the README links its guides: {checked} links"
    );
}

#[test]
fn the_readme_is_the_front_door_and_links_every_guide() {
    let readme = read(&root().join("README.md"));
    assert!(readme.lines().count() <= 300, "the README stays short");
    let guides = guides();
    assert!(guides.len() >= 5, "the manual is in guides under docs/");
    for guide in guides {
        let name = guide.file_name().and_then(|n| n.to_str()).expect("a name");
        assert!(
            readme.contains(&format!("(docs/{name}")),
            "the README does not link docs/{name}"
        );
    }
}

#[test]
fn every_error_answer_the_documents_show_is_one_the_server_sends() {
    let source = source();
    let mut samples = 0;
    for document in documents() {
        for line in read(&document).lines() {
            let line = line.trim_start().trim_start_matches("# ");
            if !line.starts_with(r#"{"error""#) {
                continue;
            }
            let sample: serde_json::Value =
                serde_json::from_str(line).expect("a sample answer is JSON");
            let kind = sample["error"].as_str().expect("a kind");
            if let Some(message) = sample["message"].as_str() {
                assert!(
                    source.contains(message),
                    "{} shows {kind} saying {message:?}, which the server does not send",
                    document.display()
                );
            }
            samples += 1;
        }
    }
    assert!(samples >= 2, "the walk-through shows error answers");
}

#[test]
fn every_kind_the_errors_table_lists_is_one_the_server_sends() {
    let source = source();
    let kinds = errors_table_kinds();
    assert!(
        kinds.len() >= 30,
        "the table lists every kind: {}",
        kinds.len()
    );
    for kind in kinds {
        assert!(
            source.contains(&format!("\"{kind}\"")),
            "the errors table lists {kind}, which the server does not send"
        );
    }
}

/// Every kind the errors tables of `docs/http-api.md` list.
fn errors_table_kinds() -> Vec<String> {
    let api = read(&root().join("docs/http-api.md"));
    let table = api
        .split("## Errors")
        .nth(1)
        .expect("docs/http-api.md has an Errors section");
    table
        .lines()
        .filter(|line| line.starts_with("| ") && !line.starts_with("| status"))
        .filter_map(|row| row.split('|').nth(2))
        .flat_map(|column| {
            column
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn the_client_librarys_error_kinds_are_every_kind_the_errors_table_lists() {
    let client = read(&root().join("clients/miniprogram/src/index.ts"));
    let union = client
        .split("export type ServerErrorKind =")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .expect("the ServerErrorKind union");
    for kind in errors_table_kinds() {
        assert!(
            union.contains(&format!("'{kind}'")),
            "the client's ServerErrorKind lacks {kind}"
        );
    }
}
