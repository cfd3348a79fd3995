//! `pvegpu discover`: what each node has, and which devices could be passed through. Live
//! over SSH, or offline from a facts file or a pasted transcript (no inventory needed then).

use super::{join_all, one_node, print_stdout, print_versioned, selected};
use crate::cli::GlobalArgs;
use crate::core::error::hinted;
use crate::host::discover::{self, DiscoverReport};
use crate::host::gather::{self, Gathered};
use crate::inventory::{Inventory, Node};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub async fn run(
    g: &GlobalArgs,
    nodes: crate::cli::Nodes,
    save: Option<PathBuf>,
    facts: Option<PathBuf>,
    paste: Option<PathBuf>,
) -> Result<ExitCode> {
    let (node, parallelism) = (nodes.limit.pattern, nodes.parallelism);
    let reports = match (facts, paste) {
        (Some(path), _) => vec![offline(g, node, save.as_deref(), Offline::Facts(path))?],
        (None, Some(path)) => vec![offline(g, node, save.as_deref(), Offline::Paste(path))?],
        (None, None) => live(g, node, parallelism, save.as_deref()).await?,
    };
    if g.json {
        print_versioned(serde_json::json!({ "nodes": reports }))?;
    } else {
        let text: Vec<String> = reports.iter().map(|r| r.render_text()).collect();
        print_stdout(&text.join("\n"))?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn live(
    g: &GlobalArgs,
    node: Option<String>,
    parallelism: u16,
    save: Option<&Path>,
) -> Result<Vec<DiscoverReport>> {
    let inv = Inventory::load(&g.inventory)?;
    if save.is_some() {
        match &node {
            Some(l) => {
                one_node(&inv, l)?;
            }
            None => {
                return Err(hinted(
                    "--save writes one node's facts",
                    "pass --limit NAME",
                ));
            }
        }
    }
    let nodes = selected(&inv, &node)?;
    let gathered = join_all(
        nodes.iter().map(|(name, n)| gather::live(name, n)),
        parallelism,
    )
    .await;
    let mut reports = Vec::new();
    for ((name, n), res) in nodes.iter().zip(gathered) {
        let got = res?;
        if let Some(path) = save {
            write_saved(name, &got, path)?;
        }
        reports.push(discover::report(name, n, &got.facts));
    }
    Ok(reports)
}

/// Where an offline node's facts come from.
enum Offline {
    Facts(PathBuf),
    Paste(PathBuf),
}

/// One node from a file. The inventory, where there is one, supplies its targets and what it
/// accepts; without one the node has neither.
fn offline(
    g: &GlobalArgs,
    node: Option<String>,
    save: Option<&Path>,
    source: Offline,
) -> Result<DiscoverReport> {
    let (name, got, pasted) = match source {
        Offline::Facts(path) => {
            let (name, got) = gather::from_file_partial(node.as_deref(), &path)?;
            (name, got, None)
        }
        Offline::Paste(path) => {
            let read = gather::read_paste(&path)?;
            super::say_unread(&read);
            let name = node.clone().unwrap_or_else(|| "pasted".into());
            let got = gather::partial(&name, &path.display().to_string(), read.facts.clone())?;
            (name, got, Some(read))
        }
    };
    let inv = match g.inventory.exists() {
        true => Some(Inventory::load(&g.inventory)?),
        false => None,
    };
    let offline_node = Node::offline();
    let n = inv
        .as_ref()
        .and_then(|i| i.nodes.get(&name))
        .unwrap_or(&offline_node);
    if let Some(path) = save {
        write_saved(&name, &got, path)?;
    }
    let mut report = discover::report(&name, n, &got.facts);
    report.paste = pasted;
    Ok(report)
}

fn write_saved(name: &str, got: &Gathered, path: &Path) -> Result<()> {
    // 0600: a node's facts say how it boots and what it holds; the user shares them by choice
    crate::core::localfs::write_atomic(
        path,
        gather::saved_text(name, &got.raw_text).as_bytes(),
        0o600,
    )
    .with_context(|| format!("cannot save the facts to {}", path.display()))?;
    super::say(&format!("Saved the facts of {name} to {}", path.display()));
    Ok(())
}
