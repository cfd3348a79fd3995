//! playbooks/guest.toml: the guest phase's step kinds, each with exactly the fields it needs,
//! read by the one playbook loader (`crate::playbook`).

use crate::playbook::{Playbook, Step, embedded};
use serde::Deserialize;
use std::sync::LazyLock;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum GuestStepKind {
    Prerequisites {},
    /// The Debian components that carry the driver, in a sources file pvegpu owns.
    AptComponents(GuestFile),
    Keyring {
        repository: Repository,
        path: String,
    },
    AptSource(RepositoryFile),
    AptPin(RepositoryFile),
    AptUpdate {},
    KernelHeaders {},
    NouveauBlacklist(GuestFile),
    Driver {},
    Hold {},
    DkmsModules {},
    Initramfs {},
    CudaToolkit {},
    ContainerRuntime {},
    ContainerToolkit {},
    DockerRuntime {},
    CdiSpec {
        path: String,
    },
    TritonUnit(GuestFile),
    TritonStart {},
    Reboot {},
}

/// A whole file pvegpu owns on the guest (mode 644), rendered from a template.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestFile {
    pub path: String,
    pub template: String,
}

/// A file pvegpu owns for one repository (its apt source or pin).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryFile {
    pub repository: Repository,
    pub path: String,
    pub template: String,
}

/// An NVIDIA apt repository a step serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Repository {
    Cuda,
    ContainerToolkit,
}

pub type GuestStep = Step<GuestStepKind>;

pub static GUEST: LazyLock<Playbook<GuestStepKind>> = LazyLock::new(|| {
    embedded(
        "playbooks/guest.toml",
        include_str!("../../playbooks/guest.toml"),
    )
});

#[cfg(test)]
mod tests {
    use super::*;
    use crate::playbook::testing::{assert_files, assert_load_fails};

    #[test]
    fn guest_playbook_parses_and_names_known_templates() {
        assert!(!GUEST.steps.is_empty());
        assert_files(GUEST.steps.iter().filter_map(|s| {
            let (path, template) = match &s.kind {
                GuestStepKind::AptComponents(f)
                | GuestStepKind::NouveauBlacklist(f)
                | GuestStepKind::TritonUnit(f) => (&f.path, &f.template),
                GuestStepKind::AptSource(r) | GuestStepKind::AptPin(r) => (&r.path, &r.template),
                _ => return None,
            };
            Some((s.id.as_str(), path.as_str(), template.as_str()))
        }));
        assert_eq!(GUEST.steps.last().unwrap().kind, GuestStepKind::Reboot {});
        // step ids name the changes of a plan, so they must be unique
        let mut ids: Vec<&str> = GUEST.steps.iter().map(|s| s.id.as_str()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), GUEST.steps.len());
    }

    #[test]
    fn a_renamed_unknown_or_malformed_guest_step_fails_at_load() {
        let fails = |edit, want| {
            let text = include_str!("../../playbooks/guest.toml");
            assert_load_fails::<GuestStepKind>("playbooks/guest.toml", text, edit, want)
        };
        fails(
            ("kind = \"keyring\"", "kind = \"key-ring\""),
            "playbooks/guest.toml, step 3 (`cuda-keyring`): unknown variant `key-ring`",
        );
        fails(
            ("repository = \"cuda\"", "repository = \"nvidia\""),
            "playbooks/guest.toml, step 3 (`cuda-keyring`): unknown variant `nvidia`",
        );
        fails(
            (
                "kind = \"apt-pin\"\nrepository = \"cuda\"\n",
                "kind = \"apt-pin\"\n",
            ),
            "playbooks/guest.toml, step 5 (`cuda-pin`): missing field `repository`",
        );
        fails(
            ("kind = \"driver\"", "kind = \"driver\"\npath = \"/x\""),
            "playbooks/guest.toml, step 11 (`driver`): unknown field `path`",
        );
    }
}
