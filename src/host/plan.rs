//! The host phase's plan: the devices bound to vfio-pci and the changes that get them there.

use crate::core::plan::{
    Action, Change, PhasePlan, PlanState, Refusal, render_changes, render_verdict, state_of,
};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BoundDevice {
    pub address: String,
    pub id: String,
    pub name: String,
    pub iommu_group: Option<u32>,
    pub driver_now: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostPlan {
    pub node: String,
    pub context: String,
    /// Exactly the devices that will be on vfio-pci once converged.
    pub bind: Vec<BoundDevice>,
    /// `ids` (vfio-pci ids=) or `per-device` (driver_override by address).
    pub binding: String,
    pub changes: Vec<Change>,
    pub refusals: Vec<Refusal>,
    pub notes: Vec<String>,
}

impl PhasePlan for HostPlan {
    fn state(&self) -> PlanState<'_> {
        state_of(&self.refusals, self.changes.is_empty())
    }
    fn render_text(&self) -> String {
        HostPlan::render_text(self)
    }
}

impl HostPlan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    pub fn needs_reboot(&self) -> bool {
        self.changes.iter().any(|c| c.action == Action::Reboot)
    }

    pub fn render_text(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!("Node {}: {}\n", self.node, self.context));
        if !self.bind.is_empty() {
            out.push_str(&format!(
                "\nDevices for vfio-pci ({} binding):\n",
                self.binding
            ));
            for d in &self.bind {
                out.push_str(&format!(
                    "  {}  [{}]  group {}  now {}  {}\n",
                    d.address,
                    d.id,
                    d.iommu_group
                        .map(|g| g.to_string())
                        .unwrap_or_else(|| "?".into()),
                    d.driver_now.as_deref().unwrap_or("no driver"),
                    d.name
                ));
            }
        }
        if render_verdict(
            &mut out,
            &self.notes,
            &self.refusals,
            self.changes.is_empty(),
        ) {
            return out;
        }
        render_changes(&mut out, &self.changes);
        out
    }
}
