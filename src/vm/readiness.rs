//! What the host phase hands to the VM phase: whether the node is converged, and the facts
//! of each card it verified (read over SSH, not from the API), which the PCI mappings carry.

use super::planner::{HostDevice, HostReadiness};
use crate::facts::HostFacts;
use crate::host::plan::HostPlan;
use crate::inventory::Node;

pub fn readiness(
    node_name: &str,
    node: &Node,
    facts: &HostFacts,
    plan: &HostPlan,
) -> HostReadiness {
    let (targets, _, _) = crate::host::analysis::resolve_targets(node_name, node, facts);
    let mut devices = Vec::new();
    for entry in &node.gpus {
        let slot = entry.address.slot();
        let functions: Vec<_> = targets.iter().filter(|t| slot.covers(t)).collect();
        let Some(primary) = functions
            .iter()
            .filter_map(|a| facts.device(a))
            .min_by_key(|d| d.address.function)
        else {
            continue;
        };
        devices.push(HostDevice {
            slot: slot.to_string(),
            id: primary.id.to_string(),
            subsystem: primary.subsystem.map(|s| s.to_string()),
            iommu_group: primary.iommu_group,
            name: primary.short_name(),
            on_vfio: functions.iter().all(|a| {
                facts
                    .device(a)
                    .is_some_and(|d| d.driver.as_deref() == Some("vfio-pci"))
            }),
        });
    }
    let converged = plan.refusals.is_empty() && plan.is_empty();
    HostReadiness {
        converged,
        pending: if !plan.refusals.is_empty() {
            Some("the host phase refuses this node".into())
        } else if !plan.is_empty() {
            Some(format!(
                "the host phase has {} change(s) left{}",
                plan.changes.len(),
                if plan.needs_reboot() {
                    " and a reboot"
                } else {
                    ""
                }
            ))
        } else {
            None
        },
        devices,
    }
}
