//! `pvegpu plan`: every selected node through the pipeline, concurrently; nothing changes.

use super::{join_all, one_node, print_stdout, print_versioned, selected};
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
    nodes: crate::cli::Nodes,
    facts: Vec<PathBuf>,
    paste: Option<PathBuf>,
    phase: Option<PhaseArg>,
    detailed: bool,
) -> Result<ExitCode> {
    let (limit, parallelism) = (nodes.limit.pattern, nodes.parallelism);
    let through = phase.map_or(Through::Guest, Through::from);
    let inv = Inventory::load(&g.inventory)?;
    let targets = match paste {
        Some(path) => vec![pasted(&inv, limit, &path)?],
        None => targets(&inv, limit, &facts)?,
    };
    let count = targets.len();
    // one node's phases do not wait for another's
    let planned = join_all(
        targets.into_iter().map(|(name, saved)| {
            let inv = &inv;
            async move {
                let n = match inv.node(&name) {
                    Ok(n) => n,
                    Err(e) => return Err((name, e.into())),
                };
                let (source, unreachable) = match saved {
                    Some(got) => (HostSource::Saved(Box::new(got)), Unreachable::LeaveOut),
                    None => (HostSource::Live, Unreachable::Fail),
                };
                Pipeline::new(inv, &name, n)
                    .plan(source, unreachable, through)
                    .await
                    .map_err(|e| (name, e))
            }
        }),
        parallelism,
    )
    .await;
    print_plans(g, &planned, count > 1)?;
    let mut planned = planned;
    // one node: its error is the command's
    if count == 1
        && planned.first().is_some_and(Result::is_err)
        && let Some(Err((_, e))) = planned.pop()
    {
        return Err(e);
    }
    let plans: Vec<&NodePlan> = planned.iter().filter_map(|r| r.as_ref().ok()).collect();
    let failed: Vec<&str> = planned
        .iter()
        .filter_map(|r| r.as_ref().err())
        .map(|(n, _)| n.as_str())
        .collect();
    let refused: Vec<&str> = plans
        .iter()
        .filter(|p| p.refused())
        .map(|p| p.name.as_str())
        .collect();
    if !failed.is_empty() {
        return Err(hinted(
            format!("{} could not be planned (above)", failed.join(", ")),
            "the other nodes' plans are complete; fix what each error names and plan again (`--limit` can name just those nodes)",
        ));
    }
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

type Planned = std::result::Result<NodePlan, (String, anyhow::Error)>;

/// The plans on stdout (JSON: every node, a failed one with its error); with several nodes,
/// each failed node's error on stderr (one node's error is the command's).
fn print_plans(g: &GlobalArgs, planned: &[Planned], say_errors: bool) -> Result<()> {
    for (name, e) in planned
        .iter()
        .filter_map(|r| r.as_ref().err())
        .filter(|_| say_errors)
    {
        super::say(&format!(
            "{name} could not be planned:\n{}",
            super::render_error(e)
        ));
    }
    if g.json {
        let nodes: Vec<serde_json::Value> = planned
            .iter()
            .map(|r| match r {
                Ok(p) => serde_json::to_value(p),
                Err((name, e)) => Ok(serde_json::json!({
                    "node": name,
                    "state": "failed",
                    "error": super::error_json(e),
                })),
            })
            .collect::<std::result::Result<_, _>>()?;
        return print_versioned(serde_json::json!({ "nodes": nodes }));
    }
    let text: Vec<String> = planned
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(NodePlan::render_text)
        .collect();
    print_stdout(&text.join("\n"))
}

/// A phase that could not be reached makes the plan incomplete: never "nothing to do".
/// Each one's cause is printed; the run fails unless `--phase` asked for fewer phases.
fn left_out(plans: &[&NodePlan]) -> Result<()> {
    let left: Vec<(&NodePlan, &LeftOut)> = plans
        .iter()
        .flat_map(|p| p.left_out.iter().map(move |l| (*p, l)))
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
    limit: Option<String>,
    path: &Path,
) -> Result<(String, Option<Gathered>)> {
    let name = match limit {
        Some(l) => one_node(inv, &l)?,
        None if inv.nodes.len() == 1 => inv.nodes.keys().next().cloned().unwrap_or_default(),
        None => {
            return Err(hinted(
                "a transcript describes one node; the inventory has several",
                "pass --limit NAME",
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
    limit: Option<String>,
    facts: &[PathBuf],
) -> Result<Vec<(String, Option<Gathered>)>> {
    if facts.is_empty() {
        return Ok(selected(inv, &limit)?
            .into_iter()
            .map(|(name, _)| (name.clone(), None))
            .collect());
    }
    let hint = match (facts.len(), &limit) {
        (1, Some(l)) => Some(one_node(inv, l)?),
        _ => None,
    };
    let chosen = match &limit {
        Some(l) => Some(crate::inventory::select::select(inv, Some(l))?),
        None => None,
    };
    let mut saved = Vec::new();
    for path in facts {
        let (name, got) = gather::from_file(hint.as_deref(), path)?;
        if chosen.as_ref().is_none_or(|c| c.contains(&name.as_str())) {
            saved.push((name, Some(got)));
        }
    }
    if let (true, Some(l)) = (saved.is_empty(), &limit) {
        return Err(hinted(
            format!("none of the --facts files describes a node `{l}` selects"),
            "pass the file saved by `pvegpu discover --limit NAME --save FILE` for that node",
        ));
    }
    Ok(saved)
}
