//! Which Triton release serves which backend on a set of GPUs with a given driver
//! (RULES.md §3.4): the compute-capability floors of the release and its backend, then the
//! driver condition: native, data-center forward compatibility, or minor-version
//! compatibility (degraded, smoke test required).

use super::driver::Window;
use super::reason::Reason;
use super::tables::{CompatPackage, Tables, TritonRelease};
use super::version::{Cc, CudaVersion, DriverVersion};
use serde::Serialize;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not a Triton backend pvegpu chooses for; use onnx, tensorrt or python")]
pub struct BackendError(pub String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Onnx,
    Tensorrt,
    Python,
}

impl Backend {
    pub const ALL: [Backend; 3] = [Backend::Onnx, Backend::Tensorrt, Backend::Python];
}

impl FromStr for Backend {
    type Err = BackendError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "onnx" | "onnxruntime" => Ok(Backend::Onnx),
            "tensorrt" | "trt" => Ok(Backend::Tensorrt),
            "python" => Ok(Backend::Python),
            _ => Err(BackendError(s.to_string())),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Onnx => "onnx",
            Backend::Tensorrt => "tensorrt",
            Backend::Python => "python",
        })
    }
}

/// How a release's CUDA meets the driver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "how", rename_all = "snake_case")]
pub enum DriverFit {
    /// The driver's own CUDA is new enough.
    Native,
    /// Data-center GPUs only: the release's cuda-compat `package` on an older driver branch
    /// that NVIDIA's forward-compatibility table marks compatible, from driver `via` on.
    ForwardCompat { package: String, via: DriverVersion },
    /// CUDA minor-version compatibility: same major, limited features.
    Mvc,
    /// The driver cannot run it.
    Unmet,
}

impl DriverFit {
    pub fn describe(&self) -> String {
        match self {
            DriverFit::Native => "native".into(),
            DriverFit::ForwardCompat { package, via } => {
                let from = if via.is_branch_only() {
                    String::new()
                } else {
                    format!(", from driver {via}")
                };
                format!(
                    "data-center forward compatibility ({package} on R{}, as NVIDIA's forward-compatibility table lists{from})",
                    via.branch()
                )
            }
            DriverFit::Mvc => "minor-version compatibility: degraded, smoke-test required".into(),
            DriverFit::Unmet => "driver too old".into(),
        }
    }

    pub fn preferred(&self) -> bool {
        matches!(self, DriverFit::Native | DriverFit::ForwardCompat { .. })
    }
}

/// The lowest driver that runs `r` natively: the CUDA table's minimum for its toolkit, or
/// the release notes' floor if that is higher (RULES.md §3.6: the notes' floors for CUDA
/// 12.8/13.x are too low).
pub fn native_floor(t: &Tables, r: &TritonRelease) -> Option<DriverVersion> {
    let table = t.toolkit(&r.cuda).map(|k| k.min_driver.clone());
    match (table, r.driver_min.clone()) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

pub fn driver_fit(
    t: &Tables,
    r: &TritonRelease,
    driver: &DriverVersion,
    all_datacenter: bool,
) -> DriverFit {
    let Some(branch) = t.branch(driver.branch()) else {
        return DriverFit::Unmet;
    };
    let floor_ok = native_floor(t, r).is_none_or(|f| driver.at_least(&f));
    if r.cuda.minor_key() <= branch.max_cuda.minor_key() && floor_ok {
        return DriverFit::Native;
    }
    if all_datacenter && let Some((package, via)) = forward_compat_floor(t, r, driver) {
        return DriverFit::ForwardCompat {
            package: package.package.clone(),
            via,
        };
    }
    if r.cuda.major == branch.max_cuda.major && driver.at_least(&r.mvc_floor) {
        return DriverFit::Mvc;
    }
    DriverFit::Unmet
}

/// The cuda-compat package of `r` and the lowest driver of `driver`'s branch it runs on, where
/// forward compatibility is open to that branch (data-center GPUs assumed): NVIDIA's
/// forward-compatibility table must mark the branch compatible with the package of `r`'s CUDA
/// minor release, and the branch must not be a New Feature Branch (the table's note). The
/// release notes' data-center list can only narrow this: where the notes give one, the
/// branch must be on it too and the higher of the two minimums counts (the notes' lists were
/// copied forward from release to release and still name R470, R525 and R545, which the
/// table no longer lists). No row for the CUDA version, no forward compatibility.
pub fn forward_compat_floor<'t>(
    t: &'t Tables,
    r: &TritonRelease,
    driver: &DriverVersion,
) -> Option<(&'t CompatPackage, DriverVersion)> {
    let package = t.compat_package(&r.cuda)?;
    if t.branch(driver.branch())?.is_new_feature_branch() {
        return None;
    }
    let same_branch = |d: &&DriverVersion| d.branch() == driver.branch();
    let table = package.drivers.iter().find(same_branch)?;
    let floor = match &r.dc_compat_drivers {
        Some(notes) => table.clone().max(notes.iter().find(same_branch)?.clone()),
        None => table.clone(),
    };
    driver.at_least(&floor).then_some((package, floor))
}

/// The compute-capability floor of `r` for `backend`: the documented minimum, raised to the
/// ONNX Runtime or TensorRT build floor. None where the data lacks the backend's floor.
pub fn cc_floor(r: &TritonRelease, backend: Backend) -> Option<Cc> {
    let extra = match backend {
        Backend::Onnx => Some(r.ort_min_cc?),
        Backend::Tensorrt => Some(r.trt_min_cc?),
        Backend::Python => None,
    };
    Some(extra.map_or(r.cc_min, |e| e.max(r.cc_min)))
}

/// Why `r` cannot serve `backend` on GPUs with these CCs; None when it can.
pub fn blocked(t: &Tables, r: &TritonRelease, backend: Backend, ccs: &[Cc]) -> Option<String> {
    let min = *ccs.iter().min()?;
    let Some(floor) = cc_floor(r, backend) else {
        let what = match backend {
            Backend::Onnx => "ONNX Runtime",
            _ => "TensorRT",
        };
        return Some(format!(
            "the {what} build of {} is not in the data",
            r.release
        ));
    };
    if floor > min {
        let what = match backend {
            Backend::Onnx if r.ort_min_cc == Some(floor) && floor > r.cc_min => {
                "its ONNX Runtime backend is built for"
            }
            Backend::Tensorrt if r.trt_min_cc == Some(floor) && floor > r.cc_min => {
                "its TensorRT is built for"
            }
            _ => "its release notes require",
        };
        return Some(format!(
            "{}: {what} CC {floor} and newer, above {min}",
            r.release
        ));
    }
    if let Some(k) = t.toolkit(&r.cuda)
        && let Some(cc) = ccs.iter().find(|cc| !k.builds_for(**cc))
    {
        return Some(format!(
            "{}: its CUDA {} cannot build for CC {cc}",
            r.release, r.cuda
        ));
    }
    None
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReleaseChoice {
    pub release: String,
    pub image: String,
    pub cuda: CudaVersion,
    /// How the driver the recommendation assumes runs it.
    pub driver_fit: DriverFit,
    /// The lowest driver that runs it natively.
    pub native_driver: Option<DriverVersion>,
    /// Branches of the window that run it natively.
    pub native_branches: Vec<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub onnxruntime: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_ir_version: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_opset: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tensorrt: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackendChoice {
    pub backend: Backend,
    /// The newest release that runs natively (or by forward compatibility); failing that,
    /// the newest by minor-version compatibility.
    pub recommended: Option<ReleaseChoice>,
    /// The newest release with this backend for these GPUs, where newer than `recommended`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest: Option<ReleaseChoice>,
    /// Why no release serves the backend.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub none_because: Option<String>,
}

fn choice(
    t: &Tables,
    r: &TritonRelease,
    backend: Backend,
    fit: DriverFit,
    window: &Window,
) -> ReleaseChoice {
    let floor = native_floor(t, r);
    let native_branches = window
        .branches
        .iter()
        .copied()
        .filter(|b| {
            t.branch(*b).is_some_and(|br| {
                r.cuda.minor_key() <= br.max_cuda.minor_key()
                    && floor.as_ref().is_none_or(|f| *b >= f.branch())
            })
        })
        .collect();
    ReleaseChoice {
        release: r.release.clone(),
        image: r.image(),
        cuda: r.cuda.clone(),
        driver_fit: fit,
        native_driver: floor,
        native_branches,
        onnxruntime: (backend == Backend::Onnx).then(|| r.ort.clone()).flatten(),
        max_ir_version: (backend == Backend::Onnx).then_some(r.ort_max_ir).flatten(),
        max_opset: (backend == Backend::Onnx)
            .then_some(r.ort_max_opset)
            .flatten(),
        tensorrt: (backend == Backend::Tensorrt)
            .then(|| r.tensorrt())
            .flatten(),
        conflicts: r.conflicts.clone(),
    }
}

fn inferred_about(r: &TritonRelease, keys: &[&str]) -> bool {
    r.inferred
        .iter()
        .any(|i| keys.iter().any(|k| i.contains(k)))
}

fn backend_keys(backend: Backend) -> &'static [&'static str] {
    match backend {
        Backend::Onnx => &["onnxruntime", "cc_min_documented"],
        Backend::Tensorrt => &["tensorrt", "cc_min_documented"],
        Backend::Python => &["cc_min_documented"],
    }
}

/// Branch range text: `R560–R580`.
pub fn branches_text(b: &[u32]) -> String {
    match (b.first(), b.last()) {
        (Some(f), Some(l)) if f == l => format!("R{f}"),
        (Some(f), Some(l)) => format!("R{f}–R{l}"),
        _ => "no branch of the window".into(),
    }
}

/// Choose the release for one backend.
pub fn choose(
    t: &Tables,
    backend: Backend,
    ccs: &[Cc],
    driver: &DriverVersion,
    all_datacenter: bool,
    window: &Window,
) -> (BackendChoice, Vec<Reason>) {
    let ask = Ask {
        t,
        backend,
        ccs,
        min: ccs.iter().min().copied().unwrap_or(Cc::new(0, 0)),
        driver,
        all_datacenter,
        window,
    };
    let eligible: Vec<&TritonRelease> = t
        .triton
        .iter()
        .filter(|r| blocked(t, r, backend, ccs).is_none())
        .collect();
    let Some(newest) = eligible.last() else {
        let (why, reason) = ask.none_eligible();
        return (
            BackendChoice {
                backend,
                recommended: None,
                newest: None,
                none_because: Some(why),
            },
            vec![reason],
        );
    };
    let mut reasons: Vec<Reason> = ask.why_line_ends(newest).into_iter().collect();

    let fits: Vec<(&TritonRelease, DriverFit)> = eligible
        .iter()
        .map(|r| (*r, driver_fit(t, r, driver, all_datacenter)))
        .collect();
    let rec = fits
        .iter()
        .rev()
        .find(|(_, f)| f.preferred())
        .or_else(|| fits.iter().rev().find(|(_, f)| *f == DriverFit::Mvc));
    let recommended = rec.map(|(r, f)| {
        reasons.push(ask.recommended_reason(r, f));
        choice(t, r, backend, f.clone(), window)
    });
    let newest_choice = if rec.is_some_and(|(r, _)| r.release == newest.release) {
        None
    } else {
        let (c, reason) = ask.newest_beyond_recommended(newest);
        reasons.push(reason);
        Some(c)
    };

    let none_because = recommended.is_none().then(|| {
        format!(
            "driver {driver} runs no release for CC {}; install a newer driver from the window {window}",
            ask.min
        )
    });
    (
        BackendChoice {
            backend,
            recommended,
            newest: newest_choice,
            none_because,
        },
        reasons,
    )
}

/// One backend's question to the tables: these GPUs (`min` the lowest CC), this driver.
struct Ask<'a> {
    t: &'a Tables,
    backend: Backend,
    ccs: &'a [Cc],
    min: Cc,
    driver: &'a DriverVersion,
    all_datacenter: bool,
    window: &'a Window,
}

impl Ask<'_> {
    /// No release serves the backend on these GPUs: why, and the reason to show.
    fn none_eligible(&self) -> (String, Reason) {
        let (backend, min) = (self.backend, self.min);
        let lowest = self
            .t
            .triton
            .iter()
            .filter_map(|r| cc_floor(r, backend).map(|f| (f, r)))
            .min_by_key(|(f, _)| *f);
        let why = match lowest {
            Some((f, r)) if f > min => format!(
                "every release needs CC {f} or newer for {backend} (the lowest floor, {} onwards), above {min}",
                r.release
            ),
            _ => format!("no release in the table serves {backend} on CC {min}"),
        };
        let sources = lowest.map(|(_, r)| r.source.iter()).into_iter().flatten();
        let reason = Reason::new(
            format!("Triton {backend}: {why}"),
            lowest.is_some_and(|(_, r)| inferred_about(r, backend_keys(backend))),
            sources,
        );
        (why, reason)
    }

    /// The release after the newest eligible one: why the line ends there.
    fn why_line_ends(&self, newest: &TritonRelease) -> Option<Reason> {
        let (backend, min) = (self.backend, self.min);
        let next = self.t.triton.iter().find(|r| r.release > newest.release)?;
        let why = blocked(self.t, next, backend, self.ccs)?;
        let mut text = format!(
            "Triton {backend}: {} is the newest release for CC {min}; {why}",
            newest.release
        );
        let about: &[&str] = match backend {
            Backend::Onnx => &["cc:", "ORT:"],
            _ => &["cc:"],
        };
        let conflicts: Vec<&str> = next
            .conflicts
            .iter()
            .map(String::as_str)
            .filter(|c| about.iter().any(|a| c.starts_with(a)))
            .collect();
        if !conflicts.is_empty() {
            text.push_str(&format!(
                " (sources disagree: {}; the stricter value is used)",
                conflicts.join("; ")
            ));
        }
        Some(Reason::new(
            text,
            inferred_about(next, backend_keys(backend)),
            next.source.iter(),
        ))
    }

    /// Why `r` is the recommendation, by how the driver runs it.
    fn recommended_reason(&self, r: &TritonRelease, fit: &DriverFit) -> Reason {
        let (t, backend, min, driver) = (self.t, self.backend, self.min, self.driver);
        let branch = t.branch(driver.branch());
        let driver_cuda = branch
            .map(|b| b.max_cuda.to_string())
            .unwrap_or_else(|| "?".into());
        let text = match fit {
            DriverFit::Native => format!(
                "Triton {backend}: {} is the newest release whose CUDA {} driver {driver} runs natively (R{} runs CUDA {driver_cuda}{})",
                r.release,
                r.cuda,
                driver.branch(),
                native_floor(t, r)
                    .map(|f| format!("; {} needs {f}", r.cuda))
                    .unwrap_or_default()
            ),
            DriverFit::ForwardCompat { package, via } => format!(
                "Triton {backend}: {} (CUDA {}) runs on driver {driver} through data-center forward compatibility: NVIDIA's forward-compatibility table lists {package} for R{}{}, and every GPU is a data-center card",
                r.release,
                r.cuda,
                via.branch(),
                if via.is_branch_only() {
                    String::new()
                } else {
                    format!(
                        " (its release notes ask for {via} or later R{})",
                        via.branch()
                    )
                }
            ),
            _ => format!(
                "Triton {backend}: no release for CC {min} runs natively on driver {driver} (CUDA {driver_cuda}); {} (CUDA {}) runs through minor-version compatibility (CUDA {}.x from driver {}): degraded, smoke-test required",
                r.release, r.cuda, r.cuda.major, r.mvc_floor
            ),
        };
        let mut sources: Vec<&String> = r.source.iter().collect();
        sources.extend(branch.map(|b| b.source.iter()).into_iter().flatten());
        sources.extend(
            t.toolkit(&r.cuda)
                .map(|k| k.source.iter())
                .into_iter()
                .flatten(),
        );
        if matches!(fit, DriverFit::ForwardCompat { .. }) {
            sources.extend(
                t.compat_package(&r.cuda)
                    .into_iter()
                    .flat_map(|p| &p.source),
            );
        }
        Reason::new(
            text,
            inferred_about(r, &["cuda_version", "driver_min"]),
            sources,
        )
    }

    /// The newest eligible release where it is not the recommendation: what it would need.
    fn newest_beyond_recommended(&self, newest: &TritonRelease) -> (ReleaseChoice, Reason) {
        let (backend, min, driver, window) = (self.backend, self.min, self.driver, self.window);
        let fit = driver_fit(self.t, newest, driver, self.all_datacenter);
        let c = choice(self.t, newest, backend, fit.clone(), window);
        let native = match (&c.native_driver, c.native_branches.is_empty()) {
            (Some(f), false) => format!(
                "natively it needs driver {f} or newer ({} from NVIDIA's repository)",
                branches_text(&c.native_branches)
            ),
            (Some(f), true) => {
                format!("natively it needs driver {f} or newer, outside the window {window}")
            }
            (None, _) => "its native driver floor is not in the data".into(),
        };
        let on_driver = match &fit {
            DriverFit::Unmet => format!("driver {driver} cannot run it"),
            f => format!("on driver {driver}: {}", f.describe()),
        };
        let reason = Reason::new(
            format!(
                "Triton {backend}: {} (CUDA {}) is the newest release for CC {min}; {on_driver}; {native}",
                newest.release, newest.cuda
            ),
            inferred_about(newest, &["cuda_version", "driver_min"]),
            newest.source.iter(),
        );
        (c, reason)
    }
}
