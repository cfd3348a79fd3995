//! The NVIDIA driver: which distribution packages (and module flavour) compat's choice means
//! here, installing them, holding them, and the DKMS module of every kernel.

use super::{APT_INSTALL, GuestPlan, Walk, refusal};
use crate::compat::driver::{DriverSource, Flavour};
use crate::compat::tables::Tables;
use crate::compat::{Distro, Recommendation, Request, recommend};
use crate::core::plan::Change;
use crate::guest::facts::GuestFacts;
use crate::guest::playbook::GuestStep;

/// The driver packages for this guest, and which of them are missing or to hold.
pub(super) struct DriverChoice {
    pub(super) packages: Vec<String>,
    pub(super) missing: Vec<String>,
    pub(super) hold: Vec<String>,
}

/// The distribution's package, with the flavour compat requires; None (refused) when the
/// distribution packages none that drives the GPUs.
pub(super) fn choice(
    t: &Tables,
    request: &Request,
    rec: &Recommendation,
    facts: &GuestFacts,
    plan: &mut GuestPlan,
) -> Option<DriverChoice> {
    let distro = request.distro;
    let package = match &rec.driver.source {
        DriverSource::Distro { package, .. } => package.clone(),
        DriverSource::NvidiaRepository => {
            let fits: Vec<String> = Distro::ALL
                .into_iter()
                .filter(|d| *d != distro && d.guest_phase())
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
    let open = rec.kernel_module.flavour == Flavour::Open && !open_module_unresolvable(distro);
    let driver_packages: Vec<String> = if distro.is_debian() {
        let mut p = vec![package.clone(), smi_package(&package)];
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
    let module = if rec.kernel_module.flavour == Flavour::Open && !open {
        format!(
            "proprietary kernel module ({distro}'s nvidia-open-kernel-dkms cannot be installed beside its nvidia-driver; the proprietary module drives these GPUs at R{} too)",
            rec.driver.branch
        )
    } else {
        format!(
            "{} kernel module ({})",
            rec.kernel_module.flavour, rec.kernel_module.why
        )
    };
    plan.choices.push(format!(
        "driver: {} (R{}, window {}), {module}",
        driver_packages.join(" "),
        rec.driver.branch,
        rec.window,
    ));

    Some(DriverChoice {
        packages: driver_packages,
        missing: driver_missing,
        hold,
    })
}

/// Debian 12 keeps `nvidia-open-kernel-dkms` at 535.261.03 (bookworm) while `nvidia-driver`
/// moved to 535.309.01 (bookworm-security), and Debian's driver packages depend on the
/// firmware and libraries of their own version: apt finds no solution for the pair
/// (`nvidia-open-kernel-dkms : Depends: firmware-nvidia-gsp (= 535.261.03)`, resolved against
/// the archive by tests/guest_archives.rs). The open module is only required from Blackwell
/// on, which no Debian 12 driver drives.
fn open_module_unresolvable(distro: Distro) -> bool {
    distro == Distro::Debian12
}

/// `nvidia-smi` belongs to Debian's current driver and pulls that driver's libraries in;
/// a `nvidia-tesla-NNN-driver` has its own `nvidia-tesla-NNN-smi` (bookworm's
/// nvidia-tesla-470-driver beside nvidia-smi installs a second, 535 stack).
fn smi_package(driver: &str) -> String {
    match driver
        .strip_prefix("nvidia-tesla-")
        .and_then(|d| d.strip_suffix("-driver"))
    {
        Some(branch) => format!("nvidia-tesla-{branch}-smi"),
        None => "nvidia-smi".into(),
    }
}

pub(super) fn driver(step: &GuestStep, w: &Walk) -> Option<Change> {
    let d = w.d;
    (!d.driver_missing.is_empty()).then(|| {
        step.run(
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
    })
}

pub(super) fn hold(step: &GuestStep, w: &Walk) -> Option<Change> {
    let d = w.d;
    let unheld: Vec<&str> = d
        .hold
        .iter()
        .filter(|p| !w.facts.holds.contains(*p))
        .map(String::as_str)
        .collect();
    (!unheld.is_empty()).then(|| {
        step.run(
            format!(
                "not held: {}; an upgrade of the libraries without the module breaks NVML (`Driver/library version mismatch`)",
                unheld.join(", ")
            ),
            format!(
                "apt-mark hold {} $(dpkg-query -W -f='${{db:Status-Abbrev}} ${{Package}}\\n' 'nvidia-*' 'libnvidia-*' 'libcuda*' 2>/dev/null | awk '$1 == \"ii\" && $2 !~ /container|detect/ {{print $2}}')",
                d.hold.join(" ")
            ),
        )
    })
}

/// One DKMS build for each kernel that lacks the NVIDIA module.
pub(super) fn dkms_modules(step: &GuestStep, w: &Walk) -> Vec<Change> {
    let facts = w.facts;
    if !w.d.driver_missing.is_empty() {
        // installing the driver builds the module for every kernel with headers
        return vec![];
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
            step.run(
                format!("kernel {}{role} has no NVIDIA module", k.version),
                format!("dkms autoinstall -k {}", k.version),
            )
        })
        .collect()
}
