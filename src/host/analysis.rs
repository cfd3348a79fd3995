//! What the facts say about passthrough: which functions a target really means, and whether
//! each can leave the host safely. Shared by `discover` (verdicts) and the planner (refusals).

use crate::core::plan::Refusal;
use crate::facts::{CpuVendor, HostFacts, PciDevice};
use crate::inventory::Node;
use crate::pci::PciAddress;
use std::collections::BTreeSet;

/// Problems that make a device unsafe to take from the host, each with the way out.
pub fn device_problems(
    facts: &HostFacts,
    dev: &PciDevice,
    targets: &BTreeSet<PciAddress>,
) -> Vec<Refusal> {
    let mut out = Vec::new();
    if dev.boot_vga {
        out.push(Refusal {
            reason: format!("{} is the boot VGA device: the host's console and firmware framebuffer use it", dev.address),
            hint: "select another GPU as primary display in the firmware setup (or add a cheap card for the host), then run discover again".into(),
        });
    }
    if let Some(group) = dev.iommu_group {
        let foreign: Vec<String> = facts
            .group_members(group)
            .into_iter()
            .filter(|m| {
                !(m.is_bridge()
                    || targets.contains(&m.address)
                    || m.address.slot() == dev.address.slot())
            })
            .map(|m| format!("{} ({}: {})", m.address, m.class_name, m.short_name()))
            .collect();
        if !foreign.is_empty() {
            out.push(Refusal {
                reason: format!(
                    "{} shares IOMMU group {group} with {}, which the host would lose too",
                    dev.address.slot(),
                    foreign.join(", ")
                ),
                hint: "move the card to a slot whose IOMMU group holds only the card (see `pvegpu discover`), or enable ACS in the firmware; pvegpu does not use pcie_acs_override, which only pretends isolation".into(),
            });
        }
    }
    let group_of = |a: &PciAddress| facts.device(a).and_then(|d| d.iommu_group);
    let same_place = |a: &PciAddress| {
        *a == dev.address || (dev.iommu_group.is_some() && group_of(a) == dev.iommu_group)
    };
    for ctrl in facts.root.controllers.iter().filter(|c| same_place(c)) {
        out.push(Refusal {
            reason: format!(
                "{} is or shares an IOMMU group with {ctrl}, the controller of the root filesystem",
                dev.address
            ),
            hint: "the host would not boot; choose another device or move the card".into(),
        });
    }
    for nic in facts.management.nics.iter().filter(|c| same_place(c)) {
        out.push(Refusal {
            reason: format!(
                "{} is or shares an IOMMU group with {nic}, the NIC behind {} that carries management traffic",
                dev.address.slot(),
                facts.management.interfaces.join(", ")
            ),
            hint: "the node would drop off the network; choose another device or move the card".into(),
        });
    }
    out
}

/// Node-wide problems: no IOMMU, no interrupt remapping.
pub fn iommu_problems(
    facts: &HostFacts,
    allow_unsafe_interrupts: bool,
) -> (Vec<Refusal>, Vec<String>) {
    let (mut refusals, mut notes) = (Vec::new(), Vec::new());
    let tech = match facts.cpu_vendor {
        CpuVendor::Amd => "AMD-Vi (IOMMU)",
        _ => "Intel VT-d",
    };
    match facts.firmware_iommu() {
        Some(false) => refusals.push(Refusal {
            reason: "the firmware describes no IOMMU (no DMAR or IVRS ACPI table)".into(),
            hint: format!("enable {tech} in the firmware setup, then run pvegpu again"),
        }),
        None => notes.push(
            "whether the firmware has an IOMMU is unknown (no ACPI table list in the facts)".into(),
        ),
        Some(true) => {}
    }
    if !facts.iommu_active() {
        notes.push("the IOMMU is not active yet: IOMMU groups and interrupt remapping are checked after the reboot".into());
        return (refusals, notes);
    }
    match facts.kernel_log.irq_remapping {
        Some(true) => {}
        _ if allow_unsafe_interrupts => notes.push(
            "interrupt remapping is not confirmed; the inventory accepts allow_unsafe_interrupts, so a guest could inject interrupts into the host".into(),
        ),
        state => refusals.push(Refusal {
            reason: match state {
                Some(false) => "the kernel reports interrupt remapping is not enabled".to_string(),
                _ => "interrupt remapping is not confirmed by the kernel log (no `DMAR-IR: Enabled IRQ remapping` or `AMD-Vi: Interrupt remapping enabled`)".to_string(),
            },
            hint: "enable interrupt remapping / x2APIC in the firmware; only if the platform cannot, set `allow_unsafe_interrupts = true` under the node's [host] table and accept that a guest could attack the host".into(),
        }),
    }
    (refusals, notes)
}

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
