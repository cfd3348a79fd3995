//! One node, phase after phase: the host's facts and plan; the VM's plan once the Proxmox API
//! is reached, with what the host hands over; the guest's plan once the VM has nothing left.
//! `plan`, `apply` and `verify` all walk a node through here, so they judge it the same way.

use crate::core::plan::{PhasePlan, PlanState};
use crate::facts::HostFacts;
use crate::guest::phase::GuestPhasePlan;
use crate::host::gather::{self, Gathered};
use crate::host::plan::HostPlan;
use crate::host::planner;
use crate::inventory::{Inventory, Node};
use crate::vm::phase::{Phase, host_readiness};
use crate::vm::{HostReadiness, VmPlan};
use anyhow::Result;
use serde::Serialize;

/// Where the host's facts come from.
pub enum HostSource {
    /// The probe over SSH, now.
    Live,
    /// A facts file read before (`--facts`).
    Saved(Box<Gathered>),
}

/// What to do when a later phase cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreachable {
    /// An error: the command needs every phase.
    Fail,
    /// Leave the phase out with a warning: an offline plan (`plan --facts`) is what the user
    /// asked for, and the API or guest may well be out of reach from here.
    LeaveOut,
}

/// The host phase: the facts and the plan made from them.
pub struct HostStage {
    pub gathered: Gathered,
    pub plan: HostPlan,
}

impl HostStage {
    pub fn facts(&self) -> &HostFacts {
        &self.gathered.facts
    }
}

/// The VM phase: the API connection, the plan, and the address the guest agent reports when
/// the guest is reached through it.
pub struct VmStage {
    pub phase: Phase,
    pub plan: VmPlan,
    pub agent_address: Option<String>,
}

/// A node's phases, planned in order.
pub struct NodePlan {
    pub name: String,
    pub host: HostStage,
    pub vm: Option<VmStage>,
    pub guest: Option<GuestPhasePlan>,
    /// Phases an offline plan left out, with why.
    pub left_out: Vec<LeftOut>,
}

/// A phase that could not be reached and was left out of an offline plan.
pub struct LeftOut {
    pub phase: &'static str,
    pub error: anyhow::Error,
}

/// The JSON of a node's plan: the host plan's fields, then `vm` and `guest`.
#[derive(Serialize)]
struct NodePlanJson<'a> {
    #[serde(flatten)]
    host: &'a HostPlan,
    vm: Option<&'a VmPlan>,
    guest: Option<&'a GuestPhasePlan>,
}

impl Serialize for NodePlan {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        NodePlanJson {
            host: &self.host.plan,
            vm: self.vm.as_ref().map(|v| &v.plan),
            guest: self.guest.as_ref(),
        }
        .serialize(s)
    }
}

impl NodePlan {
    /// Every phase's state, in order (phases the node does not have are left out).
    pub fn states(&self) -> Vec<PlanState<'_>> {
        let mut out = vec![self.host.plan.state()];
        out.extend(self.vm.as_ref().map(|v| v.plan.state()));
        out.extend(self.guest.as_ref().map(|g| g.state()));
        out
    }

    pub fn refused(&self) -> bool {
        self.states().into_iter().any(PlanState::refused)
    }

    /// Converged in every phase (a phase that waits is not).
    pub fn nothing_to_do(&self) -> bool {
        self.states().into_iter().all(PlanState::nothing_to_do)
    }

    pub fn render_text(&self) -> String {
        let mut s = self.host.plan.render_text();
        if let Some(v) = &self.vm {
            s.push_str(&v.plan.render_text());
        }
        if let Some(g) = &self.guest {
            s.push_str(&g.render_text());
        }
        s
    }
}

/// One inventory node, walked through its phases.
pub struct Pipeline<'a> {
    pub inv: &'a Inventory,
    pub name: &'a str,
    pub node: &'a Node,
}

impl<'a> Pipeline<'a> {
    pub fn new(inv: &'a Inventory, name: &'a str, node: &'a Node) -> Self {
        Pipeline { inv, name, node }
    }

    /// The host's facts (one SSH round trip, or the saved file) and its plan.
    pub async fn host(&self, source: HostSource) -> Result<HostStage> {
        let gathered = self.gather_host(source).await?;
        self.plan_host(gathered)
    }

    pub async fn gather_host(&self, source: HostSource) -> Result<Gathered> {
        match source {
            HostSource::Saved(g) => Ok(*g),
            HostSource::Live => gather::live(self.inv, self.name, self.node).await,
        }
    }

    pub fn plan_host(&self, gathered: Gathered) -> Result<HostStage> {
        let plan = planner::plan(self.name, self.node, &gathered.facts)?;
        Ok(HostStage { gathered, plan })
    }

    /// The API connection of a node with a `[vm]` table (`None` without one).
    pub async fn connect_vm(&self, host: &HostStage) -> Result<Option<Phase>> {
        Phase::connect(self.inv, self.name, self.node, Some(host.facts())).await
    }

    /// The VM's plan, given what the host phase hands over now.
    pub async fn plan_vm(&self, phase: &Phase, host: &HostStage) -> Result<VmPlan> {
        let ready = host_readiness(self.name, self.node, host.facts(), &host.plan);
        phase.plan(self.name, self.node, &ready).await
    }

    /// The VM phase: connect, plan, and ask the guest agent for the guest's address when the
    /// guest is reached through it.
    pub async fn vm(&self, host: &HostStage) -> Result<Option<VmStage>> {
        let Some(phase) = self.connect_vm(host).await? else {
            return Ok(None);
        };
        let plan = self.plan_vm(&phase, host).await?;
        let agent_address =
            crate::guest::phase::agent_address_after(&phase, self.node, &plan).await;
        Ok(Some(VmStage {
            phase,
            plan,
            agent_address,
        }))
    }

    /// The guest phase: planned once the VM phase has nothing left, else what it waits for.
    pub async fn guest(&self, vm: Option<&VmStage>) -> Result<Option<GuestPhasePlan>> {
        crate::guest::phase::plan(
            self.inv,
            self.name,
            self.node,
            vm.map(|v| &v.plan),
            vm.and_then(|v| v.agent_address.as_deref()),
        )
        .await
    }

    /// The VM's plan on the host as it is after the host's executor, with what the host
    /// hands over to the VM's executor.
    pub async fn replan_vm(
        &self,
        phase: &Phase,
        after: &HostFacts,
    ) -> Result<(VmPlan, HostReadiness)> {
        let host_now = planner::plan(self.name, self.node, after)?;
        let ready = host_readiness(self.name, self.node, after, &host_now);
        let plan = phase.plan(self.name, self.node, &ready).await?;
        Ok((plan, ready))
    }

    /// The guest's plan once the VM phase ran: the VM is not re-planned, the guest is reached
    /// at its configured address or the one its agent reports now.
    pub async fn replan_guest(&self, vm: Option<&VmStage>) -> Result<GuestPhasePlan> {
        let agent = match vm {
            Some(v) => {
                let vmid = self.node.vm.as_ref().and_then(|spec| spec.vmid);
                crate::guest::phase::agent_address(&v.phase, self.node, vmid).await
            }
            None => None,
        };
        crate::guest::phase::plan(self.inv, self.name, self.node, None, agent.as_deref())
            .await?
            .ok_or_else(|| anyhow::anyhow!("node {} has no [vm.guest] table", self.name))
    }

    /// Every phase in order. With [`Unreachable::LeaveOut`], a VM or guest phase that cannot
    /// be reached is left out, with the error, instead of failing the node.
    pub async fn plan(&self, source: HostSource, unreachable: Unreachable) -> Result<NodePlan> {
        let host = self.host(source).await?;
        let mut left_out = Vec::new();
        let vm = self.vm(&host).await;
        let vm = Self::left_out("VM", unreachable, vm, &mut left_out)?.flatten();
        // the guest is planned after a VM phase, never in place of one left out
        let guest = match &vm {
            Some(v) => {
                let guest = self.guest(Some(v)).await;
                Self::left_out("guest", unreachable, guest, &mut left_out)?.flatten()
            }
            None => None,
        };
        Ok(NodePlan {
            name: self.name.to_string(),
            host,
            vm,
            guest,
            left_out,
        })
    }

    fn left_out<T>(
        phase: &'static str,
        unreachable: Unreachable,
        result: Result<T>,
        left_out: &mut Vec<LeftOut>,
    ) -> Result<Option<T>> {
        match (result, unreachable) {
            (Ok(t), _) => Ok(Some(t)),
            (Err(e), Unreachable::Fail) => Err(e),
            (Err(error), Unreachable::LeaveOut) => {
                left_out.push(LeftOut { phase, error });
                Ok(None)
            }
        }
    }
}
