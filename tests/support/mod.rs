//! Shared test helpers: fixture loading and small edits of facts text.
#![allow(dead_code)]

use pvegpu::facts::{HostFacts, RawFacts};
use pvegpu::inventory::Inventory;
use std::path::{Path, PathBuf};

pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

pub fn read(rel: &str) -> String {
    std::fs::read_to_string(fixture(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

pub fn facts(text: &str) -> HostFacts {
    HostFacts::from_raw(&RawFacts::parse(text).expect("facts parse")).expect("facts complete")
}

pub fn inventory(toml: &str) -> Inventory {
    Inventory::parse(Path::new("inventory.toml"), toml).expect("inventory parses")
}

/// Replace the body of the first section whose marker line starts with `### pvegpu {head}`.
pub fn set_section(text: &str, head: &str, body: &str) -> String {
    let marker = format!("### pvegpu {head}");
    let mut out = String::new();
    let mut skipping = false;
    let mut done = false;
    for line in text.lines() {
        if skipping {
            if line.starts_with("### pvegpu ") {
                skipping = false;
                if line.starts_with("### pvegpu exit") {
                    continue;
                }
            } else {
                continue;
            }
        }
        if !done && line.starts_with(&marker) {
            out.push_str(line);
            out.push('\n');
            out.push_str(body);
            if !body.is_empty() && !body.ends_with('\n') {
                out.push('\n');
            }
            skipping = true;
            done = true;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    assert!(done, "no section {head}");
    out
}

/// Append a section at the end.
pub fn add_section(text: &str, head: &str, body: &str) -> String {
    format!("{text}### pvegpu {head}\n{body}")
}
