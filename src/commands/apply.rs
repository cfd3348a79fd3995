//! `pvegpu apply`: each selected node in turn through the pipeline, then its executors: the
//! host's, the VM's, the guest's, each once the phase before it converged.

use super::{Stderr, confirm, join_all, print_stdout, print_versioned, selected};
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

/// How many nodes at once, and whether a node that fails stops the rest.
pub struct Rolling {
    pub serial: u16,
    pub keep_going: bool,
}

/// How a node's apply ended, in one word (the recap's and the JSON's `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Converged, and something was changed to get there.
    Changed,
    /// Converged with nothing to do.
    Unchanged,
    /// A phase refused before any of its changes (an earlier phase may have changed).
    Refused,
    /// A step, a postcondition, or reaching the node failed; or the change was declined.
    Failed,
    /// Not started: an earlier node failed and `--keep-going` was not given.
    Skipped,
}

impl Status {
    const ALL: [Status; 5] = [
        Status::Changed,
        Status::Unchanged,
        Status::Refused,
        Status::Failed,
        Status::Skipped,
    ];

    /// The word the recap and the JSON show.
    fn as_str(self) -> &'static str {
        match self {
            Status::Changed => "changed",
            Status::Unchanged => "unchanged",
            Status::Refused => "refused",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
        }
    }
}

/// One node's apply: what its executors did, how it ended, its plan and its error.
#[derive(serde::Serialize)]
struct NodeOutcome {
    status: Status,
    #[serde(flatten)]
    report: ApplyReport,
    /// The plan as shown before applying (null where the node was not planned).
    plan: Option<serde_json::Value>,
    error: Option<crate::core::error::Parts>,
    #[serde(skip)]
    cause: Option<anyhow::Error>,
    /// The plan had changes and its executors ran (the VM executor lists no steps).
    #[serde(skip)]
    applied: bool,
}

impl NodeOutcome {
    fn new(name: &str) -> Self {
        NodeOutcome {
            status: Status::Failed,
            report: ApplyReport {
                node: name.to_string(),
                ..Default::default()
            },
            plan: None,
            error: None,
            cause: None,
            applied: false,
        }
    }

    fn converged(&self) -> bool {
        matches!(self.status, Status::Changed | Status::Unchanged)
    }
}

pub async fn run(
    g: &GlobalArgs,
    limit: Option<String>,
    yes: bool,
    saved_facts: Option<PathBuf>,
    options: Options,
    rolling: Rolling,
) -> Result<ExitCode> {
    let inv = Inventory::load(&g.inventory)?;
    let nodes = selected(&inv, &limit)?;
    if g.json && !yes {
        return Err(hinted(
            "apply --json does not ask before changing a node, so it needs --yes",
            "read `pvegpu plan --json` first, then run `pvegpu apply --json --yes`",
        ));
    }
    if rolling.serial > 1 && !yes && nodes.len() > 1 {
        return Err(hinted(
            "--serial above 1 changes several nodes at once and cannot ask for each",
            "read the plans with `pvegpu plan`, then run again with --yes",
        ));
    }
    if let (Some(_), Some(l)) = (&saved_facts, &limit) {
        super::one_node(&inv, l)?;
    }
    let progress = Stderr::new(g.quiet);
    let run = Run {
        g,
        inv: &inv,
        yes,
        saved_facts: saved_facts.as_deref(),
        options: &options,
        progress: &progress,
    };
    let mut outcomes: Vec<NodeOutcome> = Vec::new();
    for batch in nodes.chunks(usize::from(rolling.serial.max(1))) {
        let stop = !rolling.keep_going && outcomes.iter().any(|o| !o.converged());
        if stop {
            outcomes.extend(batch.iter().map(|(name, _)| NodeOutcome {
                status: Status::Skipped,
                ..NodeOutcome::new(name)
            }));
            continue;
        }
        // each node's facts (its reboot interlocks among them) are read when its turn comes
        let done = join_all(
            batch.iter().map(|(name, n)| run.outcome(name, n)),
            rolling.serial,
        )
        .await;
        outcomes.extend(done);
    }
    finish(g, outcomes)
}

/// The reports, the recap and the JSON; the exit status.
fn finish(g: &GlobalArgs, mut outcomes: Vec<NodeOutcome>) -> Result<ExitCode> {
    if g.json {
        let recap = recap_counts(&outcomes);
        print_versioned(serde_json::json!({ "nodes": outcomes, "recap": recap }))?;
    } else {
        let reports: Vec<&ApplyReport> = outcomes
            .iter()
            .filter(|o| {
                o.converged() || !o.report.steps.is_empty() || !o.report.postconditions.is_empty()
            })
            .map(|o| &o.report)
            .collect();
        print_report(&reports)?;
    }
    if outcomes.len() > 1 {
        super::say(&recap_text(&outcomes));
    }
    let not_converged: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.converged())
        .map(|o| o.report.node.clone())
        .collect();
    if not_converged.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    if outcomes.len() == 1
        && let Some(cause) = outcomes.pop().and_then(|o| o.cause)
    {
        return Err(cause);
    }
    for o in outcomes.iter().filter(|o| o.cause.is_some()) {
        if let Some(cause) = &o.cause {
            super::say(&format!(
                "{}:\n{}",
                o.report.node,
                super::render_error(cause)
            ));
        }
    }
    Err(hinted(
        format!(
            "{} did not converge (recap above)",
            not_converged.join(", ")
        ),
        "running apply again continues each node from what it is now; `--limit` can name just those nodes",
    ))
}

/// How many nodes ended in each status, every status named.
fn recap_counts(outcomes: &[NodeOutcome]) -> serde_json::Map<String, serde_json::Value> {
    Status::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), count(outcomes, *s).into()))
        .collect()
}

fn count(outcomes: &[NodeOutcome], status: Status) -> usize {
    outcomes.iter().filter(|o| o.status == status).count()
}

/// One line per node, as Ansible's PLAY RECAP gives one per host.
fn recap_text(outcomes: &[NodeOutcome]) -> String {
    let width = outcomes
        .iter()
        .map(|o| o.report.node.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut out = format!(
        "\nRecap:\n  {:width$}  {:9}  {:>5}  {:>7}  {:>7}\n",
        "node", "status", "steps", "reboots", "time"
    );
    for o in outcomes {
        out.push_str(&format!(
            "  {:width$}  {:9}  {:>5}  {:>7}  {:>5.0} s\n",
            o.report.node,
            o.status.as_str(),
            o.report.steps.len(),
            o.report.reboots,
            o.report.seconds
        ));
    }
    let counts: Vec<String> = Status::ALL
        .iter()
        .map(|s| format!("{} {}", count(outcomes, *s), s.as_str()))
        .collect();
    out.push_str(&format!("  {}", counts.join(", ")));
    out
}

/// The executors' report: steps, reboots, round trips and the postconditions.
pub(super) fn print_report(reports: &[&ApplyReport]) -> Result<()> {
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

/// A refusal: the node's status says so, the error says why.
fn refused(outcome: &mut NodeOutcome, message: String, hint: &str) -> anyhow::Error {
    outcome.status = Status::Refused;
    hinted(message, hint)
}

impl Run<'_> {
    /// One node's apply, whatever its end: the error is kept with the report so far.
    async fn outcome(&self, name: &str, n: &Node) -> NodeOutcome {
        let started = Instant::now();
        let mut outcome = NodeOutcome::new(name);
        let result = self.node(name, n, &mut outcome).await;
        outcome.report.seconds = started.elapsed().as_secs_f64();
        match result {
            Ok(()) if outcome.report.ok => {
                outcome.status = match outcome.applied {
                    true => Status::Changed,
                    false => Status::Unchanged,
                };
            }
            Ok(()) => {
                outcome.status = Status::Failed;
                outcome.cause = Some(hinted(
                    format!("{name} did not converge: a postcondition failed (✗ above)"),
                    format!(
                        "nothing more was changed; `pvegpu rollback --node {name}` undoes pvegpu's changes"
                    ),
                ));
            }
            Err(e) => {
                if outcome.status != Status::Refused {
                    outcome.status = Status::Failed;
                }
                outcome.cause = Some(e);
            }
        }
        outcome.error = outcome.cause.as_ref().map(super::error_json);
        outcome
    }

    async fn node(&self, name: &str, n: &Node, outcome: &mut NodeOutcome) -> Result<()> {
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
            if !self.g.json {
                print_stdout(&host.plan.render_text())?;
            }
            return Err(refused(
                outcome,
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
        outcome.plan = Some(serde_json::to_value(&planned)?);
        if !self.g.json {
            print_stdout(&planned.render_text())?;
        }
        if planned.refused() {
            return Err(refused(
                outcome,
                format!("pvegpu refuses to change {name}: see `Refused` above"),
                "nothing was changed; fix what each refusal names and apply again",
            ));
        }
        let report = &mut outcome.report;
        if planned.nothing_to_do() {
            *report = converged_report(&pipeline, &planned);
            report.seconds = started.elapsed().as_secs_f64();
            return Ok(());
        }
        if planned.vm.as_ref().is_some_and(|v| v.plan.disrupts()) {
            super::say(&format!(
                "warning: applying stops the running VM of {name} and starts it again (see ⟳ above)"
            ));
        }
        confirm(name, "apply these changes to", self.yes)?;
        outcome.applied = true;
        let NodePlan {
            host, vm, guest, ..
        } = planned;
        let stopped = format!(
            "apply stopped on {name}; running it again continues from what the node is now"
        );
        let phase = pipeline.host_phase();
        let Some(host_now) = self
            .phase(&phase, &(), &host, &mut outcome.report, started, stopped)
            .await?
        else {
            return Ok(());
        };
        if let Some(lock) = &lock {
            // a reboot dropped the lock with the connection; it must be ours again
            lock.confirm().await?;
        }
        if let Some(vm) = &vm {
            self.vm_and_guest(&pipeline, vm, host_now, guest, outcome, started)
                .await?;
        }
        Ok(())
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
        outcome: &mut NodeOutcome,
        started: Instant,
    ) -> Result<()> {
        let name = pipeline.name;
        let phase = pipeline.vm_phase(&vm.phase);
        let stage = Pipeline::stage(&phase, &host).await?;
        if stage.plan.state().refused() {
            if !self.g.json {
                print_stdout(&stage.plan.render_text())?;
            }
            return Err(refused(
                outcome,
                format!("pvegpu refuses to change the VM of {name}: see `Refused` above"),
                "the host is converged; fix what the refusal names and apply again",
            ));
        }
        let report = &mut outcome.report;
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
                return Err(hinted(
                    format!("the guest of {name} cannot be planned: {waits_for}"),
                    "check that the VM runs and that `ssh` to the guest works, then apply again",
                ));
            }
            PlanState::Refused(_) => {
                return Err(refused(
                    outcome,
                    format!("pvegpu refuses to change the guest of {name}: see `Refused` above"),
                    "the host and VM are converged; fix what the refusal names and apply again",
                ));
            }
            PlanState::Ready | PlanState::NothingToDo => {}
        }
        let stopped = format!(
            "the guest phase stopped on {name}; running apply again continues from what the guest is now"
        );
        self.phase(
            &phase,
            &vm_now,
            &stage,
            &mut outcome.report,
            started,
            stopped,
        )
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
