//! docs/architecture.md follows one query file by file and names the
//! functions it passes: every file it names must exist, and every function
//! it lists after a file (`path`: `function`, ...) must be defined there.

use std::path::Path;

/// The prefixes of repository paths the document names.
const ROOTS: [&str; 6] = ["crates/", "bins/", "docs/", "fuzz/", "benches/", "examples/"];

#[test]
fn every_file_and_function_the_architecture_document_names_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = std::fs::read_to_string(root.join("docs/architecture.md")).unwrap();
    // Split on backticks: odd pieces are quoted, even ones the text between.
    let pieces: Vec<&str> = text.split('`').collect();
    let (mut files, mut functions) = (0, 0);
    let mut missing = Vec::new();
    let mut index = 1;
    while index < pieces.len() {
        let quoted = pieces[index];
        if !ROOTS.iter().any(|prefix| quoted.starts_with(prefix)) {
            index += 2;
            continue;
        }
        files += 1;
        let path = root.join(quoted);
        let Ok(source) = std::fs::read_to_string(&path).or_else(|_| path.is_dir().then(String::new).ok_or(())) else {
            missing.push(format!("file {quoted}"));
            index += 2;
            continue;
        };
        // `path`: `a`, `B::b`, ... — each must be a function in the file.
        let mut separator = ":";
        while index + 2 < pieces.len() && pieces[index + 1].trim() == separator {
            let function = pieces[index + 2].rsplit("::").next().unwrap_or_default();
            functions += 1;
            if !source.contains(&format!("fn {function}(")) && !source.contains(&format!("fn {function}<")) {
                missing.push(format!("function {function} in {quoted}"));
            }
            separator = ",";
            index += 2;
        }
        index += 2;
    }
    assert!(missing.is_empty(), "docs/architecture.md names what does not exist: {missing:#?}");
    // The document really does name files and functions (the test cannot pass on an empty page).
    assert!(files >= 30 && functions >= 40, "{files} files and {functions} functions named");
}
