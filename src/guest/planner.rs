//! The guest planner: a pure function from the inventory's `[vm.guest]` and the guest's facts
//! to a [`GuestPlan`], walking playbooks/guest.toml. Every version comes from compat (driver
//! package, module flavour, CUDA range, Triton release); the planner only decides what is
//! missing on this guest.
//!
//! Ownership: pvegpu writes whole files it owns (each marked `Managed by pvegpu`) and runs
//! apt, dkms, nvidia-ctk and systemctl; it never edits a foreign apt source. A refused plan
//! carries no changes, so nothing is half-installed.

use super::facts::GuestFacts;
use super::onnx_check;
use super::parse::SecureBoot;
use super::playbook::{GUEST, GuestStep, GuestStepKind, Repository};
use super::spec::{CudaToolkit, GuestSpec, Runtime};
use crate::compat::driver::{DriverSource, Flavour};
use crate::compat::tables::TritonRelease;
use crate::compat::triton::{DriverFit, cc_floor, driver_fit};
use crate::compat::version::CudaVersion;
use crate::compat::{Backend, Distro, Recommendation, Request, recommend, tables};
use crate::plan::{Action, Change, Refusal, unified_diff};
use crate::templates;
use crate::templates::TemplateError;
use minijinja::context;
use serde::Serialize;
use std::collections::BTreeSet;

pub const TRITON_UNIT: &str = "pvegpu-triton.service";
const CDI_SPEC: &str = "/etc/cdi/nvidia.yaml";
const CUDA_ORIGIN: &str = "developer.download.nvidia.com";
/// NVIDIA's entry point to each CUDA repository, and where it keeps the repository's key.
const CUDA_KEYRING_DEB: &str = "cuda-keyring_1.1-1_all.deb";
const CUDA_KEYRING_PATH: &str = "/usr/share/keyrings/cuda-archive-keyring.gpg";
const CONTAINER_TOOLKIT_URI: &str = "https://nvidia.github.io/libnvidia-container/stable/deb";
const DEBIAN_COMPONENTS: [&str; 3] = ["contrib", "non-free", "non-free-firmware"];
const APT_INSTALL: &str = "DEBIAN_FRONTEND=noninteractive apt-get install -y";

#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    #[error(transparent)]
    Template(#[from] TemplateError),
}

/// The reboot reason for a driver that is installed but not loaded. A reboot loads it if
/// anything can, so the executor stops when this is the reason after a reboot.
pub const NOT_LOADED: &str = "the NVIDIA driver is installed but its module is not loaded";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuestPlan {
    pub guest: String,
    pub context: String,
    /// What compat chose for this guest, one line each (driver, module, CUDA, Triton).
    pub choices: Vec<String>,
    pub changes: Vec<Change>,
    pub refusals: Vec<Refusal>,
    pub notes: Vec<String>,
}

impl GuestPlan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    pub fn needs_reboot(&self) -> bool {
        self.changes.iter().any(|c| c.action == Action::Reboot)
    }

    pub fn render_text(&self) -> String {
        let mut out = format!("Guest {}: {}\n", self.guest, self.context);
        if !self.choices.is_empty() {
            out.push_str("\nChosen:\n");
            for c in &self.choices {
                out.push_str(&format!("  {c}\n"));
            }
        }
        if crate::plan::render_verdict(
            &mut out,
            &self.notes,
            &self.refusals,
            self.changes.is_empty(),
        ) {
            return out;
        }
        crate::plan::render_changes(&mut out, &self.changes);
        out
    }
}

/// The Triton release the plan deploys.
struct TritonChoice {
    release: &'static TritonRelease,
    backend: Backend,
}

/// What the planner derived before walking the steps.
struct Desired<'a> {
    spec: &'a GuestSpec,
    distro: Distro,
    rec: Recommendation,
    /// The driver packages apt installs (distribution packages).
    driver_packages: Vec<String>,
    driver_missing: Vec<String>,
    /// Driver packages held against partial upgrades (the firmware is not part of NVML).
    hold: Vec<String>,
    cuda_package: Option<String>,
    triton: Option<TritonChoice>,
    nouveau_has_device: bool,
    /// The loaded driver answers nvidia-smi and nothing in this plan replaces it: GPU UUIDs
    /// are known and the CDI spec and Triton can be set up now.
    driver_ready: bool,
    reboot_reasons: Vec<String>,
}

impl Desired<'_> {
    fn needs(&self, repo: Repository) -> bool {
        match repo {
            Repository::Debian => self.distro.is_debian(),
            Repository::Cuda => self.cuda_package.is_some(),
            Repository::ContainerToolkit => true,
        }
    }
}

fn refusal(reason: impl Into<String>, hint: impl Into<String>) -> Refusal {
    Refusal {
        reason: reason.into(),
        hint: hint.into(),
    }
}

pub fn plan(desired: &GuestSpec, facts: &GuestFacts) -> Result<GuestPlan, GuestError> {
    let guest = if facts.hostname.is_empty() {
        "guest".to_string()
    } else {
        facts.hostname.clone()
    };
    let mut plan = GuestPlan {
        guest,
        context: context_line(facts),
        choices: Vec::new(),
        changes: Vec::new(),
        refusals: Vec::new(),
        notes: Vec::new(),
    };
    let d = match derive(desired, facts, &mut plan) {
        Some(d) if plan.refusals.is_empty() => d,
        _ => return Ok(plan),
    };
    for step in &GUEST.steps {
        let changes = walk(step, facts, &d, &plan.changes, &mut plan.notes)?;
        plan.changes.extend(changes);
    }
    Ok(plan)
}

fn context_line(facts: &GuestFacts) -> String {
    let os = if facts.os.pretty_name.is_empty() {
        "unknown distribution".to_string()
    } else {
        facts.os.pretty_name.clone()
    };
    let gpus: Vec<String> = facts
        .gpus()
        .map(|g| format!("{} [{}]", g.address, g.id))
        .collect();
    let driver = match (facts.loaded_driver(), &facts.smi_error) {
        (Some(v), _) => format!("driver {v} loaded"),
        (None, Some(e)) => format!("nvidia-smi fails ({e})"),
        (None, None) => "no NVIDIA driver loaded".to_string(),
    };
    let sb = match facts.secure_boot {
        SecureBoot::Enabled => "Secure Boot on",
        SecureBoot::Disabled => "Secure Boot off",
        SecureBoot::NotUefi => "BIOS boot",
        SecureBoot::Unknown => "Secure Boot unknown",
    };
    format!(
        "{os}, kernel {}, GPUs {}, {driver}, {sb}",
        facts.running_kernel,
        if gpus.is_empty() {
            "none".to_string()
        } else {
            gpus.join(", ")
        }
    )
}

/// Compat's choices and every refusal; None when nothing can be chosen.
fn derive<'a>(
    spec: &'a GuestSpec,
    facts: &GuestFacts,
    plan: &mut GuestPlan,
) -> Option<Desired<'a>> {
    let distro = match facts.distro() {
        Ok(d) => d,
        Err(e) => {
            plan.refusals.push(refusal(
                e.to_string(),
                "install the guest with Debian 12 or 13 or Ubuntu 22.04 or 24.04; pvegpu changed nothing",
            ));
            return None;
        }
    };
    let gpu_ids: Vec<String> = facts.gpus().map(|g| g.id.to_string()).collect();
    if gpu_ids.is_empty() {
        plan.refusals.push(refusal(
            "the guest sees no NVIDIA GPU (`lspci -nn -d 10de:` lists no display controller)",
            "pass the GPU through to this VM first (the host and VM phases), then plan the guest again",
        ));
        return None;
    }
    let t = tables();
    let installed_driver = facts.loaded_driver().and_then(|v| v.parse().ok());
    let request = Request {
        gpus: gpu_ids,
        distro,
        driver: installed_driver,
        backends: spec.triton.iter().map(|t| t.backend).collect(),
    };
    let rec = match recommend(t, &request) {
        Ok(r) => r,
        Err(e) => {
            plan.refusals.push(refusal(
                e.to_string(),
                "pvegpu installs nothing it cannot choose from its tables; `pvegpu compat` with the ids above says the same offline",
            ));
            return None;
        }
    };

    // The driver: the distribution's package, with the flavour compat requires.
    let package = match &rec.driver.source {
        DriverSource::Distro { package, .. } => package.clone(),
        DriverSource::NvidiaRepository => {
            let fits: Vec<String> = Distro::ALL
                .into_iter()
                .filter(|d| *d != distro)
                .filter(|d| {
                    recommend(
                        t,
                        &Request {
                            distro: *d,
                            driver: None,
                            backends: vec![],
                            ..request.clone()
                        },
                    )
                    .is_ok_and(|r| matches!(r.driver.source, DriverSource::Distro { .. }))
                })
                .map(|d| d.to_string())
                .collect();
            plan.refusals.push(refusal(
                format!(
                    "no {distro} driver package drives these GPUs (they need {}; see `pvegpu compat`), and pvegpu installs the driver only from the distribution",
                    rec.window
                ),
                if fits.is_empty() {
                    "no supported distribution packages a driver for them yet".to_string()
                } else {
                    format!(
                        "use a guest whose distribution packages one: {}",
                        fits.join(", ")
                    )
                },
            ));
            return None;
        }
    };
    if let Some(i) = rec.installed.as_ref().filter(|i| !i.in_window) {
        plan.refusals.push(refusal(
            format!(
                "the loaded driver {} (R{}) does not drive every GPU (window {})",
                i.version, i.branch, rec.window
            ),
            "remove that driver (`apt purge '*nvidia*'`), reboot, and plan again; pvegpu does not replace a foreign driver",
        ));
    }
    let open = rec.kernel_module.flavour == Flavour::Open;
    let driver_packages: Vec<String> = if distro.is_debian() {
        let mut p = vec![package.clone(), "nvidia-smi".into()];
        if open {
            p.push("nvidia-open-kernel-dkms".into());
        }
        p.push("firmware-misc-nonfree".into());
        p
    } else if open {
        vec![format!("{package}-open")]
    } else {
        vec![package.clone()]
    };
    let driver_missing: Vec<String> = driver_packages
        .iter()
        .filter(|p| facts.installed(p).is_none())
        .cloned()
        .collect();
    let hold: Vec<String> = driver_packages
        .iter()
        .filter(|p| !p.starts_with("firmware-"))
        .cloned()
        .collect();
    plan.choices.push(format!(
        "driver: {} (R{}, window {}), {} kernel module ({})",
        driver_packages.join(" "),
        rec.driver.branch,
        rec.window,
        rec.kernel_module.flavour,
        rec.kernel_module.why
    ));

    let cuda_package = cuda_choice(spec, &rec, plan);

    let nouveau_has_device = facts.gpus().any(|g| g.driver.as_deref() == Some("nouveau"))
        || facts.module_loaded("nouveau");
    let mut reboot_reasons = Vec::new();
    if nouveau_has_device {
        reboot_reasons.push("nouveau has the GPUs; the blacklist takes them off it at boot".into());
    }
    if let Some(e) = facts
        .smi_error
        .as_deref()
        .filter(|e| e.contains("version mismatch"))
    {
        reboot_reasons.push(format!(
            "the loaded NVIDIA module is older than the installed libraries ({e})"
        ));
    }
    if !driver_missing.is_empty() && !nouveau_has_device {
        reboot_reasons.push("load the newly installed NVIDIA driver".into());
    }
    // an apply stopped between the driver install and its reboot leaves exactly this; without
    // it the plan would be empty while no GPU works
    if let Some(e) = facts.smi_error.as_deref().filter(|e| {
        driver_missing.is_empty()
            && !nouveau_has_device
            && !e.contains("version mismatch")
            && !facts.module_loaded("nvidia")
            && !facts.gpus().any(|g| g.driver.as_deref() == Some("nvidia"))
    }) {
        reboot_reasons.push(format!("{NOT_LOADED} (nvidia-smi: {e})"));
    }
    let driver_ready = !facts.smi.is_empty()
        && facts.smi_error.is_none()
        && driver_missing.is_empty()
        && reboot_reasons.is_empty();

    secure_boot_refusals(facts, !driver_missing.is_empty(), plan);

    let triton = spec
        .triton
        .as_ref()
        .and_then(|ts| triton_choice(ts.backend, ts.release.as_deref(), &rec, plan));
    if let (Some(ts), Some(tc)) = (&spec.triton, &triton) {
        model_refusals(&ts.model_repository, facts, tc, &rec, plan);
    }
    if spec.triton.is_some() && !driver_ready {
        plan.notes.push(
            "Triton selects the GPUs by UUID, which only the loaded driver reports: its unit (and the CDI spec for Podman) is planned once nvidia-smi answers, after this plan is applied".into(),
        );
    }

    Some(Desired {
        spec,
        distro,
        rec,
        driver_packages,
        driver_missing,
        hold,
        cuda_package,
        triton,
        nouveau_has_device,
        driver_ready,
        reboot_reasons,
    })
}

fn cuda_choice(spec: &GuestSpec, rec: &Recommendation, plan: &mut GuestPlan) -> Option<String> {
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

fn triton_choice(
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

fn secure_boot_refusals(facts: &GuestFacts, installing: bool, plan: &mut GuestPlan) {
    if facts.secure_boot != SecureBoot::Enabled {
        return;
    }
    let hint = "enroll the DKMS signing key (`mokutil --import /var/lib/dkms/mok.pub`, confirm it at the VM console on the next boot) and rebuild with `dkms autoinstall --force`, or turn Secure Boot off in the VM's UEFI settings";
    let unsigned: Vec<&str> = facts
        .kernels
        .iter()
        .filter(|k| k.module_signed == Some(false))
        .map(|k| k.version.as_str())
        .collect();
    if !unsigned.is_empty() {
        plan.refusals.push(refusal(
            format!(
                "Secure Boot is on and the NVIDIA module of kernel {} is unsigned: the kernel will refuse to load it",
                unsigned.join(", ")
            ),
            hint,
        ));
        return;
    }
    let building = installing || facts.kernels.iter().any(|k| k.nvidia_module.is_none());
    if building && !facts.mok_keys.iter().any(|k| k.enrolled) {
        plan.refusals.push(refusal(
            "Secure Boot is on and no DKMS signing key is enrolled: the NVIDIA module DKMS builds would not load",
            hint,
        ));
    }
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

fn run(step: &GuestStep, reason: impl Into<String>, command: impl Into<String>) -> Change {
    Change {
        step: step.id.clone(),
        summary: step.summary.clone(),
        reason: reason.into(),
        action: Action::Run {
            command: command.into(),
        },
        diff: None,
        needs_reboot: step.reboot,
    }
}

/// A whole file pvegpu owns: written when absent or different.
fn owned_file(
    step: &GuestStep,
    facts: &GuestFacts,
    content: String,
    reason: &str,
) -> Option<Change> {
    let path = step.path.clone().expect("file steps name a path");
    let before = facts.files.get(&path).map(|f| f.content.clone());
    if before.as_deref() == Some(content.as_str()) {
        return None;
    }
    let diff = unified_diff(&path, before.as_deref(), &content);
    let reason = if before.is_some() {
        format!("{reason} (the file differs from what pvegpu writes)")
    } else {
        reason.to_string()
    };
    Some(Change {
        step: step.id.clone(),
        summary: step.summary.clone(),
        reason,
        action: Action::WriteFile {
            path,
            content,
            mode: "644".into(),
            before,
        },
        diff: Some(diff),
        needs_reboot: step.reboot,
    })
}

fn render(step: &GuestStep, ctx: minijinja::Value) -> Result<String, GuestError> {
    let name = step.template.as_deref().expect("template steps name one");
    Ok(templates::render(name, ctx)?)
}

/// NVIDIA's repository id for a distribution (`debian12`, `ubuntu2404`).
fn nvidia_repo_id(d: Distro) -> String {
    format!("{}{}", d.family(), d.release().replace('.', ""))
}

fn repo_uri(d: &Desired, repo: Repository) -> String {
    match repo {
        Repository::Cuda => format!(
            "https://{CUDA_ORIGIN}/compute/cuda/repos/{}/x86_64/",
            nvidia_repo_id(d.distro)
        ),
        Repository::ContainerToolkit => format!("{CONTAINER_TOOLKIT_URI}/$(ARCH)"),
        Repository::Debian => String::new(),
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
        Repository::Debian => String::new(),
    }
}

/// A source pvegpu did not write already carries the repository (e.g. the cuda-keyring
/// package's list): adding pvegpu's would duplicate it, and two Signed-By values for one
/// repository make apt refuse to read either.
fn foreign_source(facts: &GuestFacts, d: &Desired, repo: Repository) -> Option<String> {
    let prefix = match repo {
        Repository::Cuda => repo_uri(d, repo),
        Repository::ContainerToolkit => CONTAINER_TOOLKIT_URI.to_string(),
        Repository::Debian => return None,
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

fn runtime_missing(facts: &GuestFacts, runtime: Runtime) -> bool {
    match runtime {
        Runtime::Docker => facts.docker.is_none(),
        Runtime::Podman => facts.podman.is_none(),
    }
}

/// Header packages: one per bootable kernel without headers, and the headers metapackage of
/// each installed kernel metapackage (`linux-image-amd64` -> `linux-headers-amd64`), so the
/// next kernel upgrade brings its headers and DKMS builds the module for it.
fn headers_missing(facts: &GuestFacts) -> Vec<String> {
    let mut out: BTreeSet<String> = facts
        .kernels
        .iter()
        .filter(|k| !k.headers)
        .map(|k| format!("linux-headers-{}", k.version))
        .collect();
    for (name, p) in &facts.packages {
        let Some(flavour) = name.strip_prefix("linux-image-") else {
            continue;
        };
        if !p.installed() || flavour.starts_with(|c: char| c.is_ascii_digit()) {
            continue;
        }
        let meta = format!("linux-headers-{flavour}");
        if facts.installed(&meta).is_none() {
            out.insert(meta);
        }
    }
    out.into_iter().collect()
}

fn docker_has_nvidia_runtime(facts: &GuestFacts) -> bool {
    facts
        .files
        .get("/etc/docker/daemon.json")
        .and_then(|f| serde_json::from_str::<serde_json::Value>(&f.content).ok())
        .is_some_and(|v| v.pointer("/runtimes/nvidia").is_some())
}

fn walk(
    step: &GuestStep,
    facts: &GuestFacts,
    d: &Desired,
    earlier: &[Change],
    notes: &mut Vec<String>,
) -> Result<Vec<Change>, GuestError> {
    let one = |c: Option<Change>| -> Vec<Change> { c.into_iter().collect() };
    let changed = |id: &str| earlier.iter().any(|c| c.step == id);
    Ok(match step.kind {
        GuestStepKind::Prerequisites => {
            let keys_needed = GUEST.steps.iter().any(|s| {
                s.kind == GuestStepKind::Keyring
                    && s.repository.is_some_and(|r| {
                        d.needs(r)
                            && foreign_source(facts, d, r).is_none()
                            && !facts.keyrings.contains(s.path.as_deref().unwrap_or(""))
                    })
            });
            let mut tools: Vec<&str> = vec!["curl", "gpg", "ca-certificates"];
            tools.retain(|t| facts.installed(t).is_none());
            // the Triton unit's health check polls with curl too
            if !keys_needed && (d.spec.triton.is_none() || facts.installed("curl").is_some()) {
                tools.clear();
            }
            one((!tools.is_empty()).then(|| {
                run(
                    step,
                    format!("{} missing", tools.join(", ")),
                    format!(
                        "apt-get update && {APT_INSTALL} --no-install-recommends {}",
                        tools.join(" ")
                    ),
                )
            }))
        }
        GuestStepKind::AptComponents => {
            if !d.distro.is_debian() {
                return Ok(vec![]);
            }
            let sources = missing_components(facts, d);
            let path = step.path.as_deref().unwrap_or_default();
            if sources.is_empty() {
                return Ok(match facts.files.get(path) {
                    // only pvegpu's file carries the components: it stays
                    Some(_) => vec![],
                    None if facts.apt_sources.iter().any(|s| s.enabled) => vec![],
                    None => {
                        notes.push("the guest has no apt sources pvegpu can read".into());
                        vec![]
                    }
                });
            }
            let names: BTreeSet<&str> = sources
                .iter()
                .flat_map(|s| s.components.iter().map(String::as_str))
                .collect();
            let content = render(step, context! {
                    sources => minijinja::value::Serde(&sources),
                    files => sources.iter().map(|s| s.file.clone()).collect::<BTreeSet<_>>(),
                })?;
            one(owned_file(
                step,
                facts,
                content.clone(),
                &format!(
                    "the Debian sources lack {} (nvidia-driver is in non-free, its firmware in non-free-firmware, the open module in contrib)",
                    names.into_iter().collect::<Vec<_>>().join(", ")
                ),
            ))
        }
        GuestStepKind::Keyring => {
            let repo = step.repository.expect("checked by the playbook test");
            let path = step.path.as_deref().unwrap_or_default();
            if !d.needs(repo) || foreign_source(facts, d, repo).is_some() {
                return Ok(vec![]);
            }
            one((!facts.keyrings.contains(path)).then(|| {
                run(
                    step,
                    format!("{path} is missing"),
                    keyring_command(d, repo, path),
                )
            }))
        }
        GuestStepKind::AptSource => {
            let repo = step.repository.expect("checked by the playbook test");
            if !d.needs(repo) {
                return Ok(vec![]);
            }
            if let Some(file) = foreign_source(facts, d, repo) {
                notes.push(format!("{file} already configures {}", repo_uri(d, repo)));
                return Ok(vec![]);
            }
            let keyring = GUEST
                .steps
                .iter()
                .find(|s| s.kind == GuestStepKind::Keyring && s.repository == Some(repo))
                .and_then(|s| s.path.clone())
                .unwrap_or_default();
            let why = match repo {
                Repository::Cuda => format!(
                    "{} comes from NVIDIA's CUDA repository",
                    d.cuda_package.as_deref().unwrap_or("the CUDA toolkit")
                ),
                _ => "nvidia-container-toolkit comes from NVIDIA's repository (no distribution packages it)".into(),
            };
            let content = render(
                step,
                context! {
                    summary => step.summary.clone(),
                    keyring => keyring,
                    uri => repo_uri(d, repo),
                    suite => "/",
                },
            )?;
            one(owned_file(step, facts, content, &why))
        }
        GuestStepKind::AptPin => {
            let repo = step.repository.expect("checked by the playbook test");
            if !d.needs(repo) {
                return Ok(vec![]);
            }
            let content = render(
                step,
                context! { origin => CUDA_ORIGIN, driver_package => d.driver_packages[0].clone() },
            )?;
            one(owned_file(
                step,
                facts,
                content,
                "the CUDA repository also carries driver packages; without the pin apt would replace the distribution's driver with them",
            ))
        }
        GuestStepKind::AptUpdate => {
            let sources = earlier.iter().any(|c| {
                matches!(&c.action, Action::WriteFile { path, .. } if path.starts_with("/etc/apt/"))
            });
            let reason = if sources {
                "the apt sources changed"
            } else {
                "packages are about to be installed"
            };
            one((sources || installs_pending(facts, d)).then(|| run(step, reason, "apt-get update")))
        }
        GuestStepKind::KernelHeaders => {
            let missing = headers_missing(facts);
            one((!missing.is_empty()).then(|| {
                run(
                    step,
                    format!(
                        "DKMS builds the NVIDIA module against each kernel's headers; missing: {}",
                        missing.join(", ")
                    ),
                    format!("{APT_INSTALL} {}", missing.join(" ")),
                )
            }))
        }
        GuestStepKind::NouveauBlacklist => {
            let path = step.path.as_deref().unwrap_or_default();
            if !d.nouveau_has_device && !facts.files.contains_key(path) {
                return Ok(vec![]);
            }
            let content = render(step, context! {})?;
            one(owned_file(
                step,
                facts,
                content,
                "nouveau is loaded and would keep the GPUs from the NVIDIA driver",
            ))
        }
        GuestStepKind::Driver => one((!d.driver_missing.is_empty()).then(|| {
            run(
                step,
                format!(
                    "{} not installed; {} is R{} for {}, {} module",
                    d.driver_missing.join(", "),
                    d.driver_packages[0],
                    d.rec.driver.branch,
                    d.distro,
                    d.rec.kernel_module.flavour
                ),
                format!("{APT_INSTALL} {}", d.driver_packages.join(" ")),
            )
        })),
        GuestStepKind::Hold => {
            let unheld: Vec<&String> = d.hold.iter().filter(|p| !facts.holds.contains(*p)).collect();
            one((!unheld.is_empty()).then(|| {
                run(
                    step,
                    format!(
                        "not held: {}; an upgrade of the libraries without the module breaks NVML (`Driver/library version mismatch`)",
                        unheld.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                    format!(
                        "apt-mark hold {} $(dpkg-query -W -f='${{db:Status-Abbrev}} ${{Package}}\\n' 'nvidia-*' 'libnvidia-*' 'libcuda*' 2>/dev/null | awk '$1 == \"ii\" && $2 !~ /container|detect/ {{print $2}}')",
                        d.hold.join(" ")
                    ),
                )
            }))
        }
        GuestStepKind::DkmsModules => {
            if !d.driver_missing.is_empty() {
                // installing the driver builds the module for every kernel with headers
                return Ok(vec![]);
            }
            let newest = facts.kernels.last().map(|k| k.version.as_str());
            facts
                .kernels
                .iter()
                .filter(|k| k.nvidia_module.is_none())
                .map(|k| {
                    let role = if Some(k.version.as_str()) == newest && k.version != facts.running_kernel {
                        " (the kernel the next boot runs)"
                    } else if k.version == facts.running_kernel {
                        " (the running kernel)"
                    } else {
                        ""
                    };
                    run(
                        step,
                        format!("kernel {}{role} has no NVIDIA module", k.version),
                        format!("dkms autoinstall -k {}", k.version),
                    )
                })
                .collect()
        }
        GuestStepKind::Initramfs => one(changed("nouveau-blacklist").then(|| {
            run(
                step,
                "the nouveau blacklist changed; the initramfs loads modules before the root file system",
                "update-initramfs -u -k all",
            )
        })),
        GuestStepKind::CudaToolkit => {
            let Some(p) = &d.cuda_package else {
                return Ok(vec![]);
            };
            one(facts.installed(p).is_none().then(|| {
                run(step, format!("{p} not installed"), format!("{APT_INSTALL} {p}"))
            }))
        }
        GuestStepKind::ContainerRuntime => {
            let rt = d.spec.runtime;
            let package = match rt {
                Runtime::Docker => "docker.io",
                Runtime::Podman => "podman",
            };
            one(runtime_missing(facts, rt).then(|| {
                run(
                    step,
                    format!("{} is not installed", rt.command()),
                    format!("{APT_INSTALL} {package}"),
                )
            }))
        }
        GuestStepKind::ContainerToolkit => one(
            facts
                .installed("nvidia-container-toolkit")
                .is_none()
                .then(|| {
                    run(
                        step,
                        "nvidia-container-toolkit not installed",
                        format!("{APT_INSTALL} nvidia-container-toolkit"),
                    )
                }),
        ),
        GuestStepKind::DockerRuntime => {
            if d.spec.runtime != Runtime::Docker || docker_has_nvidia_runtime(facts) {
                return Ok(vec![]);
            }
            one(Some(run(
                step,
                "/etc/docker/daemon.json has no nvidia runtime",
                "nvidia-ctk runtime configure --runtime=docker && systemctl restart docker",
            )))
        }
        GuestStepKind::CdiSpec => {
            if d.spec.runtime != Runtime::Podman || !d.driver_ready {
                return Ok(vec![]);
            }
            let loaded = facts.loaded_driver().unwrap_or_default();
            let spec = facts.cdi_specs.iter().find(|s| s.path == CDI_SPEC);
            for s in facts
                .cdi_specs
                .iter()
                .filter(|s| s.path != CDI_SPEC && s.kind.as_deref() == Some("nvidia.com/gpu"))
            {
                if s.driver_version.as_deref() != Some(loaded) {
                    notes.push(format!(
                        "{} is another nvidia.com/gpu CDI spec, made for driver {}; remove it if Podman resolves its devices instead of {CDI_SPEC}'s",
                        s.path,
                        s.driver_version.as_deref().unwrap_or("unknown")
                    ));
                }
            }
            let reason = match spec.map(|s| s.driver_version.as_deref()) {
                None => format!("{CDI_SPEC} does not exist"),
                Some(v) if v == Some(loaded) => return Ok(vec![]),
                Some(v) => format!(
                    "{CDI_SPEC} was made for driver {}, the loaded driver is {loaded}: its library paths are stale",
                    v.unwrap_or("unknown")
                ),
            };
            // without nvidia-uvm loaded the spec lacks /dev/nvidia-uvm and CUDA fails in the
            // container while nvidia-smi works (RULES.md 5a). The unit names GPUs by UUID,
            // which toolkits before 1.15 do not generate by default (their flag takes one
            // value, the last given; later ones generate each strategy named).
            one(Some(run(
                step,
                reason,
                format!("modprobe nvidia-uvm && nvidia-ctk cdi generate --device-name-strategy=index --device-name-strategy=uuid --output={CDI_SPEC}"),
            )))
        }
        GuestStepKind::TritonUnit => {
            let (Some(ts), Some(tc)) = (&d.spec.triton, &d.triton) else {
                return Ok(vec![]);
            };
            if !d.driver_ready {
                return Ok(vec![]);
            }
            let mut smi: Vec<_> = facts.smi.iter().collect();
            smi.sort_by_key(|g| g.address);
            let gpus: Vec<String> = smi.iter().map(|g| g.uuid.clone()).collect();
            let content = render(
                step,
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
            one(owned_file(
                step,
                facts,
                content,
                &format!(
                    "Triton {} with the model repository {}",
                    tc.release.release, ts.model_repository
                ),
            ))
        }
        GuestStepKind::TritonStart => {
            if d.spec.triton.is_none() || d.triton.is_none() || !d.driver_ready {
                return Ok(vec![]);
            }
            let reason = if changed("triton-unit") {
                "the unit changed"
            } else if changed("cdi-spec") {
                "the CDI spec changed"
            } else if facts.triton_service.as_deref() != Some("active") {
                "the service is not running"
            } else {
                return Ok(vec![]);
            };
            one(Some(run(
                step,
                reason,
                format!(
                    "systemctl daemon-reload && systemctl enable {TRITON_UNIT} && systemctl restart {TRITON_UNIT}"
                ),
            )))
        }
        GuestStepKind::Reboot => {
            let mut reasons = d.reboot_reasons.clone();
            if changed("initramfs") && reasons.is_empty() {
                reasons.push("the initramfs changed".into());
            }
            one((!reasons.is_empty()).then(|| Change {
                step: step.id.clone(),
                summary: step.summary.clone(),
                reason: reasons.join("; "),
                action: Action::Reboot,
                diff: None,
                needs_reboot: false,
            }))
        }
    })
}
