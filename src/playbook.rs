//! The order in which a phase converges its resources, as data (playbooks/*.toml).

use serde::Deserialize;
use std::sync::LazyLock;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Playbook {
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepKind {
    /// A file pvegpu owns whole.
    OwnedFile,
    /// A marked block pvegpu owns inside a file it does not.
    ManagedBlock,
    KernelCmdline,
    Initramfs,
    BootLoader,
    Reboot,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub id: String,
    pub kind: StepKind,
    pub summary: String,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub template: Option<String>,
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub reboot: bool,
}

pub static HOST: LazyLock<Playbook> = LazyLock::new(|| {
    toml::from_str(include_str!("../playbooks/host.toml")).expect("playbooks/host.toml is valid")
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_playbook_parses_and_files_have_templates() {
        assert!(!HOST.steps.is_empty());
        for s in &HOST.steps {
            if matches!(s.kind, StepKind::OwnedFile | StepKind::ManagedBlock) {
                let t = s
                    .template
                    .as_deref()
                    .unwrap_or_else(|| panic!("{} has no template", s.id));
                assert!(
                    crate::templates::names().any(|n| n == t),
                    "{} names unknown template {t}",
                    s.id
                );
                assert!(
                    s.path.as_deref().is_some_and(|p| p.starts_with('/')),
                    "{} needs an absolute path",
                    s.id
                );
            }
        }
        assert_eq!(HOST.steps.last().unwrap().kind, StepKind::Reboot);
    }
}
