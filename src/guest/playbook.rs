//! playbooks/guest.toml: the order in which the guest phase converges its resources. The host
//! playbook's step kinds are host resources, so the guest has its own (small) loader.

use serde::Deserialize;
use std::sync::LazyLock;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestPlaybook {
    pub steps: Vec<GuestStep>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GuestStepKind {
    Prerequisites,
    AptComponents,
    Keyring,
    AptSource,
    AptPin,
    AptUpdate,
    KernelHeaders,
    NouveauBlacklist,
    Driver,
    Hold,
    DkmsModules,
    Initramfs,
    CudaToolkit,
    ContainerRuntime,
    ContainerToolkit,
    DockerRuntime,
    CdiSpec,
    TritonUnit,
    TritonStart,
    Reboot,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Repository {
    Debian,
    Cuda,
    ContainerToolkit,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestStep {
    pub id: String,
    pub kind: GuestStepKind,
    pub summary: String,
    #[serde(default)]
    pub repository: Option<Repository>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub template: Option<String>,
    #[serde(default)]
    pub reboot: bool,
}

pub static GUEST: LazyLock<GuestPlaybook> = LazyLock::new(|| {
    toml::from_str(include_str!("../../playbooks/guest.toml"))
        .expect("playbooks/guest.toml is valid")
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_playbook_parses_and_names_known_templates() {
        assert!(!GUEST.steps.is_empty());
        for s in &GUEST.steps {
            if let Some(t) = &s.template {
                assert!(
                    crate::templates::names().any(|n| n == t),
                    "{} names unknown template {t}",
                    s.id
                );
                assert!(s.path.as_deref().is_some_and(|p| p.starts_with('/')));
            }
            let needs_repo = matches!(
                s.kind,
                GuestStepKind::Keyring | GuestStepKind::AptSource | GuestStepKind::AptPin
            );
            assert!(
                !needs_repo || s.repository.is_some(),
                "{} names no repository",
                s.id
            );
        }
        assert_eq!(GUEST.steps.last().unwrap().kind, GuestStepKind::Reboot);
        // step ids name the changes of a plan, so they must be unique
        let mut ids: Vec<&str> = GUEST.steps.iter().map(|s| s.id.as_str()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), GUEST.steps.len());
    }
}
