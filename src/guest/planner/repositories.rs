//! The apt side: the tools the repository steps need, the Debian components that carry the
//! driver, NVIDIA's repositories (keyring, source, pin) unless a foreign source already has
//! them, and refreshing the package lists.

use super::containers::runtime_missing;
use super::kernel::headers_missing;
use super::{APT_INSTALL, Desired, GuestError, Walk, owned_file};
use crate::compat::Distro;
use crate::core::plan::{Action, Change};
use crate::guest::facts::GuestFacts;
use crate::guest::playbook::{
    GUEST, GuestFile, GuestStep, GuestStepKind, Repository, RepositoryFile,
};
use crate::templates;
use minijinja::context;
use serde::Serialize;
use std::collections::BTreeSet;

const CUDA_ORIGIN: &str = "developer.download.nvidia.com";
/// NVIDIA's entry point to each CUDA repository, and where it keeps the repository's key.
const CUDA_KEYRING_DEB: &str = "cuda-keyring_1.1-1_all.deb";
const CUDA_KEYRING_PATH: &str = "/usr/share/keyrings/cuda-archive-keyring.gpg";
const CONTAINER_TOOLKIT_URI: &str = "https://nvidia.github.io/libnvidia-container/stable/deb";
const DEBIAN_COMPONENTS: [&str; 3] = ["contrib", "non-free", "non-free-firmware"];

/// NVIDIA's repository id for a distribution (`debian12`, `ubuntu2404`).
pub(super) fn nvidia_repo_id(d: Distro) -> String {
    format!("{}{}", d.family(), d.release().replace('.', ""))
}

fn repo_uri(d: &Desired, repo: Repository) -> String {
    match repo {
        Repository::Cuda => format!(
            "https://{CUDA_ORIGIN}/compute/cuda/repos/{}/x86_64/",
            nvidia_repo_id(d.distro)
        ),
        Repository::ContainerToolkit => format!("{CONTAINER_TOOLKIT_URI}/$(ARCH)"),
    }
}

/// The command that puts a repository's signing key at `path`, in one rename. CUDA's key
/// differs per repository (debian12 signs with 3bf863cc, debian13 with 8793F200), so it is
/// taken from the `cuda-keyring` package NVIDIA publishes in each repository, not from a
/// key id; the package itself is not installed, as its own source list would duplicate
/// pvegpu's. No pipes: `sh` has no pipefail, and a failed download must fail the step.
fn keyring_command(d: &Desired, repo: Repository, path: &str) -> String {
    let new = format!("{path}.pvegpu-new");
    match repo {
        Repository::Cuda => format!(
            "d=$(mktemp -d) && curl -fsSL -o \"$d/cuda-keyring.deb\" {}{CUDA_KEYRING_DEB} && dpkg-deb -x \"$d/cuda-keyring.deb\" \"$d/x\" && install -m 0644 \"$d/x{CUDA_KEYRING_PATH}\" {new} && mv -f {new} {path} && rm -rf \"$d\"",
            repo_uri(d, repo)
        ),
        Repository::ContainerToolkit => format!(
            "curl -fsSL -o {new}.asc https://nvidia.github.io/libnvidia-container/gpgkey && gpg --dearmor --yes -o {new} {new}.asc && rm -f {new}.asc && chmod 0644 {new} && mv -f {new} {path}"
        ),
    }
}

/// A source pvegpu did not write already carries the repository (e.g. the cuda-keyring
/// package's list): adding pvegpu's would duplicate it, and two Signed-By values for one
/// repository make apt refuse to read either.
fn foreign_source(facts: &GuestFacts, d: &Desired, repo: Repository) -> Option<String> {
    let prefix = match repo {
        Repository::Cuda => repo_uri(d, repo),
        Repository::ContainerToolkit => CONTAINER_TOOLKIT_URI.to_string(),
    };
    facts
        .apt_sources
        .iter()
        .find(|s| s.enabled && !s.file.contains("/pvegpu-") && s.has_uri_prefix(&prefix))
        .map(|s| s.file.clone())
}

#[derive(Serialize)]
struct ComponentSource {
    file: String,
    uri: String,
    suites: Vec<String>,
    components: Vec<String>,
    signed_by: Option<String>,
}

/// Debian sources (not pvegpu's) of the guest's release that lack a driver component.
fn missing_components(facts: &GuestFacts, d: &Desired) -> Vec<ComponentSource> {
    let codename = d.distro.codename();
    let mut out = Vec::new();
    for s in &facts.apt_sources {
        if !s.enabled || s.file.contains("/pvegpu-") {
            continue;
        }
        let debian = s.uris.iter().any(|u| u.contains("debian"));
        let suites: Vec<String> = s
            .suites
            .iter()
            .filter(|x| *x == codename || x.starts_with(&format!("{codename}-")))
            .cloned()
            .collect();
        if !debian || suites.is_empty() {
            continue;
        }
        let components: Vec<String> = DEBIAN_COMPONENTS
            .iter()
            .filter(|c| !s.components.iter().any(|h| h == *c))
            .map(|c| c.to_string())
            .collect();
        if components.is_empty() {
            continue;
        }
        for uri in &s.uris {
            out.push(ComponentSource {
                file: s.file.clone(),
                uri: uri.clone(),
                suites: suites.clone(),
                components: components.clone(),
                signed_by: s.signed_by.clone(),
            });
        }
    }
    out
}

fn installs_pending(facts: &GuestFacts, d: &Desired) -> bool {
    !d.driver_missing.is_empty()
        || !headers_missing(facts).is_empty()
        || d.cuda_package
            .as_ref()
            .is_some_and(|p| facts.installed(p).is_none())
        || facts.installed("nvidia-container-toolkit").is_none()
        || runtime_missing(facts, d.spec.runtime)
}

/// A dpkg run stopped halfway (a guest that crashed or was cut off during an install) leaves
/// its journal or unconfigured packages, and apt refuses every install until dpkg finishes.
pub(super) fn dpkg_configure(step: &GuestStep, w: &Walk) -> Option<Change> {
    let unfinished = w.facts.dpkg_unfinished();
    (!unfinished.is_empty()).then(|| {
        step.run(
            format!(
                "dpkg's last run did not finish ({}); apt refuses to install until it does",
                unfinished
                    .iter()
                    .take(3)
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            "dpkg --force-confdef --force-confold --configure -a",
        )
    })
}

pub(super) fn prerequisites(step: &GuestStep, w: &Walk) -> Option<Change> {
    let (facts, d) = (w.facts, w.d);
    let keys_needed = GUEST.steps.iter().any(|s| match &s.kind {
        GuestStepKind::Keyring { repository, path } => {
            d.needs(*repository)
                && foreign_source(facts, d, *repository).is_none()
                && !facts.keyrings.contains(path)
        }
        _ => false,
    });
    let mut tools: Vec<&str> = vec!["curl", "gpg", "ca-certificates"];
    tools.retain(|t| facts.installed(t).is_none());
    // the Triton unit's health check polls with curl too
    if !keys_needed && (d.spec.triton.is_none() || facts.installed("curl").is_some()) {
        tools.clear();
    }
    (!tools.is_empty()).then(|| {
        step.run(
            format!("{} missing", tools.join(", ")),
            format!(
                "apt-get update && {APT_INSTALL} --no-install-recommends {}",
                tools.join(" ")
            ),
        )
    })
}

pub(super) fn apt_components(
    step: &GuestStep,
    f: &GuestFile,
    w: &Walk,
    notes: &mut Vec<String>,
) -> Result<Option<Change>, GuestError> {
    let facts = w.facts;
    if !w.d.distro.is_debian() {
        return Ok(None);
    }
    let sources = missing_components(facts, w.d);
    if sources.is_empty() {
        // pvegpu's file stays: it may be the only one that carries the components
        if !facts.files.contains_key(&f.path) && !facts.apt_sources.iter().any(|s| s.enabled) {
            notes.push("the guest has no apt sources pvegpu can read".into());
        }
        return Ok(None);
    }
    let names: BTreeSet<&str> = sources
        .iter()
        .flat_map(|s| s.components.iter().map(String::as_str))
        .collect();
    let content = templates::render(
        &f.template,
        context! {
            sources => minijinja::value::Serde(&sources),
            files => sources.iter().map(|s| s.file.clone()).collect::<BTreeSet<_>>(),
        },
    )?;
    Ok(owned_file(
        step,
        &f.path,
        facts,
        content,
        &format!(
            "the Debian sources lack {} (nvidia-driver is in non-free, its firmware in non-free-firmware, the open module in contrib)",
            names.into_iter().collect::<Vec<_>>().join(", ")
        ),
    ))
}

pub(super) fn keyring(step: &GuestStep, repo: Repository, path: &str, w: &Walk) -> Option<Change> {
    let (facts, d) = (w.facts, w.d);
    if !d.needs(repo) || foreign_source(facts, d, repo).is_some() {
        return None;
    }
    (!facts.keyrings.contains(path))
        .then(|| step.run(format!("{path} is missing"), keyring_command(d, repo, path)))
}

pub(super) fn apt_source(
    step: &GuestStep,
    r: &RepositoryFile,
    w: &Walk,
    notes: &mut Vec<String>,
) -> Result<Option<Change>, GuestError> {
    let (facts, d, repo) = (w.facts, w.d, r.repository);
    if !d.needs(repo) {
        return Ok(None);
    }
    if let Some(file) = foreign_source(facts, d, repo) {
        notes.push(format!("{file} already configures {}", repo_uri(d, repo)));
        return Ok(None);
    }
    let keyring = GUEST
        .steps
        .iter()
        .find_map(|s| match &s.kind {
            GuestStepKind::Keyring { repository, path } if *repository == repo => {
                Some(path.clone())
            }
            _ => None,
        })
        .unwrap_or_default();
    let why = match repo {
        Repository::Cuda => format!(
            "{} comes from NVIDIA's CUDA repository",
            d.cuda_package.as_deref().unwrap_or("the CUDA toolkit")
        ),
        Repository::ContainerToolkit => {
            "nvidia-container-toolkit comes from NVIDIA's repository (no distribution packages it)"
                .into()
        }
    };
    let content = templates::render(
        &r.template,
        context! {
            summary => step.summary.clone(),
            keyring => keyring,
            uri => repo_uri(d, repo),
            suite => "/",
        },
    )?;
    Ok(owned_file(step, &r.path, facts, content, &why))
}

pub(super) fn apt_pin(
    step: &GuestStep,
    r: &RepositoryFile,
    w: &Walk,
) -> Result<Option<Change>, GuestError> {
    let d = w.d;
    if !d.needs(r.repository) {
        return Ok(None);
    }
    let content = templates::render(
        &r.template,
        context! { origin => CUDA_ORIGIN, driver_package => d.driver_packages[0].clone() },
    )?;
    Ok(owned_file(
        step,
        &r.path,
        w.facts,
        content,
        "the CUDA repository also carries driver packages; without the pin apt would replace the distribution's driver with them",
    ))
}

pub(super) fn apt_update(step: &GuestStep, w: &Walk) -> Option<Change> {
    let sources = w.earlier.iter().any(
        |c| matches!(&c.action, Action::WriteFile { path, .. } if path.starts_with("/etc/apt/")),
    );
    let reason = if sources {
        "the apt sources changed"
    } else {
        "packages are about to be installed"
    };
    (sources || installs_pending(w.facts, w.d)).then(|| step.run(reason, "apt-get update"))
}
