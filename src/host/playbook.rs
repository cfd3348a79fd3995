//! playbooks/host.toml: the host phase's step kinds, one per rule the host planner knows.

use crate::core::playbook::{OwnedFile, Playbook, embedded};
use serde::Deserialize;
use std::sync::LazyLock;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum HostStepKind {
    /// The vfio modules a modules-load list loads at boot.
    VfioModules(OwnedFile),
    /// pvegpu's marked block in a module list it does not own (/etc/initramfs-tools/modules).
    InitramfsModules(ManagedBlock),
    /// The modprobe options that give the targets to vfio-pci.
    VfioBinding(OwnedFile),
    /// Per-device binding: the script that marks the targets with driver_override.
    VfioOverrideScript(OwnedFile),
    /// Per-device binding: the initramfs hook that carries that script.
    VfioOverrideHook(OwnedFile),
    DriverBlacklist(OwnedFile),
    KernelCmdline {},
    Initramfs {},
    BootLoader {},
    Reboot {},
}

/// A marked block pvegpu owns inside a file it does not.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagedBlock {
    pub path: String,
    pub template: String,
}

pub type HostStep = crate::core::playbook::Step<HostStepKind>;

impl HostStepKind {
    /// The whole file this step owns, if it owns one.
    pub fn owned_file(&self) -> Option<&OwnedFile> {
        match self {
            Self::VfioModules(f)
            | Self::VfioBinding(f)
            | Self::VfioOverrideScript(f)
            | Self::VfioOverrideHook(f)
            | Self::DriverBlacklist(f) => Some(f),
            _ => None,
        }
    }

    /// The marked block this step owns in a file it does not, if any.
    pub fn managed_block(&self) -> Option<&ManagedBlock> {
        match self {
            Self::InitramfsModules(b) => Some(b),
            _ => None,
        }
    }
}

pub static HOST: LazyLock<Playbook<HostStepKind>> = LazyLock::new(|| {
    embedded(
        "playbooks/host.toml",
        include_str!("../../playbooks/host.toml"),
    )
});
