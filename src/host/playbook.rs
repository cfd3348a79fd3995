//! playbooks/host.toml: the host phase's step kinds, one per rule the host planner knows.

use crate::playbook::{OwnedFile, Playbook, embedded};
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

pub type HostStep = crate::playbook::Step<HostStepKind>;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::playbook::testing::{assert_files, assert_load_fails};

    #[test]
    fn host_playbook_parses_and_files_have_templates() {
        assert!(!HOST.steps.is_empty());
        assert_files(HOST.steps.iter().filter_map(|s| {
            let file = match s.kind.managed_block() {
                Some(b) => (&b.path, &b.template),
                None => s.kind.owned_file().map(|f| (&f.path, &f.template))?,
            };
            Some((s.id.as_str(), file.0.as_str(), file.1.as_str()))
        }));
        assert_eq!(HOST.steps.last().unwrap().kind, HostStepKind::Reboot {});
    }

    #[test]
    fn a_renamed_or_malformed_host_step_fails_at_load() {
        let fails = |edit, want| {
            let text = include_str!("../../playbooks/host.toml");
            assert_load_fails::<HostStepKind>("playbooks/host.toml", text, edit, want)
        };
        fails(
            ("kind = \"kernel-cmdline\"", "kind = \"cmdline\""),
            "playbooks/host.toml, step 7 (`kernel-cmdline`): unknown variant `cmdline`",
        );
        fails(
            ("mode = \"755\"", "mode = 755"),
            "playbooks/host.toml, step 4 (`vfio-override-script`): ",
        );
    }
}
