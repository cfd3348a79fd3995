//! Checks around a reboot, pure over facts: the interlocks that must hold before pvegpu
//! reboots a node, and the postconditions that must hold after it.

use super::planner;
use super::verdict::{self, Accepted, Code, State};
use crate::core::check::{Check, Layer};
use crate::core::plan::Refusal;
use crate::facts::HostFacts;
use crate::host::plan::HostPlan;
use crate::inventory::Node;
use crate::pci::PciAddress;
use std::collections::BTreeSet;

/// Guests pvegpu would have to stop for a reboot, and the refusals that block it.
pub fn reboot_interlocks(facts: &HostFacts, stop_guests: bool) -> (Vec<Refusal>, Vec<u32>) {
    let mut refusals = Vec::new();
    let running: Vec<&crate::facts::pve::Guest> = facts
        .guests
        .iter()
        .filter(|g| g.status == "running")
        .collect();
    let ha: Vec<String> = running
        .iter()
        .filter(|g| facts.ha_resources.contains(&g.vmid))
        .map(|g| g.vmid.to_string())
        .collect();
    if !ha.is_empty() {
        refusals.push(Refusal {
            reason: format!("running guests {} are managed by HA, which would restart or move them during the reboot", ha.join(", ")),
            hint: "migrate them away or take them out of HA (`ha-manager set vm:ID --state ignored`), then apply again".into(),
        });
    }
    if facts.quorate == Some(false) {
        refusals.push(Refusal {
            reason: "the cluster has no quorum: rebooting a node now can leave the cluster without one for longer".into(),
            hint: "restore quorum first (`pvecm status`), then apply again".into(),
        });
    }
    if !running.is_empty() && !stop_guests {
        refusals.push(Refusal {
            reason: format!(
                "the reboot would kill running guests: {}",
                running.iter().map(|g| format!("{} ({})", g.vmid, g.name)).collect::<Vec<_>>().join(", ")
            ),
            hint: "shut them down yourself, or pass --stop-guests to have pvegpu shut them down cleanly through Proxmox first".into(),
        });
    }
    (refusals, running.iter().map(|g| g.vmid).collect())
}

/// Why a failed postcondition fails and what to run, by postcondition name. `None` for a
/// name this module does not know, so a renamed postcondition shows up in the tests.
fn advice(node_name: &str, name: &str) -> Option<(String, String)> {
    let apply = format!("run `pvegpu apply --node {node_name}`");
    let (cause, fix) = match name {
        "kernel command line" => (
            "the running kernel was booted without the IOMMU parameters: the boot loader was not refreshed, or the node has not rebooted since".to_string(),
            format!("{apply}; it writes the command line, refreshes the boot loader and reboots"),
        ),
        "IOMMU" => (
            "no IOMMU groups exist: VT-d/AMD-Vi is off in the firmware or the kernel was not told to enable it".to_string(),
            format!("enable VT-d / AMD-Vi (IOMMU) in the firmware setup, then {apply}"),
        ),
        "interrupt remapping" => (
            "without interrupt remapping a guest with a passed-through device can inject interrupts into the host; vfio refuses such devices by default".to_string(),
            "enable interrupt remapping / x2APIC in the firmware; only if the platform cannot, set `allow_unsafe_interrupts = true` under the node's [host] table".to_string(),
        ),
        "groups isolated" => (
            "a target's IOMMU group holds a device the host still needs; vfio takes whole groups".to_string(),
            "move the card to a slot with its own IOMMU group (see `pvegpu discover`) or enable ACS in the firmware".to_string(),
        ),
        PLAN_EMPTY => (
            "the node differs from what the inventory asks for, so a reboot or a change is pending".to_string(),
            format!("`pvegpu plan --node {node_name}` shows what is left; `pvegpu apply --node {node_name}` converges it"),
        ),
        n if n.ends_with(" on vfio-pci") => (
            "another driver claimed the device first: the vfio configuration is missing from the running kernel's initramfs, or the node has not rebooted since it was written".to_string(),
            format!("{apply}; it rebuilds the initramfs and reboots if needed"),
        ),
        _ => return None,
    };
    Some((cause, fix))
}

/// The postcondition that only means something across an apply (verify, which sees only
/// the present, leaves it out).
pub const ACROSS_APPLY_ONLY: &str = "no other device taken";
/// The last postcondition: a fresh plan has nothing left.
pub const PLAN_EMPTY: &str = "nothing left to plan";

fn check(node_name: &str, name: &str, ok: bool, saw: String) -> Check {
    let (cause, fix) = advice(node_name, name).unwrap_or_else(|| {
        (
            "a host postcondition does not hold".into(),
            format!("run `pvegpu plan --node {node_name}`"),
        )
    });
    Check::judged(Layer::Host, name, ok, saw, cause, fix)
}

/// The verdict's reasons about a device and its group, as opposed to the node-wide ones
/// that the IOMMU and interrupt remapping postconditions report.
const DEVICE_CODES: &[Code] = &[
    Code::SharedGroup,
    Code::GroupsUnknown,
    Code::BootVga,
    Code::BootVgaUnknown,
    Code::OnlyDisplay,
    Code::RootDiskController,
    Code::ManagementNic,
];

/// What must be true once the host phase converged: the running kernel carries the
/// parameters, IOMMU and interrupt remapping are on, exactly the targets (of those that were
/// not already) are on vfio-pci, their groups hold nothing of the host's, and nothing is left
/// to plan.
pub fn postconditions(
    node_name: &str,
    node: &Node,
    plan: &HostPlan,
    before: &HostFacts,
    after: &HostFacts,
) -> Vec<Check> {
    let mut out = Vec::new();
    let want = planner::cmdline_tokens(after, node);
    let missing: Vec<&String> = want
        .iter()
        .filter(|w| !after.proc_cmdline.contains(w))
        .collect();
    out.push(check(
        node_name,
        "kernel command line",
        missing.is_empty(),
        if missing.is_empty() {
            format!("/proc/cmdline carries {}", want.join(" "))
        } else {
            format!(
                "/proc/cmdline lacks {}",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        },
    ));
    let iommu = verdict::iommu(after);
    out.push(check(
        node_name,
        "IOMMU",
        iommu == State::On,
        match iommu {
            State::On => "IOMMU groups exist".into(),
            State::Off if !after.noiommu.is_empty() => {
                "only VFIO no-IOMMU groups: the IOMMU is off".into()
            }
            State::Off => "no IOMMU groups: the IOMMU is off".into(),
            State::Unknown => "the facts do not tell whether the IOMMU is on".into(),
        },
    ));
    let remapping = verdict::interrupt_remapping(after);
    out.push(check(
        node_name,
        "interrupt remapping",
        remapping == State::On || node.host.allow_unsafe_interrupts,
        match remapping {
            State::On => "enabled".into(),
            _ if node.host.allow_unsafe_interrupts => {
                "not confirmed; accepted by allow_unsafe_interrupts".into()
            }
            State::Off => "the kernel reports interrupt remapping is not enabled".into(),
            State::Unknown => "not confirmed by the kernel log or /proc/interrupts".into(),
        },
    ));
    let targets: BTreeSet<PciAddress> = plan
        .bind
        .iter()
        .filter_map(|b| b.address.parse().ok())
        .collect();
    for t in &targets {
        let driver = after.device(t).and_then(|d| d.driver.clone());
        out.push(check(
            node_name,
            &format!("{t} on vfio-pci"),
            driver.as_deref() == Some("vfio-pci"),
            format!("driver: {}", driver.as_deref().unwrap_or("none")),
        ));
    }
    let was_vfio: BTreeSet<PciAddress> = before
        .devices
        .iter()
        .filter(|d| d.driver.as_deref() == Some("vfio-pci"))
        .map(|d| d.address)
        .collect();
    let strays: Vec<String> = after
        .devices
        .iter()
        .filter(|d| {
            d.driver.as_deref() == Some("vfio-pci")
                && !targets.contains(&d.address)
                && !was_vfio.contains(&d.address)
        })
        .map(|d| d.address.to_string())
        .collect();
    out.push(check(
        node_name,
        ACROSS_APPLY_ONLY,
        strays.is_empty(),
        if strays.is_empty() {
            "only targets went to vfio-pci".into()
        } else {
            format!("also on vfio-pci now: {}", strays.join(", "))
        },
    ));
    let mut group_problems = Vec::new();
    let accepted = Accepted::of(node);
    for d in targets.iter().filter_map(|t| after.device(t)) {
        let judged = verdict::judge(after, d, &targets, &accepted);
        for r in judged
            .reasons
            .into_iter()
            .filter(|r| DEVICE_CODES.contains(&r.code))
        {
            if !group_problems.contains(&r.message) {
                group_problems.push(r.message);
            }
        }
    }
    out.push(check(
        node_name,
        "groups isolated",
        group_problems.is_empty(),
        if group_problems.is_empty() {
            "each target's IOMMU group holds only the card and bridges".into()
        } else {
            group_problems.join("; ")
        },
    ));
    let again = planner::plan(node_name, node, after);
    let left = again
        .as_ref()
        .map(|p| p.changes.len() + p.refusals.len())
        .unwrap_or(1);
    out.push(check(
        node_name,
        PLAN_EMPTY,
        left == 0,
        match &again {
            Ok(_) if left == 0 => "a new plan has no changes".into(),
            Ok(p) => p
                .changes
                .iter()
                .map(|c| format!("{}: {}", c.step, c.reason))
                .chain(p.refusals.iter().map(|r| r.reason.clone()))
                .collect::<Vec<_>>()
                .join("; "),
            Err(e) => e.to_string(),
        },
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::advice;

    #[test]
    fn every_failing_postcondition_name_has_advice() {
        for name in [
            "kernel command line",
            "IOMMU",
            "interrupt remapping",
            "groups isolated",
            "nothing left to plan",
            "0000:02:00.0 on vfio-pci",
        ] {
            let (cause, fix) = advice("n", name).unwrap_or_else(|| panic!("{name}"));
            assert!(!cause.is_empty() && !fix.is_empty());
        }
        assert!(advice("n", "something new").is_none());
    }
}
