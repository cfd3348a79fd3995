//! `pvegpu apply`: each selected node in turn through the pipeline, then its executors: the
//! host's, the VM's, the guest's, each once the phase before it converged.

use super::{Stderr, confirm, print_json, print_stdout, selected};
use crate::cli::GlobalArgs;
use crate::core::check::Check;
use crate::core::error::hinted;
use crate::core::outcome::ApplyReport;
use crate::core::plan::PhasePlan;
use crate::facts::HostFacts;
use crate::guest::phase::{GuestPhasePlan, GuestStage};
use crate::host::exec::{Executor, Options};
use crate::host::gather;
use crate::inventory::{Inventory, Node};
use crate::pipeline::{HostSource, HostStage, NodePlan, Pipeline, VmStage};
use crate::transport::ssh::SshConnector;
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// What every node's apply shares.
struct Run<'a> {
    g: &'a GlobalArgs,
    inv: &'a Inventory,
    yes: bool,
    saved_facts: Option<&'a Path>,
    options: &'a Options,
    progress: &'a Stderr,
}

pub async fn run(
    g: &GlobalArgs,
    node: Option<String>,
    yes: bool,
    saved_facts: Option<PathBuf>,
    options: Options,
) -> Result<ExitCode> {
    let inv = Inventory::load(&g.inventory)?;
    let nodes = selected(&inv, &node)?;
    let progress = Stderr { quiet: g.quiet };
    let run = Run {
        g,
        inv: &inv,
        yes,
        saved_facts: saved_facts.as_deref(),
        options: &options,
        progress: &progress,
    };
    let mut reports = Vec::new();
    for (name, n) in nodes {
        let report = run.node(name, n).await?;
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

/// The executors' report: steps, reboots, round trips and the postconditions.
pub(super) fn print_report(g: &GlobalArgs, reports: &[ApplyReport]) -> Result<()> {
    if g.json {
        return print_json(&reports);
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
fn converged_host_report(name: &str, n: &Node, host: &HostStage) -> ApplyReport {
    let postconditions =
        crate::host::checks::postconditions(name, n, &host.plan, host.facts(), host.facts());
    ApplyReport {
        node: name.to_string(),
        ok: postconditions.iter().all(Check::passed),
        ssh_round_trips: 1,
        postconditions,
        ..Default::default()
    }
}

fn all_passed(report: &mut ApplyReport) {
    report.ok = report.postconditions.iter().all(Check::passed);
}

impl Run<'_> {
    async fn node(&self, name: &str, n: &Node) -> Result<ApplyReport> {
        let started = Instant::now();
        let pipeline = Pipeline::new(self.inv, name, n);
        let source = match self.saved_facts {
            Some(path) => HostSource::Saved(Box::new(gather::from_file(Some(name), path)?.1)),
            None => HostSource::Live,
        };
        let host = pipeline.host(source).await?;
        if let Some(path) = self.saved_facts
            && !host.plan.state().nothing_to_do()
        {
            print_stdout(&host.plan.render_text())?;
            return Err(hinted(
                format!(
                    "the facts in {} show a host that is not converged; --facts runs the VM phase only",
                    path.display()
                ),
                "run `pvegpu apply` without --facts to converge the host over SSH first",
            ));
        }
        let vm = pipeline.vm(&host).await?;
        let guest = pipeline.guest(vm.as_ref()).await?;
        let planned = NodePlan {
            name: name.to_string(),
            host,
            vm,
            guest,
            left_out: Vec::new(),
        };
        if !self.g.json {
            print_stdout(&planned.render_text())?;
        }
        if planned.refused() {
            return Err(hinted(
                format!("pvegpu refuses to change {name}: see `Refused` above"),
                "nothing was changed; fix what each refusal names and apply again",
            ));
        }
        if planned.nothing_to_do() {
            let mut report = converged_report(name, n, &planned);
            report.seconds = started.elapsed().as_secs_f64();
            return Ok(report);
        }
        if planned.vm.as_ref().is_some_and(|v| v.plan.disrupts()) {
            eprintln!("warning: applying stops the running VM and starts it again (see ⟳ above)");
        }
        confirm(name, "apply these changes to", self.yes)?;
        let NodePlan {
            host, vm, guest, ..
        } = planned;
        let (mut report, after) = self.host(name, n, &host, started).await?;
        if let (Some(vm), true) = (&vm, report.ok) {
            self.vm(&pipeline, vm, &after, &mut report).await?;
            report.seconds = started.elapsed().as_secs_f64();
        }
        if crate::guest::phase::spec(n).is_some() && report.ok {
            self.guest(&pipeline, vm.as_ref(), guest, &mut report)
                .await?;
            report.seconds = started.elapsed().as_secs_f64();
        }
        Ok(report)
    }

    /// The host's executor, or the converged host's postconditions when it has nothing to do;
    /// with the host's facts after it.
    async fn host(
        &self,
        name: &str,
        n: &Node,
        host: &HostStage,
        started: Instant,
    ) -> Result<(ApplyReport, HostFacts)> {
        if host.plan.is_empty() {
            return Ok((converged_host_report(name, n, host), host.facts().clone()));
        }
        let connector =
            SshConnector::node(&n.ssh, n.ssh_config.as_ref().map(|p| self.inv.resolve(p)));
        let mut exec = Executor::new(name, n, self.options.clone(), self.progress, connector);
        let result = exec.execute(&host.plan, host.facts()).await;
        let mut report = exec.report;
        report.seconds = started.elapsed().as_secs_f64();
        match result {
            Ok(after) => Ok((report, after)),
            Err(e) => {
                print_report(self.g, &[report])?;
                Err(e.context(format!(
                    "apply stopped on {name}; running it again continues from what the node is now"
                )))
            }
        }
    }

    /// The VM phase on the host as it is now: a fresh plan, then its executor.
    async fn vm(
        &self,
        pipeline: &Pipeline<'_>,
        vm: &VmStage,
        after: &HostFacts,
        report: &mut ApplyReport,
    ) -> Result<()> {
        let name = pipeline.name;
        let (plan, ready) = pipeline.replan_vm(&vm.phase, after).await?;
        if plan.state().refused() {
            print_stdout(&plan.render_text())?;
            return Err(hinted(
                format!("pvegpu refuses to change the VM of {name}: see `Refused` above"),
                "the host is converged; fix what the refusal names and apply again",
            ));
        }
        match vm
            .phase
            .apply(name, pipeline.node, &plan, &ready, self.progress)
            .await
        {
            Ok(checks) => report.postconditions.extend(checks),
            Err(e) => {
                report.ok = false;
                print_report(self.g, std::slice::from_ref(report))?;
                return Err(e.context(format!(
                    "the VM phase stopped on {name}; running apply again continues from what the VM is now"
                )));
            }
        }
        all_passed(report);
        Ok(())
    }

    /// The guest phase, after the VM phase: the plan shown before (when the VM had nothing to
    /// do), else one made now that the VM runs; then the executor, whose postconditions join
    /// the node's report.
    async fn guest(
        &self,
        pipeline: &Pipeline<'_>,
        vm: Option<&VmStage>,
        shown: Option<GuestPhasePlan>,
        report: &mut ApplyReport,
    ) -> Result<()> {
        let name = pipeline.name;
        let planned = match shown.filter(|p| p.planned().is_some()) {
            Some(p) => p,
            None => {
                let p = pipeline.replan_guest(vm).await?;
                if !self.g.json {
                    print_stdout(&p.render_text())?;
                }
                p
            }
        };
        let planned = match &planned.stage {
            GuestStage::Planned(p) => p,
            GuestStage::Waiting { waits_for } => {
                report.ok = false;
                print_report(self.g, std::slice::from_ref(report))?;
                return Err(hinted(
                    format!("the guest of {name} cannot be planned: {waits_for}"),
                    "check that the VM runs and that `ssh` to the guest works, then apply again",
                ));
            }
        };
        if planned.plan.state().refused() {
            return Err(hinted(
                format!("pvegpu refuses to change the guest of {name}: see `Refused` above"),
                "the host and VM are converged; fix what the refusal names and apply again",
            ));
        }
        if planned.plan.is_empty() {
            report
                .postconditions
                .extend(crate::guest::exec::postconditions(&planned.plan));
            all_passed(report);
            return Ok(());
        }
        let options = crate::guest::exec::GuestOptions {
            reboot_timeout: self.options.reboot_timeout,
            ..Default::default()
        };
        let spec = crate::guest::phase::spec(pipeline.node)
            .ok_or_else(|| anyhow::anyhow!("node {name} has no [vm.guest] table"))?;
        let (guest_report, result) =
            crate::guest::phase::apply(name, spec, planned, options, self.progress).await;
        report.steps.extend(guest_report.steps);
        report.reboots += guest_report.reboots;
        report.ssh_round_trips += guest_report.ssh_round_trips;
        report.postconditions.extend(guest_report.postconditions);
        if let Err(e) = result {
            report.ok = false;
            print_report(self.g, std::slice::from_ref(report))?;
            return Err(e.context(format!(
                "the guest phase stopped on {name}; running apply again continues from what the guest is now"
            )));
        }
        all_passed(report);
        Ok(())
    }
}

/// A node with nothing to do in any phase: the postconditions of each, on what was just read.
fn converged_report(name: &str, n: &Node, planned: &NodePlan) -> ApplyReport {
    let mut report = converged_host_report(name, n, &planned.host);
    if let Some(v) = &planned.vm {
        report
            .postconditions
            .extend(crate::vm::phase::postconditions(&v.plan, None));
    }
    if let Some(p) = planned.guest.as_ref().and_then(GuestPhasePlan::planned) {
        report
            .postconditions
            .extend(crate::guest::exec::postconditions(&p.plan));
    }
    all_passed(&mut report);
    report
}
