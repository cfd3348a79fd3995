//! The CUDA toolkit: which one compat's range allows for these GPUs and this driver (or the
//! one asked for, if it fits), and installing it from NVIDIA's CUDA repository.

use super::repositories::nvidia_repo_id;
use super::{APT_INSTALL, GuestPlan, Walk, refusal};
use crate::compat::version::CudaVersion;
use crate::compat::{Distro, Recommendation};
use crate::core::plan::Change;
use crate::guest::playbook::GuestStep;
use crate::inventory::guest::{CudaToolkit, GuestSpec};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// data/guest/nvidia-repos.json: the first toolkit of NVIDIA's repository for each release,
/// and the distribution's own toolkit, each with its sources.
#[derive(Deserialize)]
struct CudaSources {
    repositories: BTreeMap<String, NvidiaRepository>,
    distribution_toolkits: BTreeMap<String, DistroToolkit>,
}

#[derive(Deserialize)]
struct NvidiaRepository {
    first_toolkit: CudaVersion,
}

#[derive(Deserialize)]
struct DistroToolkit {
    package: String,
    version: CudaVersion,
}

fn sources() -> &'static CudaSources {
    static SOURCES: OnceLock<CudaSources> = OnceLock::new();
    SOURCES.get_or_init(|| {
        serde_json::from_str(include_str!("../../../data/guest/nvidia-repos.json"))
            .expect("data/guest/nvidia-repos.json is valid (checked by its unit test)")
    })
}

/// A toolkit that exists for this release: NVIDIA's `cuda-toolkit-X-Y` from the repository's
/// first toolkit on, else the distribution's own package of its one version.
fn available(distro: Distro, v: &CudaVersion) -> Option<(String, &'static str)> {
    let id = nvidia_repo_id(distro);
    let s = sources();
    if s.repositories
        .get(&id)
        .is_some_and(|r| v.minor_key() >= r.first_toolkit.minor_key())
    {
        return Some((
            format!("cuda-toolkit-{}-{}", v.major, v.minor),
            "NVIDIA's CUDA repository",
        ));
    }
    s.distribution_toolkits
        .get(&id)
        .filter(|t| t.version.minor_key() == v.minor_key())
        .map(|t| (t.package.clone(), "the distribution"))
}

/// Where this release's toolkits come from, for a refusal.
fn what_exists(distro: Distro) -> String {
    let id = nvidia_repo_id(distro);
    let s = sources();
    let first = s.repositories.get(&id).map(|r| r.first_toolkit.to_string());
    let own = s.distribution_toolkits.get(&id);
    format!(
        "NVIDIA's {id} repository starts at CUDA {}{}",
        first.as_deref().unwrap_or("?"),
        own.map(|t| format!(", and {distro} packages {} {}", t.package, t.version))
            .unwrap_or_default()
    )
}

pub(super) fn choice(
    spec: &GuestSpec,
    distro: Distro,
    rec: &Recommendation,
    plan: &mut GuestPlan,
) -> Option<String> {
    let wanted = match &spec.cuda_toolkit {
        CudaToolkit::Wanted(false) => {
            plan.choices
                .push("CUDA toolkit: not asked for (containers bring their own)".into());
            return None;
        }
        CudaToolkit::Wanted(true) => None,
        CudaToolkit::Version(v) => Some(v.clone()),
    };
    let (Some(oldest), Some(newest)) = (&rec.cuda.oldest, &rec.cuda.newest) else {
        plan.refusals.push(refusal(
            format!(
                "no CUDA toolkit in pvegpu's tables builds for CC {}",
                rec.min_cc
            ),
            "set cuda_toolkit = false; Triton's images bring their own CUDA",
        ));
        return None;
    };
    let native = rec.cuda.newest_native.clone();
    let chosen: CudaVersion = match wanted {
        None => match native
            .as_ref()
            .and_then(|n| newest_available(distro, oldest, n))
        {
            Some(n) => n,
            None => {
                plan.refusals.push(refusal(
                    format!(
                        "driver {} runs none of the CUDA toolkits that build for CC {} ({oldest}–{newest}) and exist for {distro} natively (it runs up to {}; {})",
                        rec.assumed_driver,
                        rec.min_cc,
                        native.as_ref().map(|n| n.to_string()).unwrap_or_else(|| "none of them".into()),
                        what_exists(distro)
                    ),
                    "set cuda_toolkit = false (Triton's images bring their own CUDA), or pass through GPUs a newer driver serves",
                ));
                return None;
            }
        },
        Some(v) => {
            let Ok(v) = v.parse::<CudaVersion>() else {
                plan.refusals.push(refusal(
                    format!("cuda_toolkit = \"{v}\" is not a CUDA version"),
                    "write it as major.minor, e.g. \"12.2\", or true for the newest that fits",
                ));
                return None;
            };
            let key = v.minor_key();
            let native_key = native.as_ref().map(|n| n.minor_key());
            if key < oldest.minor_key() || key > newest.minor_key() {
                plan.refusals.push(refusal(
                    format!(
                        "CUDA {v} does not build for CC {} (the toolkits that do: {oldest}–{newest})",
                        rec.min_cc
                    ),
                    format!("set cuda_toolkit to a version from {oldest} to {newest}, or true"),
                ));
                return None;
            }
            if native_key.is_none_or(|n| key > n) {
                plan.refusals.push(refusal(
                    format!(
                        "driver {} cannot run CUDA {v} natively (it runs up to {})",
                        rec.assumed_driver,
                        native
                            .as_ref()
                            .map(|n| n.to_string())
                            .unwrap_or_else(|| "none of them".into())
                    ),
                    "ask for an older toolkit, or true for the newest the driver runs",
                ));
                return None;
            }
            if available(distro, &v).is_none() {
                plan.refusals.push(refusal(
                    format!(
                        "no CUDA {v} toolkit exists for {distro}: {}",
                        what_exists(distro)
                    ),
                    "ask for one of those, or true for the newest that fits",
                ));
                return None;
            }
            v
        }
    };
    let (package, from) = available(distro, &chosen)?;
    plan.choices.push(format!(
        "CUDA toolkit: {package} (CUDA {}.{}) from {from} (CUDA {oldest}–{newest} build for CC {}, driver {} runs up to {}; {})",
        chosen.major,
        chosen.minor,
        rec.min_cc,
        rec.assumed_driver,
        rec.cuda
            .newest_native
            .as_ref()
            .map(|n| n.to_string())
            .unwrap_or_else(|| "-".into()),
        what_exists(distro)
    ));
    Some(package)
}

/// The newest toolkit from `oldest` to `native` that exists for the release: NVIDIA's
/// repository carries every release from its first on; else the distribution's own.
fn newest_available(
    distro: Distro,
    oldest: &CudaVersion,
    native: &CudaVersion,
) -> Option<CudaVersion> {
    let id = nvidia_repo_id(distro);
    let s = sources();
    let in_range = |v: &CudaVersion| {
        v.minor_key() >= oldest.minor_key() && v.minor_key() <= native.minor_key()
    };
    if s.repositories
        .get(&id)
        .is_some_and(|r| native.minor_key() >= r.first_toolkit.minor_key())
        && in_range(native)
    {
        return Some(native.clone());
    }
    s.distribution_toolkits
        .get(&id)
        .map(|t| t.version.clone())
        .filter(in_range)
}

pub(super) fn toolkit(step: &GuestStep, w: &Walk) -> Option<Change> {
    let p = w.d.cuda_package.as_ref()?;
    w.facts
        .installed(p)
        .is_none()
        .then(|| step.run(format!("{p} not installed"), format!("{APT_INSTALL} {p}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sources_file_names_every_release() {
        let s = sources();
        for d in Distro::ALL.into_iter().filter(|d| d.guest_phase()) {
            assert!(s.repositories.contains_key(&nvidia_repo_id(d)), "{d}");
            assert!(
                s.distribution_toolkits.contains_key(&nvidia_repo_id(d)),
                "{d}"
            );
        }
    }

    #[test]
    fn debian_12_with_r535_gets_debians_own_toolkit() {
        let v = |s: &str| s.parse::<CudaVersion>().unwrap();
        // R535 runs CUDA 12.2 natively; NVIDIA's debian12 repository starts at 12.3
        let got = newest_available(Distro::Debian12, &v("8.0"), &v("12.2")).unwrap();
        assert_eq!(got.to_string(), "11.8");
        assert_eq!(
            available(Distro::Debian12, &got).unwrap().0,
            "nvidia-cuda-toolkit"
        );
        assert_eq!(
            available(Distro::Debian12, &v("12.2")),
            None,
            "not in NVIDIA's repository"
        );
        assert_eq!(
            available(Distro::Ubuntu2404, &v("12.8")).unwrap().0,
            "cuda-toolkit-12-8"
        );
    }
}
