//! Which functions a node's targets really mean (whether each can leave the host safely is
//! [`super::verdict`]'s question).

use crate::core::plan::Refusal;
use crate::facts::{HostFacts, PciDevice};
use crate::inventory::Node;
use crate::pci::PciAddress;
use std::collections::BTreeSet;

/// The functions a node's `gpus` entries name, grown by the other functions of the same card
/// that share their IOMMU group (vfio needs the whole group off the host).
pub fn resolve_targets(
    node_name: &str,
    node: &Node,
    facts: &HostFacts,
) -> (BTreeSet<PciAddress>, Vec<Refusal>, Vec<String>) {
    let mut targets = BTreeSet::new();
    let mut refusals = Vec::new();
    let mut notes = Vec::new();
    for entry in &node.gpus {
        let found: Vec<&PciDevice> = facts
            .devices
            .iter()
            .filter(|d| entry.address.covers(&d.address))
            .collect();
        if found.is_empty() {
            refusals.push(Refusal {
                reason: format!("no PCI device at {} on node {node_name}", entry.address),
                hint: format!("run `pvegpu discover --node {node_name}` to list the node's devices and correct the address in the inventory"),
            });
            continue;
        }
        if let Some(expected) = entry.id {
            let primary = found
                .iter()
                .find(|d| d.address.function == entry.address.function.or(Some(0)))
                .unwrap_or(&found[0]);
            if primary.id != expected {
                refusals.push(Refusal {
                    reason: format!(
                        "{} is [{}] {}, but the inventory expects {expected} there",
                        primary.address,
                        primary.id,
                        primary.short_name()
                    ),
                    hint: "were cards moved or replaced? Check with `pvegpu discover` and update the inventory".into(),
                });
                continue;
            }
        }
        targets.extend(found.iter().map(|d| d.address));
    }
    let mut joined = Vec::new();
    for t in targets.clone() {
        let Some(group) = facts.device(&t).and_then(|d| d.iommu_group) else {
            continue;
        };
        for m in facts.group_members(group) {
            if !targets.contains(&m.address) && m.address.slot() == t.slot() && !m.is_bridge() {
                targets.insert(m.address);
                joined.push(m.address);
            }
        }
    }
    for j in joined {
        notes.push(format!(
            "{j} joins the targets: it is a function of the same card and shares its IOMMU group"
        ));
    }
    (targets, refusals, notes)
}
