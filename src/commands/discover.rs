//! `pvegpu discover`: what each node has, and which devices could be passed through.

use super::{join_all, print_json, print_stdout, selected};
use crate::cli::GlobalArgs;
use crate::host::discover;
use crate::host::gather;
use crate::inventory::Inventory;
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;

pub async fn run(g: &GlobalArgs, node: Option<String>, save: Option<PathBuf>) -> Result<ExitCode> {
    let inv = Inventory::load(&g.inventory)?;
    let nodes = selected(&inv, &node)?;
    let gathered = join_all(nodes.iter().map(|(name, n)| gather::live(name, n))).await;
    let mut reports = Vec::new();
    for ((name, n), res) in nodes.iter().zip(gathered) {
        let got = res?;
        if let Some(path) = &save {
            std::fs::write(path, gather::saved_text(name, &got.raw_text))
                .with_context(|| format!("cannot save the facts to {}", path.display()))?;
            eprintln!("Saved the facts of {name} to {}", path.display());
        }
        reports.push(discover::report(name, n, &got.facts));
    }
    if g.json {
        print_json(&discover::Discovery {
            format_version: discover::FORMAT_VERSION,
            nodes: reports,
        })?;
    } else {
        let text: Vec<String> = reports.iter().map(|r| r.render_text()).collect();
        print_stdout(&text.join("\n"))?;
    }
    Ok(ExitCode::SUCCESS)
}
