//! playbooks/guest.toml: the guest phase's step kinds, each with exactly the fields it needs,
//! read by the one playbook loader (`crate::core::playbook`).

use crate::core::playbook::{Playbook, Step, embedded};
use serde::Deserialize;
use std::sync::LazyLock;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum GuestStepKind {
    /// Finish what an interrupted dpkg run left, before anything else uses apt.
    DpkgConfigure {},
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
