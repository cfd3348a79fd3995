//! Host layer: the postconditions `apply` proves after its reboot, re-used as they are, plus
//! whether the next boot would change the kernel.
//!
//! The postconditions compare facts from before and after an apply; verify has only the
//! present, so it passes the same facts twice. That makes "no other device taken" vacuous
//! (nothing changed between the two), so it is left out here rather than shown as a
//! meaningless pass.

use super::report::{Check, Layer};
use crate::facts::HostFacts;
use crate::facts::kernels::compare_versions;
use crate::host::checks::postconditions;
use crate::host::planner;
use crate::inventory::Node;
use std::cmp::Ordering;

/// The postcondition that only means something across an apply.
const ACROSS_APPLY_ONLY: &str = "no other device taken";
const PLAN_EMPTY: &str = "nothing left to plan";

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

/// Host-layer checks for one inventory node, from facts gathered now.
pub fn checks(node_name: &str, node: &Node, facts: &HostFacts) -> Vec<Check> {
    let plan = match planner::plan(node_name, node, facts) {
        Ok(p) => p,
        Err(e) => {
            return vec![Check::fail(
                Layer::Host,
                "host plan",
                e.to_string(),
                "pvegpu could not render its own host templates",
                "report this as a pvegpu bug, with the facts file (`pvegpu discover --save`)",
            )];
        }
    };
    let mut out: Vec<Check> = postconditions(node_name, node, &plan, facts, facts)
        .into_iter()
        .filter(|c| c.name != ACROSS_APPLY_ONLY)
        .map(|c| {
            if c.ok {
                return Check::pass(Layer::Host, c.name, c.detail);
            }
            let (cause, fix) = advice(node_name, &c.name).unwrap_or_else(|| {
                (
                    "a host postcondition does not hold".into(),
                    format!("run `pvegpu plan --node {node_name}`"),
                )
            });
            // the postcondition spells out every change with its reason; the step names are
            // enough here, `pvegpu plan` has the rest
            let saw =
                if c.name == PLAN_EMPTY && plan.refusals.is_empty() && !plan.changes.is_empty() {
                    format!(
                        "{} change(s) pending: {}",
                        plan.changes.len(),
                        plan.changes
                            .iter()
                            .map(|c| c.step.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                } else {
                    c.detail
                };
            Check::fail(Layer::Host, c.name, saw, cause, fix)
        })
        .collect();
    out.push(next_boot(facts));
    out
}

/// A kernel newer than the running one boots next: passthrough works now, but the next
/// reboot runs a kernel whose initramfs the plan has to cover (the plan check above says
/// whether it does), so this is a warning, not a failure.
fn next_boot(facts: &HostFacts) -> Check {
    let name = "no kernel change pending";
    match facts.next_boot_kernel() {
        None => Check::skip(
            Layer::Host,
            name,
            format!(
                "running {}; the installed kernels are unknown (no `kernels` section in the facts)",
                facts.running_kernel
            ),
            "gather facts with the full probe (`pvegpu discover`)",
        ),
        Some(next) if compare_versions(next, &facts.running_kernel) == Ordering::Equal => {
            Check::pass(
                Layer::Host,
                name,
                format!("running {next}, which is also the next boot's kernel"),
            )
        }
        Some(next) => Check::warn(
            Layer::Host,
            name,
            format!("running {}, next boot {next}", facts.running_kernel),
            "the kernel changes at the next reboot (an upgrade installed, or a pin set)",
            "reboot in a maintenance window and run `pvegpu verify` again",
        ),
    }
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
