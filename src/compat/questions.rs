//! The questions `pvegpu compat` answers beside its recommendation: which releases load a
//! model, whether one named release fits the GPUs (and why not), and the oldest and newest
//! release per backend. Pure: the recommendation and the tables are all it reads; the command
//! reads the model files and hands over their headers.

use super::onnx::{Misfit, model_fits_in};
use super::recommend::Recommendation;
use super::tables::{Tables, TritonRelease};
use super::triton::{Backend, DriverFit, blocked, driver_fit, native_floor};
use super::version::{Cc, DriverVersion};
use serde::Serialize;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QuestionError {
    #[error(
        "Triton {asked} is not in pvegpu's tables, which hold the `-py3` releases {first} to {last}"
    )]
    UnknownRelease {
        asked: String,
        first: String,
        last: String,
    },
    #[error("`--release` judges a release for GPUs, and none were given")]
    ReleaseNeedsGpus,
}

impl crate::core::error::Hint for QuestionError {
    fn hint(&self) -> Option<String> {
        match self {
            QuestionError::UnknownRelease { .. } => Some(
                "name a release as its container tag spells it (`23.05`); `pvegpu compat GPU` lists the oldest and newest that fit"
                    .into(),
            ),
            QuestionError::ReleaseNeedsGpus => Some(
                "name the GPUs (`pvegpu compat 10de:1b80 --release 23.05`), or take them from `--facts FILE` or `--node NODE`"
                    .into(),
            ),
        }
    }
}

/// An ONNX model's header, as the command read it from the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Model {
    pub path: String,
    pub ir_version: u32,
    pub opset: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub producer: Option<String>,
}

/// Which Triton releases' ONNX Runtime loads one model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelAnswer {
    #[serde(flatten)]
    pub model: Model,
    /// The oldest release whose ONNX Runtime loads it, whatever the GPUs.
    pub first_loading: Option<String>,
    /// The newest release whose ONNX Runtime loads it.
    pub last_loading: Option<String>,
    /// Releases whose ONNX Runtime limits are not in the data: neither yes nor no.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unknown: Vec<String>,
    /// With GPUs: the recommended ONNX release, and whether it loads the model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recommended: Option<ModelOnRelease>,
    /// With GPUs: the oldest and newest release that serves ONNX on them and loads the
    /// model, whatever the driver.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_for_gpus: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest_for_gpus: Option<String>,
    /// Of those, the newest the assumed driver runs natively (or by forward compatibility).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest_fitting: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelOnRelease {
    pub release: String,
    pub loads: bool,
    /// Why it does not, with the ways out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why_not: Option<String>,
}

/// The oldest and newest release of one backend for these GPUs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReleaseRange {
    pub backend: Backend,
    /// Whatever the driver: what the GPUs' compute capability allows.
    pub oldest: Option<String>,
    pub newest: Option<String>,
    /// Of those, what the assumed driver runs natively (or by forward compatibility).
    pub oldest_on_driver: Option<String>,
    pub newest_on_driver: Option<String>,
}

/// Is one named release right for these GPUs, per backend, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReleaseCheck {
    pub release: String,
    pub image: String,
    pub cuda: String,
    /// The lowest driver that runs it natively.
    pub native_driver: Option<DriverVersion>,
    pub backends: Vec<BackendVerdict>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fit {
    Fits,
    /// Runs, by CUDA minor-version compatibility only: degraded, smoke-test required.
    FitsDegraded,
    DoesNotFit,
    /// The data lacks what the answer depends on.
    Unknown,
}

impl Fit {
    pub fn as_str(self) -> &'static str {
        match self {
            Fit::Fits => "fits",
            Fit::FitsDegraded => "fits, degraded",
            Fit::DoesNotFit => "does not fit",
            Fit::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackendVerdict {
    pub backend: Backend,
    pub fit: Fit,
    pub why: Vec<String>,
    /// What pvegpu recommends for this backend instead, where that differs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recommended: Option<String>,
}

/// What the recommendation's GPUs and driver mean for the questions.
struct Target<'r> {
    ccs: Vec<Cc>,
    driver: &'r DriverVersion,
    all_datacenter: bool,
    rec: &'r Recommendation,
}

impl<'r> Target<'r> {
    fn of(rec: &'r Recommendation) -> Self {
        let mut ccs: Vec<Cc> = rec.gpus.iter().map(|g| g.cc).collect();
        ccs.sort();
        ccs.dedup();
        Target {
            ccs,
            driver: &rec.assumed_driver,
            all_datacenter: rec
                .gpus
                .iter()
                .all(|g| matches!(g.brand.as_deref(), Some("tesla" | "datacenter"))),
            rec,
        }
    }

    fn serves<'t>(&self, t: &'t Tables, backend: Backend) -> Vec<&'t TritonRelease> {
        t.triton
            .iter()
            .filter(|r| blocked(t, r, backend, &self.ccs).is_none())
            .collect()
    }

    fn runs(&self, t: &Tables, r: &TritonRelease) -> bool {
        driver_fit(t, r, self.driver, self.all_datacenter).preferred()
    }

    fn recommended(&self, backend: Backend) -> Option<&'r str> {
        self.rec
            .triton
            .iter()
            .find(|c| c.backend == backend)
            .and_then(|c| c.recommended.as_ref())
            .map(|c| c.release.as_str())
    }
}

/// The oldest and newest release per backend the recommendation covers.
pub fn ranges(t: &Tables, rec: &Recommendation) -> Vec<ReleaseRange> {
    let target = Target::of(rec);
    rec.triton
        .iter()
        .map(|c| {
            let serves = target.serves(t, c.backend);
            let on_driver: Vec<&&TritonRelease> =
                serves.iter().filter(|r| target.runs(t, r)).collect();
            let name = |r: Option<&&TritonRelease>| r.map(|r| r.release.clone());
            ReleaseRange {
                backend: c.backend,
                oldest: name(serves.first()),
                newest: name(serves.last()),
                oldest_on_driver: on_driver.first().map(|r| r.release.clone()),
                newest_on_driver: on_driver.last().map(|r| r.release.clone()),
            }
        })
        .collect()
}

/// Judge one named release for the recommendation's GPUs and driver, per backend.
pub fn check_release(
    t: &Tables,
    rec: &Recommendation,
    release: &str,
    models: &[Model],
) -> Result<ReleaseCheck, QuestionError> {
    let asked = release.trim().trim_end_matches("-py3");
    let r = t
        .triton
        .iter()
        .find(|r| r.release == asked)
        .ok_or_else(|| QuestionError::UnknownRelease {
            asked: release.to_string(),
            first: t
                .triton
                .first()
                .map(|r| r.release.clone())
                .unwrap_or_default(),
            last: t
                .triton
                .last()
                .map(|r| r.release.clone())
                .unwrap_or_default(),
        })?;
    let target = Target::of(rec);
    let backends = rec
        .triton
        .iter()
        .map(|c| verdict(t, &target, r, c.backend, models))
        .collect();
    Ok(ReleaseCheck {
        release: r.release.clone(),
        image: r.image(),
        cuda: r.cuda.to_string(),
        native_driver: native_floor(t, r),
        backends,
    })
}

fn verdict(
    t: &Tables,
    target: &Target,
    r: &TritonRelease,
    backend: Backend,
    models: &[Model],
) -> BackendVerdict {
    let mut why = Vec::new();
    let mut fit = Fit::Fits;
    if let Some(b) = blocked(t, r, backend, &target.ccs) {
        fit = if b.contains("not in the data") {
            Fit::Unknown
        } else {
            Fit::DoesNotFit
        };
        why.push(b);
    }
    let driver_fit = driver_fit(t, r, target.driver, target.all_datacenter);
    let floor = native_floor(t, r)
        .map(|f| format!("driver {f} or newer"))
        .unwrap_or_else(|| "a driver the data does not name".into());
    match &driver_fit {
        DriverFit::Unmet => {
            fit = Fit::DoesNotFit;
            why.push(format!(
                "its CUDA {} needs {floor}; driver {} cannot run it",
                r.cuda, target.driver
            ));
        }
        DriverFit::Mvc => {
            if fit == Fit::Fits {
                fit = Fit::FitsDegraded;
            }
            why.push(format!(
                "driver {} runs its CUDA {} only by minor-version compatibility (natively: {floor}): degraded, smoke-test required",
                target.driver, r.cuda
            ));
        }
        fit_ok => why.push(format!(
            "driver {} runs its CUDA {}: {}",
            target.driver,
            r.cuda,
            fit_ok.describe()
        )),
    }
    if backend == Backend::Onnx {
        for m in models {
            if let Err(misfit) = model_fits_in(t, r, m.ir_version, m.opset) {
                fit = match (fit, misfit.limit) {
                    (Fit::DoesNotFit, _) => Fit::DoesNotFit,
                    (_, super::onnx::Limit::Unknown) => Fit::Unknown,
                    _ => Fit::DoesNotFit,
                };
                why.push(format!("{}: {misfit}", m.path));
            }
        }
    }
    let recommended = target
        .recommended(backend)
        .filter(|x| *x != r.release)
        .map(str::to_string);
    BackendVerdict {
        backend,
        fit,
        why,
        recommended,
    }
}

/// Which releases load each model; with a recommendation, also on these GPUs and driver.
pub fn models(t: &Tables, rec: Option<&Recommendation>, models: &[Model]) -> Vec<ModelAnswer> {
    models.iter().map(|m| model_answer(t, rec, m)).collect()
}

fn model_answer(t: &Tables, rec: Option<&Recommendation>, m: &Model) -> ModelAnswer {
    let results: Vec<(&TritonRelease, Result<(), Misfit>)> = t
        .triton
        .iter()
        .map(|r| (r, model_fits_in(t, r, m.ir_version, m.opset)))
        .collect();
    let loading: Vec<&str> = results
        .iter()
        .filter(|(_, res)| res.is_ok())
        .map(|(r, _)| r.release.as_str())
        .collect();
    let unknown = results
        .iter()
        .filter(|(_, res)| {
            res.as_ref()
                .is_err_and(|e| e.limit == super::onnx::Limit::Unknown)
        })
        .map(|(r, _)| r.release.clone())
        .collect();
    let mut answer = ModelAnswer {
        model: m.clone(),
        first_loading: loading.first().map(|s| s.to_string()),
        last_loading: loading.last().map(|s| s.to_string()),
        unknown,
        recommended: None,
        oldest_for_gpus: None,
        newest_for_gpus: None,
        newest_fitting: None,
    };
    let Some(rec) = rec else {
        return answer;
    };
    let target = Target::of(rec);
    answer.recommended = target.recommended(Backend::Onnx).map(|release| {
        let why_not = results
            .iter()
            .find(|(r, _)| r.release == release)
            .and_then(|(_, res)| res.as_ref().err())
            .map(|e| e.to_string());
        ModelOnRelease {
            release: release.to_string(),
            loads: why_not.is_none(),
            why_not,
        }
    });
    let for_gpus: Vec<&TritonRelease> = target
        .serves(t, Backend::Onnx)
        .into_iter()
        .filter(|r| loading.contains(&r.release.as_str()))
        .collect();
    answer.oldest_for_gpus = for_gpus.first().map(|r| r.release.clone());
    answer.newest_for_gpus = for_gpus.last().map(|r| r.release.clone());
    answer.newest_fitting = for_gpus
        .iter()
        .rev()
        .find(|r| target.runs(t, r))
        .map(|r| r.release.clone());
    answer
}
