//! The subcommands: the only layer that does I/O besides the transports.

use crate::apply::{self, Executor};
use crate::cli::{Cli, Command, GlobalArgs};
use crate::core::check::{Check, Layer};
use crate::core::progress::Progress;
use crate::error::hinted;
use crate::facts::HostFacts;
use crate::gather;
use crate::guest::phase::GuestPhasePlan;
use crate::host::{discover, planner};
use crate::inventory::{Inventory, Node};
use crate::plan::HostPlan;
use crate::transport::ssh::SshConnector;
use crate::vm::VmPlan;
use crate::vm::phase::{Phase, host_readiness};
use anyhow::{Context, Result};
use clap::CommandFactory;
use std::io::IsTerminal;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

pub async fn run(cli: Cli) -> Result<ExitCode> {
    let g = &cli.global;
    match cli.command {
        Command::Discover { node, save } => discover_cmd(g, node, save).await,
        Command::Plan {
            node,
            facts,
            detailed_exitcode,
        } => plan_cmd(g, node, facts, detailed_exitcode).await,
        Command::Apply {
            node,
            yes,
            stop_guests,
            reboot_timeout,
            facts,
        } => {
            apply_cmd(
                g,
                node,
                yes,
                facts,
                apply::Options::new(stop_guests, Duration::from_secs(reboot_timeout), true),
            )
            .await
        }
        Command::Rollback {
            node,
            yes,
            reboot,
            stop_guests,
            reboot_timeout,
        } => {
            rollback_cmd(
                g,
                node,
                yes,
                reboot,
                apply::Options::new(stop_guests, Duration::from_secs(reboot_timeout), false),
            )
            .await
        }
        Command::Compat {
            gpus,
            distro,
            driver,
            backends,
        } => {
            print_stdout(&crate::compat::compat_command(
                &gpus,
                &distro,
                driver.as_deref(),
                &backends,
                g.json,
            )?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Lint {
            what: crate::cli::LintWhat::Compose { file },
        } => {
            let findings = crate::lint::compose::lint_compose(&file)?;
            if g.json {
                print_stdout(&(serde_json::to_string_pretty(&findings)? + "\n"))?;
            } else {
                print_stdout(&crate::lint::compose::render(&findings))?;
            }
            Ok(if crate::lint::compose::has_errors(&findings) {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Fingerprint { node } => fingerprint_cmd(g, node).await,
        Command::Verify {
            node,
            vm,
            facts,
            ascii,
        } => verify_cmd(g, node, vm, facts, ascii).await,
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "pvegpu", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn selected<'a>(inv: &'a Inventory, node: &Option<String>) -> Result<Vec<(&'a String, &'a Node)>> {
    Ok(match node {
        Some(n) => {
            inv.node(n)?;
            inv.nodes.iter().filter(|(k, _)| *k == n).collect()
        }
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
    facts: Vec<std::path::PathBuf>,
    detailed: bool,
) -> Result<ExitCode> {
    let inv = Inventory::load(&g.inventory)?;
    // Each node to plan, with its saved facts when they come from files (each file names its
    // node; `--node` names the node of a single file, or picks one of several).
    let targets: Vec<(String, Option<gather::Gathered>)> = if facts.is_empty() {
        selected(&inv, &node)?
            .into_iter()
            .map(|(name, _)| (name.clone(), None))
            .collect()
    } else {
        let hint = if facts.len() == 1 {
            node.as_deref()
        } else {
            None
        };
        let mut saved = Vec::new();
        for path in &facts {
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
        saved
    };
    // All nodes at once: facts, host plan and VM plan of one node do not wait for another's.
    let planned = futures_join(targets.into_iter().map(|(name, saved)| {
        let inv = &inv;
        async move {
            let n = inv.node(&name)?;
            let offline = saved.is_some();
            let facts = match saved {
                Some(got) => got.facts,
                None => gather::live(inv, &name, n).await?.facts,
            };
            let host = planner::plan(&name, n, &facts)?;
            let vm = async {
                match Phase::connect(inv, &name, n, Some(&facts)).await? {
                    Some(phase) => {
                        let vm = phase
                            .plan(&name, n, &host_readiness(&name, n, &facts, &host))
                            .await?;
                        let agent =
                            crate::guest::phase::agent_address_after(&phase, n, &vm).await;
                        Ok(Some((vm, agent)))
                    }
                    None => anyhow::Ok(None),
                }
            }
            .await;
            let vm = match vm {
                Ok(vm) => vm,
                // Offline planning is what --facts is for: a VM phase that cannot reach the
                // API is left out with the reason, not an error.
                Err(e) if offline => {
                    eprintln!(
                        "warning: the VM phase of {name} is left out of this offline plan:\n{}",
                        crate::error::render(&e)
                    );
                    None
                }
                Err(e) => return Err(e),
            };
            let (vm, agent) = match vm {
                Some((vm, agent)) => (Some(vm), agent),
                None => (None, None),
            };
            // the guest is planned only after a VM phase with nothing left
            let guest = match &vm {
                Some(v) => match crate::guest::phase::plan(inv, &name, n, Some(v), agent.as_deref())
                    .await
                {
                    Ok(g) => g,
                    Err(e) if offline => {
                        eprintln!(
                            "warning: the guest phase of {name} is left out of this offline plan:\n{}",
                            crate::error::render(&e)
                        );
                        None
                    }
                    Err(e) => return Err(e),
                },
                None => None,
            };
            anyhow::Ok(NodePlan { host, vm, guest })
        }
    }))
    .await;
    let plans: Vec<NodePlan> = gathered_all(planned)?;
    if g.json {
        print_stdout(&(serde_json::to_string_pretty(&plans)? + "\n"))?;
    } else {
        let text: Vec<String> = plans.iter().map(NodePlan::render_text).collect();
        print_stdout(&text.join("\n"))?;
    }
    let refused: Vec<&str> = plans
        .iter()
        .filter(|p| {
            !p.host.refusals.is_empty()
                || p.vm.as_ref().is_some_and(|v| !v.refusals.is_empty())
                || p.guest.as_ref().is_some_and(GuestPhasePlan::refused)
        })
        .map(|p| p.host.node.as_str())
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

/// One node's plan: the host phase and, where the inventory has a [vm] table, the VM phase,
/// and with [vm.guest] the guest phase (or what it waits for).
#[derive(serde::Serialize)]
struct NodePlan {
    #[serde(flatten)]
    host: HostPlan,
    vm: Option<VmPlan>,
    guest: Option<GuestPhasePlan>,
}

impl NodePlan {
    fn is_empty(&self) -> bool {
        self.host.is_empty()
            && self.vm.as_ref().is_none_or(VmPlan::is_empty)
            && self.guest.as_ref().is_none_or(GuestPhasePlan::is_empty)
    }
    fn render_text(&self) -> String {
        let mut s = self.host.render_text();
        if let Some(v) = &self.vm {
            s.push_str(&v.render_text());
        }
        if let Some(g) = &self.guest {
            s.push_str(&g.render_text());
        }
        s
    }
}

fn gathered_all<T>(results: Vec<Result<T>>) -> Result<Vec<T>> {
    results.into_iter().collect()
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

struct Stderr {
    quiet: bool,
}

impl Progress for Stderr {
    fn say(&self, line: &str) {
        if !self.quiet {
            eprintln!("{line}");
        }
    }
}

/// Ask before changing a node; without a terminal only --yes may answer.
fn confirm(node: &str, what: &str, yes: bool) -> Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(hinted(
            format!("refusing to {what} {node} without confirmation: stdin is not a terminal"),
            "read the plan above, then run again with --yes",
        ));
    }
    eprint!("{} {node}? [y/N] ", what[..1].to_uppercase() + &what[1..]);
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(hinted(
            format!("{node} was not changed"),
            "nothing was done",
        ))
    }
}

fn print_report(g: &GlobalArgs, reports: &[apply::Report]) -> Result<()> {
    if g.json {
        return print_stdout(&(serde_json::to_string_pretty(reports)? + "\n"));
    }
    let mut out = String::new();
    for r in reports {
        out.push_str(&format!(
            "\n{}: {} in {:.0} s, {} reboot(s), {} SSH round trip(s)\n",
            r.node,
            if r.ok { "converged" } else { "NOT converged" },
            r.seconds,
            r.reboots,
            r.ssh_round_trips
        ));
        for c in &r.postconditions {
            out.push_str(&format!(
                "  {} {}: {}\n",
                if c.passed() { "✓" } else { "✗" },
                c.name,
                c.saw
            ));
        }
    }
    print_stdout(&out)
}

/// The report of a host with nothing to apply: its postconditions on the facts just read.
fn converged_host_report(
    name: &str,
    n: &Node,
    plan: &HostPlan,
    facts: &HostFacts,
) -> apply::Report {
    apply::Report {
        node: name.to_string(),
        ok: true,
        ssh_round_trips: 1,
        postconditions: crate::host::checks::postconditions(name, n, plan, facts, facts),
        ..Default::default()
    }
}

async fn apply_cmd(
    g: &GlobalArgs,
    node: Option<String>,
    yes: bool,
    saved_facts: Option<std::path::PathBuf>,
    options: apply::Options,
) -> Result<ExitCode> {
    let inv = Inventory::load(&g.inventory)?;
    let nodes = selected(&inv, &node)?;
    let progress = Stderr { quiet: g.quiet };
    let mut reports = Vec::new();
    for (name, n) in nodes {
        let started = std::time::Instant::now();
        let connector = SshConnector::node(&n.ssh, n.ssh_config.as_ref().map(|p| inv.resolve(p)));
        let facts = match &saved_facts {
            Some(path) => gather::from_file(Some(name), path)?.1.facts,
            None => gather::live(&inv, name, n).await?.facts,
        };
        let plan = planner::plan(name, n, &facts)?;
        if let Some(path) = &saved_facts
            && (!plan.is_empty() || !plan.refusals.is_empty())
        {
            print_stdout(&plan.render_text())?;
            return Err(hinted(
                format!(
                    "the facts in {} show a host that is not converged; --facts runs the VM phase only",
                    path.display()
                ),
                "run `pvegpu apply` without --facts to converge the host over SSH first",
            ));
        }
        let phase = Phase::connect(&inv, name, n, Some(&facts)).await?;
        let vm_plan = match &phase {
            Some(p) => Some(
                p.plan(name, n, &host_readiness(name, n, &facts, &plan))
                    .await?,
            ),
            None => None,
        };
        let agent = match (&phase, &vm_plan) {
            (Some(p), Some(v)) => crate::guest::phase::agent_address_after(p, n, v).await,
            _ => None,
        };
        let guest_plan =
            crate::guest::phase::plan(&inv, name, n, vm_plan.as_ref(), agent.as_deref()).await?;
        if !g.json {
            print_stdout(&plan.render_text())?;
            if let Some(v) = &vm_plan {
                print_stdout(&v.render_text())?;
            }
            if let Some(gp) = &guest_plan {
                print_stdout(&gp.render_text())?;
            }
        }
        if !plan.refusals.is_empty()
            || vm_plan.as_ref().is_some_and(|v| !v.refusals.is_empty())
            || guest_plan.as_ref().is_some_and(GuestPhasePlan::refused)
        {
            return Err(hinted(
                format!("pvegpu refuses to change {name}: see `Refused` above"),
                "nothing was changed; fix what each refusal names and apply again",
            ));
        }
        let vm_empty = vm_plan.as_ref().is_none_or(VmPlan::is_empty);
        let guest_empty = guest_plan.as_ref().is_none_or(GuestPhasePlan::is_empty);
        if plan.is_empty() && vm_empty && guest_empty {
            let mut report = converged_host_report(name, n, &plan, &facts);
            if let Some(v) = &vm_plan {
                report
                    .postconditions
                    .extend(crate::vm::phase::postconditions(v, None));
            }
            if let Some(gp) = guest_plan.as_ref().and_then(|gp| gp.plan.as_ref()) {
                report
                    .postconditions
                    .extend(crate::guest::exec::postconditions(gp));
            }
            report.ok = report.postconditions.iter().all(Check::passed);
            report.seconds = started.elapsed().as_secs_f64();
            reports.push(report);
            continue;
        }
        if vm_plan.as_ref().is_some_and(VmPlan::disrupts) {
            eprintln!("warning: applying stops the running VM and starts it again (see ⟳ above)");
        }
        confirm(name, "apply these changes to", yes)?;
        let mut report;
        let after;
        if plan.is_empty() {
            report = converged_host_report(name, n, &plan, &facts);
            report.ok = report.postconditions.iter().all(Check::passed);
            after = facts.clone();
        } else {
            let mut exec = Executor::new(name, n, options.clone(), &progress, connector);
            let result = exec.execute(&plan, &facts).await;
            report = exec.report;
            report.seconds = started.elapsed().as_secs_f64();
            match result {
                Err(e) => {
                    print_report(g, &[report])?;
                    return Err(e.context(format!(
                        "apply stopped on {name}; running it again continues from what the node is now"
                    )));
                }
                Ok(a) => after = a,
            }
        }
        if let (Some(phase), true) = (&phase, report.ok) {
            let host_now = planner::plan(name, n, &after)?;
            let ready = host_readiness(name, n, &after, &host_now);
            let vm_plan = phase.plan(name, n, &ready).await?;
            if !vm_plan.refusals.is_empty() {
                print_stdout(&vm_plan.render_text())?;
                return Err(hinted(
                    format!("pvegpu refuses to change the VM of {name}: see `Refused` above"),
                    "the host is converged; fix what the refusal names and apply again",
                ));
            }
            match phase.apply(name, n, &vm_plan, &ready, &progress).await {
                Ok(checks) => report.postconditions.extend(checks),
                Err(e) => {
                    report.ok = false;
                    print_report(g, &[report])?;
                    return Err(e.context(format!(
                        "the VM phase stopped on {name}; running apply again continues from what the VM is now"
                    )));
                }
            }
            report.ok = report.postconditions.iter().all(Check::passed);
            report.seconds = started.elapsed().as_secs_f64();
        }
        if crate::guest::phase::spec(n).is_some() && report.ok {
            run_guest_phase(
                g,
                &inv,
                name,
                n,
                phase.as_ref(),
                guest_plan,
                &options,
                &progress,
                &mut report,
            )
            .await?;
            report.seconds = started.elapsed().as_secs_f64();
        }
        let ok = report.ok;
        reports.push(report);
        if !ok {
            print_report(g, &reports)?;
            return Err(hinted(
                format!("{name} did not converge: a postcondition failed (✗ above)"),
                format!(
                    "nothing more was changed; `pvegpu rollback --node {name}` undoes pvegpu's changes"
                ),
            ));
        }
    }
    print_report(g, &reports)?;
    Ok(ExitCode::SUCCESS)
}

/// The guest phase of `apply`, after the VM phase: the plan shown before (when the VM had
/// nothing to do), else one made now that the VM runs; then the executor, whose
/// postconditions join the node's report.
#[allow(clippy::too_many_arguments)]
async fn run_guest_phase(
    g: &GlobalArgs,
    inv: &Inventory,
    name: &str,
    n: &Node,
    phase: Option<&Phase>,
    shown: Option<GuestPhasePlan>,
    options: &apply::Options,
    progress: &Stderr,
    report: &mut apply::Report,
) -> Result<()> {
    let planned = match shown.filter(|p| p.plan.is_some()) {
        Some(p) => p,
        None => {
            let agent = match phase {
                Some(p) => {
                    crate::guest::phase::agent_address(p, n, n.vm.as_ref().and_then(|v| v.vmid))
                        .await
                }
                None => None,
            };
            let p = crate::guest::phase::plan(inv, name, n, None, agent.as_deref())
                .await?
                .expect("the node has [vm.guest]");
            if !g.json {
                print_stdout(&p.render_text())?;
            }
            p
        }
    };
    let Some(gp) = &planned.plan else {
        report.ok = false;
        print_report(g, std::slice::from_ref(report))?;
        return Err(hinted(
            format!(
                "the guest of {name} cannot be planned: {}",
                planned.waits_for.as_deref().unwrap_or("unknown")
            ),
            "check that the VM runs and that `ssh` to the guest works, then apply again",
        ));
    };
    if !gp.refusals.is_empty() {
        return Err(hinted(
            format!("pvegpu refuses to change the guest of {name}: see `Refused` above"),
            "the host and VM are converged; fix what the refusal names and apply again",
        ));
    }
    if gp.is_empty() {
        report
            .postconditions
            .extend(crate::guest::exec::postconditions(gp));
        report.ok = report.postconditions.iter().all(Check::passed);
        return Ok(());
    }
    let guest_options = crate::guest::exec::GuestOptions {
        reboot_timeout: options.reboot_timeout,
        ..Default::default()
    };
    let (guest_report, result) =
        crate::guest::phase::apply(name, n, &planned, guest_options, progress).await;
    report.steps.extend(guest_report.steps);
    report.reboots += guest_report.reboots;
    report.ssh_round_trips += guest_report.ssh_round_trips;
    report.postconditions.extend(guest_report.postconditions);
    if let Err(e) = result {
        report.ok = false;
        print_report(g, std::slice::from_ref(report))?;
        return Err(e.context(format!(
            "the guest phase stopped on {name}; running apply again continues from what the guest is now"
        )));
    }
    report.ok = report.postconditions.iter().all(Check::passed);
    Ok(())
}

async fn rollback_cmd(
    g: &GlobalArgs,
    name: String,
    yes: bool,
    reboot: bool,
    options: apply::Options,
) -> Result<ExitCode> {
    let inv = Inventory::load(&g.inventory)?;
    let n = inv.node(&name)?;
    let connector = SshConnector::node(&n.ssh, n.ssh_config.as_ref().map(|p| inv.resolve(p)));
    let facts = gather::live(&inv, &name, n).await?.facts;
    let plan = crate::host::rollback::plan(&name, &facts, reboot);
    if !g.json {
        print_stdout(&plan.render_text())?;
    }
    if plan.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    confirm(&name, "roll back", yes)?;
    let progress = Stderr { quiet: g.quiet };
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
    print_report(g, &[report])?;
    Ok(if left.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The pin is read over SSH, whose host key the user already trusts, so the API's
/// self-signed certificate can be trusted without turning verification off.
async fn verify_cmd(
    g: &GlobalArgs,
    node: Option<String>,
    vm: Option<u32>,
    facts: Option<std::path::PathBuf>,
    ascii: bool,
) -> Result<ExitCode> {
    let inv = Inventory::load(&g.inventory)?;
    let mut nodes = selected(&inv, &node)?;
    if let Some(id) = vm {
        nodes.retain(|(_, n)| n.vm.as_ref().and_then(|v| v.vmid) == Some(id));
        if nodes.is_empty() {
            return Err(hinted(
                format!(
                    "{}: no {}node has a [vm] with vmid = {id}",
                    inv.path.display(),
                    node.as_ref().map(|n| format!("`{n}` ")).unwrap_or_default()
                ),
                "leave --vm out to verify every node, or set `vmid` in the node's [vm] table",
            ));
        }
    }
    // a facts file that cannot be read is an input error, not an unreachable host (`--facts`
    // requires `--node`, so there is one node to give it to)
    let mut saved = match &facts {
        Some(path) => Some(gather::from_file(node.as_deref(), path)?.1),
        None => None,
    };
    let reports = futures_join(nodes.iter().map(|(name, n)| {
        let inv = &inv;
        let saved = saved.take();
        async move { crate::verify::run::verify_node(inv, name, n, saved).await }
    }))
    .await;
    let passed = reports.iter().all(crate::verify::Report::passed);
    if g.json {
        let by_node: serde_json::Map<String, serde_json::Value> = nodes
            .iter()
            .zip(&reports)
            .map(|((name, _), r)| (name.to_string(), r.to_json()))
            .collect();
        let doc = serde_json::json!({ "passed": passed, "nodes": by_node });
        print_stdout(&(serde_json::to_string_pretty(&doc)? + "\n"))?;
    } else {
        let style = crate::verify::Style {
            unicode: !ascii,
            color: matches!(g.color, crate::cli::ColorChoice::Always)
                || (matches!(g.color, crate::cli::ColorChoice::Auto)
                    && std::io::IsTerminal::is_terminal(&std::io::stdout())
                    && std::env::var_os("NO_COLOR").is_none()),
        };
        let text: Vec<String> = nodes
            .iter()
            .zip(&reports)
            .map(|((name, _), r)| format!("Node {name}\n\n{}", r.render_text(style)))
            .collect();
        print_stdout(&text.join("\n"))?;
    }
    if passed {
        Ok(ExitCode::SUCCESS)
    } else {
        let failed: Vec<&str> = nodes
            .iter()
            .zip(&reports)
            .filter(|(_, r)| !r.passed())
            .map(|((name, _), _)| name.as_str())
            .collect();
        eprintln!(
            "error: verify did not pass for {}: see the checks marked failed or not checked above",
            failed.join(", ")
        );
        Ok(ExitCode::FAILURE)
    }
}

async fn fingerprint_cmd(g: &GlobalArgs, name: String) -> Result<ExitCode> {
    use crate::transport::Remote;
    let inv = Inventory::load(&g.inventory)?;
    let n = inv.node(&name)?;
    let config = n.ssh_config.as_ref().map(|p| inv.resolve(p));
    let remote = crate::transport::ssh::SshRemote::connect(&n.ssh, config).await?;
    let out = remote
        .run_script(crate::vm::connect::FINGERPRINT_COMMAND)
        .await;
    remote.close().await;
    let out = out?;
    let fp = crate::vm::connect::parse_fingerprint_output(&out.stdout).with_context(|| {
        format!(
            "cannot read the API certificate of {name}: {}",
            out.stderr.trim()
        )
    })?;
    if g.json {
        print_stdout(
            &(serde_json::json!({"node": name, "fingerprint": fp.to_string()}).to_string() + "\n"),
        )?;
    } else {
        print_stdout(&format!(
            "# the certificate pveproxy serves on {name}, read over SSH ({})\n[nodes.{name}.api]\nfingerprint = \"{fp}\"\n",
            n.ssh
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}
