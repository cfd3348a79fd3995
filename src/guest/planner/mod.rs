//! The guest planner: a pure function from the inventory's `[vm.guest]` and the guest's facts
//! to a [`GuestPlan`], walking playbooks/guest.toml. Every version comes from compat (driver
//! package, module flavour, CUDA range, Triton release); the planner only decides what is
//! missing on this guest.
//!
//! Ownership: pvegpu writes whole files it owns (each marked `Managed by pvegpu`) and runs
//! apt, dkms, nvidia-ctk and systemctl; it never edits a foreign apt source. A refused plan
//! carries no changes, so nothing is half-installed.
//!
//! `refusals` derives compat's choices and refuses what cannot be converged; one module per
//! concern plans its steps: `repositories` (sources and keyrings), `kernel` (headers, nouveau,
//! initramfs), `driver` (driver, hold, DKMS), `cuda`, `containers` (runtime, toolkit, CDI),
//! `triton` and `reboot`; `known_bad` checks the container toolkit release.

mod containers;
mod cuda;
mod driver;
mod kernel;
mod known_bad;
mod reboot;
mod refusals;
mod repositories;
mod triton;

use super::facts::GuestFacts;
use super::parse::SecureBoot;
use super::playbook::{GUEST, GuestStep, GuestStepKind, Repository};
use crate::compat::tables::TritonRelease;
use crate::compat::{Backend, Distro, Recommendation};
use crate::core::plan::{Action, Change, Refusal};
use crate::inventory::guest::GuestSpec;
use crate::templates::TemplateError;
use serde::Serialize;

pub const TRITON_UNIT: &str = "pvegpu-triton.service";
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
        if crate::core::plan::render_verdict(
            &mut out,
            &self.notes,
            &self.refusals,
            self.changes.is_empty(),
        ) {
            return out;
        }
        crate::core::plan::render_changes(&mut out, &self.changes);
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
    /// The container toolkit release to install and hold (None: the repository's newest),
    /// while a known-bad release has no fix.
    toolkit_pin: Option<String>,
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
            Repository::Cuda => self
                .cuda_package
                .as_deref()
                .is_some_and(|p| p.starts_with("cuda-toolkit-")),
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
    let d = match refusals::derive(desired, facts, &mut plan) {
        Some(d) if plan.refusals.is_empty() => d,
        _ => return Ok(plan),
    };
    for step in &GUEST.steps {
        let w = Walk {
            facts,
            d: &d,
            earlier: &plan.changes,
        };
        let changes = walk(step, &w, &mut plan.notes)?;
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

/// What every step is planned from: the facts, the derived wishes, and the changes the
/// earlier steps planned.
struct Walk<'a> {
    facts: &'a GuestFacts,
    d: &'a Desired<'a>,
    earlier: &'a [Change],
}

impl Walk<'_> {
    /// Whether an earlier step of a kind `is` accepts planned a change.
    fn changed(&self, is: impl Fn(&GuestStepKind) -> bool) -> bool {
        GUEST.changed(self.earlier, is)
    }
}

/// One step, by its kind.
fn walk(step: &GuestStep, w: &Walk, notes: &mut Vec<String>) -> Result<Vec<Change>, GuestError> {
    use GuestStepKind as K;
    let change = match &step.kind {
        K::DpkgConfigure {} => repositories::dpkg_configure(step, w),
        K::Prerequisites {} => repositories::prerequisites(step, w),
        K::AptComponents(f) => repositories::apt_components(step, f, w, notes)?,
        K::Keyring { repository, path } => repositories::keyring(step, *repository, path, w),
        K::AptSource(r) => repositories::apt_source(step, r, w, notes)?,
        K::AptPin(r) => repositories::apt_pin(step, r, w)?,
        K::AptUpdate {} => repositories::apt_update(step, w),
        K::KernelHeaders {} => kernel::headers(step, w),
        K::NouveauBlacklist(f) => kernel::nouveau_blacklist(step, f, w)?,
        K::Driver {} => driver::driver(step, w),
        K::Hold {} => driver::hold(step, w),
        K::DkmsModules {} => return Ok(driver::dkms_modules(step, w)),
        K::Initramfs {} => kernel::initramfs(step, w),
        K::CudaToolkit {} => cuda::toolkit(step, w),
        K::ContainerRuntime {} => containers::runtime(step, w),
        K::ContainerToolkit {} => containers::toolkit(step, w),
        K::DockerRuntime {} => containers::docker_runtime(step, w),
        K::CdiSpec { path } => containers::cdi_spec(step, path, w, notes),
        K::TritonUnit(f) => triton::unit(step, f, w)?,
        K::TritonStart {} => triton::start(step, w),
        K::Reboot {} => reboot::reboot(step, w),
    };
    Ok(change.into_iter().collect())
}

/// A whole file pvegpu owns: written when absent or different.
fn owned_file(
    step: &GuestStep,
    path: &str,
    facts: &GuestFacts,
    content: String,
    reason: &str,
) -> Option<Change> {
    let before = facts.files.get(path).map(|f| f.content.clone());
    let reason = if before.is_some() {
        format!("{reason} (the file differs from what pvegpu writes)")
    } else {
        reason.to_string()
    };
    step.write_file(path, before, content, "644".into(), reason)
}
