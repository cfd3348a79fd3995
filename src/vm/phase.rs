//! The VM phase ([`VmPhase`], a [`crate::core::phase::Phase`]): connect, gather, plan; apply,
//! then re-gather and re-plan to prove nothing is left.

use super::connect::{self, ConnectError};
use super::exec::VmExecutor;
use super::gather::gather;
use super::planner::{self, HostReadiness, Inputs, VmPlan};
use super::readiness::readiness;
use super::state::ApiFacts;
use crate::core::check::{Check, Layer};
use crate::core::phase::Applied;
use crate::core::plan::PhasePlan;
use crate::core::progress::Progress;
use crate::facts::HostFacts;
use crate::host::exec::HostNow;
use crate::host::plan::HostPlan;
use crate::inventory::vm::{ApiSettings, VmSpec};
use crate::inventory::{Inventory, Node};
use crate::pve::{Api, PveClient};
use anyhow::{Context, Result};

/// A node's VM phase, connected.
pub struct Phase<A: Api = PveClient> {
    pub client: A,
    pub pve_node: String,
    ssh_key: Option<String>,
}

/// The Proxmox node name: the inventory's `api.node`, else the host's own name.
fn pve_node_name(name: &str, node: &Node, facts: Option<&HostFacts>) -> String {
    node.api
        .as_ref()
        .and_then(|a| a.node.clone())
        .or_else(|| facts.map(|f| f.hostname.split('.').next().unwrap_or("").to_string()))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| name.to_string())
}

impl Phase {
    /// `None` when the node has no `[vm]` table.
    pub async fn connect(
        inv: &Inventory,
        name: &str,
        node: &Node,
        facts: Option<&HostFacts>,
    ) -> Result<Option<Phase>> {
        let Some(vm) = &node.vm else { return Ok(None) };
        let Some(api) = &node.api else {
            return Err(crate::core::error::hinted(
                format!(
                    "{}: node `{name}` has a [vm] table but no [api] table",
                    inv.path.display()
                ),
                "add `[nodes.NAME.api]` with `url` and credentials (see inventories/osm45.toml)",
            ));
        };
        let ssh_key = match vm.cloud_init.as_ref().and_then(|c| c.ssh_key_file.as_ref()) {
            Some(p) => Some(crate::core::input::read_text(p).with_context(|| {
                format!(
                    "{}: node `{name}`: cannot read cloud_init.ssh_key_file {}",
                    inv.path.display(),
                    p.display()
                )
            })?),
            None => None,
        };
        let client = connect::client(&inv.path, name, api)
            .await
            .map_err(|e: ConnectError| anyhow::Error::new(e))
            .with_context(|| format!("cannot use the Proxmox API of {name}"))?;
        Ok(Some(Phase::new(
            client,
            pve_node_name(name, node, facts),
            ssh_key,
        )))
    }
}

impl<A: Api> Phase<A> {
    /// A phase over any API, e.g. an in-memory one in tests.
    pub fn new(client: A, pve_node: String, ssh_key: Option<String>) -> Self {
        Phase {
            client,
            pve_node,
            ssh_key,
        }
    }

    /// The public key(s) cloud-init gives the VM, as read from `ssh_key_file`.
    pub fn ssh_key(&self) -> Option<&str> {
        self.ssh_key.as_deref()
    }

    pub async fn plan(&self, name: &str, node: &Node, host: &HostReadiness) -> Result<VmPlan> {
        let (spec, _) = tables(name, node)?;
        let facts = self.gather(name, spec).await?;
        self.plan_from(name, node, host, &facts)
    }

    async fn gather(&self, name: &str, spec: &VmSpec) -> Result<ApiFacts> {
        gather(&self.client, &self.pve_node, spec)
            .await
            .with_context(|| format!("cannot read the VM state of {name} from the Proxmox API"))
    }

    fn plan_from(
        &self,
        name: &str,
        node: &Node,
        host: &HostReadiness,
        facts: &ApiFacts,
    ) -> Result<VmPlan> {
        let (spec, api) = tables(name, node)?;
        Ok(planner::plan(&Inputs {
            node: name,
            spec,
            api,
            host,
            ssh_key: self.ssh_key.as_deref(),
            facts,
        }))
    }

    /// Apply `plan`, then check: a fresh plan is empty and the VM runs.
    pub async fn apply<P: Progress>(
        &self,
        name: &str,
        node: &Node,
        plan: &VmPlan,
        host: &HostReadiness,
        progress: &P,
    ) -> Result<Vec<Check>> {
        let (spec, _) = tables(name, node)?;
        let ready = match (&host.converged, host.devices.iter().find(|d| !d.on_vfio)) {
            (false, _) => Err(host
                .pending
                .clone()
                .unwrap_or_else(|| "the host is not converged".into())),
            (true, Some(d)) => Err(format!("{} is not on vfio-pci", d.slot)),
            (true, None) => Ok(()),
        };
        let address = VmExecutor::new(&self.client, progress)
            .execute(plan, spec, ready)
            .await
            .map_err(anyhow::Error::new)?;
        let after = self.plan(name, node, host).await?;
        Ok(postconditions(&after, address.as_deref()))
    }
}

/// The VM phase of one node, over its API connection.
pub struct VmPhase<'a, A: Api = PveClient> {
    pub name: &'a str,
    pub node: &'a Node,
    pub conn: &'a Phase<A>,
}

/// What the VM phase hands the guest phase.
pub struct VmNow {
    /// Why the guest cannot be planned yet.
    pub waits: Option<String>,
    /// The VM whose guest agent may be asked for the guest's address.
    pub agent_vmid: Option<u32>,
}

impl<A: Api> crate::core::phase::Phase for VmPhase<'_, A> {
    type Input = HostNow;
    type Facts = ApiFacts;
    type Plan = VmPlan;
    type Output = VmNow;

    async fn gather(&self, _: &HostNow) -> Result<ApiFacts> {
        let (spec, _) = tables(self.name, self.node)?;
        self.conn.gather(self.name, spec).await
    }

    fn plan(&self, host: &HostNow, facts: &ApiFacts) -> Result<VmPlan> {
        let ready = readiness(self.name, self.node, &host.facts, &host.plan);
        self.conn.plan_from(self.name, self.node, &ready, facts)
    }

    /// The guest is planned once the VM runs as the inventory says.
    fn hand_over(&self, _: &ApiFacts, plan: &VmPlan) -> VmNow {
        let waits = if !plan.state().nothing_to_do() {
            Some(format!(
                "the VM phase has {} step(s) left; the guest is planned once the VM runs as the inventory says",
                plan.steps.len()
            ))
        } else if !plan.running {
            Some("the VM is not running".into())
        } else {
            None
        };
        VmNow {
            waits,
            agent_vmid: plan.vmid.filter(|_| plan.is_empty()),
        }
    }

    /// Apply `plan`, then check: a fresh plan is empty and the VM runs.
    async fn apply<P: Progress>(
        &self,
        host: &HostNow,
        _: &ApiFacts,
        plan: &VmPlan,
        progress: &P,
    ) -> Applied<VmNow> {
        let ready = readiness(self.name, self.node, &host.facts, &host.plan);
        match self
            .conn
            .apply(self.name, self.node, plan, &ready, progress)
            .await
        {
            // the guest's address is asked of the agent of the VM the inventory names
            Ok(checks) => Applied::checked(
                checks,
                VmNow {
                    waits: None,
                    agent_vmid: self.node.vm.as_ref().and_then(|v| v.vmid),
                },
            ),
            Err(e) => Applied::stopped(e),
        }
    }

    fn postconditions(&self, _: &ApiFacts, plan: &VmPlan) -> Vec<Check> {
        postconditions(plan, None)
    }
}

/// The node's `[vm]` and `[api]` tables, which [`Phase::connect`] requires.
fn tables<'n>(name: &str, node: &'n Node) -> Result<(&'n VmSpec, &'n ApiSettings)> {
    match (&node.vm, &node.api) {
        (Some(vm), Some(api)) => Ok((vm, api)),
        _ => anyhow::bail!("node `{name}` needs a [vm] and an [api] table for the VM phase"),
    }
}

/// What must hold once the VM phase is done, read from a fresh plan: nothing left to do,
/// and the VM running (reachable at `address` when apply started it).
pub fn postconditions(after: &VmPlan, address: Option<&str>) -> Vec<Check> {
    let vmid = after.vmid.unwrap_or(0);
    vec![
        Check::judged(
            Layer::Vm,
            format!("VM {vmid} matches the inventory"),
            after.is_empty() && after.refusals.is_empty(),
            if after.is_empty() {
                format!(
                    "a fresh plan has nothing left; devices: {}",
                    after.devices.join(", ")
                )
            } else {
                format!("a fresh plan still has {} step(s)", after.steps.len())
            },
            "the VM differs from what the inventory asks for",
            "`pvegpu plan` shows what is left; `pvegpu apply` converges it",
        ),
        Check::judged(
            Layer::Vm,
            format!("VM {vmid} running"),
            after.running,
            match address {
                Some(a) => format!("reachable at {a}"),
                None if after.running => "running".into(),
                None => "not running".into(),
            },
            "the VM is stopped",
            "start it in Proxmox, or run `pvegpu apply` again",
        ),
    ]
}

/// The facts the host phase hands over.
pub fn host_readiness(
    name: &str,
    node: &Node,
    facts: &HostFacts,
    plan: &HostPlan,
) -> HostReadiness {
    readiness(name, node, facts, plan)
}
