//! The subcommands: the only layer that does I/O besides the transports.

use crate::cli::{Cli, Command, GlobalArgs};
use crate::error::hinted;
use crate::gather;
use crate::host::{discover, planner};
use crate::inventory::{Inventory, Node};
use crate::plan::HostPlan;
use anyhow::{Context, Result};
use clap::CommandFactory;
use std::io::Write;
use std::process::ExitCode;

pub async fn run(cli: Cli) -> Result<ExitCode> {
    let g = &cli.global;
    match cli.command {
        Command::Discover { node, save } => discover_cmd(g, node, save).await,
        Command::Plan {
            node,
            facts,
            detailed_exitcode,
        } => plan_cmd(g, node, facts, detailed_exitcode).await,
        Command::Apply { node, .. } => {
            let inv = Inventory::load(&g.inventory)?;
            if let Some(n) = &node {
                inv.node(n)?;
            }
            Err(hinted(
                "`pvegpu apply` cannot change nodes yet: this build only plans",
                "run `pvegpu plan` to see the changes; apply comes with the host-apply milestone (see the open issues)",
            ))
        }
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "pvegpu", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn selected<'a>(inv: &'a Inventory, node: &Option<String>) -> Result<Vec<(&'a String, &'a Node)>> {
    Ok(match node {
        Some(n) => vec![
            (inv.nodes
                .get_key_value(n.as_str())
                .ok_or_else(|| inv.node(n).unwrap_err())?),
        ],
        None => inv.nodes.iter().collect(),
    })
}

fn print_stdout(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

async fn discover_cmd(
    g: &GlobalArgs,
    node: Option<String>,
    save: Option<std::path::PathBuf>,
) -> Result<ExitCode> {
    let inv = Inventory::load(&g.inventory)?;
    let nodes = selected(&inv, &node)?;
    let gathered = futures_join(nodes.iter().map(|(name, n)| gather::live(&inv, name, n))).await;
    let mut reports = Vec::new();
    for ((name, n), res) in nodes.iter().zip(gathered) {
        let got = res?;
        if let Some(path) = &save {
            std::fs::write(path, gather::saved_text(name, &got.raw_text))
                .with_context(|| format!("cannot save the facts to {}", path.display()))?;
            eprintln!("Saved the facts of {name} to {}", path.display());
        }
        reports.push(discover::report(
            name,
            &got.facts,
            n.host.allow_unsafe_interrupts,
        ));
    }
    if g.json {
        print_stdout(&(serde_json::to_string_pretty(&reports)? + "\n"))?;
    } else {
        let text: Vec<String> = reports.iter().map(|r| r.render_text()).collect();
        print_stdout(&text.join("\n"))?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn plan_cmd(
    g: &GlobalArgs,
    node: Option<String>,
    facts: Option<std::path::PathBuf>,
    detailed: bool,
) -> Result<ExitCode> {
    let inv = Inventory::load(&g.inventory)?;
    let plans: Vec<HostPlan> = if let Some(path) = facts {
        let (name, got) = gather::from_file(node.as_deref(), &path)?;
        let n = inv.node(&name)?;
        vec![planner::plan(&name, n, &got.facts)?]
    } else {
        let nodes = selected(&inv, &node)?;
        let gathered =
            futures_join(nodes.iter().map(|(name, n)| gather::live(&inv, name, n))).await;
        let mut plans = Vec::new();
        for ((name, n), res) in nodes.iter().zip(gathered) {
            plans.push(planner::plan(name, n, &res?.facts)?);
        }
        plans
    };
    if g.json {
        print_stdout(&(serde_json::to_string_pretty(&plans)? + "\n"))?;
    } else {
        let text: Vec<String> = plans.iter().map(|p| p.render_text()).collect();
        print_stdout(&text.join("\n"))?;
    }
    let refused: Vec<&str> = plans
        .iter()
        .filter(|p| !p.refusals.is_empty())
        .map(|p| p.node.as_str())
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
    let changes = plans.iter().any(|p| !p.is_empty());
    Ok(if detailed && changes {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// Run one future per node concurrently, keeping their order.
async fn futures_join<F, T>(futs: impl Iterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T>,
{
    let mut pinned: Vec<_> = futs.map(Box::pin).collect();
    let mut results: Vec<Option<T>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in pinned.iter_mut().enumerate() {
            if results[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => results[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    results
        .into_iter()
        .map(|r| r.expect("every future completed"))
        .collect()
}
