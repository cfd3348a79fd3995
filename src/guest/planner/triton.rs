//! Triton: which release serves the backend on these GPUs and this driver (or the one asked
//! for, if it fits), whether it loads every model in the repository, its systemd unit and
//! starting it.

use super::{GuestPlan, TRITON_UNIT, TritonChoice, Walk, owned_file, refusal};
use crate::compat::tables::TritonRelease;
use crate::compat::triton::{DriverFit, cc_floor, driver_fit};
use crate::compat::{Backend, Recommendation, tables};
use crate::core::plan::Change;
use crate::guest::facts::GuestFacts;
use crate::guest::onnx_check;
use crate::guest::playbook::{GUEST, GuestFile, GuestStep, GuestStepKind};
use crate::inventory::guest::GuestSpec;
use crate::templates;
use minijinja::context;

/// The release to deploy, refused when none fits; the models are checked against it.
pub(super) fn choice(
    spec: &GuestSpec,
    facts: &GuestFacts,
    rec: &Recommendation,
    driver_ready: bool,
    plan: &mut GuestPlan,
) -> Option<TritonChoice> {
    let triton = spec
        .triton
        .as_ref()
        .and_then(|ts| release_choice(ts.backend, ts.release.as_deref(), rec, plan));
    if let (Some(ts), Some(tc)) = (&spec.triton, &triton) {
        model_refusals(&ts.model_repository, facts, tc, rec, plan);
    }
    if spec.triton.is_some() && !driver_ready {
        plan.notes.push(
            "Triton selects the GPUs by UUID, which only the loaded driver reports: its unit (and the CDI spec for Podman) is planned once nvidia-smi answers, after this plan is applied".into(),
        );
    }
    triton
}

fn release_choice(
    backend: Backend,
    release: Option<&str>,
    rec: &Recommendation,
    plan: &mut GuestPlan,
) -> Option<TritonChoice> {
    let t = tables();
    let all_dc = rec
        .gpus
        .iter()
        .all(|g| t.gpu(g.id).is_some_and(|g| g.is_datacenter()));
    let r: &'static TritonRelease = match release {
        Some(wanted) => {
            let Some(r) = t.triton_release(wanted) else {
                plan.refusals.push(refusal(
                    format!("Triton release {wanted} is not in pvegpu's tables"),
                    "give a release as NGC names it (`24.10`), or leave `release` out for compat's choice",
                ));
                return None;
            };
            if let Some(floor) = cc_floor(r, backend).filter(|f| *f > rec.min_cc) {
                plan.refusals.push(refusal(
                    format!(
                        "Triton {} builds its {backend} backend for CC {floor} and newer; these GPUs are CC {} and would fail with cudaErrorNoKernelImageForDevice",
                        r.release, rec.min_cc
                    ),
                    "leave `release` out for compat's choice, or pick one `pvegpu compat` lists for these GPUs",
                ));
                return None;
            }
            r
        }
        None => {
            let choice = rec.triton.iter().find(|c| c.backend == backend)?;
            let Some(c) = &choice.recommended else {
                plan.refusals.push(refusal(
                    format!(
                        "no Triton release serves {backend} on these GPUs: {}",
                        choice
                            .none_because
                            .as_deref()
                            .unwrap_or("not in the tables")
                    ),
                    "serve the models with another backend",
                ));
                return None;
            };
            t.triton_release(&c.release)?
        }
    };
    let fit = driver_fit(t, r, &rec.assumed_driver, all_dc);
    match &fit {
        DriverFit::Unmet => {
            plan.refusals.push(refusal(
                format!(
                    "driver {} cannot run Triton {} (CUDA {})",
                    rec.assumed_driver, r.release, r.cuda
                ),
                "leave `release` out for compat's choice, or install a newer driver branch",
            ));
            return None;
        }
        DriverFit::Mvc => plan.notes.push(format!(
            "Triton {} runs on driver {} only through CUDA minor-version compatibility: degraded, smoke-test it",
            r.release, rec.assumed_driver
        )),
        _ => {}
    }
    plan.choices.push(format!(
        "Triton: {} ({backend} backend{}), driver fit: {}",
        r.image(),
        r.ort
            .as_deref()
            .filter(|_| backend == Backend::Onnx)
            .map(|o| format!(", ONNX Runtime {o}"))
            .unwrap_or_default(),
        fit.describe()
    ));
    Some(TritonChoice {
        release: r,
        backend,
    })
}

/// The releases that load a model and still serve the backend on these GPUs, and how the
/// driver runs the newest of them: the seed's answer (24.10 for IR 10 on a GTX 1080) comes
/// from here, not from the model alone.
fn releases_that_fit(tc: &TritonChoice, rec: &Recommendation, ir: u32, opset: u32) -> String {
    let t = tables();
    let fits: Vec<&TritonRelease> = t
        .triton
        .iter()
        .filter(|r| crate::compat::onnx::model_fits(r, ir, opset).is_ok())
        .filter(|r| cc_floor(r, tc.backend).is_some_and(|f| f <= rec.min_cc))
        .collect();
    let (Some(first), Some(last)) = (fits.first(), fits.last()) else {
        return format!(
            "no Triton release both loads it and serves {} on CC {}: re-export the model as the fix says",
            tc.backend, rec.min_cc
        );
    };
    let all_dc = rec
        .gpus
        .iter()
        .all(|g| t.gpu(g.id).is_some_and(|g| g.is_datacenter()));
    let fit = driver_fit(t, last, &rec.assumed_driver, all_dc);
    let range = if first.release == last.release {
        format!("Triton {}", last.release)
    } else {
        format!("Triton {}–{}", first.release, last.release)
    };
    format!(
        "{range} load it and serve {} on CC {}; set release = \"{}\" in [vm.guest.triton] (driver {}: {}), or re-export the model as the fix says",
        tc.backend,
        rec.min_cc,
        last.release,
        rec.assumed_driver,
        fit.describe()
    )
}

fn model_refusals(
    repository: &str,
    facts: &GuestFacts,
    tc: &TritonChoice,
    rec: &Recommendation,
    plan: &mut GuestPlan,
) {
    let release = tc.release;
    let listing = facts
        .model_repository
        .as_ref()
        .filter(|m| m.path.trim_end_matches('/') == repository.trim_end_matches('/'));
    let Some(listing) = listing else {
        plan.refusals.push(refusal(
            format!("the guest facts do not list the model repository {repository}"),
            "gather the guest facts with the model repository (the probe lists it when PVEGPU_MODEL_REPOSITORY is set)",
        ));
        return;
    };
    if !listing.exists {
        plan.refusals.push(refusal(
            format!("the model repository {repository} does not exist on the guest"),
            format!(
                "create it ({repository}/<model>/<version>/model.onnx) or fix `model_repository` in [vm.guest.triton]"
            ),
        ));
        return;
    }
    let mut read = Vec::new();
    for f in &listing.onnx_files {
        match facts.onnx.iter().find(|h| h.path == f.path) {
            Some(h) => read.push(h.clone()),
            None => plan.refusals.push(refusal(
                format!(
                    "model {} was not read, so pvegpu cannot tell whether Triton {} loads it",
                    onnx_check::model_name(repository, &f.path),
                    release.release
                ),
                "gather the guest facts again: the gatherer reads every ONNX model's header",
            )),
        }
    }
    for m in onnx_check::check(repository, &read, release) {
        let hint = releases_that_fit(tc, rec, m.misfit.ir_version, m.misfit.opset);
        plan.refusals.push(refusal(m.to_string(), hint));
    }
    if !read.is_empty() && plan.refusals.is_empty() {
        plan.choices.push(format!(
            "models: {} ONNX model(s) load in Triton {} (ONNX Runtime {})",
            read.len(),
            release.release,
            release.ort.as_deref().unwrap_or("?")
        ));
    }
}

pub(super) fn unit(
    step: &GuestStep,
    f: &GuestFile,
    w: &Walk,
) -> Result<Option<Change>, super::GuestError> {
    let d = w.d;
    let (Some(ts), Some(tc)) = (&d.spec.triton, &d.triton) else {
        return Ok(None);
    };
    if !d.driver_ready {
        return Ok(None);
    }
    let mut smi: Vec<_> = w.facts.smi.iter().collect();
    smi.sort_by_key(|g| g.address);
    let gpus: Vec<String> = smi.iter().map(|g| g.uuid.clone()).collect();
    let content = templates::render(
        &f.template,
        context! {
            release => tc.release.release.clone(),
            image => tc.release.image(),
            backend => tc.backend.to_string(),
            runtime => d.spec.runtime.command(),
            gpus => gpus,
            model_repository => ts.model_repository.clone(),
            http_port => ts.http_port,
            grpc_port => ts.grpc_port,
            metrics_port => ts.metrics_port,
        },
    )?;
    Ok(owned_file(
        step,
        &f.path,
        w.facts,
        content,
        &format!(
            "Triton {} with the model repository {}",
            tc.release.release, ts.model_repository
        ),
    ))
}

pub(super) fn start(step: &GuestStep, w: &Walk) -> Option<Change> {
    let d = w.d;
    if d.spec.triton.is_none() || d.triton.is_none() || !d.driver_ready {
        return None;
    }
    let reason = if w.changed(|k| matches!(k, GuestStepKind::TritonUnit(_))) {
        "the unit changed".to_string()
    } else if w.changed(|k| matches!(k, GuestStepKind::CdiSpec { .. })) {
        "the CDI spec changed".to_string()
    } else if w.facts.triton_service.as_deref() != Some("active") {
        "the service is not running".to_string()
    } else {
        not_in_effect(w)?
    };
    Some(step.run(
        reason,
        format!(
            "systemctl daemon-reload && systemctl enable {TRITON_UNIT} && systemctl restart {TRITON_UNIT}"
        ),
    ))
}

/// The service runs, but its unit or CDI spec was written after it started: an apply cut
/// between that write and this step leaves it so, and the write alone no longer plans the
/// restart.
fn not_in_effect(w: &Walk) -> Option<String> {
    let since = &w.facts.triton_since;
    let path_of =
        |is: fn(&GuestStepKind) -> Option<&str>| GUEST.steps.iter().find_map(|s| is(&s.kind));
    let unit = path_of(|k| match k {
        GuestStepKind::TritonUnit(f) => Some(f.path.as_str()),
        _ => None,
    })?;
    if since.needs_reload {
        return Some(format!(
            "{unit} changed on disk since systemd read it, so the running service does not have it"
        ));
    }
    let started = since.active_since?;
    let unit_mtime = w.facts.files.get(unit).and_then(|f| f.mtime);
    let spec = path_of(|k| match k {
        GuestStepKind::CdiSpec { path } => Some(path.as_str()),
        _ => None,
    });
    let spec_mtime = spec.and_then(|p| Some((p, *w.facts.cdi_mtimes.get(p)?)));
    let newer: Vec<&str> = [unit_mtime.map(|m| (unit, m)), spec_mtime]
        .into_iter()
        .flatten()
        .filter(|(_, mtime)| *mtime > started)
        .map(|(path, _)| path)
        .collect();
    (!newer.is_empty()).then(|| {
        format!(
            "{} changed after the service started, so the running service does not have it",
            newer.join(" and ")
        )
    })
}
