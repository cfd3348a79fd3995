//! One node, phase after phase: the host's facts and plan; the VM's plan once the Proxmox API
//! is reached, with what the host hands over; the guest's plan once the VM has nothing left.
//! `plan`, `apply` and `verify` all walk a node through here, so they judge it the same way.
//! Each phase is a [`Phase`]; [`Pipeline::stage`] gathers and plans any of them.

use crate::core::phase::Phase;
use crate::core::plan::{PhasePlan, PlanState};
use crate::guest::exec::GuestOptions;
use crate::guest::phase::{GuestPhase, GuestPhasePlan, GuestSeen};
use crate::host::exec::{HostPhase, Options};
use crate::host::gather::Gathered;
use crate::host::plan::HostPlan;
use crate::inventory::{Inventory, Node};
use crate::vm::VmPlan;
use crate::vm::phase::{self as vm, VmPhase};
use crate::vm::state::ApiFacts;
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

/// The last phase to plan: each is planned from what the one before it hands over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Through {
    Host,
    Vm,
    Guest,
}

/// A phase's facts and the plan made from them.
pub struct Stage<F, P> {
    pub facts: F,
    pub plan: P,
}

pub type HostStage = Stage<Gathered, HostPlan>;

/// The VM phase: the API connection, the facts read through it and the plan.
pub struct VmStage {
    pub phase: vm::Phase,
    pub facts: ApiFacts,
    pub plan: VmPlan,
}

/// A node's phases, planned in order.
pub struct NodePlan {
    pub name: String,
    pub host: HostStage,
    pub vm: Option<VmStage>,
    pub guest: Option<Stage<GuestSeen, GuestPhasePlan>>,
    /// The phases asked for: `--phase`, or every phase the node has.
    pub through: Through,
    /// Phases an offline plan could not reach, with why: the plan is incomplete.
    pub left_out: Vec<LeftOut>,
}

/// A phase that could not be reached and was left out of an offline plan.
pub struct LeftOut {
    pub phase: &'static str,
    pub error: anyhow::Error,
}

/// The JSON of a node's plan: the host plan's fields, then `vm` and `guest`, the phases asked
/// for and those left out (`null` for `vm` or `guest` means not asked, not configured, or left
/// out: `phases` says which).
#[derive(Serialize)]
struct NodePlanJson<'a> {
    state: &'static str,
    #[serde(flatten)]
    host: &'a HostPlan,
    vm: Option<&'a VmPlan>,
    guest: Option<&'a GuestPhasePlan>,
    phases: PhasesJson,
}

#[derive(Serialize)]
struct PhasesJson {
    through: Through,
    left_out: Vec<LeftOutJson>,
}

#[derive(Serialize)]
struct LeftOutJson {
    phase: &'static str,
    error: String,
}

impl Serialize for NodePlan {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        NodePlanJson {
            state: self.summary(),
            host: &self.host.plan,
            vm: self.vm.as_ref().map(|v| &v.plan),
            guest: self.guest.as_ref().map(|g| &g.plan),
            phases: PhasesJson {
                through: self.through,
                left_out: self
                    .left_out
                    .iter()
                    .map(|l| LeftOutJson {
                        phase: l.phase,
                        error: format!("{:#}", l.error),
                    })
                    .collect(),
            },
        }
        .serialize(s)
    }
}

impl NodePlan {
    /// Every phase's state, in order (phases the node does not have are left out).
    pub fn states(&self) -> Vec<PlanState<'_>> {
        let mut out = vec![self.host.plan.state()];
        out.extend(self.vm.as_ref().map(|v| v.plan.state()));
        out.extend(self.guest.as_ref().map(|g| g.plan.state()));
        out
    }

    pub fn refused(&self) -> bool {
        self.states().into_iter().any(PlanState::refused)
    }

    /// Converged in every phase (a phase that waits is not).
    pub fn nothing_to_do(&self) -> bool {
        self.states().into_iter().all(PlanState::nothing_to_do)
    }

    /// The node's plan in one word, for scripts: `refused` (a phase refuses), `waiting` (a
    /// phase waits for an earlier one), `ready` (changes to make), `incomplete` (nothing to
    /// do in what was planned, but a phase was left out), or `nothing_to_do`.
    pub fn summary(&self) -> &'static str {
        let states = self.states();
        if states.iter().any(|s| s.refused()) {
            "refused"
        } else if states.iter().any(|s| matches!(s, PlanState::Waiting(_))) {
            "waiting"
        } else if !self.nothing_to_do() {
            "ready"
        } else if !self.left_out.is_empty() {
            "incomplete"
        } else {
            "nothing_to_do"
        }
    }

    pub fn render_text(&self) -> String {
        let mut s = self.host.plan.render_text();
        if let Some(v) = &self.vm {
            s.push_str(&v.plan.render_text());
        }
        if let Some(g) = &self.guest {
            s.push_str(&g.plan.render_text());
        }
        s
    }
}

/// One inventory node, walked through its phases.
pub struct Pipeline<'a> {
    pub inv: &'a Inventory,
    pub name: &'a str,
    pub node: &'a Node,
    /// How the executors run (`apply`); planning does not read them.
    pub options: Options,
}

impl<'a> Pipeline<'a> {
    pub fn new(inv: &'a Inventory, name: &'a str, node: &'a Node) -> Self {
        Pipeline {
            inv,
            name,
            node,
            options: Options::default(),
        }
    }

    pub fn host_phase(&self) -> HostPhase<'_> {
        HostPhase {
            name: self.name,
            node: self.node,
            options: &self.options,
        }
    }

    pub fn vm_phase<'p>(&'p self, connection: &'p vm::Phase) -> VmPhase<'p> {
        VmPhase {
            name: self.name,
            node: self.node,
            conn: connection,
        }
    }

    /// `None` when the node has no `[vm.guest]` table.
    pub fn guest_phase<'p>(&'p self, connection: &'p vm::Phase) -> Option<GuestPhase<'p>> {
        Some(GuestPhase {
            inv: self.inv,
            name: self.name,
            node: self.node,
            spec: crate::guest::phase::spec(self.node)?,
            vm: connection,
            options: GuestOptions {
                reboot_timeout: self.options.reboot_timeout,
                ..Default::default()
            },
        })
    }

    /// Gather one phase and plan it.
    pub async fn stage<P: Phase>(phase: &P, input: &P::Input) -> Result<Stage<P::Facts, P::Plan>> {
        let facts = phase.gather(input).await?;
        let plan = phase.plan(input, &facts)?;
        Ok(Stage { facts, plan })
    }

    /// The host's facts (one SSH round trip, or the saved file) and its plan.
    pub async fn host(&self, source: HostSource) -> Result<HostStage> {
        let gathered = self.gather_host(source).await?;
        self.plan_host(gathered)
    }

    pub async fn gather_host(&self, source: HostSource) -> Result<Gathered> {
        match source {
            HostSource::Saved(g) => Ok(*g),
            HostSource::Live => self.host_phase().gather(&()).await,
        }
    }

    pub fn plan_host(&self, gathered: Gathered) -> Result<HostStage> {
        let plan = self.host_phase().plan(&(), &gathered)?;
        Ok(Stage {
            facts: gathered,
            plan,
        })
    }

    /// The API connection of a node with a `[vm]` table (`None` without one).
    pub async fn connect_vm(&self, host: &HostStage) -> Result<Option<vm::Phase>> {
        vm::Phase::connect(self.inv, self.name, self.node, Some(&host.facts.facts)).await
    }

    /// The VM's plan, given what the host phase hands over now.
    pub async fn plan_vm(&self, connection: &vm::Phase, host: &HostStage) -> Result<VmPlan> {
        let handed = self.host_phase().hand_over(&host.facts, &host.plan);
        Ok(Self::stage(&self.vm_phase(connection), &handed).await?.plan)
    }

    /// The VM phase: connect, gather and plan.
    pub async fn vm(&self, host: &HostStage) -> Result<Option<VmStage>> {
        let Some(phase) = self.connect_vm(host).await? else {
            return Ok(None);
        };
        let handed = self.host_phase().hand_over(&host.facts, &host.plan);
        let Stage { facts, plan } = Self::stage(&self.vm_phase(&phase), &handed).await?;
        Ok(Some(VmStage { phase, facts, plan }))
    }

    /// The guest phase: planned once the VM phase has nothing left, else what it waits for.
    pub async fn guest(&self, vm: &VmStage) -> Result<Option<Stage<GuestSeen, GuestPhasePlan>>> {
        let Some(guest) = self.guest_phase(&vm.phase) else {
            return Ok(None);
        };
        let handed = self.vm_phase(&vm.phase).hand_over(&vm.facts, &vm.plan);
        Ok(Some(Self::stage(&guest, &handed).await?))
    }

    /// Every phase in order. With [`Unreachable::LeaveOut`], a VM or guest phase that cannot
    /// be reached is left out, with the error, instead of failing the node.
    /// Phases after `through` are not gathered at all.
    pub async fn plan(
        &self,
        source: HostSource,
        unreachable: Unreachable,
        through: Through,
    ) -> Result<NodePlan> {
        let host = self.host(source).await?;
        let mut left_out = Vec::new();
        let vm = match through {
            Through::Host => None,
            _ => {
                let vm = self.vm(&host).await;
                Self::left_out("VM", unreachable, vm, &mut left_out)?.flatten()
            }
        };
        // the guest is planned after a VM phase, never in place of one left out
        let guest = match &vm {
            Some(v) if through == Through::Guest => {
                let guest = self.guest(v).await;
                Self::left_out("guest", unreachable, guest, &mut left_out)?.flatten()
            }
            _ => None,
        };
        Ok(NodePlan {
            name: self.name.to_string(),
            host,
            vm,
            guest,
            through,
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
