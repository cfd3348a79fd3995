//! `pvegpu rollback`: remove what pvegpu wrote on a node, through the same executor as apply.

use super::apply::print_report;
use super::{Stderr, confirm, print_stdout};
use crate::cli::GlobalArgs;
use crate::core::check::{Check, Layer};
use crate::host::exec::{Executor, Options};
use crate::host::gather;
use crate::inventory::Inventory;
use crate::transport::ssh::SshConnector;
use anyhow::Result;
use std::process::ExitCode;

pub async fn run(
    g: &GlobalArgs,
    name: String,
    yes: bool,
    reboot: bool,
    options: Options,
) -> Result<ExitCode> {
    let inv = Inventory::load(&g.inventory)?;
    let n = inv.node(&name)?;
    let connector = SshConnector::node(&n.ssh, n.ssh_config.clone());
    let facts = gather::live(&name, n).await?.facts;
    let plan = crate::host::rollback::plan(&name, &facts, reboot);
    if !g.json {
        print_stdout(&plan.render_text())?;
    }
    if plan.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    confirm(&name, "roll back", yes)?;
    let progress = Stderr::new(g.quiet);
    let mut exec = Executor::new(&name, n, options, &progress, connector);
    let after = exec.execute(&plan, &facts).await;
    let mut report = exec.report;
    let after = after?;
    let left = crate::host::rollback::plan(&name, &after, false);
    report.postconditions.push(Check::judged(
        Layer::Host,
        "nothing of pvegpu's left",
        left.is_empty(),
        if left.is_empty() {
            "pvegpu's files, block and words are gone".into()
        } else {
            format!("{} change(s) remain", left.changes.len())
        },
        "the rollback did not remove everything pvegpu wrote",
        format!("`pvegpu rollback --node {name}` again shows what is left"),
    ));
    report.ok = left.is_empty();
    if g.json {
        super::print_versioned(serde_json::json!({ "nodes": [&report] }))?;
    } else {
        print_report(&[&report])?;
    }
    Ok(if left.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
