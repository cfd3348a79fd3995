//! The executor: runs a plan's changes on a node, reboots safely, re-gathers the facts and
//! checks every postcondition. The plan is data from the pure planner; this module is where
//! it meets the node.

use crate::core::check::Check;
use crate::core::error::hinted;
use crate::core::outcome::{ApplyReport, StepOutcome, run_id};
use crate::core::phase::{Applied, Phase};
use crate::core::plan::{Action, Change};
use crate::core::progress::{Progress, Task, begin_step};
use crate::core::scripts;
use crate::facts::HostFacts;
use crate::host::checks::{postconditions, reboot_interlocks};
use crate::host::gather::{self, Gathered};
use crate::host::plan::HostPlan;
use crate::inventory::Node;
use crate::transport::reboot::{RebootWait, reboot_and_wait};
use crate::transport::ssh::SshConnector;
use crate::transport::{Connector, run_counted, run_watched_counted};
use anyhow::Result;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Options {
    pub stop_guests: bool,
    pub reboot_timeout: Duration,
    /// For rollback: check nothing after the reboot but that it happened.
    pub verify: bool,
    /// Between polls for the node's new boot_id (and before the first).
    pub poll_interval: Duration,
}

impl Options {
    pub fn new(stop_guests: bool, reboot_timeout: Duration, verify: bool) -> Self {
        Options {
            stop_guests,
            reboot_timeout,
            verify,
            poll_interval: Duration::from_secs(5),
        }
    }
}

pub struct Executor<'a, P: Progress, C: Connector> {
    pub node_name: &'a str,
    pub node: &'a Node,
    pub options: Options,
    pub progress: &'a P,
    /// Opens connections to the node (again after the reboot).
    pub connector: C,
    pub run_id: String,
    pub report: ApplyReport,
}

/// Words a write adds to the kernel command line, recorded so rollback removes only those.
fn added_words(path: &str, content: &str, before: Option<&str>) -> Vec<String> {
    if path != crate::host::planner::KERNEL_CMDLINE {
        return Vec::new();
    }
    let old: Vec<&str> = before.unwrap_or("").split_whitespace().collect();
    content
        .split_whitespace()
        .filter(|w| !old.contains(w))
        .map(str::to_string)
        .collect()
}

impl<'a, P: Progress, C: Connector> Executor<'a, P, C>
where
    C::Remote: Sync,
{
    /// An executor for a plan made from facts gathered in one SSH round trip already.
    pub fn new(
        node_name: &'a str,
        node: &'a Node,
        options: Options,
        progress: &'a P,
        connector: C,
    ) -> Self {
        let report = ApplyReport {
            ssh_round_trips: 1,
            ..ApplyReport::default()
        };
        Executor {
            node_name,
            node,
            options,
            progress,
            connector,
            run_id: run_id(),
            report,
        }
    }

    pub async fn gather(&mut self, remote: &C::Remote) -> Result<HostFacts> {
        self.report.ssh_round_trips += 1;
        Ok(gather::probe(self.node_name, remote).await?.facts)
    }

    /// Run every change of `plan` in order; stops at the first failure.
    pub async fn execute(&mut self, plan: &HostPlan, facts: &HostFacts) -> Result<HostFacts> {
        let started = Instant::now();
        self.report.node = self.node_name.to_string();
        let mut remote = self.connector.connect().await?;
        if plan.needs_reboot() {
            let (refusals, _) = reboot_interlocks(facts, self.options.stop_guests);
            if let Some(r) = refusals.first() {
                self.connector.close(remote).await;
                return Err(hinted(
                    format!("{}: {} (nothing was changed)", self.node_name, r.reason),
                    r.hint.clone(),
                ));
            }
        }
        let mut current = facts.clone();
        let total = plan.changes.len();
        for (i, change) in plan.changes.iter().enumerate() {
            let what = change.action.describe();
            let task = begin_step(self.progress, self.node_name, i, total, change);
            let t = Instant::now();
            let result = match &change.action {
                Action::Reboot => {
                    remote = self.reboot(remote, &current).await?;
                    current = self.gather(&remote).await?;
                    Ok(String::new())
                }
                _ => self.run_change(&remote, change, &task).await,
            };
            task.done(result.is_ok());
            let outcome = StepOutcome::of_script(&change.step, &what, t, &result);
            self.report.steps.push(outcome);
            if let Err(e) = result {
                self.connector.close(remote).await;
                self.report.seconds = started.elapsed().as_secs_f64();
                return Err(e.context(format!(
                    "{} failed on {}: {what}",
                    change.step, self.node_name
                )));
            }
        }
        if !plan.needs_reboot() {
            current = self.gather(&remote).await?;
        }
        self.connector.close(remote).await;
        if self.options.verify {
            self.report.postconditions =
                postconditions(self.node_name, self.node, plan, facts, &current);
        }
        self.report.ok = self.report.postconditions.iter().all(Check::passed);
        self.report.seconds = started.elapsed().as_secs_f64();
        Ok(current)
    }

    async fn run_change(
        &mut self,
        remote: &C::Remote,
        change: &Change,
        task: &Task,
    ) -> Result<String> {
        let script = match &change.action {
            Action::WriteFile {
                path,
                content,
                mode,
                before,
            } => scripts::write_file(
                &self.run_id,
                path,
                content,
                mode,
                before.as_deref(),
                &added_words(path, content, before.as_deref()),
            ),
            Action::RemoveFile { path, .. } => scripts::remove_file(&self.run_id, path),
            Action::Run { command } => scripts::run_command(command),
            Action::Reboot => unreachable!("reboots are handled by execute"),
        };
        // the step's output lines are shown as the task's last line while it runs
        let out = run_watched_counted(&mut self.report, remote, &script, &task.watcher()).await?;
        out.succeeded(|text| text.trim().to_string())
    }

    async fn stop_guests(&mut self, remote: &C::Remote, facts: &HostFacts) -> Result<()> {
        for g in facts.guests.iter().filter(|g| g.status == "running") {
            let cmd = match g.kind {
                crate::facts::pve::GuestKind::Vm => format!("qm shutdown {} --timeout 600", g.vmid),
                crate::facts::pve::GuestKind::Container => {
                    format!("pct shutdown {} --timeout 600", g.vmid)
                }
            };
            self.progress.say(&format!(
                "{}: shutting down guest {} ({}) through Proxmox",
                self.node_name, g.vmid, g.name
            ));
            let out = run_counted(&mut self.report, remote, &scripts::run_command(&cmd)).await?;
            if out.status != Some(0) {
                anyhow::bail!("`{cmd}` failed: {}", out.stderr.trim());
            }
        }
        Ok(())
    }

    /// Stop guests where asked, then reboot and wait for the new boot ([`reboot_and_wait`]).
    async fn reboot(&mut self, remote: C::Remote, facts: &HostFacts) -> Result<C::Remote> {
        let (refusals, running) = reboot_interlocks(facts, self.options.stop_guests);
        if let Some(r) = refusals.first() {
            self.connector.close(remote).await;
            return Err(hinted(r.reason.clone(), r.hint.clone()));
        }
        if !running.is_empty() {
            self.stop_guests(&remote, facts).await?;
        }
        let wait = RebootWait {
            name: self.node_name,
            subject: self.node_name,
            timeout: self.options.reboot_timeout,
            poll_interval: self.options.poll_interval,
            timeout_hint: "check the node's console; when it is up, run `pvegpu apply` again (it re-reads the node and continues); `pvegpu rollback` undoes pvegpu's changes",
            as_root: |s| s.to_string(),
        };
        reboot_and_wait(
            &self.connector,
            remote,
            facts.boot_id.as_deref(),
            &wait,
            self.progress,
            &mut self.report,
        )
        .await
    }
}

impl Default for Options {
    /// What `apply` runs with unless told otherwise.
    fn default() -> Self {
        Options::new(false, Duration::from_secs(600), true)
    }
}

/// What the host phase hands the VM phase: the host's facts and a plan made from them.
pub struct HostNow {
    pub facts: HostFacts,
    pub plan: HostPlan,
}

/// The host phase of one node: facts over SSH, the host plan, its executor.
pub struct HostPhase<'a> {
    pub name: &'a str,
    pub node: &'a Node,
    pub options: &'a Options,
}

impl Phase for HostPhase<'_> {
    type Input = ();
    type Facts = Gathered;
    type Plan = HostPlan;
    type Output = HostNow;

    async fn gather(&self, _: &()) -> Result<Gathered> {
        gather::live(self.name, self.node).await
    }

    fn plan(&self, _: &(), facts: &Gathered) -> Result<HostPlan> {
        Ok(crate::host::planner::plan(
            self.name,
            self.node,
            &facts.facts,
        )?)
    }

    fn hand_over(&self, facts: &Gathered, plan: &HostPlan) -> HostNow {
        HostNow {
            facts: facts.facts.clone(),
            plan: plan.clone(),
        }
    }

    /// A plan with nothing to do is only checked (its facts came in one round trip); else the
    /// executor runs it, and the VM phase starts from the host as it is after.
    async fn apply<P: Progress>(
        &self,
        _: &(),
        facts: &Gathered,
        plan: &HostPlan,
        progress: &P,
    ) -> Applied<HostNow> {
        if plan.is_empty() {
            let mut applied = Applied::checked(
                self.postconditions(facts, plan),
                self.hand_over(facts, plan),
            );
            applied.report.ssh_round_trips = 1;
            return applied;
        }
        let connector = SshConnector::node(&self.node.ssh, self.node.ssh_config.clone());
        let mut exec = Executor::new(
            self.name,
            self.node,
            self.options.clone(),
            progress,
            connector,
        );
        let result = exec.execute(plan, &facts.facts).await.and_then(|after| {
            let plan = crate::host::planner::plan(self.name, self.node, &after)?;
            Ok(HostNow { facts: after, plan })
        });
        Applied {
            report: exec.report,
            result,
        }
    }

    fn postconditions(&self, facts: &Gathered, plan: &HostPlan) -> Vec<Check> {
        postconditions(self.name, self.node, plan, &facts.facts, &facts.facts)
    }
}
