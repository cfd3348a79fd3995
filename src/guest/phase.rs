//! The guest phase as the commands run it: reach the guest over SSH (its host key recorded
//! on first use), gather, plan; apply, re-plan after each reboot, and prove a fresh plan empty.

use super::access::{GuestAccess, access};
use super::exec::{GuestExecutor, GuestOptions, GuestReport};
use super::gather::{self, GuestGathered};
use super::planner::{self, GuestPlan};
use crate::core::plan::{PhasePlan, PlanState};
use crate::core::progress::Progress;
use crate::inventory::guest::GuestSpec;
use crate::inventory::{Inventory, Node};
use crate::pve::Api as _;
use crate::transport::ssh::{ConnectFailure, SshConnector, SshError, SshRemote};
use crate::vm::VmPlan;
use crate::vm::phase::Phase;
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
    Planned(Box<Planned>),
}

/// A guest plan with the facts it was made from and how the guest was reached, which the
/// executor starts from.
#[derive(Debug, Serialize)]
pub struct Planned {
    #[serde(flatten)]
    pub plan: GuestPlan,
    #[serde(skip)]
    pub facts: GuestGathered,
    #[serde(skip)]
    pub access: GuestAccess,
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

    pub fn planned(&self) -> Option<&Planned> {
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
            GuestStage::Planned(p) => p.plan.state(),
        }
    }

    fn render_text(&self) -> String {
        match &self.stage {
            GuestStage::Planned(p) => format!("\n{}", p.plan.render_text()),
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

/// The guest agent's address once the VM phase has nothing left (the VM runs), when the
/// guest's SSH destination depends on it.
pub async fn agent_address_after(phase: &Phase, node: &Node, vm: &VmPlan) -> Option<String> {
    if spec(node).is_none() || !vm.is_empty() {
        return None;
    }
    agent_address(phase, node, vm.vmid).await
}

/// Gather the guest and plan it, or say what it waits for. `vm` is the VM phase's plan: the
/// guest is planned only once it has nothing left to do.
pub async fn plan(
    inv: &Inventory,
    name: &str,
    node: &Node,
    vm: Option<&VmPlan>,
    agent_address: Option<&str>,
) -> Result<Option<GuestPhasePlan>> {
    let Some(spec) = spec(node) else {
        return Ok(None);
    };
    let target = access(inv, name, node, agent_address);
    let destination = target.as_ref().ok().map(|a| a.destination.clone());
    match vm {
        Some(v) if !v.state().nothing_to_do() => {
            return Ok(Some(GuestPhasePlan::waiting(
                destination,
                format!(
                    "the VM phase has {} step(s) left; the guest is planned once the VM runs as the inventory says",
                    v.steps.len()
                ),
            )));
        }
        Some(v) if !v.running => {
            return Ok(Some(GuestPhasePlan::waiting(
                destination,
                "the VM is not running",
            )));
        }
        _ => {}
    }
    let target = target?;
    match gather_live(name, &target, spec).await {
        Ok(g) => {
            let p = planner::plan(spec, &g.facts)?;
            Ok(Some(GuestPhasePlan {
                destination: Some(target.destination.clone()),
                stage: GuestStage::Planned(Box::new(Planned {
                    plan: p,
                    facts: g,
                    access: target,
                })),
            }))
        }
        Err(e) if unreachable(&e) => Ok(Some(GuestPhasePlan::waiting(
            Some(target.destination.clone()),
            format!(
                "the guest does not answer over SSH at {}",
                target.destination
            ),
        ))),
        Err(e) => Err(e),
    }
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
    let remote = SshRemote::connect_guest(&target.destination, target.ssh_config.clone())
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

/// Apply a guest plan made by [`plan`]: the executor's report (postconditions included) and
/// whether it ran to the end. A plan with refusals changes nothing.
pub async fn apply<P: Progress>(
    name: &str,
    spec: &GuestSpec,
    planned: &Planned,
    options: GuestOptions,
    progress: &P,
) -> (GuestReport, Result<()>) {
    let guest = format!("{name}/guest");
    let connector = SshConnector::guest(
        &planned.access.destination,
        planned.access.ssh_config.clone(),
    );
    let mut exec = GuestExecutor::new(&guest, spec, options, progress, connector);
    // the plan's facts came in one round trip already
    exec.report.ssh_round_trips = 1;
    let result = exec
        .execute(&planned.plan, &planned.facts.facts)
        .await
        .map(|_| ());
    (exec.report, result)
}
