//! `pvegpu plan`: every selected node through the pipeline, concurrently; nothing changes.

use super::{join_all, print_json, print_stdout, selected};
use crate::cli::GlobalArgs;
use crate::cli::PhaseArg;
use crate::core::error::hinted;
use crate::host::gather::{self, Gathered};
use crate::inventory::Inventory;
use crate::pipeline::{HostSource, LeftOut, NodePlan, Pipeline, Through, Unreachable};
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub async fn run(
    g: &GlobalArgs,
    node: Option<String>,
    facts: Vec<PathBuf>,
    paste: Option<PathBuf>,
    phase: Option<PhaseArg>,
    detailed: bool,
) -> Result<ExitCode> {
    let through = phase.map_or(Through::Guest, Through::from);
    let inv = Inventory::load(&g.inventory)?;
    let targets = match paste {
        Some(path) => vec![pasted(&inv, node, &path)?],
        None => targets(&inv, node, &facts)?,
    };
    // all nodes at once: one node's phases do not wait for another's
    let planned = join_all(targets.into_iter().map(|(name, saved)| {
        let inv = &inv;
        async move {
            let n = inv.node(&name)?;
            let (source, unreachable) = match saved {
                Some(got) => (HostSource::Saved(Box::new(got)), Unreachable::LeaveOut),
                None => (HostSource::Live, Unreachable::Fail),
            };
            Pipeline::new(inv, &name, n)
                .plan(source, unreachable, through)
                .await
        }
    }))
    .await;
    let plans: Vec<NodePlan> = planned.into_iter().collect::<Result<_>>()?;
    if g.json {
        print_json(&plans)?;
    } else {
        let text: Vec<String> = plans.iter().map(NodePlan::render_text).collect();
        print_stdout(&text.join("\n"))?;
    }
    let refused: Vec<&str> = plans
        .iter()
        .filter(|p| p.refused())
        .map(|p| p.name.as_str())
        .collect();
    if !refused.is_empty() {
        return Err(hinted(
            format!(
                "pvegpu refuses to converge {}: see `Refused` above",
                refused.join(", ")
            ),
            "nothing was changed; fix what each refusal names and plan again",
        ));
    }
    left_out(&plans)?;
    let changes = plans.iter().any(|p| !p.nothing_to_do());
    Ok(if detailed && changes {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// A phase that could not be reached makes the plan incomplete: never "nothing to do".
/// Each one's cause is printed; the run fails unless `--phase` asked for fewer phases.
fn left_out(plans: &[NodePlan]) -> Result<()> {
    let left: Vec<(&NodePlan, &LeftOut)> = plans
        .iter()
        .flat_map(|p| p.left_out.iter().map(move |l| (p, l)))
        .collect();
    for (plan, l) in &left {
        super::say(&format!(
            "the {} phase of {} could not be planned offline:\n{}",
            l.phase,
            plan.name,
            super::render_error(&l.error)
        ));
    }
    let Some((_, first)) = left.first() else {
        return Ok(());
    };
    let phases: Vec<String> = left
        .iter()
        .map(|(p, l)| format!("the {} phase of {}", l.phase, p.name))
        .collect();
    let through = if first.phase == "VM" { "host" } else { "vm" };
    Err(hinted(
        format!(
            "the plan is incomplete: {} could not be planned (above)",
            phases.join(", ")
        ),
        format!(
            "to plan only what these facts can tell, ask for it: `--phase {through}`; or fix what is named above"
        ),
    ))
}

/// Each node to plan, with its saved facts when they come from files (each file names its
/// node; `--node` names the node of a single file, or picks one of several).
/// A transcript stands for one node of the inventory: the one `--node` names, or its only one.
fn pasted(
    inv: &Inventory,
    node: Option<String>,
    path: &Path,
) -> Result<(String, Option<Gathered>)> {
    let name = match node {
        Some(n) => n,
        None if inv.nodes.len() == 1 => inv.nodes.keys().next().cloned().unwrap_or_default(),
        None => {
            return Err(hinted(
                "a transcript describes one node; the inventory has several",
                "pass --node NAME",
            ));
        }
    };
    let paste = gather::read_paste(path)?;
    super::say_unread(&paste);
    let got = gather::from_text(&name, &path.display().to_string(), paste.facts)?;
    Ok((name, Some(got)))
}

fn targets(
    inv: &Inventory,
    node: Option<String>,
    facts: &[PathBuf],
) -> Result<Vec<(String, Option<Gathered>)>> {
    if facts.is_empty() {
        return Ok(selected(inv, &node)?
            .into_iter()
            .map(|(name, _)| (name.clone(), None))
            .collect());
    }
    let hint = if facts.len() == 1 {
        node.as_deref()
    } else {
        None
    };
    let mut saved = Vec::new();
    for path in facts {
        let (name, got) = gather::from_file(hint, path)?;
        if node.as_ref().is_none_or(|n| *n == name) {
            saved.push((name, Some(got)));
        }
    }
    if let (true, Some(n)) = (saved.is_empty(), &node) {
        return Err(hinted(
            format!("none of the --facts files describes node {n}"),
            "pass the file saved by `pvegpu discover --node NAME --save FILE` for that node",
        ));
    }
    Ok(saved)
}
