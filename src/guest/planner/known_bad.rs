//! Known-bad NVIDIA Container Toolkit releases (`compat::known_bad`): an installed one that
//! breaks what this guest runs refuses (or is a note, for a warning), and a fresh install
//! takes a pinned, held release while a refusing regression has no fixed release, since
//! the release apt would pick (the repository's newest) then falls in it.

use super::{GuestPlan, refusal};
use crate::compat::known_bad::{Component, Entry, Severity, Version, known_bad};
use crate::guest::facts::GuestFacts;
use crate::inventory::guest::{GuestSpec, Runtime};

/// The packages of one toolkit release, each at the same version (NVIDIA's install guide
/// installs all four with one `NVIDIA_CONTAINER_TOOLKIT_VERSION`; from 1.18.0 the
/// libnvidia-container libraries must match the toolkit exactly).
pub(super) const TOOLKIT_PACKAGES: [&str; 4] = [
    "nvidia-container-toolkit",
    "nvidia-container-toolkit-base",
    "libnvidia-container-tools",
    "libnvidia-container1",
];

/// `apt-get install` arguments for a pinned release.
pub(super) fn pinned(version: &str) -> String {
    TOOLKIT_PACKAGES
        .iter()
        .map(|p| format!("{p}={version}"))
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) fn hold_command() -> String {
    format!("apt-mark hold {}", TOOLKIT_PACKAGES.join(" "))
}

/// The version the toolkit step installs (None: the repository's newest), after adding the
/// refusals and notes for the installed or the chosen release.
pub(super) fn toolkit(
    spec: &GuestSpec,
    facts: &GuestFacts,
    plan: &mut GuestPlan,
) -> Option<String> {
    let table = known_bad();
    let applies = |e: &Entry| applies(e, spec.runtime, facts);
    // the lowest good version of every unfixed, refusing entry that concerns this guest
    let pin = table
        .unfixed(Component::NvidiaContainerToolkit)
        .filter(|e| e.severity == Severity::Refuse && applies(e))
        .filter_map(|e| e.good_version.clone())
        .min_by(|a, b| {
            let v = |s: &str| Version::package(s).ok();
            v(a).cmp(&v(b))
        });
    let installed = facts
        .installed(TOOLKIT_PACKAGES[0])
        .map(|p| p.version.clone())
        .or_else(|| facts.nvidia_ctk.clone());
    let (version, whose) = match (&installed, &pin) {
        (Some(v), _) => (v.clone(), "the installed"),
        (None, Some(p)) => (p.clone(), "the pinned"),
        (None, None) => return None,
    };
    let hits = match table.toolkit(&version) {
        Ok(h) => h,
        Err(e) => {
            plan.notes.push(format!(
                "could not check NVIDIA Container Toolkit {version} against the known-bad releases: {e}"
            ));
            return pin;
        }
    };
    for hit in hits.iter().filter(|h| applies(h.entry)) {
        let e = hit.entry;
        let what = format!(
            "{whose} NVIDIA Container Toolkit {version} is known bad ({}): {} ({}; {})",
            e.id,
            e.what,
            e.fix_text(&table.snapshot),
            e.source()
        );
        if e.severity == Severity::Refuse {
            let hint = match (&pin, &e.fixed_in) {
                (Some(p), _) => {
                    let install = format!("install {p} and hold it");
                    // the entry's own remedy, where it says more than the pin
                    let also = if e.remedy == install {
                        String::new()
                    } else {
                        format!("; or: {}", e.remedy)
                    };
                    format!(
                        "{install}: `apt-get install -y --allow-downgrades {} && {}`, then plan again{also}",
                        pinned(p),
                        hold_command()
                    )
                }
                (None, Some(f)) => format!(
                    "upgrade to {f} or later (`apt-get install -y --only-upgrade {}`), then plan again",
                    TOOLKIT_PACKAGES.join(" ")
                ),
                (None, None) => e.remedy.clone(),
            };
            plan.refusals.push(refusal(what, hint));
        } else {
            // a warning: a known issue, not a release to avoid
            let what = what.replacen("is known bad (", "has a known issue (", 1);
            plan.notes
                .push(format!("known issue: {what}; {}", e.remedy));
        }
    }
    if installed.is_none()
        && let Some(p) = &pin
    {
        let why: Vec<&str> = table
            .unfixed(Component::NvidiaContainerToolkit)
            .filter(|e| e.severity == Severity::Refuse && applies(e))
            .map(|e| e.id.as_str())
            .collect();
        plan.notes.push(format!(
            "pvegpu installs NVIDIA Container Toolkit {p} and holds it: the repository's newest release falls in {}, which no release fixes as of {}",
            why.join(", "),
            table.snapshot
        ));
    }
    pin
}

/// Whether the entry concerns this guest; a runtime version the facts do not give counts as
/// "too old" (fail closed).
fn applies(e: &Entry, runtime: Runtime, facts: &GuestFacts) -> bool {
    let w = &e.when;
    let name = runtime.command();
    let listed = w
        .runtime
        .as_ref()
        .is_none_or(|r| r.iter().any(|n| n == name));
    // `runtime_below` names the runtimes that read CDI specs themselves. pvegpu's Docker unit
    // goes through the nvidia runtime, which applies the spec itself (its jit-cdi mode), so
    // only Podman, which resolves `--device nvidia.com/gpu=...` from the spec, is concerned.
    let too_old = match (&w.runtime_below, runtime) {
        (None, _) => true,
        (Some(_), Runtime::Docker) => false,
        (Some(below), Runtime::Podman) => match below.get("podman") {
            None => false,
            Some(min) => {
                let have = facts
                    .podman
                    .as_deref()
                    .and_then(|v| Version::package(v).ok());
                let min = Version::package(min).ok();
                match (have, min) {
                    (Some(h), Some(m)) => h < m,
                    _ => true,
                }
            }
        },
    };
    listed && too_old
}
