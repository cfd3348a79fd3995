//! The recommender: GPUs + distribution (+ installed driver, + served backends) -> driver
//! window, kernel module, driver package, CUDA range, Triton release per backend, reasons.
//! Pure: it reads only the tables it is given.

use super::CompatError;
use super::cuda::{CudaRange, cuda_range};
use super::distro::Distro;
use super::driver::{
    DriverChoice, Installed, KernelModule, Lifecycle, Window, choose_driver, installed,
    kernel_module, lifecycle, window,
};
use super::gpu::{GpuError, resolve};
use super::reason::Reason;
use super::tables::{Arch, Gpu, Tables};
use super::triton::{Backend, BackendChoice, choose};
use super::version::{Cc, DriverVersion};
use crate::pci::PciId;
use serde::Serialize;

/// What to recommend for.
#[derive(Debug, Clone)]
pub struct Request {
    /// PCI ids, names, or `id=name` (see `gpu::resolve`); one entry per card.
    pub gpus: Vec<String>,
    pub distro: Distro,
    /// The driver installed in the guest, if any.
    pub driver: Option<DriverVersion>,
    /// The backends served; empty means all of them.
    pub backends: Vec<Backend>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GpuSummary {
    pub input: String,
    pub id: PciId,
    pub name: String,
    pub chip: String,
    pub arch: Arch,
    pub cc: Cc,
    pub brand: Option<String>,
    pub open_module: Option<bool>,
    /// Other ids the name covers (same facts).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub same_name: Vec<PciId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recommendation {
    pub distro: Distro,
    pub gpus: Vec<GpuSummary>,
    /// The lowest compute capability: it decides CUDA and Triton.
    pub min_cc: Cc,
    pub oldest_arch: Arch,
    pub window: Window,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub installed: Option<Installed>,
    /// What pvegpu would install.
    pub driver: DriverChoice,
    /// The driver CUDA and Triton are chosen for: the installed one when it is inside the
    /// window, else the one pvegpu would install.
    pub assumed_driver: DriverVersion,
    pub kernel_module: KernelModule,
    /// End of life of the recommended driver's branch and of the installed one.
    pub lifecycle: Vec<Lifecycle>,
    pub cuda: CudaRange,
    pub triton: Vec<BackendChoice>,
    pub reasons: Vec<Reason>,
}

/// The recommendation, with driver lifecycles judged at the tables' snapshot date.
pub fn recommend(t: &Tables, req: &Request) -> Result<Recommendation, CompatError> {
    recommend_at(t, req, None)
}

/// The recommendation, with driver lifecycles judged at the later of the snapshot date and
/// `today` (`YYYY-MM-DD`, given by the command layer: this function reads no clock).
pub fn recommend_at(
    t: &Tables,
    req: &Request,
    today: Option<&str>,
) -> Result<Recommendation, CompatError> {
    let as_of = match today {
        Some(d) if d > t.snapshot.as_str() => d,
        _ => t.snapshot.as_str(),
    };
    if req.gpus.is_empty() {
        return Err(GpuError::NoGpus.into());
    }
    let (gpus, summaries, mut reasons) = resolve_gpus(t, &req.gpus)?;

    let ccs = {
        let mut c: Vec<Cc> = gpus.iter().filter_map(|g| g.cc).collect();
        c.sort();
        c.dedup();
        c
    };
    let min_cc = ccs[0];
    let lowest = gpus.iter().find(|g| g.cc == Some(min_cc)).copied();
    let oldest_arch = gpus.iter().map(|g| g.arch).min().unwrap_or(Arch::Kepler);

    let (w, why) = window(t, &gpus)?;
    reasons.extend(why);
    let (driver, why) = choose_driver(t, req.distro, &gpus, &w);
    reasons.extend(why);
    let mut inst = None;
    let mut assumed = driver.version.clone();
    if let Some(v) = &req.driver {
        let (i, why) = installed(t, v, &w)?;
        reasons.push(why);
        if i.in_window {
            assumed = v.clone();
        }
        inst = Some(i);
    }
    let module_driver = DriverChoice {
        branch: assumed.branch(),
        ..driver.clone()
    };
    let (module, why) = kernel_module(t, &gpus, &module_driver)?;
    reasons.push(why);
    let (lifecycles, why) = lifecycles(t, &driver, inst.as_ref(), &w, as_of);
    reasons.extend(why);
    let (cuda, why) = cuda_range(t, &ccs, &assumed);
    reasons.extend(why);

    if ccs.len() > 1
        && let Some(l) = lowest
    {
        reasons.push(Reason::new(
                format!(
                    "mixed GPUs: CUDA and Triton are chosen for the lowest compute capability, {min_cc} ({}); a model whose backend lacks kernels for some GPUs can be kept off them with Triton's per-model instance_group.gpus",
                    l.label()
                ),
                true,
                l.source.iter(),
            ));
    }
    let all_datacenter = gpus.iter().all(|g| g.is_datacenter());
    let mut backends = if req.backends.is_empty() {
        Backend::ALL.to_vec()
    } else {
        req.backends.clone()
    };
    backends.sort();
    backends.dedup();
    let mut triton = Vec::new();
    for b in backends {
        let (c, why) = choose(t, b, &ccs, &assumed, all_datacenter, &w);
        reasons.extend(why);
        triton.push(c);
    }

    Ok(Recommendation {
        distro: req.distro,
        gpus: summaries,
        min_cc,
        oldest_arch,
        window: w,
        installed: inst,
        driver,
        assumed_driver: assumed,
        kernel_module: module,
        lifecycle: lifecycles,
        cuda,
        triton,
        reasons,
    })
}

/// The cards (each once), one summary per spec, and the reasons that say what each card is.
type Resolved<'t> = (Vec<&'t Gpu>, Vec<GpuSummary>, Vec<Reason>);

/// Each spec's card, its summary and the reason that says what it is; a card named twice is
/// judged once.
fn resolve_gpus<'t>(t: &'t Tables, specs: &[String]) -> Result<Resolved<'t>, CompatError> {
    let mut reasons = Vec::new();
    let mut found = Vec::new();
    for spec in specs {
        found.push(resolve(t, spec)?);
    }
    let mut gpus: Vec<&Gpu> = Vec::new();
    let mut summaries = Vec::new();
    for r in &found {
        let g = r.gpu;
        let cc = g.cc.ok_or_else(|| GpuError::UnknownCc {
            gpu: g.label(),
            chip: g.chip.clone(),
            arch: g.arch.to_string(),
        })?;
        summaries.push(GpuSummary {
            input: r.input.clone(),
            id: g.id,
            name: r.name().to_string(),
            chip: g.chip.clone(),
            arch: g.arch,
            cc,
            brand: g.brand.clone(),
            open_module: g.open_module,
            same_name: r.same_name.clone(),
        });
        if gpus.iter().any(|x| x.id == g.id) {
            continue;
        }
        gpus.push(g);
        let mut text = format!(
            "{} is {} ({}): {}, CC {cc} ({})",
            g.id, g.name, g.chip, g.arch, g.cc_basis
        );
        if let Some(e) = r.subsystem {
            text.push_str(&format!("; sold as {} (subsystem {})", e.name, e.subsystem));
        } else if let Some(s) = r.subsystem_id {
            text.push_str(&format!(
                "; subsystem {s} has no entry in the data, so the device's name applies (as lspci prints it)"
            ));
        }
        if !r.same_name.is_empty() {
            let ids: Vec<String> = r.same_name.iter().map(|i| i.to_string()).collect();
            text.push_str(&format!(
                "; the name also covers {}, with the same facts",
                ids.join(", ")
            ));
        }
        let inferred = g
            .inferred
            .iter()
            .any(|i| i.starts_with("compute_capability") || i.starts_with("architecture"));
        let product = r.subsystem.map(|e| e.source.iter()).into_iter().flatten();
        reasons.push(Reason::new(text, inferred, g.source.iter().chain(product)));
    }
    Ok((gpus, summaries, reasons))
}

/// The end of life of the recommended branch, and of the installed one where it differs.
fn lifecycles(
    t: &Tables,
    driver: &DriverChoice,
    inst: Option<&Installed>,
    w: &Window,
    as_of: &str,
) -> (Vec<Lifecycle>, Vec<Reason>) {
    let mut reasons = Vec::new();
    let mut lifecycles = Vec::new();
    let same = inst.is_some_and(|i| i.branch == driver.branch);
    let role = if same {
        "recommended and installed"
    } else {
        "recommended"
    };
    let (l, why) = lifecycle(t, role, driver.branch, w, as_of);
    lifecycles.push(l);
    reasons.push(why);
    if let Some(i) = inst.filter(|_| !same) {
        let (l, why) = lifecycle(t, "installed", i.branch, w, as_of);
        lifecycles.push(l);
        reasons.push(why);
    }
    (lifecycles, reasons)
}
