//! Known-bad Proxmox kernels (`compat::known_bad`): the running and the default-boot kernel
//! are each looked up. An entry that breaks the passthrough this plan sets up refuses when the
//! kernel the node boots next has it, offering a kernel to pin; anything else is a note, in
//! the plan's text and JSON alike.

use crate::compat::known_bad::{Entry, Hit, KnownBad, Severity, known_bad};
use crate::core::plan::Refusal;
use crate::facts::{CpuVendor, HostFacts, PciDevice, Sriov};
use crate::pci::PciAddress;
use std::collections::BTreeSet;

pub(super) fn kernels(
    facts: &HostFacts,
    targets: &BTreeSet<PciAddress>,
    refusals: &mut Vec<Refusal>,
    notes: &mut Vec<String>,
) {
    let table = known_bad();
    let devices: Vec<&PciDevice> = targets.iter().filter_map(|t| facts.device(t)).collect();
    let running = facts.running_kernel.as_str();
    let next = facts.next_boot_kernel().unwrap_or(running);
    let mut looked = vec![(running, "running")];
    if next != running {
        looked.push((next, "default-boot"));
    }
    for (kernel, role) in looked {
        for hit in table.kernel(kernel) {
            let e = hit.entry;
            if !applies(e, facts, &devices) {
                continue;
            }
            // On the running kernel an evident breakage is already in the facts the
            // verdict judged (merged groups refuse as `shared_group`); only a kernel the node
            // has not booted yet can bring it in unseen.
            let unseen = !(e.evident_in_facts && kernel == running);
            if e.severity == Severity::Refuse && !devices.is_empty() && kernel == next && unseen {
                refusals.push(Refusal {
                    reason: format!(
                        "the {role} kernel {kernel} {} {}: {} ({}; {})",
                        is(&hit),
                        e.id,
                        e.what,
                        e.fix_text(&table.snapshot),
                        e.source()
                    ),
                    hint: pin_hint(table, facts, &devices, e),
                });
            } else {
                notes.push(format!(
                    "known bad: the {role} kernel {kernel} {} {}: {} ({}; {}); {}",
                    is(&hit),
                    e.id,
                    e.what,
                    e.fix_text(&table.snapshot),
                    e.source(),
                    e.remedy
                ));
            }
        }
    }
}

fn is(hit: &Hit) -> &'static str {
    if hit.certain {
        "has"
    } else {
        "may have (its first affected build is not known)"
    }
}

/// Whether the entry concerns this node and plan; a fact the node does not give counts as
/// "it does" (fail closed).
fn applies(e: &Entry, facts: &HostFacts, devices: &[&PciDevice]) -> bool {
    let w = &e.when;
    let cpu = w
        .cpu_vendor
        .as_deref()
        .is_none_or(|v| match facts.cpu_vendor {
            CpuVendor::Amd => v == "amd",
            CpuVendor::Intel => v == "intel",
            CpuVendor::Other => true,
        });
    let vendor = w.gpu_vendor.as_ref().is_none_or(|vendors| {
        devices
            .iter()
            .any(|d| vendors.contains(&format!("{:04x}", d.id.vendor)))
    });
    let vf = w.sriov_vf != Some(true)
        || devices
            .iter()
            .any(|d| matches!(d.sriov, Some(Sriov::VirtualFunction { .. })));
    let nvidia = w.host_nvidia_module != Some(true)
        || facts
            .loaded_modules
            .as_ref()
            .is_none_or(|m| m.iter().any(|n| n == "nvidia"));
    cpu && vendor && vf && nvidia
}

/// The way out: an installed kernel without the breakage to pin, the fixed build to install,
/// or, with neither, what is left.
fn pin_hint(table: &KnownBad, facts: &HostFacts, devices: &[&PciDevice], e: &Entry) -> String {
    // the running kernel's evident breakage would show in the facts the verdict judged
    let refuses = |k: &str| {
        table.kernel(k).iter().any(|h| {
            h.entry.severity == Severity::Refuse
                && applies(h.entry, facts, devices)
                && !(h.entry.evident_in_facts && k == facts.running_kernel)
        })
    };
    let good = facts
        .kernels
        .iter()
        .rev()
        .map(|k| k.version.as_str())
        .find(|k| !refuses(k));
    let fixed = e.fixed_in.as_ref().map(|f| {
        format!(
            "install {f}-pve or later (`apt update && apt full-upgrade`), which boots by default"
        )
    });
    match (good, fixed) {
        (Some(g), Some(f)) => format!(
            "pin an installed kernel without it, `proxmox-boot-tool kernel pin {g}`, or {f}; then plan again"
        ),
        (Some(g), None) => format!(
            "pin an installed kernel without it, `proxmox-boot-tool kernel pin {g}`, then plan again; no fixed kernel is known as of {}",
            table.snapshot
        ),
        (None, Some(f)) => format!("{f}, then plan again"),
        (None, None) => format!(
            "no installed kernel is free of it and no fixed kernel is known as of {}: install an older unaffected kernel and pin it (`proxmox-boot-tool kernel pin VERSION`), or wait for a fix",
            table.snapshot
        ),
    }
}
