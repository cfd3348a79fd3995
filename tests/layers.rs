//! The module layers of src/ (ARCHITECTURE.md, "Layers"): a module may use modules of a lower
//! layer only, so nothing imports upward and there are no cycles. Read from the source text:
//! every `crate::<module>` outside test code.

use std::collections::BTreeSet;
use std::path::Path;

/// Lowest first. Modules of one layer do not use each other.
const LAYERS: &[&[&str]] = &[
    &["pci", "templates"],
    &["core"],
    &["transport", "pve", "facts", "compat", "lint"],
    &["inventory"],
    &["host"],
    &["vm"],
    &["guest"],
    &["pipeline"],
    &["verify"],
    &["cli"],
    &["commands"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// The top-level module a file of src/ belongs to (`src/host/exec.rs` -> `host`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `crate::name` paths in the code before its test module.
fn uses(text: &str) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or("");
    code.match_indices("crate::")
        .map(|(i, m)| {
            code[i + m.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|n| !n.is_empty())
        .collect()
}

#[test]
fn no_module_uses_one_of_its_own_or_a_higher_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        if module == "main" || module == "lib" {
            continue;
        }
        let own = layer_of(&module)
            .unwrap_or_else(|| panic!("src/{module} is in no layer: add it to LAYERS"));
        for used in uses(&std::fs::read_to_string(file).unwrap()) {
            if used == module {
                continue;
            }
            let theirs = layer_of(&used).unwrap_or_else(|| {
                panic!(
                    "{} uses crate::{used}, which is in no layer",
                    file.display()
                )
            });
            if theirs >= own {
                wrong.push(format!(
                    "{} ({module}, layer {own}) uses crate::{used} (layer {theirs})",
                    file.strip_prefix(&src).unwrap().display()
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "upward or sideways uses:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_check_sees_an_upward_use() {
    // the reader itself, on a line as a regression would write it
    let found = uses("use crate::commands::render_error;\n#[cfg(test)]\nuse crate::pipeline;");
    assert_eq!(found, BTreeSet::from(["commands".to_string()]));
}
