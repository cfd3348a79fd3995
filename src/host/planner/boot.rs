//! What reaches the next boot: the initramfs of every kernel, the boot loader's entries, and
//! the reboot itself with every reason the running system differs from the converged one.

use super::{Desired, join};
use crate::core::plan::{Action, Change};
use crate::facts::HostFacts;
use crate::facts::kernels::compare_versions;
use crate::host::playbook::{HOST, HostStep, HostStepKind};

/// Kernels whose initramfs lacks vfio-pci, lacks pvegpu's modprobe file, or predates the
/// module configuration it should carry.
fn stale_initramfs(facts: &HostFacts) -> Vec<String> {
    let config_mtime = facts
        .files
        .iter()
        .filter(|(p, f)| {
            f.link.is_none()
                && (p.starts_with("/etc/modprobe.d/")
                    || p.as_str() == "/etc/initramfs-tools/modules"
                    || p.starts_with("/usr/local/lib/pvegpu/"))
        })
        .filter_map(|(_, f)| f.mtime)
        .max();
    // pvegpu's modprobe file, which every image must carry
    let ours = HOST
        .steps
        .iter()
        .find_map(|s| match &s.kind {
            HostStepKind::VfioBinding(f) => Some(f.path.as_str()),
            _ => None,
        })
        .unwrap_or_default();
    let name = ours.rsplit('/').next().unwrap_or_default();
    let mut out = Vec::new();
    for k in facts.kernels.iter().filter(|k| k.initrd_mtime.is_some()) {
        let Some(info) = facts.initramfs.iter().find(|i| i.kernel == k.version) else {
            continue;
        };
        let lacks_ours = facts.files.contains_key(ours)
            && !info.modprobe_files.iter().any(|f| f.ends_with(name));
        let older = matches!((info.mtime, config_mtime), (Some(i), Some(c)) if i < c);
        if !info.has_vfio_pci || lacks_ours || older {
            let why = if !info.has_vfio_pci {
                "no vfio-pci".to_string()
            } else if lacks_ours {
                format!("no {name}")
            } else {
                "older than the module configuration".to_string()
            };
            out.push(format!("{} ({why})", k.version));
        }
    }
    out
}

pub(super) fn initramfs(step: &HostStep, facts: &HostFacts, earlier: &[Change]) -> Option<Change> {
    let touched: Vec<&str> = earlier
        .iter()
        .filter_map(|c| match &c.action {
            Action::WriteFile { path, .. } | Action::RemoveFile { path, .. } => Some(path.as_str()),
            _ => None,
        })
        .filter(|p| {
            p.starts_with("/etc/modprobe.d/")
                || p.starts_with("/etc/initramfs-tools/")
                || p.starts_with("/usr/local/lib/pvegpu/")
        })
        .collect();
    let reason = if !touched.is_empty() {
        format!(
            "{} change(s) must reach every kernel's initramfs",
            touched.join(", ")
        )
    } else {
        let stale = stale_initramfs(facts);
        if stale.is_empty() {
            return None;
        }
        format!("initramfs out of date for {}", stale.join(", "))
    };
    Some(step.run(reason, "update-initramfs -u -k all"))
}

fn missing_from_running<'a>(facts: &HostFacts, d: &'a Desired) -> Vec<&'a String> {
    d.cmdline
        .iter()
        .filter(|w| !facts.proc_cmdline.contains(w))
        .collect()
}

pub(super) fn boot_loader(
    step: &HostStep,
    facts: &HostFacts,
    d: &Desired,
    earlier: &[Change],
) -> Option<Change> {
    let command = d.boot_loader.refresh_command()?;
    let cmdline_changed = HOST.changed(earlier, |k| matches!(k, HostStepKind::KernelCmdline {}));
    let not_running = missing_from_running(facts, d);
    let reason = if cmdline_changed {
        "the new command line must reach the boot entries".to_string()
    } else if !not_running.is_empty() {
        format!(
            "the command line is configured but the running kernel lacks {}; refresh the boot entries before rebooting",
            join(&not_running)
        )
    } else {
        return None;
    };
    Some(step.run(reason, command))
}

/// Why the running system differs from the converged one, whatever the files say.
fn runtime_drift(facts: &HostFacts, d: &Desired) -> Vec<String> {
    let mut out = Vec::new();
    let missing = missing_from_running(facts, d);
    if !missing.is_empty() {
        out.push(format!(
            "the running kernel was booted without {}",
            join(&missing)
        ));
    }
    let off: Vec<String> = d
        .targets
        .iter()
        .filter_map(|a| facts.device(a))
        .filter(|dev| dev.driver.as_deref() != Some("vfio-pci"))
        .map(|dev| {
            format!(
                "{} ({})",
                dev.address,
                dev.driver.as_deref().unwrap_or("no driver")
            )
        })
        .collect();
    if !off.is_empty() {
        out.push(format!("not on vfio-pci yet: {}", off.join(", ")));
    }
    if let Some(next) = facts.next_boot_kernel()
        && compare_versions(next, &facts.running_kernel) != std::cmp::Ordering::Equal
    {
        out.push(format!(
            "kernel {next} is installed and boots next (running {})",
            facts.running_kernel
        ));
    }
    out
}

/// The reboot, with every reason for it: boot-time changes this plan makes, and whatever the
/// running system lacks although the files are as desired.
pub(super) fn reboot(
    step: &HostStep,
    facts: &HostFacts,
    d: &Desired,
    earlier: &[Change],
) -> Option<Change> {
    let mut reasons: Vec<String> = Vec::new();
    let pending: Vec<&str> = earlier
        .iter()
        .filter(|c| c.needs_reboot)
        .map(|c| c.step.as_str())
        .collect();
    if !pending.is_empty() {
        reasons.push(format!(
            "boot-time configuration changes ({})",
            pending.join(", ")
        ));
    }
    reasons.extend(runtime_drift(facts, d));
    reasons.dedup();
    (!reasons.is_empty()).then(|| step.change(reasons.join("; "), Action::Reboot, None))
}
