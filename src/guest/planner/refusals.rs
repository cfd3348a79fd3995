//! What the planner derives before walking the steps: compat's choices for this guest, and
//! every reason to refuse it (an unsupported distribution, no GPU, no driver package, a
//! foreign driver, Secure Boot without a signing key, a known-bad container toolkit, and the
//! CUDA and Triton refusals).

use super::{Desired, GuestPlan, cuda, driver, known_bad, reboot, refusal, triton};
use crate::compat::Distro;
use crate::compat::{Request, recommend, tables};
use crate::guest::facts::GuestFacts;
use crate::guest::parse::{SecureBoot, major_minor};
use crate::inventory::guest::{GuestSpec, Runtime};

/// Compat's choices and every refusal; None when nothing can be chosen.
pub(super) fn derive<'a>(
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

    let driver = driver::choice(t, &request, &rec, facts, plan)?;
    let cuda_package = cuda::choice(spec, distro, &rec, plan);

    let nouveau_has_device = facts.gpus().any(|g| g.driver.as_deref() == Some("nouveau"))
        || facts.module_loaded("nouveau");
    let reboot_reasons = reboot::reasons(facts, &driver.missing, nouveau_has_device);
    let driver_ready = !facts.smi.is_empty()
        && facts.smi_error.is_none()
        && driver.missing.is_empty()
        && reboot_reasons.is_empty();

    secure_boot_refusals(facts, distro, !driver.missing.is_empty(), plan);
    podman_refusal(spec, facts, distro, plan);
    let toolkit_pin = known_bad::toolkit(spec, facts, plan);

    let triton = triton::choice(spec, facts, &rec, driver_ready, plan);

    Some(Desired {
        spec,
        distro,
        rec,
        driver_packages: driver.packages,
        driver_missing: driver.missing,
        hold: driver.hold,
        cuda_package,
        toolkit_pin,
        triton,
        nouveau_has_device,
        driver_ready,
        reboot_reasons,
    })
}

/// Podman resolves `--device nvidia.com/gpu=UUID` through CDI from 4.1 on (NVIDIA's CDI
/// support page: "Podman 4.1.0 or later"). Ubuntu 22.04's archive has 3.4.4 (jammy-updates
/// `3.4.4+ds1-1ubuntu1.22.04.3`, read from the archive by tests/guest_archives.rs); the other
/// releases' archives have 4.3 or later.
const PODMAN_CDI: (u32, u32) = (4, 1);

fn podman_refusal(spec: &GuestSpec, facts: &GuestFacts, distro: Distro, plan: &mut GuestPlan) {
    if spec.runtime != Runtime::Podman {
        return;
    }
    let (have, from) = match facts.podman.as_deref() {
        Some(v) => (major_minor(v), format!("the installed Podman {v}")),
        None if distro == Distro::Ubuntu2204 => (Some((3, 4)), format!("{distro}'s Podman 3.4.4")),
        None => return,
    };
    if have.is_some_and(|h| h >= PODMAN_CDI) {
        return;
    }
    plan.refusals.push(refusal(
        format!("{from} cannot give a container the GPUs by CDI name (`--device nvidia.com/gpu=...` needs Podman 4.1 or later), which the Triton unit and verify rely on"),
        "use `runtime = \"docker\"` in [vm.guest], or a guest with a newer Podman (Ubuntu 24.04, Debian 12 or 13)",
    ));
}

/// Where DKMS keeps the key it signs modules with, made on its first build: Debian's dkms
/// writes /var/lib/dkms/mok.pub (dkms 3.x, `mok_signing_key`); Ubuntu's DKMS uses
/// shim-signed's key, /var/lib/shim-signed/mok/MOK.der (`update-secureboot-policy
/// --new-key`). The probe reads both.
fn dkms_key(distro: Distro) -> &'static str {
    if distro.is_debian() {
        "/var/lib/dkms/mok.pub"
    } else {
        "/var/lib/shim-signed/mok/MOK.der"
    }
}

/// Secure Boot: a module built unsigned cannot load, and a key that exists must be enrolled
/// before DKMS builds with it. On a fresh guest the key does not exist yet (DKMS makes it on
/// its first build), so the plan goes ahead and says what the console must do afterwards.
fn secure_boot_refusals(
    facts: &GuestFacts,
    distro: Distro,
    installing: bool,
    plan: &mut GuestPlan,
) {
    if facts.secure_boot != SecureBoot::Enabled {
        return;
    }
    let key = dkms_key(distro);
    let enrol = format!(
        "`sudo mokutil --import {key}` on the guest (it asks for a one-time password), reboot it and confirm the enrolment in the MOK manager on the VM's console (Proxmox's Console tab)"
    );
    let hint = format!(
        "{enrol}, then rebuild with `dkms autoinstall --force` and apply again; or turn Secure Boot off in the VM's UEFI settings"
    );
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
    if !building || facts.mok_keys.iter().any(|k| k.enrolled) {
        return;
    }
    match facts.mok_keys.iter().find(|k| k.path == key) {
        Some(_) => plan.refusals.push(refusal(
            format!(
                "Secure Boot is on and the DKMS signing key {key} is not enrolled: the NVIDIA module DKMS builds would not load"
            ),
            hint,
        )),
        None => plan.notes.push(format!(
            "Secure Boot is on: DKMS makes its signing key {key} on its first build and signs the NVIDIA module with it, but the kernel loads the module only once that key is enrolled, which needs the VM's console. After this apply (which ends saying the driver does not load yet): {enrol}, then run `pvegpu apply` again"
        )),
    }
}
