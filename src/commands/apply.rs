//! `pvegpu apply`: each selected node in turn through the pipeline, then its executors: the
//! host's, the VM's, the guest's, each once the phase before it converged.

use super::{Stderr, confirm, print_json, print_stdout, selected};
use crate::cli::GlobalArgs;
use crate::core::check::Check;
use crate::core::error::hinted;
use crate::core::outcome::ApplyReport;
use crate::core::phase::Phase;
use crate::core::plan::{PhasePlan, PlanState};
use crate::core::progress::Progress;
use crate::guest::phase::{GuestPhasePlan, GuestSeen};
use crate::host::exec::{HostNow, Options};
use crate::host::gather;
use crate::inventory::{Inventory, Node};
use crate::pipeline::{HostSource, NodePlan, Pipeline, Stage, VmStage};
use crate::transport::node_lock::{NodeLock, holder_details};
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
    let progress = Stderr::new(g.quiet);
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

fn all_passed(report: &mut ApplyReport) {
    report.ok = report.postconditions.iter().all(Check::passed);
}

impl Run<'_> {
    async fn node(&self, name: &str, n: &Node) -> Result<ApplyReport> {
        let started = Instant::now();
        let mut pipeline = Pipeline::new(self.inv, name, n);
        pipeline.options = self.options.clone();
        // live, the node is ours for the whole run; --facts runs reach only the API
        let lock = match self.saved_facts {
            Some(_) => None,
            None => Some(self.lock(name, n).await?),
        };
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
        let guest = match &vm {
            Some(v) => pipeline.guest(v).await?,
            None => None,
        };
        let planned = NodePlan {
            name: name.to_string(),
            host,
            vm,
            guest,
            through: crate::pipeline::Through::Guest,
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
            let mut report = converged_report(&pipeline, &planned);
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
        let mut report = ApplyReport {
            node: name.to_string(),
            ..Default::default()
        };
        let stopped = format!(
            "apply stopped on {name}; running it again continues from what the node is now"
        );
        let phase = pipeline.host_phase();
        let Some(host_now) = self
            .phase(&phase, &(), &host, &mut report, started, stopped)
            .await?
        else {
            return Ok(report);
        };
        if let Some(lock) = &lock {
            // a reboot dropped the lock with the connection; it must be ours again
            lock.confirm().await?;
        }
        if let Some(vm) = &vm {
            self.vm_and_guest(&pipeline, vm, host_now, guest, &mut report, started)
                .await?;
        }
        Ok(report)
    }

    async fn lock(&self, name: &str, n: &Node) -> Result<NodeLock> {
        let command: Vec<String> = std::env::args()
            .map(|a| crate::core::visible::visible(&a).into_owned())
            .collect();
        let task = self
            .progress
            .begin(&format!("{name}: taking the node's apply lock"));
        let lock = NodeLock::acquire(
            name,
            &n.ssh,
            n.ssh_config.clone(),
            holder_details(&command.join(" ")),
        )
        .await;
        task.done(lock.is_ok());
        Ok(lock?)
    }

    /// One phase's executor; its report joins the node's. What the next phase starts from,
    /// when every postcondition so far passed.
    async fn phase<P: Phase>(
        &self,
        phase: &P,
        input: &P::Input,
        stage: &Stage<P::Facts, P::Plan>,
        report: &mut ApplyReport,
        started: Instant,
        stopped: String,
    ) -> Result<Option<P::Output>> {
        let applied = phase
            .apply(input, &stage.facts, &stage.plan, self.progress)
            .await;
        let done = applied.report;
        report.steps.extend(done.steps);
        report.reboots += done.reboots;
        report.ssh_round_trips += done.ssh_round_trips;
        report.postconditions.extend(done.postconditions);
        report.seconds = started.elapsed().as_secs_f64();
        match applied.result {
            Ok(output) => {
                all_passed(report);
                Ok(report.ok.then_some(output))
            }
            Err(e) => {
                report.ok = false;
                print_report(self.g, std::slice::from_ref(report))?;
                Err(e.context(stopped))
            }
        }
    }

    /// The VM phase on the host as it is now: a fresh plan, then its executor. Then the guest
    /// phase: the plan shown before (when the VM had nothing to do), else one made now that
    /// the VM runs; then its executor.
    async fn vm_and_guest(
        &self,
        pipeline: &Pipeline<'_>,
        vm: &VmStage,
        host: HostNow,
        shown: Option<Stage<GuestSeen, GuestPhasePlan>>,
        report: &mut ApplyReport,
        started: Instant,
    ) -> Result<()> {
        let name = pipeline.name;
        let phase = pipeline.vm_phase(&vm.phase);
        let stage = Pipeline::stage(&phase, &host).await?;
        if stage.plan.state().refused() {
            print_stdout(&stage.plan.render_text())?;
            return Err(hinted(
                format!("pvegpu refuses to change the VM of {name}: see `Refused` above"),
                "the host is converged; fix what the refusal names and apply again",
            ));
        }
        let stopped = format!(
            "the VM phase stopped on {name}; running apply again continues from what the VM is now"
        );
        let Some(vm_now) = self
            .phase(&phase, &host, &stage, report, started, stopped)
            .await?
        else {
            return Ok(());
        };
        let Some(phase) = pipeline.guest_phase(&vm.phase) else {
            return Ok(());
        };
        let stage = match shown.filter(|s| s.plan.planned().is_some()) {
            Some(s) => s,
            None => {
                let s = Pipeline::stage(&phase, &vm_now).await?;
                if !self.g.json {
                    print_stdout(&s.plan.render_text())?;
                }
                s
            }
        };
        match stage.plan.state() {
            PlanState::Waiting(waits_for) => {
                report.ok = false;
                print_report(self.g, std::slice::from_ref(report))?;
                return Err(hinted(
                    format!("the guest of {name} cannot be planned: {waits_for}"),
                    "check that the VM runs and that `ssh` to the guest works, then apply again",
                ));
            }
            PlanState::Refused(_) => {
                return Err(hinted(
                    format!("pvegpu refuses to change the guest of {name}: see `Refused` above"),
                    "the host and VM are converged; fix what the refusal names and apply again",
                ));
            }
            PlanState::Ready | PlanState::NothingToDo => {}
        }
        let stopped = format!(
            "the guest phase stopped on {name}; running apply again continues from what the guest is now"
        );
        self.phase(&phase, &vm_now, &stage, report, started, stopped)
            .await?;
        Ok(())
    }
}

/// A node with nothing to do in any phase: the postconditions of each, on what was just read
/// (the host's facts in one round trip).
fn converged_report(pipeline: &Pipeline<'_>, planned: &NodePlan) -> ApplyReport {
    let host = &planned.host;
    let mut report = ApplyReport {
        node: planned.name.clone(),
        ssh_round_trips: 1,
        postconditions: pipeline
            .host_phase()
            .postconditions(&host.facts, &host.plan),
        ..Default::default()
    };
    if let Some(v) = &planned.vm {
        report.postconditions.extend(
            pipeline
                .vm_phase(&v.phase)
                .postconditions(&v.facts, &v.plan),
        );
        if let (Some(g), Some(phase)) = (&planned.guest, pipeline.guest_phase(&v.phase)) {
            report
                .postconditions
                .extend(phase.postconditions(&g.facts, &g.plan));
        }
    }
    all_passed(&mut report);
    report
}
