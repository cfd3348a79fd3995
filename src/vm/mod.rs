//! The VM phase: the VM that receives the node's GPUs, reconciled through the Proxmox VE API.
//!
//! `spec` is the inventory's part; `state` parses what the API reports (`efi` the EFI disk's
//! certificates, for the plan and `verify`); `planner` is the pure
//! plan, its steps in the order of playbooks/vm.toml (`playbook`); `render` prints it;
//! `gather`, `connect` and `exec` are the only parts doing I/O, `gather` and `exec` through
//! any [`crate::pve::Api`].

pub mod connect;
pub mod efi;
pub mod exec;
pub mod gather;
pub mod phase;
pub mod planner;
pub mod playbook;
pub mod readiness;
pub mod render;
pub mod state;

pub use planner::{DeviceMethod, HostDevice, HostReadiness, VmPlan, VmStep};

impl crate::core::plan::PhasePlan for VmPlan {
    /// A VM plan that waits for the host still shows its steps; a refusal comes first.
    fn state(&self) -> crate::core::plan::PlanState<'_> {
        use crate::core::plan::{PlanState, state_of};
        match (
            &self.waits_for_host,
            state_of(&self.refusals, self.steps.is_empty()),
        ) {
            (_, refused @ PlanState::Refused(_)) => refused,
            (Some(why), PlanState::Ready) => PlanState::Waiting(why),
            (_, state) => state,
        }
    }
    fn render_text(&self) -> String {
        VmPlan::render_text(self)
    }
}
