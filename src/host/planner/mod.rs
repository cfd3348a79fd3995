//! The host planner: a pure function from the inventory's wishes and the node's facts to a
//! [`HostPlan`]. It walks the host playbook in order; each step either plans nothing (already
//! as desired) or one change with its reason.
//!
//! Ownership rule: pvegpu writes whole files it owns, one marked block in
//! /etc/initramfs-tools/modules, and appends its own words to /etc/kernel/cmdline. It never
//! rewrites or deletes a line it did not write; where such a line contradicts the target
//! state, it refuses and names the file and line.
//!
//! `binding` decides how the targets reach vfio-pci, `files` writes pvegpu's files and block,
//! `cmdline` the kernel parameters, `boot` the initramfs, boot loader and reboot;
//! `known_bad` refuses or notes a known-bad running or default-boot kernel.

mod binding;
mod boot;
mod cmdline;
mod files;
mod known_bad;

pub(crate) use files::strip_block;

use super::analysis::resolve_targets;
use super::playbook::{HOST, HostStepKind};
use super::verdict::{self, Accepted, State};
use crate::core::plan::Refusal;
use crate::facts::boot::BootLoader;
use crate::facts::kernels::major_minor;
use crate::facts::{CpuVendor, HostFacts};
use crate::host::plan::{BoundDevice, HostPlan};
use crate::inventory::{BootLoaderChoice, Node};
use crate::pci::{PciAddress, PciId};
use crate::templates::TemplateError;
use std::collections::{BTreeMap, BTreeSet};

pub const GRUB_DROPIN: &str = "/etc/default/grub.d/pvegpu.cfg";
pub const KERNEL_CMDLINE: &str = "/etc/kernel/cmdline";

/// What the planner derived before walking the steps.
struct Desired {
    targets: BTreeSet<PciAddress>,
    per_device: bool,
    modules: Vec<String>,
    cmdline: Vec<String>,
    boot_loader: BootLoader,
    /// vfio-pci ids= pvegpu must set (empty when a foreign line already binds exactly the targets).
    ids: Vec<PciId>,
    softdeps: Vec<String>,
    blacklist: Vec<String>,
    allow_unsafe_interrupts: bool,
}

pub fn plan(node_name: &str, node: &Node, facts: &HostFacts) -> Result<HostPlan, TemplateError> {
    let (targets, mut refusals, notes) = problems(node_name, node, facts);
    let boot_loader = match node.host.boot_loader {
        BootLoaderChoice::Auto => facts.boot_loader.clone(),
        BootLoaderChoice::SystemdBoot => BootLoader::SystemdBoot,
        BootLoaderChoice::Grub => BootLoader::Grub,
        BootLoaderChoice::ProxmoxGrub => BootLoader::ProxmoxGrub,
    };
    let mut desired = Desired {
        per_device: false,
        modules: vfio_modules(facts),
        cmdline: cmdline_tokens(facts, node),
        boot_loader,
        ids: Vec::new(),
        softdeps: Vec::new(),
        blacklist: Vec::new(),
        allow_unsafe_interrupts: node.host.allow_unsafe_interrupts
            && verdict::interrupt_remapping(facts) != State::On,
        targets,
    };
    refusals.extend(binding::binding(facts, &mut desired));

    let bind = desired
        .targets
        .iter()
        .filter_map(|a| facts.device(a))
        .map(|d| BoundDevice {
            address: d.address.to_string(),
            id: d.id.to_string(),
            name: d.short_name(),
            iommu_group: d.iommu_group,
            driver_now: d.driver.clone(),
        })
        .collect();
    let mut plan = HostPlan {
        node: node_name.to_string(),
        context: context_line(facts, &desired.boot_loader),
        bind,
        binding: if desired.per_device {
            "per-device"
        } else {
            "ids"
        }
        .into(),
        changes: Vec::new(),
        refusals,
        notes,
    };
    // a refused node gets no changes at all: nothing is half-applied
    if desired.targets.is_empty() || !plan.refusals.is_empty() {
        return Ok(plan);
    }
    walk(&mut plan, facts, &desired)?;
    if !plan.refusals.is_empty() {
        plan.changes.clear();
    }
    if plan.needs_reboot() {
        let running: Vec<String> = facts
            .guests
            .iter()
            .filter(|g| g.status == "running")
            .map(|g| format!("{} ({})", g.vmid, g.name))
            .collect();
        if !running.is_empty() {
            plan.notes.push(format!(
                "the reboot needs these running guests stopped first: {}",
                running.join(", ")
            ));
        }
    }
    Ok(plan)
}

/// The targets, and what keeps them (or the node) from passthrough.
fn problems(
    node_name: &str,
    node: &Node,
    facts: &HostFacts,
) -> (BTreeSet<PciAddress>, Vec<Refusal>, Vec<String>) {
    let (targets, mut refusals, mut notes) = resolve_targets(node_name, node, facts);
    let accepted = Accepted::of(node);
    for dev in targets.iter().filter_map(|t| facts.device(t)) {
        let judged = verdict::judge(facts, dev, &targets, &accepted);
        // node-wide reasons and a card's shared group come once, not once per function
        for r in judged.refusals() {
            if !refusals.contains(&r) {
                refusals.push(r);
            }
        }
        for a in judged.accepted {
            let note = format!("accepted by the inventory ([host] accept): {}", a.message);
            if !notes.contains(&note) {
                notes.push(note);
            }
        }
    }
    notes.extend(
        super::lints::lints(facts)
            .iter()
            .map(|l| format!("existing configuration: {}", l.render())),
    );
    if node.host.allow_unsafe_interrupts && verdict::interrupt_remapping(facts) != State::On {
        notes.push("interrupt remapping is not confirmed; the inventory accepts allow_unsafe_interrupts, so a guest could inject interrupts into the host".into());
    }
    known_bad::kernels(facts, &targets, &mut refusals, &mut notes);
    if targets.is_empty() && node.gpus.is_empty() {
        notes.push(format!(
            "the inventory lists no gpus for {node_name}; nothing to pass through"
        ));
    }
    (targets, refusals, notes)
}

/// Each step of the playbook, in order, by its kind.
fn walk(plan: &mut HostPlan, facts: &HostFacts, d: &Desired) -> Result<(), TemplateError> {
    for step in &HOST.steps {
        let change = match &step.kind {
            HostStepKind::VfioModules(f) => {
                files::owned(step, f, facts, files::vfio_modules(f, facts, d)?)
            }
            HostStepKind::InitramfsModules(b) => files::initramfs_modules(step, b, facts, d)?,
            HostStepKind::VfioBinding(f) => {
                files::owned(step, f, facts, files::vfio_binding(f, d)?)
            }
            HostStepKind::VfioOverrideScript(f) => {
                files::owned(step, f, facts, files::override_script(f, d)?)
            }
            HostStepKind::VfioOverrideHook(f) => {
                files::owned(step, f, facts, files::override_hook(f, d)?)
            }
            HostStepKind::DriverBlacklist(f) => {
                files::owned(step, f, facts, files::driver_blacklist(f, d)?)
            }
            HostStepKind::KernelCmdline {} => match cmdline::kernel_cmdline(step, facts, d) {
                Ok(c) => c,
                Err(r) => {
                    plan.refusals.push(r);
                    None
                }
            },
            HostStepKind::Initramfs {} => boot::initramfs(step, facts, &plan.changes),
            HostStepKind::BootLoader {} => boot::boot_loader(step, facts, d, &plan.changes),
            HostStepKind::Reboot {} => boot::reboot(step, facts, d, &plan.changes),
        };
        plan.changes.extend(change);
    }
    Ok(())
}

fn context_line(facts: &HostFacts, loader: &BootLoader) -> String {
    let vendor = match facts.cpu_vendor {
        CpuVendor::Intel => "Intel",
        CpuVendor::Amd => "AMD",
        CpuVendor::Other => "unknown CPU vendor",
    };
    let next = facts.next_boot_kernel().unwrap_or(&facts.running_kernel);
    let pve = facts
        .pve_version
        .as_deref()
        .map(|v| format!(", Proxmox VE {v}"))
        .unwrap_or_default();
    format!(
        "{vendor}, {}, kernel {} (next boot {next}){pve}",
        loader.describe(),
        facts.running_kernel
    )
}

/// vfio modules for the kernel that boots next; vfio_virqfd merged into vfio in 6.2.
fn vfio_modules(facts: &HostFacts) -> Vec<String> {
    let mut m = vec![
        "vfio".to_string(),
        "vfio_iommu_type1".into(),
        "vfio_pci".into(),
    ];
    let next = facts.next_boot_kernel().unwrap_or(&facts.running_kernel);
    if major_minor(next).is_some_and(|v| v < (6, 2)) {
        m.push("vfio_virqfd".into());
    }
    m
}

pub fn cmdline_tokens(facts: &HostFacts, node: &Node) -> Vec<String> {
    let mut t = Vec::new();
    // AMD's IOMMU is on by default and `amd_iommu=on` is not a valid value; Intel's only
    // became default in 6.8, so it is named explicitly.
    if facts.cpu_vendor == CpuVendor::Intel {
        t.push("intel_iommu=on".to_string());
    }
    if node.host.iommu_pt {
        t.push("iommu=pt".to_string());
    }
    t
}

/// A file pvegpu owns whole (one of the playbook's or its GRUB drop-in).
fn is_ours(path: &str) -> bool {
    HOST.steps
        .iter()
        .any(|s| s.kind.owned_file().is_some_and(|f| f.path == path))
        || path == GRUB_DROPIN
}

fn join(items: &[&String]) -> String {
    items
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Per-kernel summary used by `discover` and the JSON output.
pub fn kernel_summary(facts: &HostFacts) -> BTreeMap<String, String> {
    facts
        .kernels
        .iter()
        .map(|k| {
            let info = facts.initramfs.iter().find(|i| i.kernel == k.version);
            let state = match (k.initrd_mtime, info) {
                (None, _) => "no initramfs".to_string(),
                (_, None) => "initramfs not inspected".to_string(),
                (_, Some(i)) if i.has_vfio_pci => "initramfs has vfio-pci".to_string(),
                _ => "initramfs lacks vfio-pci".to_string(),
            };
            (k.version.clone(), state)
        })
        .collect()
}
