//! The README's sample answers are what the server says today: every `{"error": …,
//! "message": …}` it shows has its message written in the source, word for word.

use std::path::Path;

fn source_text(dir: &Path, into: &mut String) {
    for entry in std::fs::read_dir(dir).expect("a source directory") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            source_text(&path, into);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            into.push_str(&std::fs::read_to_string(&path).expect("a source file"));
        }
    }
}

#[test]
fn every_error_answer_the_readme_shows_is_one_the_server_sends() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let mut source = String::new();
    source_text(&root.join("src"), &mut source);
    let samples: Vec<serde_json::Value> = readme
        .lines()
        .filter_map(|line| line.strip_prefix("# "))
        .filter(|line| line.starts_with(r#"{"error""#))
        .map(|line| serde_json::from_str(line).expect("a sample answer is JSON"))
        .collect();
    assert!(samples.len() >= 2, "the walk-through shows error answers");
    for sample in samples {
        let message = sample["message"].as_str().expect("a message");
        let kind = sample["error"].as_str().expect("a kind");
        assert!(
            source.contains(message),
            "README shows {kind} saying {message:?}, which the server does not send"
        );
    }
}
