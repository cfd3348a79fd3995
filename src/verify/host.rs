//! Host layer: the postconditions `apply` proves after its reboot, re-used as they are, plus
//! whether the next boot would change the kernel.
//!
//! The postconditions compare facts from before and after an apply; verify has only the
//! present, so it passes the same facts twice. That makes "no other device taken" vacuous
//! (nothing changed between the two), so it is left out here rather than shown as a
//! meaningless pass.

use crate::core::check::{Check, Layer};
use crate::facts::HostFacts;
use crate::facts::kernels::compare_versions;
use crate::host::checks::{ACROSS_APPLY_ONLY, PLAN_EMPTY, postconditions};
use crate::host::planner;
use crate::inventory::Node;
use std::cmp::Ordering;

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
        .map(|mut c| {
            // the postcondition spells out every change with its reason; the step names are
            // enough here, `pvegpu plan` has the rest
            if !c.passed()
                && c.name == PLAN_EMPTY
                && plan.refusals.is_empty()
                && !plan.changes.is_empty()
            {
                c.saw = format!(
                    "{} change(s) pending: {}",
                    plan.changes.len(),
                    plan.changes
                        .iter()
                        .map(|c| c.step.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            c
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
