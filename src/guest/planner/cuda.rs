//! The CUDA toolkit: which one compat's range allows for these GPUs and this driver (or the
//! one asked for, if it fits), and installing it from NVIDIA's CUDA repository.

use super::{APT_INSTALL, GuestPlan, Walk, refusal};
use crate::compat::Recommendation;
use crate::compat::version::CudaVersion;
use crate::core::plan::Change;
use crate::guest::playbook::GuestStep;
use crate::inventory::guest::{CudaToolkit, GuestSpec};

pub(super) fn choice(
    spec: &GuestSpec,
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
        None => match native {
            Some(n) => n,
            None => {
                plan.refusals.push(refusal(
                    format!(
                        "driver {} runs none of the CUDA toolkits that build for CC {} ({oldest}–{newest}) natively",
                        rec.assumed_driver, rec.min_cc
                    ),
                    "set cuda_toolkit = false, or pass through GPUs a newer driver serves",
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
            v
        }
    };
    let package = format!("cuda-toolkit-{}-{}", chosen.major, chosen.minor);
    plan.choices.push(format!(
        "CUDA toolkit: {package} from NVIDIA's CUDA repository (CUDA {oldest}–{newest} build for CC {}, driver {} runs up to {})",
        rec.min_cc,
        rec.assumed_driver,
        rec.cuda
            .newest_native
            .as_ref()
            .map(|n| n.to_string())
            .unwrap_or_else(|| "-".into())
    ));
    Some(package)
}

pub(super) fn toolkit(step: &GuestStep, w: &Walk) -> Option<Change> {
    let p = w.d.cuda_package.as_ref()?;
    w.facts
        .installed(p)
        .is_none()
        .then(|| step.run(format!("{p} not installed"), format!("{APT_INSTALL} {p}")))
}
