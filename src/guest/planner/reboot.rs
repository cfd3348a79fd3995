//! The guest's reboot: why the running system needs one (nouveau holds the GPUs, a stale or
//! unloaded NVIDIA module, a new driver, a new initramfs).

use super::{NOT_LOADED, Walk};
use crate::core::plan::{Action, Change};
use crate::guest::facts::GuestFacts;
use crate::guest::playbook::{GuestStep, GuestStepKind};

/// Why the guest needs a reboot whatever the steps change, from what runs now.
pub(super) fn reasons(
    facts: &GuestFacts,
    driver_missing: &[String],
    nouveau_has_device: bool,
) -> Vec<String> {
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
    reboot_reasons
}

pub(super) fn reboot(step: &GuestStep, w: &Walk) -> Option<Change> {
    let mut reasons = w.d.reboot_reasons.clone();
    if w.changed(|k| matches!(k, GuestStepKind::Initramfs {})) && reasons.is_empty() {
        reasons.push("the initramfs changed".into());
    }
    (!reasons.is_empty()).then(|| step.change(reasons.join("; "), Action::Reboot, None))
}
