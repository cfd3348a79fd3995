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

/// src/ and every .rs file below it.
fn src_files() -> (std::path::PathBuf, Vec<std::path::PathBuf>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    (src, files)
}

#[test]
fn no_module_uses_one_of_its_own_or_a_higher_layer() {
    let (src, files) = src_files();
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

/// The last path segment of each `hint_of::<path::Type>` in the command layer's `HINTS`.
fn listed_hints(commands_mod: &str) -> BTreeSet<String> {
    commands_mod
        .match_indices("hint_of::<")
        .filter_map(|(i, m)| {
            let path = commands_mod[i + m.len()..].split('>').next()?;
            Some(path.rsplit("::").next()?.to_string())
        })
        .filter(|n| !n.is_empty())
        .collect()
}

/// `Type` of every `impl ...Hint for Type` in `text`.
fn hint_impls(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("impl "))
        .filter_map(|l| l.split_once("Hint for "))
        .filter(|(before, _)| before.is_empty() || before.ends_with("::"))
        .filter_map(|(_, after)| after.split([' ', '{', '<']).next().map(str::to_string))
        .collect()
}

/// Rust has no stable way to ask a `dyn Error` for another trait, so the renderer reaches each
/// error's `Hint` through the command layer's list of types (`commands::HINTS`). A type that
/// implements `Hint` and is neither listed nor wrapped by `#[from]` in another error type (whose
/// own `hint` must pass it on, as `CompatError` does for `QuestionError`) would lose its hint
/// without a word: this catches it.
#[test]
fn every_error_with_a_hint_reaches_the_renderer() {
    let (src, files) = src_files();
    let texts: Vec<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    let listed = listed_hints(&std::fs::read_to_string(src.join("commands/mod.rs")).unwrap());
    assert!(
        listed.len() > 5,
        "HINTS not found in commands/mod.rs: {listed:?}"
    );
    let wrapped = |name: &str| {
        texts.iter().any(|t| {
            t.lines().any(|l| {
                l.contains("#[from]")
                    && (l.contains(&format!("::{name})")) || l.contains(&format!(" {name})")))
            })
        })
    };
    let lost: Vec<String> = texts
        .iter()
        .flat_map(|t| hint_impls(t))
        .filter(|name| !listed.contains(name) && !wrapped(name))
        .collect();
    assert!(
        lost.is_empty(),
        "errors whose hint never reaches the user (add them to HINTS in src/commands/mod.rs): {lost:?}"
    );
}

#[test]
fn the_hint_check_reads_impls_and_the_list() {
    assert_eq!(
        hint_impls(
            "impl crate::core::error::Hint for PveError {\nimpl Hint for Hinted {\nimpl Display for X {"
        ),
        ["PveError", "Hinted"]
    );
    let listed =
        listed_hints("const HINTS: &[HintOf] = &[\n    hint_of::<crate::pve::PveError>,\n];");
    assert_eq!(listed, BTreeSet::from(["PveError".to_string()]));
}
