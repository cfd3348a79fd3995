//! `pvegpu discover`: every PCI device of a node and a verdict for each GPU. Pure: facts in,
//! report out.

use super::analysis::resolve_targets;
use super::planner::kernel_summary;
use super::verdict::{self, Accepted, DeviceVerdict, State, Verdict};
use crate::facts::HostFacts;
use crate::facts::boot::BootLoader;
use crate::inventory::Node;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Serialize)]
pub struct Device {
    pub address: String,
    pub class: String,
    pub class_name: String,
    pub id: String,
    pub name: String,
    pub iommu_group: Option<u32>,
    pub driver: Option<String>,
    pub boot_vga: Option<bool>,
    pub reset_methods: Vec<String>,
}

/// One display device or target and its verdict.
#[derive(Debug, Serialize)]
pub struct Judged {
    pub name: String,
    pub class: String,
    /// The functions that would go to the VM with it (same card, same group).
    pub with: Vec<String>,
    /// Named in the inventory's `gpus`.
    pub target: bool,
    #[serde(flatten)]
    pub verdict: DeviceVerdict,
    /// For a passable GPU: the cluster PCI mapping that passes it, in the names the
    /// Proxmox VE API and terraform's `proxmox_virtual_environment_hardware_mapping_pci`
    /// (bpg/proxmox) take; null otherwise.
    pub pci_mapping: Option<PciMapping>,
}

/// A card's cluster PCI mapping: `name` is the mapping's id (the one pvegpu's VM phase
/// creates), the rest is its one map entry for this node.
#[derive(Debug, Serialize)]
pub struct PciMapping {
    pub name: String,
    pub node: String,
    pub path: String,
    pub id: String,
    pub iommu_group: u32,
    /// null where the facts have no subsystem id; Proxmox VE then refuses to start a VM
    /// from the mapping, so gather it (`lspci -nnv`) before using the entry.
    pub subsystem_id: Option<String>,
    pub comment: String,
}

/// The node as a whole; each state is `on`, `off` or `unknown`, never a default.
#[derive(Debug, Serialize)]
pub struct HostSummary {
    pub hostname: String,
    pub pve_version: Option<String>,
    pub cpu_vendor: String,
    /// `systemd-boot`, `grub`, `grub-proxmox-boot-tool` or `unknown`.
    pub boot_loader: &'static str,
    pub boot_loader_detail: String,
    pub running_kernel: String,
    pub next_boot_kernel: Option<String>,
    pub kernels: BTreeMap<String, String>,
    pub cmdline: Vec<String>,
    pub iommu: State,
    pub interrupt_remapping: State,
    /// null where the command line is unknown.
    pub acs_override: Option<bool>,
    pub iommu_evidence: Vec<String>,
    pub running_guests: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct DiscoverReport {
    pub node: String,
    pub host: HostSummary,
    /// Every display and 3D controller, and every target.
    pub devices: Vec<Judged>,
    /// Every PCI function the facts list.
    pub pci: Vec<Device>,
    pub notes: Vec<String>,
    /// What the node's existing passthrough configuration gets wrong (file, line, message).
    pub lints: Vec<super::lints::Lint>,
    /// From `discover --paste`: what was read from the transcript and what was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paste: Option<crate::facts::paste::Paste>,
}

pub fn report(name: &str, node: &Node, facts: &HostFacts) -> DiscoverReport {
    let (targets, refusals, mut notes) = resolve_targets(name, node, facts);
    notes.extend(refusals.into_iter().map(|r| r.reason));
    let accepted = Accepted::of(node);
    let mut devices: Vec<Judged> = facts
        .devices
        .iter()
        .filter(|d| d.is_display() || targets.contains(&d.address))
        .map(|d| {
            let with: BTreeSet<_> = facts
                .devices
                .iter()
                .filter(|m| {
                    m.address.slot() == d.address.slot()
                        && (m.iommu_group == d.iommu_group || d.iommu_group.is_none())
                })
                .map(|m| m.address)
                .chain(
                    targets
                        .iter()
                        .copied()
                        .filter(|t| t.slot() == d.address.slot()),
                )
                .collect();
            let verdict = verdict::judge(facts, d, &with, &accepted);
            Judged {
                name: d.short_name(),
                class: format!("{:04x}", d.class >> 8),
                with: with.iter().map(|a| a.to_string()).collect(),
                target: targets.contains(&d.address),
                pci_mapping: pci_mapping(name, node, d, &verdict),
                verdict,
            }
        })
        .collect();
    devices.extend(
        node.gpus
            .iter()
            .filter(|g| !facts.devices.iter().any(|d| g.address.covers(&d.address)))
            .map(|g| Judged {
                name: String::new(),
                class: String::new(),
                with: Vec::new(),
                target: true,
                verdict: verdict::not_listed(facts, &g.address, &accepted),
                pci_mapping: None,
            }),
    );
    DiscoverReport {
        node: name.to_string(),
        host: summary(facts),
        devices,
        pci: facts
            .devices
            .iter()
            .map(|d| Device {
                address: d.address.to_string(),
                class: format!("{:04x}", d.class >> 8),
                class_name: d.class_name.clone(),
                id: d.id.to_string(),
                name: d.short_name(),
                iommu_group: d.iommu_group,
                driver: d.driver.clone(),
                boot_vga: d.boot_vga,
                reset_methods: d.reset_methods.clone(),
            })
            .collect(),
        notes,
        lints: super::lints::lints(facts),
        paste: None,
    }
}

/// The mapping of a passable display device's card; its node is the Proxmox VE node name
/// (`[api] node`, else the inventory's name).
fn pci_mapping(
    name: &str,
    node: &Node,
    d: &crate::facts::PciDevice,
    verdict: &DeviceVerdict,
) -> Option<PciMapping> {
    if verdict.verdict != Verdict::Passable || !d.is_display() {
        return None;
    }
    let slot = d.address.slot().to_string();
    Some(PciMapping {
        name: crate::pci::mapping_id(&slot),
        node: node
            .api
            .as_ref()
            .and_then(|a| a.node.clone())
            .unwrap_or_else(|| name.to_string()),
        path: slot,
        id: d.id.to_string(),
        iommu_group: d.iommu_group?,
        subsystem_id: d.subsystem.map(|s| s.to_string()),
        comment: d.short_name(),
    })
}

fn summary(facts: &HostFacts) -> HostSummary {
    HostSummary {
        hostname: facts.hostname.clone(),
        pve_version: facts.pve_version.clone(),
        cpu_vendor: format!("{:?}", facts.cpu_vendor).to_lowercase(),
        boot_loader: match facts.boot_loader {
            BootLoader::SystemdBoot => "systemd-boot",
            BootLoader::Grub => "grub",
            BootLoader::ProxmoxGrub => "grub-proxmox-boot-tool",
            BootLoader::Unknown { .. } => "unknown",
        },
        boot_loader_detail: facts.boot_loader.describe(),
        running_kernel: facts.running_kernel.clone(),
        next_boot_kernel: facts.next_boot_kernel().map(str::to_string),
        kernels: kernel_summary(facts),
        cmdline: facts.proc_cmdline.clone(),
        iommu: verdict::iommu(facts),
        interrupt_remapping: verdict::interrupt_remapping(facts),
        acs_override: match verdict::acs_override(facts).is_empty() {
            false => Some(true),
            true if facts.cmdline_known => Some(false),
            true => None,
        },
        iommu_evidence: facts.kernel_log.evidence.clone(),
        running_guests: facts
            .guests
            .iter()
            .filter(|g| g.status == "running")
            .map(|g| format!("{} {}", g.vmid, g.name))
            .collect(),
    }
}

impl DiscoverReport {
    pub fn render_text(&self) -> String {
        let h = &self.host;
        let mut o = String::new();
        let pve = h
            .pve_version
            .as_deref()
            .map(|v| format!("Proxmox VE {v}, "))
            .unwrap_or_default();
        o.push_str(&format!(
            "Node {} ({}): {pve}{} CPU, {}\n",
            self.node, h.hostname, h.cpu_vendor, h.boot_loader_detail
        ));
        let next = h.next_boot_kernel.as_deref().unwrap_or(&h.running_kernel);
        o.push_str(&format!(
            "Kernel: running {}, next boot {next}\n",
            h.running_kernel
        ));
        for (k, state) in &h.kernels {
            o.push_str(&format!("  {k}: {state}\n"));
        }
        let word = |s: State| match s {
            State::On => "on",
            State::Off => "OFF",
            State::Unknown => "unknown",
        };
        o.push_str(&format!(
            "IOMMU: {}, interrupt remapping: {}{}\n",
            word(h.iommu),
            word(h.interrupt_remapping),
            if h.acs_override == Some(true) {
                ", ACS override: IN USE"
            } else {
                ""
            }
        ));
        for e in &h.iommu_evidence {
            o.push_str(&format!("  | {e}\n"));
        }
        o.push_str(&format!("Command line: {}\n", h.cmdline.join(" ")));
        o.push_str("\nPCI devices:\n  ADDRESS       CLASS ID         GROUP DRIVER        NAME\n");
        for d in &self.pci {
            o.push_str(&format!(
                "  {}  {}  {}  {:>5} {:<13} {}{}\n",
                d.address,
                d.class,
                d.id,
                d.iommu_group
                    .map(|g| g.to_string())
                    .unwrap_or_else(|| "-".into()),
                d.driver.as_deref().unwrap_or("-"),
                d.name,
                if d.boot_vga == Some(true) {
                    "  [boot VGA]"
                } else {
                    ""
                }
            ));
        }
        o.push_str("\nVerdicts (display devices and targets):\n");
        if self.devices.is_empty() {
            o.push_str("  none found\n");
        }
        for d in &self.devices {
            let v = &d.verdict;
            let word = match v.verdict {
                Verdict::Passable => "passable",
                Verdict::Refused => "REFUSED",
                Verdict::Unknown => "UNKNOWN",
            };
            o.push_str(&format!(
                "  {} {}: {word} (with {})\n",
                v.address,
                d.name,
                d.with.join(" ")
            ));
            for r in &v.reasons {
                o.push_str(&format!("    - [{}] {}\n", code_name(r.code), r.message));
            }
            for a in &v.accepted {
                o.push_str(&format!("    - accepted: {}\n", a.message));
            }
            for n in &v.need {
                o.push_str(&format!("    need {}: run `{}`\n", n.fact, n.command));
            }
        }
        if !h.running_guests.is_empty() {
            o.push_str(&format!(
                "\nRunning guests: {}\n",
                h.running_guests.join(", ")
            ));
        }
        for l in &self.lints {
            o.push_str(&format!("\nwarning: {}\n", l.render()));
        }
        for n in &self.notes {
            o.push_str(&format!("\nnote: {n}\n"));
        }
        o
    }
}

fn code_name(code: verdict::Code) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}
