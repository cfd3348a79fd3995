//! The guest phase ([`GuestPhase`], a [`crate::core::phase::Phase`]): reach the guest over SSH
//! (its host key recorded on first use), gather, plan; apply, re-plan after each reboot, and
//! prove a fresh plan empty.

use super::access::{GuestAccess, access};
use super::exec::{GuestExecutor, GuestOptions, postconditions};
use super::gather::{self, GuestGathered};
use super::planner::{self, GuestPlan};
use crate::core::check::Check;
use crate::core::outcome::ApplyReport;
use crate::core::phase::Applied;
use crate::core::plan::{PhasePlan, PlanState};
use crate::core::progress::Progress;
use crate::inventory::guest::GuestSpec;
use crate::inventory::{Inventory, Node};
use crate::pve::Api as _;
use crate::transport::ssh::{ConnectFailure, GuestKeys, SshConnector, SshError, SshRemote};
use crate::vm::phase::{Phase, VmNow};
use anyhow::{Context, Result};
use serde::Serialize;

/// The guest part of a node's plan: the plan, or why there is none yet.
#[derive(Debug, Serialize)]
pub struct GuestPhasePlan {
    /// The SSH destination the guest was (or will be) reached at.
    pub destination: Option<String>,
    #[serde(flatten)]
    pub stage: GuestStage,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum GuestStage {
    /// The guest cannot be planned yet (the VM phase has work left, or the guest does not
    /// answer): what it waits for.
    Waiting {
        waits_for: String,
    },
    Planned(Box<GuestPlan>),
}

impl GuestPhasePlan {
    pub fn waiting(destination: Option<String>, why: impl Into<String>) -> Self {
        GuestPhasePlan {
            destination,
            stage: GuestStage::Waiting {
                waits_for: why.into(),
            },
        }
    }

    pub fn planned(&self) -> Option<&GuestPlan> {
        match &self.stage {
            GuestStage::Planned(p) => Some(p),
            GuestStage::Waiting { .. } => None,
        }
    }
}

impl PhasePlan for GuestPlan {
    fn state(&self) -> PlanState<'_> {
        crate::core::plan::state_of(&self.refusals, self.changes.is_empty())
    }
    fn render_text(&self) -> String {
        GuestPlan::render_text(self)
    }
}

impl PhasePlan for GuestPhasePlan {
    fn state(&self) -> PlanState<'_> {
        match &self.stage {
            GuestStage::Waiting { waits_for } => PlanState::Waiting(waits_for),
            GuestStage::Planned(p) => p.state(),
        }
    }

    fn render_text(&self) -> String {
        match &self.stage {
            GuestStage::Planned(p) => format!("\n{}", p.render_text()),
            GuestStage::Waiting { waits_for } => format!(
                "\nGuest{}: waits for the VM phase: {waits_for}\n",
                self.destination
                    .as_deref()
                    .map(|d| format!(" {d}"))
                    .unwrap_or_default()
            ),
        }
    }
}

/// The node's `[vm.guest]`, if any.
pub fn spec(node: &Node) -> Option<&GuestSpec> {
    node.vm.as_ref().and_then(|v| v.guest.as_ref())
}

/// The address the guest agent reports, asked only when the SSH destination depends on it
/// (no `ssh` in `[vm.guest]` and a DHCP cloud-init address).
pub async fn agent_address(phase: &Phase, node: &Node, vmid: Option<u32>) -> Option<String> {
    let vm = node.vm.as_ref()?;
    if vm.guest.as_ref().is_some_and(|g| g.ssh.is_some())
        || vm.cloud_init.as_ref().is_none_or(|c| c.ip != "dhcp")
    {
        return None;
    }
    let vmid = vmid?.to_string();
    let path = crate::pve::request::api_path(&[
        "nodes",
        &phase.pve_node,
        "qemu",
        &vmid,
        "agent",
        "network-get-interfaces",
    ]);
    let v: serde_json::Value = phase
        .client
        .get(&path, &crate::pve::Params::new())
        .await
        .ok()?;
    crate::vm::exec::agent_ipv4(&v)
}

fn unreachable(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<SshError>(),
            Some(SshError::Connect {
                kind: ConnectFailure::Unreachable,
                ..
            })
        )
    })
}

/// One connection: the probe (and the model headers), then close.
pub async fn gather_live(
    name: &str,
    target: &GuestAccess,
    spec: &GuestSpec,
) -> Result<GuestGathered> {
    tracing::info!(
        node = name,
        destination = target.destination,
        "gathering guest facts over SSH"
    );
    let remote = SshRemote::connect_guest(
        &target.destination,
        target.ssh_config.clone(),
        &GuestKeys::InStateDir,
    )
    .await
    .with_context(|| format!("cannot reach the guest of {name}"))?;
    let result = gather::probe(
        &format!("{name}/guest"),
        &remote,
        spec.triton.as_ref().map(|t| t.model_repository.as_str()),
    )
    .await;
    remote.close().await;
    result
}

/// What the guest phase starts from: what it waits for, or the guest as gathered and how it
/// was reached.
pub enum GuestSeen {
    Waits {
        destination: Option<String>,
        why: String,
    },
    Reached {
        gathered: Box<GuestGathered>,
        access: GuestAccess,
    },
}

/// The guest phase of one node: reached over SSH at its configured address or the one the
/// guest agent reports through the VM's API connection.
pub struct GuestPhase<'a> {
    pub inv: &'a Inventory,
    pub name: &'a str,
    pub node: &'a Node,
    pub spec: &'a GuestSpec,
    pub vm: &'a Phase,
    pub options: GuestOptions,
}

impl crate::core::phase::Phase for GuestPhase<'_> {
    type Input = VmNow;
    type Facts = GuestSeen;
    type Plan = GuestPhasePlan;
    type Output = ();

    /// One connection to the guest (the probe and the model headers), or what it waits for.
    async fn gather(&self, vm: &VmNow) -> Result<GuestSeen> {
        let agent = agent_address(self.vm, self.node, vm.agent_vmid).await;
        let target = access(self.inv, self.name, self.node, agent.as_deref());
        let destination = target.as_ref().ok().map(|a| a.destination.clone());
        if let Some(why) = &vm.waits {
            return Ok(GuestSeen::Waits {
                destination,
                why: why.clone(),
            });
        }
        let access = target?;
        match gather_live(self.name, &access, self.spec).await {
            Ok(gathered) => Ok(GuestSeen::Reached {
                gathered: Box::new(gathered),
                access,
            }),
            Err(e) if unreachable(&e) => Ok(GuestSeen::Waits {
                why: format!(
                    "the guest does not answer over SSH at {}",
                    access.destination
                ),
                destination: Some(access.destination),
            }),
            Err(e) => Err(e),
        }
    }

    fn plan(&self, _: &VmNow, seen: &GuestSeen) -> Result<GuestPhasePlan> {
        Ok(match seen {
            GuestSeen::Waits { destination, why } => {
                GuestPhasePlan::waiting(destination.clone(), why.clone())
            }
            GuestSeen::Reached { gathered, access } => GuestPhasePlan {
                destination: Some(access.destination.clone()),
                stage: GuestStage::Planned(Box::new(planner::plan(self.spec, &gathered.facts)?)),
            },
        })
    }

    fn hand_over(&self, _: &GuestSeen, _: &GuestPhasePlan) {}

    /// Apply a guest plan: the executor's report (postconditions included) and whether it ran
    /// to the end. A plan with nothing to do is only checked; one with refusals changes
    /// nothing.
    async fn apply<P: Progress>(
        &self,
        _: &VmNow,
        seen: &GuestSeen,
        plan: &GuestPhasePlan,
        progress: &P,
    ) -> Applied<()> {
        let (GuestSeen::Reached { gathered, access }, Some(plan)) = (seen, plan.planned()) else {
            let e = anyhow::anyhow!("the guest of {} was not reached", self.name);
            return Applied::stopped(e);
        };
        if plan.is_empty() {
            return Applied::checked(postconditions(plan), ());
        }
        let guest = format!("{}/guest", self.name);
        let connector = SshConnector::guest(
            &access.destination,
            access.ssh_config.clone(),
            GuestKeys::InStateDir,
        );
        let mut exec =
            GuestExecutor::new(&guest, self.spec, self.options.clone(), progress, connector);
        // the plan's facts came in one round trip already
        exec.report.ssh_round_trips = 1;
        let result = exec.execute(plan, &gathered.facts).await.map(|_| ());
        let r = exec.report;
        Applied {
            report: ApplyReport {
                steps: r.steps,
                reboots: r.reboots,
                ssh_round_trips: r.ssh_round_trips,
                postconditions: r.postconditions,
                ..Default::default()
            },
            result,
        }
    }

    fn postconditions(&self, _: &GuestSeen, plan: &GuestPhasePlan) -> Vec<Check> {
        plan.planned().map(postconditions).unwrap_or_default()
    }
}
