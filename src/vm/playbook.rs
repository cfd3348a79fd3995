//! playbooks/vm.toml: the VM phase's step kinds, read by the one playbook loader
//! (`crate::core::playbook`). Each kind is one planner function (src/vm/planner/mod.rs).

use crate::core::playbook::{Playbook, embedded};
use serde::Deserialize;
use std::sync::LazyLock;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum VmStepKind {
    /// The mappings the cards' `mapping=` entries name, created or given this node's entry.
    PciMappings {},
    CreateVm {},
    /// The keys of an existing VM that differ, in one digest-checked update.
    SetConfig {},
    ResizeDisk {},
    /// Microsoft's 2023 UEFI certificates in an OVMF VM's EFI disk, while it is stopped.
    EnrollEfiCerts {},
    Restart {},
    Start {},
}

pub static VM: LazyLock<Playbook<VmStepKind>> =
    LazyLock::new(|| embedded("playbooks/vm.toml", include_str!("../../playbooks/vm.toml")));
