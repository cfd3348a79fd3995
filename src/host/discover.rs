//! `pvegpu discover`: every PCI device of a node and a verdict for each GPU. Pure: facts in,
//! report out.

use super::analysis::{device_problems, iommu_problems};
use super::planner::kernel_summary;
use crate::facts::HostFacts;
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
    pub boot_vga: bool,
    pub reset_methods: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct GpuVerdict {
    pub address: String,
    pub name: String,
    pub passable: bool,
    /// The functions that would go to the VM with it (same card, same group).
    pub with: Vec<String>,
    pub reasons: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct DiscoverReport {
    pub node: String,
    pub hostname: String,
    pub pve_version: Option<String>,
    pub cpu_vendor: String,
    pub boot_loader: String,
    pub running_kernel: String,
    pub next_boot_kernel: Option<String>,
    pub kernels: BTreeMap<String, String>,
    pub cmdline: Vec<String>,
    pub iommu_active: bool,
    pub interrupt_remapping: Option<bool>,
    pub iommu_evidence: Vec<String>,
    pub devices: Vec<Device>,
    pub gpus: Vec<GpuVerdict>,
    pub running_guests: Vec<String>,
    pub notes: Vec<String>,
}

pub fn report(node: &str, facts: &HostFacts, allow_unsafe_interrupts: bool) -> DiscoverReport {
    let (node_refusals, notes) = iommu_problems(facts, allow_unsafe_interrupts);
    let gpus = facts
        .devices
        .iter()
        .filter(|d| d.is_display())
        .map(|d| {
            let with: BTreeSet<_> = facts
                .devices
                .iter()
                .filter(|m| {
                    m.address.slot() == d.address.slot()
                        && (m.iommu_group == d.iommu_group || d.iommu_group.is_none())
                })
                .map(|m| m.address)
                .collect();
            let mut reasons: Vec<String> = node_refusals.iter().map(|r| r.reason.clone()).collect();
            reasons.extend(
                device_problems(facts, d, &with)
                    .into_iter()
                    .map(|r| r.reason),
            );
            if let Some(driver) = d.driver.as_deref().filter(|x| *x != "vfio-pci") {
                if reasons.is_empty() {
                    reasons.push(format!(
                        "host driver {driver} holds it until pvegpu binds it to vfio-pci"
                    ));
                }
            }
            let blocking = reasons.iter().any(|r| !r.starts_with("host driver"));
            GpuVerdict {
                address: d.address.to_string(),
                name: d.short_name(),
                passable: !blocking,
                with: with.iter().map(|a| a.to_string()).collect(),
                reasons,
            }
        })
        .collect();
    DiscoverReport {
        node: node.to_string(),
        hostname: facts.hostname.clone(),
        pve_version: facts.pve_version.clone(),
        cpu_vendor: format!("{:?}", facts.cpu_vendor).to_lowercase(),
        boot_loader: facts.boot_loader.describe(),
        running_kernel: facts.running_kernel.clone(),
        next_boot_kernel: facts.next_boot_kernel().map(str::to_string),
        kernels: kernel_summary(facts),
        cmdline: facts.proc_cmdline.clone(),
        iommu_active: facts.iommu_active(),
        interrupt_remapping: facts.kernel_log.irq_remapping,
        iommu_evidence: facts.kernel_log.evidence.clone(),
        devices: facts
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
        gpus,
        running_guests: facts
            .guests
            .iter()
            .filter(|g| g.status == "running")
            .map(|g| format!("{} {}", g.vmid, g.name))
            .collect(),
        notes,
    }
}

impl DiscoverReport {
    pub fn render_text(&self) -> String {
        let mut o = String::new();
        let pve = self
            .pve_version
            .as_deref()
            .map(|v| format!("Proxmox VE {v}, "))
            .unwrap_or_default();
        o.push_str(&format!(
            "Node {} ({}): {pve}{} CPU, {}\n",
            self.node, self.hostname, self.cpu_vendor, self.boot_loader
        ));
        let next = self
            .next_boot_kernel
            .as_deref()
            .unwrap_or(&self.running_kernel);
        o.push_str(&format!(
            "Kernel: running {}, next boot {next}\n",
            self.running_kernel
        ));
        for (k, state) in &self.kernels {
            o.push_str(&format!("  {k}: {state}\n"));
        }
        let remap = match self.interrupt_remapping {
            Some(true) => "enabled",
            Some(false) => "NOT enabled",
            None => "unknown",
        };
        o.push_str(&format!(
            "IOMMU: {}, interrupt remapping {remap}\n",
            if self.iommu_active {
                "active"
            } else {
                "not active"
            }
        ));
        for e in &self.iommu_evidence {
            o.push_str(&format!("  | {e}\n"));
        }
        o.push_str(&format!("Command line: {}\n", self.cmdline.join(" ")));
        o.push_str("\nPCI devices:\n  ADDRESS       CLASS ID         GROUP DRIVER        NAME\n");
        for d in &self.devices {
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
                if d.boot_vga { "  [boot VGA]" } else { "" }
            ));
        }
        o.push_str("\nGPUs:\n");
        if self.gpus.is_empty() {
            o.push_str("  none found\n");
        }
        for g in &self.gpus {
            let verdict = if g.passable {
                "passable"
            } else {
                "NOT passable"
            };
            o.push_str(&format!(
                "  {} {}: {verdict} (with {})\n",
                g.address,
                g.name,
                g.with.join(" ")
            ));
            for r in &g.reasons {
                o.push_str(&format!("    - {r}\n"));
            }
        }
        if !self.running_guests.is_empty() {
            o.push_str(&format!(
                "\nRunning guests: {}\n",
                self.running_guests.join(", ")
            ));
        }
        for n in &self.notes {
            o.push_str(&format!("\nnote: {n}\n"));
        }
        o
    }
}
